printf pw > pw.txt
