# What `make build` and `make npm_licenses` leave: .build/<os>-<arch>/ for two platforms
# (only linux-amd64 is re-included), a data/ directory from a local run, and the
# licenses tarball (its bytes, not a real bzip2: COPY does not unpack).
cat > .dockerignore <<'IGN'
data/
.build/
.tarballs/

!.build/linux-amd64/
!.build/linux-armv7/
!.build/linux-arm64/
!.build/linux-ppc64le/
!.build/linux-s390x/
IGN
for p in linux-amd64 darwin-arm64; do
  mkdir -p .build/$p
  printf '#!/bin/sh\necho "prometheus %s $*"\n' $p > .build/$p/prometheus
  printf '#!/bin/sh\necho "promtool %s $*"\n' $p > .build/$p/promtool
  chmod 0755 .build/$p/prometheus .build/$p/promtool
done
mkdir -p data/wal .tarballs && echo wal > data/wal/00000000 && echo t > .tarballs/prometheus.tar.gz
printf 'BZh91AY&SY npm licenses\n' > npm_licenses.tar.bz2
