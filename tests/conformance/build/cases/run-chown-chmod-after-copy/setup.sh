ln -s config.yml app/link
