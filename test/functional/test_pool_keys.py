"""Pool-aware greylisting keys (README.md, "Pool-aware keys"): a client
whose forward-confirmed name is not generic is keyed by the registrable
domain of that name (ptr:bigsender.test), so a retry from another address of
the same organisation, in another network, passes once the delay is over;
a generic name (the address in it, a dynamic-pool word) falls back to the
client's network, as before. Both stores.

The clients are loopback addresses in different /24s (127.0.1.5,
127.0.2.6, ...); dnsmasq serves their PTR and A records.
"""

import json
import time

import pytest

from harness.greygate import DELAY, ctl_ok, get, metric, rcpt_once, wait_past_delay
from harness.smtp import assert_reply
from harness.util import free_port, token

ZONE = [
    # one organisation's outbound pool, in two networks
    "ptr-record=5.1.0.127.in-addr.arpa,out1.mail.bigsender.test",
    "host-record=out1.mail.bigsender.test,127.0.1.5",
    "ptr-record=6.2.0.127.in-addr.arpa,out2.mail.bigsender.test",
    "host-record=out2.mail.bigsender.test,127.0.2.6",
    "ptr-record=9.5.0.127.in-addr.arpa,out3.mail.bigsender.test",
    "host-record=out3.mail.bigsender.test,127.0.5.9",
    # another organisation, in one of those networks and one of its own
    "ptr-record=7.2.0.127.in-addr.arpa,mx.otherorg.test",
    "host-record=mx.otherorg.test,127.0.2.7",
    "ptr-record=7.6.0.127.in-addr.arpa,mx2.otherorg.test",
    "host-record=mx2.otherorg.test,127.0.6.7",
    # a provider's customers: generic names, confirmed all the same
    "ptr-record=7.3.0.127.in-addr.arpa,127-0-3-7.isp.test",
    "host-record=127-0-3-7.isp.test,127.0.3.7",
    "ptr-record=8.4.0.127.in-addr.arpa,dyn8.isp.test",
    "host-record=dyn8.isp.test,127.0.4.8",
]


@pytest.fixture(params=["memory", "redis"])
def kind(request):
    return request.param


@pytest.fixture
def pool_gate(gl_gate, dns_server):
    dns = dns_server(ZONE, local=("example", "test", "in-addr.arpa"))

    def make(kind, **overrides):
        port = free_port(19925)
        gg = gl_gate(kind, dns={"servers": [dns.address], "timeout_ms": 2000, "tries": 2},
                     admin={"listen": f"127.0.0.1:{port}"}, **overrides)
        gg.admin_port = port
        return gg
    return make


def kv(line):
    return dict(p.split("=", 1) for p in line.split() if "=" in p)




def decision(gg, rcpt, since):
    return gg.wait_event("decision", since=since, timeout=10, rcpt=rcpt)[-1]




def test_retry_from_another_network_of_the_pool_passes(pool_gate, kind):
    gg = pool_gate(kind)
    tok = token()
    sender, rcpt = f"news@{tok}.sender.example", f"r-{tok}@test.example"

    mark = gg.log_mark()
    r, at, _ = rcpt_once(gg, sender, rcpt, "127.0.1.5")
    assert_reply(r, 450, "4.2.0")          # a pool key never skips the first delay
    ev = decision(gg, rcpt, mark)
    assert (ev["action"], ev["reason"], ev.get("key"), ev.get("net")) == \
        ("greylist", "new", "ptr:bigsender.test", "127.0.1.0/24"), ev["_line"]

    # what is stored keeps its key text
    entries = [kv(l) for l in ctl_ok(gg, "list", f"rcpt={rcpt}").splitlines()
               if l.startswith("key=")]
    assert [(e.get("pool"), e.get("net"), e["state"]) for e in entries] == \
        [("ptr:bigsender.test", None, "pending")], entries

    wait_past_delay(at)
    mark = gg.log_mark()
    r, _, _ = rcpt_once(gg, sender, rcpt, "127.0.2.6")     # another /24, same organisation
    assert_reply(r, 250)
    ev = decision(gg, rcpt, mark)
    assert (ev["action"], ev["reason"], ev.get("key"), ev.get("net")) == \
        ("pass", "triplet", "ptr:bigsender.test", "127.0.2.0/24"), ev["_line"]

    # explain looks the client's name up as a session would (through
    # dns.servers), or takes it as given, and finds the same entry
    for name in ([], ["out2.mail.bigsender.test"]):
        out = ctl_ok(gg, "explain", "127.0.2.6", sender, rcpt, *name)
        head = kv(out.splitlines()[0])
        assert (head.get("pool"), head.get("kind")) == ("ptr:bigsender.test", "ptr"), out
        assert "state=passed" in out and "reason=triplet" in out, out
    # a client without a name: the network, which has nothing stored
    out = ctl_ok(gg, "explain", "127.0.2.99", sender, rcpt)
    assert kv(out.splitlines()[0]).get("kind") == "net", out
    assert "stored: nothing" in out, out

    # --json: "pool" holds the pool key; an entry stored under one has only
    # its key text, so its "net" is null; explain knows the client's network
    [row] = [json.loads(l) for l in ctl_ok(gg, "--json", "list", f"rcpt={rcpt}").splitlines()]
    assert (row["pool"], row["net"], row["state"]) == ("ptr:bigsender.test", None, "passed"), row
    e = json.loads(ctl_ok(gg, "--json", "explain", "127.0.2.6", sender, rcpt))
    assert (e["pool"], e["net"], e["key"], e["stored"]["pool"], e["next"]["reason"]) == \
        ("ptr:bigsender.test", "127.0.2.0/24", row["key"], "ptr:bigsender.test", "triplet"), e
    e = json.loads(ctl_ok(gg, "--json", "explain", "127.0.2.99", sender, rcpt))
    assert (e["pool"], e["net"], e["stored"]) == (None, "127.0.2.0/24", None), e

    status, text = get(gg.admin_port, "/metrics")
    assert status == 200
    assert metric(text, "greygate_decision_keys_total", key="ptr", action="greylist") == 1, text
    assert metric(text, "greygate_decision_keys_total", key="ptr", action="pass") == 1, text
    assert metric(text, "greygate_decision_keys_total", key="net", action="pass") == 0, text


