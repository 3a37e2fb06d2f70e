cat > .dockerignore <<'IGN'
file?
*/*/*.md
./CHANGELOG.md
b.md
!b.md
a.md
.dockerignore
Dockerfile
IGN
