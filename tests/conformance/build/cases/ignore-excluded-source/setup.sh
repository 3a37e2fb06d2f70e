printf '*.env\n' > .dockerignore
