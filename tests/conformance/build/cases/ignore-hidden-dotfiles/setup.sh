cat > .dockerignore <<'IGN'
.*
!.env.example
Dockerfile
IGN
echo SECRET=1 > .env
echo SECRET=changeme > .env.example
echo '[core]' > .gitconfig-like
mkdir -p .git/objects && echo ref > .git/HEAD
echo x > .config/settings
echo visible > src/app.js
echo hidden > src/.eslintrc
echo c > src/.cache/entry
