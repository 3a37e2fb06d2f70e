# BuildKit: testDockerignoreInvalid (dockerfile_dockerignore_test.go): a `!` with no
# pattern after it in .dockerignore.
echo keep > a.txt
printf '*.log\n!\n' > .dockerignore
