"""workers = N: a supervisor, N worker processes sharing the port, one
embedded store owned by the supervisor, restarts, reload and drain."""
import contextlib
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from harness.greygate import SANITIZER_MARKERS, large_store_gg, worker_pids
from harness.smtp import assert_reply
from harness.util import GREYGATE_BIN, token, wait_until

CTL_BIN = os.path.join(os.path.dirname(GREYGATE_BIN), "greygate-ctl")


def client_sockets(pid, port, peers):
    """Established connections of PID on our listen port from the client
    ports PEERS (from /proc): the start-up probe's connection, which may
    not be closed yet, is not one of ours."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", link)
        if m:
            inodes.add(m.group(1))
    n = 0
    with open(f"/proc/{pid}/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            local_port = int(parts[1].split(":")[1], 16)
            peer_port = int(parts[2].split(":")[1], 16)
            if (local_port == port and peer_port in peers and parts[3] == "01"
                    and parts[9] in inodes):
                n += 1
    return n


@pytest.fixture
def workers_gg(greygate_factory, tmp_path):
    return greygate_factory(workers=2, greylist={"enabled": True, "delay": 1},
                            store={"type": "memory", "file": str(tmp_path / "gl.db")},
                            limits={"max_connections": 1000, "max_per_client": 200,
                                    "max_recipients": 100, "max_line": 2048,
                                    "command_timeout": 300, "data_timeout": 600,
                                    "max_errors": 20})


def test_both_workers_serve(workers_gg):
    gg = workers_gg
    wait_until(lambda: len(gg.events("ready")) == 2, 10, what="two workers ready")
    pids = worker_pids(gg)
    assert len(pids) == 2
    clients = []
    try:
        for i in range(40):
            c = gg.raw()
            c.__enter__()
            assert_reply(c.greeting(), 220)
            clients.append(c)
        peers = {c.local_port for c in clients}
        counts = [client_sockets(p, gg.port, peers) for p in pids]
        # the kernel spreads connections over both workers' sockets
        assert sum(counts) == 40, counts
        assert all(n > 0 for n in counts), counts
    finally:
        for c in clients:
            c.close()


def rcpt(gg, sender, rcpt_to):
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<{sender}>"), 250)
        r = c.cmd(f"RCPT TO:<{rcpt_to}>")
        c.cmd("QUIT")
        return r


def test_one_store_for_all_workers(workers_gg, tmp_path):
    gg = workers_gg
    tok = token()
    sender, to = f"s-{tok}@sender.example", f"r-{tok}@test.example"
    assert_reply(rcpt(gg, sender, to), 450, "4.2.0")
    time.sleep(2.2)
    # every retry passes, whichever worker takes it: one state for all
    for _ in range(12):
        assert_reply(rcpt(gg, sender, to), 250)
    passes = gg.events("decision", action="pass", rcpt=to)
    assert len(passes) == 12 and all(p["reason"] == "triplet" for p in passes)
    # greygate-ctl reaches the supervisor's store
    out = subprocess.run([CTL_BIN, "-c", str(gg.conf_path), "list", f"rcpt={to}"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert "state=passed" in out.stdout


def assert_replaced(gg, victim):
    """A third worker became ready in VICTIM's place, and clients are served."""
    wait_until(lambda: len(gg.events("ready")) == 3, 15, what="a new worker ready")
    pids = worker_pids(gg)
    assert len(pids) == 2 and victim not in pids
    for _ in range(6):
        with gg.raw() as c:
            assert_reply(c.greeting(), 220)


def test_dead_worker_is_restarted(workers_gg):
    gg = workers_gg
    wait_until(lambda: len(gg.events("ready")) == 2, 10, what="two workers ready")
    victim = worker_pids(gg)[0]
    os.kill(victim, signal.SIGKILL)
    gg.wait_event("worker", state="died; restarting", timeout=10)
    assert_replaced(gg, victim)


