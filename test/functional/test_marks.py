"""Client marks shared through the store (README.md "Spamtraps and
backup_first"): a RCPT to a `spamtraps` address marks the client's network
trapped for `trap_lifetime` on every MX host sharing the store (hostile,
whatever its score; its pending triplets start over once the trap is
over). backup_first is no mark: a new triplet first seen on a backup MX
while the primary answers the hand-over probe is flagged in the store,
that triplet alone, and its retries on any MX host carry the part.

Clients are loopback addresses; their networks 127.0.N.0/24. The DNS is a
private dnsmasq that answers every PTR with NXDOMAIN at once (no_ptr
weighs nothing here, so that a score shows only the marks).
"""

import time

import pytest

from harness.fakes import relay_mx_zone
from harness.greygate import DELAY, GL, ctl_ok, get, metric, rcpt_once, wait_past_delay
from harness.redis import Resp
from harness.smtp import RawSMTP, assert_reply
from harness.util import free_port, token, wait_until

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

def mx_gate(gl_gate, dns_server, kind, backup, probe_port=None, workers=1, scoring=None,
            **extra):
    """A greygate over KIND (with Redis, sharing the test's): the backup MX
    of relay.example (my_addresses 192.0.2.20, probing the primary on
    PROBE_PORT) or its primary (no probe: it never flags)."""
    over = dict(relay_domains=["relay.example"], scoring={**SCORING, **(scoring or {})},
                dns=dns_over(dns_server, relay_mx_zone()))
    if backup:
        over.update(my_addresses=["192.0.2.20"],
                    handover={"domains": ["relay.example"], "probe_interval": 1,
                              "probe_timeout": 1, "probe_port": probe_port})
    return gl_gate(kind, workers=workers, **over, **extra)


def listed(gg, to):
    """greygate-ctl list's line of the one triplet to TO."""
    lines = [ln for ln in ctl_ok(gg, "list", f"rcpt={to}").splitlines() if ln.startswith("key=")]
    assert len(lines) == 1, lines
    return lines[0]


def flagged(gg, to):
    return listed(gg, to).endswith(" backup_first=yes")


def triplet_hash(redis_port, to):
    """The fields of the triplet hash whose recipient is TO."""
    with Resp(redis_port) as r:
        for key in r.cmd("KEYS", "gg:t:*"):
            f = r.cmd("HGETALL", key)
            h = dict(zip(f[::2], f[1::2]))
            if h.get("r") == to:
                return h
    raise AssertionError(f"no triplet to {to}")


def explained(gg, client, sender, to):
    """greygate-ctl explain's score and next lines, as dicts."""
    out = ctl_ok(gg, "explain", client, sender, to)
    lines = {ln.split(": ", 1)[0]: ln.split(": ", 1)[1] for ln in out.splitlines() if ": " in ln}
    return tuple(dict(kv.split("=", 1) for kv in lines[k].split() if "=" in kv)
                 for k in ("score", "next"))


