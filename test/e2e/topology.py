"""The end-to-end topology: one network namespace per host on a private
bridge, real programs in each.

    sender 203.0.113.5    Postfix that sends by MX lookup
    mx1    198.51.100.10  greygate :25 -> Postfix 127.0.0.1:10025 -> Maildirs
    mx2    192.0.2.20     greygate :25 -> Postfix 127.0.0.1:10025 -> queue -> mx1
    redis  192.0.2.63     redis-server (shared greylisting state)
    dns    192.0.2.53     dnsmasq (example.test MX 10 mx1, MX 20 mx2, ...)

The bridge lives in a namespace of its own (``gge-TAG-br``) and every veth
pair is created directly between that namespace and a host namespace, so
nothing of the topology ever exists in the root namespace, and no packet
can leave it: the bridge has no uplink. All three documentation networks
share the one segment (each host has on-link routes to the other two), so
hosts talk directly without a router.

The MX hosts are configured by docker/greygate-conf.sh and
docker/postfix-setup.sh, the scripts the containers run, with the
addresses of this topology.

``Topology`` is a context manager: ``__exit__`` (and a failed start) kills
every process in the namespaces, deletes them, and removes /etc/netns/NS,
the alternate_config_directories entries and the instance directory.
Running this file by itself brings the topology up for manual
experiments until Enter is pressed.
"""

import contextlib
import ctypes
import json
import os
import pwd
import grp
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
DOCKER_DIR = REPO_ROOT / "docker"

# the harness package (test/harness), also when this file runs as a script
sys.path.insert(0, str(REPO_ROOT / "test"))

from harness.greygate import SANITIZER_MARKERS, GreygateLog, binary_is_sanitized  # noqa: E402
from harness.postfix import (PostfixLog, alt_dirs_get, alt_dirs_set, backdate,  # noqa: E402
                             global_lock, register_alternate_config_dir,
                             unregister_alternate_config_dir)
from harness.smtp import ConnectionClosed, RawSMTP  # noqa: E402
from harness.util import GREYGATE_BIN, pid_alive, wait_until  # noqa: E402

TMP_PARENT = "/var/tmp"
NS_PREFIX = "gge-"
DIR_PREFIX = "gg-e2e-"

DOMAIN = "example.test"
SENDER_DOMAIN = "sender.test"

ADDR = {
    "dns": "192.0.2.53",
    "redis": "192.0.2.63",
    "mx2": "192.0.2.20",
    "mx1": "198.51.100.10",
    "sender": "203.0.113.5",
}
HOSTNAME = {
    "dns": "ns.example.test",
    "redis": "redis.example.test",
    "mx1": "mx1.example.test",
    "mx2": "mx2.example.test",
    "sender": "mail.sender.test",
}
SUBNETS = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
MX1_NETWORK = "198.51.100.0/24"
REDIS_PORT = 6379
REDIS_PREFIX = "gg:"

# Timing of the whole run: greylisting delay, and the sender's retries.
DELAY = 5
SENDER_MIN_BACKOFF = 4
SENDER_MAX_BACKOFF = 8
SENDER_QUEUE_RUN_DELAY = 2
SENDER_CONNECT_TIMEOUT = 2
PROBE_INTERVAL = 2
PROBE_TIMEOUT = 1

# DNS (dnsmasq syntax). host-record makes the PTR records too.
DNS_RECORDS = [
    # the domain under test: mx1 primary, mx2 backup
    f"mx-host={DOMAIN},mx1.{DOMAIN},10",
    f"mx-host={DOMAIN},mx2.{DOMAIN},20",
    f"host-record=mx1.{DOMAIN},{ADDR['mx1']}",
    f"host-record=mx2.{DOMAIN},{ADDR['mx2']}",
    f"host-record=ns.{DOMAIN},{ADDR['dns']}",
    f"host-record=redis.{DOMAIN},{ADDR['redis']}",
    # the sender's own domain
    f"mx-host={SENDER_DOMAIN},mail.{SENDER_DOMAIN},10",
    f"host-record=mail.{SENDER_DOMAIN},{ADDR['sender']}",
    # relay probes against mx2:
    # only MX is mx2 (mx2 would be the primary)
    "mx-host=onlymx2.test,mx2.example.test,10",
    # mx2 is not among the MX hosts
    "mx-host=nomx2.test,mx.nomx2.test,10",
    "host-record=mx.nomx2.test,203.0.113.80",
    # mx2 is a backup, but the primary lies outside permit_mx_backup_networks
    "mx-host=outside.test,mx.outside.test,10",
    "mx-host=outside.test,mx2.example.test,20",
    "host-record=mx.outside.test,203.0.113.99",
    # a primary inside the networks, but one of two primaries is outside
    "mx-host=halfout.test,mx1.example.test,10",
    "mx-host=halfout.test,mx.outside.test,10",
    "mx-host=halfout.test,mx2.example.test,20",
    # every query for broken.test goes to a server that does not answer:
    # a temporary DNS failure (SERVFAIL)
    "server=/broken.test/127.0.0.1#1",
]


