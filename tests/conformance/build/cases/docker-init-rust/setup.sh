cat > .dockerignore <<'IGN'
*
!src/
!Cargo.toml
!Cargo.lock
src/**/*.orig
IGN
echo conflict > src/main.rs.orig && echo conflict > src/lib/util.rs.orig
