#!/bin/sh
# Configures a Postfix instance for one MX host role behind greygate, from
# GG_* environment variables (the same ones greygate-conf.sh reads). The
# Postfix container's entrypoint runs it on /etc/postfix, and the
# network-namespace test (test/e2e) on each private instance, so both run
# the very same Postfix settings.
#
#   GG_ROLE=primary GG_MYHOSTNAME=mx1.example.test GG_DOMAINS=example.test \
#   sh docker/postfix-setup.sh [CONFIG_DIRECTORY]      # default /etc/postfix
#
#   GG_ROLE            primary: delivers GG_DOMAINS into Maildirs (virtual(8));
#                      backup: relays GG_DOMAINS to the primaries by MX
#                      lookup, queues while they are away, and flushes a
#                      domain at once on ETRN (fast_flush_domains)
#   GG_MYHOSTNAME      this MX host's name
#   GG_DOMAINS         the mail domains (blank- or comma-separated)
#   GG_MY_ADDRESSES    backup: the public addresses (greygate's), so that
#                      Postfix knows which MX host is itself (proxy_interfaces)
#   GG_BACKEND         the smtpd greygate talks to, default 127.0.0.1:10025
#   GG_MAILBOXES       the addresses that exist (user@domain, blank- or
#                      comma-separated): primary: one Maildir each,
#                      GG_MAIL_BASE/DOMAIN/USER/ (else CONFIG_DIRECTORY/vmailbox
#                      must exist); backup: relay_recipient_maps
#   GG_MAIL_BASE       primary: Maildir base, default /var/mail/vhosts
#   GG_VMAIL_UID/GID   primary: owner of the Maildirs, default 5000
#   GG_POSTFIX_LOG     maillog_file, e.g. /dev/stdout in a container
#                      (default: leave the setting alone)
set -eu
set -f

die() {
	echo "postfix-setup.sh: $*" >&2
	exit 2
}

dir=${1:-/etc/postfix}
[ -f "$dir/main.cf" ] || die "$dir/main.cf does not exist"
[ -f "$dir/master.cf" ] || die "$dir/master.cf does not exist"
role=${GG_ROLE:-}
case $role in
primary | backup) ;;
*) die "GG_ROLE must be primary or backup" ;;
esac
[ -n "${GG_MYHOSTNAME:-}" ] || die "GG_MYHOSTNAME is not set"
[ -n "${GG_DOMAINS:-}" ] || die "GG_DOMAINS is not set"
domains=$(printf '%s' "$GG_DOMAINS" | tr ',' ' ' | tr -s ' ')
domains=${domains# }
domains=${domains% }
for d in $domains; do
	case $d in
	*[!A-Za-z0-9.-]* | .* | *..*) die "'$d' is not a domain name" ;;
	esac
done
backend=${GG_BACKEND:-127.0.0.1:10025}
case $backend in
127.* | '[::1]:'*) ;;
*) die "GG_BACKEND '$backend' is not a loopback address: the smtpd behind greygate must not be reachable from outside" ;;
esac

pc() { postconf -c "$dir" "$@"; }

# ---- both roles -------------------------------------------------------
# Postfix listens on loopback only: greygate owns port 25 and passes the
# real client (address, name, HELO) with XCLIENT, so Postfix's logs,
# Received: headers and restrictions see the real client. Only loopback is
# trusted (mynetworks): everybody else reaches Postfix through greygate
# with its own address, and Postfix still refuses what is not for its
# domains (reject_unauth_destination) behind greygate's relay decision.
pc -e \
	"myhostname = $GG_MYHOSTNAME" \
	"myorigin = \$myhostname" \
	"mydestination = localhost" \
	"inet_interfaces = loopback-only" \
	"mynetworks = 127.0.0.0/8" \
	"smtpd_authorized_xclient_hosts = 127.0.0.1" \
	"smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination" \
	"smtpd_banner = \$myhostname ESMTP" \
	"smtp_host_lookup = dns" \
	"disable_dns_lookups = no" \
	"biff = no"
if [ -n "${GG_POSTFIX_LOG:-}" ]; then
	pc -e "maillog_file = $GG_POSTFIX_LOG"
fi

# master.cf: no smtpd on port 25 (greygate's), one on the loopback
# backend address; no chroot (the daemons read the host's or container's
# /etc/resolv.conf and need no copy of it in a jail).
pc -F '*/*/chroot = n'
if [ -n "$(pc -M smtp/inet 2>/dev/null)" ]; then
	pc -MX smtp/inet
