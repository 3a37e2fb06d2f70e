# pnpm's docs add node_modules to .dockerignore; a local install is left beside the sources.
cat > .dockerignore <<'IGN'
**/node_modules
**/dist
IGN
mkdir -p node_modules/.pnpm packages/app1/node_modules/express packages/shared/dist
echo host > node_modules/.pnpm/lock.yaml && echo host > packages/app1/node_modules/express/index.js
echo stale > packages/shared/dist/index.js