def nofile_limit(pid, soft):
    """Sets the soft descriptor limit of a running process (the hard one
    stays)."""
    hard = subprocess.run(["prlimit", "--pid", str(pid), "--nofile", "--noheadings",
                           "--output=HARD", "--raw"], capture_output=True, text=True,
                          check=True).stdout.strip()
    subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={soft}:{hard}"], check=True)


def test_worker_restarted_after_a_descriptor_shortage(workers_gg):
    """With no descriptor to spare the supervisor cannot start the dead
    worker's replacement; once descriptors are back, it must."""
    gg = workers_gg
    wait_until(lambda: len(gg.events("ready")) == 2, 10, what="two workers ready")
    soft = subprocess.run(["prlimit", "--pid", str(gg.pid), "--nofile", "--noheadings",
                           "--output=SOFT", "--raw"], capture_output=True, text=True,
                          check=True).stdout.strip()
    victim = worker_pids(gg)[0]
    nofile_limit(gg.pid, 0)
    try:
        os.kill(victim, signal.SIGKILL)
        gg.wait_event("worker", state="died; restarting", timeout=10)
        wait_until(lambda: [e for e in gg.events("worker")
                            if e.get("reason", "").startswith("socketpair failed")],
                   10, what="the failed start logged")
    finally:
        nofile_limit(gg.pid, soft)
    assert_replaced(gg, victim)


def test_reload_reaches_every_worker(workers_gg):
    gg = workers_gg
    wait_until(lambda: len(gg.events("ready")) == 2, 10, what="two workers ready")
    tok = token()
    assert_reply(rcpt(gg, f"s-{tok}@sender.example", f"r@new-{tok}.example"), 554, "5.7.1")
    cfg = dict(gg.config)
    cfg["local_domains"] = ["test.example", f"new-{tok}.example"]
    cfg["greylist"] = {"enabled": False}
    gg.write_config(cfg)
    gg.hup()
    # the supervisor and both workers
    wait_until(lambda: len(gg.events("reload", result="ok")) == 3, 10, what="three reloads")
    for _ in range(8):
        # relayed now: the backend's own answer (it delivers test.example
        # only), not greygate's relay refusal
        r = rcpt(gg, f"s-{tok}@sender.example", f"r@new-{tok}.example")
        assert r.code != 554 and "outbound mail disabled" in r.text, r.text


def test_sigterm_drains_and_saves_the_store(workers_gg, tmp_path):
    gg = workers_gg
    tok = token()
    wait_until(lambda: len(gg.events("ready")) == 2, 10, what="two workers ready")
    pids = worker_pids(gg)
    assert_reply(rcpt(gg, f"s-{tok}@sender.example", f"r-{tok}@test.example"), 450)
    gg.term()
    assert gg.wait_exit(30) == 0
    saved = (tmp_path / "gl.db").read_bytes()
    assert f"r-{tok}".encode() in saved
    [ev] = gg.events("store_save", why="exit")
    assert ev["result"] == "ok" and int(ev["triplets"]) == 1, ev["_line"]
    assert len(gg.events("worker", state="exited", exit="0")) == 2
    for p in pids:
        assert not os.path.exists(f"/proc/{p}/status") or "zombie" in open(f"/proc/{p}/status").read()