def up_backup(gl_gate, dns_server, banner, kind, **kw):
    primary_mx = banner("220")
    backup = mx_gate(gl_gate, dns_server, kind, True, primary_mx.port, **kw)
    backup.wait_event("probe", state="up", domain="relay.example", timeout=10)
    return backup


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_backup_first_flags_the_triplet(gl_gate, dns_server, banner, request, kind):
    """First contact on the backup while the primary answers: that triplet
    is flagged, and its retries (on the primary too, with a shared store)
    are suspicious, with suspicious.delay; another new triplet of the same
    client network is untouched."""
    backup = up_backup(gl_gate, dns_server, banner, kind)
    hosts = [backup]
    if kind == "redis":
        hosts.insert(0, mx_gate(gl_gate, dns_server, kind, False))

    sender, to = f"s-{token()}@sender.example", f"r-{token()}@relay.example"
    mark = backup.log_mark()
    r, first, _ = rcpt_once(backup, sender, to, "127.0.10.5")
    assert_reply(r, 450, "4.2.0")
    e = decision(backup, mark, to)
    assert (e["reason"], e["class"], e["parts"]) == ("new", "normal", ""), e
    assert flagged(backup, to)
    if kind == "redis":
        rs = request.getfixturevalue("redis_server")
        assert triplet_hash(rs.port, to)["b"] == "1"
        assert marks(rs.port, "gg:m:127.0.10.0/24") == ({}, -2)   # no network mark

    # greygate-ctl explain says what its retry will meet, on every host
    for gg in hosts:
        score, nxt = explained(gg, "127.0.10.5", sender, to)
        assert (score["class"], score["score"], score["parts"]) == \
            ("suspicious", "3", "backup_first:3"), score
        assert (nxt["action"], nxt["reason"]) == ("greylist", "early"), nxt
        assert int(nxt["delay_left"]) > 600 - 60, nxt

    # its retries, past the normal delay, at every host: suspicious
    wait_past_delay(first)
    for gg in hosts:
        mark = gg.log_mark()
        r, _, _ = rcpt_once(gg, sender, to, "127.0.10.5")
        assert_reply(r, 450, "4.2.0", contains="retry in")
        e = decision(gg, mark, to)
        assert (e["action"], e["reason"]) == ("greylist", "early"), e
        assert (e["class"], e["parts"], e["score"]) == ("suspicious", "backup_first:3", "3"), e
        assert int(e["delay_left"]) > 600 - 60, e

    # another new triplet of the same network, to a domain the backup does
    # not hand over (so never flagged itself): no part, first nor retry
    sender2, to2 = f"s-{token()}@sender.example", f"r-{token()}@test.example"
    mark = backup.log_mark()
    r, first, _ = rcpt_once(backup, sender2, to2, "127.0.10.6")
    assert_reply(r, 450, "4.2.0")
    e = decision(backup, mark, to2)
    assert (e["reason"], e["class"], e["parts"]) == ("new", "normal", ""), e
    wait_past_delay(first)
    mark = backup.log_mark()
    r, _, _ = rcpt_once(backup, sender2, to2, "127.0.10.6")
    assert_reply(r, 250)
    e = decision(backup, mark, to2)
    assert (e["action"], e["class"], e["parts"]) == ("pass", "normal", ""), e
    assert not flagged(backup, to2)

    if kind == "redis":
        # and one to relay.example first seen on the primary
        primary = hosts[0]
        sender3, to3 = f"s-{token()}@sender.example", f"r-{token()}@relay.example"
        mark = primary.log_mark()
        r, first, _ = rcpt_once(primary, sender3, to3, "127.0.10.7")
        assert_reply(r, 450, "4.2.0")
        assert decision(primary, mark, to3)["parts"] == ""
        wait_past_delay(first)
        mark = backup.log_mark()
        assert_reply(rcpt_once(backup, sender3, to3, "127.0.10.7")[0], 250)
        e = decision(backup, mark, to3)
        assert (e["action"], e["parts"]) == ("pass", ""), e


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_backup_first_passes_after_suspicious_delay(gl_gate, dns_server, banner, kind):
    """A flagged triplet passes once suspicious.delay is over; passed, the
    flag no longer matters. /metrics counts each decision's class and
    parts as its line shows them."""
    admin = free_port(19925)
    backup = up_backup(gl_gate, dns_server, banner, kind,
                       scoring={"suspicious": {"delay": DELAY + 2}},
                       admin={"listen": f"127.0.0.1:{admin}"})
    sender, to = f"s-{token()}@sender.example", f"r-{token()}@relay.example"
    r, first, _ = rcpt_once(backup, sender, to, "127.0.12.5")
    assert_reply(r, 450, "4.2.0")
    wait_past_delay(first)
    assert_reply(rcpt_once(backup, sender, to, "127.0.12.5")[0], 450, "4.2.0")
    wait_past_delay(first, DELAY + 2)
    mark = backup.log_mark()
    assert_reply(rcpt_once(backup, sender, to, "127.0.12.5")[0], 250)
    e = decision(backup, mark, to)
    assert (e["action"], e["reason"], e["class"], e["parts"]) == \
        ("pass", "triplet", "suspicious", "backup_first:3"), e
    mark = backup.log_mark()
    assert_reply(rcpt_once(backup, sender, to, "127.0.12.5")[0], 250)
    e = decision(backup, mark, to)
    assert (e["action"], e["class"], e["parts"]) == ("pass", "normal", ""), e
    status, text = get(admin, "/metrics")
    assert status == 200
    assert metric(text, "greygate_classes_total", **{"class": "normal"}) == 2, text
    assert metric(text, "greygate_classes_total", **{"class": "suspicious"}) == 2, text
    assert metric(text, "greygate_signals_total", signal="backup_first") == 2, text


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_backup_first_hostile_refused(gl_gate, dns_server, banner, kind):
    """A flagged triplet whose score with the part is hostile: its retry is
    refused as a hostile client's, and the store keeps it as it was."""
    backup = up_backup(gl_gate, dns_server, banner, kind,
                       scoring={"weights": {**SCORING["weights"], "backup_first": 8}})
    sender, to = f"s-{token()}@sender.example", f"r-{token()}@relay.example"
    r, first, _ = rcpt_once(backup, sender, to, "127.0.13.5")
    assert_reply(r, 450, "4.2.0")
    before = listed(backup, to)
    assert before.endswith(" backup_first=yes"), before
    score, nxt = explained(backup, "127.0.13.5", sender, to)
    assert (score["class"], score["parts"], nxt["action"], nxt["reason"]) == \
        ("hostile", "backup_first:8", "reject", "hostile"), (score, nxt)
    wait_past_delay(first)
    mark = backup.log_mark()
    r, _, _ = rcpt_once(backup, sender, to, "127.0.13.5")
    assert_reply(r, 550, "5.7.1", contains="client classed hostile (score 8)")
    e = decision(backup, mark, to)
    assert (e["action"], e["reason"], e["class"], e["parts"]) == \
        ("reject", "hostile", "hostile", "backup_first:8"), e
    after = listed(backup, to)
    assert "state=pending" in after, after
    assert before.split(" ttl=")[0] == after.split(" ttl=")[0]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_backup_first_primary_down(gl_gate, dns_server, banner, kind):
    """The primary does not answer: a first contact on the backup is
    expected, nothing is flagged."""
    primary_mx = banner("down")
    backup = mx_gate(gl_gate, dns_server, kind, True, primary_mx.port)
    backup.wait_event("probe", state="down", domain="relay.example", timeout=10)
    sender, to = f"s-{token()}@sender.example", f"r-{token()}@relay.example"
    r, first, _ = rcpt_once(backup, sender, to, "127.0.14.5")
    assert_reply(r, 450, "4.2.0")
    assert not flagged(backup, to)
    wait_past_delay(first)
    mark = backup.log_mark()
    assert_reply(rcpt_once(backup, sender, to, "127.0.14.5")[0], 250)
    e = decision(backup, mark, to)
    assert (e["action"], e["class"], e["parts"]) == ("pass", "normal", ""), e


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_backup_first_first_contact_on_primary(gl_gate, dns_server, banner, kind):
    """First contact on the primary (which never flags), its retry on the
    backup (with a shared store; the primary itself else): it passes."""
    primary = mx_gate(gl_gate, dns_server, kind, False)
    retry_at = up_backup(gl_gate, dns_server, banner, kind) if kind == "redis" else primary
    sender, to = f"s-{token()}@sender.example", f"r-{token()}@relay.example"
    r, first, _ = rcpt_once(primary, sender, to, "127.0.11.5")
    assert_reply(r, 450, "4.2.0")
    assert not flagged(primary, to)
    wait_past_delay(first)
    mark = retry_at.log_mark()
    assert_reply(rcpt_once(retry_at, sender, to, "127.0.11.5")[0], 250)
    e = decision(retry_at, mark, to)
    assert (e["action"], e["parts"]) == ("pass", ""), e


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_backup_first_every_worker(gl_gate, dns_server, banner, kind):
    """A backup with two workers: connections land on either (SO_REUSEPORT),
    and each knows the primary's state, so every first contact is flagged
    (the embedded store's through the supervisor's channel); the probe's
    state and the ETRN stay the first worker's (one line)."""
    backup = up_backup(gl_gate, dns_server, banner, kind, workers=2)
    # the other worker's first round runs at its start too: give it a second
    time.sleep(1.5)
    tos = []
    for n in range(20, 32):
        to = f"r-{token()}@relay.example"
        tos.append(to)
        assert_reply(rcpt(backup, f"127.0.{n}.5", to), 450, "4.2.0")
    for to in tos:
        assert flagged(backup, to), to
    assert len(backup.events("probe", state="up")) == 1, backup.events("probe")
