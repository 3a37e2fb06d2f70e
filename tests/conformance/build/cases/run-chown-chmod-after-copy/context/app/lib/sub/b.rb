puts :b
