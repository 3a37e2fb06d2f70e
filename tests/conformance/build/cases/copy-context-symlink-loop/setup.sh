mkdir -p links
echo plain > links/plain.txt
ln -s b links/a && ln -s a links/b
ln -s self links/self
ln -s step1 links/chain && ln -s step2 links/step1 && ln -s ../nowhere/at/all links/step2
