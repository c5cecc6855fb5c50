#!/bin/bash
# Container HEALTHCHECK: healthy when an SMTP server on HOST:PORT (default
# 127.0.0.1:25) greets with 220 within HEALTHCHECK_TIMEOUT seconds (default
# 5). It then says QUIT. Bash only (/dev/tcp): nothing to install in the
# slim image. The Postfix container runs it on its smtpd (127.0.0.1:10025).
#
# For greygate this is deliberately the banner, not the /healthz it serves
# on admin.listen (127.0.0.1:9925 by default): /healthz answers 503 while
# Redis is away, and an orchestrator that restarts unhealthy containers
# would then restart the MX host for an outage that store.failure = accept
# rides out without losing mail. The banner turns to 421 (unhealthy) when
# greygate takes no mail: while its Postfix cannot be reached. Scrape
# /healthz and /metrics for alerts.
#
#   healthcheck.sh [HOST [PORT]]
host=${1:-127.0.0.1}
port=${2:-25}
t=${HEALTHCHECK_TIMEOUT:-5}

# (a connect that hangs is cut by HEALTHCHECK --timeout)
if ! exec 3<>"/dev/tcp/$host/$port"; then
	echo "unhealthy: cannot connect to $host:$port"
	exit 1
fi 2>/dev/null
if ! IFS= read -r -t "$t" line <&3; then
	echo "unhealthy: no greeting from $host:$port within ${t}s"
	exit 1
fi
line=${line%$'\r'}
case $line in
'220 '* | 220-*) ;;
*)
	echo "unhealthy: $host:$port greets with: $line"
	exit 1
	;;
esac
printf 'QUIT\r\n' >&3 2>/dev/null
# the 221 (or whatever follows a multi-line greeting) is not waited for
exec 3<&- 3>&-
echo "healthy: $line"
exit 0
