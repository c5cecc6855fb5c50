#!/bin/sh
# Smoke test of the Docker stack (compose.yml): builds the images, starts
# dns, redis, mx1 and mx2 with a short greylisting delay, and pushes mail
# through greylisting on both MX hosts:
#
#   1. client -> mx1: 450 4.2.0 greylisted (reason=new)
#   2. client -> mx2: 450 4.2.0 greylisted (reason=early: the state is shared)
#   3. after the delay, client -> mx1: 250, in mx1's Maildir
#   4. another sender -> mx2: greylisted, then after the delay 250; mx2
#      relays it to mx1 (not greylisted there: reason=mx-host), Maildir
#
# From the repository root, with Docker and the compose plugin (2.17 or
# later): sh docker/smoke.sh. KEEP=1 leaves the stack running afterwards.
set -eu
cd "$(dirname "$0")/.."

export GG_DELAY="${GG_DELAY:-10}"
export GG_PROBE_INTERVAL="${GG_PROBE_INTERVAL:-5}"
MX1=192.0.2.10
MX2=192.0.2.20

dc() { docker compose -f docker/compose.yml --profile smoke "$@"; }

fail() {
	echo "smoke: FAILED: $*" >&2
	dc logs --no-color --tail=40 mx1 mx1-greygate mx2 mx2-greygate redis >&2 || true
	exit 1
}

cleanup() {
	if [ -z "${KEEP:-}" ]; then
		dc down --volumes --remove-orphans >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Letters only: greylisting's sender normalisation folds digit runs and
# hex-looking tokens into '#', which would make two runs one sender.
token() { LC_ALL=C tr -dc 'g-z' </dev/urandom | head -c 10; }

# swaks from the client container; prints its transcript
swaks() { dc run --rm -T client --timeout 30 "$@" 2>&1; }

# The reply to RCPT TO in a swaks transcript ("450 4.2.0 ...").
rcpt_reply() { awk '/^ -> RCPT TO/ { r = 1; next } r && /^<[-~*]/ { print substr($0, 5); exit }'; }

expect_rcpt() { # expect_rcpt CODE SERVER FROM TO
	want=$1
	out=$(swaks --server "$2" --from "$3" --to "$4" --helo client.client.test --quit-after RCPT) || true
	got=$(printf '%s\n' "$out" | rcpt_reply)
	case $got in
	"$want"*) echo "smoke: $2 RCPT $4 from $3: $got" ;;
	*) fail "$2 answered RCPT with '$got', expected $want...
$out" ;;
	esac
}

send() { # send SERVER FROM TO TOKEN
	out=$(swaks --server "$1" --from "$2" --to "$3" --helo client.client.test \
		--header "Subject: greygate smoke $4") || fail "$1 did not accept the message:
$out"
	echo "smoke: $1 accepted the message from $2"
}

in_maildir() { # in_maildir TOKEN: waits up to 60 s for a mail with TOKEN on mx1
	i=0
	while [ $i -lt 60 ]; do
		if dc exec -T mx1 grep -rqs "$1" /var/mail/vhosts/example.test/alice/new; then
			echo "smoke: delivered into mx1's Maildir (alice)"
			return 0
		fi
		sleep 1
		i=$((i + 1))
	done
	fail "no mail with $1 in mx1's Maildir after 60 s"
}

log_has() { # log_has SERVICE PATTERN
	dc logs --no-color "$1" 2>/dev/null | grep -q -- "$2" || fail "$1 did not log $2"
}

echo "smoke: building the images"
dc build
echo "smoke: starting the stack (greylisting delay ${GG_DELAY}s)"
dc up -d --wait dns redis mx1 mx1-greygate mx2 mx2-greygate || fail "the stack did not become healthy"

rcpt=alice@example.test
tok=$(token)
s1="smoke-$tok@client.test"
expect_rcpt "450 4.2.0" $MX1 "$s1" $rcpt
expect_rcpt "450 4.2.0" $MX2 "$s1" $rcpt
log_has mx1-greygate "reason=new .*sender=$s1"
log_has mx2-greygate "reason=early .*sender=$s1"
sleep $((GG_DELAY + 2))
send $MX1 "$s1" $rcpt "$tok"
in_maildir "$tok"

tok2=$(token)
s2="smoke-$tok2@client.test"
expect_rcpt "450 4.2.0" $MX2 "$s2" $rcpt
sleep $((GG_DELAY + 2))
send $MX2 "$s2" $rcpt "$tok2"
in_maildir "$tok2"
log_has mx2-greygate "action=pass reason=triplet .*sender=$s2"
log_has mx1-greygate "action=pass reason=mx-host .*sender=$s2"

echo "smoke: OK"
