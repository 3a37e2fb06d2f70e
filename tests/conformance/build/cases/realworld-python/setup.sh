cat > .dockerignore <<'IGN'
**/__pycache__
**/*.pyc
.venv
.env
IGN
mkdir -p mysite/__pycache__ .venv/bin && echo pyc > mysite/__pycache__/settings.cpython-312.pyc
echo stale > mysite/old.pyc && echo '#!/bin/sh' > .venv/bin/python && echo SECRET=1 > .env
