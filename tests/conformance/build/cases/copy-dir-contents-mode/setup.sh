chmod 0700 private
chmod 0750 private/inner
chmod 0600 private/key
chown -R 2000:3000 private
