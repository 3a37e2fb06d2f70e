# The project's .dockerignore, with a developer's built public/, node_modules, caches and
# .env files beside the sources (.env.example is kept). No uv.lock: bin/uv-install makes one.
cat > .dockerignore <<'IGN'
.git/
.pytest_cache/
.ruff_cache/
__pycache__/
assets/node_modules/
public/
.coverage
.dockerignore
.env*
!.env.example
celerybeat-schedule
docker-compose.override.yml
IGN
mkdir -p public/js assets/node_modules/x .pytest_cache hello/__pycache__ .git
echo stale > public/js/app.js && echo h > assets/node_modules/x/i.js && echo c > .pytest_cache/v
echo pyc > hello/__pycache__/app.cpython-313.pyc && echo ref > .git/HEAD
echo 'SECRET_KEY=dev' > .env && echo 'SECRET_KEY=insecure_key_for_dev' > .env.example
echo 'services: {}' > docker-compose.override.yml
