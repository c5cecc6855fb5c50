"""Hand-over (README.md, "Deployment: a primary and a backup MX"): on a
backup MX greygate probes the primary MX hosts of the domains it backs up
(SMTP banner) and, when a primary seen down comes back, sends one `ETRN
domain` to its own Postfix, so that the queued mail goes back at once.

The primary here is a small banner server of ours on 127.0.0.3 (not
127.0.0.1: greygate listens there, which makes 127.0.0.1 "this host");
this host is backup.relay.example = 192.0.2.20 (my_addresses). The backend
is a private Postfix with fast_flush_domains = relay.example whose
smtpd_etrn_restrictions log (WARN) every ETRN for relay.example, so the
ETRNs that reached it can be counted.
"""

import re
import time

import pytest

from harness.fakes import relay_mx_zone as zone
from harness.greygate import get, metric
from harness.util import free_port, wait_until

ETRN_SEEN = "gg-etrn-relay.example"

BACKEND_MAIN = {
    "relay_domains": "relay.example",
    "fast_flush_domains": "relay.example",
    "virtual_mailbox_domains": "test.example",
    "smtpd_etrn_restrictions":
        f"check_etrn_access inline:{{ {{ relay.example = WARN {ETRN_SEEN} }} }}",
}


def handover_gate(greygate_factory, dns, backend, probe_port, **over):
    cfg = dict(my_addresses=["192.0.2.20"], relay_domains=["relay.example"],
               dns={"servers": [dns.address], "timeout_ms": 500, "tries": 1},
               handover={"domains": ["relay.example"], "probe_interval": 1,
                         "probe_timeout": 1, "probe_port": probe_port})
    cfg.update(over)
    return greygate_factory(upstream=backend, **cfg)


def etrns_seen(backend):
    """ETRN relay.example commands Postfix received (every line logged
    before now)."""
    backend.sync_log()
    return len(re.findall(rf"warn: ETRN from \S+: {ETRN_SEEN};", backend.log()))


def probe_states(gg, since=0):
    return [e["state"] for e in gg.events("probe", since=since, domain="relay.example",
                                          primary="primary.relay.example")]


def wait_probes(b, n, timeout=8):
    """Waits until the banner server has been probed N more times."""
    start = b.count()
    wait_until(lambda: b.count() >= start + n, timeout, what=f"{n} more probes")


def test_primary_back_up_flushes_once(greygate_factory, dns_server, make_postfix_backend,
                                      banner):
    backend = make_postfix_backend(extra_main=BACKEND_MAIN)
    dns = dns_server(zone())
    b = banner("down")
    gg = handover_gate(greygate_factory, dns, backend, b.port)
    gg.wait_event("handover", result="watching")
    gg.wait_event("probe", timeout=5, domain="relay.example", state="down")
    # Down, and staying down (another probe round or so): no ETRN
    time.sleep(1.5)
    assert probe_states(gg) == ["down"]
    assert not gg.events("handover", result="flushed")
    assert etrns_seen(backend) == 0

    mark = gg.log_mark()
    b.set_mode("220")
    gg.wait_event("probe", since=mark, timeout=5, state="up")
    ev = gg.wait_event("handover", since=mark, timeout=5, domain="relay.example")
    assert [(e["primary"], e["result"], e.get("reply")) for e in ev] == \
        [("primary.relay.example", "flushed", "250 Queuing started")], ev
    wait_until(lambda: etrns_seen(backend) >= 1, 10, what="the ETRN in Postfix's log")
    # the probe says QUIT before it goes
    wait_until(lambda: "QUIT" in b.received, 5, what="QUIT from the probe")

    # staying up: probes go on, no second ETRN
    wait_probes(b, 3)
    assert etrns_seen(backend) == 1
    assert probe_states(gg) == ["down", "up"]
    assert len(gg.events("handover", domain="relay.example")) == 1


def test_one_flush_per_recovery(greygate_factory, dns_server, make_postfix_backend, banner):
    """Up at start: nothing to hand over (Postfix's own schedule). Each
    recovery after that (from a refusing banner, from a silent server)
    flushes once. handover.domains defaults to relay_domains."""
    backend = make_postfix_backend(extra_main=BACKEND_MAIN)
    dns = dns_server(zone())
    b = banner("220")
    gg = handover_gate(greygate_factory, dns, backend, b.port,
                       handover={"probe_interval": 1, "probe_timeout": 1,
                                 "probe_port": b.port})
    ev = gg.wait_event("handover", result="watching")
    assert ev[0]["domains"] == "1", ev
    gg.wait_event("probe", timeout=5, domain="relay.example", state="up")
    wait_probes(b, 2)
    assert etrns_seen(backend) == 0
    assert not gg.events("handover", domain="relay.example")

    expected = 0
    for down_mode in ("554", "silent"):
        mark = gg.log_mark()
        b.set_mode(down_mode)
        gg.wait_event("probe", since=mark, timeout=6, state="down")
        b.set_mode("220")
        gg.wait_event("probe", since=mark, timeout=6, state="up")
        expected += 1
        gg.wait_event("handover", since=mark, timeout=5, result="flushed")
        wait_until(lambda: etrns_seen(backend) >= expected, 10, what=f"ETRN #{expected}")
    wait_probes(b, 2)
    assert etrns_seen(backend) == 2
    assert probe_states(gg) == ["up", "down", "up", "down", "up"]
    assert len(gg.events("handover", result="flushed")) == 2


