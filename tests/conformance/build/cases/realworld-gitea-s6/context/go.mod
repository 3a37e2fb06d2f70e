module code.gitea.io/gitea

go 1.22
