#!/usr/bin/env bash
# `make run`: greygate in the foreground with conf/greygate.conf. When nothing
# listens at the backend address, Postfix's smtp-sink stands in for the
# backend so that a first message goes all the way through.
set -eu
BIN=$1
CONF=${GREYGATE_CONF:-conf/greygate.conf}
BACKEND=$(sed -n 's/^[[:space:]]*backend[^#]*address[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$CONF" | head -1)
BACKEND=${BACKEND:-127.0.0.1:10025}
LISTEN=$(sed -n 's/^[[:space:]]*listen[[:space:]]*=[[:space:]]*\[[[:space:]]*"\([^"]*\)".*/\1/p' "$CONF" | head -1)
sink=""
if ! (exec 3<>"/dev/tcp/${BACKEND%:*}/${BACKEND##*:}") 2>/dev/null && command -v smtp-sink >/dev/null; then
	smtp-sink -u "$(id -un | sed 's/^root$/postfix/')" -c "$BACKEND" 100 >/dev/null 2>&1 &
	sink=$!
	echo "nothing listens on $BACKEND: started smtp-sink there as a stand-in backend (pid $sink)"
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		(exec 3<>"/dev/tcp/${BACKEND%:*}/${BACKEND##*:}") 2>/dev/null && break
		sleep 0.2
	done
fi
trap '[ -n "$sink" ] && kill "$sink" 2>/dev/null; exit 0' INT TERM EXIT
cat <<MSG
greygate listens on $LISTEN (config $CONF); stop it with Ctrl-C.
Try it from another terminal:
  # a trusted client (mynetworks): straight through
  swaks --server $LISTEN --from you@example.net --to someone@example.org
  # any other client is greylisted first (450), and passes when it retries
  # after greylist.delay seconds:
  swaks --server $LISTEN --local-interface 127.0.0.2 --from you@example.net --to someone@example.org
  build/greygate-ctl -c $CONF list
MSG
"$BIN" -c "$CONF"
