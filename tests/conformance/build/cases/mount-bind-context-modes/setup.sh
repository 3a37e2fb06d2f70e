echo p > private.txt && chmod 0600 private.txt
printf '#!/bin/sh\n' > script.sh && chmod 0750 script.sh
mkdir priv && echo i > priv/in && chmod 0700 priv
echo o > open.txt && chmod 0777 open.txt
