"""End to end: messages through greygate into the backend's Maildir, body
byte for byte, XCLIENT visible in Received:, pipelining, several
transactions per connection, backend replies relayed verbatim."""

import re
import subprocess

from harness.postfix import assert_xclient_received
from harness.smtp import assert_reply, dot_stuff, make_message
from harness.util import CLIENT_ADDR

BODY = (b"First line of the body.\r\n"
        b".A line that starts with a dot\r\n"
        b"..Two dots\r\n"
        b".\r\n"
        b"...\r\n"
        b" leading blank, trailing blank \r\n"
        b"\ttab\r\n"
        b"\r\n"
        b"From an mbox-looking line\r\n"
        b"8-bit UTF-8: gr\xc3\xbc\xc3\x9fe, \xe2\x82\xac, \xf0\x9f\x93\xa8\r\n"
        b"8-bit Latin-1: caf\xe9 na\xefve \xff\xfe\xa0\r\n"
        + b"L" * 998 + b"\r\n"
        + (b"0123456789" * 99 + b".\r\n")
        + b"." + b"d" * 997 + b"\r\n"
        b"last line, then an empty one\r\n"
        b"\r\n")


def test_body_is_byte_identical_smtplib(greygate, postfix_backend, tok):
    msg = make_message(tok, body=BODY)
    mark = postfix_backend.log_mark()   # client ports get reused
    with greygate.smtp() as s:
        code, _ = s.ehlo()
        assert code == 250 and s.has_extn("8bitmime")
        port = s.sock.getsockname()[1]
        refused = s.sendmail(f"s-{tok}@sender.example", [f"r-{tok}@test.example"], msg,
                             mail_options=["BODY=8BITMIME"])
        assert refused == {}
    [m] = postfix_backend.wait_mails(tok)
    assert m.body == BODY.replace(b"\r\n", b"\n"), "body changed on its way"
    assert m.header("subject") == [f"test {tok}"]
    assert_xclient_received(m)
    # XCLIENT PORT: the backend logs the client's real source port
    postfix_backend.wait_log(rf"client=unknown\[{re.escape(CLIENT_ADDR)}\]:{port}\b", since=mark)


def test_body_is_byte_identical_raw(greygate, postfix_backend, tok):
    """Same with hand-made DATA, including lines far beyond max_line (body
    lines are not commands) and an 8-bit header."""
    body = BODY + b"x" * 5000 + b"\r\n" + b"." * 3000 + b"\r\n" + b"end\r\n"
    msg = make_message(tok, body=body, extra_headers=b"X-8bit: \xc3\xa4\xc3\xb6\xc3\xbc\r\n")
    with greygate.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example> BODY=8BITMIME"), 250)
        assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example>"), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(msg))
        assert_reply(c.reply(), 250, "2.0.0")
        assert_reply(c.cmd("QUIT"), 221)
    [m] = postfix_backend.wait_mails(tok)
    assert m.body == body.replace(b"\r\n", b"\n")
    assert b"X-8bit: \xc3\xa4\xc3\xb6\xc3\xbc\n" in m.head


def test_empty_message(greygate, postfix_backend, tok):
    with greygate.raw() as c:
        c.start_data(f"s-{tok}@sender.example", [f"r-{tok}@test.example"])
        c.send(b".\r\n")
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("NOOP"), 250, "2.0.0")
        assert_reply(c.cmd("QUIT"), 221)
    [m] = postfix_backend.wait_mails(tok)
    assert m.body.strip() == b""


def test_swaks_with_pipelining(greygate, postfix_backend, tok):
    r = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(greygate.port),
         "--local-interface", CLIENT_ADDR, "--ehlo", "swaks.helo.test",
         "--from", f"s-{tok}@sender.example", "--to", f"r-{tok}@test.example",
         "--header", f"Subject: swaks {tok}", "--body", f"swaks body {tok}\n.dot\n",
         "--pipeline", "--timeout", "30"],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PIPELINING" in r.stdout
    [m] = postfix_backend.wait_mails(tok)
    assert m.body.replace(b"\r\n", b"\n").endswith(f"swaks body {tok}\n.dot\n\n".encode()) or \
        f"swaks body {tok}\n.dot\n".encode() in m.body, m.body
    assert_xclient_received(m, helo="swaks.helo.test")


