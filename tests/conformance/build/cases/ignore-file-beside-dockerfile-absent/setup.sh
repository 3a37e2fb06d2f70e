# With nothing beside the Dockerfile, the context's .dockerignore applies, and a
# `Dockerfile.dockerignore` in the context is only a file.
printf '*.log\n' > .dockerignore
printf 'c.txt\n' > Dockerfile.dockerignore
