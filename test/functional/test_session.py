"""The SMTP envelope dialogue greygate speaks itself: greeting, HELO/EHLO,
command sequencing, syntax errors, local commands, refused extensions."""

import re

import pytest

from harness.smtp import assert_reply, dot_stuff, make_message
from harness.util import CLIENT_ADDR, CLIENT_HELO

ALLOWED_EXTENSIONS = {"PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES",
                      "SMTPUTF8", "DSN"}   # STARTTLS only with a certificate


def ehlo_keywords(reply):
    return {t.split()[0].upper() for t in reply.texts[1:] if t.strip()}


def test_greeting_and_helo(greygate):
    with greygate.raw() as c:
        r = c.reply()
        assert r.lines == ["220 gw.test ESMTP"] or \
            re.match(r"^220 gw\.test ESMTP\b", r.lines[0]), r
        r = assert_reply(c.cmd(f"HELO {CLIENT_HELO}"), 250)
        assert len(r.lines) == 1 and r.lines[0].split()[1] == "gw.test", r
        assert_reply(c.cmd("QUIT"), 221, "2.0.0")


def test_ehlo_advertises_only_supported_extensions(greygate):
    with greygate.raw() as c:
        c.greeting()
        r = c.ehlo()
        assert r.lines[0].startswith("250-gw.test"), r
        kw = ehlo_keywords(r)
        # the backend (Postfix 3.7) offers all of these, so greygate must too
        assert ALLOWED_EXTENSIONS <= kw, f"missing {ALLOWED_EXTENSIONS - kw} in {r}"
        assert kw <= ALLOWED_EXTENSIONS, f"must not advertise {kw - ALLOWED_EXTENSIONS}: {r}"
        size = [t for t in r.texts if t.upper().startswith("SIZE")][0].split()
        assert len(size) == 2 and size[1].isdigit() and int(size[1]) > 0, r


def test_ehlo_follows_what_the_backend_offers(make_postfix_backend, greygate_factory, tok):
    """A backend without DSN and SMTPUTF8 and with a smaller size limit:
    greygate must not advertise more than the backend can do, neither on the
    very first session nor later."""
    backend = make_postfix_backend(extra_main={
        "smtpd_discard_ehlo_keywords": "silent-discard, dsn, smtputf8",
        "message_size_limit": "1000000"})
    gg = greygate_factory(upstream=backend)
    for attempt in ("first session", "after a transaction"):
        with gg.raw() as c:
            c.greeting()
            r = c.ehlo()
            kw = ehlo_keywords(r)
            assert "DSN" not in kw and "SMTPUTF8" not in kw, f"{attempt}: {r}"
            assert {"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"} <= kw, f"{attempt}: {r}"
            assert kw <= ALLOWED_EXTENSIONS, f"{attempt}: {r}"
            size = [t for t in r.texts if t.upper().startswith("SIZE")]
            if size and len(size[0].split()) == 2:
                assert 0 < int(size[0].split()[1]) <= 1000000, f"{attempt}: {r}"
            if attempt == "first session":
                reply = c.send_message(f"s-{tok}@sender.example", [f"r-{tok}@test.example"],
                                       dot_stuff(make_message(tok)), ehlo=False)
                assert_reply(reply, 250)
                assert_reply(c.cmd("QUIT"), 221)
    backend.wait_mails(tok)


def test_helo_required(greygate):
    with greygate.raw() as c:
        c.greeting()
        assert_reply(c.cmd("MAIL FROM:<a@sender.example>"), 503, "5.5.1")
        assert_reply(c.cmd("RCPT TO:<a@test.example>"), 503, "5.5.1")
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<a@sender.example>"), 250, "2.1.0")


def test_command_sequencing(greygate):
    with greygate.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("RCPT TO:<a@test.example>"), 503, "5.5.1")   # RCPT before MAIL
        assert_reply(c.cmd("DATA"), 503, "5.5.1")                       # DATA before MAIL
        assert_reply(c.cmd("MAIL FROM:<a@sender.example>"), 250, "2.1.0")
        assert_reply(c.cmd("MAIL FROM:<b@sender.example>"), 503, "5.5.1")  # nested MAIL
        assert_reply(c.cmd("DATA"), 503, "5.5.1")                       # DATA before RCPT
        assert_reply(c.cmd("RCPT TO:<x@foreign.example>"), 554, "5.7.1")
        assert_reply(c.cmd("DATA"), 554, "5.5.1")                       # no valid recipient
        assert_reply(c.cmd("RSET"), 250, "2.0.0")
        assert_reply(c.cmd("RCPT TO:<a@test.example>"), 503, "5.5.1")   # RSET ended the transaction
        assert_reply(c.cmd("MAIL FROM:<b@sender.example>"), 250, "2.1.0")
        assert_reply(c.cmd("QUIT"), 221, "2.0.0")
        assert c.wait_closed(5), "connection not closed after QUIT"


