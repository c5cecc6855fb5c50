"""The pregreet signal (README.md, "Selective greylisting"; greet_wait,
like Postfix's postscreen_greet_wait): with scoring on, the 220 banner
waits for the client's score, at most greet_wait seconds, and all of them
for a client that is suspicious already; whatever a client sends before
the banner earns scoring.weights.pregreet and is then served as usual.

Clients (loopback source addresses; a private dnsmasq serves the zones):
  127.0.0.31  on bl.test (4), PTR confirmed   -> 4: suspicious (+4 pregreet: hostile)
  127.0.0.32  on no list, PTR confirmed       -> 0: normal
"""

import time

from harness.fakes import SilentDns
from harness.greygate import GL, get, merge, metric
from harness.smtp import RawSMTP, assert_reply
from harness.util import free_port, token

LISTED, CLEAN = "127.0.0.31", "127.0.0.32"
PROXY = "127.0.0.9"
GREET_WAIT = 2
SUSPICIOUS_DELAY = 600

ZONE = [
    "host-record=31.0.0.127.bl.test,127.0.0.4",
    "ptr-record=31.0.0.127.in-addr.arpa,mail.listed.test",
    "host-record=mail.listed.test,127.0.0.31",
    "ptr-record=32.0.0.127.in-addr.arpa,mail.clean.test",
    "host-record=mail.clean.test,127.0.0.32",
]
LOCAL = ("example", "in-addr.arpa", "bl.test", "listed.test", "clean.test", "sender.test")

SCORING = {
    "dnsbl": ["bl.test=127.0.0.[2..11]*4"],
    "weights": {"pregreet": 4},
    "classes": {"trusted": -3, "suspicious": 3, "hostile": 8},
    "suspicious": {"delay": SUSPICIOUS_DELAY},
    "hostile": {"action": "reject"},
}


def gate(greygate_factory, dns_server, greet_wait=GREET_WAIT, zone=(), timeout_ms=3000,
         **over):
    dns = dns_server(ZONE + list(zone), local=LOCAL)
    return greygate_factory(**merge(dict(
        greylist=GL, scoring=SCORING, greet_wait=greet_wait,
        # generous: a loaded box must not turn an answer into a timeout
        dns={"servers": [dns.address], "timeout_ms": timeout_ms, "tries": 1}), over))


def mail_rcpt(c, rcpt):
    """EHLO's reply is read already: MAIL, RCPT, QUIT -> the RCPT's reply."""
    assert_reply(c.cmd(f"MAIL FROM:<s-{token()}@sender.test>"), 250)
    r = c.cmd(f"RCPT TO:<{rcpt}>")
    assert_reply(c.cmd("QUIT"), 221)
    return r


def talks_first(gg, source, rcpt, sock=None, first=b""):
    """A client that writes its EHLO at once, before any banner, and then
    goes on as if it had been greeted -> (the RCPT's reply, the seconds
    from connect to the banner)."""
    with sock or RawSMTP(gg.port, source=source, timeout=30) as c:
        t0 = time.monotonic()
        c.send(first + b"EHLO bot.example\r\n")
        c.greeting()
        waited = time.monotonic() - t0
        assert_reply(c.reply(), 250)
        return mail_rcpt(c, rcpt), waited


def waits_for_banner(gg, source, rcpt, banner_timeout=30):
    with RawSMTP(gg.port, source=source, timeout=30) as c:
        assert_reply(c.reply(timeout=banner_timeout), 220)
        c.ehlo("mail.example")
        return mail_rcpt(c, rcpt)


def decision(gg, mark, rcpt):
    [e] = gg.wait_event("decision", since=mark, rcpt=rcpt)
    return e


def test_suspicious_client_that_talks_first_turns_hostile(greygate_factory, dns_server):
    """A client suspicious by its DNSBL listing writes EHLO before the
    banner: the banner comes only once greet_wait is over, its EHLO is
    answered after it, and the pregreet points make the RCPT hostile."""
    admin = free_port(19925)
    gg = gate(greygate_factory, dns_server, admin={"listen": f"127.0.0.1:{admin}"})
    rcpt = f"r-{token()}@test.example"
    mark = gg.log_mark()
    r, waited = talks_first(gg, LISTED, rcpt)
    assert_reply(r, 550, "5.7.1", contains="hostile")
    # a lower bound only: held for greet_wait, counted from after connect
    assert waited >= GREET_WAIT - 0.25, waited
    e = decision(gg, mark, rcpt)
    # in the order they were found: the EHLO may come before the DNSBL's answer
    assert (e["action"], e["class"], e["score"]) == ("reject", "hostile", "8"), e
    assert sorted(e["parts"].split(",")) == ["dnsbl:bl.test:4", "pregreet:4"], e
    [p] = gg.events("pregreet", since=mark, client=LISTED)
    assert p["line"] == "EHLO bot.example" and int(p["bytes"]) >= len("EHLO bot.example\r\n"), p
    status, text = get(admin, "/metrics")
    assert status == 200
    assert metric(text, "greygate_signals_total", signal="pregreet") == 1, text


def test_clean_client_is_not_held_for_greet_wait(greygate_factory, dns_server):
    """A clean client that waits for the banner gets it once its lookups
    are in, not greet_wait (30 s here) later, and its score has no
    pregreet part."""
    gg = gate(greygate_factory, dns_server, greet_wait=30)
    rcpt = f"r-{token()}@test.example"
    mark = gg.log_mark()
    assert_reply(waits_for_banner(gg, CLEAN, rcpt, banner_timeout=10), 450, "4.2.0",
                 contains=f"retry in {GL['delay']} seconds")
    e = decision(gg, mark, rcpt)
    assert (e["class"], e["score"], e["parts"]) == ("normal", "0", ""), e
    assert not gg.events("pregreet", since=mark), gg.events("pregreet", since=mark)


