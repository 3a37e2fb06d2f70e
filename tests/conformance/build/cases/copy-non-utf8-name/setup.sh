touch "$(printf 'latin1-\351')"
