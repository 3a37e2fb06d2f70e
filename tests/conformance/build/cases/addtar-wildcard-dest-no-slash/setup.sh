mkdir s1 s2 && printf content0 > s1/foo && printf content1 > s2/bar
tar -C s1 --owner=0 --group=0 --numeric-owner -cf t.tar foo
tar -C s2 --owner=0 --group=0 --numeric-owner -cf b.tar bar
rm -rf s1 s2
