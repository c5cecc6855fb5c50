"""greygate as a Postfix policy service (README.md, "As a Postfix policy
service"): a real Postfix on the SMTP side asks greygate through
check_policy_service in smtpd_recipient_restrictions, where postgrey
would sit; greygate's SMTP port is not used.

Timing: the greylisting delay is 2 s; a retry is sent again every half
second until it passes (each early one is greylisted again), so no test
depends on how fast the machine is.
"""

import os
import re
import signal
import socket
import time

import pytest

from harness.greygate import DELAY, GL, get, metric, worker_pids
from harness.policy import policy_request as request, read_answers
from harness.smtp import RawSMTP, assert_reply, dot_stuff, make_message
from harness.util import CLIENT_ADDR, free_port, wait_until

WHITELISTED = "127.0.0.6"


@pytest.fixture
def policy_pair(gl_gate, make_postfix_backend):
    """policy_pair(kind="memory") -> (greygate serving policy.listen over
    store KIND, a Postfix that asks it)."""
    def make(kind="memory"):
        pport, aport = free_port(13023), free_port(19925)
        gg = gl_gate(kind, policy={"listen": f"127.0.0.1:{pport}"},
                     whitelist={"clients": [f"{WHITELISTED}/32"]},
                     admin={"listen": f"127.0.0.1:{aport}"})
        gg.policy_port, gg.admin_port = pport, aport
        pf = make_postfix_backend(extra_main={
            "smtpd_recipient_restrictions": f"check_policy_service inet:127.0.0.1:{pport}",
        })
        return gg, pf
    return make


def attempt(pf, tok, source=CLIENT_ADDR, extra_rcpt=None):
    """One delivery attempt to Postfix: the (first) RCPT reply, and the end
    of DATA's when every recipient was accepted."""
    with RawSMTP(pf.port, source=source, timeout=60) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<sender@{tok}.example>"), 250)
        r = c.cmd(f"RCPT TO:<rcpt-{tok}@test.example>", timeout=60)
        if extra_rcpt:
            assert c.cmd(f"RCPT TO:<{extra_rcpt}>", timeout=60).code == r.code
        if r.code != 250:
            return r, None
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok)))
        return r, c.reply(timeout=60)


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_greylisted_then_delivered(policy_pair, tok, kind):
    """Two recipients, each a triplet: both greylisted, both passed on the
    retry, and the message gets one X-Greylist header, not one each; the
    next message of the same triplets gets none (it was not delayed)."""
    gg, pf = policy_pair(kind)
    second = f"second-{tok}@test.example"
    first, _ = attempt(pf, tok, extra_rcpt=second)
    assert_reply(first, 450, "4.2.0", contains="Greylisted")
    assert f"<rcpt-{tok}@test.example>: Recipient address rejected" in first.text
    d = gg.wait_event("decision", rcpt=f"rcpt-{tok}@test.example")[0]
    assert d["reason"] == "new" and d["action"] == "greylist" and d["client"] == CLIENT_ADDR
    assert gg.events("reject", via="policy", rcpt=f"rcpt-{tok}@test.example",
                     rule="greylist", action="DEFER_IF_PERMIT")
    assert pf.mails_for(tok) == []

    def retry():
        r, end = attempt(pf, tok, extra_rcpt=second)
        if r.code == 450:
            time.sleep(0.5)
            return None
        return r, end
    r, end = wait_until(retry, 30 + DELAY, interval=0, what="a retry that passes")
    assert_reply(r, 250)
    assert_reply(end, 250)
    for mail in pf.wait_mails(tok, count=2):     # a copy per recipient
        xg = mail.header("x-greylist")
        assert len(xg) == 1 and re.match(r"delayed \d+ seconds by greygate-\S+ at gw\.test; ",
                                         xg[0]), xg
    for rcpt in (f"rcpt-{tok}@test.example", second):
        assert gg.events("decision", rcpt=rcpt, reason="triplet", action="pass")
    r, end = attempt(pf, tok, extra_rcpt=second)
    assert_reply(r, 250)
    assert_reply(end, 250)
    mails = pf.wait_mails(tok, count=4)
    assert sorted(len(m.header("x-greylist")) for m in mails) == [0, 0, 1, 1]


