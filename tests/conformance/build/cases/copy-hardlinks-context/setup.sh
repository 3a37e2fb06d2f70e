ln one two
ln one dir/three
ln dir/x dir/y
chmod 0640 one