@pytest.mark.parametrize("workers", [1, 2])
def test_saving_a_large_store_does_not_stall_decisions(greygate_factory, tmp_path, workers):
    """A million entries (store.max_entries' default) saved every second:
    the loop that owns the store goes on deciding while the file is
    written, so every RCPT meanwhile gets its greylisting answer at once,
    never store.failure's pass (workers' requests time out after 1 s) nor
    a stall."""
    n = 1000000
    db = tmp_path / "gl.db"
    gg = large_store_gg(greygate_factory, db, n, workers=workers, store={"save_interval": 1})
    mark = gg.log_mark()
    tok = token()
    count, slowest = 0, 0.0
    with gg.raw() as c:
        assert_reply(c.greeting(), 220)
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        deadline = time.monotonic() + 30
        # until two saves have ended while RCPTs were being answered
        while len(gg.events("store_save", since=mark, result="ok")) < 2:
            assert time.monotonic() < deadline, gg.events("store_save", since=mark)
            t = time.monotonic()
            r = c.cmd(f"RCPT TO:<r{count}-{tok}@test.example>")
            took = time.monotonic() - t
            assert r.code == 450 and took < 0.25, \
                f"RCPT {count}: {r} after {took:.2f}s; " \
                f"{gg.events('decision', since=mark, reason='store-failure')[:1]}"
            count += 1
            slowest = max(slowest, took)
            time.sleep(0.01)
        c.cmd("QUIT")
    assert not gg.events("decision", since=mark, reason="store-failure")
    saves = gg.events("store_save", since=mark, result="ok")
    for s in saves:
        # each save ran in the background: its duration is no stall
        assert int(s["triplets"]) >= n - count, s["_line"]
        assert int(s["bytes"]) < 60 * int(s["triplets"]), s["_line"]
    assert not gg.events("store_save", since=mark, result="failed")
    print(f"{count} RCPTs, slowest {slowest:.3f}s; saves: {[s['_line'] for s in saves]}")
    # SIGTERM, likely while a save runs: that one is stopped, the exit save
    # is written in the process, and the file is whole
    gg.stop()
    [last] = gg.events("store_save", since=mark, why="exit")
    assert last["result"] == "ok", last["_line"]
    assert not (tmp_path / "gl.db.tmp").exists()
    assert db.read_bytes().startswith(b"greygate-memstore 2\n")


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_refuses_new_connections_at_once(workers_gg):
    """Draining: a new client is refused at once (not accepted into a
    backlog nobody reads, then reset seconds later), while the session
    already open still runs to its QUIT."""
    gg = workers_gg
    wait_until(lambda: len(gg.events("ready")) == 2, 10, what="two workers ready")
    tok = token()
    with gg.raw() as c:
        assert_reply(c.greeting(), 220)
        c.ehlo()
        start = time.monotonic()
        gg.term()
        wait_until(lambda: refused(gg.port), 1.5, what="new connections refused")
        assert time.monotonic() - start < 1.5
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example>"), 450, "4.2.0")
        assert_reply(c.cmd("QUIT"), 221)
    assert gg.wait_exit(30) == 0


def test_workers_stop_when_the_supervisor_dies(greygate_factory, tmp_path):
    """kill -9 of the supervisor: its workers drain and exit (they could
    only pass every RCPT as a store failure), and the port refuses."""
    gg = greygate_factory(workers=2, shutdown_grace=1,
                          store={"type": "memory", "file": str(tmp_path / "gl.db")})
    wait_until(lambda: len(gg.events("ready")) == 2, 10, what="two workers ready")
    pids = worker_pids(gg)
    assert len(pids) == 2
    c = gg.raw()
    assert_reply(c.greeting(), 220)
    gg.signal(signal.SIGKILL)
    gg.wait_exit(5)

    def proc_state(p):
        try:
            with open(f"/proc/{p}/status") as f:
                return next((l.split(":", 1)[1].strip() for l in f if l.startswith("State:")), "?")
        except FileNotFoundError:
            return "reaped"

    def gone(p):
        return proc_state(p) in ("Z (zombie)", "reaped")
    try:
        # the session in flight is drained, not cut: it still gets its QUIT
        wait_until(lambda: refused(gg.port), 3, what="new connections refused")
        assert_reply(c.cmd("QUIT"), 221)
        c.close()
        wait_until(lambda: all(gone(p) for p in pids), 5, what="both workers gone")
        assert len(gg.events("shutdown", reason="supervisor gone; no new connections, "
                                                "finishing sessions")) == 2
        # each worker's last line is written before it exits: both are gone,
        # so both are there (the states say which worker went how, if not)
        states = {p: proc_state(p) for p in pids}
        assert len(gg.events("exit")) == 2, f"{states}\n" + "\n".join(gg.log_lines()[-25:])
        assert not [l for l in gg.log_lines() if any(m in l for m in SANITIZER_MARKERS)]
    finally:
        c.close()
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        # the supervisor's -9 is this test's doing, not a failure to report
        gg.proc = None
