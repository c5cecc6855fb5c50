"""Abuse: slow-loris, floods beyond the limits, 100,000 commands on one
connection, a client that never reads, pipelined garbage, NUL bytes, 8-bit
and UTF-8. Each time greygate stays up, serves others, keeps its memory
bounded and logs what it refused."""
import os
import socket
import threading
import time

import pytest

from harness.greygate import rss_test_env
from harness.smtp import assert_reply
from harness.util import parse_kv, wait_until


def serves(gg):
    with gg.raw(source="127.0.0.6") as c:
        assert_reply(c.reply(timeout=5), 220)
        assert_reply(c.cmd("NOOP", timeout=5), 250)


def rss_kb(gg):
    return gg.rss_kb("VmRSS")


def test_slowloris_line_deadline(greygate_factory):
    gg = greygate_factory(limits={"max_connections": 100, "max_per_client": 50,
                                  "max_recipients": 100, "max_line": 2048,
                                  "command_timeout": 3, "data_timeout": 600, "max_errors": 20})
    with gg.raw() as c:
        c.greeting()
        t0 = time.monotonic()
        closed = False
        # one byte every 0.4 s, never a line end: the read timeout alone
        # would never fire
        for _ in range(30):
            try:
                c.send(b"E")
            except OSError:
                closed = True
                break
            if c.wait_closed(0.4):
                closed = True
                break
            serves(gg)   # everyone else is served meanwhile
        assert closed
        assert time.monotonic() - t0 < 7
        assert b"421 4.4.2" in c.buf
    assert gg.events("reject", cmd="LINE", rule="command_timeout")


def test_connection_flood(greygate_factory):
    gg = greygate_factory(limits={"max_connections": 20, "max_per_client": 10,
                                  "max_recipients": 100, "max_line": 2048,
                                  "command_timeout": 300, "data_timeout": 600, "max_errors": 20})
    socks, refused = [], 0
    try:
        for i in range(60):
            s = socket.create_connection(("127.0.0.1", gg.port),
                                         source_address=(f"127.0.0.{20 + i % 4}", 0), timeout=5)
            socks.append(s)
            data = s.recv(200)
            if data.startswith(b"421"):
                refused += 1
        # 4 addresses x 10 each would be 40; the total of 20 comes first
        assert refused == 40
    finally:
        for s in socks:
            s.close()
    # the refusal is logged just after its 421 is sent
    wait_until(lambda: len(gg.events("refuse")) >= 40, 5, what="40 refusals logged")
    assert len(gg.events("refuse")) == 40
    serves(gg)


def test_100000_commands_on_one_connection(greygate):
    gg = greygate
    base = rss_kb(gg)
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        n, batch = 100_000, 5_000
        got = 0

        def reader():
            nonlocal got
            while got < n:
                line = c.readline(timeout=30)
                assert line == "250 2.0.0 Ok", line
                got += 1

        t = threading.Thread(target=reader)
        t.start()
        for _ in range(n // batch):
            c.send(b"NOOP\r\n" * batch)
        t.join(60)
        assert got == n
        assert_reply(c.cmd("QUIT"), 221)
    assert rss_kb(gg) - base < 8 * 1024


def test_client_that_never_reads(greygate_factory):
    gg = greygate_factory(env=rss_test_env())
    base = rss_kb(gg)
    s = socket.create_connection(("127.0.0.1", gg.port), source_address=("127.0.0.5", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 5
    chunk = b"NOOP\r\n" * 10_000
    while time.monotonic() < deadline:
        try:
            sent += s.send(chunk)
        except BlockingIOError:
            time.sleep(0.05)
    # greygate stopped reading once its replies piled up: the client can
    # send only what the socket buffers hold, and greygate's memory stays put
    assert sent < 64 * 1024 * 1024
    assert rss_kb(gg) - base < 8 * 1024
    serves(gg)
    s.close()


def test_pipelined_garbage(greygate):
    gg = greygate
    junk = os.urandom(30_000).replace(b"\n", b"x")
    lines = b"".join(junk[i:i + 60] + b"\r\n" for i in range(0, len(junk), 60))
    with gg.raw() as c:
        c.greeting()
        c.send(lines)
        assert c.wait_closed(10)
        assert b"421 4.7.0" in c.buf   # too many errors
    serves(gg)
    rej = gg.events("reject")
    assert rej and all("\n" not in e["_line"] for e in rej)


def test_nul_bytes(greygate):
    gg = greygate
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(b"NO\x00OP"), 502, "5.5.2")
        assert_reply(c.cmd(b"MAIL FROM:<a\x00b@sender.example>"), 501)
        assert_reply(c.cmd("NOOP"), 250)
    # both refusals logged, each on one line (the verb as typed, up to the NUL)
    assert gg.events("reject", cmd="NO", reply="502 5.5.2 Error: command not recognized")
    assert gg.events("reject", cmd="MAIL")


def test_8bit_and_utf8(greygate, postfix_backend):
    gg = greygate
    with gg.raw() as c:
        c.greeting()
        assert_reply(c.cmd("EHLO ñandú.example".encode()), 250)
        assert_reply(c.cmd("MAIL FROM:<δοκιμή@παράδειγμα.example> SMTPUTF8".encode()), 250)
        r = c.cmd("RCPT TO:<ελ@test.example>".encode())
        assert r.code in (250, 550, 553, 501), r.text   # whatever Postfix says, relayed
        assert_reply(c.cmd(b"\xff\xfe\xfd"), 502)
        assert_reply(c.cmd("RSET"), 250)
    for l in gg.log_lines():
        parse_kv(l)   # every line stays one parseable line
