cat > .dockerignore <<'IGN'
# comments and blank lines are ignored

ba*
!bay
.dockerignore
Dockerfile
IGN
