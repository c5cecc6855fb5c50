#!/bin/sh
# What `make bench` needs beyond `make deps`: postgrey for the comparison
# rows (Postfix's check_policy_service to postgrey, the setup users have
# today). As root it is installed; otherwise bench.py skips those rows.
set -eu
dpkg-query -W -f='${Status}' postgrey 2>/dev/null | grep -q "install ok installed" && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "bench: postgrey is not installed (sudo apt-get install -y postgrey); its rows are skipped" >&2
	exit 0
fi
echo "bench: installing postgrey (only run privately by bench.py; its own service stays stopped)"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends postgrey >/dev/null ||
	{ apt-get update -qq && apt-get install -y -qq --no-install-recommends postgrey >/dev/null; }
