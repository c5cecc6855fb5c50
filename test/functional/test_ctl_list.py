"""greygate-ctl list against the embedded store: served in slices, so that
a large listing neither holds up the decisions that wait on the same loop
nor is buffered whole for a slow reader."""
import os
import signal
import socket
import subprocess
import threading
import time

from harness.greygate import large_store_gg, rss_test_env
from harness.smtp import assert_reply
from harness.util import GREYGATE_BIN, token, wait_until

CTL_BIN = os.path.join(os.path.dirname(GREYGATE_BIN), "greygate-ctl")


def stored_keys(db):
    """The keys of a file write_text_store wrote."""
    with open(db, "rb") as f:
        f.readline()
        return {line[2:34] for line in f}


def large_store(greygate_factory, tmp_path, n, workers=2, env=None):
    """A greygate on N stored entries, and their keys."""
    db = tmp_path / "gl.db"
    gg = large_store_gg(greygate_factory, db, n, workers=workers, env=env,
                        greylist={"max_new_per_client": 10000000},
                        store={"max_entries": n + 100000}, max_recipients=100000)
    return gg, stored_keys(db)


def test_listing_a_million_entries_does_not_stall_decisions(greygate_factory, tmp_path):
    """workers = 2, a million entries, `greygate-ctl list` of them all
    while a client sends RCPTs: each RCPT gets its greylisting answer (450
    on first sight), none passes as a store failure (the workers' requests
    to the supervisor time out after 1 s), and the listing shows every
    entry exactly once."""
    n = 1000000
    gg, stored = large_store(greygate_factory, tmp_path, n)
    mark = gg.log_mark()
    keys, lines, tail = set(), [0], []

    def read_listing(out):
        for line in out:
            if line.startswith(b"key="):
                keys.add(line[4:36])
                lines[0] += 1
            else:
                tail.append(line.decode(errors="replace"))

    lister = subprocess.Popen([CTL_BIN, "-c", str(gg.conf_path), "list", f"limit={2 * n}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader = threading.Thread(target=read_listing, args=(lister.stdout,), daemon=True)
    reader.start()
    tok = token()
    count, slowest = 0, 0.0
    with gg.raw() as c:
        assert_reply(c.greeting(), 220)
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        deadline = time.monotonic() + 60
        while lister.poll() is None:
            assert time.monotonic() < deadline, "the listing did not end"
            t = time.monotonic()
            r = c.cmd(f"RCPT TO:<r{count}-{tok}@test.example>")
            took = time.monotonic() - t
            assert r.code == 450, \
                f"RCPT {count} during the listing: {r} after {took:.2f}s; " \
                f"{gg.events('decision', since=mark, reason='store-failure')[:1]}"
            count += 1
            slowest = max(slowest, took)
            time.sleep(0.005)
        c.cmd("QUIT")
    reader.join(30)
    assert lister.wait() == 0, lister.stderr.read()
    assert count >= 5, f"only {count} RCPTs while listing"
    assert not gg.events("decision", since=mark, reason="store-failure")
    # each entry once; the RCPTs' own may or may not be there
    assert tail == [f"shown={lines[0]}\n"], tail
    assert lines[0] == len(keys)
    assert len(stored) == n and stored <= keys and len(keys - stored) <= count
    [done] = gg.events("control", since=mark, command="list")
    assert done["status"] == "0" and int(done["slices"]) > 100, done["_line"]
    print(f"{count} RCPTs during the listing, slowest {slowest:.3f}s; {done['_line']}")


def send_list(gg, *args):
    """A control socket connection that asked for `list ARGS`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(gg.config["control_socket"])
    s.sendall(("list " + " ".join(args) + "\n").encode())
    return s


def read_all(s):
    chunks = []
    while True:
        b = s.recv(1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def test_a_slow_reader_is_not_answered_from_memory(greygate_factory, tmp_path):
    """A client that asks for a large listing and does not read it: the
    daemon goes no further than a little ahead of the client (not the
    whole listing in memory), and once the client reads, the listing comes
    whole; a client that half-closes its end still gets it."""
    n = 200000
    gg, stored = large_store(greygate_factory, tmp_path, n, env=rss_test_env())
    before = gg.rss_kb()
    with send_list(gg, f"limit={2 * n}") as s:
        s.shutdown(socket.SHUT_WR)
        # a listing built whole would take ~190 bytes an entry, at once
        grown, end = 0, time.monotonic() + 1
        while time.monotonic() < end:
            grown = max(grown, gg.rss_kb() - before)
            time.sleep(0.05)
        assert grown < 8 * 1024, f"RSS grew {grown} KiB for a client that reads nothing"
        out = read_all(s).splitlines()
    assert out[-2:] == [f"shown={n}".encode(), b"status=0"], out[-2:]
    assert {line[4:36] for line in out[:-2]} == stored and len(out) == n + 2
    print(f"RSS grew {grown} KiB while the client did not read")


def test_a_client_that_goes_away_stops_the_listing(greygate_factory, tmp_path):
    """The walk stops when its client is gone, and says so."""
    gg, _ = large_store(greygate_factory, tmp_path, 200000)
    mark = gg.log_mark()
    with send_list(gg, "limit=1000000") as s:
        assert s.recv(65536).startswith(b"key=")
    [ev] = gg.wait_event("control", since=mark, command="list")
    assert ev["result"] == "stopped" and ev["reason"] == "the client went away", ev["_line"]
    # a filter that matches nothing writes nothing to fail on: still stopped
    mark = gg.log_mark()
    send_list(gg, "rcpt=nobody-has-this", "limit=10").close()
    [ev] = gg.wait_event("control", since=mark, command="list")
    assert ev["result"] == "stopped" and ev["reason"] == "the client went away", ev["_line"]
    assert int(ev.get("slices", 0)) < 100, ev["_line"]


def test_connections_open_at_exit_are_freed(greygate_factory, tmp_path):
    """Control connections still open when the daemon stops (one that has
    said nothing, one in the middle of a listing) are closed and freed:
    the sanitizer build reports no leak at exit."""
    gg, _ = large_store(greygate_factory, tmp_path, 200000)
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.settimeout(20)
    idle.connect(gg.config["control_socket"])
    idle.sendall(b"li")
    with idle, send_list(gg, "limit=1000000") as s:
        assert s.recv(65536).startswith(b"key=")
        gg.signal(signal.SIGTERM)
        assert gg.wait_exit(20) == 0
    gg.stop()   # raises on a sanitizer report (LeakSanitizer) in the log
