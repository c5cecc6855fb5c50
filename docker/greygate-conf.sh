#!/bin/sh
# Renders greygate.conf for one MX host role from GG_* environment variables
# and prints it on stdout. The container entrypoint uses it, and so does the
# network-namespace test (test/e2e), so both run the very same settings.
#
#   GG_ROLE=backup GG_MYHOSTNAME=mx2.example.test GG_DOMAINS=example.test \
#   GG_MY_ADDRESSES=192.0.2.20 GG_PRIMARY_NETWORKS=198.51.100.0/24 \
#   GG_REDIS_HOST=192.0.2.63 sh docker/greygate-conf.sh > greygate.conf
#
# Lists (GG_DOMAINS, GG_MY_ADDRESSES, ...) are separated by blanks or commas.
#
#   GG_ROLE               primary (delivers GG_DOMAINS itself) or backup
#                         (relays them by permit_mx_backup, hands mail over)
#   GG_MYHOSTNAME         this MX host's name (greeting, EHLO)
#   GG_DOMAINS            the mail domains (primary: local_domains;
#                         backup: watched by the hand-over, ETRN allowed)
#   GG_MY_ADDRESSES       the addresses this host's MX records resolve to
#   GG_PRIMARY_NETWORKS   backup: networks of the primaries
#                         (permit_mx_backup_networks)
#   GG_ETRN_NETWORKS      backup: who may send ETRN (default:
#                         GG_PRIMARY_NETWORKS); primary: default none
#   GG_LISTEN             default 0.0.0.0:25
#   GG_BACKEND            the local Postfix smtpd, default 127.0.0.1:10025
#   GG_MYNETWORKS         trusted clients, default 127.0.0.0/8 ::1/128
#   GG_RELAY_DOMAINS      extra relay_domains, default none
#   GG_REDIS_HOST         Redis address (an IP address: resolving a name
#                         would block); empty (and no GG_REDIS_SENTINELS):
#                         the embedded store
#   GG_REDIS_SENTINELS    Sentinel addresses (IP:PORT) that name the Redis
#                         master instead of GG_REDIS_HOST
#   GG_REDIS_MASTER_NAME  the master's name at the Sentinels, default mymaster
#   GG_REDIS_PORT         default 6379
#   GG_REDIS_PASSWORD     default none
#   GG_REDIS_PREFIX       default gg:
#   GG_STORE_FILE         embedded store file, default /var/lib/greygate/greylist.db
#   GG_STORE_FAILURE      accept (default) or tempfail
#   GG_DNS_SERVERS        default: /etc/resolv.conf
#   GG_DNS_TIMEOUT_MS     default 2000
#   GG_DNS_TRIES          default 2
#   GG_DELAY              greylist delay in seconds, default 300
#   GG_PROBE_INTERVAL     backup: seconds between probes of the primaries,
#                         default 30 (0: no hand-over)
#   GG_PROBE_TIMEOUT      default 10
#   GG_PROBE_PORT         default 25
#   GG_CONTROL_SOCKET     default /run/greygate/control.sock
#   GG_LOG_LEVEL          default info
#   GG_WHITELIST_DIR      never-greylisted lists, one entry a line, in the
#                         files clients, senders and recipients of this
#                         directory (SIGHUP rereads them); default none
set -eu
set -f          # lists are split on blanks: no globbing of their words

die() {
	echo "greygate-conf.sh: $*" >&2
	exit 2
}

# A libconfig string. Values come from the environment: refuse what would
# need escaping instead of escaping it (no such value is legitimate here).
str() {
	case $1 in
	*'"'* | *\\*) die "value '$1' must not contain quotes or backslashes" ;;
	esac
	if printf '%s' "$1" | LC_ALL=C grep -q '[[:cntrl:]]'; then
		die "value '$1' must not contain control characters"
	fi
	printf '"%s"' "$1"
}