def test_helo_client(greygate, postfix_backend, tok):
    with greygate.smtp(helo="old.style.test") as s:
        code, _ = s.helo()
        assert code == 250
        assert s.sendmail(f"s-{tok}@sender.example", [f"r-{tok}@test.example"],
                          make_message(tok)) == {}
    [m] = postfix_backend.wait_mails(tok)
    assert_xclient_received(m, helo="old.style.test")


def test_pipelined_transaction_replies_in_order(greygate, postfix_backend, tok):
    """Replies from greygate itself (MAIL, the denied RCPT) and from the
    backend (accepted RCPTs, end of data) come back in command order."""
    with greygate.raw() as c:
        c.greeting()
        c.ehlo()
        c.send(f"MAIL FROM:<s-{tok}@sender.example>\r\n"
               f"RCPT TO:<a-{tok}@test.example>\r\n"
               f"RCPT TO:<x-{tok}@foreign.example>\r\n"
               f"RCPT TO:<b-{tok}@relay.example>\r\n"
               f"RCPT TO:<bounce@test.example>\r\n"
               f"DATA\r\n")
        r = c.replies(6)
        assert [(x.code, x.enhanced) for x in r] == [
            (250, "2.1.0"), (250, "2.1.5"), (554, "5.7.1"), (250, "2.1.5"),
            (550, "5.1.1"), (354, None)], r
        assert f"<x-{tok}@foreign.example>" in r[2].text
        c.send(dot_stuff(make_message(tok)) + b"NOOP\r\nQUIT\r\n")
        r = c.replies(3)
        assert [(x.code, x.enhanced) for x in r] == [(250, "2.0.0"), (250, "2.0.0"),
                                                     (221, "2.0.0")], r
        assert "queued as" in r[0].text
    mails = postfix_backend.wait_mails(tok, count=2)
    assert sorted(m.header("delivered-to")[0] for m in mails) == \
        [f"a-{tok}@test.example", f"b-{tok}@relay.example"]


def test_two_transactions_one_connection(greygate, postfix_backend, tok):
    """Second transaction pipelined right behind the end of the first
    message; both delivered, over one backend connection."""
    mark = postfix_backend.log_mark()   # client ports get reused
    with greygate.raw() as c:
        port = c.local_port
        c.start_data(f"s1-{tok}@sender.example", [f"one-{tok}@test.example"])
        c.send(dot_stuff(make_message(tok, subject="first"))
               + f"MAIL FROM:<s2-{tok}@sender.example>\r\n"
                 f"RCPT TO:<two-{tok}@test.example>\r\nDATA\r\n".encode())
        r = c.replies(4)
        assert [x.code for x in r] == [250, 250, 250, 354], r
        c.send(dot_stuff(make_message(tok, subject="second")))
        assert_reply(c.reply(), 250, "2.0.0")
        assert_reply(c.cmd("RSET"), 250)
        assert_reply(c.cmd(f"MAIL FROM:<s3-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<three-{tok}@test.example>"), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok, subject="third")))
        assert_reply(c.reply(), 250, "2.0.0")
        assert_reply(c.cmd("QUIT"), 221)
    mails = postfix_backend.wait_mails(tok, count=3)
    got = {m.header("delivered-to")[0]: m.header("subject")[0] for m in mails}
    assert got == {f"one-{tok}@test.example": f"first {tok}",
                   f"two-{tok}@test.example": f"second {tok}",
                   f"three-{tok}@test.example": f"third {tok}"}
    assert len(mails) == 3
    # one backend session carried all three transactions
    line = postfix_backend.wait_log(
        rf"disconnect from unknown\[{re.escape(CLIENT_ADDR)}\]:{port}\b.*", since=mark).group(0)
    assert re.search(r"\bmail=3\b", line) and re.search(r"\bdata=3\b", line), line


