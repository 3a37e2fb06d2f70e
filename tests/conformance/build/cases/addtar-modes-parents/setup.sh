mkdir -p src/a/b && echo secret > src/a/secret && echo run > src/a/b/run.sh
chmod 600 src/a/secret && chmod 750 src/a/b/run.sh && chmod 700 src/a
ln src/a/secret src/a/secret-link
chown 7:8 src/a/secret && chown 9:10 src/a/b
tar -C src -cf files.tar a && tar -C src -czf files.tgz a && rm -rf src