def test_ehlo_resets_the_transaction(greygate, postfix_backend, tok):
    """RFC 5321 4.1.4: a second EHLO resets the state as RSET would."""
    with greygate.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example>"), 250)
        c.ehlo("second.helo.test")
        assert_reply(c.cmd("DATA"), 503, "5.5.1")
        assert_reply(c.cmd(f"MAIL FROM:<s2-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<r2-{tok}@test.example>"), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok)))
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)
    [m] = postfix_backend.wait_mails(tok)
    assert m.header("delivered-to") == [f"r2-{tok}@test.example"]
    assert m.header("return-path") == [f"<s2-{tok}@sender.example>"]
    # the backend saw the client's new HELO name
    assert m.header("received")[0].startswith("from second.helo.test "), m.header("received")


@pytest.mark.parametrize("line,code,enh", [
    ("MAIL FROM <a@sender.example>", 501, "5.5.4"),        # no colon
    ("MAIL", 501, "5.5.4"),
    ("MAIL FROM:<a b@sender.example>", 501, "5.1.7"),      # blank inside the path
    ("MAIL FROM:<a@sender.example", 501, "5.1.7"),         # unbalanced
    ("MAIL FROM:<<a@sender.example>>", 501, "5.1.7"),
])
def test_mail_syntax_errors(greygate, line, code, enh):
    with greygate.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(line), code, enh)
        # the session is still usable and no transaction was started
        assert_reply(c.cmd("MAIL FROM:<a@sender.example>"), 250, "2.1.0")


@pytest.mark.parametrize("line,code,enh", [
    ("RCPT TO <x@test.example>", 501, "5.5.4"),            # no colon
    ("RCPT", 501, "5.5.4"),
    ("RCPT TO:<x y@test.example>", 501, "5.1.3"),
    ("RCPT TO:<x@test.example", 501, "5.1.3"),
    ("RCPT TO:<>", 501, "5.1.3"),                          # null path is sender-only
])
def test_rcpt_syntax_errors(greygate, line, code, enh):
    with greygate.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<a@sender.example>"), 250)
        assert_reply(c.cmd(line), code, enh)
        assert_reply(c.cmd("DATA"), 503, "5.5.1")


def test_local_commands(greygate):
    with greygate.raw() as c:
        c.greeting()
        assert_reply(c.cmd("NOOP"), 250, "2.0.0")
        assert_reply(c.cmd("RSET"), 250, "2.0.0")
        assert_reply(c.cmd("HELP"), 214)
        c.ehlo()
        assert_reply(c.cmd("noop"), 250, "2.0.0")              # verbs are case-insensitive
        assert_reply(c.cmd("VRFY postmaster@test.example"), 502, "5.5.1",
                     contains="VRFY command is disabled")
        assert_reply(c.cmd("EXPN staff@test.example"), 502, "5.5.1")
        assert_reply(c.cmd("FOOBAR baz"), 502, "5.5.2")
        assert_reply(c.cmd("QUIT"), 221, "2.0.0")
        assert c.wait_closed(5)


@pytest.mark.parametrize("line", [
    "AUTH PLAIN AGZvbwBiYXI=",
    "STARTTLS",
    "BDAT 10 LAST",
    "XCLIENT ADDR=10.9.8.7 NAME=trusted.example",
    "XFORWARD ADDR=10.9.8.7",
    "ETRN test.example",
])
def test_unoffered_commands_are_refused(greygate, line):
    with greygate.raw() as c:
        c.greeting()
        c.ehlo()
        r = c.cmd(line)
        assert 500 <= r.code < 600 or r.code in (454, 458, 459), r
        assert_reply(c.cmd("NOOP"), 250, "2.0.0")