def test_backend_rcpt_replies_are_relayed(greygate, postfix_backend, tok):
    mark = postfix_backend.log_mark()   # client ports get reused
    with greygate.raw() as c:
        port = c.local_port
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        r = assert_reply(c.cmd("RCPT TO:<bounce@test.example>"), 550, "5.1.1")
        assert "No such user here" in r.text
        r = assert_reply(c.cmd("RCPT TO:<defer@test.example>"), 450, "4.2.1")
        assert "Try again later" in r.text
        # the backend accepted nobody: no DATA
        assert_reply(c.cmd("DATA"), 554, "5.5.1")
        assert_reply(c.cmd(f"RCPT TO:<ok-{tok}@test.example>"), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok)))
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)
    [m] = postfix_backend.wait_mails(tok)
    assert m.header("delivered-to") == [f"ok-{tok}@test.example"]
    # greygate sent DATA to the backend only once, after it accepted someone
    # (Postfix would log "data=1/2" for a refused DATA)
    line = postfix_backend.wait_log(
        rf"disconnect from unknown\[{re.escape(CLIENT_ADDR)}\]:{port}\b.*", since=mark).group(0)
    assert re.search(r"\bdata=1(\s|$)", line), line


def test_backend_end_of_data_replies_are_relayed(greygate, postfix_backend, tok):
    """greygate never says 250 to a message the backend did not accept."""
    with greygate.raw() as c:
        c.greeting()
        c.ehlo()
        for subject, code, enh in (("GG-REJECT-ME", 550, "5.7.1"),
                                   ("GG-DEFER-ME", 451, "4.7.1")):
            assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
            assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example>"), 250)
            assert_reply(c.cmd("DATA"), 354)
            c.send(dot_stuff(make_message(tok, subject=subject)))
            r = c.reply()
            assert r.code == code and r.enhanced == enh, f"{subject}: {r}"
            assert "header check" in r.text, r
        # the session goes on normally afterwards
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example>"), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok, subject="fine")))
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)
    [m] = postfix_backend.wait_mails(tok)
    assert m.header("subject") == [f"fine {tok}"]
    postfix_backend.sync_log()
    assert len(postfix_backend.mails_for(tok)) == 1


def test_esmtp_parameters_are_replayed(greygate, postfix_backend, tok):
    """MAIL/RCPT parameters reach the backend verbatim. Proof: NOTIFY=SUCCESS
    makes the backend send a success DSN to the sender, and that report
    carries ENVID (Original-Envelope-Id), ORCPT (Original-Recipient) and
    honours RET=HDRS (headers only). SMTPUTF8 allows a UTF-8 address."""
    sender = f"s-{tok}@test.example"
    with greygate.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<{sender}> SIZE=2000 BODY=8BITMIME "
                           f"RET=HDRS ENVID=env-{tok}"), 250)
        assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example> NOTIFY=SUCCESS,FAILURE "
                           f"ORCPT=rfc822;orig-{tok}@test.example"), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok, body=b"secret body text\r\n")))
        assert_reply(c.reply(), 250)
        # a malformed parameter: the backend's verdict reaches the client,
        # never a 2xx
        r = c.cmd(f"MAIL FROM:<x-{tok}@sender.example> RET=BOGUS")
        if r.code == 250:
            r = c.cmd(f"RCPT TO:<r2-{tok}@test.example>")
        assert 500 <= r.code < 600, r
        assert_reply(c.cmd("RSET"), 250)
        utf8 = f"jos\u00e9-{tok}@test.example"
        assert_reply(c.cmd(f"MAIL FROM:<x-{tok}@sender.example> SMTPUTF8".encode()), 250)
        assert_reply(c.cmd(f"RCPT TO:<{utf8}>".encode()), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok)))
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)
    mails = postfix_backend.wait_mails(tok, count=3)
    by_rcpt = {m.header("delivered-to")[0]: m for m in mails}
    assert set(by_rcpt) == {f"r-{tok}@test.example", utf8, sender}, list(by_rcpt)
    dsn = by_rcpt[sender].raw
    assert b"Successful Mail Delivery Report" in dsn, dsn[:2000]
    assert f"Original-Envelope-Id: env-{tok}".encode() in dsn, dsn
    assert f"Original-Recipient: rfc822;orig-{tok}@test.example".encode() in dsn, dsn
    assert b"text/rfc822-headers" in dsn and b"secret body text" not in dsn, dsn


def test_null_sender(greygate, postfix_backend, tok):
    with greygate.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<>"), 250, "2.1.0")
        assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example>"), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok, subject="bounce")))
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)
    [m] = postfix_backend.wait_mails(tok)
    assert m.header("return-path") == ["<>"]