def test_clean_client_that_talks_first_counts(greygate_factory, dns_server):
    """Any byte before the banner counts, whatever the client's score: a
    clean client whose lookups are slow (a DNSBL that never answers, 1.5 s
    of time-out) and which writes its EHLO at once earns the pregreet
    points (suspicious) and is served as usual after the banner."""
    silent = SilentDns()
    try:
        gg = gate(greygate_factory, dns_server, timeout_ms=1500,
                  zone=[f"server=/slow.test/127.0.0.1#{silent.port}"],
                  scoring=dict(SCORING, dnsbl=SCORING["dnsbl"] + ["slow.test*4"]))
        rcpt = f"r-{token()}@test.example"
        mark = gg.log_mark()
        r, _ = talks_first(gg, CLEAN, rcpt)
        assert_reply(r, 450, "4.2.0", contains=f"retry in {SUSPICIOUS_DELAY} seconds")
        e = decision(gg, mark, rcpt)
        assert (e["class"], e["parts"]) == ("suspicious", "pregreet:4"), e
        assert gg.events("pregreet", since=mark, client=CLEAN)
    finally:
        silent.close()


def test_greet_wait_0_and_reload(greygate_factory, dns_server):
    """greet_wait = 0 (the default) greets at once, as before: an early
    EHLO is no signal. SIGHUP switches the test on for new connections."""
    gg = gate(greygate_factory, dns_server, greet_wait=0)
    rcpt = f"r-{token()}@test.example"
    mark = gg.log_mark()
    r, _ = talks_first(gg, LISTED, rcpt)
    assert_reply(r, 450, "4.2.0", contains=f"retry in {SUSPICIOUS_DELAY} seconds")
    e = decision(gg, mark, rcpt)
    assert (e["class"], e["parts"]) == ("suspicious", "dnsbl:bl.test:4"), e
    assert not gg.events("pregreet", since=mark)

    mark = gg.log_mark()
    gg.write_config(merge(gg.config, {"greet_wait": GREET_WAIT}))
    gg.hup()
    gg.wait_event("reload", since=mark, result="ok")
    rcpt = f"r-{token()}@test.example"
    assert_reply(talks_first(gg, LISTED, rcpt)[0], 550, "5.7.1")
    assert gg.wait_event("pregreet", since=mark, client=LISTED)


def test_not_held_without_scoring_or_for_mynetworks(greygate_factory, dns_server):
    """greet_wait does nothing without a scoring group, and never holds a
    client of mynetworks (the RCPT rules trust it before its class)."""
    dns = dns_server(ZONE, local=LOCAL)
    gg = greygate_factory(greylist=GL, greet_wait=30,
                          dns={"servers": [dns.address], "timeout_ms": 3000, "tries": 1})
    with RawSMTP(gg.port, source=LISTED, timeout=10) as c:
        c.greeting()
    gg = gate(greygate_factory, dns_server, greet_wait=30, mynetworks=[f"{LISTED}/32"])
    mark = gg.log_mark()
    with RawSMTP(gg.port, source=LISTED, timeout=10) as c:
        c.send(b"EHLO bot.example\r\n")
        c.greeting()
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)
    assert not gg.events("pregreet", since=mark)


def test_proxy_header_is_no_pregreet(greygate_factory, dns_server):
    """Behind a load balancer the PROXY header comes before the banner by
    design: it is no pregreet, and the client scored is the one it names.
    The client's own early bytes, behind the header, are."""
    gg = gate(greygate_factory, dns_server, proxy_protocol_networks=[f"{PROXY}/32"])
    hdr = f"PROXY TCP4 {LISTED} 192.0.2.1 40000 25\r\n".encode()

    rcpt = f"r-{token()}@test.example"
    mark = gg.log_mark()
    with RawSMTP(gg.port, source=PROXY, timeout=30) as c:
        c.send(hdr)
        c.greeting()
        c.ehlo("mail.example")
        assert_reply(mail_rcpt(c, rcpt), 450, "4.2.0",
                     contains=f"retry in {SUSPICIOUS_DELAY} seconds")
    e = decision(gg, mark, rcpt)
    assert (e["client"], e["class"], e["parts"]) == (LISTED, "suspicious", "dnsbl:bl.test:4"), e
    assert not gg.events("pregreet", since=mark)

    rcpt = f"r-{token()}@test.example"
    mark = gg.log_mark()
    r, _ = talks_first(gg, None, rcpt, sock=RawSMTP(gg.port, source=PROXY, timeout=30),
                       first=hdr)
    assert_reply(r, 550, "5.7.1")
    assert gg.events("pregreet", since=mark, client=LISTED)


def test_client_leaving_while_held(greygate_factory, dns_server):
    """A client that writes and leaves while its banner is held ends its
    session at once (the hold's timer and wait let go; ASan builds check
    the memory); the next client is served."""
    gg = gate(greygate_factory, dns_server, greet_wait=30)
    mark = gg.log_mark()
    with RawSMTP(gg.port, source=LISTED, timeout=10) as c:
        c.send(b"EHLO bot.example\r\n")
        gg.wait_event("pregreet", since=mark, client=LISTED)
    gg.wait_event("disconnect", since=mark, client=LISTED)
    with RawSMTP(gg.port, source=CLEAN, timeout=10) as c:
        c.greeting()
    assert gg.alive()
