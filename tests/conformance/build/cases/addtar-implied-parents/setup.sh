mkdir -p src/etc/dnf src/newtop/sub src/implied/deeper
printf content0 > src/etc/dnf/dnf.conf
echo n > src/newtop/sub/f && chmod 0700 src/newtop/sub
echo d > src/implied/deeper/file
# etc/ and newtop/ have no entry; implied/ and implied/deeper/ neither
tar -C src --owner=0 --group=0 --numeric-owner --no-recursion -czf t.tar.gz \
  etc/dnf etc/dnf/dnf.conf newtop/sub newtop/sub/f implied/deeper/file
tar -C src --owner=1234 --group=5678 --numeric-owner --no-recursion -cf deep.tar \
  implied/deeper/file newtop/sub/f
rm -rf src
