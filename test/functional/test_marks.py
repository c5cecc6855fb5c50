"""Client marks shared through the store (README.md "Spamtraps and
backup_first"): a RCPT to a `spamtraps` address marks the client's network
trapped for `trap_lifetime` on every MX host sharing the store (hostile,
whatever its score; its pending triplets start over once the trap is
over), and a new triplet first seen on a backup MX while the primary
answers the hand-over probe marks its network `backup_first` for the retry
window.

Clients are loopback addresses; their networks 127.0.N.0/24. The DNS is a
private dnsmasq that answers every PTR with NXDOMAIN at once (no_ptr
weighs nothing here, so that a score shows only the marks).
"""

import time

import pytest

from harness.fakes import relay_mx_zone
from harness.greygate import GL, rcpt_once, wait_past_delay
from harness.redis import Resp
from harness.smtp import RawSMTP, assert_reply
from harness.util import token, wait_until

TRAP = "trap@test.example"
SCORING = {"weights": {"no_ptr": 0, "unconfirmed_ptr": 0, "backup_first": 3},
           "classes": {"trusted": -3, "suspicious": 3, "hostile": 8},
           "suspicious": {"delay": 600}}


def dns_over(dns_server, lines=()):
    dns = dns_server(list(lines), local=("example", "test", "in-addr.arpa"))
    return {"servers": [dns.address], "timeout_ms": 3000, "tries": 2}


def trap_gate(gl_gate, dns_server, kind, scoring=None, greylist=None, **over):
    return gl_gate(kind, greylist=greylist, scoring={**SCORING, **(scoring or {})},
                   spamtraps=[TRAP], dns=dns_over(dns_server), **over)


def rcpt(gg, source, to, sender=None):
    return rcpt_once(gg, sender or f"s-{token()}@sender.example", to, source)[0]


def decision(gg, mark, to):
    ev = gg.wait_event("decision", since=mark, rcpt=to)
    assert len(ev) == 1, ev
    return ev[0]


def marks(redis_port, key):
    """KEY's fields and TTL in the Redis on REDIS_PORT."""
    with Resp(redis_port) as r:
        fields = r.cmd("HGETALL", key)
        return dict(zip(fields[::2], fields[1::2])), r.cmd("TTL", key)


def wait_marks(redis_port, key):
    """KEY's fields and TTL once it exists (a mark is set without holding
    the reply that caused it)."""
    return wait_until(lambda: (lambda m: m if m[0] else None)(marks(redis_port, key)), 5,
                      what=f"redis key {key}")


