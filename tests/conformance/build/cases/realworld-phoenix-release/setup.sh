# The .dockerignore `mix phx.gen.release --docker` writes, with a developer's _build, deps
# and node_modules beside the sources.
cat > .dockerignore <<'IGN'
# This file excludes paths from the Docker build context.
#
# By default, Docker's build context includes all files (and folders) in the current
# directory. Even if a file isn't copied into the container it is still sent to the
# Docker daemon.
#
# There are multiple benefits to excluding files from the build context:
#
# 1. The build will be faster since Docker doesn't need to send as much data.
# 2. The image will be smaller since Docker doesn't need to copy as many files.
# 3. The container will have less chance of containing sensitive information.

.dockerignore

# Ignore git, but keep git HEAD and refs to access current commit hash if needed:
#
# $ cat .git/HEAD | awk '{print ".git/"$2}' | xargs cat
# d0b8727759e1e0e7aa3d41707d12376e373d5ecc
.git
!.git/HEAD
!.git/refs

# Common development/test artifacts
/cover/
/doc/
/test/
/tmp/
.elixir_ls

# Mix artifacts
/_build/
/deps/
*.ez

# Generated on crash by the VM
erl_crash.dump

# Static artifacts - These should be fetched and built inside the Docker image
/assets/node_modules/
/priv/static/assets/
/priv/static/cache_manifest.json
IGN
mkdir -p _build/prod/lib/hello deps/x assets/node_modules/y priv/static/assets test .git/refs/heads
echo host > _build/prod/lib/hello/x && echo host > deps/x/mix.exs && echo host > assets/node_modules/y/i.js
echo stale > priv/static/assets/app.js && echo '{}' > priv/static/cache_manifest.json && echo t > test/test_helper.exs
echo 'ref: refs/heads/main' > .git/HEAD && echo d0b8727759e1e0e7aa3d41707d12376e373d5ecc > .git/refs/heads/main
echo dump > erl_crash.dump
