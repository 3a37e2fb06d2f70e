mkdir s && ln -s ../tmp/symlink-target s/symlink && ln -s /made/by/copy s/abs-dangling
tar -C s --owner=0 --group=0 --numeric-owner -cf t.tar symlink abs-dangling
rm -rf s
