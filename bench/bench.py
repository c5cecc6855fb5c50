#!/usr/bin/python3
"""greygate throughput / latency / memory benchmark (`make bench`).

Everything runs on loopback (127.0.0.x) on this machine:

  smtp-source ──> greygate ──> smtp-sink          (the greygate scenarios)
  smtp-source ──> smtp-sink                       (direct: the physical limit)
  smtp-source ──> Postfix smtpd + postgrey        (what users run today)
  smtp-source ──> Postfix smtpd + greygate        (greygate as a policy service)

plus a private redis-server (greygate's store), a private dnsmasq (the
recipient domain's MX, cached by greygate), a small Python client that
samples RCPT round trips during each load, and an asyncio client for the
idle-connection test. See bench/README.md for the method and a reference
run. Every process this script starts is stopped at exit.

  bench.py [--runs 3] [--duration 6] [--only a,b,...] [--skip a,b,...]
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import scored                        # bench/scored.py: the selective rows' zone and DNS tools

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "test"))       # the test harness package

SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
DOMAIN = "bench.test"
SENDER = "s@sender.example"          # the pre-passed triplet: 127.0.0.0/24, SENDER, RCPT
RCPT = f"r@{DOMAIN}"
HELO = "client.example"
SAMPLER_ADDR = "127.0.0.2"           # the RCPT latency sampler (same /24 as the load)
IDLE_ADDRS = [f"127.0.0.{i}" for i in range(10, 30)]
CLK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count()
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# scenario -> smtp-source load. conc: concurrent sessions; per_conn: messages
# per connection; size: payload bytes (-l); storm: every RCPT a new triplet.
LOADS = {
    "storm":    dict(conc=20, per_conn=1, size=0, storm=True, guess=4000),
    "pass":     dict(conc=20, per_conn=1, size=5 * 1024, storm=False, guess=2500),
    "pipeline": dict(conc=20, per_conn=20, size=5 * 1024, storm=False, guess=5000),
    "large":    dict(conc=4, per_conn=1, size=10 * 1024 * 1024, storm=False, guess=25),
}

LIVE = []                            # Popen objects to stop at exit


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------

def spawn(argv, logfile=None, **kw):
    out = open(logfile, "ab") if logfile else subprocess.DEVNULL
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                         start_new_session=True, **kw)
    if logfile:
        out.close()
    LIVE.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=10):
    if p is None:
        return
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)      # whatever it forked, by its own group
    if p in LIVE:
        LIVE.remove(p)


def stop_all():
    for p in list(reversed(LIVE)):
        with contextlib.suppress(Exception):
            stop(p, timeout=5)


def wait_port(port, proc=None, timeout=15, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def descendants(pid):
    """PID and every live descendant (a /proc scan)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, IndexError):
                kids.setdefault(int(stat_fields(d)[1]), []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pids):
    """utime+stime (+ reaped children's cutime+cstime) of PIDS and all their
    live descendants, in seconds. Children that exit are reaped by their
    parent and move into its cutime/cstime, so a delta stays exact even
    when short-lived processes (Postfix's smtpd) come and go."""
    t = 0
    seen = set()
    for root in pids:
        for p in descendants(root):
            if p in seen:
                continue
            seen.add(p)
            with contextlib.suppress(OSError, IndexError):
                f = stat_fields(p)
                t += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return t / CLK


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def tree_kb(pids, field):
    total = 0
    for root in pids:
        for p in descendants(root):
            with contextlib.suppress(OSError):
                total += status_kb(p, field)
    return total