def test_whitelisted_client_passes(policy_pair, tok):
    gg, pf = policy_pair()
    r, end = attempt(pf, tok, source=WHITELISTED)
    assert_reply(r, 250)
    assert_reply(end, 250)
    mail = pf.wait_mails(tok)[0]
    assert mail.header("x-greylist") == []
    d = gg.wait_event("decision", rcpt=f"rcpt-{tok}@test.example")[0]
    assert d["reason"] == "whitelist-client" and d["client"] == WHITELISTED


def assert_closed(sock):
    """Closed by greygate without an answer (a reset when it closed with
    our bytes unread)."""
    sock.settimeout(30)
    try:
        assert sock.recv(100) == b""
    except ConnectionResetError:
        pass


def test_garbage_closes_only_its_connection(policy_pair, tok):
    gg, _ = policy_pair()
    addr = ("127.0.0.1", gg.policy_port)
    with socket.create_connection(addr, timeout=30) as good, \
            socket.create_connection(addr, timeout=30) as bad:
        # half a request on the good connection, then garbage on the other
        req = request(sender=f"s@{tok}.example", recipient=f"r-{tok}@test.example")
        good.sendall(req[:40])
        mark = len(gg.log_lines())
        bad.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        assert_closed(bad)
        e = gg.wait_event("policy", since=mark, result="protocol error")[0]
        assert e["reason"] == "a line is not name=value"
        # the rest of the first request, and a second pipelined behind it
        # that is answered at once: the answers keep the requests' order
        good.sendall(req[40:] + request(protocol_state="DATA", sender=f"s@{tok}.example",
                                        recipient=f"r-{tok}@test.example"))
        answers = read_answers(good, 2)
        assert answers[0].startswith("action=DEFER_IF_PERMIT 4.2.0 Greylisted, retry in "), answers
        assert answers[1] == "action=DUNNO", answers
        # still serving: a request with a long line past the bound ends that
        # connection alone
        with socket.create_connection(addr, timeout=30) as long_line:
            long_line.sendall(b"sender=" + b"x" * 5000 + b"\n")
            assert_closed(long_line)
        good.sendall(request(sender=f"s@{tok}.example", recipient=f"r2-{tok}@test.example"))
        assert read_answers(good, 1)[0].startswith("action=DEFER_IF_PERMIT")
    assert gg.events("policy", since=mark, result="protocol error", reason="a line is too long")
    # the proxy's metrics, and the service's own
    status, text = get(gg.admin_port, "/metrics")
    assert status == 200
    assert metric(text, "greygate_policy_requests_total") == 3
    assert metric(text, "greygate_policy_protocol_errors_total") == 2
    assert metric(text, "greygate_decisions_total", action="greylist", reason="new") == 2


def test_workers_share_the_port_and_the_store(greygate_factory, tok):
    pport = free_port(13023)
    gg = greygate_factory(workers=2, greylist=GL, policy={"listen": f"127.0.0.1:{pport}"})
    wait_until(lambda: len(gg.events("policy", result="listening")) == 2, 15,
               what="both workers serving the policy port")
    req = request(sender=f"s@{tok}.example", recipient=f"r-{tok}@test.example")
    conns = [socket.create_connection(("127.0.0.1", pport), timeout=30) for _ in range(12)]
    try:
        for c in conns:      # the kernel spreads them over both workers
            c.sendall(req)
            a = read_answers(c, 1)[0]
            assert a.startswith("action=DEFER_IF_PERMIT 4.2.0 Greylisted"), a

        prepends = []

        def passed():
            answers = []
            for c in conns:
                c.sendall(req)
                answers.append(read_answers(c, 1)[0])
            prepends.extend(a for a in answers if a.startswith("action=PREPEND X-Greylist: "))
            if all(a == "action=DUNNO" or a.startswith("action=PREPEND") for a in answers):
                return True
            time.sleep(0.5)
            return False
        # once the delay is over, every connection sees the same triplet
        # pass, and only the pass that ended its greylisting has the header
        wait_until(passed, 30 + DELAY, interval=0, what="the triplet passing on every connection")
        assert len(prepends) == 1, prepends
    finally:
        for c in conns:
            c.close()
    reasons = [e["reason"] for e in gg.events("decision", rcpt=f"r-{tok}@test.example")]
    assert reasons.count("new") == 1, reasons