class CommandError(RuntimeError):
    pass


def run(args, check=True, timeout=60, env=None, input=None):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env,
                       input=input)
    if check and r.returncode != 0:
        raise CommandError(f"{' '.join(map(str, args))} -> {r.returncode}\n{r.stdout}{r.stderr}")
    return r


# --------------------------------------------------------------------------
# Sockets inside a namespace
# --------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def in_netns(ns, fn):
    """Runs FN() on a fresh thread that has joined network namespace NS
    (setns(2) applies to the calling thread only) and returns its result.
    A socket made there stays in NS for its whole life, whichever thread
    uses it later."""
    box = {}

    def target():
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns({ns}): {os.strerror(e)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:      # handed to the caller
            box["error"] = e

    t = threading.Thread(target=target, name=f"netns-{ns}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class NsSMTP(RawSMTP):
    """RawSMTP over a socket that was connected inside a namespace."""

    def __init__(self, sock, timeout=15):      # pylint: disable=super-init-not-called
        self.timeout = timeout
        self.sock = sock
        self.buf = b""
        self.closed_by_peer = False


# --------------------------------------------------------------------------
# Postfix instances
# --------------------------------------------------------------------------

def _user(name):
    return pwd.getpwnam(name)


class PostfixInstance(PostfixLog):
    """A private Postfix in namespace NS: ROOT/{conf,queue,data,log,mail}.
    ROLE ('primary'/'backup') applies docker/postfix-setup.sh with ENV;
    MAIN then overrides (harness settings, e.g. short retry times)."""

    def __init__(self, topo, name, ns, role=None, env=None, main=None, keep_smtpd=False):
        self.keep_smtpd = keep_smtpd
        self.topo = topo
        self.name = name
        self.ns = ns
        self.role = role
        self.env = dict(env or {})
        self.main = dict(main or {})
        self.root = topo.root / name
        self.master_pid = None
        self.registered = False

    conf = property(lambda self: self.root / "conf")
    queue = property(lambda self: self.root / "queue")
    maildir_base = property(lambda self: self.root / "mail")
    logfile = property(lambda self: self.root / "log" / "postfix.log")

    def in_ns(self, *args):
        """A Postfix command line run in the instance's namespace: Postfix
        commands check inet_interfaces against the local addresses."""
        return ["ip", "netns", "exec", self.ns, *args]

    def postconf(self, *args):
        r = run(["postconf", "-c", str(self.conf), *args])
        for f in ("main.cf", "master.cf"):
            backdate(self.conf / f)
        return r.stdout

    def base_main(self):
        r = self.root
        return {
            "compatibility_level": "3.6",
            "queue_directory": f"{r}/queue",
            "data_directory": f"{r}/data",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_protocols": "ipv4",
            "maillog_file": f"{r}/log/postfix.log",
            "maillog_file_prefixes": f"/var, /dev/stdout, {r}",
            "alias_maps": "",
            "alias_database": "",
            "smtputf8_enable": "yes",
            "delay_warning_time": "0",
            "default_process_limit": "100",
        }

    def setup(self):
        r = self.root
        nobody = _user("nobody")
        postfix = _user("postfix")
        r.mkdir(mode=0o755)
        os.chmod(r, 0o755)
        for sub in ("conf", "queue", "log"):
            (r / sub).mkdir(mode=0o755)
        (r / "data").mkdir(mode=0o700)
        os.chown(r / "data", postfix.pw_uid, postfix.pw_gid)
        (r / "mail").mkdir(mode=0o755)
        os.chown(r / "mail", nobody.pw_uid, nobody.pw_gid)
        with open(self.conf / "main.cf", "w") as f:
            for k, v in self.base_main().items():
                f.write(f"{k} = {v}\n")
        shutil.copy("/etc/postfix/master.cf", self.conf / "master.cf")
        for f in ("main.cf", "master.cf"):
            backdate(self.conf / f)
        if self.role:
            env = dict(os.environ)
            env.update(self.env)
            env["GG_ROLE"] = self.role
            env.setdefault("GG_MAIL_BASE", str(r / "mail"))
            env.setdefault("GG_VMAIL_UID", str(nobody.pw_uid))
            env.setdefault("GG_VMAIL_GID", str(nobody.pw_gid))
            run(["sh", str(DOCKER_DIR / "postfix-setup.sh"), str(self.conf)], env=env)
        else:
            self.postconf("-F", "*/*/chroot = n")
            if not self.keep_smtpd:
                self.postconf("-MX", "smtp/inet")
        if self.main:
            self.postconf("-e", *[f"{k} = {v}" for k, v in self.main.items()])
        for f in ("main.cf", "master.cf"):
            backdate(self.conf / f)
        # in the namespace: inet_interfaces may name its addresses
        run(self.in_ns("postfix", "-c", str(self.conf), "check"))

    def start(self):
        register_alternate_config_dir(str(self.conf))
        self.registered = True
        r = run(self.in_ns("postfix", "-c", str(self.conf), "start"), check=False, timeout=90)
        if r.returncode != 0:
            raise CommandError(f"postfix {self.name} start failed:\n{r.stdout}{r.stderr}\n"
                               f"{self.log()}")
        pidfile = self.queue / "pid" / "master.pid"
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 20,
                   what=f"postfix {self.name} master.pid")
        self.master_pid = int(pidfile.read_text().strip())
        return self

    def stop(self):
        if self.master_pid and pid_alive(self.master_pid):
            run(self.in_ns("postfix", "-c", str(self.conf), "stop"), check=False, timeout=30)
            with contextlib.suppress(AssertionError):
                wait_until(lambda: not pid_alive(self.master_pid), 10, interval=0.1,
                           what=f"postfix {self.name} to stop")

    def unregister(self):
        if self.registered:
            unregister_alternate_config_dir(str(self.conf))
            self.registered = False

    # -- queue, log, mail
    def queue_json(self):
        """postqueue -j: one dict per queued message."""
        r = run(self.in_ns("postqueue", "-c", str(self.conf), "-j"), check=False, timeout=30)
        out = []
        for line in r.stdout.splitlines():
            line = line.strip()
            if line:
                out.append(json.loads(line))
        return out

    def queued_for(self, needle):
        """Queued messages whose sender or a recipient contains NEEDLE."""
        return [m for m in self.queue_json()
                if needle in m.get("sender", "")
                or any(needle in rc.get("address", "") for rc in m.get("recipients", []))]

    def queue_listing(self):
        return run(self.in_ns("postqueue", "-c", str(self.conf), "-p"), check=False,
                   timeout=30).stdout

    def flush(self):
        run(self.in_ns("postqueue", "-c", str(self.conf), "-f"), check=False, timeout=30)

    def sync_log(self):
        """A marker through postlogd: every line logged before is in the file."""
        marker = f"gg-sync-{random.getrandbits(48):x}"
        run(self.in_ns("postlog", "-c", str(self.conf), "-t", "gg-e2e", marker), timeout=30)
        wait_until(lambda: marker in self.log(), 15, what=f"{self.name} log marker")

    def sendmail(self, sender, rcpts, message):
        """Injects MESSAGE (bytes, LF line ends) with sendmail(1) -C."""
        r = subprocess.run(self.in_ns("sendmail", "-C", str(self.conf), "-i", "-f", sender, "--",
                                      *rcpts),
                           input=message, capture_output=True, timeout=30)
        if r.returncode != 0:
            raise CommandError(f"sendmail -> {r.returncode}: {r.stderr.decode(errors='replace')}")

    def maildir_files(self, domain=None, user=None):
        """Every delivered file under the Maildir base (ROLE primary:
        BASE/DOMAIN/USER/{new,cur}/*)."""
        base = self.maildir_base
        if domain:
            base = base / domain
            if user:
                base = base / user
        out = []
        for sub in ("new", "cur"):
            out += [p for p in base.rglob(f"{sub}/*") if p.is_file()]
        return sorted(out)


# --------------------------------------------------------------------------
# greygate instances
# --------------------------------------------------------------------------

class GreygateInstance(GreygateLog):
    """greygate in namespace NS, configured by docker/greygate-conf.sh with
    ENV, running as nobody (like the container's non-root user; port 25 is
    allowed by net.ipv4.ip_unprivileged_port_start=0 in the namespace)."""

    def __init__(self, topo, name, ns, env):
        self.topo = topo
        self.name = name
        self.ns = ns
        self.env = dict(env)
        self.dir = topo.root / f"{name}-greygate"
        self.conf_path = self.dir / "greygate.conf"
        self.log_path = self.dir / "greygate.log"
        self.proc = None
        self.logf = None

    def setup(self):
        nobody = _user("nobody")
        self.dir.mkdir(mode=0o755)
        run_dir = self.dir / "run"
        run_dir.mkdir(mode=0o755)
        os.chown(run_dir, nobody.pw_uid, nobody.pw_gid)
        env = dict(os.environ)
        env.update(self.env)
        env["GG_CONTROL_SOCKET"] = str(run_dir / "control.sock")
        text = run(["sh", str(DOCKER_DIR / "greygate-conf.sh")], env=env).stdout
        self.conf_path.write_text(text)
        run([GREYGATE_BIN, "-t", "-c", str(self.conf_path)])

    def start(self, timeout=20, ready=None):
        """Starts greygate and waits until READY() (default: the
        container's HEALTHCHECK passes: a banner on 127.0.0.1:25, which
        needs the Postfix behind it)."""
        if not (os.path.isfile(GREYGATE_BIN) and os.access(GREYGATE_BIN, os.X_OK)):
            raise CommandError(f"greygate binary not found: {GREYGATE_BIN} (run `make`)")
        nobody = _user("nobody")
        group = grp.getgrgid(nobody.pw_gid).gr_name
        self.logf = open(self.log_path, "ab")
        env = dict(os.environ)
        if binary_is_sanitized(GREYGATE_BIN):
            env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":fast_unwind_on_malloc=0").lstrip(":")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns,
             "setpriv", f"--reuid={nobody.pw_name}", f"--regid={group}", "--clear-groups",
             GREYGATE_BIN, "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf, env=env,
            start_new_session=True)
        ready = ready or (lambda: self.healthcheck() == 0)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise CommandError(f"greygate {self.name} exited with {self.proc.returncode}:\n"
                                   + self.log_text())
            if ready():
                return self
            if time.monotonic() > deadline:
                raise CommandError(f"greygate {self.name} not healthy after {timeout}s:\n"
                                   + self.log_text())
            time.sleep(0.1)

    def healthcheck(self, host="127.0.0.1", port=25):
        r = run(["ip", "netns", "exec", self.ns, "bash", str(DOCKER_DIR / "healthcheck.sh"),
                 host, str(port)], check=False, timeout=30)
        return r.returncode

    def stop(self):
        """SIGTERM; returns a list of problems (exit status, sanitizer)."""
        if self.proc is None:
            return []
        problems = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(45)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append(f"greygate {self.name} did not exit after SIGTERM; killed")
        if self.proc.returncode != 0 and not problems:
            problems.append(f"greygate {self.name} exited with status {self.proc.returncode}")
        self.logf.close()
        bad = [l for l in self.log_lines() if any(m in l for m in SANITIZER_MARKERS)]
        if bad:
            problems.append(f"sanitizer report in greygate {self.name} log:\n" + "\n".join(bad[:20]))
        self.proc = None
        return problems

    # -- log: GreygateLog
    event_timeout, event_interval = 15, 0.1

    def log_label(self):
        return f"greygate {self.name}"


