# A developer's checkout: a target/ from a local build, kept out by .dockerignore.
cat > .dockerignore <<'IGN'
target/
.git
IGN
mkdir -p target/release .git && echo host-build > target/release/app && echo ref > .git/HEAD
