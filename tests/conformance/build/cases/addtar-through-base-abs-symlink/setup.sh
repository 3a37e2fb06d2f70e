mkdir -p p/var/run/act/actions/broad/.git
printf 'ref: refs/heads/main\n' > p/var/run/act/actions/broad/.git/HEAD
ln p/var/run/act/actions/broad/.git/HEAD p/var/run/act/actions/broad/.git/HEAD.link
# explicit parent entries below the link only, as BuildKit's test has them
tar -C p --owner=0 --group=0 --numeric-owner --no-recursion -cf payload.tar \
  var/run/act var/run/act/actions var/run/act/actions/broad var/run/act/actions/broad/.git \
  var/run/act/actions/broad/.git/HEAD var/run/act/actions/broad/.git/HEAD.link
rm -rf p