# --------------------------------------------------------------------------
# The topology
# --------------------------------------------------------------------------

def _netns_list():
    r = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def _ns_pids(ns):
    r = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


def _kill_ns_processes(ns, grace=5.0):
    """Every process in namespace NS (all of them ours: nobody else enters
    a namespace of this run) gets SIGTERM, then SIGKILL."""
    pids = _ns_pids(ns)
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in _ns_pids(ns)):
        time.sleep(0.1)
    for p in _ns_pids(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(pid_alive(p) for p in _ns_pids(ns)):
        time.sleep(0.1)


def _delete_ns(ns):
    _kill_ns_processes(ns)
    run(["ip", "netns", "del", ns], check=False)
    shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)


def sweep_stale():
    """Removes what a killed earlier run (SIGKILL, power loss) left: the
    namespaces, /etc/netns entries, alternate_config_directories entries
    and directories of runs whose owner process is gone. Runs that are
    alive (another `make e2e` at the same time) are left alone."""
    live_tags = set()
    for d in Path(TMP_PARENT).glob(DIR_PREFIX + "*"):
        tag = d.name[len(DIR_PREFIX):]
        if (d / "kept").exists():
            continue
        try:
            owner = int((d / "owner").read_text().strip())
        except (OSError, ValueError):
            owner = 0
        if owner and pid_alive(owner):
            live_tags.add(tag)
            continue
        # no owner yet: a run that is just starting, unless it is old
        with contextlib.suppress(OSError):
            if not owner and time.time() - d.stat().st_mtime < 120:
                live_tags.add(tag)
                continue
        _remove_run(tag, d)
    for ns in _netns_list():
        if ns.startswith(NS_PREFIX):
            tag = ns[len(NS_PREFIX):].split("-", 1)[0]
            if tag not in live_tags and not (Path(TMP_PARENT) / f"{DIR_PREFIX}{tag}").exists():
                _delete_ns(ns)
    if os.path.isdir("/etc/netns"):
        for d in Path("/etc/netns").glob(NS_PREFIX + "*"):
            tag = d.name[len(NS_PREFIX):].split("-", 1)[0]
            if tag not in live_tags and not (Path(TMP_PARENT) / f"{DIR_PREFIX}{tag}").exists():
                shutil.rmtree(d, ignore_errors=True)


