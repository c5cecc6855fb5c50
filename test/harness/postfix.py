"""A private Postfix instance (PostfixBackend): own config, queue, data and
log directory under /var/tmp, smtpd on 127.0.0.1:<free port>, trusting
127.0.0.0/8 for XCLIENT and delivering every recipient of the test domains
into one Maildir (virtual(8), static map). Nothing leaves the box: every
other transport is ``error:``. Also the delivered mails (Mail) and what the
backend wrote into them."""

import contextlib
import fcntl
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .smtp import RawSMTP, assert_reply
from .util import (CLIENT_ADDR, CLIENT_HELO, children, free_port, pgid_members, pid_alive,
                   tcp_listening, token, wait_until)


POSTFIX_MAIN_CF = Path("/etc/postfix/main.cf")
POSTFIX_MASTER_CF = Path("/etc/postfix/master.cf")
TMP_PARENT = "/var/tmp"                 # under a default maillog_file_prefix
LOCK_DIR = "/etc/postfix"      # flock()ed while we edit its main.cf

# Domains the backend delivers into the Maildir. Which of them greygate lets
# through is greygate's decision (local_domains / relay_domains / mynetworks).
BACKEND_DOMAINS = ["test.example", "relay.example", "elsewhere.example",
                   "new.example", "fromfile.example"]


def sweep_stale_instances(min_age=900):
    """Removes what a killed earlier run (SIGKILL, power loss) left behind:
    instance directories older than MIN_AGE seconds whose master is not
    running, and alternate_config_directories entries that no longer exist."""
    for d in Path(TMP_PARENT).glob("gg-postfix-*"):
        try:
            if time.time() - d.stat().st_mtime < min_age:
                continue
            pidfile = d / "queue" / "pid" / "master.pid"
            pid = int(pidfile.read_text().strip() or 0) if pidfile.exists() else 0
            if pid > 0 and pid_alive(pid):
                continue
        except (OSError, ValueError):
            continue
        shutil.rmtree(d, ignore_errors=True)
    with contextlib.suppress(Exception), global_lock():
        dirs = alt_dirs_get()
        alive = [x for x in dirs if not x.startswith(TMP_PARENT + "/gg-postfix-") or os.path.isdir(x)]
        if alive != dirs:
            alt_dirs_set(alive)


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
def global_lock():
    fd = os.open(LOCK_DIR, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def alt_dirs_get():
    out = subprocess.run(["postconf", "-h", "alternate_config_directories"],
                         check=True, capture_output=True, text=True).stdout
    return [d for d in re.split(r"[\s,]+", out.strip()) if d]


def backdate(path, seconds=10):
    """Postfix refuses to read a main.cf/master.cf younger than ~2 seconds
    (it sleeps in 300ms steps until the file "settles"). Files we just wrote
    are therefore backdated."""
    t = time.time() - seconds
    os.utime(path, (t, t))


def alt_dirs_set(dirs):
    if dirs:
        args = ["postconf", "-e", "alternate_config_directories=" + " ".join(dirs)]
    else:   # back to the default (unset), as Debian ships main.cf
        args = ["postconf", "-X", "alternate_config_directories"]
    subprocess.run(args, check=True, capture_output=True, text=True)
    backdate(POSTFIX_MAIN_CF)


def register_alternate_config_dir(d):
    """`postfix -c DIR` only accepts DIR when the default main.cf lists it in
    alternate_config_directories. Add ours (under a lock, so that concurrent
    test runs do not lose each other's entries)."""
    with global_lock():
        dirs = alt_dirs_get()
        if d not in dirs:
            alt_dirs_set(dirs + [d])


def unregister_alternate_config_dir(d):
    with global_lock():
        dirs = alt_dirs_get()
        if d in dirs:
            alt_dirs_set([x for x in dirs if x != d])


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
            backdate(self.conf / f)
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
            backdate(self.conf / f)
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
        return [pid for pid, comm in children(self.master_pid) if comm == "smtpd"]

    def kill_instance(self):
        """kill -9 the master and all its children (the whole process group
        of our instance; master calls setsid())."""
        if self.master_pid and pid_alive(self.master_pid):
            pids = [p for p, _ in children(self.master_pid)]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.master_pid, signal.SIGKILL)
            for p in [self.master_pid] + pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            wait_until(lambda: not pid_alive(self.master_pid), 10, what="postfix master death")

    def stop(self):
        if self.root is None or self.master_pid is None:
            return
        pids = [p for p, _ in children(self.master_pid)]
        if pid_alive(self.master_pid):
            with contextlib.suppress(Exception):
                subprocess.run(["postfix", "-c", str(self.conf), "stop"],
                               capture_output=True, text=True, timeout=30)
            deadline = time.monotonic() + 15
            while pid_alive(self.master_pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        # whatever is left of our instance (master calls setsid(), so its
        # children share its process group)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.master_pid, signal.SIGKILL)
        for p in [self.master_pid] + pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        wait_until(lambda: not pgid_members(self.master_pid) and
                   not any(pid_alive(p) for p in [self.master_pid] + pids),
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


# --------------------------------------------------------------------------
# What the backend wrote into a mail
# --------------------------------------------------------------------------

def received_from_backend(mail):
    """The Received: header the backend (Postfix) wrote."""
    rs = [r for r in mail.header("received") if "by backend.test" in r]
    assert rs, mail.raw[:800]
    return rs[0]


def assert_xclient_received(mail, helo=CLIENT_HELO, addr=CLIENT_ADDR):
    rec = received_from_backend(mail)
    m = re.match(r"from (\S+) \((\S+) \[([0-9.]+)\]\)", rec)
    assert m, rec
    assert m.group(1) == helo, f"backend saw HELO {m.group(1)!r}, client said {helo!r}: {rec}"
    assert m.group(3) == addr, f"backend saw client {m.group(3)}, real client {addr}: {rec}"
