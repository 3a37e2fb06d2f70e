T="--owner=0 --group=0 --numeric-owner --mtime=@1577836800"
mkdir -p e/d && echo escaped > e/d/up.txt && echo fine > e/d/ok.txt
tar $T -P -C e --transform 's,^d/up\.txt$,../../up.txt,;s,^d/ok\.txt$,ok.txt,' --no-recursion \
  -cf escape.tar d/ok.txt d/up.txt
rm -rf e