def _remove_run(tag, d):
    for ns in _netns_list():
        if ns.startswith(f"{NS_PREFIX}{tag}-"):
            _delete_ns(ns)
    with contextlib.suppress(Exception), global_lock():
        dirs = alt_dirs_get()
        keep = [x for x in dirs if not x.startswith(str(d) + "/")]
        if keep != dirs:
            alt_dirs_set(keep)
    shutil.rmtree(d, ignore_errors=True)


class Topology:
    ROLES = ("dns", "redis", "mx1", "mx2", "sender")

    def __init__(self):
        self.tag = "".join(random.choice("bcdfghjkmnpqrstvwxz") for _ in range(5))
        self.root = Path(TMP_PARENT) / f"{DIR_PREFIX}{self.tag}"
        self.ns = {role: f"{NS_PREFIX}{self.tag}-{role}" for role in self.ROLES}
        self.bridge_ns = f"{NS_PREFIX}{self.tag}-br"
        self.created_ns = []
        self.dnsmasq = None
        self.redis = None
        self.postfix = {}
        self.greygate = {}
        self.problems = []

    # -- context
    def __enter__(self):
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc):
        self.down()
        return False

    # -- plumbing
    def ip(self, *args, ns=None):
        return run(["ip", *(["-n", ns] if ns else []), *args])

    def exec(self, role, args, check=True, timeout=60, input=None):
        return run(["ip", "netns", "exec", self.ns[role], *args], check=check, timeout=timeout,
                   input=input)

    def connect(self, role, host, port, timeout=10, source=None):
        """A TCP socket from ROLE's namespace to HOST:PORT."""
        def mk():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(timeout)
            if source:
                s.bind((source, 0))
            try:
                s.connect((host, port))
            except BaseException:
                s.close()
                raise
            return s
        return in_netns(self.ns[role], mk)

    def smtp(self, role, host, port=25, timeout=15):
        return NsSMTP(self.connect(role, host, port, timeout), timeout)

    def link(self, role, up):
        """Plugs ROLE's cable into the bridge, or pulls it (its own
        interface stays configured and sees NO-CARRIER)."""
        self.ip("link", "set", role, "up" if up else "down", ns=self.bridge_ns)

    def up(self):
        sweep_stale()
        self.root.mkdir(mode=0o755)
        os.chmod(self.root, 0o755)
        (self.root / "owner").write_text(f"{os.getpid()}\n")
        self._network()
        self._dns()
        self._redis()
        self._postfixes()
        self._greygates()

    def _network(self):
        br = self.bridge_ns
        self.ip("netns", "add", br)
        self.created_ns.append(br)
        self.ip("link", "set", "lo", "up", ns=br)
        self.ip("link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0",
                ns=br)
        self.ip("link", "set", "br0", "up", ns=br)
        for role in self.ROLES:
            ns = self.ns[role]
            self.ip("netns", "add", ns)
            self.created_ns.append(ns)
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            # ip netns exec bind-mounts these over /etc/resolv.conf, /etc/hosts
            (etc / "resolv.conf").write_text(
                f"nameserver {ADDR['dns']}\noptions timeout:1 attempts:2\n")
            (etc / "hosts").write_text(
                f"127.0.0.1 localhost\n{ADDR[role]} {HOSTNAME[role]}\n")
            self.ip("link", "set", "lo", "up", ns=ns)
            # the veth pair goes straight between the bridge's namespace and
            # this one: it never exists in the root namespace
            self.ip("link", "add", role, "type", "veth", "peer", "name", "eth0", "netns", ns,
                    ns=br)
            self.ip("link", "set", role, "master", "br0", ns=br)
            self.ip("link", "set", role, "up", ns=br)
            self.exec(role, ["sysctl", "-q", "-w",
                             "net.ipv6.conf.all.disable_ipv6=1",
                             "net.ipv6.conf.default.disable_ipv6=1",
                             "net.ipv4.ip_unprivileged_port_start=0"])
            self.ip("addr", "add", f"{ADDR[role]}/24", "dev", "eth0", ns=ns)
            self.ip("link", "set", "eth0", "up", ns=ns)
            own = ".".join(ADDR[role].split(".")[:3]) + ".0/24"
            for net in SUBNETS:
                if net != own:
                    self.ip("route", "add", net, "dev", "eth0", "scope", "link", ns=ns)

    def _dns(self):
        self.dns_start()

    def dns_start(self):
        d = self.root / "dns"
        d.mkdir(mode=0o755, exist_ok=True)
        conf = d / "dnsmasq.conf"
        lines = [
            "port=53", f"listen-address={ADDR['dns']}", "bind-interfaces",
            "no-resolv", "no-hosts", "no-negcache", "log-queries",
            f"log-facility={d / 'dnsmasq.log'}",
            # answer for these zones from the records below, and nothing else
            "local=/test/", "local=/2.0.192.in-addr.arpa/",
            "local=/100.51.198.in-addr.arpa/", "local=/113.0.203.in-addr.arpa/",
            *DNS_RECORDS,
        ]
        conf.write_text("\n".join(lines) + "\n")
        self.dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", self.ns["dns"], "dnsmasq", "--keep-in-foreground",
             "-C", str(conf), "--user=root", "--pid-file="],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(d / "stderr.log", "wb"), start_new_session=True)
        wait_until(lambda: self.dns_answers() or self.dnsmasq.poll() is not None, 10,
                   what="dnsmasq answering")
        if self.dnsmasq.poll() is not None:
            raise CommandError("dnsmasq did not start: " + (d / "stderr.log").read_text())

    def dns_stop(self):
        if self.dnsmasq and self.dnsmasq.poll() is None:
            self.dnsmasq.kill()
            self.dnsmasq.wait(10)

    def dns_answers(self):
        q = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
             b"\x03mx1\x07example\x04test\x00\x00\x01\x00\x01")

        def ask():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.3)
                try:
                    s.sendto(q, (ADDR["dns"], 53))
                    return len(s.recv(512)) >= 12
                except OSError:
                    return False
        return in_netns(self.ns["sender"], ask)

    def redis_start(self):
        d = self.root / "redis"
        d.mkdir(mode=0o755, exist_ok=True)
        self.redis = subprocess.Popen(
            ["ip", "netns", "exec", self.ns["redis"], "redis-server",
             "--bind", ADDR["redis"], "--port", str(REDIS_PORT), "--protected-mode", "no",
             "--save", "", "--appendonly", "no", "--dir", str(d),
             "--logfile", str(d / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        wait_until(lambda: self.redis_cli("PING", check=False).strip() == "PONG"
                   or self.redis.poll() is not None, 10, interval=0.1, what="redis PONG")
        if self.redis.poll() is not None:
            raise CommandError("redis-server did not start: "
                               + (d / "redis.log").read_text(errors="replace"))

    def redis_kill(self):
        if self.redis and self.redis.poll() is None:
            self.redis.kill()
            self.redis.wait(10)

    def _redis(self):
        self.redis_start()

    def redis_cli(self, *args, check=True):
        r = self.exec("redis", ["redis-cli", "-h", ADDR["redis"], "-p", str(REDIS_PORT), "--raw",
                                *args], check=check, timeout=15)
        return r.stdout

    def redis_triplets(self):
        """Every triplet hash in Redis: {'key', 'f', 'p', 'n', 's', 'r'}."""
        keys = self.redis_cli("--scan", "--pattern", f"{REDIS_PREFIX}t:*").split()
        out = []
        for k in keys:
            vals = self.redis_cli("HGETALL", k).splitlines()
            d = dict(zip(vals[0::2], vals[1::2]))
            d["key"] = k
            out.append(d)
        return out

    def mx_env(self, role):
        """The GG_* settings of an MX host: docker/ROLE.env (role, name,
        domains: the same as the containers') plus this topology's
        addresses and short timings."""
        env = read_env_file(DOCKER_DIR / f"{role}.env")
        env.update({
            "GG_MY_ADDRESSES": ADDR[role],
            "GG_REDIS_HOST": ADDR["redis"],
            "GG_REDIS_PORT": str(REDIS_PORT),
            "GG_REDIS_PREFIX": REDIS_PREFIX,
            "GG_DNS_SERVERS": ADDR["dns"],
            "GG_DNS_TIMEOUT_MS": "1000",
            "GG_DNS_TRIES": "2",
            "GG_DELAY": str(DELAY),
        })
        if env["GG_ROLE"] == "backup":
            env.update({
                "GG_PRIMARY_NETWORKS": MX1_NETWORK,
                "GG_ETRN_NETWORKS": f"{ADDR['mx1']}/32",
                "GG_PROBE_INTERVAL": str(PROBE_INTERVAL),
                "GG_PROBE_TIMEOUT": str(PROBE_TIMEOUT),
            })
        return env

    # The sending Postfix instances, all in the sender's namespace; the
    # first one also runs an smtpd on port 25 (test/chaos adds more).
    SENDERS = ("sender",)

    def mx_main(self, role):
        """main.cf settings of ROLE's Postfix on top of postfix-setup.sh's.
        Postfix's 30 s connect timeout would only slow the outage test down
        (mx2 -> mx1 while mx1 is cut off)."""
        return {"smtp_connect_timeout": "5s"}

    def _postfixes(self):
        for role in ("mx1", "mx2"):
            env = self.mx_env(role)
            pf = PostfixInstance(self, role, self.ns[role], role=env["GG_ROLE"], env=env,
                                 main=self.mx_main(role))
            self.postfix[role] = pf
            pf.setup()
        for name in self.SENDERS:
            s = PostfixInstance(self, name, self.ns["sender"], keep_smtpd=name == self.SENDERS[0],
                                main=self.sender_main(name))
            self.postfix[name] = s
            s.setup()
        for pf in self.postfix.values():
            pf.start()
        self._smtpd_banners()

    def sender_main(self, name):
        """A sender: a plain Postfix that sends by MX lookup (no relayhost)
        with short retry times, and keeps its own domain's mail (bounces,
        delay notices) in a Maildir of its own."""
        return {
            "myhostname": HOSTNAME["sender"],
            "mydomain": SENDER_DOMAIN,
            "myorigin": SENDER_DOMAIN,
            "mydestination": "localhost",
            # its own smtpd on port 25 takes the bounces and delay notices
            # that would come back (the tests assert there are none)
            "inet_interfaces": ADDR["sender"],
            "smtp_bind_address": ADDR["sender"],
            "mynetworks": "127.0.0.0/8",
            "relayhost": "",
            "smtp_host_lookup": "dns",
            "disable_dns_lookups": "no",
            "virtual_mailbox_domains": SENDER_DOMAIN,
            "virtual_mailbox_base": str(self.root / name / "mail"),
            "virtual_mailbox_maps": "static:box/",
            "virtual_uid_maps": f"static:{_user('nobody').pw_uid}",
            "virtual_gid_maps": f"static:{_user('nobody').pw_gid}",
            "minimal_backoff_time": f"{SENDER_MIN_BACKOFF}s",
            "maximal_backoff_time": f"{SENDER_MAX_BACKOFF}s",
            "queue_run_delay": f"{SENDER_QUEUE_RUN_DELAY}s",
            "smtp_connect_timeout": f"{SENDER_CONNECT_TIMEOUT}s",
            "maximal_queue_lifetime": "1h",
            "bounce_queue_lifetime": "1h",
        }

    def _smtpd_banners(self):
        for role in ("mx1", "mx2"):
            # smtpd behind greygate answers in its namespace
            def banner(role=role):
                try:
                    with self.smtp(role, "127.0.0.1", 10025, timeout=5) as c:
                        ok = c.reply().code == 220
                        c.cmd("QUIT")
                        return ok
                except (OSError, ConnectionClosed):
                    return False
            wait_until(banner, 30, interval=0.2, what=f"postfix smtpd in {role}")

    def _greygates(self):
        for role in ("mx1", "mx2"):
            gg = GreygateInstance(self, role, self.ns[role], self.mx_env(role))
            self.greygate[role] = gg
            gg.setup()
        for gg in self.greygate.values():
            gg.start()
        # mx2's hand-over saw the primary up once (its reference state)
        self.greygate["mx2"].wait_event("probe", state="up", primary=HOSTNAME["mx1"])

    def down(self):
        for name, gg in list(self.greygate.items()):
            try:
                self.problems += gg.stop()
            except Exception as e:      # teardown goes on whatever happens
                self.problems.append(f"greygate {name} stop: {e}")
        for pf in self.postfix.values():
            with contextlib.suppress(Exception):
                pf.stop()
        for p in (self.dnsmasq, self.redis):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for ns in reversed(self.created_ns):
            _delete_ns(ns)
        for ns in self.ns.values():
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        for pf in self.postfix.values():
            with contextlib.suppress(Exception):
                pf.unregister()
        # anything registered by a start that failed half-way
        with contextlib.suppress(Exception), global_lock():
            dirs = alt_dirs_get()
            keep = [x for x in dirs if not x.startswith(str(self.root) + "/")]
            if keep != dirs:
                alt_dirs_set(keep)
        if os.environ.get("GG_KEEP_TMP"):
            # kept for reading; later runs leave it alone
            with contextlib.suppress(OSError):
                (self.root / "owner").unlink()
                (self.root / "kept").write_text("GG_KEEP_TMP\n")
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        self.created_ns = []


def mailboxes():
    """The mailboxes of example.test (docker/mx1.env, GG_MAILBOXES)."""
    return read_env_file(DOCKER_DIR / "mx1.env")["GG_MAILBOXES"].replace(",", " ").split()


def read_env_file(path):
    """KEY=VALUE lines (compose env_file syntax without quotes), # comments."""
    env = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        k, _, v = line.partition("=")
        env[k.strip()] = v.strip()
    return env


if __name__ == "__main__":
    # Manual experiments: bring the topology up, print how to reach it,
    # tear it down on Enter or Ctrl-C.
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    with Topology() as t:
        print(f"topology up in {t.root}")
        for role, ns in t.ns.items():
            print(f"  {role:7} {ADDR[role]:15} ip netns exec {ns} ...")
        with contextlib.suppress(KeyboardInterrupt, EOFError):
            input("Enter tears it down. ")
    print("torn down")
