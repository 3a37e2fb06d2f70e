ln -s /a.txt abs-file-link
ln -s /real abs-dir-link
