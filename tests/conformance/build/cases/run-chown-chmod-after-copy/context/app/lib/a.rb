puts :a
