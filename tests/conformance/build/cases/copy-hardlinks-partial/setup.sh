echo linked > a && ln a b && ln a ignored.txt && mkdir d && ln a d/c && ln a d/ignored-too.txt
printf 'ignored.txt\n**/ignored-too.txt\n.dockerignore\n' > .dockerignore
