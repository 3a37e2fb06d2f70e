mkdir -p s/d && echo one > s/d/one && echo two > s/two
tar -C s --owner=0 --group=0 --numeric-owner -cf files.tar d two
mkdir l && mkdir -p l/srv/target && ln -s srv/target l/rel-link
tar -C l --owner=0 --group=0 --numeric-owner -cf link.tar srv srv/target rel-link
rm -rf s l
