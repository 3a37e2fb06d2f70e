chmod 0600 key.pem
chmod 0750 run.sh
