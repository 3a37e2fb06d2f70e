cat > .dockerignore <<'IGN'
.env
.git
*.log
src/**/*.orig
IGN
echo SECRET=1 > .env && mkdir -p .git && echo ref > .git/HEAD && echo log > app.log
echo conflict > src/a.go.orig && echo conflict > src/sub/b.go.orig
