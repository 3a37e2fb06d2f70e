T="--owner=0 --group=0 --numeric-owner --mtime=@1577836800"
mkdir -p x/a/b && echo inside > x/a/g && echo f > x/a/f
tar $T --no-recursion -C x --transform 's,^a/g$,a/b/../g,' -cf inside.tar a a/b a/f a/g
rm -rf x
