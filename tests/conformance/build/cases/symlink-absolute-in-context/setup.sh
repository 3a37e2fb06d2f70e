echo content-a > a.txt
mkdir -p sub/deep && echo deep > sub/deep/f
ln -s /a.txt link
ln -s /sub/deep sub/abs-dir
