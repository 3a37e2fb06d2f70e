mkdir -p bin sub/deeper empty
echo app > app.txt && echo '#!/bin/sh' > bin/run.sh && chmod 755 bin/run.sh
echo data > sub/data.txt && echo deep > sub/deeper/file && ln -s ../app.txt sub/link
echo left out > build.log && printf '*.log\n' > .dockerignore
ln app.txt hardlink.txt
