"""Fixtures and helpers for greygate's functional tests.

Two moving parts:

* ``PostfixBackend``: a private Postfix instance (own config, queue, data and
  log directory under /var/tmp) whose smtpd listens on 127.0.0.1:<free port>,
  trusts 127.0.0.0/8 for XCLIENT and delivers every recipient of the test
  domains into one Maildir (virtual(8), static map). Nothing leaves the box:
  every other transport is ``error:``.
* ``Greygate``: the greygate binary under test, started in the foreground
  with a generated libconfig file, its stderr captured to a file.

Everything binds to 127.0.0.x only. Every process started here is stopped
at teardown, on every path.
"""

import contextlib
import fcntl
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent          # parent of test/
GREYGATE_BIN = os.environ.get("GREYGATE_BIN", str(REPO_ROOT / "build" / "greygate"))

POSTFIX_MAIN_CF = Path("/etc/postfix/main.cf")
POSTFIX_MASTER_CF = Path("/etc/postfix/master.cf")
TMP_PARENT = "/var/tmp"                 # under a default maillog_file_prefix
LOCK_DIR = "/etc/postfix"      # flock()ed while we edit its main.cf

# Domains the backend delivers into the Maildir. Which of them greygate lets
# through is greygate's decision (local_domains / relay_domains / mynetworks).
BACKEND_DOMAINS = ["test.example", "relay.example", "elsewhere.example",
                   "new.example", "fromfile.example"]

CLIENT_ADDR = "127.0.0.5"
PROBE_ADDR = "127.0.0.254"            # the fixture's readiness probe
CLIENT_HELO = "client.helo.test"


def token():
    """A short unique token to tie mails and log lines to one test."""
    return uuid.uuid4().hex[:12]


def wait_until(pred, timeout, interval=0.05, what="condition"):
    """Polls PRED until it returns a truthy value; returns that value or
    raises AssertionError after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pytest_configure(config):
    # A SIGTERM (e.g. from `timeout`) would end Python without running any
    # fixture teardown, leaving Postfix and greygate processes behind: turn
    # it into a KeyboardInterrupt, which pytest handles with full teardown.
    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    _sweep_stale_instances()


def _sweep_stale_instances(min_age=900):
    """Removes what a killed earlier run (SIGKILL, power loss) left behind:
    instance directories older than MIN_AGE seconds whose master is not
    running, and alternate_config_directories entries that no longer exist."""
    for d in Path(TMP_PARENT).glob("gg-postfix-*"):
        try:
            if time.time() - d.stat().st_mtime < min_age:
                continue
            pidfile = d / "queue" / "pid" / "master.pid"
            pid = int(pidfile.read_text().strip() or 0) if pidfile.exists() else 0
            if pid > 0 and _pid_alive(pid):
                continue
        except (OSError, ValueError):
            continue
        shutil.rmtree(d, ignore_errors=True)
    with contextlib.suppress(Exception), _global_lock():
        dirs = _alt_dirs_get()
        alive = [x for x in dirs if not x.startswith(TMP_PARENT + "/gg-postfix-") or os.path.isdir(x)]
        if alive != dirs:
            _alt_dirs_set(alive)


def pytest_report_header(config):
    san = "sanitizer build" if binary_is_sanitized(GREYGATE_BIN) else "plain build"
    exists = "" if os.path.isfile(GREYGATE_BIN) else " (MISSING: every test will fail)"
    try:
        pf = subprocess.run(["postconf", "-h", "mail_version"], capture_output=True,
                            text=True).stdout.strip()
    except OSError:
        pf = "not installed"
    return [f"greygate: {GREYGATE_BIN} ({san}){exists}", f"postfix: {pf}"]


# --------------------------------------------------------------------------
# Free ports
# --------------------------------------------------------------------------

_handed_out = set()


def _port_is_free(port, host="127.0.0.1"):
    for h in (host, "0.0.0.0"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((h, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port(base=10025):
    """A TCP port on 127.0.0.1 that nothing listens on (and that this process
    has not handed out before). Scans upward from BASE plus a per-process
    offset, staying below the ephemeral range (32768+)."""
    start = base + (os.getpid() % 97) * 13
    for i in range(4000):
        port = 10000 + (start - 10000 + i) % 22000
        if port in _handed_out:
            continue
        if _port_is_free(port):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port found")


def tcp_listening(port, host="127.0.0.1"):
    """Whether some socket listens on HOST:PORT (IPv4), read from
    /proc/net/tcp so that checking does not open a session."""
    want = {f"{socket.htonl(int.from_bytes(socket.inet_aton(h), 'big')):08X}:{port:04X}"
            for h in (host, "0.0.0.0")}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == "0A" and parts[1] in want:
                return True
    return False


# --------------------------------------------------------------------------
# Raw SMTP client (pipelining, smuggling, limits)
# --------------------------------------------------------------------------

class ConnectionClosed(Exception):
    pass


class Reply:
    def __init__(self, lines):
        self.lines = lines                      # full lines, without CRLF
        self.code = int(lines[0][:3])
        first = lines[0][4:]
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})\b", first)
        self.enhanced = m.group(1) if m else None
        self.texts = [l[4:] for l in lines]     # text after "NNN-" / "NNN "

    @property
    def text(self):
        return "\n".join(self.lines)

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"Reply({self.text!r})"

    def is_(self, code, enhanced=None):
        return self.code == code and (enhanced is None or self.enhanced == enhanced)


def assert_reply(reply, code, enhanced=None, contains=None):
    assert reply.code == code, f"expected {code} {enhanced or ''}, got: {reply.text!r}"
    if enhanced is not None:
        assert reply.enhanced == enhanced, f"expected {code} {enhanced}, got: {reply.text!r}"
    if contains is not None:
        assert contains.lower() in reply.text.lower(), \
            f"expected {contains!r} in reply, got: {reply.text!r}"
    return reply


class RawSMTP:
    """Byte-level SMTP client: send arbitrary bytes, read complete replies
    (multi-line ones included)."""

    def __init__(self, port, host="127.0.0.1", source=CLIENT_ADDR, timeout=15):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0))
        self.buf = b""
        self.closed_by_peer = False

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for reply")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed_by_peer = True
            raise ConnectionClosed(f"connection closed by peer; unread: {self.buf!r}")
        self.buf += chunk

    def readline(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self, timeout=None):
        lines = []
        while True:
            line = self.readline(timeout)
            assert re.match(r"^[2-5]\d\d([ -]|$)", line), f"malformed reply line {line!r}"
            lines.append(line)
            if len(line) < 4 or line[3] == " ":
                return Reply(lines)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        self.send(line.encode() + b"\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply(timeout)

    def greeting(self):
        return assert_reply(self.reply(), 220)

    def ehlo(self, name=CLIENT_HELO):
        return assert_reply(self.cmd(f"EHLO {name}"), 250)

    def wait_closed(self, timeout=5):
        """True when the peer closes the connection within TIMEOUT (any data
        still arriving is returned in self.buf)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except ConnectionClosed:
            return True
        except (socket.timeout, TimeoutError):
            return False

    def send_message(self, mail_from, rcpts, data, ehlo=True):
        """Convenience: one transaction with ready-made DATA bytes (already
        dot-stuffed, ending with CRLF.CRLF). Returns the end-of-data reply."""
        self.start_data(mail_from, rcpts, ehlo)
        self.send(data)
        return self.reply()

    def start_data(self, mail_from, rcpts, ehlo=True):
        """Greeting and EHLO (unless EHLO is false), MAIL, each RCPT, DATA:
        each must succeed; the body is the caller's."""
        if ehlo:
            self.greeting()
            self.ehlo()
        assert_reply(self.cmd(f"MAIL FROM:<{mail_from}>"), 250)
        for r in rcpts:
            assert_reply(self.cmd(f"RCPT TO:<{r}>"), 250)
        assert_reply(self.cmd("DATA"), 354)


