# The token for the private gem server (a build secret, kept out of the image by
# .dockerignore too), and a developer's vendor/bundle and .bundle.
cat > .dockerignore <<'IGN'
.git
.bundle
vendor/bundle
log/*
tmp/*
gem_token.txt
IGN
echo 's3cr3t-token' > gem_token.txt
mkdir -p .bundle vendor/bundle/ruby log tmp && echo 'BUNDLE_PATH: "vendor/bundle"' > .bundle/config
echo g > vendor/bundle/ruby/x && echo log > log/development.log && echo pid > tmp/puma.pid
