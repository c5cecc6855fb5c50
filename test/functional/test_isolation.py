"""A failure caused by one client's data fails that client only: what
greygate hands to the backend (its HELO after XCLIENT, XCLIENT NAME) is what
the backend accepts, and a backend refusing one session's attributes is not
"backend down", so other clients keep their 220, their mail and /healthz
(backend.refuse_when_down would otherwise turn every one of them away).
Also RCPT TO:<postmaster>, which is always accepted."""

import urllib.error
import urllib.request

import pytest

from harness.fakes import ScriptedSMTP
from harness.smtp import assert_reply, dot_stuff, make_message
from harness.util import free_port, token, wait_until


def healthz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def guarded_gate(greygate_factory, upstream=None, **kw):
    """refuse_when_down and the admin endpoint on: the two things a wrong
    "backend down" reaches."""
    port = free_port(19925)
    gg = greygate_factory(upstream=upstream, admin={"listen": f"127.0.0.1:{port}"},
                          backend={"refuse_when_down": True}, **kw)
    gg.admin_port = port
    return gg


def others_served(gg, n=5, source="127.0.0.6"):
    """N other clients, one after the other: each gets its 220 and its
    message through."""
    for _ in range(n):
        tok = token()
        with gg.raw(source=source) as c:
            # (send_message asserts the 220 first)
            assert_reply(c.send_message(f"o-{tok}@sender.example", [f"o-{tok}@test.example"],
                                        dot_stuff(make_message(tok))), 250)
            assert_reply(c.cmd("QUIT"), 221)
    assert healthz(gg.admin_port) == 200


@pytest.mark.parametrize("helo,want", [
    (b"bad\xffname", (500, "5.5.2")),      # what Postfix answers (smtputf8_enable)
    (b"h\xc3", (500, "5.5.2")),
    (b"a\x01b", (501, "5.5.4")),
    (b"x\x00y", (501, "5.5.4")),
], ids=["ff", "cut-utf8", "control", "nul"])
def test_bad_helo_refused_before_the_backend(greygate_factory, postfix_backend, helo, want):
    gg = guarded_gate(greygate_factory)
    tok = token()
    with gg.raw() as c:
        c.greeting()
        for verb in (b"EHLO ", b"HELO "):
            r = c.cmd(verb + helo)
            assert_reply(r, *want)
        # nothing was taken from it: a transaction needs a HELO first
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 503, "5.5.1")
        # and a good one afterwards works as usual
        c.ehlo()
        assert_reply(c.send_message(f"s-{tok}@sender.example", [f"r-{tok}@test.example"],
                                    dot_stuff(make_message(tok)), ehlo=False), 250)
        assert_reply(c.cmd("QUIT"), 221)
    postfix_backend.wait_mails(tok)
    others_served(gg, n=1)


def test_bad_helo_does_not_refuse_others(greygate_factory, postfix_backend):
    """The attack of defect 3: a HELO the backend refuses, then MAIL and
    RCPT pipelined. Before, the backend's 500 to the EHLO after XCLIENT
    marked the backend unreachable, and the next clients got 421 4.3.2."""
    gg = guarded_gate(greygate_factory)
    for _ in range(3):
        tok = token()
        with gg.raw(source="127.0.0.7") as c:
            c.greeting()
            c.send(b"EHLO bad\xffname\r\n"
                   + f"MAIL FROM:<a-{tok}@sender.example>\r\n"
                     f"RCPT TO:<a-{tok}@test.example>\r\n".encode())
            replies = c.replies(3)
        others_served(gg, n=2)
        assert replies[0].code == 500, replies
        assert all(r.code != 250 for r in replies[1:]), replies
    assert gg.events("reject", cmd="CONNECT") == []


def test_backend_refusing_one_client_xclient(greygate_factory, fake_backend):
    """A backend that refuses one session's XCLIENT (as Postfix does for a
    NAME it does not like) fails that session's RCPT with a 4xx; the
    backend stays "up" for everybody else."""
    script = ScriptedSMTP(xclient=True, xclient_refuse="127.0.0.7")
    fb = fake_backend("serve", script)
    gg = guarded_gate(greygate_factory, upstream=fb)
    for _ in range(3):
        tok = token()
        with gg.raw(source="127.0.0.7") as c:
            c.greeting()
            c.ehlo()
            assert_reply(c.cmd(f"MAIL FROM:<a-{tok}@sender.example>"), 250)
            r = c.cmd(f"RCPT TO:<a-{tok}@test.example>")
            assert 400 <= r.code < 500, r
            assert_reply(c.cmd("DATA"), 554, "5.5.1")
            assert_reply(c.cmd("QUIT"), 221)
        others_served(gg, n=2)
    assert gg.events("reject", cmd="CONNECT") == []
    assert gg.events("reject", cmd="RCPT", rule="backend_refused")
    assert not [f for f, _ in script.delivered if f.startswith("<a-")]


def test_client_name_that_is_no_host_name(greygate_factory, dns_server, postfix_backend):
    """A forward-confirmed PTR name that is no host name (evil!name...) goes
    to XCLIENT as [UNAVAILABLE]: Postfix would refuse the whole XCLIENT
    (501 5.5.4 Bad NAME syntax)."""
    dns = dns_server(["ptr-record=7.0.0.127.in-addr.arpa,evil!name.example.net",
                      "address=/evil!name.example.net/127.0.0.7"],
                     local=("example", "test", "in-addr.arpa"))
    gg = greygate_factory(dns={"servers": [dns.address], "timeout_ms": 500, "tries": 1},
                          admin={"listen": ""}, backend={"refuse_when_down": True})
    tok = token()
    with gg.raw(source="127.0.0.7") as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("NOOP"), 250)   # (the name lookup is done by now)
        assert_reply(c.send_message(f"s-{tok}@sender.example", [f"r-{tok}@test.example"],
                                    dot_stuff(make_message(tok)), ehlo=False), 250)
        assert_reply(c.cmd("QUIT"), 221)
    postfix_backend.wait_mails(tok)
    with gg.raw(source="127.0.0.6") as c:
        assert_reply(c.reply(), 220)


@pytest.mark.parametrize("spelling", ["postmaster", "Postmaster", "POSTMASTER"])
def test_postmaster_always_accepted(make_postfix_backend, greygate_factory, spelling):
    """RFC 5321 4.5.1: <postmaster> without a domain is accepted, never
    greylisted, and goes to the backend as it is (Postfix adds its
    myorigin); other recipients of the same client are greylisted as usual."""
    backend = make_postfix_backend(extra_main={"myorigin": "test.example"})
    gg = greygate_factory(upstream=backend, greylist={"enabled": True})
    tok = token()
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{spelling}>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example>"), 450)
        # pipelined behind another RCPT (the look-ahead path)
        c.send(f"RCPT TO:<q-{tok}@test.example>\r\nRCPT TO:<{spelling}>\r\n")
        assert_reply(c.reply(), 450)
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok)))
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)

    def arrived():
        return [m for m in backend.mails() if any(tok in v for v in m.header("subject"))]
    mails = wait_until(lambda: arrived() or None, 20, what="the mail to postmaster")
    assert len(mails) == 1
    assert any("postmaster@test.example" in v.lower() for v in mails[0].header("delivered-to")), mails
