#!/bin/sh
# Installs the Debian packages greygate's build and tests need, when some are
# missing: as root with apt-get, otherwise by telling what to run.
#   sh tools/deps.sh [EXTRA-PACKAGE...]   (the e2e suite and the bench add theirs)
set -eu
PKGS="gcc make pkg-config libevent-dev libhiredis-dev libc-ares-dev libconfig-dev
      libssl-dev libpsl-dev libcmocka-dev python3 python3-pytest postfix swaks redis-server
      dnsmasq-base iproute2 procps openssl clang libclang-rt-14-dev mandoc
      prometheus $*"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "greygate needs these Debian packages:$missing" >&2
	echo "install them with: sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "installing:$missing"
# Postfix must not ask questions, nor listen on public addresses: the tests
# start private instances of their own.
echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
echo "postfix postfix/mailname string $(hostname)" | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
