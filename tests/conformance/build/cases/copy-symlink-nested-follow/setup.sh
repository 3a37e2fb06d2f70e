# git keeps no empty directory
mkdir -p foo
ln -s ../bar foo/sub
chmod 0700 foo
