"""Selective greylisting (README.md, "Selective greylisting"): a score per
connection from DNSBL/DNSWL sites (a private dnsmasq serves a DNSBL zone,
bl.test, and a DNSWL zone, wl.test) and the client's reverse DNS, classed
trusted / normal / suspicious / hostile; and greylist.mode = "shadow".

Clients (each a loopback source address):
  127.0.0.21  on the DNSWL, PTR confirmed                -> -5: trusted
  127.0.0.22  on the DNSBL (weight 8), no PTR (3)        -> 11: hostile
  127.0.0.23  no PTR (3)                                 ->  3: suspicious
  127.0.0.24  PTR confirmed, on neither list             ->  0: normal
  127.0.0.25  PTR confirmed but generic (2)              ->  2: normal
"""

import json
import socket

import pytest

from harness.fakes import FakeDns, SilentDns
from harness.greygate import GL, ctl, ctl_ok, get, merge, metric
from harness.smtp import RawSMTP, assert_reply, dot_stuff, make_message
from harness.policy import policy_request as request, read_answers
from harness.util import free_port, token, wait_until

TRUSTED, HOSTILE, SUSPICIOUS, NORMAL = "127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24"
GENERIC = "127.0.0.25"
SUSPICIOUS_DELAY = 600

ZONE = [
    # DNSWL: 127.0.2.2 in 127.0.[0..255].[1..3]
    "host-record=21.0.0.127.wl.test,127.0.2.2",
    "ptr-record=21.0.0.127.in-addr.arpa,mail.trusted.test",
    "host-record=mail.trusted.test,127.0.0.21",
    # DNSBL: 127.0.0.10 in 127.0.0.[2..11]; and an answer outside the filter
    # for the normal client, which must not count
    "host-record=22.0.0.127.bl.test,127.0.0.10",
    "host-record=24.0.0.127.bl.test,127.0.0.99",
    "ptr-record=24.0.0.127.in-addr.arpa,mail.normal.test",
    "host-record=mail.normal.test,127.0.0.24",
    # an access provider's name for a customer's address
    "ptr-record=25.0.0.127.in-addr.arpa,dsl-127-0-0-25.dyn.isp.test",
    "host-record=dsl-127-0-0-25.dyn.isp.test,127.0.0.25",
]

SCORING = {
    "dnsbl": ["bl.test=127.0.0.[2..11]*8", "wl.test=127.0.[0..255].[1..3]*-5"],
    "weights": {"no_ptr": 3, "unconfirmed_ptr": 1, "generic_ptr": 2, "bad_helo": 1},
    "classes": {"trusted": -3, "suspicious": 3, "hostile": 8},
    "suspicious": {"delay": SUSPICIOUS_DELAY},
    "hostile": {"action": "reject"},
}


