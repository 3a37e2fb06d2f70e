ln -s bar foo
ln -s subfile sub/l0
ln -s second sub/l1
ln -s baz sub/second
ln -s ../bar sub/up
