# The site's .dockerignore, with a local `hugo server` output beside the sources.
cat > .dockerignore <<'IGN'
public/
resources/_gen/
.hugo_build.lock
IGN
mkdir -p public/posts resources/_gen/images && echo stale > public/index.html && echo stale > public/posts/old.html
echo img > resources/_gen/images/x.png && : > .hugo_build.lock
