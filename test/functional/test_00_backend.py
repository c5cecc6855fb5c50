"""Self-tests of the private Postfix backend (no greygate involved).

They prove that the fixture delivers, that XCLIENT is honoured, and — the
control experiment for test_smuggling.py — that this Postfix, left alone,
IS vulnerable to SMTP smuggling, so the smuggling tests can fail.
"""

import smtplib

from harness.smtp import RawSMTP, assert_reply, dot_stuff, make_message
from harness.util import token


def test_backend_delivers_to_maildir(postfix_backend):
    tok = token()
    msg = make_message(tok, body=b"line one\r\n.dot line\r\nline three\r\n")
    with smtplib.SMTP("127.0.0.1", postfix_backend.port, source_address=("127.0.0.1", 0),
                      timeout=30) as s:
        s.ehlo("direct.test")
        refused = s.sendmail(f"s-{tok}@sender.example", [f"rcpt-{tok}@test.example"], msg)
        assert refused == {}
    [m] = postfix_backend.wait_mails(tok)
    assert m.header("delivered-to") == [f"rcpt-{tok}@test.example"]
    assert m.body == b"line one\n.dot line\nline three\n"


def test_backend_honours_xclient(postfix_backend):
    tok = token()
    with RawSMTP(postfix_backend.port, source="127.0.0.1") as c:
        c.greeting()
        ehlo = c.ehlo("greygate.test")
        assert any(t.startswith("XCLIENT") for t in ehlo.texts), ehlo
        assert_reply(c.cmd("XCLIENT ADDR=127.0.0.9 NAME=[UNAVAILABLE] PORT=4711 "
                           "HELO=spoofed.helo.test PROTO=ESMTP"), 220)
        # NB: a later EHLO overrides XCLIENT's HELO= in Received: and logs, so
        # a proxy must repeat the client's own HELO name here.
        c.ehlo("spoofed.helo.test")
        data = dot_stuff(make_message(tok))
        assert_reply(c.send_message(f"s-{tok}@sender.example", [f"r-{tok}@test.example"],
                                    data, ehlo=False), 250)
        assert_reply(c.cmd("QUIT"), 221)
    [m] = postfix_backend.wait_mails(tok)
    received = m.header("received")[0]
    assert "[127.0.0.9]" in received and "spoofed.helo.test" in received, received
    postfix_backend.wait_log(r"client=unknown\[127\.0\.0\.9\]:4711")


def test_backend_alone_is_vulnerable_to_smuggling(postfix_backend):
    """Control: Postfix 3.7 with smtpd_forbid_bare_newline=no ends DATA at
    <LF>.<LF>, so a smuggled second message gets through. If this ever stops
    being true, test_smuggling.py can no longer detect a broken greygate."""
    tok = token()
    with RawSMTP(postfix_backend.port, source="127.0.0.1") as c:
        c.greeting()
        c.ehlo("direct.test")
        assert_reply(c.cmd(f"MAIL FROM:<legit-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<legit-{tok}@test.example>"), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(f"Subject: legit\r\n\r\nhello\n.\n"
               f"MAIL FROM:<evil-{tok}@evil.example>\r\n"
               f"RCPT TO:<victim-{tok}@test.example>\r\n"
               f"DATA\r\n"
               f"Subject: smuggled\r\n\r\nsmuggled body\r\n.\r\n")
        replies = [c.reply() for _ in range(5)]
        assert [r.code for r in replies] == [250, 250, 250, 354, 250], replies
        assert_reply(c.cmd("QUIT"), 221)
    postfix_backend.wait_mails(tok, count=2)
    assert len(postfix_backend.mails_for(f"victim-{tok}")) == 1
