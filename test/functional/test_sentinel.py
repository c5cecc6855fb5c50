"""Redis Sentinel (store.redis.sentinels / master_name): greygate finds the
master through the sentinels, follows a failover to the promoted replica
and keeps the greylisting state; greygate-ctl asks the sentinels too.

Real processes: a Redis master, a replica, three sentinels (quorum 2, short
timeouts) and greygate, all on 127.0.0.1. Every process started here is
stopped at teardown, on every path.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from harness.greygate import default_config, rcpt_once, render_config, require_binary
from harness.redis import RedisError, Resp
from harness.smtp import assert_reply
from harness.util import CLIENT_ADDR, GREYGATE_CTL, free_port, wait_until

MASTER_NAME = "mymaster"
DELAY = 2
TIMEOUT_MS = 300
GL = {"enabled": True, "delay": DELAY, "retry_window": 3600, "pass_lifetime": 86400,
      "awl_threshold": 0, "max_new_per_client": 1000}


# --------------------------------------------------------------------------
# Redis processes
# --------------------------------------------------------------------------

def rcmd(port, *args):
    with Resp(port) as r:
        return r.cmd(*args)


class Proc:
    """One redis-server (or sentinel) process in its own session."""

    def __init__(self, name, port, argv, workdir):
        self.name, self.port, self.workdir = name, port, workdir
        self.log = workdir / f"{name}.log"
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf, start_new_session=True)

    def alive(self):
        return self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def stop(self):
        self.kill(signal.SIGTERM)
        self.logf.close()

    def wait_up(self, timeout=10):
        def up():
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log.read_text()}")
            try:
                return rcmd(self.port, "PING") == "PONG"
            except (OSError, ConnectionError, RedisError):
                return False
        wait_until(up, timeout, what=f"{self.name} on port {self.port}")
        return self


class Cluster:
    """master + replica + N sentinels watching MASTER_NAME."""

    def __init__(self, nsentinels=3, quorum=2):
        self.dir = Path(tempfile.mkdtemp(prefix="gg-sentinel-"))
        self.procs = []
        self.nsentinels, self.quorum = nsentinels, quorum
        self.master = self.replica = None
        self.sentinels = []

    def _server(self, name, *extra):
        port = free_port(16379)
        d = self.dir / name
        d.mkdir()
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", str(d), "--dbfilename", "never.rdb",
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
                *extra]
        p = Proc(name, port, argv, self.dir)
        self.procs.append(p)
        return p.wait_up()

    def _sentinel(self, i):
        port = free_port(26379)
        conf = self.dir / f"sentinel{i}.conf"
        conf.write_text("\n".join([
            f"port {port}", "bind 127.0.0.1", "daemonize no", "protected-mode no",
            f"dir {self.dir}",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} {self.quorum}",
            f"sentinel down-after-milliseconds {MASTER_NAME} 500",
            f"sentinel failover-timeout {MASTER_NAME} 2000",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
        ]) + "\n")
        p = Proc(f"sentinel{i}", port, ["redis-server", str(conf), "--sentinel"], self.dir)
        self.procs.append(p)
        return p.wait_up()

    def start(self):
        self.master = self._server("master")
        self.replica = self._server("replica", "--replicaof", "127.0.0.1",
                                    str(self.master.port))
        self.sentinels = [self._sentinel(i) for i in range(self.nsentinels)]
        # ready for a failover: the replica in sync, every sentinel knowing
        # the replica and the other sentinels
        wait_until(lambda: "master_link_status:up" in rcmd(self.replica.port, "INFO",
                                                           "replication"),
                   10, what="replica in sync")

        def sentinels_ready():
            for s in self.sentinels:
                m = self.sentinel_master(s)
                if (int(m["num-slaves"]) < 1 or
                        int(m["num-other-sentinels"]) < self.nsentinels - 1):
                    return False
            return True
        wait_until(sentinels_ready, 15, interval=0.1, what="sentinels know each other")
        return self

    def sentinel_master(self, s):
        flat = rcmd(s.port, "SENTINEL", "MASTER", MASTER_NAME)
        return dict(zip(flat[::2], flat[1::2]))

    def master_addr(self, s=None):
        return rcmd((s or self.sentinels[0]).port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                    MASTER_NAME)

    def destroy(self):
        for p in reversed(self.procs):
            with contextlib.suppress(Exception):
                p.stop()
        if not os.environ.get("GG_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def cluster():
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed (Debian package redis-server)",
                    pytrace=False)
    c = Cluster()
    try:
        yield c.start()
    finally:
        c.destroy()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def decision(gg, rcpt, since):
    return gg.wait_event("decision", since=since, timeout=5, rcpt=rcpt)[-1]


def keys(port, pattern):
    return sorted(rcmd(port, "KEYS", pattern))


def ctl(gg, *args):
    assert os.access(GREYGATE_CTL, os.X_OK), f"greygate-ctl not found: {GREYGATE_CTL}"
    return subprocess.run([GREYGATE_CTL, "-c", str(gg.conf_path), *args],
                          capture_output=True, text=True, timeout=15)


def sentinel_gate(greygate_factory, cluster, failure, extra=()):
    """greygate over the cluster's sentinels (EXTRA listed first), connected
    to the current master."""
    sentinels = list(extra) + [f"127.0.0.1:{s.port}" for s in cluster.sentinels]
    gg = greygate_factory(
        start=False, greylist=GL,
        store={"type": "redis", "file": "", "failure": failure,
               "redis": {"sentinels": sentinels, "master_name": MASTER_NAME,
                         "timeout_ms": TIMEOUT_MS, "connect_timeout_ms": TIMEOUT_MS,
                         "prefix": "gg:"}})
    gg.start()
    gg.wait_event("store", state="connected", redis="127.0.0.1",
                  port=str(cluster.master.port), timeout=10)
    return gg


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------

def test_sentinel_failover(cluster, greygate_factory, tok):
    """Decisions on the master the sentinels name; master SIGKILLed: the
    replica is promoted, greygate follows within seconds (logging the new
    master), no RCPT waits longer than the request timeout meanwhile, no 5xx
    (failure=accept), and a triplet greylisted before the failover passes
    after the delay: it is found on the promoted replica."""
    dead = free_port(26379)               # a sentinel that is not there: skipped
    gg = sentinel_gate(greygate_factory, cluster, "accept", extra=[f"127.0.0.1:{dead}"])
    m, r = cluster.master, cluster.replica
    found = gg.events("store", state="master-found")
    assert found and found[0]["port"] == str(m.port), found
    assert gg.events("store", state="sentinel-failed", sentinel=f"127.0.0.1:{dead}"), \
        "the dead sentinel (listed first) was not tried"

    sender = f"alice@{tok}.sender.example"
    kept = f"kept-{tok}@test.example"
    mark = gg.log_mark()
    rep, _, _ = rcpt_once(gg, sender, kept, CLIENT_ADDR)
    assert_reply(rep, 450, "4.2.0")
    ev = decision(gg, kept, mark)
    assert (ev["action"], ev["reason"]) == ("greylist", "new"), ev["_line"]
    first_contact = time.time()
    tkeys = keys(m.port, "gg:t:*")
    assert len(tkeys) == 1, tkeys
    wait_until(lambda: keys(r.port, "gg:t:*") == tkeys, 5, what="the key on the replica")

    # greygate-ctl finds the master through the sentinels as well
    st = ctl(gg, "stats")
    assert st.returncode == 0, st.stdout + st.stderr
    assert f"port={m.port}" in st.stdout and "triplets=1" in st.stdout, st.stdout

    # ---- failover
    mark = gg.log_mark()
    killed_at = time.monotonic()
    m.kill()
    codes, worst, i = [], 0.0, 0
    while not gg.events("store", since=mark, state="connected", port=str(r.port)):
        assert time.monotonic() - killed_at < 20, \
            "greygate did not follow the failover:\n" + "\n".join(gg.log_lines()[mark:])
        rx = f"during{i}-{tok}@test.example"
        i += 1
        rep, _, took = rcpt_once(gg, sender, rx, CLIENT_ADDR)
        worst = max(worst, took)
        # accept: store failures pass (backend connection included)
        assert took < TIMEOUT_MS / 1000 + 2.0, f"RCPT took {took:.2f}s"
        assert rep.code in (250, 450), f"during the failover: {rep.text!r}"
        codes.append(rep.code)
        time.sleep(0.1)
    followed = time.monotonic() - killed_at
    print(f"\nfailover followed in {followed:.1f}s; {len(codes)} RCPTs meanwhile "
          f"(codes {sorted(set(codes))}), slowest {worst:.2f}s")
    assert followed < 15
    # greygate follows the first sentinel that answers; the others learn of
    # the promotion by their own gossip, a moment later on a loaded machine
    wait_until(lambda: cluster.master_addr(cluster.sentinels[1]) == ["127.0.0.1", str(r.port)],
               5, what="the second sentinel naming the promoted replica")
    assert "role:master" in rcmd(r.port, "INFO", "replication")
    line = gg.events("store", since=mark, state="connected", port=str(r.port))[0]["_line"]
    print("greygate:", line)
    assert any(e.get("port") == str(r.port) for e in
               gg.events("store", since=mark, state="master-found") +
               gg.events("store", since=mark, state="switch-master")), \
        "no log line names the new master"

    # ---- state kept: the triplet from before passes after the delay
    time.sleep(max(0.0, int(first_contact) + DELAY + 0.2 - time.time()))
    rcmd(r.port, "CONFIG", "RESETSTAT")
    mark = gg.log_mark()
    rep, _, took = rcpt_once(gg, sender, kept, CLIENT_ADDR)
    assert_reply(rep, 250)
    ev = decision(gg, kept, mark)
    assert (ev["action"], ev["reason"]) == ("pass", "triplet"), ev["_line"]
    assert rcmd(r.port, "HGET", tkeys[0], "p") == "1"
    # a new triplet is greylisted and stored on the new master
    mark = gg.log_mark()
    fresh = f"after-{tok}@test.example"
    rep, _, _ = rcpt_once(gg, sender, fresh, CLIENT_ADDR)
    assert_reply(rep, 450, "4.2.0")
    ev = decision(gg, fresh, mark)
    assert (ev["action"], ev["reason"]) == ("greylist", "new"), ev["_line"]
    # one EVALSHA per decision on the new master, nothing else per decision
    stats = rcmd(r.port, "INFO", "commandstats")
    calls = {m_.group(1): int(m_.group(2))
             for m_ in re.finditer(r"cmdstat_([^:]+):calls=(\d+)", stats)}
    assert calls.get("evalsha") == 2 and "eval" not in calls, calls

    st = ctl(gg, "stats")
    assert st.returncode == 0, st.stdout + st.stderr
    assert f"port={r.port}" in st.stdout, st.stdout
    assert gg.alive()


def test_sentinel_switchover(cluster, greygate_factory, tok):
    """SENTINEL FAILOVER with the old master alive (failure=tempfail): the
    sentinels announce +switch-master and greygate moves to the promoted
    replica at once, not when the old master is demoted ~10 s later; no
    RCPT waits, none gets a 5xx, and new state lands on the new master."""
    gg = sentinel_gate(greygate_factory, cluster, "tempfail")
    m, r = cluster.master, cluster.replica
    gg.wait_event("store", state="subscribed", timeout=5)
    sender = f"bob@{tok}.sender.example"
    mark = gg.log_mark()
    t0 = time.monotonic()
    assert rcmd(cluster.sentinels[1].port, "SENTINEL", "FAILOVER", MASTER_NAME) == "OK"
    i = 0
    while not gg.events("store", since=mark, state="connected", port=str(r.port)):
        assert time.monotonic() - t0 < 8, \
            "greygate did not follow the switch-over:\n" + "\n".join(gg.log_lines()[mark:])
        rep, _, took = rcpt_once(gg, sender, f"sw{i}-{tok}@test.example", CLIENT_ADDR)
        i += 1
        assert took < TIMEOUT_MS / 1000 + 0.5, f"RCPT took {took:.2f}s"
        assert rep.code in (450, 451), f"during the switch-over: {rep.text!r}"
        time.sleep(0.1)
    print(f"\nswitch-over followed in {time.monotonic() - t0:.1f}s")
    assert gg.events("store", since=mark, state="switch-master", port=str(r.port))
    mark = gg.log_mark()
    fresh = f"new-{tok}@test.example"
    rep, _, _ = rcpt_once(gg, sender, fresh, CLIENT_ADDR)
    assert_reply(rep, 450, "4.2.0")
    ev = decision(gg, fresh, mark)
    assert (ev["action"], ev["reason"]) == ("greylist", "new"), ev["_line"]
    assert any(rcmd(r.port, "HGET", k, "r") == fresh for k in keys(r.port, "gg:t:*"))
    assert gg.alive()


def test_sentinel_settings_checked(tmp_path):
    """Each sentinel must be numeric ADDRESS:PORT and master_name is needed
    with sentinels; errors name FILE:LINE."""
    cfg = default_config(2525, "127.0.0.1:10025")
    cfg.pop("store")                   # written below, one setting a line
    base = render_config(cfg)
    nbase = len(base.splitlines())     # the store block starts at nbase + 1

    def check(store_lines):
        p = tmp_path / "g.conf"
        p.write_text(base + "".join(l + "\n" for l in store_lines))
        return subprocess.run([require_binary(), "-t", "-c", str(p)], capture_output=True,
                              text=True, timeout=30), str(p)

    head = ["store = {", '  type = "redis";', "  redis = {"]
    tail = ["  };", "};"]

    r, path = check(head + ['    sentinels = [ "127.0.0.1:26379",',
                            '                  "sentinel.example:26379" ];',
                            '    master_name = "mymaster";'] + tail)
    assert r.returncode != 0
    assert f"{path}:{nbase + 5}:" in r.stderr and "sentinel.example:26379" in r.stderr, r.stderr

    r, path = check(head + ['    sentinels = [ "127.0.0.1:0" ];',
                            '    master_name = "mymaster";'] + tail)
    assert r.returncode != 0 and f"{path}:{nbase + 4}:" in r.stderr, r.stderr

    r, path = check(head + ['    sentinels = [ "127.0.0.1:26379" ];'] + tail)
    assert r.returncode != 0 and f"{path}:{nbase + 4}:" in r.stderr \
        and "master_name" in r.stderr, r.stderr

    r, path = check(head + ['    sentinels = [ "127.0.0.1:26379" ];',
                            '    master_name = "";'] + tail)
    assert r.returncode != 0 and f"{path}:{nbase + 5}:" in r.stderr, r.stderr

    r, path = check(head + ['    sentinels = [ "127.0.0.1:26379", "[::1]:26380" ];',
                            '    master_name = "mymaster";'] + tail)
    assert r.returncode == 0, r.stderr
