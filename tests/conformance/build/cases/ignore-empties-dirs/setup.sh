# Directories whose contents .dockerignore excludes, by `dir/*`, `dir/**`, `**/*.log` and a
# deeper pattern: which directories are still sent, empty.
printf 'e1/*\ne2/**\n**/*.log\ne4/sub/*\n.dockerignore\n' > .dockerignore
mkdir -p e1/s e2/s e3/s e4/sub/x
for f in e1/a e1/s/b e2/a e2/s/b e3/a.log e3/s/b.log e4/sub/x/y e4/sub/z e4/keep; do echo "$f" > "$f"; done
