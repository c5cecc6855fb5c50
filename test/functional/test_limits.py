"""Every input is bounded: line length, recipients, errors, idle time,
connections in total and per client address."""

import re
import socket
import time

from harness.smtp import ConnectionClosed, RawSMTP, assert_reply, dot_stuff, make_message
from harness.util import CLIENT_ADDR, wait_until


def limits(**kw):
    base = {"max_connections": 1000, "max_per_client": 50, "max_recipients": 100,
            "max_line": 2048, "command_timeout": 300, "data_timeout": 600,
            "max_errors": 20}
    base.update(kw)
    return base


def test_max_line(greygate_factory):
    gg = greygate_factory(limits=limits(max_line=512))
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        # exactly max_line bytes (without CRLF) is fine
        line = "NOOP " + "x" * (512 - 5)
        assert len(line) == 512
        assert_reply(c.cmd(line), 250)
        assert_reply(c.cmd(line + "x"), 500, "5.5.2")
        # the tail of an over-long line is not a command of its own
        c.send("NOOP " + "y" * 600 + "MAIL FROM:<evil@evil.example>\r\n")
        assert_reply(c.reply(), 500, "5.5.2")
        c.send("NOOP " + "z" * 100000 + "\r\n")
        assert_reply(c.reply(), 500, "5.5.2")
        assert_reply(c.cmd("NOOP"), 250, "2.0.0")
        # no transaction was started by the tail
        assert_reply(c.cmd("MAIL FROM:<good@sender.example>"), 250, "2.1.0")
        assert_reply(c.cmd("QUIT"), 221)


def test_max_recipients(greygate_factory, postfix_backend, tok):
    gg = greygate_factory(limits=limits(max_recipients=3))
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        for i in range(3):
            assert_reply(c.cmd(f"RCPT TO:<r{i}-{tok}@test.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<r3-{tok}@test.example>"), 452, "4.5.3")
        assert_reply(c.cmd(f"RCPT TO:<r4-{tok}@test.example>"), 452, "4.5.3")
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok)))
        assert_reply(c.reply(), 250)
        # the limit is per transaction
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        for i in range(3):
            assert_reply(c.cmd(f"RCPT TO:<t{i}-{tok}@test.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<t3-{tok}@test.example>"), 452, "4.5.3")
        assert_reply(c.cmd("RSET"), 250)
        assert_reply(c.cmd("QUIT"), 221)
    mails = postfix_backend.wait_mails(tok, count=3)
    postfix_backend.sync_log()
    mails = postfix_backend.mails_for(tok)
    assert sorted(m.header("delivered-to")[0] for m in mails) == \
        [f"r{i}-{tok}@test.example" for i in range(3)]


def test_max_errors(greygate_factory):
    gg = greygate_factory(limits=limits(max_errors=3))
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        replies = []
        closed = False
        for i in range(6):
            try:
                c.send(f"BOGUS{i}\r\n")
                replies.append(c.reply())
                if replies[-1].code == 421:
                    closed = c.wait_closed(5)
                    break
            except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
                closed = True
                break
        codes = [(r.code, r.enhanced) for r in replies]
        assert replies and replies[-1].is_(421, "4.7.0"), codes
        assert closed, "connection not closed after 421"
        normal = [r for r in replies[:-1]]
        assert all(r.is_(502, "5.5.2") for r in normal), codes
        # "more than max_errors errors": the 3 allowed errors get their normal
        # reply; the session ends at the next one at the latest
        assert len(normal) in (3, 4), codes
    ev = gg.wait_event("disconnect", client=CLIENT_ADDR)
    assert ev


def test_other_errors_count_too(greygate_factory):
    """Relay denials and syntax errors are errors as well (like Postfix's
    smtpd_hard_error_limit): a relay prober cannot try endless recipients."""
    gg = greygate_factory(limits=limits(max_errors=5))
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<s@sender.example>"), 250)
        seen_421 = False
        for i in range(12):
            try:
                r = c.cmd(f"RCPT TO:<victim{i}@foreign.example>")
            except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
                seen_421 = True
                break
            if r.code == 421:
                assert r.enhanced == "4.7.0", r
                seen_421 = True
                break
            assert_reply(r, 554, "5.7.1")
        assert seen_421, "relay probing never ended the session"


def test_command_timeout(greygate_factory):
    gg = greygate_factory(limits=limits(command_timeout=2))
    with gg.raw(timeout=20) as c:
        c.greeting()
        c.ehlo()
        t0 = time.monotonic()
        r = c.reply(timeout=15)
        elapsed = time.monotonic() - t0
        assert_reply(r, 421, "4.4.2")
        assert 1.5 <= elapsed <= 10, elapsed
        assert c.wait_closed(5)


def test_command_timeout_is_idle_time(greygate_factory):
    """Activity resets the timer: a slow but active client is not cut off."""
    gg = greygate_factory(limits=limits(command_timeout=2))
    with gg.raw() as c:
        c.greeting()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4:
            assert_reply(c.cmd("NOOP"), 250)
            time.sleep(0.7)
        assert_reply(c.cmd("QUIT"), 221)


