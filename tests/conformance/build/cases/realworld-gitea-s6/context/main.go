package main

import "code.gitea.io/gitea/cmd"

func main() { cmd.Main() }
