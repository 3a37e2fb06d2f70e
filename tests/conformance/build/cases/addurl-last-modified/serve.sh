touch -d "2021-03-04 05:06:07 UTC" dated.txt