def test_flush_with_backend_down(admin_gg, dns_server, fake_backend, banner):
    """The ETRN cannot be delivered: logged, counted as a failed hand-over
    (the alert rules watch it), and greygate carries on."""
    upstream = fake_backend("greet421")
    dns = dns_server(zone())
    b = banner("down")
    gg = handover_gate(lambda **kw: admin_gg(**kw), dns, upstream, b.port)
    gg.wait_event("probe", timeout=5, domain="relay.example", state="down")
    accepted = upstream.accepted
    mark = gg.log_mark()
    b.set_mode("220")
    ev = gg.wait_event("handover", since=mark, timeout=6, domain="relay.example")
    assert ev[0]["result"] not in ("flushed", "watching"), ev
    assert upstream.accepted > accepted        # it did try
    wait_probes(b, 2)
    assert len(gg.events("handover", since=mark, domain="relay.example")) == 1
    text = get(gg.admin_port, "/metrics")[1]
    assert metric(text, "greygate_handover_failures_total") == 1
    assert metric(text, "greygate_handovers_total") == 0
    assert gg.alive()


def test_reload_applies_handover_settings(greygate_factory, dns_server, make_postfix_backend,
                                          banner):
    """SIGHUP reloads the whole configuration (README.md, "Running it"). A
    new probe_port (here: where the primary really listens) takes effect
    without a restart (or greygate at least warns that it needs one)."""
    backend = make_postfix_backend(extra_main=BACKEND_MAIN)
    dns = dns_server(zone())
    b = banner("220")
    wrong_port = free_port(13025)              # nothing listens there
    gg = handover_gate(greygate_factory, dns, backend, wrong_port)
    gg.wait_event("probe", timeout=5, domain="relay.example", state="down")

    mark = gg.log_mark()
    gg.write_config(dict(gg.config, handover=dict(gg.config["handover"], probe_port=b.port)))
    gg.hup()
    gg.wait_event("reload", since=mark, result="ok")
    warned = [e for e in gg.events("reload", since=mark)
              if e.get("level") == "warning" and "handover" in e["_line"]]
    if not warned:
        try:
            gg.wait_event("probe", since=mark, timeout=5, state="up")
        except AssertionError:
            raise AssertionError(
                f"handover.probe_port reload silently ignored: {b.count()} probes reached the "
                f"new port in 5 s; probe events after reload: {probe_states(gg, mark)}") from None
        gg.wait_event("handover", since=mark, timeout=5, result="flushed")
        wait_until(lambda: etrns_seen(backend) == 1, 10, what="the ETRN in Postfix's log")


def test_many_reloads_during_probes_keep_probing(greygate_factory, dns_server,
                                                 make_postfix_backend, banner):
    """A reload drops the probes in flight. 70 reloads (more than the 64
    probes a round may have in flight) while the primary hangs: probing must
    go on, and the ETRN must follow when the primary comes back."""
    backend = make_postfix_backend(extra_main=BACKEND_MAIN)
    dns = dns_server(zone())
    b = banner("down")
    gg = handover_gate(greygate_factory, dns, backend, b.port, workers=1,
                       handover={"domains": ["relay.example"], "probe_interval": 1,
                                 "probe_timeout": 3, "probe_port": b.port})
    gg.wait_event("probe", timeout=5, domain="relay.example", state="down")

    # Accepts and never greets: every probe stays in flight until a reload
    # drops it, and each reload starts a new round at once.
    b.set_mode("silent")
    wait_probes(b, 1)
    for i in range(70):
        mark = gg.log_mark()
        start = b.count()
        gg.hup()
        wait_until(lambda: gg.events("reload", since=mark, result="ok"), 5,
                   interval=0.01, what=f"reload {i + 1} applied")
        wait_until(lambda: b.count() > start, 5, interval=0.01,
                   what=f"a probe in flight after reload {i + 1}")
    assert not gg.events("reload", result="failed")

    mark = gg.log_mark()
    b.set_mode("220")
    gg.wait_event("probe", since=mark, timeout=8, domain="relay.example", state="up")
    ev = gg.wait_event("handover", since=mark, timeout=5, domain="relay.example")
    assert [e["result"] for e in ev] == ["flushed"], ev
    wait_until(lambda: etrns_seen(backend) >= 1, 10, what="the ETRN in Postfix's log")
