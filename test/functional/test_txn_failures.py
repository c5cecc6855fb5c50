"""The transaction's failure table (docs/design.md, "Transaction states"):
for a backend that closes, goes silent, or answers 421/4xx/5xx after each
command, what the client gets for that command and for every later one
(more RCPTs, DATA, RSET and a new transaction, QUIT), what the backend got,
and that greygate keeps serving. A transaction whose backend connection
was lost after MAIL went out is failed: 4xx to every RCPT and DATA until
RSET, never a quiet reconnect that would lose the recipients already
accepted."""

import time

import pytest

from harness.fakes import ScriptedSMTP
from harness.smtp import assert_reply, dot_stuff, make_message

LOST = (451, "4.4.2")
OK = (250, None)
NEED_MAIL = (503, "5.5.1")
NO_RCPT = (554, "5.5.1")
GO = (354, None)


def _gate(greygate_factory, fake_backend, script):
    fb = fake_backend("serve", script)
    gg = greygate_factory(upstream=fb, backend={"xclient": script.xclient, "command_timeout": 1,
                                                "connect_timeout": 2})
    return gg


def _expect(r, want, what):
    if want is None:
        assert r is None, f"{what}: no reply expected, got {r}"
        return
    assert r is not None, f"{what}: expected {want}, got nothing"
    code, enh = want
    assert r.code == code, f"{what}: expected {code} {enh or ''}, got {r.text!r}"
    if enh:
        assert r.text.split()[1] == enh, f"{what}: expected {code} {enh}, got {r.text!r}"


def _data(c, tok):
    """DATA; with 354 the body too. Returns (DATA reply, end-of-data reply)."""
    r = c.cmd("DATA")
    if r.code != 354:
        return r, None
    c.send(dot_stuff(make_message(tok)))
    return r, c.reply()


def _still_serving(gg, script, tok):
    """A new client gets its greeting and its message through."""
    before = len(script.delivered)
    with gg.raw(source="127.0.0.6") as c:
        assert_reply(c.send_message(f"n-{tok}@sender.example", [f"n-{tok}@test.example"],
                                    dot_stuff(make_message(tok))), 250)
        assert_reply(c.cmd("QUIT"), 221)
    assert script.delivered[before:] == [(f"<n-{tok}@sender.example>", [f"<n-{tok}@test.example>"])]