@pytest.mark.parametrize("kind,workers", [("memory", 1), ("memory", 2), ("redis", 1)])
def test_spamtrap_marks_the_network(gl_gate, dns_server, request, kind, workers):
    """workers 2: the embedded store is the supervisor's, its marks reached
    over the workers' channel, shared by both."""
    gg = trap_gate(gl_gate, dns_server, kind, trap_lifetime=600, workers=workers)

    # a RCPT to the trap: refused as hostile, logged as a spamtrap; the
    # session's next recipient is hostile too
    mark = gg.log_mark()
    other = f"r-{token()}@test.example"
    with RawSMTP(gg.port, source="127.0.9.5") as c:
        c.greeting()
        c.ehlo("client.example")
        assert_reply(c.cmd(f"MAIL FROM:<s-{token()}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{TRAP.upper()}>"), 550, "5.7.1", contains="spamtrap")
        assert_reply(c.cmd(f"RCPT TO:<{other}>"), 550, "5.7.1", contains="spamtrap")
        c.cmd("QUIT")
    e = decision(gg, mark, TRAP.upper())
    assert (e["action"], e["reason"], e["class"], e["parts"]) == \
        ("reject", "spamtrap", "hostile", "spamtrap:0"), e
    e = decision(gg, mark, other)
    assert (e["action"], e["reason"], e["class"]) == ("reject", "hostile", "hostile"), e

    # a later connection from the same /24, to an ordinary recipient
    to = f"r-{token()}@test.example"
    mark = gg.log_mark()
    assert_reply(rcpt(gg, "127.0.9.6", to), 550, "5.7.1", contains="spamtrap")
    e = decision(gg, mark, to)
    assert (e["reason"], e["class"], e["parts"], e["score"]) == \
        ("hostile", "hostile", "spamtrap:0", "0"), e
    # another network is not touched
    assert_reply(rcpt(gg, "127.0.8.5", f"r-{token()}@test.example"), 450, "4.2.0")

    if kind == "redis":
        rs = request.getfixturevalue("redis_server")
        m, ttl = wait_marks(rs.port, "gg:m:127.0.9.0/24")
        assert set(m) == {"u", "t"}, m
        assert int(m["u"]) - int(m["t"]) == 600, m
        # kept for the retry window (3600), past the trap's own 600 s
        assert 600 < ttl <= GL["retry_window"], ttl
        # every MX host sharing the store sees the trap
        gg2 = trap_gate(gl_gate, dns_server, kind, trap_lifetime=600)
        to = f"r-{token()}@test.example"
        mark = gg2.log_mark()
        assert_reply(rcpt(gg2, "127.0.9.7", to), 550, "5.7.1")
        assert decision(gg2, mark, to)["parts"] == "spamtrap:0"


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_spamtrap_drops_pending_triplets(gl_gate, dns_server, kind):
    """A triplet waiting for its retry when its network hit a trap starts
    over once the trap is over: its retry is new, not a pass."""
    gg = trap_gate(gl_gate, dns_server, kind, trap_lifetime=1)
    sender, to = f"s-{token()}@sender.example", f"r-{token()}@test.example"
    ctl_sender = f"s-{token()}@sender.example"
    r, first, _ = rcpt_once(gg, sender, to, "127.0.9.5")
    assert_reply(r, 450, "4.2.0")
    r, _, _ = rcpt_once(gg, ctl_sender, to, "127.0.8.5")      # another network
    assert_reply(r, 450, "4.2.0")
    wait_past_delay(first)
    assert_reply(rcpt(gg, "127.0.9.5", TRAP), 550, "5.7.1")
    time.sleep(1.2)                                           # the trap is over

    mark = gg.log_mark()
    r, _, _ = rcpt_once(gg, sender, to, "127.0.9.5")
    assert_reply(r, 450, "4.2.0")
    e = decision(gg, mark, to)
    assert (e["action"], e["reason"], e["class"]) == ("greylist", "new", "normal"), e
    # the other network's triplet, as old, passes
    mark = gg.log_mark()
    rcpt_once(gg, ctl_sender, to, "127.0.8.5")
    e = decision(gg, mark, to)
    assert (e["action"], e["reason"]) == ("pass", "triplet"), e


def test_spamtrap_tempfail_and_shadow(gl_gate, dns_server):
    gg = trap_gate(gl_gate, dns_server, "memory", scoring={"hostile": {"action": "tempfail"}})
    assert_reply(rcpt(gg, "127.0.9.5", TRAP), 450, "4.7.1", contains="spamtrap")
    assert_reply(rcpt(gg, "127.0.9.6", f"r-{token()}@test.example"), 450, "4.7.1")

    gg = trap_gate(gl_gate, dns_server, "memory", greylist={"mode": "shadow"})
    mark = gg.log_mark()
    assert_reply(rcpt(gg, "127.0.9.5", TRAP), 250)
    e = decision(gg, mark, TRAP)
    assert (e["action"], e["reason"]) == ("would-reject", "spamtrap"), e
    to = f"r-{token()}@test.example"
    mark = gg.log_mark()
    assert_reply(rcpt(gg, "127.0.9.6", to), 250)
    e = decision(gg, mark, to)
    assert (e["action"], e["reason"], e["parts"]) == ("would-reject", "hostile", "spamtrap:0"), e


def test_marks_store_down(gl_gate, dns_server, redis_server):
    """Redis away: the marks cannot be read nor set, which is no marks, never
    a failed session: a recipient follows store.failure (accept), a trap is
    still refused."""
    gg = trap_gate(gl_gate, dns_server, "redis")
    redis_server.stop()
    to = f"r-{token()}@test.example"
    mark = gg.log_mark()
    assert_reply(rcpt(gg, "127.0.9.5", to), 250)
    e = decision(gg, mark, to)
    assert (e["action"], e["reason"], e["parts"]) == ("pass", "store-failure", ""), e
    assert_reply(rcpt(gg, "127.0.9.5", TRAP), 550, "5.7.1", contains="spamtrap")
    assert_reply(rcpt(gg, "127.0.9.6", f"r-{token()}@test.example"), 250)
    assert gg.alive()


