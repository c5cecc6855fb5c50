#!/bin/sh
# The Debian packages the end-to-end suite needs on top of the build's;
# `make e2e` and `make chaos` (test/chaos: the plot, nftables) run it first.
set -eu
exec sh "$(dirname "$0")/../../tools/deps.sh" python3-yaml redis-tools util-linux bash shellcheck \
	python3-matplotlib nftables
