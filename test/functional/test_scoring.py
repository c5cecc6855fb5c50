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

import pytest

from harness.fakes import SilentDns
from harness.greygate import GL, get, merge
from harness.smtp import RawSMTP, assert_reply, dot_stuff, make_message
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


def rcpt_once(gg, source, rcpt, sender=None):
    with RawSMTP(gg.port, source=source) as c:
        c.greeting()
        c.ehlo()
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
