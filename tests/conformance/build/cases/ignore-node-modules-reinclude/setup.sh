cat > .dockerignore <<'IGN'
**/node_modules
!packages/keep/node_modules
**/*.log
!packages/app/node_modules/.bin/tool
Dockerfile
.dockerignore
IGN
for p in node_modules packages/app/node_modules packages/app/node_modules/.bin packages/keep/node_modules/dep packages/lib/src/node_modules; do
  mkdir -p "$p"; echo "$p" > "$p/index.js"
done
echo tool > packages/app/node_modules/.bin/tool
echo other > packages/app/node_modules/.bin/other
echo log > packages/keep/node_modules/debug.log
echo log > root.log
echo app > packages/app/main.js
echo lib > packages/lib/src/lib.js
