"""The greygate binary under test: its libconfig file (render_config,
default_config, merge), the process (Greygate: started in the foreground,
stderr captured to a file, stopped with the exit status and sanitizer
checks), its log (GreygateLog, shared with the end-to-end suite), its
admin endpoint (get, metric), its workers and its memory store file."""

import contextlib
import hashlib
import json
import math
import os
import re
import signal
import smtplib
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from . import logschema
from .smtp import ConnectionClosed, RawSMTP, assert_reply
from .util import (CLIENT_ADDR, CLIENT_HELO, GREYGATE_BIN, GREYGATE_CTL, PROBE_ADDR, parse_kv, tcp_listening,
                   wait_until)


# --------------------------------------------------------------------------
# Configuration
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


DELAY = 2


def wait_past_delay(first_reply_at, delay=DELAY):
    """Sleeps until a retry is certainly past DELAY whole seconds after the
    first contact, which the store stamped at or before FIRST_REPLY_AT.
    Greylisting is about time: this waits for the delay, it measures
    nothing."""
    target = math.floor(first_reply_at) + delay + 0.2
    time.sleep(max(0.0, target - time.time()))


def rcpt_once(gg, sender, rcpt, source, helo="client.example", timeout=30):
    """One session from SOURCE: EHLO HELO, MAIL, RCPT, QUIT -> (the RCPT's
    reply, the wall time it came, the seconds the RCPT took)."""
    with RawSMTP(gg.port, source=source, timeout=timeout) as c:
        c.greeting()
        c.ehlo(helo)
        assert_reply(c.cmd(f"MAIL FROM:<{sender}>"), 250)
        t0 = time.monotonic()
        r = c.cmd(f"RCPT TO:<{rcpt}>", timeout=timeout)
        took = time.monotonic() - t0
        at = time.time()
        assert_reply(c.cmd("QUIT"), 221)
    return r, at, took

# greylisting on, 2 s delay, auto-whitelist off unless a test turns it on
GL = {"enabled": True, "delay": DELAY, "retry_window": 3600, "pass_lifetime": 86400,
      "awl_threshold": 0, "max_new_per_client": 100}


# --------------------------------------------------------------------------
# The process
# --------------------------------------------------------------------------

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
        off_schema = logschema.violations(self.log_lines())
        if off_schema:
            problems.append("log lines outside docs/logs.md:\n" + "\n".join(off_schema))
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


def stop_gates(gates):
    """Stops every greygate of GATES; what went wrong, or "" when nothing."""
    errors = []
    for gg in gates:
        try:
            gg.stop()
        except AssertionError as ex:
            errors.append(str(ex))
    return "greygate teardown: " + "\n\n".join(errors) if errors else ""


def worker_pids(gg):
    out = subprocess.run(["pgrep", "-P", str(gg.pid)], capture_output=True, text=True).stdout
    return sorted(int(p) for p in out.split())


# --------------------------------------------------------------------------
# Its admin endpoint (/metrics, /healthz)
# --------------------------------------------------------------------------

def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def ctl(gg, *args, timeout=15):
    """greygate-ctl -c <gg's config> ARGS -> the finished process."""
    assert os.access(GREYGATE_CTL, os.X_OK), f"greygate-ctl not found: {GREYGATE_CTL}"
    return subprocess.run([GREYGATE_CTL, "-c", str(gg.conf_path), *args],
                          capture_output=True, text=True, timeout=timeout)


def ctl_ok(gg, *args):
    """greygate-ctl ARGS, which must succeed -> its output."""
    r = ctl(gg, *args)
    assert r.returncode == 0, f"greygate-ctl {args} -> {r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)$"
    for line in text.splitlines():
        m = re.match(pat, line)
        if m:
            return float(m.group(1))
    return None


# --------------------------------------------------------------------------
# Its memory store file
# --------------------------------------------------------------------------

def write_text_store(path, n, now):
    """A store.file of N greylisted triplets in the text format of earlier
    versions, which greygate still reads (and which every version reads):
    a large store without deciding a million times."""
    first, exp = now - 100, now + 86400
    # keys spread as digests are (they are not checked against the names)
    key = [hashlib.blake2b(i.to_bytes(4, "little"), digest_size=16).hexdigest()
           for i in range(n)]
    with open(path, "w") as f:
        f.write("greygate-memstore 1\n")
        step = 100000
        for start in range(0, n, step):
            f.write("".join(
                f"T {key[i]} {first} 0 {exp} 10.{i >> 16 & 255}.{i >> 8 & 255}.0/24 "
                f"bounce-{key[i][:16]}@mailer{i % 1000}.sender.example "
                f"firstname.lastname{i % 5000}@test.example\n"
                for i in range(start, min(n, start + step))))


def large_store_gg(greygate_factory, db, n, workers=2, env=None, greylist=None, store=None,
                   max_recipients=1000):
    """A greygate of WORKERS on an embedded store that starts from DB, a
    store.file of N entries written here (write_text_store), started, its
    store loaded and its workers ready: for the tests of large stores
    (listing, saving). GREYLIST and STORE add to or override the settings of
    those sections; the limits let one client send many RCPTs."""
    write_text_store(db, n, int(time.time()))
    gg = greygate_factory(workers=workers, start=False, env=env,
                          greylist={"enabled": True, "delay": 60, **(greylist or {})},
                          store={"type": "memory", "file": str(db), "save_interval": 3600,
                                 "failure": "accept", "max_entries": n, **(store or {})},
                          limits={"max_connections": 100, "max_per_client": 50,
                                  "max_recipients": max_recipients, "max_line": 2048,
                                  "command_timeout": 300, "data_timeout": 600,
                                  "max_errors": 2000})
    gg.start(timeout=60)
    [load] = gg.wait_event("store_load", result="ok", timeout=5)
    assert int(load["entries"]) == n, load["_line"]
    if workers > 1:
        wait_until(lambda: len(gg.events("ready")) == workers, 10, what="workers ready")
    return gg