# Blank- or comma-separated words -> [ "a", "b" ].
list() {
	out=""
	for w in $(printf '%s' "$1" | tr ',' ' '); do
		out="$out${out:+, }$(str "$w")"
	done
	if [ -n "$out" ]; then printf '[ %s ]' "$out"; else printf '[ ]'; fi
}

num() {
	case $2 in
	'' | *[!0-9]*) die "$1 must be a whole number, not '$2'" ;;
	esac
	printf '%s' "$2"
}

role=${GG_ROLE:-}
case $role in
primary | backup) ;;
*) die "GG_ROLE must be primary or backup" ;;
esac
[ -n "${GG_MYHOSTNAME:-}" ] || die "GG_MYHOSTNAME is not set"
[ -n "${GG_DOMAINS:-}" ] || die "GG_DOMAINS is not set"
[ -n "${GG_MY_ADDRESSES:-}" ] || die "GG_MY_ADDRESSES is not set (the addresses of this host's MX name)"
if [ "$role" = backup ] && [ -z "${GG_PRIMARY_NETWORKS:-}" ]; then
	die "GG_PRIMARY_NETWORKS is not set: a backup without it relays for anybody who points an MX record at it"
fi

if [ "$role" = primary ]; then
	local_domains=$GG_DOMAINS
	etrn=${GG_ETRN_NETWORKS:-}
else
	local_domains=""
	etrn=${GG_ETRN_NETWORKS:-$GG_PRIMARY_NETWORKS}
fi
case ${GG_STORE_FAILURE:-accept} in
accept | tempfail) ;;
*) die "GG_STORE_FAILURE must be accept or tempfail" ;;
esac

# Every value is checked here, in plain assignments, so that a bad one stops
# the script (set -e does not see a failure inside a here-document).
myhostname=$(str "$GG_MYHOSTNAME")
listen=$(list "${GG_LISTEN:-0.0.0.0:25}")
my_addresses=$(list "$GG_MY_ADDRESSES")
backend=$(str "${GG_BACKEND:-127.0.0.1:10025}")
mynetworks=$(list "${GG_MYNETWORKS:-127.0.0.0/8 ::1/128}")
local_domains=$(list "$local_domains")
relay_domains=$(list "${GG_RELAY_DOMAINS:-}")
domains=$(list "$GG_DOMAINS")
primary_networks=$(list "${GG_PRIMARY_NETWORKS:-}")
etrn_networks=$(list "$etrn")
probe_interval=$(num GG_PROBE_INTERVAL "${GG_PROBE_INTERVAL:-30}")
probe_timeout=$(num GG_PROBE_TIMEOUT "${GG_PROBE_TIMEOUT:-10}")
probe_port=$(num GG_PROBE_PORT "${GG_PROBE_PORT:-25}")
redis_host=$(str "${GG_REDIS_HOST:-}")
redis_port=$(num GG_REDIS_PORT "${GG_REDIS_PORT:-6379}")
redis_password=$(str "${GG_REDIS_PASSWORD:-}")
redis_prefix=$(str "${GG_REDIS_PREFIX:-gg:}")
sentinels=$(list "${GG_REDIS_SENTINELS:-}")
master_name=$(str "${GG_REDIS_MASTER_NAME:-mymaster}")
store_file=$(str "${GG_STORE_FILE:-/var/lib/greygate/greylist.db}")
store_failure=$(str "${GG_STORE_FAILURE:-accept}")
delay=$(num GG_DELAY "${GG_DELAY:-300}")
dns_servers=$(list "${GG_DNS_SERVERS:-}")
dns_timeout=$(num GG_DNS_TIMEOUT_MS "${GG_DNS_TIMEOUT_MS:-2000}")
dns_tries=$(num GG_DNS_TRIES "${GG_DNS_TRIES:-2}")
control_socket=$(str "${GG_CONTROL_SOCKET:-/run/greygate/control.sock}")
log_level=$(str "${GG_LOG_LEVEL:-info}")
wl_dir=${GG_WHITELIST_DIR:-}
wl_clients=$(str "$wl_dir/clients")
wl_senders=$(str "$wl_dir/senders")
wl_recipients=$(str "$wl_dir/recipients")

