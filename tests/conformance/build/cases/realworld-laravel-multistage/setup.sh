# Laravel's .dockerignore (the .gitignore of the skeleton, which these apps reuse), with
# what a developer's checkout has: vendor/, node_modules/, a hot file, logs, .env.
cat > .dockerignore <<'IGN'
/node_modules
/public/build
/public/hot
/public/storage
/storage/*.key
/vendor
.env
.env.backup
.phpunit.result.cache
Homestead.json
Homestead.yaml
npm-debug.log
yarn-error.log
/.idea
/.vscode
IGN
mkdir -p vendor/laravel node_modules/axios public/storage .idea
echo host > vendor/laravel/x.php && echo host > node_modules/axios/index.js && echo hot > public/hot
echo link > public/storage/f && echo k > storage/oauth-private.key && echo APP_KEY=base64:x > .env
echo log > storage/logs/laravel.log && echo ws > .idea/workspace.xml
