#!/bin/sh
# Entrypoint of the Postfix image: configures /etc/postfix for the MX role
# from the GG_* environment (postfix-setup.sh, the same script the e2e test
# runs on its private instances), then runs Postfix in the foreground with
# its log on stdout. greygate, in its own container, shares this
# container's network namespace and reaches the smtpd on 127.0.0.1:10025.
set -eu
sh /usr/local/lib/greygate/postfix-setup.sh /etc/postfix
postconf -e "maillog_file = ${GG_POSTFIX_LOG:-/dev/stdout}"
if [ "${GG_ROLE:-}" = primary ]; then
	base=${GG_MAIL_BASE:-/var/mail/vhosts}
	install -d -m 0750 -o "${GG_VMAIL_UID:-5000}" -g "${GG_VMAIL_GID:-5000}" "$base"
fi
postfix check
exec postfix start-fg