def tree_pss_kb(pids):
    """Proportional set size of PIDS and their descendants: shared pages
    (libraries, Postfix's many processes) are counted once in all."""
    total = 0
    for root in pids:
        for p in descendants(root):
            with contextlib.suppress(OSError):
                with open(f"/proc/{p}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1])
    return total


def cpu_snap():
    """(total, idle+iowait, irq+softirq) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4], v[5] + v[6]


def busy_since(snap, with_irq=True):
    """Busy fraction of the machine since SNAP. Interrupt and softirq time
    is not charged to any process (the loopback TCP stack of our own
    traffic runs there), so with_irq=False leaves it out."""
    t1, i1, q1 = cpu_snap()
    idle = i1 - snap[1] + (0 if with_irq else q1 - snap[2])
    return 1 - idle / max(1, t1 - snap[0])


def reset_hwm(pids):
    """Writing 5 to clear_refs resets VmHWM to the current RSS."""
    for root in pids:
        for p in descendants(root):
            with contextlib.suppress(OSError):
                with open(f"/proc/{p}/clear_refs", "w") as f:
                    f.write("5")


def cpu_busy(seconds=1.0):
    """Fraction of the machine's CPU time that was busy during SECONDS."""
    s = cpu_snap()
    time.sleep(seconds)
    return busy_since(s)


# --------------------------------------------------------------------------
# the parts: dnsmasq, redis, smtp-sink, greygate, Postfix + postgrey
# --------------------------------------------------------------------------

class Env:
    def __init__(self, args):
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="gg-bench-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        # the test harness: free_port, config rendering, PostfixBackend
        import harness.greygate
        import harness.postfix
        import harness.util
        self.harness = harness
        self.retry_spent = 0.0
        self.postfixes = []

    def port(self, base):
        return self.harness.util.free_port(base)

    def start_dns(self):
        self.dns_port = self.port(15353)
        conf = self.dir / "dnsmasq.conf"
        # The recipient domain has an MX whose host has both address
        # families, with a TTL, so that greygate's MX-host exemption check
        # is answered from its DNS cache, as in production. dnsmasq
        # answers with TTL 0 by default, which greygate does not cache.
        conf.write_text("\n".join([
            f"port={self.dns_port}", "listen-address=127.0.0.1", "bind-interfaces",
            "no-resolv", "no-hosts", "local-ttl=3600", "neg-ttl=3600",
            "local=/test/", "local=/example/",
            f"mx-host={DOMAIN},mx.{DOMAIN},10",
            f"host-record=mx.{DOMAIN},192.0.2.25,2001:db8::25"]
            # greygate looks up every client's forward-confirmed name at
            # connect (for XCLIENT NAME). The bench's clients get PTR and A
            # records (host-record makes both), so that the answer is cached
            # as it is for a returning sender; --uncached-ptr leaves them
            # out: dnsmasq then answers REFUSED, a temporary failure that is
            # never cached, i.e. one DNS round trip per connection, like a
            # storm from ever new addresses.
            + ([] if self.args.uncached_ptr else
               [f"host-record=c{a.rsplit('.', 1)[1]}.client.example,{a},"
                f"2001:db8::c:{a.rsplit('.', 1)[1]}"
                for a in ["127.0.0.1", SAMPLER_ADDR] + IDLE_ADDRS])
            + [""]))
        self.dns = self.spawn_dnsmasq(conf, "dnsmasq")

    def spawn_dnsmasq(self, conf, name):
        p = spawn(["dnsmasq", "--keep-in-foreground", "-C", str(conf), "--user=root",
                   "--pid-file="], self.dir / f"{name}.log")
        time.sleep(0.2)
        if p.poll() is not None:
            raise RuntimeError(f"{name} did not start: " + (self.dir / f"{name}.log").read_text())
        return p

    def start_scored_dns(self):
        """A second dnsmasq for the selective rows (scored.py's zone: SPF,
        names for the load's clients and the fresh ones, the two lists),
        so that the other rows keep their DNS as it was. With --dns-delay
        a relay in front of it holds every answer that long; greygate and
        the sampler's timing resolver both ask through it."""
        port = self.port(15453)
        conf = self.dir / "dnsmasq-scored.conf"
        # what the two fresh rows' runs use: 100 sessions a second at most
        # (the sampler makes about 70 with its DNS timing), so a repeated
        # run has some left; when none are, the sampler stops (errors)
        self.fresh_max = int(2 * self.args.runs * (self.args.duration + 1) * 100)
        conf.write_text("\n".join(
            [f"port={port}", "listen-address=127.0.0.1", "bind-interfaces", "no-resolv",
             "no-hosts", f"mx-host={DOMAIN},mx.{DOMAIN},10",
             f"host-record=mx.{DOMAIN},192.0.2.25,2001:db8::25"]
            + scored.zone_lines({"127.0.0.1": "mta.load.sender.example",
                                 SAMPLER_ADDR: "mta.sampler.sender.example"}, self.fresh_max)
            + [""]))
        self.scored_dns = self.spawn_dnsmasq(conf, "dnsmasq-scored")
        self.scored_dns_port = port
        if self.args.dns_delay:
            self.scored_dns_port = self.port(15553)
            spawn([sys.executable, __file__, "--dns-relay", str(self.scored_dns_port), str(port),
                   str(self.args.dns_delay)], self.dir / "relay.log")
            time.sleep(0.5)
        self.fresh_next = 0              # the next unused fresh client (scored.fresh_client)

    def start_redis(self):
        self.redis_port = self.port(16379)
        self.redis = spawn(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                           self.dir / "redis.log")
        wait_port(self.redis_port, self.redis)

    def redis_cmd(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.redis_port), *args], check=True,
                              capture_output=True, text=True).stdout.strip()

    def evalsha_calls(self, with_usec=False):
        """EVALSHA calls so far (and the microseconds Redis spent in them)."""
        m = re.search(r"cmdstat_evalsha:calls=(\d+),usec=(\d+)",
                      self.redis_cmd("info", "commandstats"))
        calls, usec = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        return (calls, usec) if with_usec else calls

    def start_sinks(self):
        # -m: connections it serves at once (default 256, too few here).
        self.sink_port = self.port(16025)
        self.sink = spawn([SMTP_SINK, "-u", "postfix", "-m", "4000",
                           f"127.0.0.1:{self.sink_port}", "4096"], self.dir / "sink.log")
        # The same, but answering every RCPT with 450: the client side of a
        # greylisting storm, without the greylisting.
        self.sink450_port = self.port(16026)
        self.sink450 = spawn([SMTP_SINK, "-u", "postfix", "-m", "4000", "-r", "RCPT",
                              "-b", "450 4.2.0 Greylisted, retry in 300 seconds",
                              f"127.0.0.1:{self.sink450_port}", "4096"], self.dir / "sink450.log")
        wait_port(self.sink_port, self.sink)
        wait_port(self.sink450_port, self.sink450)

    # ---- greygate
    def gg_config(self, port, log_level="warning", workers=None, admin_port=0, backend=None,
                  policy_port=None, extra=None):
        cf = self.harness.greygate
        cfg = cf.merge(cf.default_config(port, f"127.0.0.1:{self.sink_port}",
                                         f"127.0.0.1:{self.dns_port}"), {
            "myhostname": "gw.bench.test",
            # No XCLIENT by default: smtp-sink takes it (250 instead of
            # Postfix's new 220) but it is not the sink's job; the
            # pass-xclient row measures it. idle_time: the product's default
            # (the test suite's is 0).
            "backend": {"xclient": False, "command_timeout": 60, "idle_time": None},
            "local_domains": [DOMAIN],
            "relay_domains": [],
            "limits": {"max_connections": 20000, "max_per_client": 20000,
                       "max_recipients": 1000, "max_errors": 1000},
            "log": {"target": "stderr", "level": log_level},
            # every storm RCPT must be a stored decision: the per-network cap
            # on new triplets (default 100 an hour) would otherwise skip the
            # store write after the first 100
            "greylist": {"enabled": True, "delay": 300, "max_new_per_client": 10000000},
            "store": {"type": "redis", "failure": "accept",
                      "redis": {"host": "127.0.0.1", "port": self.redis_port,
                                "timeout_ms": 1000, "prefix": "gg:"}},
            "dns": {"servers": [f"127.0.0.1:{self.dns_port}"], "timeout_ms": 500, "tries": 1,
                    "cache_size": 10000},
            "control_socket": str(self.dir / "gg.sock"),
            # /metrics: greygate's own decision-time histogram
            "admin": {"listen": f"127.0.0.1:{admin_port}"},
        })
        if workers is not None:
            cfg["workers"] = workers
        if backend:
            cfg = cf.merge(cfg, {"backend": backend})
        if policy_port:
            cfg["policy"] = {"listen": f"127.0.0.1:{policy_port}"}
        if extra:
            cfg = cf.merge(cfg, extra)
        return cf.render_config(cfg)

    def gg_accepts_workers(self):
        f = self.dir / "workers-check.conf"
        f.write_text(self.gg_config(self.port(16525), workers=2, admin_port=self.port(19925)))
        r = subprocess.run([self.args.greygate, "-t", "-c", str(f)], capture_output=True, text=True)
        if r.returncode != 0:
            log(f"greygate -t with workers = 2: {r.stdout}{r.stderr}".strip())
        return r.returncode == 0

    def start_greygate(self, name, log_level="warning", workers=None, backend=None,
                       policy=False, extra=None):
        port = self.port(16525)
        conf = self.dir / f"{name}.conf"
        admin = self.port(19925)
        policy_port = self.port(16023) if policy else None
        conf.write_text(self.gg_config(port, log_level, workers, admin, backend, policy_port,
                                       extra))
        logf = self.dir / f"{name}.log"
        p = spawn([self.args.greygate, "-c", str(conf)], logf)
        wait_port(port, p)
        gg = Gate(name, p, port, conf, logf)
        gg.metrics_url = f"http://127.0.0.1:{admin}/metrics"
        gg.policy_port = policy_port
        if policy_port:
            wait_port(policy_port, p)
        time.sleep(0.3)
        gg.nproc = len(descendants(p.pid))
        return gg

    def ctl(self, gg, *args):
        r = subprocess.run([self.args.ctl, "-c", str(gg.conf), *args], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise RuntimeError(f"greygate-ctl {args}: {r.stdout}{r.stderr}")
        return r.stdout

    # ---- Postfix + postgrey
    def start_postgrey(self):
        self.pg_port = self.port(16023)
        db = self.dir / "postgrey"
        db.mkdir()
        shutil.chown(db, "postgrey", "postgrey")
        # --delay=1: 0 means the default (300) to postgrey. Its log lines
        # (one per decision, as shipped) go to a file.
        self.pg = spawn(["postgrey", f"--inet=127.0.0.1:{self.pg_port}", f"--dbdir={db}",
                         "--delay=1"], self.dir / "postgrey.log")
        wait_port(self.pg_port, self.pg, timeout=30)

    def start_postfix(self, policy_port):
        """A private Postfix whose smtpd asks the policy service on
        POLICY_PORT (postgrey, or greygate); stopped by close()."""
        pf = self.harness.postfix.PostfixBackend(extra_main={
            "myhostname": "mx.bench.test",
            "virtual_mailbox_domains": DOMAIN,
            # accepted mail is queued (that is Postfix) and then discarded
            "virtual_transport": "discard:bench",
            "smtpd_relay_restrictions": "permit_mynetworks reject_unauth_destination",
            "smtpd_recipient_restrictions":
                f"check_policy_service inet:127.0.0.1:{policy_port}",
            "header_checks": "",
        })
        self.postfixes.append(pf)
        pf.start()
        return pf

    def stop_postfix(self, pf):
        self.postfixes.remove(pf)
        pf.destroy()

    def close(self):
        for pf in self.postfixes:
            with contextlib.suppress(Exception):
                pf.destroy()
        stop_all()
        if not os.environ.get("GG_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)


def decision_hist(url, metric="greygate_decision_seconds"):
    """METRIC (a histogram) from greygate's /metrics: ({le: cumulative
    count}, sum seconds, count), or None."""
    import urllib.request
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        return None
    buckets, tot, cnt = {}, 0.0, 0
    for line in text.splitlines():
        m = re.match(metric + r'_bucket\{le="([^"]+)"\} (\d+)', line)
        if m:
            buckets[float(m.group(1))] = int(m.group(2))
        elif line.startswith(metric + "_sum "):
            tot = float(line.split()[1])
        elif line.startswith(metric + "_count "):
            cnt = int(line.split()[1])
    return (buckets, tot, cnt) if buckets else None


def hist_delta(h0, h1):
    """(p50 bound ms, p99 bound ms, mean ms) of the decisions between two
    scrapes: the percentiles are the upper bound of their bucket."""
    if not h0 or not h1:
        return None, None, None
    n = h1[2] - h0[2]
    if n <= 0:
        return None, None, None
    mean = (h1[1] - h0[1]) / n * 1000

    def bound(q):
        for le in sorted(h1[0]):
            if h1[0][le] - h0[0].get(le, 0) >= q * n:
                return le * 1000
        return float("inf")
    return bound(0.50), bound(0.99), mean


class Gate:
    def __init__(self, name, proc, port, conf, logf):
        self.name, self.proc, self.port, self.conf, self.logf = name, proc, port, conf, logf

    @property
    def pids(self):
        return [self.proc.pid]

    def problems(self):
        lines = self.logf.read_text(errors="replace").splitlines()
        return [l for l in lines if "level=error" in l or "level=warning" in l]


# --------------------------------------------------------------------------
# load: smtp-source invocations, back to back, until the duration is over
# --------------------------------------------------------------------------

class Load:
    seq = 0

    def __init__(self, env, name, port, spec):
        self.env, self.name, self.port, self.spec = env, name, port, spec
        self.rate = spec["guess"]

    def argv(self, nmsgs, nsess):
        Load.seq += 1
        s = self.spec
        a = [SMTP_SOURCE, "-s", str(nsess), "-m", str(nmsgs), "-M", HELO, "-f", SENDER]
        if s["storm"]:
            # -N prepends a sequence number to the recipient: with a
            # recipient unique to this invocation, every RCPT is a new
            # triplet. -A: go on after the 450 (RSET, QUIT).
            a += ["-A", "-N", "-t", f"k{os.getpid()}x{Load.seq}@{DOMAIN}"]
        else:
            a += ["-t", RCPT]
        if s["size"]:
            a += ["-l", str(s["size"])]
        if s["per_conn"] > 1:
            a += ["-d"]
        return a + [f"127.0.0.1:{self.port}"]

    def run(self, duration):
        """Runs smtp-source until DURATION seconds are over; returns
        (messages, wall seconds). With per_conn > 1 each invocation is
        -s N -m N*per_conn (-d), two at a time so that one's tail overlaps
        the other's start; otherwise one invocation at a time, each sized
        to last about a second from the rate seen so far."""
        s = self.spec
        if not s["conc"]:                # no load: the sampler alone
            time.sleep(duration)
            return 0, duration
        par = 2 if s["per_conn"] > 1 else 1
        errf = self.env.dir / f"smtp-source-{self.name}.err"
        running = []
        total = 0
        t0 = time.monotonic()
        while True:
            now = time.monotonic()
            while len(running) < par and now - t0 < duration:
                if s["per_conn"] > 1:
                    nsess = s["conc"] // par
                    n = nsess * s["per_conn"]
                else:
                    nsess = s["conc"]
                    n = max(nsess, int(self.rate * min(1.0, duration - (now - t0) + 0.05)))
                with open(errf, "ab") as ef:
                    p = subprocess.Popen(self.argv(n, nsess), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=ef)
                running.append((p, n, now))
            if not running:
                break
            p, n, started = running[0]
            rc = p.wait()
            running.pop(0)
            el = time.monotonic() - started
            if rc != 0:
                for q, _, _ in running:
                    q.kill()
                    q.wait()
                tail = [l for l in errf.read_text(errors="replace").splitlines()
                        if "fatal" in l][-3:]
                raise RuntimeError(f"{self.name}: smtp-source exited {rc}: {tail}")
            total += n
            if par == 1:
                self.rate = 0.5 * self.rate + 0.5 * n / max(el, 1e-3)
        wall = time.monotonic() - t0
        with contextlib.suppress(FileNotFoundError):
            errf.unlink()       # -A warnings, one per greylisted RCPT
        return total, wall


# --------------------------------------------------------------------------
# RCPT latency sampler (a separate process: `bench.py --sample ...`)
# --------------------------------------------------------------------------

def sampler_main(port, mode, per_conn, tag, interval):
    """Until stdin closes: every INTERVAL seconds one transaction from
    SAMPLER_ADDR (MAIL, RCPT, RSET; QUIT after PER_CONN of them), timing
    only the RCPT round trip. MODE storm: a new recipient each time (a new
    triplet); pass: the pre-passed triplet; fresh,FIRST,MAX,DNSPORT: as
    storm, but each connection from the next fresh client of scored.py (its
    own address, name and sender domain) from the FIRST on (below MAX: the
    ones in the zone), one transaction
    each, and after it the same client's DNS queries timed against
    127.0.0.1:DNSPORT (scored.dns_path). Prints JSON: the microseconds,
    and for fresh the DNS times and the clients used."""
    import selectors
    lat, errors = [], 0
    fresh = mode.startswith("fresh")
    if fresh:
        _, first, fresh_max, dns_port = mode.split(",")
        fresh_i, fresh_max, dns_port = int(first), int(fresh_max), int(dns_port)
        dns, dns_single, head = [], [], []
    stdin_closed = [False]
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)

    def reply(sock, buf):
        while True:
            while b"\n" not in buf[0]:
                d = sock.recv(65536)
                if not d:
                    raise ConnectionError("closed")
                buf[0] += d
            line, buf[0] = buf[0].split(b"\n", 1)
            if len(line) < 4 or line[3:4] != b"-":
                return line

    n = 0
    while not stdin_closed[0]:
        src, helo, sender = SAMPLER_ADDR, f"sampler.{HELO}", SENDER
        if fresh:
            if fresh_i >= fresh_max:
                errors += 1                  # none left: no more samples
                if sel.select(1.0) and not sys.stdin.buffer.read1(4096):
                    stdin_closed[0] = True
                continue
            src, helo, dom = scored.fresh_client(fresh_i)
            sender = f"s@{dom}"
            fresh_i += 1
        try:
            t_conn = time.perf_counter_ns()
            with socket.create_connection(("127.0.0.1", port), timeout=10,
                                          source_address=(src, 0)) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf = [b""]
                reply(sock, buf)
                sock.sendall(f"EHLO {helo}\r\n".encode())
                reply(sock, buf)
                for _ in range(per_conn):
                    n += 1
                    rcpt = f"lat{n}-{tag}@{DOMAIN}" if mode != "pass" else RCPT
                    sock.sendall(f"MAIL FROM:<{sender}>\r\n".encode())
                    reply(sock, buf)
                    t = time.perf_counter_ns()
                    sock.sendall(f"RCPT TO:<{rcpt}>\r\n".encode())
                    r = reply(sock, buf)
                    lat.append((time.perf_counter_ns() - t) // 1000)
                    if fresh:
                        head.append((t - t_conn) // 1000)
                    if not r[:1] in (b"2", b"4"):
                        errors += 1
                    sock.sendall(b"RSET\r\n")
                    reply(sock, buf)
                    if sel.select(interval):
                        if not sys.stdin.buffer.read1(4096):
                            stdin_closed[0] = True
                            break
                sock.sendall(b"QUIT\r\n")
            if fresh:
                d = scored.dns_path(("127.0.0.1", dns_port), src, helo, dom)
                if d:
                    dns.append(d[0])
                    dns_single.append(d[1])
                else:
                    errors += 1
        except OSError:
            errors += 1
            if sel.select(interval) and not sys.stdin.buffer.read1(4096):
                stdin_closed[0] = True
    out = {"lat_us": lat, "errors": errors}
    if fresh:
        out.update(dns_us=dns, dns_single_us=dns_single, head_us=head, next=fresh_i)
    print(json.dumps(out))


class Sampler:
    def __init__(self, port, mode, per_conn, tag, interval=0.01):
        self.p = subprocess.Popen([sys.executable, __file__, "--sample", str(port), mode,
                                   str(per_conn), tag, str(interval)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def finish(self):
        self.p.stdin.close()
        out = self.p.stdout.read()
        self.p.wait(60)
        d = json.loads(out)
        self.extra = d
        lat = sorted(d["lat_us"])
        if not lat:
            return None, None, 0, d["errors"]

        def pct(q):
            return lat[min(len(lat) - 1, int(q * len(lat)))] / 1000.0
        return pct(0.50), pct(0.99), len(lat), d["errors"]


# --------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------

class Result:
    def __init__(self, name):
        self.name = name
        self.runs = []          # dicts

    def med(self, key):
        v = [r[key] for r in self.runs if r.get(key) is not None]
        return statistics.median(v) if v else None


def our_cpu(env):
    """CPU seconds of everything this bench runs: the processes it started
    (and their descendants), Postfix's master (it daemonizes), the waited-for
    children (smtp-source, the sampler) and bench.py itself."""
    roots = [p.pid for p in LIVE if p.poll() is None]
    roots += [pf.master_pid for pf in env.postfixes if pf.master_pid]
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    return (cpu_seconds(roots) + ch.ru_utime + ch.ru_stime + me.ru_utime + me.ru_stime)


def measure(env, name, port, spec, cpu_pids, rss_pids, mode, results, checks=None,
            pss=False):
    load = Load(env, name, port, spec)
    # warm-up, also sizes the invocations (not measured)
    load.run(0.5)
    res = results.setdefault(name, Result(name))
    for _ in range(env.args.runs):
        attempts = []
        while True:
            run = one_run(env, name, port, spec, cpu_pids, rss_pids, mode, load, checks, pss,
                          len(res.runs) * 10 + len(attempts))
            attempts.append(run)
            if run["other"] <= env.args.max_other or len(attempts) > env.args.retries:
                break
            if env.retry_spent + run["wall"] > env.args.retry_budget:
                log(f"  (other processes used {run['other']:.2f} cores during that run; "
                    f"no retry budget left: kept, and marked)")
                break
            env.retry_spent += run["wall"]
            log(f"  (other processes used {run['other']:.2f} cores during that run: "
                f"repeating it)")
        run = min(attempts, key=lambda r: r["other"])
        run["attempts"] = len(attempts)
        res.runs.append(run)
    return res


def one_run(env, name, port, spec, cpu_pids, rss_pids, mode, load, checks, pss, nr):
    if checks and checks.get("before"):
        checks["before"]()
    reset_hwm(rss_pids)
    c0 = cpu_seconds(cpu_pids)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    o0 = our_cpu(env)
    box0, t0 = cpu_snap(), time.monotonic()
    e0, u0 = env.evalsha_calls(True) if checks else (0, 0)
    h0 = decision_hist(checks["metrics"]) if checks else None
    d0 = decision_hist(checks["metrics"], "greygate_dns_seconds") if checks else None
    tag = f"{name}{nr}x{os.getpid()}"
    if mode == "fresh":
        mode = f"fresh,{env.fresh_next},{env.fresh_max},{env.scored_dns_port}"
    smp = Sampler(port, mode, spec["per_conn"], tag)
    prof = None
    if env.args.profile == name:
        # cpu-clock: this VM has no hardware counters
        prof = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-g",
                                 "-o", str(env.dir / f"perf-{name}.data"),
                                 "-p", ",".join(str(p) for r in cpu_pids
                                                for p in descendants(r))],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
    n, wall = load.run(env.args.duration)
    p50, p99, nlat, lerr = smp.finish()
    fresh = {}
    if "dns_us" in smp.extra:
        env.fresh_next = smp.extra["next"]
        fresh = dict(dns_p50=pct(smp.extra["dns_us"], 0.50), dns_p99=pct(smp.extra["dns_us"], 0.99),
                     dns1_p99=pct(smp.extra["dns_single_us"], 0.99),
                     head_p50=pct(smp.extra["head_us"], 0.50), fresh_next=env.fresh_next)
    if prof:
        prof.send_signal(signal.SIGINT)
        prof.wait(60)
    box = busy_since(box0)
    box_proc = busy_since(box0, with_irq=False)
    box_wall = time.monotonic() - t0
    cpu = cpu_seconds(cpu_pids) - c0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # smtp-source invocations and the sampler, all waited for by now
    src = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    # what the rest of the machine (other people's work) took meanwhile, in cores
    other = max(0.0, (box_proc * NCPU * box_wall - (our_cpu(env) - o0)) / box_wall)
    if prof:
        profile_report(env, name)
    hwm = tree_pss_kb(rss_pids) if pss else tree_kb(rss_pids, "VmHWM")
    run = dict(msgs=n, wall=wall, rate=n / wall, mbps=n * spec["size"] / wall / 1e6,
               p50=p50, p99=p99, nlat=nlat, lat_errors=lerr, cpu=cpu,
               cpu_us=cpu / max(n, 1) * 1e6, hwm_mib=hwm / 1024, box=box * 100,
               src_cpu=src, other=other, irq=(box - box_proc) * 100, **fresh)
    if checks:
        e1, u1 = env.evalsha_calls(True)
        run["decisions"] = e1 - e0
        run["redis_us"] = (u1 - u0) / max(1, e1 - e0)     # Redis's time per EVALSHA
        h1 = decision_hist(checks["metrics"])
        run["gg_p50"], run["gg_p99"], run["gg_mean"] = hist_delta(h0, h1)
        # the DNS queries greygate sent (its cache's misses): how many a
        # decision, and the mean time one took (exact: sum / count)
        d1 = decision_hist(checks["metrics"], "greygate_dns_seconds")
        if d0 and d1 and h0 and h1 and d1[2] > d0[2]:
            run["dns_per_decision"] = (d1[2] - d0[2]) / max(1, h1[2] - h0[2])
            run["gg_dns_mean"] = (d1[1] - d0[1]) / (d1[2] - d0[2]) * 1000
    log(f"  {name:<16} {n:>7} msgs in {wall:5.2f}s = {n / wall:8.0f}/s"
        f"  p50 {p50 or 0:.2f} ms p99 {p99 or 0:.2f} ms ({nlat} samples, {lerr} err)"
        f"  cpu {cpu:.2f}s  hwm {hwm / 1024:.1f} MiB  box {box:.0%}  client cpu {src:.2f}s"
        f"  other {other:.2f} cores  softirq {(box - box_proc) * NCPU:.2f} cores"
        + (f"  decisions {run['decisions']} (Redis {run['redis_us']:.0f} us each;"
           f" greygate's own decision time: mean "
           f"{run['gg_mean'] or 0:.2f} ms, p50 <= {run['gg_p50']} ms, p99 <= {run['gg_p99']} ms)"
           if checks else "")
        + (f"  DNS path p50 {run['dns_p50']:.2f} p99 {run['dns_p99']:.2f} ms (slowest single "
           f"answer p99 {run['dns1_p99']:.2f}), connect to RCPT p50 {run['head_p50']:.2f} ms"
           if fresh else "")
        + (f"  greygate's DNS queries: {run['dns_per_decision']:.2f} a decision, mean "
           f"{run['gg_dns_mean']:.3f} ms" if "dns_per_decision" in run else ""))
    return run


def pct(values, q):
    """The Q quantile of VALUES (microseconds) in ms, or None."""
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] / 1000.0 if v else None


def profile_report(env, name):
    """Flat profile (self time by symbol, and by DSO) of the gate's
    processes during one run, to stdout and bench/profile-NAME.txt."""
    data = str(env.dir / f"perf-{name}.data")
    out = []
    for sort in ("dso", "dso,symbol"):
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                            "--sort", sort, "-g", "none", "--percent-limit", "0.7"],
                           capture_output=True, text=True)
        out.append(f"### perf report --no-children --sort {sort}\n"
                   + "\n".join(l for l in r.stdout.splitlines() if l and not l.startswith("#")))
    r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--children", "--sort", "symbol",
                        "-g", "none", "--percent-limit", "3"], capture_output=True, text=True)
    out.append("### perf report --children --sort symbol (inclusive, >= 3%)\n"
               + "\n".join(l for l in r.stdout.splitlines() if l and not l.startswith("#")))
    text = "\n\n".join(out)
    (HERE / f"profile-{name}.txt").write_text(text + "\n")
    print(text)


