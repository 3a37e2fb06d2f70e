cat > .dockerignore <<'IGN'
node_modules
npm-debug.log
.git
Dockerfile
.dockerignore
IGN
mkdir -p node_modules/host-only/.bin .git && echo host > node_modules/host-only/index.js
echo debug > npm-debug.log && echo ref > .git/HEAD