# --------------------------------------------------------------------------
# Mail parsing
# --------------------------------------------------------------------------

class Mail:
    def __init__(self, path):
        self.path = Path(path)
        self.raw = self.path.read_bytes()
        sep = self.raw.find(b"\n\n")
        if sep < 0:
            self.head, self.body = self.raw, b""
        else:
            self.head, self.body = self.raw[:sep + 1], self.raw[sep + 2:]
        # unfolded header lines
        self.headers = []
        for line in self.head.decode("utf-8", "replace").split("\n"):
            if not line:
                continue
            if line[0] in " \t" and self.headers:
                name, value = self.headers[-1]
                self.headers[-1] = (name, value + " " + line.strip())
            elif ":" in line:
                name, value = line.split(":", 1)
                self.headers.append((name.strip().lower(), value.strip()))

    def header(self, name):
        return [v for n, v in self.headers if n == name.lower()]

    def __repr__(self):
        return f"Mail({self.path.name}, {self.header('delivered-to')})"


# --------------------------------------------------------------------------
# Private Postfix instance
# --------------------------------------------------------------------------

@contextlib.contextmanager
def _global_lock():
    fd = os.open(LOCK_DIR, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _alt_dirs_get():
    out = subprocess.run(["postconf", "-h", "alternate_config_directories"],
                         check=True, capture_output=True, text=True).stdout
    return [d for d in re.split(r"[\s,]+", out.strip()) if d]


def _backdate(path, seconds=10):
    """Postfix refuses to read a main.cf/master.cf younger than ~2 seconds
    (it sleeps in 300ms steps until the file "settles"). Files we just wrote
    are therefore backdated."""
    t = time.time() - seconds
    os.utime(path, (t, t))


def _alt_dirs_set(dirs):
    if dirs:
        args = ["postconf", "-e", "alternate_config_directories=" + " ".join(dirs)]
    else:   # back to the default (unset), as Debian ships main.cf
        args = ["postconf", "-X", "alternate_config_directories"]
    subprocess.run(args, check=True, capture_output=True, text=True)
    _backdate(POSTFIX_MAIN_CF)


def register_alternate_config_dir(d):
    """`postfix -c DIR` only accepts DIR when the default main.cf lists it in
    alternate_config_directories. Add ours (under a lock, so that concurrent
    test runs do not lose each other's entries)."""
    with _global_lock():
        dirs = _alt_dirs_get()
        if d not in dirs:
            _alt_dirs_set(dirs + [d])


def unregister_alternate_config_dir(d):
    with _global_lock():
        dirs = _alt_dirs_get()
        if d in dirs:
            _alt_dirs_set([x for x in dirs if x != d])


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pgid_members(pgid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(d))
    return out


def _children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        fields = st.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            kids.append((int(d), comm))
    return kids


class PostfixLog:
    """Reading a private Postfix's maillog (self.logfile), by byte offset;
    shared with the end-to-end suite's Postfix instances."""

    def log(self, since=0):
        try:
            with open(self.logfile, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_mark(self):
        try:
            return self.logfile.stat().st_size
        except FileNotFoundError:
            return 0


class PostfixBackend(PostfixLog):
    """A private Postfix instance. Create with PostfixBackend(extra_main={...}),
    then start(); always destroy()."""

    def __init__(self, extra_main=None, port=None):
        self.extra_main = dict(extra_main or {})
        self.port = port or free_port(10025)
        self.root = None
        self.master_pid = None

    # -- paths
    @property
    def conf(self):
        return self.root / "conf"

    @property
    def queue(self):
        return self.root / "queue"

    @property
    def maildir(self):
        return self.root / "mail" / "box"

    @property
    def logfile(self):
        return self.root / "log" / "postfix.log"

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _postconf(self, *args):
        r = subprocess.run(["postconf", "-c", str(self.conf), *args],
                           capture_output=True, text=True)
        for f in ("main.cf", "master.cf"):
            _backdate(self.conf / f)
        if r.returncode != 0:
            raise RuntimeError(f"postconf {args} failed: {r.stderr}")
        return r.stdout

    def main_cf(self):
        r = self.root
        cf = {
            "compatibility_level": "3.6",
            "queue_directory": f"{r}/queue",
            "data_directory": f"{r}/data",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "backend.test",
            "mydomain": "backend.test",
            "myorigin": "backend.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "all",  # XCLIENT ADDR=IPV6:... needs it
            "mynetworks": "127.0.0.0/8",
            "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks reject_unauth_destination",
            # replies greygate must relay verbatim
            "smtpd_recipient_restrictions":
                "check_recipient_access inline:{ "
                "{ bounce@test.example = 550 5.1.1 No such user here } "
                "{ defer@test.example = 450 4.2.1 Try again later } }",
            # end-of-data replies greygate must relay verbatim
            "header_checks": f"regexp:{r}/conf/header_checks",
            "smtpd_banner": "$myhostname ESMTP",
            "smtpd_client_port_logging": "yes",
            "virtual_mailbox_domains": " ".join(BACKEND_DOMAINS),
            "virtual_mailbox_base": f"{r}/mail",
            "virtual_mailbox_maps": "static:box/",
            "virtual_uid_maps": "static:65534",
            "virtual_gid_maps": "static:65534",
            "virtual_mailbox_limit": "0",
            "message_size_limit": "52428800",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "relayhost": "",
            # nothing ever leaves this machine
            "default_transport": "error:outbound mail disabled in greygate tests",
            "relay_transport": "error:outbound mail disabled in greygate tests",
            "biff": "no",
            "maillog_file": f"{r}/log/postfix.log",
            "maillog_file_prefixes": f"/var, /dev/stdout, {r}",
            "default_process_limit": "300",
            "smtpd_client_connection_count_limit": "0",
            "queue_run_delay": "5s",
            "minimal_backoff_time": "5s",
            "maximal_backoff_time": "10s",
            "maximal_queue_lifetime": "1h",
            "bounce_queue_lifetime": "1h",
            "delay_warning_time": "0",
            "smtputf8_enable": "yes",
            "smtp_dns_support_level": "disabled",
        }
        cf.update(self.extra_main)
        return cf

    def start(self):
        self.root = Path(tempfile.mkdtemp(prefix="gg-postfix-", dir=TMP_PARENT))
        os.chmod(self.root, 0o755)
        postfix_pw = pwd.getpwnam("postfix")
        nobody = pwd.getpwnam("nobody")
        for sub in ("conf", "queue", "log"):
            (self.root / sub).mkdir(mode=0o755)
            os.chmod(self.root / sub, 0o755)
        (self.root / "data").mkdir(mode=0o700)
        os.chown(self.root / "data", postfix_pw.pw_uid, postfix_pw.pw_gid)
        (self.root / "mail").mkdir(mode=0o700)
        os.chown(self.root / "mail", nobody.pw_uid, nobody.pw_gid)

        (self.conf / "header_checks").write_text(
            "/^Subject:.*GG-REJECT-ME/ REJECT Rejected by header check\n"
            "/^Subject:.*GG-DEFER-ME/ REJECT 4.7.1 Deferred by header check\n")
        with open(self.conf / "main.cf", "w") as f:
            for k, v in self.main_cf().items():
                f.write(f"{k} = {v}\n")
        shutil.copy(POSTFIX_MASTER_CF, self.conf / "master.cf")
        for f in ("main.cf", "master.cf"):
            _backdate(self.conf / f)
        # Debian chroots most services; a private instance has no chroot jail.
        self._postconf("-F", "*/*/chroot = n")
        # replace smtp/inet on port 25 by smtpd on our loopback port
        self._postconf("-MX", "smtp/inet")
        svc = f"127.0.0.1:{self.port}"
        self._postconf("-M", f"{svc}/inet={svc} inet n - n - - smtpd")
        # the services maillog_file needs (present in Debian's master.cf, but
        # make sure)
        if not re.search(r"^postlog\s+unix-dgram\s", self._postconf("-M"), re.M):
            self._postconf("-M", "postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd")

        register_alternate_config_dir(str(self.conf))
        r = subprocess.run(["postfix", "-c", str(self.conf), "start"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"postfix start failed ({r.returncode}):\n{r.stdout}{r.stderr}"
                               f"\nlog:\n{self.log()}")
        pidfile = self.queue / "pid" / "master.pid"
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 20,
                   what="postfix master.pid")
        self.master_pid = int(pidfile.read_text().strip())
        wait_until(lambda: tcp_listening(self.port), 20, what=f"postfix on port {self.port}")
        # prove that smtpd answers
        with RawSMTP(self.port, source="127.0.0.1", timeout=30) as c:
            assert_reply(c.reply(), 220)
            assert_reply(c.cmd("QUIT"), 221)
        return self

    # -- process control
    def smtpd_pids(self):
        return [pid for pid, comm in _children(self.master_pid) if comm == "smtpd"]

    def kill_instance(self):
        """kill -9 the master and all its children (the whole process group
        of our instance; master calls setsid())."""
        if self.master_pid and _pid_alive(self.master_pid):
            pids = [p for p, _ in _children(self.master_pid)]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.master_pid, signal.SIGKILL)
            for p in [self.master_pid] + pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            wait_until(lambda: not _pid_alive(self.master_pid), 10, what="postfix master death")

    def stop(self):
        if self.root is None or self.master_pid is None:
            return
        pids = [p for p, _ in _children(self.master_pid)]
        if _pid_alive(self.master_pid):
            with contextlib.suppress(Exception):
                subprocess.run(["postfix", "-c", str(self.conf), "stop"],
                               capture_output=True, text=True, timeout=30)
            deadline = time.monotonic() + 15
            while _pid_alive(self.master_pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        # whatever is left of our instance (master calls setsid(), so its
        # children share its process group)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.master_pid, signal.SIGKILL)
        for p in [self.master_pid] + pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        wait_until(lambda: not _pgid_members(self.master_pid) and
                   not any(_pid_alive(p) for p in [self.master_pid] + pids),
                   10, what="postfix processes to exit")

    def destroy(self):
        try:
            self.stop()
        finally:
            if self.root is not None:
                unregister_alternate_config_dir(str(self.conf))
                if not os.environ.get("GG_KEEP_TMP"):
                    shutil.rmtree(self.root, ignore_errors=True)

    # -- log: see PostfixLog

    def sync_log(self):
        """Writes a marker through postlogd and waits until it is in the log
        file: every line a Postfix process logged before this call is then
        in the file too (one datagram socket, FIFO). Returns the log offset
        after the marker. Use it before asserting that something is ABSENT."""
        marker = f"gg-sync-{token()}"
        subprocess.run(["postlog", "-c", str(self.conf), "-t", "gg-test", marker],
                       check=True, capture_output=True, timeout=30)
        self.wait_log(re.escape(marker))
        return self.log_mark()

    def wait_log(self, pattern, since=0, timeout=15):
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.log(since)), timeout,
                          what=f"postfix log line /{pattern}/")

    # -- mail
    def mails(self):
        out = []
        for sub in ("new", "cur"):
            d = self.maildir / sub
            if d.is_dir():
                for p in sorted(d.iterdir()):
                    try:
                        out.append(Mail(p))
                    except FileNotFoundError:
                        pass
        return out

    def mails_for(self, tok):
        """Mails whose Delivered-To contains TOK."""
        return [m for m in self.mails() if any(tok in v for v in m.header("delivered-to"))]

    def wait_mails(self, tok, count=1, timeout=20):
        """Waits until at least COUNT mails for TOK arrived; returns them."""
        return wait_until(lambda: (lambda ms: ms if len(ms) >= count else None)(self.mails_for(tok)),
                          timeout, what=f"{count} mail(s) for {tok}")


