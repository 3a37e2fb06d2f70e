# The .dockerignore Backstage's docs give for the multi-stage build, with what a
# developer's checkout has beside the sources: node_modules, dist, dist-types, and a local
# config with secrets that `app-config*.yaml` would match were it not ignored.
cat > .dockerignore <<'IGN'
dist-types
node_modules
packages/*/dist
packages/*/node_modules
plugins/*/dist
plugins/*/node_modules
*.local.yaml
IGN
mkdir -p node_modules/x packages/backend/node_modules/y packages/backend/dist plugins/catalog-backend-module-acme/dist dist-types/packages
echo h > node_modules/x/i.js && echo h > packages/backend/node_modules/y/i.js && echo old > packages/backend/dist/index.cjs.js
echo old > plugins/catalog-backend-module-acme/dist/index.js && echo old > dist-types/packages/x.d.ts
echo 'backend: {auth: {keys: [{secret: s}]}}' > app-config.local.yaml
