T="--owner=0 --group=0 --numeric-owner --mtime=@1577836800"
# absolute names (tar -P keeps the leading slash)
mkdir -p w/opt/app && echo abs > w/opt/app/file && echo top > w/top-abs.txt
chmod 0750 w/opt && chmod 0600 w/top-abs.txt
tar $T -P --transform 's,^w/,/,' -cf abs.tar w/opt w/top-abs.txt
# ./-prefixed names, and one with a `.` component
mkdir -p x/a && echo dot > x/a/f && echo h > x/a/h && chmod 0711 x/a
tar $T -C x --transform 's,^\./a/h$,./a/./h,' -cf dot.tar .
# the same name twice (tar -r appends; the later entry wins, with its mode and owner)
mkdir -p y1/d y2/d && echo 'first version' > y1/same.txt && echo second > y2/same.txt
chmod 0600 y1/same.txt && chmod 0640 y2/same.txt && chmod 0700 y1/d && chmod 0751 y2/d
tar --owner=5 --group=5 --numeric-owner --mtime=@1577836800 -C y1 -cf dup.tar same.txt d
tar --owner=6 --group=7 --numeric-owner --mtime=@1577836800 -C y2 -rf dup.tar same.txt d
# a directory's entry after the files below it
mkdir -p z/late/sub && echo 'file first' > z/late/sub/file && chmod 0705 z/late/sub && chmod 0701 z/late
tar --owner=9 --group=9 --numeric-owner --mtime=@1577836800 --no-recursion -C z -cf order.tar \
  late/sub/file late/sub late
rm -rf w x y1 y2 z
