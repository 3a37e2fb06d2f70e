: > empty
mkdir -p empty-dir/sub && : > empty-dir/sub/also-empty
head -c 512 /dev/zero | tr '\0' 'a' > block-512
head -c 1024 /dev/zero | tr '\0' 'a' > block-1024
head -c 511 /dev/zero | tr '\0' 'a' > block-511
# 5 MiB of reproducible bytes
i=0; while [ $i -lt 80 ]; do printf '%s' "$i" | sha512sum | head -c 128; i=$((i+1)); done > seed
for n in $(seq 1 512); do cat seed; done | head -c 5242880 > five-mb; rm seed
truncate -s 16M sparse-hole-then-data && printf 'data at the end' >> sparse-hole-then-data
truncate -s 4M sparse-all-hole
