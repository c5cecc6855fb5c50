#!/bin/sh
# Entrypoint of the greygate image (runs as the unprivileged user greygate).
# A configuration mounted at $GREYGATE_CONF (default
# /etc/greygate/greygate.conf) is used as it is; without one, it is rendered
# from the GG_* environment by greygate-conf.sh (see mx1.env, mx2.env).
# The file is checked (greygate -t) before greygate starts in the
# foreground, logging to stderr; SIGTERM drains it (shutdown_grace).
set -eu
conf=${GREYGATE_CONF:-/etc/greygate/greygate.conf}
if [ ! -f "$conf" ]; then
	conf=/run/greygate/greygate.conf
	sh /usr/local/lib/greygate/greygate-conf.sh >"$conf.tmp"
	mv "$conf.tmp" "$conf"
	echo "greygate-entrypoint: rendered $conf from the GG_* environment (role ${GG_ROLE:-?})" >&2
fi
# the whitelist files the rendered configuration names must exist
if [ -n "${GG_WHITELIST_DIR:-}" ]; then
	for f in clients senders recipients; do
		[ -e "$GG_WHITELIST_DIR/$f" ] || : >"$GG_WHITELIST_DIR/$f"
	done
fi
greygate -t -c "$conf"
exec greygate -c "$conf" "$@"