fi
pc -M "$backend/inet = $backend inet n - n - - smtpd"
# maillog_file needs postlogd (Debian's master.cf has it; make sure)
if [ -z "$(pc -M postlog/unix-dgram 2>/dev/null)" ]; then
	pc -M "postlog/unix-dgram = postlog unix-dgram n - n - 1 postlogd"
fi

# GG_MAILBOXES: the valid addresses, one Maildir each. Checked strictly:
# an address names a directory.
mailboxes=$(printf '%s' "${GG_MAILBOXES:-}" | tr ',' ' ')
for a in $mailboxes; do
	user=${a%@*}
	dom=${a#*@}
	case $user in
	'' | .* | *[!a-z0-9._-]*) die "mailbox '$a': the local part must be [a-z0-9._-], not starting with a dot" ;;
	esac
	case " $domains " in
	*" $dom "*) ;;
	*) die "mailbox '$a' is not in GG_DOMAINS" ;;
	esac
done

if [ "$role" = primary ]; then
	# ---- primary: deliver into Maildirs, BASE/DOMAIN/USER/ ---------------
	# Only listed mailboxes exist: Postfix refuses others at RCPT time
	# (550 5.1.1, relayed by greygate), so no bounce is ever sent to a
	# forged sender (backscatter).
	base=${GG_MAIL_BASE:-/var/mail/vhosts}
	uid=${GG_VMAIL_UID:-5000}
	gid=${GG_VMAIL_GID:-5000}
	if [ -n "$mailboxes" ]; then
		: >"$dir/vmailbox.tmp"
		for a in $mailboxes; do
			printf '%s %s/%s/\n' "$a" "${a#*@}" "${a%@*}" >>"$dir/vmailbox.tmp"
		done
		mv "$dir/vmailbox.tmp" "$dir/vmailbox"
	elif [ ! -f "$dir/vmailbox" ]; then
		die "neither GG_MAILBOXES nor $dir/vmailbox (ADDRESS DOMAIN/USER/ lines) says which mailboxes exist"
	fi
	pc -e \
		"virtual_mailbox_domains = $domains" \
		"virtual_mailbox_base = $base" \
		"virtual_mailbox_maps = texthash:$dir/vmailbox" \
		"virtual_uid_maps = static:$uid" \
		"virtual_gid_maps = static:$gid" \
		"virtual_mailbox_limit = 0" \
		"relay_domains ="
else
	# ---- backup: queue and relay to the primaries ------------------------
	[ -n "${GG_MY_ADDRESSES:-}" ] || die "GG_MY_ADDRESSES is not set"
	addrs=$(printf '%s' "$GG_MY_ADDRESSES" | tr ',' ' ')
	# relay_domains: accepted here and relayed by MX lookup; Postfix skips
	# the MX hosts that are itself (proxy_interfaces: greygate's addresses)
	# and those of lower preference, so mail goes to the primaries only.
	# fast_flush_domains: ETRN (from greygate's hand-over when a primary
	# comes back, or from a primary through greygate) flushes at once.
	# The back-off stays long: the hand-over, not polling, brings the mail
	# back quickly.
	# relay_recipient_maps: the primary's mailboxes, so that the backup
	# refuses unknown recipients at RCPT time instead of accepting them and
	# bouncing later (backscatter). Without GG_MAILBOXES (or an existing
	# relay_recipients file) every address of the domains is accepted.
	if [ -n "$mailboxes" ]; then
		: >"$dir/relay_recipients.tmp"
		for a in $mailboxes; do
			printf '%s OK\n' "$a" >>"$dir/relay_recipients.tmp"
		done
		mv "$dir/relay_recipients.tmp" "$dir/relay_recipients"
	fi
	if [ -f "$dir/relay_recipients" ]; then
		rrm="texthash:$dir/relay_recipients"
	else
		rrm=""
	fi
	pc -e \
		"relay_domains = $domains" \
		"relay_recipient_maps = $rrm" \
		"fast_flush_domains = \$relay_domains" \
		"proxy_interfaces = $addrs" \
		"virtual_mailbox_domains =" \
		"minimal_backoff_time = 300s" \
		"maximal_backoff_time = 1800s" \
		"maximal_queue_lifetime = 5d"
fi