def scenarios_greygate(env, gg, label, results, which):
    def prepass():
        env.redis_cmd("flushall")
        env.ctl(gg, "pass", "127.0.0.1", SENDER, RCPT)

    prepass()
    for sc in ("storm", "pass", "pipeline", "large"):
        if sc not in which:
            continue
        name = sc + label
        log(f"[{name}] greygate ({gg.nproc} process(es)) -> smtp-sink, redis store")
        measure(env, name, gg.port, LOADS[sc], gg.pids, gg.pids,
                "storm" if LOADS[sc]["storm"] else "pass", results,
                checks={"before": prepass, "metrics": gg.metrics_url})
        probs = gg.problems()
        if probs:
            log(f"  greygate logged {len(probs)} warnings/errors, e.g. {probs[:2]}")
            results[name].runs[-1]["log_problems"] = len(probs)


NO_LOAD = dict(conc=0, per_conn=1, size=0, storm=True, guess=0)   # the sampler alone


def scenarios_selective(env, results):
    """greygate with scoring, pool keys and SPF (scored.py): the storm and
    pass loads with every answer cached (the load's client is 127.0.0.1,
    which has a confirmed name and an SPF pass for sender.example, so its
    key is spf:sender.example and no signal counts), then the sampler
    alone, once from its one address (cached) and once from a fresh client
    a session (every lookup to the DNS server), and the fresh sampler
    beside the storm load."""
    env.start_scored_dns()
    dns = f"127.0.0.1:{env.scored_dns_port}"
    gg = env.start_greygate("gg-scored", extra=scored.greygate_settings(
        dns, 500 + 4 * int(env.args.dns_delay)))
    try:
        def flush():
            env.redis_cmd("flushall")

        def prepass():
            # greygate-ctl cannot make an spf: key (that takes a session's
            # SPF check): the triplet is sent, and again after the delay (1 s)
            flush()
            for _ in range(2):
                subprocess.run([SMTP_SOURCE, "-A", "-M", HELO, "-f", SENDER, "-t", RCPT,
                                f"127.0.0.1:{gg.port}"], capture_output=True)
                time.sleep(1.2)

        for name, spec, mode, before in (
                ("storm-scored", LOADS["storm"], "storm", flush),
                ("pass-scored", LOADS["pass"], "pass", prepass),
                ("scored-cached", NO_LOAD, "storm", flush),
                ("scored-fresh", NO_LOAD, "fresh", flush),
                ("scored-fresh+storm", LOADS["storm"], "fresh", flush)):
            log(f"[{name}] greygate with scoring, pool keys, SPF -> smtp-sink, redis store")
            before()                     # also for measure's warm-up
            measure(env, name, gg.port, spec, gg.pids, gg.pids, mode, results,
                    checks={"before": before, "metrics": gg.metrics_url})
        probs = gg.problems()
        if probs:
            log(f"  greygate logged {len(probs)} warnings/errors, e.g. {probs[:2]}")
    finally:
        stop(gg.proc)