# ---- backup_first ----

def mx_gate(gl_gate, dns_server, backup, probe_port=None, workers=1):
    """A greygate sharing the test's Redis: the backup MX of relay.example
    (my_addresses 192.0.2.20, probing the primary on PROBE_PORT) or its
    primary (no probe: it never marks)."""
    over = dict(relay_domains=["relay.example"], scoring=SCORING,
                dns=dns_over(dns_server, relay_mx_zone()))
    if backup:
        over.update(my_addresses=["192.0.2.20"],
                    handover={"domains": ["relay.example"], "probe_interval": 1,
                              "probe_timeout": 1, "probe_port": probe_port})
    return gl_gate("redis", workers=workers, **over)


def test_backup_first(gl_gate, dns_server, banner, redis_server):
    primary_mx = banner("220")
    backup = mx_gate(gl_gate, dns_server, True, primary_mx.port)
    primary = mx_gate(gl_gate, dns_server, False)
    backup.wait_event("probe", state="up", domain="relay.example", timeout=10)

    # first contact on the backup while the primary answers: marked
    sender, to = f"s-{token()}@sender.example", f"r-{token()}@relay.example"
    mark = backup.log_mark()
    r, first, _ = rcpt_once(backup, sender, to, "127.0.10.5")
    assert_reply(r, 450, "4.2.0")
    e = decision(backup, mark, to)
    assert (e["reason"], e["class"], e["parts"]) == ("new", "normal", ""), e
    m, ttl = wait_marks(redis_server.port, "gg:m:127.0.10.0/24")
    assert set(m) == {"b"}, m
    assert 0 < ttl <= GL["retry_window"], ttl

    # the retries, at either host, carry backup_first: suspicious
    wait_past_delay(first)
    for gg in (primary, backup):
        mark = gg.log_mark()
        r, _, _ = rcpt_once(gg, sender, to, "127.0.10.5")
        assert_reply(r, 450, "4.2.0", contains="retry in")
        e = decision(gg, mark, to)
        assert (e["class"], e["parts"], e["score"]) == ("suspicious", "backup_first:3", "3"), e

    # first contact on the primary, then the backup: nothing
    sender, to = f"s-{token()}@sender.example", f"r-{token()}@relay.example"
    r, first, _ = rcpt_once(primary, sender, to, "127.0.11.5")
    assert_reply(r, 450, "4.2.0")
    wait_past_delay(first)
    mark = backup.log_mark()
    rcpt_once(backup, sender, to, "127.0.11.5")
    e = decision(backup, mark, to)
    assert (e["action"], e["parts"]) == ("pass", ""), e
    assert marks(redis_server.port, "gg:m:127.0.11.0/24") == ({}, -2)


def test_backup_first_every_worker(gl_gate, dns_server, banner, redis_server):
    """A backup with two workers: connections land on either (SO_REUSEPORT),
    and each knows the primary's state, so every first contact is marked;
    the probe's state and the ETRN stay the first worker's (one line)."""
    primary_mx = banner("220")
    backup = mx_gate(gl_gate, dns_server, True, primary_mx.port, workers=2)
    backup.wait_event("probe", state="up", domain="relay.example", timeout=10)
    # the other worker's first round runs at its start too: give it a second
    time.sleep(1.5)
    nets = [f"127.0.{n}.0/24" for n in range(20, 32)]
    for n in range(20, 32):
        to = f"r-{token()}@relay.example"
        assert_reply(rcpt(backup, f"127.0.{n}.5", to), 450, "4.2.0")
    for net in nets:
        m, _ = wait_marks(redis_server.port, f"gg:m:{net}")
        assert set(m) == {"b"}, (net, m)
    assert len(backup.events("probe", state="up")) == 1, backup.events("probe")
