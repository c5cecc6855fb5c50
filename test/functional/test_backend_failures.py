"""No lost mail: whatever the backend does wrong turns into a 4xx for the
client, never into a 2xx for mail the backend did not take, never into a
5xx for a temporary cause."""

import os
import re
import signal
import time
import types

import pytest

from harness.fakes import ScriptedSMTP
from harness.smtp import assert_reply, dot_stuff, make_message
from harness.util import CLIENT_ADDR, children, free_port, wait_until


def test_backend_unreachable(greygate_factory, tok):
    dead = types.SimpleNamespace(address=f"127.0.0.1:{free_port(11025)}")
    gg = greygate_factory(upstream=dead)
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250, "2.1.0")
        assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example>"), 451, "4.4.1")
        assert_reply(c.cmd(f"RCPT TO:<r2-{tok}@relay.example>"), 451, "4.4.1")
        # relay decisions do not need the backend
        assert_reply(c.cmd(f"RCPT TO:<x-{tok}@foreign.example>"), 554, "5.7.1")
        assert_reply(c.cmd("DATA"), 554, "5.5.1")
        assert_reply(c.cmd("RSET"), 250)
        assert_reply(c.cmd("QUIT"), 221)


def test_refused_at_greeting_while_backend_down(greygate_factory, fake_backend, tok):
    """backend.refuse_when_down: while the backend cannot be reached, new
    clients get 421 at once (a sender tries its next MX now, and a backup's
    hand-over probe sees this host as down); soon after the backend is back
    clients are greeted again, because greygate probes it every second
    meanwhile."""
    fb = fake_backend("close")
    gg = greygate_factory(upstream=fb, backend={"refuse_when_down": True, "connect_timeout": 2,
                                                "xclient": False})
    gg.wait_event("backend_probe", result="unavailable")
    with gg.raw() as c:
        assert_reply(c.reply(), 421, "4.3.2", contains="gw.test")
        assert c.wait_closed(5)
    gg.wait_event("reject", cmd="CONNECT", rule="backend_down")
    time.sleep(2.5)     # a few more probes while it is down

    fb.serve = ScriptedSMTP(pipelining=True)
    fb.mode = "serve"
    t0 = time.monotonic()

    def greeted():
        with gg.raw() as c:
            return c.reply().code == 220
    wait_until(greeted, 10, interval=0.2, what="a greeting after the backend's return")
    assert time.monotonic() - t0 < 5
    # probed every second meanwhile, but logged (at info) only when the
    # result changed: once down, once up again
    gg.wait_event("backend_probe", result="ok")
    probes = [e["result"] for e in gg.events("backend_probe")]
    assert probes == ["unavailable", "ok"], probes
    with gg.raw() as c:
        assert_reply(c.send_message(f"s-{tok}@sender.example", [f"r-{tok}@test.example"],
                                    dot_stuff(make_message(tok))), 250)
        assert_reply(c.cmd("QUIT"), 221)


@pytest.mark.parametrize("mode", ["silent", "close", "greet421"])
def test_backend_misbehaves(greygate_factory, fake_backend, tok, mode):
    fb = fake_backend(mode)
    gg = greygate_factory(upstream=fb, backend={"connect_timeout": 2, "command_timeout": 2})
    with gg.raw(timeout=30) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        t0 = time.monotonic()
        c.send(f"RCPT TO:<r-{tok}@test.example>\r\n")
        # meanwhile greygate keeps serving others: its event loop never
        # waits for the backend
        with gg.raw(source="127.0.0.6", timeout=3) as other:
            other.greeting()
            assert_reply(other.cmd("NOOP"), 250)
        r = c.reply(timeout=25)
        elapsed = time.monotonic() - t0
        assert 400 <= r.code < 500, f"{mode}: RCPT got {r}"
        assert r.enhanced and r.enhanced.startswith("4."), r
        assert elapsed < 15, elapsed
        assert_reply(c.cmd("DATA"), 554, "5.5.1")
        assert_reply(c.cmd("QUIT"), 221)
    assert fb.accepted >= 1


