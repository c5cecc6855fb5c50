"""Pending STARTTLS hand-shakes are bounded per process (tls.max_handshakes)
and in time (tls.handshake_timeout): above the bound STARTTLS gets Postfix's
454 and the session goes on in plaintext; a slot frees when its client
closes, its hand-shake finishes, or its deadline passes (issue 11)."""
import time

from harness.smtp import assert_reply
from harness.tls import client_ctx, make_cert
from harness.util import wait_until

BUSY = "TLS not available due to temporary reason"


def tls_gg(greygate_factory, tmp_path, tls=(), **overrides):
    cert, key = make_cert(tmp_path, "gw.test")
    return greygate_factory(tls={"cert": cert, "key": key, **dict(tls)}, **overrides)


def starttls_pending(gg):
    """A client that says STARTTLS and then nothing."""
    c = gg.raw()
    c.greeting()
    c.ehlo()
    assert_reply(c.cmd("STARTTLS"), 220, "2.0.0")
    return c


def finish_tls(c):
    c.sock = client_ctx().wrap_socket(c.sock)
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    c.ehlo()


def test_busy_starttls_stays_plaintext_until_a_slot_frees(greygate_factory, tmp_path,
                                                         postfix_backend):
    gg = tls_gg(greygate_factory, tmp_path, {"max_handshakes": 3})
    stalled = [starttls_pending(gg) for _ in range(3)]
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("STARTTLS"), 454, "4.7.0", BUSY)
        # the session is still a plaintext one: mail goes on
        assert_reply(c.cmd("MAIL FROM:<a@sender.example>"), 250)
        assert_reply(c.cmd("RCPT TO:<r@test.example>"), 250)
        assert_reply(c.cmd("RSET"), 250)
        rej = gg.wait_event("reject", cmd="STARTTLS", rule="max_tls_handshakes")
        assert BUSY in rej[-1]["reply"]
        for s in stalled:
            s.close()
        # the closed ones give their slots back; then STARTTLS works
        # again on this very session
        def starttls_again():
            r = c.cmd("STARTTLS")
            assert r.code in (220, 454), r.text
            return r.code == 220
        wait_until(starttls_again, 10, interval=0.1, what="STARTTLS answered 220")
        finish_tls(c)
        assert_reply(c.cmd("MAIL FROM:<a@sender.example>"), 250)
        assert_reply(c.cmd("RCPT TO:<r@test.example>"), 250)


def test_default_bound(greygate_factory, tmp_path):
    """Without settings: 100 pending hand-shakes at most (about 5 MB of TLS
    state in a process)."""
    gg = tls_gg(greygate_factory, tmp_path, limits={"max_per_client": 150})
    stalled = [starttls_pending(gg) for _ in range(100)]
    try:
        with gg.raw() as c:
            c.greeting()
            c.ehlo()
            assert_reply(c.cmd("STARTTLS"), 454, "4.7.0", BUSY)
    finally:
        for s in stalled:
            s.close()


def test_handshake_deadline_frees_the_slot(greygate_factory, tmp_path):
    gg = tls_gg(greygate_factory, tmp_path, {"max_handshakes": 1, "handshake_timeout": 1})
    # the first bytes of a ClientHello, then nothing: the TLS state exists
    # now, and the deadline still runs from the 220
    stalled = starttls_pending(gg)
    stalled.send(b"\x16\x03\x01")
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("STARTTLS"), 454, "4.7.0", BUSY)
        started = time.monotonic()
        assert stalled.wait_closed(timeout=10)
        assert time.monotonic() - started < 5
        stalled.close()
        rej = gg.wait_event("reject", cmd="STARTTLS", rule="tls_handshake_timeout")
        assert "reply" not in rej[-1]     # the client was told nothing
        assert_reply(c.cmd("STARTTLS"), 220)
        finish_tls(c)
        # a finished hand-shake holds no slot either
        with gg.raw() as d:
            d.greeting()
            d.ehlo()
            assert_reply(d.cmd("STARTTLS"), 220)
            finish_tls(d)


def test_silent_client_after_starttls_closed_at_deadline(greygate_factory, tmp_path):
    """A client that says STARTTLS and sends nothing holds its slot until
    tls.handshake_timeout, not limits.command_timeout (300 s here)."""
    gg = tls_gg(greygate_factory, tmp_path, {"handshake_timeout": 1})
    with starttls_pending(gg) as c:
        assert c.wait_closed(timeout=10)
        assert c.buf == b""
    gg.wait_event("reject", cmd="STARTTLS", rule="tls_handshake_timeout")
    gg.wait_event("disconnect")