# step, action -> replies to: RCPT a, RCPT b, DATA, end of data, RCPT c, DATA
# (after RCPT c), and the recipients of the message delivered in the
# transaction (None: none).
LOST_ROW = [LOST, LOST, LOST, None, LOST, LOST]
TABLE = {
    ("MAIL", "close"): (LOST_ROW, None),
    ("MAIL", "silent"): (LOST_ROW, None),
    ("MAIL", "421"): (LOST_ROW, None),
    # the backend refused the sender: every RCPT gets its reply
    ("MAIL", "451"): ([(451, "4.3.0"), (451, "4.3.0"), NO_RCPT, None, (451, "4.3.0"), NO_RCPT], None),
    ("MAIL", "554"): ([(554, "5.3.0"), (554, "5.3.0"), NO_RCPT, None, (554, "5.3.0"), NO_RCPT], None),
    ("RCPT1", "close"): (LOST_ROW, None),
    ("RCPT1", "silent"): (LOST_ROW, None),
    ("RCPT1", "421"): (LOST_ROW, None),
    ("RCPT1", "451"): ([(451, "4.3.0"), OK, GO, OK, NEED_MAIL, NEED_MAIL], ["b"]),
    ("RCPT1", "554"): ([(554, "5.3.0"), OK, GO, OK, NEED_MAIL, NEED_MAIL], ["b"]),
    ("RCPT2", "close"): ([OK, LOST, LOST, None, LOST, LOST], None),
    ("RCPT2", "silent"): ([OK, LOST, LOST, None, LOST, LOST], None),
    ("RCPT2", "421"): ([OK, LOST, LOST, None, LOST, LOST], None),
    ("RCPT2", "451"): ([OK, (451, "4.3.0"), GO, OK, NEED_MAIL, NEED_MAIL], ["a"]),
    ("RCPT2", "554"): ([OK, (554, "5.3.0"), GO, OK, NEED_MAIL, NEED_MAIL], ["a"]),
    # the connection died while the client was idle after RCPT a (Postfix's
    # smtpd_timeout): defect 1, a crash at the third RCPT before
    ("RCPT1", "idle421"): ([OK, LOST, LOST, None, LOST, LOST], None),
    ("RCPT1", "idleclose"): ([OK, LOST, LOST, None, LOST, LOST], None),
    ("DATA", "close"): ([OK, OK, LOST, None, LOST, LOST], None),
    ("DATA", "silent"): ([OK, OK, LOST, None, LOST, LOST], None),
    ("DATA", "421"): ([OK, OK, LOST, None, LOST, LOST], None),
    # a refused DATA ends the transaction, as before
    ("DATA", "451"): ([OK, OK, (451, "4.3.0"), None, NEED_MAIL, NEED_MAIL], None),
    ("DATA", "554"): ([OK, OK, (554, "5.3.0"), None, NEED_MAIL, NEED_MAIL], None),
    ("EOD", "close"): ([OK, OK, GO, LOST, NEED_MAIL, NEED_MAIL], None),
    ("EOD", "silent"): ([OK, OK, GO, LOST, NEED_MAIL, NEED_MAIL], None),
    ("EOD", "421"): ([OK, OK, GO, LOST, NEED_MAIL, NEED_MAIL], None),
    ("EOD", "451"): ([OK, OK, GO, (451, "4.3.0"), NEED_MAIL, NEED_MAIL], None),
    ("EOD", "554"): ([OK, OK, GO, (554, "5.3.0"), NEED_MAIL, NEED_MAIL], None),
    # a hostile backend: a reply of a class the command cannot have never
    # reaches the client; the connection is lost to the command
    ("MAIL", "354"): (LOST_ROW, None),
    ("RCPT1", "354"): (LOST_ROW, None),
    ("RCPT2", "354"): ([OK, LOST, LOST, None, LOST, LOST], None),
    ("DATA", "250"): ([OK, OK, LOST, None, LOST, LOST], None),
    ("EOD", "354"): ([OK, OK, GO, LOST, NEED_MAIL, NEED_MAIL], None),
}


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelining"])
@pytest.mark.parametrize("step,action", list(TABLE), ids=[f"{s}-{a}" for s, a in TABLE])
def test_failure_table(greygate_factory, fake_backend, tok, step, action, pipelining):
    want, delivered = TABLE[(step, action)]
    script = ScriptedSMTP(step, action, pipelining=pipelining)
    gg = _gate(greygate_factory, fake_backend, script)
    rcpt = {x: f"{x}-{tok}@test.example" for x in "abcd"}
    with gg.raw(timeout=20) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250, "2.1.0")
        got = [c.cmd(f"RCPT TO:<{rcpt['a']}>")]
        if action.startswith("idle"):
            assert script.faulted.wait(5)
            time.sleep(script.close_after + 0.5)   # the backend has gone
            assert_reply(c.cmd("NOOP"), 250)
        got.append(c.cmd(f"RCPT TO:<{rcpt['b']}>"))
        got.extend(_data(c, tok))
        got.append(c.cmd(f"RCPT TO:<{rcpt['c']}>"))
        r = c.cmd("DATA")
        if r.code == 354:   # must not happen; finish so that we can look
            c.send(dot_stuff(make_message(tok)))
            c.reply()
        got.append(r)
        for i, what in enumerate(["RCPT a", "RCPT b", "DATA", "end of data", "RCPT c",
                                  "DATA again"]):
            _expect(got[i], want[i], f"{step}/{action}: {what}")
        # RSET and a new transaction: a connection that works
        assert_reply(c.cmd("RSET"), 250)
        assert_reply(c.send_message(f"t-{tok}@sender.example", [rcpt['d']],
                                    dot_stuff(make_message(tok)), ehlo=False), 250)
        assert_reply(c.cmd("QUIT"), 221)
    assert script.faulted.is_set()
    first = [(f, r) for f, r in script.delivered if f == f"<s-{tok}@sender.example>"]
    if delivered is None:
        assert first == []
    else:
        assert first == [(f"<s-{tok}@sender.example>", [f"<{rcpt[x]}>" for x in delivered])]
    # the new transaction's message, with its recipient alone
    assert (f"<t-{tok}@sender.example>", [f"<{rcpt['d']}>"]) in script.delivered
    # the first transaction's MAIL went out once, on one connection: never
    # replayed on a new one after a loss; and a transaction lost before
    # DATA never sent DATA
    conns = [lines for lines in script.lines
             if any(x.startswith(f"MAIL FROM:<s-{tok}".encode()) for x in lines)]
    assert len(conns) == 1, script.lines
    if LOST in want[:2]:
        assert b"DATA" not in conns[0], conns[0]
    assert gg.alive()
    _still_serving(gg, script, tok)


