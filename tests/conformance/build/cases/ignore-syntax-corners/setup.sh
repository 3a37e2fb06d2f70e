# How .dockerignore lines are read (docker's dockerignore.ReadAll, moby/patternmatcher's
# ignorefile now): a UTF-8 BOM before the first pattern, CRLF line ends, `#` comments only
# at the very start of a line (` #x` is a pattern), blanks around patterns and after `!`,
# and patterns cleaned as paths (a trailing slash, a leading slash, `./` and `..`).
printf '\357\273\277*.tmp\r\n' > .dockerignore
printf ' #not-a-comment\r\n' >> .dockerignore
printf '#a-comment\r\n' >> .dockerignore
printf 'logs/   \r\n' >> .dockerignore
printf '/abs.txt\n' >> .dockerignore
printf 'docs/../secret.txt\n' >> .dockerignore
printf './dot.txt\n' >> .dockerignore
printf 'keep/*\n' >> .dockerignore
printf '!   keep/wanted.txt\n' >> .dockerignore
printf '   spaced.txt\t\n' >> .dockerignore
printf '.dockerignore\n' >> .dockerignore
mkdir -p logs keep docs sub
for f in a.tmp sub/b.tmp '#not-a-comment' '#a-comment' logs/x.log abs.txt sub/abs.txt secret.txt docs/readme \
         dot.txt keep/wanted.txt keep/other.txt spaced.txt plain.txt; do
  echo "$f" > "$f"
done