async def _idle_conns(port, n, addrs, batch=500):
    conns = []

    async def one(i):
        r, w = await asyncio.open_connection("127.0.0.1", port,
                                             local_addr=(addrs[i % len(addrs)], 0))
        line = await r.readline()
        if not line.startswith(b"220"):
            raise RuntimeError(f"greeting {line!r}")
        w.write(f"EHLO idle{i}.{HELO}\r\n".encode())
        while True:
            line = await r.readline()
            if not line:
                raise RuntimeError("closed after EHLO")
            if line[3:4] != b"-":
                break
        if not line.startswith(b"250"):
            raise RuntimeError(f"EHLO reply {line!r}")
        conns.append((r, w))

    for b in range(0, n, batch):
        await asyncio.gather(*(one(i) for i in range(b, min(n, b + batch))))
    return conns


def idle_once(env, gg, n, hold):
    # a few complete sessions first, so that what greygate allocates once
    # (buffers, caches) is in the baseline
    env.ctl(gg, "pass", "127.0.0.1", SENDER, RCPT)
    subprocess.run([SMTP_SOURCE, "-s", "5", "-m", "50", "-M", HELO, "-f", SENDER, "-t", RCPT,
                    f"127.0.0.1:{gg.port}"], check=True, capture_output=True)
    time.sleep(0.5)
    base = tree_kb(gg.pids, "VmRSS")
    reset_hwm(gg.pids)
    c0 = cpu_seconds(gg.pids)
    loop = asyncio.new_event_loop()
    t0 = time.monotonic()
    try:
        conns = loop.run_until_complete(_idle_conns(gg.port, n, IDLE_ADDRS))
        setup = time.monotonic() - t0
        time.sleep(hold)
        withc = tree_kb(gg.pids, "VmRSS")
        hwm = tree_kb(gg.pids, "VmHWM")
        cpu = cpu_seconds(gg.pids) - c0
        for _, w in conns:
            w.close()
        loop.run_until_complete(asyncio.sleep(0.5))
    finally:
        loop.close()
    return dict(conns=n, rss_without_kib=base, rss_with_kib=withc, hwm_mib=hwm / 1024,
                per_conn_bytes=(withc - base) * 1024 / n, setup_s=setup, cpu=cpu)


