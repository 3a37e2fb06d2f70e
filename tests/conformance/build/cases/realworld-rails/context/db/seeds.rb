# seeds