def _transaction_and_received(gg, backend, c, tok):
    assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
    assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example>"), 250)
    assert_reply(c.cmd("DATA"), 354)
    c.send(dot_stuff(make_message(tok)))
    assert_reply(c.reply(), 250)
    assert_reply(c.cmd("QUIT"), 221)
    [m] = backend.wait_mails(tok)
    return m.header("received")[0]


def test_client_xclient_does_not_reach_backend(greygate, postfix_backend, tok):
    with greygate.raw() as c:
        c.greeting()
        c.ehlo()
        r = c.cmd("XCLIENT ADDR=10.9.8.7 NAME=trusted.example HELO=trusted.example")
        assert r.code >= 500, r
        c.ehlo()
        received = _transaction_and_received(greygate, postfix_backend, c, tok)
    assert f"[{CLIENT_ADDR}]" in received and "10.9.8.7" not in received, received


@pytest.mark.parametrize("helo", [
    "evil.test ADDR=10.9.8.7 NAME=spoof.example",
    "evil.test\nXCLIENT ADDR=10.9.8.7 NAME=spoof.example",
    "evil.test\rXCLIENT ADDR=10.9.8.7 NAME=spoof.example",
], ids=["blanks", "bare-lf", "bare-cr"])
def test_helo_argument_cannot_inject_xclient_attributes(greygate, postfix_backend, tok, helo):
    """The client's HELO name travels to the backend inside XCLIENT HELO=...
    and EHLO. Whatever greygate does with a hostile one (refuse it or encode
    it), the backend must still see the real client address."""
    with greygate.raw() as c:
        c.greeting()
        c.send(f"EHLO {helo}\r\nHELP\r\n")
        replies = []
        while True:
            r = c.reply()
            replies.append(r)
            if r.code == 214:
                break
            assert len(replies) < 5, replies
        r = c.cmd(f"MAIL FROM:<s-{tok}@sender.example>")
        if r.code == 503:          # the hostile EHLO was refused: say hello properly
            c.ehlo()
            r = c.cmd(f"MAIL FROM:<s-{tok}@sender.example>")
        assert_reply(r, 250)
        assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example>"), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok)))
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)
    [m] = postfix_backend.wait_mails(tok)
    received = m.header("received")[0]
    # "from HELO (NAME [ADDR])": the HELO text may contain anything (Postfix
    # prints it sanitised), but NAME and ADDR must be the real client's
    rx = re.search(r"\((\S+) \[([0-9.]+)\]\) by backend\.test", received)
    assert rx, received
    assert rx.group(2) == CLIENT_ADDR and rx.group(1) != "spoof.example", received
    log = postfix_backend.log()
    assert "[10.9.8.7]" not in log, [l for l in log.splitlines() if "10.9.8.7" in l]


def test_log_lines(greygate, postfix_backend, tok):
    with greygate.raw() as c:
        c.greeting()
        assert_reply(c.cmd(f"MAIL FROM:<early-{tok}@sender.example>"), 503)
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<x-{tok}@foreign.example>"), 554, "5.7.1")
        assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example>"), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok)))
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)
    postfix_backend.wait_mails(tok)
    greygate.wait_event("disconnect", client=CLIENT_ADDR)
    connect = greygate.events("connect", client=CLIENT_ADDR)
    assert len(connect) == 1, connect
    [rej] = greygate.events("reject", rcpt=f"x-{tok}@foreign.example")
    assert rej.get("client") == CLIENT_ADDR and rej.get("helo") == CLIENT_HELO, rej
    assert rej.get("sender") == f"s-{tok}@sender.example", rej
    assert rej.get("reply", "").startswith("554 5.7.1"), rej
    # one reject line per rejected command
    rejects = greygate.events("reject", client=CLIENT_ADDR)
    assert len(rejects) == 2, [r["_line"] for r in rejects]
    assert rejects[0].get("reply", "").startswith("503 5.5.1"), rejects[0]["_line"]
    [tr] = greygate.events("transaction", sender=f"s-{tok}@sender.example")
    assert tr.get("client") == CLIENT_ADDR and tr.get("helo") == CLIENT_HELO, tr
    assert f"r-{tok}@test.example" in tr.get("rcpts", ""), tr
    assert f"x-{tok}@foreign.example" not in tr.get("rcpts", ""), tr
    assert tr.get("reply", "").startswith("250"), tr
