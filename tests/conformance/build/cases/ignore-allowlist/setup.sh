# An allow-list .dockerignore: everything excluded, then directories and files re-included,
# with exclusions again below them and a leading-slash negation.
cat > .dockerignore <<'IGN'
# everything
*

!src
src/**/*.tmp
!src/**/keep.tmp
!/README.md
**/.git
!docs/*.md
docs/draft*.md
IGN
mkdir -p src/sub/deeper src/.git docs/nested other
for f in README.md other.md top.txt src/a.go src/sub/b.tmp src/sub/keep.tmp src/sub/deeper/c.tmp \
         src/sub/deeper/keep.tmp src/.git/config docs/guide.md docs/draft-1.md docs/nested/n.md other/o.txt; do
  echo "$f" > "$f"
done
