mkdir sub && echo app > app.txt && echo data > sub/data.txt
chown 1234:5678 app.txt sub sub/data.txt