def scenario_idle(env, label, results, workers=None):
    name = "idle" + label
    res = results.setdefault(name, Result(name))
    for i in range(env.args.runs):
        gg = env.start_greygate(f"idle{label}{i}", workers=workers)
        try:
            r = idle_once(env, gg, env.args.idle_conns, hold=5)
        finally:
            stop(gg.proc)
        res.runs.append(r)
        log(f"  {name}: {r['conns']} conns (set up in {r['setup_s']:.1f}s): RSS "
            f"{r['rss_without_kib'] / 1024:.1f} -> {r['rss_with_kib'] / 1024:.1f} MiB = "
            f"{r['per_conn_bytes']:.0f} B/conn, cpu {r['cpu']:.2f}s")


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

REFERENCE = {   # which direct load each scenario is compared with
    "storm": "direct-storm", "pass": "direct-pass", "pipeline": "direct-pipeline",
    "large": "direct-large", "postgrey-storm": "direct-storm",
    "postgrey-pass": "direct-pass", "policy-storm": "direct-storm",
    "policy-pass": "direct-pass",
}


def report(results, args, notes):
    out = []
    hdr = (f"{'scenario':<18}{'msgs/s':>9}{'MB/s':>8}{'x direct':>10}{'RCPT p50':>10}"
           f"{'p99 ms':>8}{'CPU s':>7}{'CPU us/msg':>11}{'peak RSS':>10}{'box%':>6}"
           f"{'client CPU':>11}{'other':>7}{'own mean':>9}{'own p99':>8}  runs")
    out.append(hdr)
    for name, res in results.items():
        if name.startswith("idle"):
            continue
        base = name.split("@")[0]
        for suffix in ("-info", "-workers", "-xclient", "-noreuse", "-scored"):
            base = base.replace(suffix, "")
        ref = REFERENCE.get(base, name if name.startswith("direct") else None)
        ratio = None
        if ref and ref in results:
            key = "mbps" if base.endswith("large") else "rate"
            if results[ref].med(key):
                ratio = res.med(key) / results[ref].med(key)
        mbps = res.med("mbps")
        own_mean, own_p99 = res.med("gg_mean"), res.med("gg_p99")
        p50, p99 = res.med("p50"), res.med("p99")
        # (the sampler alone: no messages to divide by)
        cpu_us = f"{res.med('cpu_us'):.0f}" if res.med("rate") else "-"
        out.append(f"{name:<18}{res.med('rate'):>9.0f}"
                   f"{(f'{mbps:.0f}' if mbps else '-'):>8}"
                   f"{(f'{ratio:.2f}' if ratio is not None else '-'):>10}"
                   f"{(f'{p50:.2f}' if p50 is not None else '-'):>10}"
                   f"{(f'{p99:.2f}' if p99 is not None else '-'):>8}"
                   f"{res.med('cpu'):>7.2f}{cpu_us:>11}"
                   f"{res.med('hwm_mib'):>8.1f}Mi{res.med('box'):>6.0f}"
                   f"{res.med('src_cpu'):>10.2f}s{res.med('other'):>7.2f}"
                   f"{(f'{own_mean:.2f}' if own_mean is not None else '-'):>9}"
                   f"{(f'<={own_p99:g}' if own_p99 is not None else '-'):>8}"
                   f"  {len(res.runs)}"
                   + ("  DISTURBED" if res.med("other") > args.max_other else ""))
    for name, res in results.items():
        if not name.startswith("idle"):
            continue
        out.append(f"{name:<18}{res.med('conns'):.0f} idle connections after EHLO: greygate RSS "
                   f"{res.med('rss_without_kib') / 1024:.1f} MiB without, "
                   f"{res.med('rss_with_kib') / 1024:.1f} MiB with = "
                   f"{res.med('per_conn_bytes'):.0f} B ({res.med('per_conn_bytes') / 1024:.2f} KiB)"
                   f" per connection; peak {res.med('hwm_mib'):.1f} MiB; set up in "
                   f"{res.med('setup_s'):.1f}s; CPU {res.med('cpu'):.2f}s  ({len(res.runs)} runs)")
    sel = [n for n in results if "scored" in n]
    if sel:
        out.append("")
        out.append(f"selective (scoring with 2 lists, pool keys spf+ptr, SPF records"
                   f"{f'; every DNS answer delayed {args.dns_delay:g} ms' if args.dns_delay else ''}):")
        out.append(f"{'scenario':<20}{'RCPT p50':>9}{'p99 ms':>8}{'own mean':>9}{'own p99':>8}"
                   f"{'DNS p50':>9}{'DNS p99':>8}{'queries/dec':>12}{'query ms':>9}"
                   f"{'conn->RCPT':>11}{'other':>7}")

        def f(v, fmt=".2f"):
            return "-" if v is None else format(v, fmt)
        for name in sel:
            r = results[name]
            own_p99 = r.med("gg_p99")
            out.append(f"{name:<20}{f(r.med('p50')):>9}{f(r.med('p99')):>8}"
                       f"{f(r.med('gg_mean')):>9}{('<=' + f(own_p99, 'g')) if own_p99 else '-':>8}"
                       f"{f(r.med('dns_p50')):>9}{f(r.med('dns_p99')):>8}"
                       f"{f(r.med('dns_per_decision')):>12}{f(r.med('gg_dns_mean'), '.3f'):>9}"
                       f"{f(r.med('head_p50')):>11}{f(r.med('other')):>7}")
        out.append("DNS p50/p99: the same queries as greygate's for each fresh client (PTR, "
                   "then A and AAAA of its name; TXT of its domain; the two lists), timed by the "
                   "sampler against the same server after the session, all at once: the DNS "
                   "answer time; queries/dec and query ms: what greygate sent to the server a "
                   "decision (cache misses) and their mean time (greygate_dns_seconds); "
                   "conn->RCPT: connect to RCPT sent, the head start of the lookups made at "
                   "connect.")
    out.append("")
    out.append(f"medians of {args.runs} runs of >= {args.duration:g}s each. msgs/s: messages "
               "(storm: greylisted RCPTs = decisions) per second; x direct: msgs/s (large: "
               "bytes/s) over the same load straight into smtp-sink in this run (storm: "
               "smtp-sink -r RCPT, i.e. 450 to every RCPT); RCPT p50/p99: round trips "
               "sampled by bench.py's own client (100/s, from 127.0.0.2) during the load; CPU: "
               "utime+stime of the gate (greygate, or Postfix+postgrey) during the run; "
               "peak RSS: VmHWM of the gate during the run (Postfix rows: Pss of postgrey "
               "and every Postfix process at the end of the run, summed); box%: the whole "
               "machine's CPU busy during the run (100 = both cores); client CPU: "
               "smtp-source and the sampler; other: cores used meanwhile by processes "
               "the bench did not start (runs above --max-other are repeated, up to "
               "--retries times, and the least disturbed one is kept); own mean/p99: "
               "greygate's own RCPT-to-decision time from its /metrics histogram "
               "(greygate_decision_seconds; the p99 is the upper bound of its bucket).")
    out.extend(notes)
    return "\n".join(out)