def test_generic_names_keep_the_network_key(pool_gate, kind):
    gg = pool_gate(kind)
    tok = token()
    sender, rcpt = f"s@{tok}.sender.example", f"r-{tok}@test.example"

    mark = gg.log_mark()
    r, at, _ = rcpt_once(gg, sender, rcpt, "127.0.3.7")     # 127-0-3-7.isp.test
    assert_reply(r, 450, "4.2.0")
    ev = decision(gg, rcpt, mark)
    assert (ev["reason"], ev.get("key")) == ("new", "net:127.0.3.0/24"), ev["_line"]

    wait_past_delay(at)
    mark = gg.log_mark()
    r, _, _ = rcpt_once(gg, sender, rcpt, "127.0.4.8")      # dyn8.isp.test: a pool word
    assert_reply(r, 450, "4.2.0")                        # another network: a new triplet
    ev = decision(gg, rcpt, mark)
    assert (ev["reason"], ev.get("key")) == ("new", "net:127.0.4.0/24"), ev["_line"]


def test_awl_by_pool_and_caps_by_network(pool_gate, kind):
    """The auto-whitelist counts by the pool key: once the pool passed, a
    new triplet of it passes from a third network; the networks it passed
    from earn nothing for their other clients. max_new_per_client still
    counts new triplets by network."""
    gg = pool_gate(kind, greylist={"awl_threshold": 1, "max_new_per_client": 2})
    tok = token()
    sender, rcpt = f"a@{tok}.sender.example", f"r-{tok}@test.example"
    r, at, _ = rcpt_once(gg, sender, rcpt, "127.0.1.5")
    assert_reply(r, 450, "4.2.0")
    wait_past_delay(at)
    r, _, _ = rcpt_once(gg, sender, rcpt, "127.0.2.6")
    assert_reply(r, 250)

    other = f"r2-{tok}@test.example"
    mark = gg.log_mark()
    r, _, _ = rcpt_once(gg, f"b@{tok}.sender.example", other, "127.0.5.9")
    assert_reply(r, 250)
    ev = decision(gg, other, mark)
    assert (ev["reason"], ev.get("key")) == ("awl", "ptr:bigsender.test"), ev["_line"]

    # a client without a name in a network the pool passed from: new
    mark = gg.log_mark()
    r, _, _ = rcpt_once(gg, f"c@{tok}.sender.example", other, "127.0.2.99")
    assert_reply(r, 450, "4.2.0")
    ev = decision(gg, other, mark)
    assert (ev["reason"], ev.get("key")) == ("new", "net:127.0.2.0/24"), ev["_line"]

    # the cap: 127.0.2.0/24 made one new triplet (just above); one more
    # may be stored, then none, pool key or not
    def new_from(source, n):
        mark = gg.log_mark()
        rc = f"r3-{n}-{tok}@test.example"
        r, _, _ = rcpt_once(gg, f"d{n}@{tok}.other.example", rc, source)
        assert_reply(r, 450, "4.2.0")
        ev = decision(gg, rc, mark)
        return ev.get("key"), ev.get("stored")
    assert new_from("127.0.2.7", 1) == ("ptr:otherorg.test", None)
    assert new_from("127.0.2.99", 2) == ("net:127.0.2.0/24", "no-capped")
    assert new_from("127.0.2.7", 3) == ("ptr:otherorg.test", "no-capped")
    # the same pool from another network counts there
    assert new_from("127.0.6.7", 4) == ("ptr:otherorg.test", None)


def test_pool_keys_off(pool_gate):
    """greylist.pool_keys = [ ]: the network key only, whatever the name."""
    gg = pool_gate("memory", greylist={"pool_keys": []})
    tok = token()
    sender, rcpt = f"s@{tok}.sender.example", f"r-{tok}@test.example"
    mark = gg.log_mark()
    r, _, _ = rcpt_once(gg, sender, rcpt, "127.0.1.5")
    assert_reply(r, 450, "4.2.0")
    assert decision(gg, rcpt, mark).get("key") == "net:127.0.1.0/24"