@pytest.fixture(scope="session")
def postfix_backend():
    """The shared private Postfix instance. Tests that kill or reconfigure it
    use the ``make_postfix_backend`` factory instead."""
    pf = PostfixBackend()
    try:
        pf.start()
        yield pf
    finally:
        pf.destroy()


@pytest.fixture
def make_postfix_backend():
    """Factory for a fresh private Postfix instance (function scope), e.g.
    make_postfix_backend(extra_main={"smtpd_discard_ehlo_keywords": "dsn"})."""
    made = []

    def make(extra_main=None):
        pf = PostfixBackend(extra_main=extra_main)
        made.append(pf)
        pf.start()
        return pf

    try:
        yield make
    finally:
        for pf in made:
            pf.destroy()


class LoopbackServer:
    """A socket on 127.0.0.1 served by a thread of its own until close().
    A subclass sets up its own state, then hands its bound socket to
    LoopbackServer.__init__; its serve_once() handles at most one arrival,
    and a socket.timeout (the socket waits 0.1 s at most) or OSError from
    it means only that nothing came this time."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(0.1)
        self.port = sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _run(self):
        while not self._stop.is_set():
            try:
                self.serve_once()
            except (socket.timeout, OSError):
                continue

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


class FakeBackend(LoopbackServer):
    """A misbehaving backend on 127.0.0.1:<free port>. MODE:
    'silent'   accepts connections and never says a word;
    'close'    accepts and closes at once;
    'greet421' greets with 421 and closes;
    'serve'    hands each connection to SERVE(conn) in a thread of its own."""

    def __init__(self, mode, serve=None):
        self.mode = mode
        self.serve = serve
        self.conns = []
        self.accepted = 0
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", free_port(11025)))
        sock.listen(128)
        super().__init__(sock)

    def serve_once(self):
        conn, _ = self.sock.accept()
        self.accepted += 1
        if self.mode == "greet421":
            with contextlib.suppress(OSError):
                conn.sendall(b"421 4.3.2 Service shutting down\r\n")
            conn.close()
        elif self.mode == "close":
            conn.close()
        elif self.mode == "serve":
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()
        else:
            self.conns.append(conn)

    def close(self):
        super().close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()


class LineReader:
    """CRLF-ended lines from CONN, for the fake SMTP servers; .buf holds
    what came after the last line taken."""

    def __init__(self, conn):
        self.conn = conn
        self.buf = b""

    def wait_line(self):
        """True once a whole line is buffered, False at end of stream."""
        while b"\r\n" not in self.buf:
            data = self.conn.recv(65536)
            if not data:
                return False
            self.buf += data
        return True

    def line(self):
        if not self.wait_line():
            raise EOFError
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def next_starts(self, prefix, wait):
        """Whether the next line, if it has come within WAIT seconds,
        starts with PREFIX (upper case)."""
        timeout = self.conn.gettimeout()
        self.conn.settimeout(wait)
        try:
            self.wait_line()
        except socket.timeout:
            pass
        finally:
            self.conn.settimeout(timeout)
        return self.buf.upper().startswith(prefix)


class ScriptedSMTP:
    """An SMTP server for FakeBackend('serve', ScriptedSMTP(...)) that
    misbehaves once, the first time any connection reaches STEP, and records what
    it got. STEP: 'MAIL', 'RCPT1', 'RCPT2' (the n-th RCPT of the
    connection), 'DATA', 'EOD' (end of data), 'RSET', 'XCLIENT' (any),
    'XCLIENT2' (the second of a connection: one greygate reuses); ACTION:
    'close' (closes instead of replying), 'silent' (never replies), a
    reply code such as '421', '451', '554' (replied instead of the usual,
    then closes if 421), or 'idle421' / 'idleclose' (replies as usual, then
    CLOSE_AFTER seconds later says 421 and closes, or just closes).
    XCLIENT_REFUSE: an ADDR= value whose XCLIENT is refused with 501 on any
    connection (a refusal of one client's attributes).
    WATCH_MAIL: at each MAIL, waits half a second for what comes next
    before replying.
    .lines: the command lines of every connection (list of lists of bytes);
    .delivered: (sender, [recipients]) of every message it accepted;
    .rcpt_with_mail (WATCH_MAIL): for every MAIL, whether the RCPT after it
    had arrived before MAIL was answered."""

    def __init__(self, step=None, action=None, pipelining=False, xclient=False,
                 xclient_refuse=None, close_after=0.3, watch_mail=False):
        self.step, self.action = step, action
        self.pipelining, self.xclient = pipelining, xclient
        self.xclient_refuse = xclient_refuse
        self.close_after = close_after
        self.watch_mail = watch_mail
        self.lines = []
        self.delivered = []
        self.rcpt_with_mail = []
        self.faulted = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, conn):
        faulty = False   # this connection misbehaved
        got = []
        with self._lock:
            self.lines.append(got)
        conn.settimeout(30)
        reader = LineReader(conn)
        line = reader.line

        def fault(step):
            """True when the reply to STEP was replaced (or withheld)."""
            nonlocal faulty
            with self._lock:
                if step != self.step or self.faulted.is_set():
                    return False
                self.faulted.set()
                faulty = True
            if self.action in ("idle421", "idleclose"):
                return False
            if self.action == "close":
                raise EOFError
            if self.action == "silent":   # until greygate gives up on us
                while conn.recv(65536):
                    pass
                raise EOFError
            conn.sendall(f"{self.action} {self.action[0]}.3.0 scripted failure\r\n".encode())
            if self.action == "421":
                raise EOFError
            return True

        def after(step):
            if faulty and step == self.step and self.action in ("idle421", "idleclose"):
                time.sleep(self.close_after)
                if self.action == "idle421":
                    conn.sendall(b"421 4.4.2 backend.test Error: timeout exceeded\r\n")
                raise EOFError

        ehlo = b"250-sink.test\r\n" + (b"250-PIPELINING\r\n" if self.pipelining else b"") \
            + (b"250-XCLIENT ADDR NAME PORT HELO PROTO\r\n" if self.xclient else b"") \
            + b"250 8BITMIME\r\n"
        sender, rcpts, nrcpt, nxclient = None, [], 0, 0
        try:
            conn.sendall(b"220 sink.test ESMTP\r\n")
            while True:
                cmd = line()
                got.append(cmd)
                up = cmd.upper()
                if up.startswith(b"EHLO") or up.startswith(b"HELO"):
                    conn.sendall(ehlo if up.startswith(b"EHLO") else b"250 sink.test\r\n")
                elif up.startswith(b"XCLIENT"):
                    nxclient += 1
                    if self.xclient_refuse and b"ADDR=" + self.xclient_refuse.encode() + b" " in cmd:
                        conn.sendall(b"501 5.5.4 Bad XCLIENT syntax\r\n")
                    elif not fault("XCLIENT") and not fault(f"XCLIENT{nxclient}"):
                        conn.sendall(b"220 sink.test ESMTP\r\n")
                elif up.startswith(b"MAIL"):
                    if self.watch_mail:
                        self.rcpt_with_mail.append(reader.next_starts(b"RCPT", 0.5))
                    if not fault("MAIL"):
                        sender, rcpts, nrcpt = cmd[10:].decode(errors="replace"), [], 0
                        conn.sendall(b"250 2.1.0 Ok\r\n")
                        after("MAIL")
                elif up.startswith(b"RCPT"):
                    nrcpt += 1
                    if not fault(f"RCPT{nrcpt}"):
                        rcpts.append(cmd[8:].decode(errors="replace"))
                        conn.sendall(b"250 2.1.5 Ok\r\n")
                        after(f"RCPT{nrcpt}")
                elif up == b"DATA":
                    if not fault("DATA"):
                        conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        while line() != b".":
                            pass
                        got.append(b".")
                        if not fault("EOD"):
                            self.delivered.append((sender, rcpts))
                            conn.sendall(b"250 2.0.0 Ok: queued\r\n")
                        sender, rcpts = None, []
                elif up == b"RSET":
                    if not fault("RSET"):
                        sender, rcpts, nrcpt = None, [], 0
                        conn.sendall(b"250 2.0.0 Ok\r\n")
                elif up == b"QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    break
                else:
                    conn.sendall(b"250 2.0.0 Ok\r\n")
        except (EOFError, OSError):
            pass
        finally:
            conn.close()


@pytest.fixture
def fake_backend():
    made = []

    def make(mode, serve=None):
        fb = FakeBackend(mode, serve)
        made.append(fb)
        return fb

    try:
        yield make
    finally:
        for fb in made:
            fb.close()


# --------------------------------------------------------------------------
# greygate
# --------------------------------------------------------------------------

def lc_value(v):
    """Python value -> libconfig value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(lc_value(x) for x in v) + " ]" if v else "[ ]"
    if isinstance(v, dict):
        return "{ " + " ".join(f"{k} = {lc_value(x)};" for k, x in v.items()) + " }"
    raise TypeError(f"cannot render {v!r}")


def render_config(cfg):
    """One top-level setting per line (so tests know line numbers)."""
    return "".join(f"{k} = {lc_value(v)};\n" for k, v in cfg.items())


def merge(base, over):
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def default_config(port, backend_address, dns_address=None):
    cfg = {
        "myhostname": "gw.test",
        "listen": [f"127.0.0.1:{port}"],
        # idle_time 0: one backend connection per client connection, so
        # that a test can find its session in the backend's log by the
        # client's port (test_backend_reuse.py tests the reuse);
        # refuse_when_down false: the backend failure tests look at what
        # happens after the greeting (test_backend_failures.py tests both)
        "backend": {"address": backend_address, "xclient": True,
                    "connect_timeout": 5, "command_timeout": 30, "idle_time": 0,
                    "refuse_when_down": False},
        "mynetworks": [],
        "local_domains": ["test.example"],
        "relay_domains": ["relay.example"],
        "helo_required": True,
        "disable_vrfy_command": True,
        "limits": {"max_connections": 1000, "max_per_client": 50, "max_recipients": 100,
                   "max_line": 2048, "command_timeout": 300, "data_timeout": 600,
                   "max_errors": 20},
        "shutdown_grace": 5,
        "log": {"target": "stderr", "level": "info"},
        # The proxy-core tests are about relaying; greylisting has its own
        # tests, which switch it on.
        "greylist": {"enabled": False},
        "store": {"type": "memory", "file": ""},
        # every greygate of a run would want the default port
        "admin": {"listen": ""},
        # the suite runs as root and keeps its files in root's temp dirs
        "run_as_root": True,
        # Needs DNS (there is none on a test box: every sender domain would
        # be "not found"); the DNS policy tests switch it on themselves.
        "reject_unknown_sender_domain": False,
    }
    if dns_address:
        # A local server that knows nothing: fast negative answers instead
        # of timeouts towards a resolver this box cannot reach.
        cfg["dns"] = {"servers": [dns_address], "timeout_ms": 500, "tries": 1}
    return cfg


# --------------------------------------------------------------------------
# DNS: dnsmasq
# --------------------------------------------------------------------------

class DnsServer:
    """A private dnsmasq on 127.0.0.1:<free port>, serving exactly LINES
    (dnsmasq.conf syntax: mx-host=, host-record=, cname=, ptr-record=,
    dns-rr=, server=/domain/addr#port ...). Names under the LOCAL domains
    that it has no record for are answered NXDOMAIN at once; it never asks
    anybody else unless a server= line says so."""

    def __init__(self, workdir, lines=(), local=("example", "test")):
        self.workdir = Path(workdir)
        self.port = free_port(15353)
        self.lines = list(lines)
        self.local = local
        self.proc = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        conf = self.workdir / "dnsmasq.conf"
        body = [f"port={self.port}", "listen-address=127.0.0.1", "bind-interfaces",
                "no-resolv", "no-hosts", "no-negcache", "log-queries",
                f"log-facility={self.workdir / 'dnsmasq.log'}"]
        body += [f"local=/{d}/" for d in self.local]
        body += self.lines
        conf.write_text("\n".join(body) + "\n")
        self.proc = subprocess.Popen(["dnsmasq", "--keep-in-foreground", "-C", str(conf),
                                      "--user=root", "--pid-file="],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        wait_until(lambda: self._answers() or self.proc.poll() is not None, 10,
                   what="dnsmasq answering")
        if self.proc.poll() is not None:
            raise AssertionError("dnsmasq did not start: "
                                 + self.proc.stderr.read().decode(errors="replace"))
        return self

    def _answers(self):
        # any well-formed reply to a query means it is up
        q = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
             b"\x05probe\x04test\x00\x00\x01\x00\x01")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(q, ("127.0.0.1", self.port))
                return len(s.recv(512)) >= 12
            except OSError:
                return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class FakeDns(LoopbackServer):
    """A UDP name server on 127.0.0.1:<port> that a test scripts: a subclass's
    answer(name, qtype) gives (rcode, [records], tc) for each query, or None
    to say nothing at all. NAME is lower case, a dot inside a label written
    "\\.". .queries: the (name, qtype) of every query, in order. Nothing is
    listening on TCP, so a retry after TC finds the port closed."""

    def __init__(self):
        self.queries = []
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        super().__init__(sock)

    @staticmethod
    def _question(q):
        labels, off = [], 12
        while q[off]:
            n = q[off]
            # a dot inside a label stays told apart from the dot between
            labels.append(q[off + 1:off + 1 + n].decode("latin-1").lower().replace(".", "\\."))
            off += 1 + n
        qtype = struct.unpack(">H", q[off + 1:off + 3])[0]
        return ".".join(labels), qtype, off + 5

    def serve_once(self):
        q, peer = self.sock.recvfrom(4096)
        try:
            name, qtype, qend = self._question(q)
        except (IndexError, struct.error):
            return
        self.queries.append((name, qtype))
        a = self.answer(name, qtype)
        if a is None:
            return
        rcode, records, tc = a
        rd = struct.unpack(">H", q[2:4])[0] & 0x0100
        flags = 0x8000 | 0x0400 | rd | 0x0080 | (0x0200 if tc else 0) | rcode  # QR AA RD RA TC
        self.sock.sendto(q[:2] + struct.pack(">HHHHH", flags, 1, len(records), 0, 0) +
                         q[12:qend] + b"".join(records), peer)


@pytest.fixture(scope="session")
def default_dns(tmp_path_factory):
    d = DnsServer(tmp_path_factory.mktemp("dns-default"))
    try:
        d.start()
        yield d
    finally:
        d.stop()


@pytest.fixture
def dns_server(tmp_path_factory):
    """dns_server(lines) -> a running DnsServer with those records."""
    made = []

    def make(lines=(), local=("example", "test")):
        d = DnsServer(tmp_path_factory.mktemp("dns"), lines, local)
        made.append(d)
        return d.start()

    try:
        yield make
    finally:
        for d in made:
            d.stop()


_KV = re.compile(r'([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_kv(line):
    d = {}
    for k, v in _KV.findall(line):
        if v.startswith('"'):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        d[k] = v
    return d


SANITIZER_MARKERS = ("AddressSanitizer", "runtime error", "LeakSanitizer",
                     "UndefinedBehaviorSanitizer")


def binary_is_sanitized(path=GREYGATE_BIN):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def rss_test_env():
    """The environment for a greygate whose RSS a test measures: ASan keeps
    freed chunks in a quarantine (256 MB by default), which would make every
    byte that passed through look resident; keep it small there."""
    if binary_is_sanitized():
        return {"ASAN_OPTIONS": "quarantine_size_mb=1:thread_local_quarantine_size_kb=64"}
    return None


def require_binary():
    if not (os.path.isfile(GREYGATE_BIN) and os.access(GREYGATE_BIN, os.X_OK)):
        pytest.fail(f"greygate binary not found or not executable: {GREYGATE_BIN} "
                    "(build it with `make`, or set GREYGATE_BIN)", pytrace=False)
    return GREYGATE_BIN


class GreygateLog:
    """Reading a greygate's log (self.log_path), by line number; shared with
    the end-to-end suite's greygate instances."""

    def log_text(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_lines(self):
        return self.log_text().splitlines()

    def log_mark(self):
        return len(self.log_lines())

    def events(self, event=None, since=0, **match):
        """Parsed key=value log lines (dicts), optionally filtered by event
        name and exact key values."""
        out = []
        for line in self.log_lines()[since:]:
            d = parse_kv(line)
            if event is not None and d.get("event") != event:
                continue
            if all(d.get(k) == v for k, v in match.items()):
                d["_line"] = line
                out.append(d)
        return out

    event_timeout, event_interval = 10, 0.05

    def wait_event(self, event, since=0, timeout=None, **match):
        return wait_until(lambda: self.events(event, since, **match),
                          timeout or self.event_timeout, interval=self.event_interval,
                          what=f"{self.log_label()} log event={event} {match}")

    def log_label(self):
        return "greygate"


class Greygate(GreygateLog):
    def __init__(self, workdir, config, port, env=None):
        self.workdir = Path(workdir)
        self.port = port
        self.config = config
        self.conf_path = self.workdir / "greygate.conf"
        self.log_path = self.workdir / "greygate.log"
        self.env = env
        self.proc = None
        self.returncode = None
        self.checked = False
        self.write_config(config)

    # -- config
    def write_config(self, config):
        """CONFIG: dict (rendered) or str (written verbatim). Atomic replace."""
        text = config if isinstance(config, str) else render_config(config)
        if not isinstance(config, str):
            self.config = config
        tmp = self.conf_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.conf_path)

    # -- process
    def start(self, timeout=15):
        binpath = require_binary()
        self.logf = open(self.log_path, "ab")
        env = dict(os.environ)
        if binary_is_sanitized(binpath):
            # full malloc stacks in leak reports (libevent has no frame pointers)
            opts = env.get("ASAN_OPTIONS", "")
            if "fast_unwind_on_malloc" not in opts:
                env["ASAN_OPTIONS"] = (opts + ":fast_unwind_on_malloc=0").lstrip(":")
        for k, v in (self.env or {}).items():
            if k == "ASAN_OPTIONS" and env.get(k):
                v = env[k] + ":" + v
            env[k] = v
        self.proc = subprocess.Popen([binpath, "-c", str(self.conf_path)],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not tcp_listening(self.port):
            if self.proc.poll() is not None:
                raise AssertionError(f"greygate exited with {self.proc.returncode} at start:\n"
                                     + self.log_text())
            if time.monotonic() > deadline:
                raise AssertionError(f"greygate did not listen on {self.port} in {timeout}s:\n"
                                     + self.log_text())
            time.sleep(0.02)
        # LISTEN alone does not mean the event loop runs (nor that signal
        # handling is in place, see test_signals_right_after_listen): wait
        # for a served greeting, from an address no test uses, and for the
        # server to close that session again.
        while True:
            try:
                with RawSMTP(self.port, source=PROBE_ADDR, timeout=timeout) as c:
                    c.reply()
                    c.send(b"QUIT\r\n")
                    if not c.wait_closed(timeout):
                        raise AssertionError("greygate did not close the probe session")
                break
            except (ConnectionClosed, OSError) as e:
                if self.proc.poll() is not None:
                    raise AssertionError(f"greygate exited with {self.proc.returncode} "
                                         f"at start:\n" + self.log_text()) from e
                if time.monotonic() > deadline:
                    raise AssertionError(f"greygate does not greet: {e}\n" + self.log_text())
                time.sleep(0.05)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def hup(self):
        self.signal(signal.SIGHUP)

    def term(self):
        self.signal(signal.SIGTERM)

    def wait_exit(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self):
        """Teardown: SIGTERM, wait (kill if needed), then check exit status
        and the sanitizer-free log. Raises AssertionError on any problem."""
        if self.proc is None:
            return
        problems = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            grace = 5
            if isinstance(self.config, dict):
                grace = int(self.config.get("shutdown_grace", 10))
            rc = self.wait_exit(grace + 15)
            if rc is None:
                self.proc.kill()
                self.proc.wait()
                problems.append("greygate did not exit after SIGTERM; killed")
        self.returncode = self.proc.returncode
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.logf.close()
        if self.returncode != 0 and not problems:
            problems.append(f"greygate exited with status {self.returncode}")
        bad = [l for l in self.log_lines() if any(m in l for m in SANITIZER_MARKERS)]
        if bad:
            problems.append("sanitizer report in log:\n" + "\n".join(bad[:20]))
        self.proc = None
        if problems:
            tail = "\n".join(self.log_lines()[-40:])
            raise AssertionError("; ".join(problems) + f"\n--- greygate log tail ---\n{tail}")

    def rss_kb(self, field="VmRSS"):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    # -- log: see GreygateLog

    # -- clients
    def raw(self, source=CLIENT_ADDR, timeout=15):
        return RawSMTP(self.port, source=source, timeout=timeout)

    def smtp(self, source=CLIENT_ADDR, helo=CLIENT_HELO, timeout=30):
        return smtplib.SMTP("127.0.0.1", self.port, local_hostname=helo,
                            source_address=(source, 0), timeout=timeout)


@pytest.fixture
def greygate_factory(postfix_backend, default_dns, tmp_path_factory):
    """greygate_factory(upstream=None, config=None, env=None, start=True, **overrides)
    -> running Greygate in front of UPSTREAM (anything with .address;
    default: the shared Postfix). OVERRIDES are merged into the default
    config (dicts merged one level deep, None removes a key); CONFIG
    replaces it (dict or raw text)."""
    made = []

    def make(upstream=None, config=None, env=None, start=True, port=None, **overrides):
        backend = upstream or postfix_backend
        port = port or free_port(12525)
        workdir = tmp_path_factory.mktemp("greygate")
        if config is None:
            config = merge(default_config(port, backend.address, default_dns.address), overrides)
            # never the system-wide default (/run/greygate/control.sock):
            # parallel greygates would fight over it
            config.setdefault("control_socket", str(workdir / "control.sock"))
        gg = Greygate(workdir, config, port, env=env)
        made.append(gg)
        if start:
            gg.start()
        return gg

    yield make
    errors = stop_gates(made)
    if errors:
        pytest.fail(errors, pytrace=False)


def stop_gates(gates):
    """Stops every greygate of GATES; what went wrong, or "" when nothing."""
    errors = []
    for gg in gates:
        try:
            gg.stop()
        except AssertionError as ex:
            errors.append(str(ex))
    return "greygate teardown: " + "\n\n".join(errors) if errors else ""


@pytest.fixture
def greygate(greygate_factory):
    """A greygate with the default test configuration in front of the shared
    Postfix backend."""
    return greygate_factory()


@pytest.fixture
def tok():
    return token()


def make_message(tok, body=b"Hello.\r\n", subject="test", extra_headers=b""):
    """A complete RFC 5322 message with CRLF line ends, not dot-stuffed."""
    head = (f"From: <sender-{tok}@sender.example>\r\n"
            f"To: <rcpt-{tok}@test.example>\r\n"
            f"Subject: {subject} {tok}\r\n"
            f"Message-ID: <{tok}@client.helo.test>\r\n").encode() + extra_headers
    return head + b"\r\n" + body


def dot_stuff(msg):
    """CRLF message -> DATA payload: leading dots doubled, CRLF.CRLF appended."""
    lines = msg.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines)
    return out + b".\r\n"
