#!/bin/sh
# The last step of `make check`: the end-to-end suite (make e2e) when this
# machine can run it -- root, network namespaces with bridges and veth
# pairs -- and otherwise one line that says it was skipped, and why.
#
#   sh test/e2e/run-if-possible.sh [MAKE]
make=${1:-make}

skip() {
	echo "e2e: skipped ($*); run 'make e2e' as root on a machine with network namespaces"
	exit 0
}

[ "$(id -u)" = 0 ] || skip "not root"
command -v ip >/dev/null 2>&1 || skip "iproute2 (ip) is not installed"
probe="gge-probe-$$"
ip netns add "$probe" 2>/dev/null || skip "'ip netns add' does not work here"
ok=yes
ip -n "$probe" link add br0 type bridge 2>/dev/null || ok="no bridge support"
if [ "$ok" = yes ]; then
	ip -n "$probe" link add v0 type veth peer name v1 2>/dev/null || ok="no veth support"
fi
ip netns del "$probe" 2>/dev/null
[ "$ok" = yes ] || skip "$ok in this kernel"

echo "e2e: running the end-to-end suite (network namespaces, about 2 minutes)"
exec $make e2e