def test_backend_refuses_xclient(make_postfix_backend, greygate_factory, tok):
    """Without XCLIENT the backend would see greygate's own address
    (127.0.0.1, in the backend's mynetworks!). greygate must not carry on
    without it."""
    backend = make_postfix_backend(extra_main={"smtpd_authorized_xclient_hosts": ""})
    gg = greygate_factory(upstream=backend)
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        r = c.cmd(f"RCPT TO:<r-{tok}@test.example>")
        assert 400 <= r.code < 500, r
        r = c.cmd("DATA")
        if r.code == 354:   # must not happen; finish so that we can look
            c.send(dot_stuff(make_message(tok)))
            c.reply()
        assert_reply(r, 554, "5.5.1")
        assert_reply(c.cmd("QUIT"), 221)
    backend.sync_log()
    assert f"s-{tok}@sender.example" not in backend.log()
    assert backend.mails_for(tok) == []


def _big_chunk(n_lines, tag):
    line = (tag + " " + "0123456789abcdef" * 4 + "\r\n").encode()
    return line * n_lines


@pytest.mark.parametrize("what", ["smtpd", "instance"])
def test_backend_dies_mid_data(make_postfix_backend, greygate_factory, tok, what):
    backend = make_postfix_backend()
    gg = greygate_factory(upstream=backend)
    with gg.raw(timeout=60) as c:
        port = c.local_port
        c.start_data(f"s-{tok}@sender.example", [f"r-{tok}@test.example"])
        c.send(f"Subject: big {tok}\r\n\r\n".encode())
        c.send(_big_chunk(30000, "before"))        # ~2 MB
        m = backend.wait_log(rf"postfix/smtpd\[(\d+)\]: \w+: "
                             rf"client=unknown\[{re.escape(CLIENT_ADDR)}\]:{port}\b")
        smtpd = int(m.group(1))
        assert smtpd in [p for p, _ in children(backend.master_pid)]
        if what == "smtpd":
            os.kill(smtpd, signal.SIGKILL)
        else:
            backend.kill_instance()
        c.send(_big_chunk(30000, "after"))
        c.send(b".\r\n")
        r = c.reply(timeout=60)
        assert r.code != 250, f"greygate said 250 for a message the backend never took: {r}"
        assert_reply(r, 451, "4.4.2")
        if what == "smtpd":
            backend.wait_log(rf"pid {smtpd} killed by signal 9")
            # the session is still usable, with a new backend connection
            assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
            assert_reply(c.cmd(f"RCPT TO:<again-{tok}@test.example>"), 250)
            assert_reply(c.cmd("DATA"), 354)
            c.send(dot_stuff(make_message(tok, subject="again")))
            assert_reply(c.reply(), 250)
        else:
            assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
            assert_reply(c.cmd(f"RCPT TO:<again-{tok}@test.example>"), 451, "4.4.1")
        assert_reply(c.cmd("QUIT"), 221)
    if what == "smtpd":
        [m] = backend.wait_mails(tok)
        assert m.header("delivered-to") == [f"again-{tok}@test.example"]
        backend.sync_log()
        assert len(backend.mails_for(tok)) == 1
    else:
        time.sleep(0.5)
        assert backend.mails_for(tok) == []


def test_backend_refusing_mail_answers_every_rcpt(make_postfix_backend, greygate_factory):
    """The backend refuses the replayed MAIL: each RCPT of the transaction
    gets that refusal, nothing is accepted, and the next transaction works."""
    pf = make_postfix_backend(extra_main={
        "smtpd_delay_reject": "no",      # refuse at MAIL, not at RCPT
        "smtpd_sender_restrictions":
            "check_sender_access inline:{ { refused@sender.example = REJECT go away } }"})
    gg = greygate_factory(upstream=pf)
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<refused@sender.example>"), 250)
        for r in ("a@test.example", "b@test.example"):
            reply = c.cmd(f"RCPT TO:<{r}>")
            assert reply.code == 554 and "go away" in reply.text, reply.text
        assert_reply(c.cmd("DATA"), 554, "5.5.1")
        assert_reply(c.cmd("RSET"), 250)
        assert_reply(c.cmd("MAIL FROM:<fine@sender.example>"), 250)
        assert_reply(c.cmd("RCPT TO:<a@test.example>"), 250)
    assert gg.events("reject", rule="backend_mail")
