#!/bin/sh
# Creates the image the Dockerfile starts from, debian:bookworm-slim, on a
# machine without a container registry: debootstrap --variant=minbase into
# a temporary directory, from the Debian mirror this machine's own apt
# sources name (read now, never written down in the repository), then
# `docker import`. Does nothing when the image is already there (a user
# with Docker Hub pulls the real one and never needs this script).
#
#   sh docker/base-image.sh            # as root (debootstrap needs it)
#
# The rootfs is trimmed as Debian's slim images are (no manuals, docs or
# locales installed by later apt-get runs), and its apt sources point at
# the same mirror, so `apt-get install` in `docker build` works when the
# build containers can reach it (they use the bridge network and the
# host's resolver).
set -eu

image=${BASE_IMAGE:-debian:bookworm-slim}
suite=${BASE_SUITE:-bookworm}

if docker image inspect "$image" >/dev/null 2>&1; then
	echo "base-image: $image is present"
	exit 0
fi
command -v debootstrap >/dev/null || {
	echo "base-image: debootstrap is missing (apt-get install debootstrap); $image not created" >&2
	exit 1
}

# The first mirror of the machine's apt sources that serves $suite/main,
# one-line (sources.list) or deb822 (*.sources) format.
mirror() {
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		# deb [options] URI SUITE COMPONENT...
		awk -v s="$suite" '$1 == "deb" {
			i = 2
			if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
			if ($(i + 1) == s) { print $i; exit }
		}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk -v s="$suite" '
			/^[ \t]*$/ { if (u != "" && ok) { print u; exit } u = ""; ok = 0; next }
			tolower($1) == "uris:" { u = $2 }
			tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
			END { if (u != "" && ok) print u }' "$f"
	done
}
url=${DEBIAN_MIRROR:-$(mirror | head -n 1)}
[ -n "$url" ] || {
	echo "base-image: no apt source for $suite in /etc/apt (set DEBIAN_MIRROR); $image not created" >&2
	exit 1
}

root=$(mktemp -d "${TMPDIR:-/tmp}/greygate-rootfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
trap 'exit 130' INT TERM
echo "base-image: debootstrap --variant=minbase $suite from $url"
debootstrap --variant=minbase "$suite" "$root" "$url" >"$root.log" 2>&1 || {
	tail -n 20 "$root.log" >&2
	rm -f "$root.log"
	echo "base-image: debootstrap failed; $image not created" >&2
	exit 1
}
rm -f "$root.log"

# what later apt-get runs leave out; they keep neither their downloads nor
# the package caches (/var/cache/apt/*.bin: 77 MB after an update)
cat >"$root/etc/dpkg/dpkg.cfg.d/greygate-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
cat >"$root/etc/apt/apt.conf.d/greygate-slim" <<'CFG'
APT::Install-Recommends "false";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
CFG
apt_get_clean() { rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*; }
apt_get_clean
find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
# a container gets its own resolv.conf and hostname from the engine
: >"$root/etc/resolv.conf"
: >"$root/etc/hostname"

tar -C "$root" --numeric-owner -c . |
	docker import --change 'CMD ["bash"]' - "$image" >/dev/null
echo "base-image: created $image ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
