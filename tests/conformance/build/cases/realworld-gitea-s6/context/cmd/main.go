package cmd

func Main() {}