def check_targets(results):
    lines = []

    def ratio(a, b, key="rate"):
        if a in results and b in results and results[b].med(key):
            return results[a].med(key) / results[b].med(key)
        return None

    for label in ("", "-workers"):
        if "storm" + label not in results and "idle" + label not in results:
            continue
        t = [("storm >= 0.8 x direct", ratio("storm" + label, "direct-storm"), 0.8),
             ("pass >= 0.5 x direct", ratio("pass" + label, "direct-pass"), 0.5),
             ("large >= 0.7 x direct bytes/s", ratio("large" + label, "direct-large", "mbps"),
              0.7)]
        for what, v, want in t:
            if v is not None:
                lines.append(f"target{label} {what}: {v:.2f} -> "
                             f"{'met' if v >= want else 'MISSED'}")
        if "idle" + label in results:
            v = results["idle" + label].med("per_conn_bytes") / 1024
            lines.append(f"target{label} idle <= 5 KiB/conn: {v:.2f} KiB -> "
                         f"{'met' if v <= 5 else 'MISSED'}")
        if "storm" + label in results:
            v = results["storm" + label].med("p99")
            lines.append(f"target{label} storm p99 RCPT < 2 ms: {v:.2f} ms -> "
                         f"{'met' if v < 2 else 'MISSED'}")
    for name in ("scored-fresh", "scored-fresh+storm"):
        r = results.get(name)
        if r and r.med("p99") is not None and r.med("dns_p99") is not None:
            v, d = r.med("p99"), r.med("dns_p99")
            lines.append(f"target {name} p99 RCPT < 2 ms + DNS p99: {v:.2f} < 2 + {d:.2f} ms -> "
                         f"{'met' if v < 2 + d else 'MISSED'}")
    return lines


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--greygate", default=str(ROOT / "build-bench" / "greygate"))
    ap.add_argument("--ctl", default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per run (>= 5)")
    ap.add_argument("--idle-conns", type=int, default=10000)
    ap.add_argument("--max-other", type=float, default=0.15, metavar="CORES",
                    help="a run during which processes not started by the bench used more "
                    "CPU than this (in cores) is repeated")
    ap.add_argument("--retries", type=int, default=2, help="repeats of a disturbed run")
    ap.add_argument("--retry-budget", type=float, default=120, metavar="SECONDS",
                    help="at most this much time in all goes to repeating disturbed runs")
    ap.add_argument("--wait-quiet", type=float, default=120, metavar="SECONDS",
                    help="wait up to this long for the machine to be idle before starting")
    ap.add_argument("--only", default="", help="comma list: direct,storm,pass,pipeline,large,"
                    "idle,postgrey,policy,info,xclient,noreuse,workers,selective")
    ap.add_argument("--skip", default="")
    ap.add_argument("--json", default=None, help="also write every run to this file")
    ap.add_argument("--conc", type=int, default=None,
                    help="concurrent smtp-source sessions for every load except large "
                    "(default 20)")
    ap.add_argument("--uncached-ptr", action="store_true",
                    help="no PTR records for the clients: every connection costs greygate a "
                    "DNS round trip (see start_dns)")
    ap.add_argument("--profile", default=None, metavar="SCENARIO",
                    help="perf record the gate during SCENARIO (e.g. pass); the flat "
                    "profile goes to bench/profile-SCENARIO.txt")
    ap.add_argument("--dns-delay", type=float, default=0, metavar="MS",
                    help="selective rows: a relay in front of their DNS server holds every "
                    "answer this long (default 0)")
    ap.add_argument("--sample", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--dns-relay", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sample:
        port, mode, per_conn, tag, interval = args.sample
        return sampler_main(int(port), mode, int(per_conn), tag, float(interval))
    if args.dns_relay:
        listen, upstream, delay = args.dns_relay
        return scored.relay_main(int(listen), int(upstream), float(delay))

    args.ctl = args.ctl or str(Path(args.greygate).parent / "greygate-ctl")
    if args.conc:
        for name, spec in LOADS.items():
            if name != "large":
                spec["conc"] = args.conc
    allsc = ["direct", "storm", "pass", "pipeline", "large", "idle", "postgrey", "policy",
             "info", "xclient", "noreuse", "workers", "selective"]
    which = set(args.only.split(",")) if args.only else set(allsc)
    which -= set(args.skip.split(","))
    if os.geteuid() != 0:
        sys.exit("bench.py runs as root (smtp-sink -u postfix, a private Postfix, "
                 "many file descriptors)")
    for tool in (SMTP_SOURCE, SMTP_SINK, args.greygate, args.ctl, "/usr/bin/redis-server",
                 "/usr/sbin/dnsmasq"):
        if not os.access(tool, os.X_OK):
            sys.exit(f"bench.py: {tool} is missing")
    notes = []
    if "postgrey" in which and not shutil.which("postgrey"):
        notes.append("postgrey rows skipped: postgrey is not installed "
                     "(apt-get install -y postgrey)")
        which.discard("postgrey")

    # 10,000 idle connections and then some, for greygate too (it inherits)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))   # root may lack
        want = 65536                                                  # CAP_SYS_RESOURCE
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    if want < args.idle_conns + 1000:
        sys.exit(f"bench.py: the open files limit ({want}) is too low for "
                 f"{args.idle_conns} idle connections")

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)

    t_start = time.monotonic()
    busy = cpu_busy(1.0)
    while busy > 0.10 and time.monotonic() - t_start < args.wait_quiet:
        log(f"machine {busy:.0%} busy (other work): waiting for it to calm down")
        busy = cpu_busy(5.0)
    if busy > 0.10:
        notes.append(f"WARNING: the machine was {busy:.0%} busy before the bench started "
                     "(other work running): the figures are disturbed")
    log(f"machine busy before start: {busy:.0%}")
    env = Env(args)
    results = {}
    try:
        env.start_dns()
        env.start_redis()
        env.start_sinks()

        # 1. the physical limit: the same loads straight into smtp-sink
        if "direct" in which:
            for sc, port in (("storm", env.sink450_port), ("pass", env.sink_port),
                             ("pipeline", env.sink_port), ("large", env.sink_port)):
                name = "direct-" + sc
                log(f"[{name}] smtp-source -> smtp-sink")
                sink = env.sink450 if sc == "storm" else env.sink
                measure(env, name, port, LOADS[sc], [sink.pid], [sink.pid],
                        "storm" if sc == "storm" else "pass", results)

        # 2. greygate, one process
        gg_sc = which & {"storm", "pass", "pipeline", "large"}
        if gg_sc:
            gg = env.start_greygate("gg")
            try:
                scenarios_greygate(env, gg, "", results, gg_sc)
            finally:
                stop(gg.proc)
        if "info" in which and "storm" in which:
            gg = env.start_greygate("gg-info", log_level="info")
            try:
                scenarios_greygate(env, gg, "-info", results, {"storm"})
            finally:
                stop(gg.proc)
        # the backend hand-shake as it is with Postfix behind greygate
        # (XCLIENT + EHLO for every client), and without connection reuse
        for extra, backend in (("xclient", {"xclient": True}), ("noreuse", {"idle_time": 0})):
            if extra in which and "pass" in which:
                gg = env.start_greygate("gg-" + extra, backend=backend)
                try:
                    scenarios_greygate(env, gg, "-" + extra, results, {"pass"})
                finally:
                    stop(gg.proc)
        if "selective" in which:
            scenarios_selective(env, results)
        if "idle" in which:
            log("[idle] asyncio client -> greygate")
            scenario_idle(env, "", results)

        # 3. workers, when this greygate has them
        if "workers" in which:
            if not env.gg_accepts_workers():
                notes.append("workers: `greygate -t` refuses `workers = 2;`: one process only")
            else:
                gg = env.start_greygate("gg-workers", workers="auto")
                try:
                    if gg.nproc <= 1:
                        notes.append("workers: `workers` is accepted by greygate -t, but with "
                                     "workers = \"auto\" greygate still runs one process: "
                                     "workers rows skipped")
                    else:
                        notes.append(f"workers = \"auto\": {gg.nproc} processes")
                        scenarios_greygate(env, gg, "-workers", results, gg_sc)
                finally:
                    stop(gg.proc)
                if gg.nproc > 1 and "idle" in which:
                    scenario_idle(env, "-workers", results, workers="auto")

        # 4. what users run today: Postfix smtpd + check_policy_service postgrey
        if "postgrey" in which:
            env.start_postgrey()
            pf = env.start_postfix(env.pg_port)
            pf_port = pf.port
            pids = [pf.master_pid, env.pg.pid]
            # pre-pass the triplet: greylisted once, retried after the delay
            for _ in range(2):
                subprocess.run([SMTP_SOURCE, "-A", "-M", HELO, "-f", SENDER, "-t", RCPT,
                                f"127.0.0.1:{pf_port}"], capture_output=True)
                time.sleep(1.5)
            for sc in ("storm", "pass"):
                name = "postgrey-" + sc
                log(f"[{name}] smtp-source -> Postfix smtpd -> policy: postgrey")
                measure(env, name, pf_port, LOADS[sc], pids, pids,
                        "storm" if sc == "storm" else "pass", results, pss=True)
            env.stop_postfix(pf)
            stop(env.pg)

        # 5. the same Postfix asking greygate instead (policy.listen), with
        # greygate's Redis store; the pass triplet is pre-passed as for the
        # greygate rows
        if "policy" in which:
            gg = env.start_greygate("gg-policy", policy=True)
            pf = env.start_postfix(gg.policy_port)
            pids = [pf.master_pid, gg.proc.pid]
            try:
                def prepass():
                    env.redis_cmd("flushall")
                    env.ctl(gg, "pass", "127.0.0.1", SENDER, RCPT)
                prepass()
                for sc in ("storm", "pass"):
                    name = "policy-" + sc
                    log(f"[{name}] smtp-source -> Postfix smtpd -> policy: greygate")
                    measure(env, name, pf.port, LOADS[sc], pids, pids,
                            "storm" if sc == "storm" else "pass", results, pss=True,
                            checks={"before": prepass, "metrics": gg.metrics_url})
                probs = gg.problems()
                if probs:
                    log(f"  greygate logged {len(probs)} warnings/errors, e.g. {probs[:2]}")
            finally:
                env.stop_postfix(pf)
                stop(gg.proc)
    finally:
        env.close()

    text = report(results, args, notes)
    targets = check_targets(results)
    print(text)
    print("\n".join(targets))
    print(f"(bench took {time.monotonic() - t_start:.0f}s)")
    if args.json:
        Path(args.json).write_text(json.dumps({k: v.runs for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
