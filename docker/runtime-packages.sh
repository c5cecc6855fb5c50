#!/bin/sh
# Prints the Debian packages that hold the shared libraries the given
# binaries load (libc6 left out: every image has it), one a line. The
# Dockerfile's build stage runs it on greygate and greygate-ctl, and the
# runtime stage installs exactly these: no -dev packages, no compiler,
# nothing forgotten when a library is added to the build.
#
#   runtime-packages.sh build/greygate build/greygate-ctl
set -eu
[ $# -gt 0 ] || {
	echo "usage: $0 BINARY..." >&2
	exit 2
}
libs=$(ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u)
[ -n "$libs" ] || {
	echo "runtime-packages.sh: ldd found no libraries" >&2
	exit 1
}
pkgs=""
for lib in $libs; do
	# /lib and /usr/lib are one on Debian (usrmerge): dpkg knows one of them
	owner=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null ||
		dpkg -S "/usr$lib" 2>/dev/null) || {
		echo "runtime-packages.sh: no package holds $lib" >&2
		exit 1
	}
	pkgs="$pkgs ${owner%%:*}"
done
# shellcheck disable=SC2086 # one package a word
printf '%s\n' $pkgs | sort -u | grep -vx 'libc6' || true
