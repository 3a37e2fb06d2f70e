mkdir -p src/dir/sub
echo one > src/dir/one.txt
echo two-sub > src/dir/sub/two.txt
printf 'secret' > src/dir/private && chmod 0600 src/dir/private
chmod 0750 src/dir/sub
ln -s one.txt src/dir/link-to-one
ln src/dir/one.txt src/dir/hardlink-to-one
tar -C src --owner=1234 --group=5678 --numeric-owner -cf plain.tar dir
tar -C src --owner=0 --group=0 --numeric-owner -czf packed.tar.gz dir
rm -rf src
echo "this is not a tar" > notatar.tar
echo "plain file" > single.txt