def test_data_timeout(greygate_factory, postfix_backend, tok):
    gg = greygate_factory(limits=limits(command_timeout=30, data_timeout=2))
    mark = postfix_backend.log_mark()   # client ports get reused
    with gg.raw(timeout=20) as c:
        port = c.local_port
        c.start_data(f"s-{tok}@sender.example", [f"r-{tok}@test.example"])
        c.send(f"Subject: {tok}\r\n\r\nhalf a messa".encode())
        t0 = time.monotonic()
        r = c.reply(timeout=15)
        elapsed = time.monotonic() - t0
        assert_reply(r, 421, "4.4.2")
        assert 1.5 <= elapsed <= 10, elapsed
        assert c.wait_closed(5)
    # the backend session ends without a message
    postfix_backend.wait_log(rf"(disconnect from|lost connection after \S+ from) "
                             rf"unknown\[{re.escape(CLIENT_ADDR)}\]:{port}\b", since=mark)
    postfix_backend.sync_log()
    assert postfix_backend.mails_for(tok) == []


def test_data_timeout_is_idle_time(greygate_factory, postfix_backend, tok):
    gg = greygate_factory(limits=limits(command_timeout=30, data_timeout=2))
    with gg.raw() as c:
        c.start_data(f"s-{tok}@sender.example", [f"r-{tok}@test.example"])
        c.send(f"Subject: {tok}\r\n\r\n".encode())
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4:
            c.send(b"slow line\r\n")
            time.sleep(0.7)
        c.send(b".\r\n")
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)
    postfix_backend.wait_mails(tok)


def _open_greeted(gg, source):
    c = gg.raw(source=source)
    r = c.reply()
    return c, r


def test_max_connections(greygate_factory):
    gg = greygate_factory(limits=limits(max_connections=3, max_per_client=50))
    conns = []
    try:
        for i in range(3):
            c, r = _open_greeted(gg, f"127.0.0.{10 + i}")
            conns.append(c)
            assert_reply(r, 220)
        c, r = _open_greeted(gg, "127.0.0.20")
        conns.append(c)
        assert_reply(r, 421, "4.7.0")
        assert c.wait_closed(5), "connection over the limit not closed"
        # the sessions within the limit are unaffected
        for c in conns[:3]:
            assert_reply(c.cmd("NOOP"), 250)
        # a slot frees up when a session ends
        assert_reply(conns[0].cmd("QUIT"), 221)
        conns[0].wait_closed(5)

        def try_again():
            c, r = _open_greeted(gg, "127.0.0.21")
            conns.append(c)
            return r.code == 220
        wait_until(try_again, 10, interval=0.2, what="a free connection slot")
    finally:
        for c in conns:
            c.close()


def test_max_per_client(greygate_factory):
    gg = greygate_factory(limits=limits(max_connections=100, max_per_client=2))
    conns = []
    try:
        for i in range(2):
            c, r = _open_greeted(gg, CLIENT_ADDR)
            conns.append(c)
            assert_reply(r, 220)
        c, r = _open_greeted(gg, CLIENT_ADDR)
        conns.append(c)
        assert_reply(r, 421, "4.7.0")
        assert c.wait_closed(5)
        # another address is not affected
        c, r = _open_greeted(gg, "127.0.0.6")
        conns.append(c)
        assert_reply(r, 220)
        assert_reply(conns[0].cmd("NOOP"), 250)
    finally:
        for c in conns:
            c.close()


class SmallWindowSMTP(RawSMTP):
    """A client whose receive window is small: replies it has not read yet
    wait in the server's send queue (as they do for any client over a slow
    or lossy path)."""

    def __init__(self, port, source=CLIENT_ADDR, timeout=15):
        self.timeout = timeout
        self.buf = b""
        self.closed_by_peer = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        self.sock.settimeout(timeout)
        self.sock.bind((source, 0))
        self.sock.connect(("127.0.0.1", port))


def test_pipelined_errors_every_reply_before_close(greygate_factory):
    """A pipelining client that runs into max_errors reads every reply up to
    the 421, although it sent more than the server read: closing a socket
    with unread input resets the connection, and a reset throws away the
    replies still queued for the client."""
    gg = greygate_factory(limits=limits(max_errors=20))
    with SmallWindowSMTP(gg.port) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<s@sender.example>"), 250)
        assert_reply(c.cmd("RCPT TO:<user@test.example>"), 250)
        # relay denials of long addresses (about 240 bytes each) fill the
        # client's window long before the 421; more of them than the server
        # reads
        domain = ".".join(["d" * 60] * 3) + ".foreign.example"
        c.send("".join(f"RCPT TO:<v{i:02}{'v' * 50}@{domain}>\r\n" for i in range(40)))
        # the client reads only once the server is done with it
        assert gg.wait_event("disconnect", client=CLIENT_ADDR)
        replies = []
        while not replies or replies[-1].code != 421:
            replies.append(c.reply())
        codes = [r.code for r in replies]
        assert codes in ([554] * 19 + [421], [554] * 20 + [421]), codes
        assert "Relay access denied" in replies[0].text, replies[0]
        assert c.wait_closed(5)
