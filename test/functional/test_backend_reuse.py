"""Backend connection reuse (backend.idle_time): a connection on which the
backend has just accepted a message serves the next client, with XCLIENT
and EHLO for that client; anything else gets a fresh connection."""

import re
import time

from harness.fakes import ScriptedSMTP
from harness.postfix import assert_xclient_received
from harness.smtp import assert_reply, make_message

# greygate's own connections to the backend (before XCLIENT renames them)
BACKEND_CONNECT = re.compile(r"postfix/smtpd\[\d+\]: connect from \S+\[127\.0\.0\.1\]")

CLIENTS = [("127.0.0.5", "first.helo.test"), ("127.0.0.6", "second.helo.test"),
           ("127.0.0.7", "third.helo.test")]


def deliver(gg, tok, source, helo, n):
    with gg.smtp(source=source, helo=helo) as s:
        refused = s.sendmail(f"s-{tok}@sender.example", [f"r{n}-{tok}@test.example"],
                             make_message(tok, subject=f"message {n}"))
        assert refused == {}


def after_probe(gg, backend):
    """A mark in the backend's log after greygate's start-up probe, whose
    connection would otherwise be counted."""
    gg.wait_event("backend_probe")
    backend.sync_log()
    return backend.log_mark()


def backend_connects(backend, mark):
    backend.sync_log()
    return len(BACKEND_CONNECT.findall(backend.log(mark)))


def test_clients_share_one_backend_connection(greygate_factory, postfix_backend, tok):
    gg = greygate_factory(backend={"idle_time": 10})
    mark = after_probe(gg, postfix_backend)
    for n, (source, helo) in enumerate(CLIENTS):
        deliver(gg, tok, source, helo, n)
    mails = postfix_backend.wait_mails(tok, count=len(CLIENTS))
    # each message carries its own client's address and HELO (XCLIENT again
    # on the reused connection), none the previous client's
    by_rcpt = {m.header("delivered-to")[0]: m for m in mails}
    for n, (source, helo) in enumerate(CLIENTS):
        assert_xclient_received(by_rcpt[f"r{n}-{tok}@test.example"], helo=helo, addr=source)
    assert backend_connects(postfix_backend, mark) == 1, postfix_backend.log(mark)


def test_many_clients_on_one_connection(greygate_factory, postfix_backend, tok):
    """Postfix counts XCLIENT and EHLO as junk commands (limit 100, then
    errors, then 421): it forgets them at every accepted message, which is
    why only such a connection is kept."""
    gg = greygate_factory(backend={"idle_time": 10})
    mark = after_probe(gg, postfix_backend)
    count = 70
    for n in range(count):
        deliver(gg, tok, CLIENTS[n % 3][0], CLIENTS[n % 3][1], n)
    assert len(postfix_backend.wait_mails(tok, count=count)) == count
    assert backend_connects(postfix_backend, mark) == 1


def test_no_reuse_after_a_session_without_delivery(greygate_factory, postfix_backend, tok):
    gg = greygate_factory(backend={"idle_time": 10})
    mark = after_probe(gg, postfix_backend)
    deliver(gg, tok, *CLIENTS[0], 0)
    # this client's transaction reaches the backend (MAIL, RCPT) and is
    # abandoned: its connection is closed, not handed to the next client
    with gg.raw(source=CLIENTS[1][0]) as c:
        c.greeting()
        c.ehlo(CLIENTS[1][1])
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<abandoned-{tok}@test.example>"), 250)
        assert_reply(c.cmd("QUIT"), 221)
    deliver(gg, tok, *CLIENTS[2], 2)
    mails = postfix_backend.wait_mails(tok, count=2)
    assert sorted(m.header("delivered-to")[0] for m in mails) == \
        [f"r0-{tok}@test.example", f"r2-{tok}@test.example"]
    # first connection reused by the abandoning client, then a new one
    assert backend_connects(postfix_backend, mark) == 2, postfix_backend.log(mark)


def test_idle_connection_closed_by_the_backend(make_postfix_backend, greygate_factory, tok):
    backend = make_postfix_backend(extra_main={"smtpd_timeout": "1s"})
    gg = greygate_factory(upstream=backend, backend={"idle_time": 30})
    mark = after_probe(gg, backend)
    deliver(gg, tok, *CLIENTS[0], 0)
    # the backend times the idle connection out ("421 ... timeout", close)
    backend.wait_log(r"timeout after END-OF-MESSAGE", since=mark)
    time.sleep(0.3)
    deliver(gg, tok, *CLIENTS[1], 1)
    mails = backend.wait_mails(tok, count=2)
    assert len(mails) == 2
    assert backend_connects(backend, mark) == 2


def test_reused_connection_refusing_xclient_is_replaced(greygate_factory, fake_backend, tok):
    """A reused connection whose backend refuses the next client's XCLIENT
    (a 5xx, not a 421: state left on the connection, an error count) says
    nothing about that client: greygate opens a fresh connection for it and
    the mail goes through."""
    script = ScriptedSMTP(step="XCLIENT2", action="503", xclient=True)
    fb = fake_backend("serve", script)
    gg = greygate_factory(upstream=fb, backend={"idle_time": 30, "xclient": True})
    gg.wait_event("backend_probe")
    deliver(gg, tok, *CLIENTS[0], 0)
    deliver(gg, tok, *CLIENTS[1], 1)
    assert script.faulted.is_set(), "the connection was not reused"
    assert len(script.delivered) == 2, script.delivered
    assert not gg.events("reject", rule="backend_refused")


def test_idle_connection_quits_after_idle_time(greygate_factory, postfix_backend, tok):
    gg = greygate_factory(backend={"idle_time": 3})
    mark = after_probe(gg, postfix_backend)
    deliver(gg, tok, *CLIENTS[0], 0)
    disconnect = r"disconnect from \S+\[127\.0\.0\.5\].*"
    postfix_backend.sync_log()
    assert not re.search(disconnect, postfix_backend.log(mark))   # kept a while ...
    line = postfix_backend.wait_log(disconnect, since=mark).group(0)
    assert re.search(r"\bquit=1\b", line), line                  # ... then QUIT
    deliver(gg, tok, *CLIENTS[1], 1)
    postfix_backend.wait_mails(tok, count=2)
    assert backend_connects(postfix_backend, mark) == 2


def test_no_reuse_when_idle_time_is_zero(greygate_factory, postfix_backend, tok):
    gg = greygate_factory(backend={"idle_time": 0})
    mark = after_probe(gg, postfix_backend)
    for n, (source, helo) in enumerate(CLIENTS[:2]):
        deliver(gg, tok, source, helo, n)
    postfix_backend.wait_mails(tok, count=2)
    assert backend_connects(postfix_backend, mark) == 2


def test_reused_connection_without_xclient(greygate_factory, postfix_backend, tok):
    """Without XCLIENT every client is greygate to the backend: the
    connection goes on as it is."""
    gg = greygate_factory(backend={"idle_time": 10, "xclient": False})
    mark = after_probe(gg, postfix_backend)
    for n, (source, helo) in enumerate(CLIENTS):
        deliver(gg, tok, source, helo, n)
    assert len(postfix_backend.wait_mails(tok, count=3)) == 3
    assert backend_connects(postfix_backend, mark) == 1
