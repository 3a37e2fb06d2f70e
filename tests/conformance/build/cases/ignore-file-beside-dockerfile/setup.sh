# The context's own ignore file, which the one beside the Dockerfile replaces (not merged).
printf '*.log\n' > .dockerignore
