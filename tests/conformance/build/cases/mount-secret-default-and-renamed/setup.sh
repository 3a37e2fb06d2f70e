echo token-value > token.txt
