chmod 0755 docker-entrypoint.sh docker-ensure-initdb.sh
