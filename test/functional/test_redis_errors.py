"""Redis answering with errors (the store of the RCPT decision): a decision
that gets an error reply follows store.failure as before, but the error is
counted by kind in /metrics, /healthz turns 503 while most decisions fail
(the connection being up is not enough) and comes back when they succeed,
the change is logged once, and errors that another connection would not get
(READONLY: a replica; NOAUTH: not logged in) make greygate reconnect, AUTH
included, with its back-off."""

import pytest

from harness.greygate import GL, get, metric
from harness.redis import HugeReplyRedis
from harness.smtp import RawSMTP, assert_reply
from harness.util import CLIENT_ADDR, free_port, wait_until

METRIC = "greygate_store_error_replies_total"
PASSWORD = "s3cret-pass"


class ErrorRedis(HugeReplyRedis):
    """A fake Redis: PING, AUTH, SELECT, ROLE and SCRIPT LOAD answered as
    Redis would, every EVALSHA/EVAL with the error line self.error (bytes),
    or, when it is None, with a greylist decision. Records the commands of
    each connection (AUTH with its password)."""

    DECISION = b"*7\r\n:1\r\n$3\r\nnew\r\n:2\r\n:0\r\n:0\r\n:0\r\n:0\r\n"

    def __init__(self, error):
        self.error = error
        self.sessions = []
        super().__init__(shape=None)

    def _connected(self):
        seen = []
        self.sessions.append(seen)
        return seen

    def _answer(self, s, args, seen):
        name = args[0].upper()
        seen.append(b" ".join(args[:2]).decode() if name == b"AUTH" else name.decode())
        if name in (b"EVALSHA", b"EVAL"):
            err = self.error
            s.sendall(b"-" + err + b"\r\n" if err else self.DECISION)
        elif name == b"ROLE":
            s.sendall(b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n")
        else:
            return super()._answer(s, args, seen)
        return True


def rcpts(gg, tok, n, code, tag):
    """N recipients in one session; each must get CODE. Their addresses."""
    out = [f"{tag}{i}-{tok}@test.example" for i in range(n)]
    with RawSMTP(gg.port, source=CLIENT_ADDR, timeout=15) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s@{tok}.sender.example>"), 250)
        for r in out:
            assert_reply(c.cmd(f"RCPT TO:<{r}>"), code)
        assert_reply(c.cmd("QUIT"), 221)
    return out


def health(gg):
    return get(gg.admin_port, "/healthz")


def errors(gg, kind):
    return metric(get(gg.admin_port, "/metrics")[1], METRIC, kind=kind)


def assert_store_failures(gg, rcpt_list, since):
    for r in rcpt_list:
        ev = gg.wait_event("decision", since=since, timeout=5, rcpt=r)[-1]
        assert (ev["action"], ev["reason"]) == ("pass", "store-failure"), ev["_line"]


def test_redis_oom_fails_health_until_writes_work(gl_gate, redis_server, tok):
    """A real Redis at maxmemory with noeviction: every EVALSHA gets -OOM.
    RCPTs follow store.failure (accept) as before, but /healthz says 503
    naming the store, /metrics counts kind="oom", and one line (not one per
    RCPT) says the store is failing; once writes work again, health is back
    and that is logged once too."""
    admin = free_port(19925)
    gg = gl_gate("redis", store={"failure": "accept"},
                 admin={"listen": f"127.0.0.1:{admin}"})
    gg.admin_port = admin
    wait_until(lambda: health(gg)[0] == 200, 5, what="/healthz 200")
    redis_server.cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")
    redis_server.cmd("CONFIG", "SET", "maxmemory", "1")
    mark = gg.log_mark()
    # still answered per store.failure: passed, logged as a store failure
    assert_store_failures(gg, rcpts(gg, tok, 4, 250, "oom"), mark)
    wait_until(lambda: health(gg)[0] == 503, 5, what="/healthz 503")
    code, body = health(gg)
    assert "store" in body, body
    assert errors(gg, "oom") >= 4
    assert errors(gg, "readonly") == 0
    assert_store_failures(gg, rcpts(gg, tok, 3, 250, "more"), mark)
    failing = gg.events("store", since=mark, state="failing")
    assert len(failing) == 1, failing
    assert failing[0]["reason"] == "OOM" and "maxmemory" in failing[0]["detail"], failing
    assert not gg.events("store", since=mark, state="disconnecting"), \
        "an OOM is no reason to drop the connection"

    # memory again: decisions succeed and health comes back
    redis_server.cmd("CONFIG", "SET", "maxmemory", "0")
    back = gg.log_mark()
    n = [0]

    def healthy_again():
        rcpts(gg, tok, 1, 450, f"back{n[0]}-")
        n[0] += 1
        return health(gg)[0] == 200
    wait_until(healthy_again, 15, interval=0.2, what="/healthz 200 after maxmemory 0")
    assert len(gg.events("store", since=back, state="ok")) == 1
    assert not gg.events("store", since=back, state="failing")


@pytest.fixture
def error_gate(greygate_factory):
    """error_gate(error, **redis settings) -> (greygate over an ErrorRedis
    answering every decision with ERROR, the fake), greygate connected."""
    fakes = []

    def make(error, **redis):
        fake = ErrorRedis(error)
        fakes.append(fake)
        admin = free_port(19925)
        gg = greygate_factory(
            start=False, greylist=GL, admin={"listen": f"127.0.0.1:{admin}"},
            store={"type": "redis", "file": "", "failure": "accept",
                   "redis": {"host": "127.0.0.1", "port": fake.port, "timeout_ms": 1000,
                             "connect_timeout_ms": 1000, **redis}})
        gg.admin_port = admin
        gg.start()
        gg.wait_event("store", state="connected", timeout=10)
        return gg, fake

    yield make
    for f in fakes:
        f.stop()


def test_redis_readonly_reconnects(error_gate, tok):
    """EVALSHA answered with READONLY (PING and ROLE fine: a replica after a
    failover): the decision follows store.failure, greygate drops that
    connection and makes a new one, and /metrics counts kind="readonly"."""
    gg, fake = error_gate(b"READONLY You can't write against a read only replica.")
    mark = gg.log_mark()
    assert_store_failures(gg, rcpts(gg, tok, 1, 250, "ro"), mark)
    wait_until(lambda: fake.connections >= 2, 5, what="a new connection to Redis")
    drop = gg.wait_event("store", since=mark, state="disconnecting")[0]
    assert "READONLY" in drop["detail"] and "reconnecting" in drop["detail"], drop["_line"]
    gg.wait_event("store", since=mark, state="connected")
    assert errors(gg, "readonly") == 1
    assert errors(gg, "unclassified") == 0


def test_redis_noauth_authenticates_again(error_gate, tok):
    """EVALSHA answered with NOAUTH: greygate reconnects and sends AUTH
    again on every new connection, with a growing back-off; /healthz says
    503 while it persists, /metrics counts kind="noauth"; once the server
    takes the decisions again, health is back."""
    gg, fake = error_gate(b"NOAUTH Authentication required.", password=PASSWORD)
    for i in range(3):
        # each decision on a fresh connection (the previous one was dropped)
        ups = gg.wait_event("store", state="connected", timeout=10)
        assert len(ups) == i + 1, [e["_line"] for e in ups]
        mark = gg.log_mark()
        assert_store_failures(gg, rcpts(gg, tok, 1, 250, f"na{i}-"), mark)
        drop = gg.wait_event("store", since=mark, state="disconnecting")[0]
        assert "NOAUTH" in drop["detail"], drop["_line"]
        wait_until(lambda: len(gg.events("store", state="connected")) > i + 1, 10,
                   what="a reconnect")
    wait_until(lambda: health(gg)[0] == 503, 5, what="/healthz 503")
    assert "store" in health(gg)[1]
    assert errors(gg, "noauth") == 3
    wait_until(lambda: len(fake.sessions) >= 4 and fake.sessions[3], 5, what="4th session")
    for s in fake.sessions[:4]:
        assert s[0] == f"AUTH {PASSWORD}", s

    fake.error = None
    n = [0]

    def healthy_again():
        if not gg.events("store", state="connected")[3:]:
            return False
        rcpts(gg, tok, 1, 450, f"ok{n[0]}-")
        n[0] += 1
        return health(gg)[0] == 200
    wait_until(healthy_again, 15, interval=0.2, what="/healthz 200")
