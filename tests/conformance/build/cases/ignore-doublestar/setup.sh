cat > .dockerignore <<'IGN'
**/*.tmp
**/*.bak
logs/*.log
!logs/important.log
node_modules
.dockerignore
Dockerfile
IGN
