ln -s ../bar foo/sub
chmod 0700 foo