cat <<EOF
# greygate.conf for the $role MX host $GG_MYHOSTNAME.
# Rendered by docker/greygate-conf.sh from GG_* variables; do not edit here.

myhostname = $myhostname;
listen = $listen;
my_addresses = $my_addresses;

# The local Postfix smtpd (master.cf: 127.0.0.1:10025 inet ... smtpd), which
# trusts us for XCLIENT (smtpd_authorized_xclient_hosts = 127.0.0.1).
backend = { address = $backend; xclient = true; connect_timeout = 5; command_timeout = 300; };

mynetworks = $mynetworks;
local_domains = $local_domains;
relay_domains = $relay_domains;
helo_required = true;
disable_vrfy_command = true;
reject_non_fqdn_sender = true;
reject_unknown_sender_domain = true;
reject_non_fqdn_recipient = true;
EOF

if [ "$role" = backup ]; then
	cat <<EOF

# Backup MX: relay for a domain only while this host is one of its
# lower-preference MX hosts and every primary lies in these networks.
permit_mx_backup = true;
permit_mx_backup_networks = $primary_networks;
etrn_networks = $etrn_networks;
# Probe the primaries; when one comes back, ETRN to the local Postfix
# (fast_flush_domains) hands the queued mail over at once.
handover = { domains = $domains; probe_interval = $probe_interval;
             probe_timeout = $probe_timeout; probe_port = $probe_port; };
EOF
else
	cat <<EOF

permit_mx_backup = false;
etrn_networks = $etrn_networks;
EOF
fi

echo
if [ -n "${GG_REDIS_SENTINELS:-}" ]; then
	cat <<EOF
# Greylisting state shared by every MX host of the domains, in the Redis
# master the Sentinels name.
store = {
  type = "redis";
  redis = { sentinels = $sentinels; master_name = $master_name;
            password = $redis_password; db = 0; timeout_ms = 250;
            connect_timeout_ms = 1000; prefix = $redis_prefix; };
  failure = $store_failure;
};
EOF
elif [ -n "${GG_REDIS_HOST:-}" ]; then
	cat <<EOF
# Greylisting state shared by every MX host of the domains.
store = {
  type = "redis";
  redis = { host = $redis_host; port = $redis_port; password = $redis_password;
            db = 0; timeout_ms = 250; connect_timeout_ms = 1000; prefix = $redis_prefix; };
  failure = $store_failure;
};
EOF
else
	cat <<EOF
# No Redis: the embedded store (this host only).
store = { type = "memory"; file = $store_file; failure = $store_failure; };
EOF
fi

cat <<EOF
greylist = { enabled = true; delay = $delay; retry_window = 172800; pass_lifetime = 3110400;
             awl_threshold = 5; ipv4_prefix = 24; ipv6_prefix = 64; max_new_per_client = 100;
             normalize_sender = true; };
EOF

if [ -n "$wl_dir" ]; then
	cat <<EOF
# Never greylisted (relay rules still apply); to change a list, write a new
# file and rename it over the old one, then SIGHUP.
whitelist = { clients_file = $wl_clients; senders_file = $wl_senders;
              recipients_file = $wl_recipients; };
EOF
fi

if [ -n "${GG_DNS_SERVERS:-}" ]; then
	echo "dns = { servers = $dns_servers; timeout_ms = $dns_timeout; tries = $dns_tries; };"
else
	echo "dns = { timeout_ms = $dns_timeout; tries = $dns_tries; };    # servers: /etc/resolv.conf"
fi

cat <<EOF
control_socket = $control_socket;
shutdown_grace = 30;
log = { target = "stderr"; level = $log_level; };
EOF
