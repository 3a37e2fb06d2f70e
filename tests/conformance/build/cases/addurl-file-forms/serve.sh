# An uncompressed and a gzipped tar: ADD of a URL copies them as they are, never unpacked.
mkdir -p t && echo inner > t/inner.txt && tar cf arch.tar -C t inner.txt && tar czf arch.tgz -C t inner.txt && rm -r t
touch -d "2021-03-04 05:06:07 UTC" hello.txt
