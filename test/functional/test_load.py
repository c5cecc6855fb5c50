"""Load: 200 concurrent sessions; a 10 MB message streamed with bounded
memory."""

import hashlib
import re
import threading
import time

from harness.greygate import rss_test_env
from harness.smtp import assert_reply, dot_stuff, make_message

N_SESSIONS = 200
N_ADDRESSES = 20          # 10 sessions per client address (max_per_client is 50)


def test_200_concurrent_sessions(greygate, postfix_backend, tok):
    barrier = threading.Barrier(N_SESSIONS, timeout=60)
    results = [None] * N_SESSIONS

    def session(i):
        try:
            with greygate.raw(source=f"127.0.0.{10 + i % N_ADDRESSES}", timeout=60) as c:
                c.greeting()
                c.ehlo(f"load{i}.helo.test")
                # everybody is connected at the same time before anybody sends
                barrier.wait()
                assert_reply(c.cmd(f"MAIL FROM:<s{i}-{tok}@sender.example>"), 250)
                assert_reply(c.cmd(f"RCPT TO:<r{i}-{tok}@test.example>"), 250)
                assert_reply(c.cmd("DATA"), 354)
                c.send(dot_stuff(make_message(tok, subject=f"load {i}",
                                              body=f"message {i}\r\n".encode() * 50)))
                assert_reply(c.reply(timeout=60), 250)
                assert_reply(c.cmd("QUIT"), 221)
            results[i] = "ok"
        except threading.BrokenBarrierError:
            results[i] = "barrier broken"
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = f"{type(e).__name__}: {e}"
            barrier.abort()

    threads = [threading.Thread(target=session, args=(i,)) for i in range(N_SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not any(t.is_alive() for t in threads), "sessions hung"
    failed = {i: r for i, r in enumerate(results) if r != "ok"}
    assert not failed, f"{len(failed)} sessions failed, e.g. {list(failed.items())[:5]}"

    mails = postfix_backend.wait_mails(tok, count=N_SESSIONS, timeout=90)
    postfix_backend.sync_log()
    mails = postfix_backend.mails_for(tok)
    got = sorted(m.header("delivered-to")[0] for m in mails)
    want = sorted(f"r{i}-{tok}@test.example" for i in range(N_SESSIONS))
    assert got == want, f"{len(got)} mails; duplicates or missing"
    for m in mails:
        i = int(re.match(r"r(\d+)-", m.header("delivered-to")[0]).group(1))
        assert m.header("subject") == [f"load {i} {tok}"]
        assert m.body == f"message {i}\n".encode() * 50
        assert f"load{i}.helo.test" in m.header("received")[0]


def _status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def test_10mb_message_bounded_memory(greygate_factory, postfix_backend, tok):
    gg = greygate_factory(env=rss_test_env())
    # warm up (backend probe, first session, allocator pools)
    with gg.raw() as c:
        c.send_message(f"w-{tok}@sender.example", [f"warm-{tok}@test.example"],
                       dot_stuff(make_message(tok)))
        assert_reply(c.cmd("QUIT"), 221)

    line = b"0123456789" * 7 + b"abcdef\r\n"                   # 78 bytes
    body = bytearray()
    i = 0
    while len(body) < 10 * 1024 * 1024:
        body += line if i % 1000 else b"." + line                # some stuffed lines
        i += 1
    body = bytes(body)
    msg = make_message(tok, body=body, subject="big")
    data = dot_stuff(msg)

    with gg.raw(timeout=120) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example> SIZE={len(msg)}"), 250)
        assert_reply(c.cmd(f"RCPT TO:<big-{tok}@test.example>"), 250)
        assert_reply(c.cmd("DATA"), 354)
        rss_before = _status(gg.pid, "VmRSS")
        with open(f"/proc/{gg.pid}/clear_refs", "w") as f:
            f.write("5")                         # reset VmHWM to the current RSS
        hwm_reset = _status(gg.pid, "VmHWM")
        t0 = time.monotonic()
        c.send(data)
        assert_reply(c.reply(timeout=120), 250)
        elapsed = time.monotonic() - t0
        hwm = _status(gg.pid, "VmHWM")
        assert_reply(c.cmd("QUIT"), 221)

    [m] = postfix_backend.wait_mails(f"big-{tok}", timeout=60)
    assert hashlib.sha256(m.body).hexdigest() == \
        hashlib.sha256(body.replace(b"\r\n", b"\n")).hexdigest(), "10 MB body changed"
    growth_kb = hwm - max(rss_before, hwm_reset)
    assert growth_kb < 4 * 1024, (f"peak RSS grew by {growth_kb} kB while streaming 10 MB "
                                  f"(rss before {rss_before} kB, peak {hwm} kB, {elapsed:.1f}s)")