def gate(greygate_factory, dns_server, mode="enforce", admin_port=None):
    dns = dns_server(ZONE, local=("example", "test", "in-addr.arpa"))
    over = dict(greylist=dict(GL, mode=mode), scoring=SCORING,
                # generous: a loaded box must not turn an answer into a timeout
                dns={"servers": [dns.address], "timeout_ms": 3000, "tries": 2})
    if admin_port:
        over["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    return greygate_factory(**over)


def rcpt_once(gg, source, rcpt, sender=None, helo=None):
    with RawSMTP(gg.port, source=source) as c:
        c.greeting()
        c.ehlo(*([helo] if helo else []))
        assert_reply(c.cmd(f"MAIL FROM:<{sender or 's-' + token() + '@sender.test'}>"), 250)
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        c.cmd("QUIT")
    return r


def decision(gg, mark, rcpt):
    ev = gg.wait_event("decision", since=mark, rcpt=rcpt)
    assert len(ev) == 1, ev
    return ev[0]


def test_classes(greygate_factory, dns_server):
    admin = free_port(19925)
    gg = gate(greygate_factory, dns_server, admin_port=admin)

    # trusted (DNSWL): not greylisted at all
    rcpt = f"r-{token()}@test.example"
    mark = gg.log_mark()
    assert_reply(rcpt_once(gg, TRUSTED, rcpt), 250, "2.1.5")
    e = decision(gg, mark, rcpt)
    assert (e["action"], e["reason"], e["class"], e["score"]) == \
        ("pass", "trusted", "trusted", "-5"), e
    assert e["parts"] == "dnswl:wl.test:-5", e
    # ... but it may not relay
    assert_reply(rcpt_once(gg, TRUSTED, f"r-{token()}@foreign.example"), 554, "5.7.1")

    # hostile (DNSBL over the threshold): refused for good, never stored
    rcpt = f"r-{token()}@test.example"
    mark = gg.log_mark()
    assert_reply(rcpt_once(gg, HOSTILE, rcpt), 550, "5.7.1", contains="hostile")
    e = decision(gg, mark, rcpt)
    assert (e["action"], e["reason"], e["class"], e["score"]) == \
        ("reject", "hostile", "hostile", "11"), e
    assert e["parts"] == "dnsbl:bl.test:8,no_ptr:3", e
    rej = gg.wait_event("reject", since=mark, rule="hostile")
    assert rej, rej

    # suspicious: greylisted with the longer delay
    rcpt = f"r-{token()}@test.example"
    mark = gg.log_mark()
    assert_reply(rcpt_once(gg, SUSPICIOUS, rcpt), 450, "4.2.0",
                 contains=f"retry in {SUSPICIOUS_DELAY} seconds")
    e = decision(gg, mark, rcpt)
    assert (e["action"], e["class"], e["parts"]) == ("greylist", "suspicious", "no_ptr:3"), e

    # normal: today's delay; a DNSBL answer outside the filter does not count
    rcpt = f"r-{token()}@test.example"
    mark = gg.log_mark()
    assert_reply(rcpt_once(gg, NORMAL, rcpt), 450, "4.2.0", contains="retry in 2 seconds")
    e = decision(gg, mark, rcpt)
    assert (e["action"], e["class"], e["score"]) == ("greylist", "normal", "0"), e

    # a confirmed but generic name counts
    rcpt = f"r-{token()}@test.example"
    mark = gg.log_mark()
    assert_reply(rcpt_once(gg, GENERIC, rcpt), 450, "4.2.0", contains="retry in 2 seconds")
    e = decision(gg, mark, rcpt)
    assert (e["class"], e["score"], e["parts"]) == ("normal", "2", "generic_ptr:2"), e

    status, text = get(admin, "/metrics")
    assert status == 200
    for cls in ("trusted", "hostile", "suspicious", "normal"):
        assert f'greygate_classes_total{{class="{cls}"}} ' in text
        assert not f'greygate_classes_total{{class="{cls}"}} 0\n' in text, text
    for sig in ("dnsbl", "dnswl", "no_ptr", "generic_ptr"):
        assert not f'greygate_signals_total{{signal="{sig}"}} 0\n' in text, text
    assert 'greygate_decisions_total{action="reject",reason="hostile"} 1' in text
    assert gg.alive()


def test_shadow_mode_passes_mail(greygate_factory, dns_server, postfix_backend):
    gg = gate(greygate_factory, dns_server, mode="shadow")
    for source, action in ((HOSTILE, "would-reject"), (NORMAL, "would-greylist"),
                           (SUSPICIOUS, "would-greylist")):
        tok = token()
        rcpt = f"r-{tok}@test.example"
        mark = gg.log_mark()
        with RawSMTP(gg.port, source=source) as c:
            c.greeting()
            c.ehlo()
            assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.test>"), 250)
            assert_reply(c.cmd(f"RCPT TO:<{rcpt}>"), 250, "2.1.5")
            assert_reply(c.cmd("DATA"), 354)
            c.send(dot_stuff(make_message(tok)))
            assert_reply(c.reply(), 250, "2.0.0")
            c.cmd("QUIT")
        postfix_backend.wait_mails(tok)
        e = decision(gg, mark, rcpt)
        assert e["action"] == action, (source, e)
    # the rules that are not greylisting still refuse in shadow mode
    assert_reply(rcpt_once(gg, NORMAL, f"r-{token()}@foreign.example"), 554, "5.7.1")


def test_no_scoring_no_lookups(greygate_factory, dns_server):
    """Without a scoring group nothing is looked up: not the lists, not the
    client's name (XCLIENT and ptr: pool keys off, so nothing else would
    ask)."""
    dns = dns_server(ZONE, local=("example", "test", "in-addr.arpa"))
    gg = greygate_factory(greylist=dict(GL, pool_keys=[]), backend={"xclient": False},
                          dns={"servers": [dns.address], "timeout_ms": 3000, "tries": 2})
    rcpt = f"r-{token()}@test.example"
    mark = gg.log_mark()
    assert_reply(rcpt_once(gg, HOSTILE, rcpt), 450, "4.2.0")
    e = decision(gg, mark, rcpt)
    assert "class" not in e, e
    queries = [l for l in (dns.workdir / "dnsmasq.log").read_text().splitlines() if "query[" in l]
    assert not [q for q in queries if "bl.test" in q or "in-addr.arpa" in q], queries


def test_reload_switches_scoring_and_refuses_bad_sites(greygate_factory, dns_server):
    """SIGHUP turns scoring on (new connections are classed), and a site
    that is not postscreen's syntax is refused with its line, the
    configuration in force staying."""
    dns = dns_server(ZONE, local=("example", "test", "in-addr.arpa"))
    base = dict(greylist=GL, dns={"servers": [dns.address], "timeout_ms": 3000, "tries": 2})
    gg = greygate_factory(**base)
    assert_reply(rcpt_once(gg, HOSTILE, f"r-{token()}@test.example"), 450, "4.2.0")

    mark = gg.log_mark()
    gg.write_config(merge(gg.config, {"scoring": dict(SCORING, dnsbl=["bl.test=127.0.0.[2..300]"])}))
    gg.hup()
    [ev] = gg.wait_event("reload", since=mark, result="failed")
    assert "scoring.dnsbl" in ev["_line"], ev
    assert_reply(rcpt_once(gg, HOSTILE, f"r-{token()}@test.example"), 450, "4.2.0")

    mark = gg.log_mark()
    gg.write_config(merge(gg.config, {"scoring": SCORING}))
    gg.hup()
    gg.wait_event("reload", since=mark, result="ok")
    assert_reply(rcpt_once(gg, HOSTILE, f"r-{token()}@test.example"), 550, "5.7.1")


def test_silent_dnsbl_counts_nothing(greygate_factory, dns_server):
    """A site that does not answer costs the resolver's time-out and adds
    nothing: the client is classed on what did answer."""
    silent = SilentDns()
    try:
        dns = dns_server(ZONE + [f"server=/bl.test/127.0.0.1#{silent.port}"],
                         local=("example", "in-addr.arpa", "wl.test", "good.test",
                                "normal.test", "trusted.test", "sender.test"))
        gg = greygate_factory(greylist=GL, scoring=SCORING,
                              dns={"servers": [dns.address], "timeout_ms": 300, "tries": 1})
        rcpt = f"r-{token()}@test.example"
        mark = gg.log_mark()
        assert_reply(rcpt_once(gg, NORMAL, rcpt), 450, "4.2.0", contains="retry in 2 seconds")
        e = decision(gg, mark, rcpt)
        assert (e["class"], e["score"], e["parts"]) == ("normal", "0", ""), e
        assert any(q[0].endswith("bl.test") for q in silent.queries), silent.queries
        assert gg.alive()
    finally:
        silent.close()


@pytest.fixture(params=["memory", "redis"])
def kind(request):
    return request.param


def test_suspicious_earns_no_awl(gl_gate, dns_server, kind):
    """A suspicious client waits its own delay and, once passed, is still
    greylisted for a new triplet: it earns no auto-whitelist, where a
    normal client does (awl_threshold 1). Both stores."""
    dns = dns_server(ZONE, local=("example", "test", "in-addr.arpa"))
    gg = gl_gate(kind, greylist={"awl_threshold": 1},
                 scoring=dict(SCORING, suspicious={"delay": 3}),
                 dns={"servers": [dns.address], "timeout_ms": 3000, "tries": 2})
    for source, delay, second in ((NORMAL, 2, (250, "awl")), (SUSPICIOUS, 3, (450, "new"))):
        tok = token()
        sender = f"s-{tok}@sender.test"
        first = f"a-{tok}@test.example"
        assert_reply(rcpt_once(gg, source, first, sender), 450, "4.2.0",
                     contains=f"retry in {delay} second")
        wait_until(lambda: rcpt_once(gg, source, first, sender).code == 250, 30,
                   interval=0.5, what=f"{source}: the retry passes")
        rcpt = f"b-{tok}@test.example"
        mark = gg.log_mark()
        r = rcpt_once(gg, source, rcpt, sender)
        assert r.code == second[0], (source, r.text)
        e = decision(gg, mark, rcpt)
        assert e["reason"] == second[1], (source, e)


# --------------------------------------------------------------------------
# greygate-ctl explain: the class and the score's parts, from the daemon
# --------------------------------------------------------------------------

def explain_lines(out):
    """explain's text -> {first word of each line: the rest}."""
    return {l.split(" ", 1)[0]: l.split(" ", 1)[1] for l in out.splitlines() if " " in l}


def test_explain_shows_class_and_parts(gl_gate, dns_server, kind):
    """explain CLIENT SENDER RCPT shows what the decision line would: the
    class, the score and its parts (the daemon looks the client up, both
    stores: with Redis greygate-ctl asks it for the facts), the next
    decision the class makes; --helo adds the session's HELO; --json."""
    dns = dns_server(ZONE, local=("example", "test", "in-addr.arpa"))
    gg = gl_gate(kind, scoring=SCORING,
                 dns={"servers": [dns.address], "timeout_ms": 3000, "tries": 2})
    tok = token()
    sender, rcpt = f"s-{tok}@sender.test", f"r-{tok}@test.example"

    out = ctl_ok(gg, "explain", HOSTILE, sender, rcpt)
    lines = explain_lines(out)
    assert lines["score:"] == "class=hostile score=11 parts=dnsbl:bl.test:8,no_ptr:3", out
    assert lines["next:"] == "action=reject reason=hostile", out
    # the same as the decision line of a real session
    mark = gg.log_mark()
    assert_reply(rcpt_once(gg, HOSTILE, rcpt, sender), 550, "5.7.1")
    e = decision(gg, mark, rcpt)
    assert f"class={e['class']} score={e['score']} parts={e['parts']}" == lines["score:"], e

    out = ctl_ok(gg, "explain", TRUSTED, sender, rcpt)
    lines = explain_lines(out)
    assert lines["score:"] == "class=trusted score=-5 parts=dnswl:wl.test:-5", out
    assert lines["next:"] == "action=pass reason=trusted", out

    # the session's HELO: a name that is not fully qualified
    out = ctl_ok(gg, "--helo", "pc7", "explain", NORMAL, sender, rcpt)
    lines = explain_lines(out)
    assert lines["score:"] == "class=normal score=1 parts=bad_helo:1", out
    assert lines["next:"].startswith("action=greylist reason=new delay_left=2"), out

    e = json.loads(ctl_ok(gg, "--json", "explain", SUSPICIOUS, sender, rcpt))
    assert (e["scoring"], e["class"], e["score"], e["parts"]) == \
        ("on", "suspicious", 3, "no_ptr:3"), e
    # suspicious: the store's dry run with the class's longer delay
    assert (e["next"]["action"], e["next"]["delay_left"]) == ("greylist", SUSPICIOUS_DELAY), e
    assert gg.alive()


def test_explain_with_workers(gl_gate, dns_server, kind):
    """With workers the supervisor serves the control socket (for both
    stores now) and finds the facts itself."""
    dns = dns_server(ZONE, local=("example", "test", "in-addr.arpa"))
    gg = gl_gate(kind, workers=2, scoring=SCORING,
                 dns={"servers": [dns.address], "timeout_ms": 3000, "tries": 2})
    tok = token()
    out = ctl_ok(gg, "explain", HOSTILE, f"s-{tok}@sender.test", f"r-{tok}@test.example")
    assert explain_lines(out)["score:"] == "class=hostile score=11 parts=dnsbl:bl.test:8,no_ptr:3", \
        out
    assert gg.alive()


def test_explain_without_scoring(gl_gate, dns_server):
    """Scoring off: explain says so, and the client is normal, no parts."""
    dns = dns_server(ZONE, local=("example", "test", "in-addr.arpa"))
    gg = gl_gate("memory", dns={"servers": [dns.address], "timeout_ms": 3000, "tries": 2})
    tok = token()
    out = ctl_ok(gg, "explain", HOSTILE, f"s-{tok}@sender.test", f"r-{tok}@test.example")
    assert explain_lines(out)["score:"] == "class=normal scoring=off", out
    e = json.loads(ctl_ok(gg, "--json", "explain", HOSTILE, f"s-{tok}@sender.test",
                          f"r-{tok}@test.example"))
    assert (e["scoring"], e["class"], e["score"], e["parts"]) == ("off", "normal", 0, ""), e


def test_explain_with_redis_and_no_daemon(gl_gate, dns_server):
    """With Redis and greygate stopped, explain still shows the store's
    part, and says the class is unknown and why."""
    dns = dns_server(ZONE, local=("example", "test", "in-addr.arpa"))
    gg = gl_gate("redis", scoring=SCORING,
                 dns={"servers": [dns.address], "timeout_ms": 3000, "tries": 2})
    tok = token()
    sender, rcpt = f"s-{tok}@sender.test", f"r-{tok}@test.example"
    assert_reply(rcpt_once(gg, NORMAL, rcpt, sender), 450, "4.2.0")
    gg.stop()
    r = ctl(gg, "explain", NORMAL, sender, rcpt)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = explain_lines(r.stdout)
    assert "state=pending" in r.stdout, r.stdout
    assert lines["score:"].startswith("class=unknown (cannot reach greygate"), r.stdout
    assert lines["next:"].startswith("action=greylist reason=early"), r.stdout
    e = json.loads(ctl_ok(gg, "--json", "explain", NORMAL, sender, rcpt))
    assert (e["scoring"], e["class"], e["stored"]["state"]) == ("unknown", None, "pending"), e
    assert "cannot reach greygate" in e["scoring_why"], e


# --------------------------------------------------------------------------
# Metrics: signals counted where the class is decided; shadow per key kind
# --------------------------------------------------------------------------

def test_signals_counted_per_decision(greygate_factory, dns_server):
    """A signal of the session (a bad HELO) is counted like the ones of the
    connection, once per decision that classed the client, as
    greygate_classes_total is."""
    admin = free_port(19925)
    gg = gate(greygate_factory, dns_server, admin_port=admin)
    mark = gg.log_mark()
    rcpt = f"r-{token()}@test.example"
    assert_reply(rcpt_once(gg, NORMAL, rcpt, helo="pc7"), 450, "4.2.0")
    assert decision(gg, mark, rcpt)["parts"] == "bad_helo:1"
    status, text = get(admin, "/metrics")
    assert status == 200
    assert metric(text, "greygate_signals_total", signal="bad_helo") == 1, text
    assert metric(text, "greygate_classes_total", **{"class": "normal"}) == 1, text
    # two decisions of one connection: each counts its signals
    rcpt2 = f"r-{token()}@test.example"
    with RawSMTP(gg.port, source=SUSPICIOUS) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{token()}@sender.test>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{rcpt}>"), 450)
        assert_reply(c.cmd(f"RCPT TO:<{rcpt2}>"), 450)
        c.cmd("QUIT")
    status, text = get(admin, "/metrics")
    assert metric(text, "greygate_signals_total", signal="no_ptr") == 2, text
    assert metric(text, "greygate_classes_total", **{"class": "suspicious"}) == 2, text


def test_shadow_counts_would_greylist_per_key(greygate_factory, dns_server):
    """Shadow mode: a greylisting store decision is counted by its key kind
    as would-greylist, not greylist; a hostile client as would-reject."""
    admin = free_port(19925)
    gg = gate(greygate_factory, dns_server, mode="shadow", admin_port=admin)
    # no PTR: the network's key
    assert_reply(rcpt_once(gg, SUSPICIOUS, f"r-{token()}@test.example"), 250)
    assert_reply(rcpt_once(gg, HOSTILE, f"r-{token()}@test.example"), 250)
    status, text = get(admin, "/metrics")
    assert status == 200
    assert metric(text, "greygate_decision_keys_total", key="net",
                  action="would-greylist") == 1, text
    assert metric(text, "greygate_decision_keys_total", key="net", action="greylist") == 0, text
    assert metric(text, "greygate_decisions_total", action="would-reject",
                  reason="hostile") == 1, text
    assert metric(text, "greygate_decisions_total", action="reject", reason="hostile") is None, text
    assert metric(text, "greygate_classes_total", **{"class": "hostile"}) == 1, text


# --------------------------------------------------------------------------
# The policy service classes its client too
# --------------------------------------------------------------------------

@pytest.mark.parametrize("hostile_action", ["reject", "tempfail"])
def test_policy_service_classes(greygate_factory, dns_server, hostile_action):
    """Postfix's policy requests: a DNSBL-listed client_address gets the
    hostile answer (REJECT 5.7.1, or the proxy's 450 4.7.1 with
    hostile.action = tempfail), a DNSWL-listed one passes without
    greylisting, and Postfix's client_name / reverse_client_name give the
    name signals (no DNS of greygate's own for the name)."""
    dns = dns_server(ZONE, local=("example", "test", "in-addr.arpa"))
    pport = free_port(13023)
    gg = greygate_factory(greylist=GL, policy={"listen": f"127.0.0.1:{pport}"},
                          scoring=dict(SCORING, hostile={"action": hostile_action}),
                          dns={"servers": [dns.address], "timeout_ms": 3000, "tries": 2})
    tok = token()
    with socket.create_connection(("127.0.0.1", pport), timeout=30) as c:
        c.sendall(request(client_address=HOSTILE, sender=f"s@{tok}.example",
                          recipient=f"h-{tok}@test.example"))
        [a] = read_answers(c, 1)
        want = ("action=REJECT 5.7.1 client classed hostile (score 11)" if hostile_action == "reject"
                else "action=450 4.7.1 client classed hostile (score 11), try again later")
        assert a == want, a
        d = gg.wait_event("decision", rcpt=f"h-{tok}@test.example")[0]
        # (the name is known at once here, before the listing)
        assert (d["class"], sorted(d["parts"].split(","))) == \
            ("hostile", ["dnsbl:bl.test:8", "no_ptr:3"]), d
        assert gg.events("reject", via="policy", rcpt=f"h-{tok}@test.example", rule="hostile",
                         action="REJECT" if hostile_action == "reject" else "450")

        c.sendall(request(client_address=TRUSTED, client_name="mail.trusted.test",
                          reverse_client_name="mail.trusted.test", sender=f"s@{tok}.example",
                          recipient=f"t-{tok}@test.example"))
        assert read_answers(c, 1) == ["action=DUNNO"]
        d = gg.wait_event("decision", rcpt=f"t-{tok}@test.example")[0]
        assert (d["action"], d["reason"], d["class"], d["parts"]) == \
            ("pass", "trusted", "trusted", "dnswl:wl.test:-5"), d

        # a name Postfix could not confirm: unconfirmed_ptr, not no_ptr
        c.sendall(request(client_address=NORMAL, client_name="unknown",
                          reverse_client_name="mail.normal.test", helo_name="mail.normal.test",
                          sender=f"s@{tok}.example", recipient=f"n-{tok}@test.example"))
        assert read_answers(c, 1)[0].startswith("action=DEFER_IF_PERMIT 4.2.0 Greylisted")
        d = gg.wait_event("decision", rcpt=f"n-{tok}@test.example")[0]
        assert (d["class"], d["parts"]) == ("normal", "unconfirmed_ptr:1"), d
    assert gg.alive()
