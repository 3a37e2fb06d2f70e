# FastAPI's generated projects ignore caches and virtualenvs; a stale bytecode file and a
# .venv beside the app show the ignore file is read. No poetry.lock: `./poetry.lock*`
# matches nothing.
cat > .dockerignore <<'IGN'
# Python
__pycache__
app.egg-info
*.pyc
.mypy_cache
.coverage
htmlcov
.venv
IGN
mkdir -p app/__pycache__ app/routers/__pycache__ .venv/bin .mypy_cache
echo pyc > app/__pycache__/main.cpython-312.pyc && echo pyc > app/routers/__pycache__/items.cpython-312.pyc
echo stale > app/old.pyc && echo '#!/bin/sh' > .venv/bin/python && echo '{}' > .mypy_cache/CACHEDIR.TAG
