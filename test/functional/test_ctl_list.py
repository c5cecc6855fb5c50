"""greygate-ctl list against the embedded store: served in slices, so that
a large listing neither holds up the decisions that wait on the same loop
nor is buffered whole for a slow reader."""
import os
import subprocess
import threading
import time

from conftest import GREYGATE_BIN, assert_reply, token, wait_until
from test_workers import write_text_store

CTL_BIN = os.path.join(os.path.dirname(GREYGATE_BIN), "greygate-ctl")


def stored_keys(db):
    """The keys of a file write_text_store wrote."""
    with open(db, "rb") as f:
        f.readline()
        return {line[2:34] for line in f}


def large_store_gg(greygate_factory, tmp_path, n):
    db = tmp_path / "gl.db"
    write_text_store(db, n, int(time.time()))
    keys = stored_keys(db)
    gg = greygate_factory(workers=2, start=False,
                          greylist={"enabled": True, "delay": 60,
                                    "max_new_per_client": 10000000},
                          store={"type": "memory", "file": str(db), "save_interval": 3600,
                                 "failure": "accept", "max_entries": n + 100000},
                          limits={"max_connections": 100, "max_per_client": 50,
                                  "max_recipients": 100000, "max_line": 2048,
                                  "command_timeout": 300, "data_timeout": 600,
                                  "max_errors": 2000})
    gg.start(timeout=60)
    [load] = gg.wait_event("store_load", result="ok", timeout=5)
    assert int(load["entries"]) == n, load["_line"]
    wait_until(lambda: len(gg.events("ready")) == 2, 10, what="two workers ready")
    return gg, keys


def test_listing_a_million_entries_does_not_stall_decisions(greygate_factory, tmp_path):
    """workers = 2, a million entries, `greygate-ctl list` of them all
    while a client sends RCPTs: each RCPT gets its greylisting answer (450
    on first sight), none passes as a store failure (the workers' requests
    to the supervisor time out after 1 s), and the listing shows every
    entry exactly once."""
    n = 1000000
    gg, stored = large_store_gg(greygate_factory, tmp_path, n)
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
