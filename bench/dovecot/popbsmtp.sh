#!/bin/sh
# Dovecot post-login script (the POP-before-SMTP recipe): add the client address to
# Postfix's check_client_access map and rebuild it, then continue the login.
# Dovecot sets $IP; the lock keeps concurrent logins from interleaving postmap runs.
MAP={{DIR}}/access/popbsmtp
(
  flock 9
  echo "$IP OK" >> "$MAP"
  /usr/sbin/postmap -c {{DIR}}/postfix "hash:$MAP"
) 9>"$MAP.lock"
exec "$@"
