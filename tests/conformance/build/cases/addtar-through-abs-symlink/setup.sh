mkdir -p r/srv/real r/opt && ln -s /srv/real r/opt/abslink
tar -C r --owner=0 --group=0 --numeric-owner --no-recursion -cf rootfs.tar srv srv/real opt opt/abslink
mkdir -p p/var/run/act/actions/broad/.git p/opt/abslink/x
printf 'ref: refs/heads/main\n' > p/var/run/act/actions/broad/.git/HEAD
ln p/var/run/act/actions/broad/.git/HEAD p/var/run/act/actions/broad/.git/HEAD.link
echo inside > p/opt/abslink/x/file
ln p/var/run/act/actions/broad/.git/HEAD p/opt/abslink/x/head-link
# explicit parent entries below the links only, as BuildKit's test has them
tar -C p --owner=0 --group=0 --numeric-owner --no-recursion -cf payload.tar \
  var/run/act var/run/act/actions var/run/act/actions/broad var/run/act/actions/broad/.git \
  var/run/act/actions/broad/.git/HEAD var/run/act/actions/broad/.git/HEAD.link \
  opt/abslink/x opt/abslink/x/file opt/abslink/x/head-link
rm -rf r p
