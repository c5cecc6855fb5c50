"""Reloads and the configuration in force (issue 11, items 3 and 9): a
worker always starts with the configuration its supervisor holds in force,
a change that needs a restart is refused at reload, a slot without a worker
keeps no listening socket and /healthz says so, and reloads are stepwise and
coalesced, so that a burst of SIGHUPs with large list files neither repeats
the work nor stalls sessions.

Some of these need the stepwise, bundle-fed loader of lib/config.c (the
configuration in force travels as a bundle, not as a file name): they say so
in their docstrings."""
import os
import select
import signal
import socket
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest

from harness.greygate import merge, worker_pids
from harness.redis import RedisServer
from harness.smtp import assert_reply
from harness.util import CLIENT_ADDR, free_port, token, wait_until

LIMITS = {"max_connections": 1000, "max_per_client": 200, "max_recipients": 1000,
          "max_line": 2048, "command_timeout": 300, "data_timeout": 600,
          "max_errors": 1000}


def banners(gg, n=20, timeout=3.0):
    """Opens N connections at once; how many got a 220 banner in TIMEOUT."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((CLIENT_ADDR, 0))
            s.settimeout(timeout)
            try:
                s.connect(("127.0.0.1", gg.port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        got, data = 0, {s: b"" for s in socks}
        deadline = time.monotonic() + timeout
        waiting = list(socks)
        while waiting and time.monotonic() < deadline:
            r, _, _ = select.select(waiting, [], [], max(0.0, deadline - time.monotonic()))
            for s in r:
                try:
                    chunk = s.recv(512)
                except OSError:
                    chunk = b""
                data[s] += chunk
                if not chunk or b"\n" in data[s]:
                    waiting.remove(s)
                    got += data[s].startswith(b"220")
        return got
    finally:
        for s in socks:
            s.close()


def healthz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def rcpt(gg, sender, to):
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<{sender}>"), 250)
        r = c.cmd(f"RCPT TO:<{to}>")
        c.cmd("QUIT")
        return r


def kill_a_worker(gg):
    victim = worker_pids(gg)[0]
    mark = gg.log_mark()
    os.kill(victim, signal.SIGKILL)
    gg.wait_event("worker", since=mark, state="died; restarting", pid=str(victim))
    return victim


def test_restarted_worker_runs_the_configuration_in_force(greygate_factory):
    """An edit the reload refused is not what a worker restarted later runs:
    it starts with the configuration in force and serves (before: it exited
    1 every 5 s, and its slot's socket took connections nobody answered).
    Needs the bundle loader: with the stub the bundle names the file."""
    gg = greygate_factory(workers=2, limits=LIMITS)
    wait_until(lambda: len(gg.events("ready")) == 2, 10, what="two workers ready")
    mark = gg.log_mark()
    gg.write_config(open(gg.conf_path).read() + "\nthis is not a setting;\n")
    gg.hup()
    gg.wait_event("reload", since=mark, result="failed")
    kill_a_worker(gg)
    # every connection is answered, the replacement's part of the port too
    assert banners(gg) == 20
    wait_until(lambda: len(gg.events("ready")) == 3, 15, what="the replacement ready")
    assert len(worker_pids(gg)) == 2
    assert banners(gg) == 20
    assert not gg.events("worker", since=mark, state="died; restarting", exit="1")


@pytest.fixture
def redis():
    rs = RedisServer()
    try:
        rs.start()
        yield rs
    finally:
        rs.destroy()


def test_store_change_is_refused_and_restarted_workers_keep_the_store(greygate_factory,
                                                                     redis, tmp_path):
    """redis -> memory needs a restart: refused at reload, and a worker
    restarted later still uses Redis (before: it opened its own embedded
    store, splitting the greylisting state). Needs the bundle loader."""
    store = {"type": "redis", "file": "", "failure": "accept",
             "redis": {"host": "127.0.0.1", "port": redis.port, "prefix": "gg:",
                       "timeout_ms": 500, "connect_timeout_ms": 500}}
    gg = greygate_factory(workers=2, limits=LIMITS, store=store,
                          greylist={"enabled": True, "delay": 1})
    wait_until(lambda: len(gg.events("ready")) == 2, 10, what="two workers ready")
    mark = gg.log_mark()
    gg.write_config(merge(gg.config, {"store": {"type": "memory",
                                                "file": str(tmp_path / "split.db")}}))
    gg.hup()
    [ev] = gg.wait_event("reload", since=mark, result="refused")
    assert ev["setting"] == "store.type" and ev["reason"] == "needs a restart", ev["_line"]
    assert ev["action"] == "keeping the configuration in force", ev["_line"]
    kill_a_worker(gg)
    wait_until(lambda: len(gg.events("ready")) == 3, 15, what="the replacement ready")
    tok = token()
    sender, to = f"s-{tok}@sender.example", f"r-{tok}@test.example"
    assert_reply(rcpt(gg, sender, to), 450, "4.2.0")
    time.sleep(1.2)
    # one state for both workers, the replacement included
    codes = [rcpt(gg, sender, to).code for _ in range(12)]
    assert codes == [250] * 12, codes
    assert not (tmp_path / "split.db").exists()


def test_dead_slot_keeps_no_listening_socket_and_healthz_says_so(greygate_factory):
    """While a worker waits to be restarted its part of the port does not
    take connections (all 20 of 20 are greeted by the other worker) and
    /healthz answers 503 naming it; 200 once it is back."""
    admin = free_port(19925)
    gg = greygate_factory(workers=2, limits=LIMITS, admin={"listen": f"127.0.0.1:{admin}"})
    wait_until(lambda: len(gg.events("ready")) == 2, 10, what="two workers ready")
    wait_until(lambda: healthz(admin)[0] == 200, 5, what="healthy")
    kill_a_worker(gg)
    mark = gg.log_mark()
    # its replacement dies young: the slot waits RESTART_DELAY_CRASHY (5 s)
    [started] = gg.wait_event("worker", since=mark, state="started")
    os.kill(int(started["pid"]), signal.SIGKILL)
    [died] = gg.wait_event("worker", since=mark, state="died; restarting", pid=started["pid"])
    wait_until(lambda: healthz(admin)[0] == 503, 3, what="503 while a slot is empty")
    code, body = healthz(admin)
    assert code == 503 and f"worker {died['worker']} not running" in body, (code, body)
    assert banners(gg) == 20
    wait_until(lambda: healthz(admin)[0] == 200, 15, what="200 once the worker is back")
    assert banners(gg) == 20


def log_time(ev):
    """The wall time of a log line, from its leading timestamp."""
    stamp = ev["_line"].split()[0]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc).timestamp()


def reload_ends(gg, since):
    return [e for e in gg.events("reload", since=since) if "result" in e]


def test_sighup_burst_is_coalesced_and_does_not_stall_sessions(greygate_factory, tmp_path):
    """30 SIGHUPs in a burst with a 600,000-line whitelist.clients_file: at
    most two loads (one, and one for the HUPs that came during it), and
    sessions are answered while a load runs (before: 30 loads, each a
    stall of the loop). Needs the stepwise loader: the stub loads whole in
    gg_config_load_begin."""
    clients = tmp_path / "clients"
    with open(clients, "w") as f:
        f.write("".join(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n"
                        for i in range(600000)))
    gg = greygate_factory(limits=LIMITS, whitelist={"clients_file": str(clients)},
                          greylist={"enabled": True, "delay": 60}, start=False)
    gg.start(timeout=60)
    tok = token()
    sent = []        # (sent, answered) wall times of each RCPT
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        mark = gg.log_mark()
        # a few ms apart, as a configuration tool sends them: signals sent
        # at once would merge into one in the kernel
        for _ in range(30):
            os.kill(gg.pid, signal.SIGHUP)
            time.sleep(0.003)
        deadline = time.monotonic() + 60
        quiet_since = None
        while time.monotonic() < deadline:
            t = time.time()
            r = c.cmd(f"RCPT TO:<r{len(sent)}-{tok}@test.example>")
            sent.append((t, time.time()))
            assert r.code == 450, r
            ends = reload_ends(gg, mark)
            if ends and (quiet_since is None or len(ends) != quiet_since[0]):
                quiet_since = (len(ends), time.monotonic())
            if quiet_since and time.monotonic() - quiet_since[1] > 1.5:
                break
            time.sleep(0.002)
        c.cmd("QUIT")
    ends = reload_ends(gg, mark)
    assert ends and all(e["result"] == "ok" for e in ends), [e["_line"] for e in ends]
    assert len(ends) <= 2, f"{len(ends)} loads for one burst of 30 SIGHUPs"
    first = ends[0]
    end = log_time(first)
    start = end - int(first["duration_ms"]) / 1000
    inside = [(s, a) for s, a in sent if s >= start and a < end]
    print(f"{len(ends)} loads, the first {first['duration_ms']} ms; {len(inside)} RCPTs "
          f"sent and answered during it, {len(sent)} in all")
    # a stalled loop answers at most the one RCPT in flight during it
    assert len(inside) >= 2, \
        f"no RCPT answered during a {first['duration_ms']} ms reload: {first['_line']}"


def test_single_process_refuses_a_change_that_needs_a_restart(greygate_factory, tmp_path):
    """workers = 1: a store.type change is refused whole (before: a warning,
    the rest applied, and the setting silently ignored)."""
    gg = greygate_factory(greylist={"enabled": True, "delay": 1},
                          store={"type": "memory", "file": ""})
    tok = token()
    sender, to = f"s-{tok}@sender.example", f"r-{tok}@test.example"
    assert_reply(rcpt(gg, sender, to), 450, "4.2.0")
    mark = gg.log_mark()
    new = merge(gg.config, {"store": {"type": "redis", "redis": {"host": "127.0.0.1",
                                                                 "port": free_port(16379)}},
                            "local_domains": ["test.example", f"new-{tok}.example"]})
    gg.write_config(new)
    gg.hup()
    [ev] = gg.wait_event("reload", since=mark, result="refused")
    assert ev["setting"] == "store.type" and ev["reason"] == "needs a restart", ev["_line"]
    assert not gg.events("reload", since=mark, result="ok")
    # nothing of the refused file applies, and the store in force answers
    assert_reply(rcpt(gg, sender, f"x@new-{tok}.example"), 554, "5.7.1")
    time.sleep(1.2)
    assert_reply(rcpt(gg, sender, to), 250)


def test_sighup_to_a_worker_points_at_the_supervisor(greygate_factory):
    """Only the supervisor reads the file: a worker sent SIGHUP directly
    says where reloads go and keeps the configuration in force."""
    gg = greygate_factory(workers=2, limits=LIMITS)
    wait_until(lambda: len(gg.events("ready")) == 2, 10, what="two workers ready")
    mark = gg.log_mark()
    os.kill(worker_pids(gg)[0], signal.SIGHUP)
    [ev] = gg.wait_event("reload", since=mark, result="ignored")
    assert ev["supervisor"] == str(gg.pid), ev["_line"]
    time.sleep(0.3)
    assert not gg.events("reload", since=mark, result="ok")


@pytest.mark.parametrize("workers", [1, 2])
def test_healthz_is_503_while_draining(greygate_factory, workers):
    """SIGTERM: a balancer asking /healthz learns at once that new clients
    belong elsewhere, while the sessions in flight finish."""
    admin = free_port(19925)
    gg = greygate_factory(workers=workers, limits=LIMITS, shutdown_grace=5,
                          admin={"listen": f"127.0.0.1:{admin}"})
    if workers > 1:
        wait_until(lambda: len(gg.events("ready")) == workers, 10, what="workers ready")
    wait_until(lambda: healthz(admin)[0] == 200, 5, what="healthy")
    with gg.raw() as c:
        assert_reply(c.greeting(), 220)
        gg.term()
        gg.wait_event("shutdown")
        assert healthz(admin) == (503, "shutting down\n")
        c.cmd("QUIT")
    assert gg.wait_exit(15) == 0