@pytest.mark.parametrize("action", ["close", "silent", "421", "451", "554", "354"])
def test_failure_at_rset(greygate_factory, fake_backend, tok, action):
    """RSET goes to the backend when it holds a transaction; whatever it does
    then, the client's RSET is done (250) and the next transaction is
    delivered."""
    script = ScriptedSMTP("RSET", action)
    gg = _gate(greygate_factory, fake_backend, script)
    with gg.raw(timeout=20) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<a-{tok}@test.example>"), 250)
        assert_reply(c.cmd("RSET"), 250)
        assert_reply(c.send_message(f"t-{tok}@sender.example", [f"d-{tok}@test.example"],
                                    dot_stuff(make_message(tok)), ehlo=False), 250)
        assert_reply(c.cmd("QUIT"), 221)
    assert script.faulted.is_set()
    assert script.delivered == [(f"<t-{tok}@sender.example>", [f"<d-{tok}@test.example>"])]
    _still_serving(gg, script, tok)


def test_backend_timeout_mid_transaction_postfix(make_postfix_backend, greygate_factory, tok):
    """Defect 1 against the real Postfix: its smtpd_timeout ends the backend
    connection while the client idles after a passed RCPT; the next RCPTs
    and DATA get 451 4.4.2 (the old code crashed at the second), and after
    RSET the client's next transaction arrives."""
    backend = make_postfix_backend(extra_main={"smtpd_timeout": "1s"})
    gg = greygate_factory(upstream=backend)
    with gg.raw(timeout=20) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<a-{tok}@test.example>"), 250)
        for _ in range(3):
            time.sleep(0.8)
            assert_reply(c.cmd("NOOP"), 250)
        assert_reply(c.cmd(f"RCPT TO:<b-{tok}@test.example>"), *LOST)
        assert_reply(c.cmd(f"RCPT TO:<c-{tok}@test.example>"), *LOST)
        assert_reply(c.cmd("DATA"), *LOST)
        assert_reply(c.cmd("RSET"), 250)
        assert_reply(c.send_message(f"t-{tok}@sender.example", [f"d-{tok}@test.example"],
                                    dot_stuff(make_message(tok)), ehlo=False), 250)
        assert_reply(c.cmd("QUIT"), 221)
    mails = backend.wait_mails(tok)
    assert len(mails) == 1
    assert gg.alive()
    with gg.raw() as c:
        assert_reply(c.greeting(), 220)


@pytest.mark.parametrize("step", ["MAIL", "RCPT1"])
def test_reply_of_wrong_class_logged(greygate_factory, fake_backend, tok, step):
    """A 354 to MAIL or RCPT is no reply to relay: the RCPT gets 451 4.4.2
    (the connection is lost to the transaction), and the log says what the
    backend did."""
    script = ScriptedSMTP(step, "354")
    gg = _gate(greygate_factory, fake_backend, script)
    with gg.raw(timeout=20) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<a-{tok}@test.example>"), *LOST)
        assert_reply(c.cmd("QUIT"), 221)
    ev = gg.wait_event("backend_error", stage="read")
    assert "cannot have" in ev[0]["detail"] and "354" in ev[0]["detail"], ev
    assert gg.alive()
    _still_serving(gg, script, tok)
