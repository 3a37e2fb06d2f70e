printf 'literal dollar name\n' > '$SRC'
