echo literal > '$NAME.txt' && echo expanded > value.txt
