"""The spf: pool key (README.md, "Pool-aware keys"): SPF for the MAIL FROM
domain (the HELO name for <>) is checked at MAIL FROM in the background; a
pass through a narrow mechanism keys the triplet by the domain, so a retry
from another of the sender's networks passes once the delay is over. A
pass through +all, a failure or an SPF DNS timeout gives no spf key (the
network then). The policy service does the same for Postfix's requests.

The clients are loopback addresses in different /16s (127.1.0.5,
127.2.0.6); dnsmasq serves the TXT records, a silent server the timeout.
"""

import socket
import subprocess
import time

import pytest

from harness.fakes import FakeDns
from harness.greygate import DELAY, get, metric, rcpt_once, wait_past_delay
from harness.policy import policy_request, read_answers
from harness.smtp import RawSMTP, assert_reply
from harness.util import GREYGATE_CTL, free_port, token

FIRST, SECOND, OUTSIDER = "127.1.0.5", "127.2.0.6", "127.3.0.7"


def zone(tok):
    """The sender domain authorises one address and a /24 in another /16:
    both narrow. open.<tok> authorises everybody (+all); a HELO name has
    a record of its own for the null sender."""
    return [
        f'txt-record=news.{tok}.example,"v=spf1 ip4:{FIRST} ip4:127.2.0.0/24 -all"',
        f'txt-record=open.{tok}.example,"v=spf1 +all"',
        f'txt-record=mta.{tok}.example,"v=spf1 ip4:127.1.0.0/24 ip4:127.2.0.0/24 -all"',
        f'txt-record=soft.{tok}.example,"v=spf1 ip4:{FIRST} ~all"',
    ]


@pytest.fixture
def spf_gate(gl_gate, dns_server):
    def make(tok, kind="memory", **overrides):
        dns = dns_server(zone(tok))
        port = free_port(19925)
        gg = gl_gate(kind, dns={"servers": [dns.address], "timeout_ms": 2000, "tries": 2},
                     admin={"listen": f"127.0.0.1:{port}"}, **overrides)
        gg.admin_port = port
        return gg
    return make




def decision(gg, rcpt, since):
    return gg.wait_event("decision", since=since, timeout=20, rcpt=rcpt)[-1]