def test_client_name_and_store_failure(greygate_factory, tok):
    """whitelist.client_names matches the name Postfix confirmed (no DNS of
    greygate's own: its resolver knows nothing here), an unconfirmed one
    ("unknown") does not; and with the store down and store.failure =
    tempfail, the answer is DEFER_IF_PERMIT, as postgrey's is."""
    pport = free_port(13023)
    dead = free_port(16400)     # nothing listens there: the store is down
    gg = greygate_factory(greylist=GL, policy={"listen": f"127.0.0.1:{pport}"},
                          whitelist={"client_names": [".good.example"]},
                          store={"type": "redis", "failure": "tempfail",
                                 "redis": {"host": "127.0.0.1", "port": dead,
                                           "timeout_ms": 200, "connect_timeout_ms": 200}})
    with socket.create_connection(("127.0.0.1", pport), timeout=30) as c:
        c.sendall(request(client_name="mx1.good.example", reverse_client_name="mx1.good.example",
                          sender=f"s@{tok}.example", recipient=f"a-{tok}@test.example"))
        assert read_answers(c, 1) == ["action=DUNNO"]
        d = gg.wait_event("decision", rcpt=f"a-{tok}@test.example")[0]
        assert d["reason"] == "whitelist-client-name" and d["client_name"] == "mx1.good.example"
        c.sendall(request(client_name="unknown", reverse_client_name="mx1.good.example",
                          sender=f"s@{tok}.example", recipient=f"b-{tok}@test.example"))
        a = read_answers(c, 1)[0]
        assert a == "action=DEFER_IF_PERMIT 4.3.0 Temporary lookup failure, try again later", a
        d = gg.wait_event("decision", rcpt=f"b-{tok}@test.example")[0]
        assert d["reason"] == "store-failure" and d["action"] == "tempfail"
        assert gg.events("reject", via="policy", rcpt=f"b-{tok}@test.example",
                         rule="store-failure", action="DEFER_IF_PERMIT")


def test_a_dead_workers_policy_socket_comes_back(greygate_factory, tok):
    """A worker killed: while it is gone its policy socket is paused, so
    every new connection is answered by the other; its replacement serves
    the port again."""
    pport = free_port(13023)
    gg = greygate_factory(workers=2, greylist=GL, policy={"listen": f"127.0.0.1:{pport}"})
    wait_until(lambda: len(gg.events("policy", result="listening")) == 2, 15,
               what="both workers serving the policy port")
    victim = worker_pids(gg)[0]
    mark = len(gg.log_lines())
    os.kill(victim, signal.SIGKILL)
    gg.wait_event("worker", since=mark, state="died; restarting", timeout=10)

    def answered(n, round_):
        for i in range(n):
            with socket.create_connection(("127.0.0.1", pport), timeout=30) as c:
                c.sendall(request(sender=f"s@{tok}.example",
                                  recipient=f"r{round_}x{i}-{tok}@test.example"))
                a = read_answers(c, 1)[0]
                assert a.startswith("action=DEFER_IF_PERMIT 4.2.0 Greylisted"), a
    answered(8, 1)       # one worker: none of them lands in a dead backlog
    gg.wait_event("policy", since=mark, result="listening", timeout=15)
    assert victim not in worker_pids(gg)
    answered(8, 2)


@pytest.mark.parametrize("workers", [1, 2])
def test_policy_port_taken_refuses_to_start(greygate_factory, workers):
    """Whatever listens on policy.listen already (another greygate, a
    postgrey): greygate does not bind beside it, it exits 1 and says why."""
    pport = free_port(13023)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", pport))
        taken.listen()
        gg = greygate_factory(start=False, workers=workers,
                              policy={"listen": f"127.0.0.1:{pport}"})
        with pytest.raises(AssertionError, match="exited with 1"):
            gg.start()
    assert gg.events("listen", result="failed",
                     reason=f"another process is listening on 127.0.0.1:{pport}")
    gg.proc = None   # nothing left to stop
