mkdir -p src/d/sub && echo one > src/d/one && echo two > src/d/sub/two && chmod 0750 src/d/sub
tar -C src --owner=0 --group=0 --numeric-owner -cjf a.tar.bz2 d
tar -C src --owner=0 --group=0 --numeric-owner -cJf a.tar.xz d
tar -C src --owner=0 --group=0 --numeric-owner -czf gz-without-extension.bin d
echo just text | gzip -n > plain.txt.gz
rm -rf src
