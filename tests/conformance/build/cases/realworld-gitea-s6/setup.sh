# Gitea's .dockerignore (trimmed to what a checkout has here), with a local build's
# binary and data directory beside the sources.
cat > .dockerignore <<'IGN'
# Compiled Object files, Static and Dynamic libs (Shared Objects)
*.o
*.a
*.so

# Folders
_obj
_test

/gitea
/gitea-vet
/debug
/integrations.test

/bin
/dist
/custom/*
!/custom/conf/app.example.ini
/data
/indexers
/log
/public/assets/img/avatar
/tests/integration/gitea-integration-*
/tests/*.ini
/node_modules
/yarn.lock
/yarn-error.log
/npm-debug.log*
/public/assets/js
/public/assets/css
/public/assets/fonts
/VERSION
/.air
/.go-licenses
IGN
printf '#!/bin/sh\necho host build\n' > gitea && chmod 0755 gitea
mkdir -p data/gitea/conf custom/conf bin && echo '[server]' > data/gitea/conf/app.ini
echo '; example' > custom/conf/app.example.ini && echo '[database]' > custom/conf/app.ini && echo x > bin/tool
echo 1.22.0 > VERSION
