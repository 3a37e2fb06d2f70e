# The example's .dockerignore, and what a developer's checkout has beside it: a local
# node_modules and .next, a debug log, an .npmrc (matched by `.npmrc*` in deps).
cat > .dockerignore <<'IGN'
Dockerfile
.dockerignore
node_modules
npm-debug.log
README.md
.next
.git
IGN
mkdir -p node_modules/react .next/standalone .git
echo host > node_modules/react/index.js && echo host > .next/standalone/server.js && echo ref > .git/HEAD
echo debug > npm-debug.log && echo '# readme' > README.md
echo 'fund=false' > .npmrc
