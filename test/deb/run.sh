#!/bin/sh
# make deb-test (as root): builds the Debian package from this tree with
# `dpkg-buildpackage -us -uc -b`, runs lintian on it (a warning or error
# fails), installs it with apt into a fresh debootstrap chroot of bookworm,
# and checks what an administrator gets: the greygate user, its state
# directory, the unit enabled but held back by /etc/greygate/unconfigured,
# the configuration as a conffile that `greygate -t` accepts. Then it starts
# the installed greygate with a test configuration, sees the first RCPT
# greylisted (450) and greygate-ctl count it, stops it (exit 0, state saved
# as the greygate user), reinstalls over an edited configuration (kept, and
# no start marker again), and purges the package. 3 to 4 minutes.
#   sh test/deb/run.sh BUILD_DIR       DEB_TEST_MIRROR overrides the mirror
set -eu
[ "$(id -u)" = 0 ] || { echo "deb-test: needs root (debootstrap, chroot)" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
W=$(realpath -m "${1:-build}/deb-test")
root="$W/root"
gg_pid=""

cleanup() {
	[ -n "$gg_pid" ] && kill -KILL "$gg_pid" 2>/dev/null || true
	mountpoint -q "$root/proc" 2>/dev/null && umount "$root/proc" || true
}
trap cleanup EXIT INT TERM

fail() {
	echo "deb-test: FAIL: $*" >&2
	exit 1
}
step() {
	echo "deb-test: $* ($(date -u +%H:%M:%S))"
}
in_root() {
	chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"
}

# a run killed before its clean-up leaves the chroot's /proc mounted
mountpoint -q "$root/proc" 2>/dev/null && umount "$root/proc"
rm -rf --one-file-system "$W"
mkdir -p "$W/src"

step "copying the source tree"
cd "$top"
if git rev-parse --git-dir >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -C "$W/src" -xf -
else
	tar --exclude='./build*' -cf - . | tar -C "$W/src" -xf -
fi

step "dpkg-buildpackage -us -uc -b"
# the unit tests ran in `make check`; DEB_BUILD_OPTIONS= to run them here too
(cd "$W/src" && DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS-nocheck}" dpkg-buildpackage -us -uc -b) \
	>"$W/build.log" 2>&1 || { tail -40 "$W/build.log"; fail "dpkg-buildpackage (log: $W/build.log)"; }
deb=$(ls "$W"/greygate_*.deb)
[ -f "$deb" ] || fail "no greygate_*.deb in $W"
echo "deb-test: built $deb"

step "lintian"
lintian --allow-root --fail-on error,warning --info "$W"/greygate_*.changes || fail "lintian findings above"

mirror=${DEB_TEST_MIRROR:-$(python3 "$here/mirror.py")}
[ -n "$mirror" ] || fail "no bookworm mirror in /etc/apt/sources.list*; set DEB_TEST_MIRROR"
step "debootstrap --variant=minbase bookworm from $mirror"
# the archive is reached over the network: a failed fetch is tried again
tries=0
until debootstrap --variant=minbase bookworm "$root" "$mirror" >"$W/debootstrap.log" 2>&1; do
	tries=$((tries + 1))
	[ $tries -lt 3 ] || { tail -20 "$W/debootstrap.log"; fail "debootstrap, 3 tries (log: $W/debootstrap.log)"; }
	echo "deb-test: debootstrap failed: $(tail -1 "$W/debootstrap.log"); again"
	rm -rf --one-file-system "$root"
	sleep 5
done
mount -t proc proc "$root/proc"

step "apt-get install ./$(basename "$deb")"
cp "$deb" "$root/tmp/"
in_root apt-get install -y -q -o Acquire::Retries=3 --no-install-recommends "/tmp/$(basename "$deb")" >"$W/install.log" 2>&1 ||
	{ tail -30 "$W/install.log"; fail "installing the package (log: $W/install.log)"; }

step "checking the installation"
in_root getent passwd greygate >/dev/null || fail "no greygate user"
[ "$(in_root stat -c %U /var/lib/greygate)" = greygate ] || fail "/var/lib/greygate is not greygate's"
[ -f "$root/lib/systemd/system/greygate.service" ] || fail "no unit in /lib/systemd/system"
[ -L "$root/etc/systemd/system/multi-user.target.wants/greygate.service" ] || fail "unit not enabled"
grep -q '^ConditionPathExists=!/etc/greygate/unconfigured$' "$root/lib/systemd/system/greygate.service" ||
	fail "the unit does not wait for /etc/greygate/unconfigured to go"
[ -f "$root/etc/greygate/unconfigured" ] || fail "no /etc/greygate/unconfigured after a first install"
in_root dpkg-query -W -f='${Conffiles}\n' greygate | grep -q '^ /etc/greygate/greygate.conf ' ||
	fail "/etc/greygate/greygate.conf is not a conffile"
in_root /usr/sbin/greygate -t -c /etc/greygate/greygate.conf || fail "the installed configuration does not load"
version=$(in_root dpkg-query -W -f='${Version}' greygate)
in_root /usr/sbin/greygate -V | grep -q "^greygate ${version%%-*} " ||
	fail "greygate -V does not say the package's version $version"
for page in man8/greygate.8 man8/greygate-ctl.8 man5/greygate.conf.5; do
	[ -f "$root/usr/share/man/$page.gz" ] || fail "no $page"
done

step "starting the installed greygate"
port=$(python3 "$here/smtp_probe.py" --free-port)
cat >"$root/etc/greygate/test.conf" <<CONF
myhostname = "mx.deb-test.example";
listen = [ "127.0.0.1:$port" ];
# no backend: the first RCPT of a new triplet is decided before one is needed
backend = { address = "127.0.0.1:9"; refuse_when_down = false; };
mynetworks = [ "127.0.0.1/32" ];
local_domains = [ "example.org" ];
reject_unknown_sender_domain = false;
store = { type = "memory"; file = "/var/lib/greygate/greylist.db"; };
control_socket = "/run/greygate/control.sock";
admin = { listen = ""; };
user = "greygate"; group = "greygate";
CONF
# what the unit's RuntimeDirectory= makes
in_root install -d -o greygate -g greygate /run/greygate
chroot "$root" /usr/sbin/greygate -c /etc/greygate/test.conf 2>"$W/greygate.log" &
gg_pid=$!
i=0
until grep -q 'event=ready' "$W/greygate.log"; do
	kill -0 "$gg_pid" 2>/dev/null || { cat "$W/greygate.log"; fail "greygate exited at start"; }
	i=$((i + 1))
	[ $i -lt 600 ] || { cat "$W/greygate.log"; fail "greygate not ready after 60 s"; }
	sleep 0.1
done
python3 "$here/smtp_probe.py" 127.0.0.1 "$port" || { cat "$W/greygate.log"; fail "no 450 for a first RCPT"; }
in_root /usr/sbin/greygate-ctl -c /etc/greygate/test.conf stats >"$W/stats.txt" ||
	fail "greygate-ctl stats: $(cat "$W/stats.txt")"
grep -q 'triplets=1 ' "$W/stats.txt" || fail "greygate-ctl stats does not show the pending triplet: $(cat "$W/stats.txt")"
kill -TERM "$gg_pid"
rc=0
wait "$gg_pid" || rc=$?
gg_pid=""
[ $rc = 0 ] || { cat "$W/greygate.log"; fail "greygate exited $rc after SIGTERM"; }
[ "$(in_root stat -c %U /var/lib/greygate/greylist.db)" = greygate ] ||
	fail "the store was not saved as greygate in /var/lib/greygate"
grep -q 'event=decision action=greylist' "$W/greygate.log" || fail "no greylist decision logged"

step "reinstalling over an edited configuration"
sed -i 's/^myhostname = .*/myhostname = "mx.edited.example";/' "$root/etc/greygate/greygate.conf"
rm "$root/etc/greygate/unconfigured"
in_root apt-get install -y -q --reinstall "/tmp/$(basename "$deb")" >"$W/reinstall.log" 2>&1 ||
	{ tail -20 "$W/reinstall.log"; fail "reinstalling (log: $W/reinstall.log)"; }
grep -q '^myhostname = "mx.edited.example";$' "$root/etc/greygate/greygate.conf" ||
	fail "a reinstall replaced the edited /etc/greygate/greygate.conf"
[ ! -e "$root/etc/greygate/unconfigured" ] || fail "a reinstall put /etc/greygate/unconfigured back"

step "apt-get purge greygate"
rm -f "$root/etc/greygate/test.conf"
in_root apt-get purge -y -q greygate >"$W/purge.log" 2>&1 || { tail -20 "$W/purge.log"; fail "purge"; }
for gone in /var/lib/greygate /etc/greygate /lib/systemd/system/greygate.service \
	    /etc/systemd/system/multi-user.target.wants/greygate.service /usr/sbin/greygate; do
	[ ! -e "$root$gone" ] && [ ! -L "$root$gone" ] || fail "$gone is left after purge"
done

cleanup
rm -rf --one-file-system "$root"
step "ok: built, lintian clean, installed, started, greylisted, purged"
