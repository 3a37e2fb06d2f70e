chmod 0755 docker-entrypoint.sh tools/write-marker tools/env
