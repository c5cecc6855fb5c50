#!/bin/sh
# Installs the Debian packages the end-to-end suite needs on top of the
# build's (tools/deps.sh), when some are missing: as root with apt-get,
# otherwise by telling what to run. `make e2e` runs it first.
set -eu
PKGS="python3 python3-pytest python3-yaml postfix swaks redis-server redis-tools
      dnsmasq-base iproute2 procps util-linux bash shellcheck"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "the e2e suite needs these Debian packages:$missing" >&2
	echo "install them with: sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "installing:$missing"
# Postfix must not ask questions, nor listen on public addresses: the suite
# starts private instances of its own in network namespaces.
echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
echo "postfix postfix/mailname string $(hostname)" | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
