cat > .dockerignore <<'IGN'
docs
!docs/README.md
!docs/api
/build/out
.dockerignore
Dockerfile
IGN