def ctl_list(gg, *args):
    r = subprocess.run([GREYGATE_CTL, "-c", str(gg.conf_path), "list", *args],
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, f"greygate-ctl list {args} -> {r.returncode}\n{r.stdout}{r.stderr}"
    return [dict(p.split("=", 1) for p in line.split() if "=" in p)
            for line in r.stdout.splitlines() if line.startswith("key=")]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_retry_from_another_network_of_the_spf_record_passes(spf_gate, kind):
    tok = token()
    gg = spf_gate(tok, kind)
    domain = f"news.{tok}.example"
    sender, rcpt = f"list@{domain}", f"r-{tok}@test.example"

    mark = gg.log_mark()
    r, at, _ = rcpt_once(gg, sender, rcpt, FIRST)
    assert_reply(r, 450, "4.2.0")             # never a bypass: the first is delayed
    ev = decision(gg, rcpt, mark)
    assert (ev["action"], ev["reason"], ev.get("key")) == \
        ("greylist", "new", f"spf:{domain}"), ev["_line"]
    spf = gg.events("spf", since=mark, domain=domain)
    assert [(e["result"], e.get("narrow")) for e in spf] == [("pass", "yes")], spf
    assert [(e.get("pool"), e["state"]) for e in ctl_list(gg, f"rcpt={rcpt}")] == \
        [(f"spf:{domain}", "pending")]

    wait_past_delay(at)
    mark = gg.log_mark()
    r, _, _ = rcpt_once(gg, sender, rcpt, SECOND)       # another /16, same SPF record
    assert_reply(r, 250)
    ev = decision(gg, rcpt, mark)
    assert (ev["action"], ev["reason"], ev.get("key"), ev.get("net")) == \
        ("pass", "triplet", f"spf:{domain}", "127.2.0.0/24"), ev["_line"]

    # a client the record does not authorise: fail, no spf key, its network
    mark = gg.log_mark()
    r, _, _ = rcpt_once(gg, sender, rcpt, OUTSIDER)
    assert_reply(r, 450, "4.2.0")
    ev = decision(gg, rcpt, mark)
    assert (ev["reason"], ev.get("key")) == ("new", "net:127.3.0.0/24"), ev["_line"]

    status, text = get(gg.admin_port, "/metrics")
    assert status == 200
    assert metric(text, "greygate_decision_keys_total", key="spf", action="greylist") == 1, text
    assert metric(text, "greygate_decision_keys_total", key="spf", action="pass") == 1, text
    assert metric(text, "greygate_spf_results_total", result="pass") == 2, text
    assert metric(text, "greygate_spf_results_total", result="fail") == 1, text
    assert metric(text, "greygate_spf_results_total", result="temperror") == 0, text


def test_plus_all_and_the_null_sender(spf_gate):
    """+all vouches for nobody: a pass, but no spf key. For <> the HELO
    name's record is checked."""
    tok = token()
    gg = spf_gate(tok)
    rcpt = f"r-{tok}@test.example"
    mark = gg.log_mark()
    r, _, _ = rcpt_once(gg, f"s@open.{tok}.example", rcpt, FIRST)
    assert_reply(r, 450, "4.2.0")
    ev = decision(gg, rcpt, mark)
    assert ev.get("key") == "net:127.1.0.0/24", ev["_line"]
    spf = gg.wait_event("spf", since=mark, domain=f"open.{tok}.example")
    assert [(e["result"], e.get("narrow")) for e in spf] == [("pass", "no")], spf

    helo = f"mta.{tok}.example"
    bounce_rcpt = f"b-{tok}@test.example"
    mark = gg.log_mark()
    r, _, _ = rcpt_once(gg, "", bounce_rcpt, SECOND, helo=helo)
    assert_reply(r, 450, "4.2.0")
    ev = decision(gg, bounce_rcpt, mark)
    assert ev.get("key") == f"spf:{helo}", ev["_line"]


class SilentTxt(FakeDns):
    """Never answers TXT queries; NXDOMAIN for everything else."""

    def answer(self, name, qtype):
        return None if qtype == 16 else (3, [], False)


def test_spf_timeout_delays_no_mail_reply_and_falls_back(gl_gate):
    dns = SilentTxt()
    try:
        # one try of 3 s: the MAIL reply, which does not wait for it, is
        # long out before the SPF check ends
        gg = gl_gate("memory", dns={"servers": [dns.address], "timeout_ms": 3000, "tries": 1},
                     greylist={"pool_keys": ["spf"]})
        tok = token()
        domain = f"slow.{tok}.example"
        rcpt = f"r-{tok}@test.example"
        mark = gg.log_mark()
        with RawSMTP(gg.port, source=FIRST, timeout=30) as c:
            c.greeting()
            c.ehlo()
            assert_reply(c.cmd(f"MAIL FROM:<s@{domain}>"), 250)
            assert gg.events("spf", since=mark) == [], "the MAIL reply waited for SPF"
            r = c.cmd(f"RCPT TO:<{rcpt}>", timeout=30)
            assert_reply(r, 450, "4.2.0")
            assert_reply(c.cmd("QUIT"), 221)
        ev = decision(gg, rcpt, mark)
        assert ev.get("key") == "net:127.1.0.0/24", ev["_line"]
        spf = gg.wait_event("spf", since=mark, domain=domain)
        assert spf[0]["result"] == "temperror", spf
        assert any(q == (domain, 16) for q in dns.queries), dns.queries

        # RSET cancels the check (a finished check logs event=spf; the
        # cancelled one, asked first, would have timed out first)
        gone, kept = f"gone.{tok}.example", f"kept.{tok}.example"
        mark = gg.log_mark()
        with RawSMTP(gg.port, source=FIRST, timeout=30) as c:
            c.greeting()
            c.ehlo()
            assert_reply(c.cmd(f"MAIL FROM:<s@{gone}>"), 250)
            assert_reply(c.cmd("RSET"), 250)
            assert_reply(c.cmd(f"MAIL FROM:<s@{kept}>"), 250)
            assert_reply(c.cmd(f"RCPT TO:<{rcpt}>", timeout=30), 450, "4.2.0")
            assert_reply(c.cmd("QUIT"), 221)
        gg.wait_event("spf", since=mark, domain=kept)
        assert any(q == (gone, 16) for q in dns.queries), dns.queries
        assert gg.events("spf", since=mark, domain=gone) == []
    finally:
        dns.close()


def test_pipelined_recipients_all_wait_for_the_one_check(gl_gate):
    """MAIL and three RCPTs in one write: the recipients' checks start
    together (the look-ahead) and all wait for the transaction's one SPF
    check; its timeout answers them all (the network key)."""
    dns = SilentTxt()
    try:
        gg = gl_gate("memory", dns={"servers": [dns.address], "timeout_ms": 1000, "tries": 1},
                     greylist={"pool_keys": ["spf"]})
        tok = token()
        domain = f"slow.{tok}.example"
        rcpts = [f"r{i}-{tok}@test.example" for i in range(3)]
        mark = gg.log_mark()
        with RawSMTP(gg.port, source=FIRST, timeout=30) as c:
            c.greeting()
            c.ehlo()
            c.send("".join([f"MAIL FROM:<s@{domain}>\r\n"] +
                           [f"RCPT TO:<{r}>\r\n" for r in rcpts]).encode())
            mail, *replies = c.replies(4, timeout=30)
            assert_reply(mail, 250)
            for r in replies:
                assert_reply(r, 450, "4.2.0")
            assert_reply(c.cmd("QUIT"), 221)
        for r in rcpts:
            assert decision(gg, r, mark).get("key") == "net:127.1.0.0/24"
        spf = gg.events("spf", since=mark, domain=domain)
        assert [e["result"] for e in spf] == ["temperror"], spf
        assert dns.queries.count((domain, 16)) == 1, dns.queries
    finally:
        dns.close()


def policy_ask(port, **attrs):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        c.sendall(policy_request(**attrs))
        return read_answers(c, 1)[0]


def test_policy_service_uses_the_spf_key(spf_gate):
    tok = token()
    pport = free_port(13023)
    gg = spf_gate(tok, policy={"listen": f"127.0.0.1:{pport}"},
                  whitelist={"clients": [f"{OUTSIDER}/32"]})
    domain = f"news.{tok}.example"
    sender, rcpt = f"list@{domain}", f"r-{tok}@test.example"
    mark = gg.log_mark()
    a = policy_ask(pport, client_address=FIRST, sender=sender, recipient=rcpt)
    assert a.startswith("action=DEFER_IF_PERMIT 4.2.0"), a
    at = time.time()
    ev = decision(gg, rcpt, mark)
    assert (ev["reason"], ev.get("key")) == ("new", f"spf:{domain}"), ev["_line"]

    wait_past_delay(at)
    mark = gg.log_mark()
    a = policy_ask(pport, client_address=SECOND, sender=sender, recipient=rcpt)
    assert a.startswith("action=PREPEND X-Greylist: delayed"), a
    ev = decision(gg, rcpt, mark)
    assert (ev["action"], ev["reason"], ev.get("key")) == \
        ("pass", "triplet", f"spf:{domain}"), ev["_line"]

    # a whitelisted client costs no SPF lookups
    mark = gg.log_mark()
    other = f"w-{tok}@test.example"
    assert policy_ask(pport, client_address=OUTSIDER, sender=sender, recipient=other) == \
        "action=DUNNO"
    assert decision(gg, other, mark)["reason"] == "whitelist-client"
    assert gg.events("spf", since=mark) == []


def test_spf_max_prefix_at_start_and_on_reload(spf_gate):
    """greylist.spf_max_prefix4 says how wide a mechanism may be and still
    vouch for a sender: at start, and again after a reload (the outcomes
    cached under the old limit are forgotten)."""
    tok = token()
    gg = spf_gate(tok, greylist={"spf_max_prefix4": 28})
    sender = f"s@mta.{tok}.example"            # ip4:127.1.0.0/24
    mark = gg.log_mark()
    r, _, _ = rcpt_once(gg, sender, f"a-{tok}@test.example", FIRST)
    assert_reply(r, 450, "4.2.0")
    ev = decision(gg, f"a-{tok}@test.example", mark)
    assert ev.get("key") == "net:127.1.0.0/24", ev["_line"]
    assert gg.events("spf", since=mark)[0].get("narrow") == "no"

    cfg = dict(gg.config)
    cfg["greylist"] = {**cfg["greylist"], "spf_max_prefix4": 24}
    gg.write_config(cfg)
    mark = gg.log_mark()
    gg.hup()
    gg.wait_event("reload", since=mark, result="ok")
    r, _, _ = rcpt_once(gg, sender, f"b-{tok}@test.example", FIRST)
    assert_reply(r, 450, "4.2.0")
    ev = decision(gg, f"b-{tok}@test.example", mark)
    assert ev.get("key") == f"spf:mta.{tok}.example", ev["_line"]


def test_spf_outcome_cached_for_the_next_message(spf_gate):
    """A sender's second message from the same client is checked from the
    cache (cached=yes, no lookups) and keyed as the first."""
    tok = token()
    gg = spf_gate(tok)
    sender = f"s@mta.{tok}.example"            # ip4:127.1.0.0/24
    seen = []
    for i in range(2):
        rcpt = f"c{i}-{tok}@test.example"
        mark = gg.log_mark()
        r, _, _ = rcpt_once(gg, sender, rcpt, FIRST)
        assert_reply(r, 450, "4.2.0")
        ev = gg.events("spf", since=mark)
        assert len(ev) == 1, ev
        seen.append((ev[0].get("result"), ev[0].get("cached"), ev[0].get("lookups") == "0",
                     decision(gg, rcpt, mark).get("key")))
    key = f"spf:mta.{tok}.example"
    assert seen == [("pass", "no", False, key), ("pass", "yes", True, key)], seen


def test_spf_fail_and_softfail_are_score_signals(spf_gate):
    """With scoring on, the transaction's SPF fail (scoring.weights.spf_fail)
    or softfail (spf_softfail) adds to the client's score; a pass adds
    nothing. (Its PTR lookup is not answered: no signal of its own.)"""
    tok = token()
    gg = spf_gate(tok, scoring={"weights": {"spf_fail": 3, "spf_softfail": 1}})
    cases = [(f"s@news.{tok}.example", "3", "spf_fail:3", "suspicious"),
             (f"s@soft.{tok}.example", "1", "spf_softfail:1", "normal"),
             (f"s@open.{tok}.example", "0", "", "normal")]
    for i, (sender, score, parts, klass) in enumerate(cases):
        rcpt = f"r{i}-{tok}@test.example"
        mark = gg.log_mark()
        r, _, _ = rcpt_once(gg, sender, rcpt, OUTSIDER)
        assert_reply(r, 450, "4.2.0")
        ev = decision(gg, rcpt, mark)
        assert (ev.get("score"), ev.get("parts", ""), ev.get("class")) == (score, parts, klass), \
            ev["_line"]
