# bin/rails with CRLF line ends and a ruby.exe shebang, as a Windows checkout leaves it
printf '#!/usr/bin/env ruby.exe\r\nAPP_PATH = File.expand_path("../config/application", __dir__)\r\nrequire "rails/commands"\r\n' > bin/rails
printf '#!/usr/bin/env ruby\nputs "setup"\n' > bin/setup
cat > .dockerignore <<'IGN'
# See https://docs.docker.com/engine/reference/builder/#dockerignore-file for more about ignoring files.

# Ignore git directory.
/.git/

# Ignore bundler config.
/.bundle

# Ignore all environment files (except templates).
/.env*
!/.env*.erb

# Ignore all default key files.
/config/master.key
/config/credentials/*.key

# Ignore all logfiles and tempfiles.
/log/*
/tmp/*
!/log/.keep
!/tmp/.keep

# Ignore pidfiles, but keep the directory.
/tmp/pids/*
!/tmp/pids/.keep

# Ignore storage (uploaded files in development and any SQLite databases).
/storage/*
!/storage/.keep
/tmp/storage/*
!/tmp/storage/.keep

# Ignore assets.
/node_modules/
/app/assets/builds/*
!/app/assets/builds/.keep
/public/assets
IGN
mkdir -p .git .bundle tmp/pids tmp/cache/bootsnap tmp/storage config/credentials app/assets/builds node_modules/x public/assets
echo ref > .git/HEAD && echo 'BUNDLE_PATH: vendor' > .bundle/config
echo SECRET_KEY_BASE=1 > .env && echo 'KEY=<%= 1 %>' > .env.production.erb
echo deadbeef > config/master.key && echo k > config/credentials/production.key && echo enc > config/credentials/production.yml.enc
echo log > log/production.log && echo 123 > tmp/pids/server.pid && : > tmp/pids/.keep && echo c > tmp/cache/bootsnap/x
echo db > storage/production.sqlite3 && : > tmp/storage/.keep && echo b > app/assets/builds/app.css && : > app/assets/builds/.keep
echo nm > node_modules/x/i.js && echo a > public/assets/app.css
