"""SMTP smuggling: only <CR><LF>.<CR><LF> ends DATA, and the backend (a
Postfix 3.7 with smtpd_forbid_bare_newline=no, which on its own IS
vulnerable: see test_00_backend.py) must see exactly one message whose body
contains the smuggled text."""

import re

import pytest

from harness.smtp import assert_reply
from harness.util import CLIENT_ADDR

# (fake end-of-data, line break used inside the smuggled part)
VARIANTS = {
    "lf-dot-lf":       (b"\n.\n", b"\r\n"),
    "lf-dot-crlf":     (b"\n.\r\n", b"\r\n"),
    "crlf-dot-lf":     (b"\r\n.\n", b"\r\n"),
    "cr-dot-cr":       (b"\r.\r", b"\r\n"),
    "cr-dot-crlf":     (b"\r.\r\n", b"\r\n"),
    "crlf-dot-cr":     (b"\r\n.\r", b"\r\n"),
    "bare-lf":         (b"\n.\n", b"\n"),
    "bare-cr":         (b"\r.\r", b"\r"),
    "crlf-dot-lf-bare": (b"\r\n.\n", b"\n"),
    "dot-nul-crlf":    (b"\r\n.\x00\r\n", b"\r\n"),
    "crlf-sp-dot-crlf": (b"\r\n .\r\n", b"\r\n"),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_smuggling_is_impossible(greygate, postfix_backend, tok, variant):
    fake_end, nl = VARIANTS[variant]
    evil = f"evil-{tok}@evil.example"
    victim = f"victim-{tok}@test.example"
    legit = f"legit-{tok}@test.example"
    smuggled = nl.join([f"MAIL FROM:<{evil}>".encode(),
                        f"RCPT TO:<{victim}>".encode(),
                        b"DATA",
                        b"From: <" + evil.encode() + b">",
                        b"Subject: smuggled " + tok.encode(),
                        b"",
                        b"smuggled body " + tok.encode(),
                        ])
    payload = (f"From: <s-{tok}@sender.example>\r\nSubject: legit {tok}\r\n\r\n"
               f"legit body\r\nlast legit line".encode()
               + fake_end + smuggled + b"\r\n.\r\n")
    # client ports get reused: read only what this test's session logged
    mark = postfix_backend.log_mark()
    with greygate.raw() as c:
        port = c.local_port
        c.start_data(f"s-{tok}@sender.example", [legit])
        c.send(payload)
        assert_reply(c.reply(), 250, "2.0.0")
        # exactly one reply for the whole payload: the next one is NOOP's
        assert_reply(c.cmd("NOOP"), 250, "2.0.0")
        assert_reply(c.cmd("QUIT"), 221)
        c.wait_closed(5)
    # wait until the backend session is over, then look
    postfix_backend.wait_log(rf"disconnect from unknown\[{re.escape(CLIENT_ADDR)}\]:{port}\b", since=mark)
    postfix_backend.sync_log()
    log = postfix_backend.log(mark)
    assert evil not in log, [l for l in log.splitlines() if evil in l]
    assert victim not in log, [l for l in log.splitlines() if victim in l]
    disc = re.search(rf"disconnect from unknown\[{re.escape(CLIENT_ADDR)}\]:{port}\b.*", log).group(0)
    assert re.search(r"\bmail=1\b", disc) and re.search(r"\bdata=1\b", disc), disc
    # (delivery into the Maildir may lag behind the backend session's end)
    postfix_backend.wait_mails(tok)
    mails = postfix_backend.mails_for(tok)
    assert len(mails) == 1, mails
    [m] = mails
    assert m.header("delivered-to") == [legit]
    assert m.header("subject") == [f"legit {tok}"]
    # the smuggled commands arrived as plain body text
    body_lines = m.body.split(b"\n")
    for line in (f"MAIL FROM:<{evil}>", f"RCPT TO:<{victim}>", "DATA",
                 f"smuggled body {tok}"):
        assert line.encode() in body_lines, (line, m.body)
    # and every line break is canonical (no stray CR reached the mailbox)
    assert b"\r" not in m.body, m.body


def test_dot_transparency(greygate, postfix_backend, tok):
    """RFC 5321 4.5.2: the client's stuffing is undone and redone, so the
    mailbox holds exactly what the client meant."""
    with greygate.raw() as c:
        c.start_data(f"s-{tok}@sender.example", [f"r-{tok}@test.example"])
        c.send(b"Subject: dots\r\n\r\n..a\r\n...b\r\n.c.\r\n..\r\n...\r\nend\r\n.\r\n")
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)
    [m] = postfix_backend.wait_mails(tok)
    assert m.body == b".a\n..b\nc.\n.\n..\nend\n", m.body
