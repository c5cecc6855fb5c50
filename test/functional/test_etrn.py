"""ETRN (README.md, "Deployment: a primary and a backup MX"): relayed to the
backend Postfix (with XCLIENT, so that Postfix sees the real client) only
after HELO, outside a transaction, from etrn_networks, for a domain this
host backs up (relay_domains or handover.domains); Postfix's reply goes back
to the client verbatim. Everything else: 459 4.7.1, or 502 5.5.1 when
etrn_networks is empty.

The backend here is a Postfix of its own with relay_domains =
fast_flush_domains = relay.example (so ETRN relay.example really starts a
flush: "250 Queuing started") whose smtpd_etrn_restrictions only log (WARN)
every ETRN with the client address and port Postfix saw.
"""

import re

import pytest

from harness.greygate import Greygate, default_config, merge
from harness.postfix import PostfixBackend
from harness.smtp import RawSMTP, assert_reply
from harness.util import free_port

ETRN_CLIENT = "127.0.0.5"
OTHER_CLIENT = "127.0.0.6"

BACKEND_MAIN = {
    "relay_domains": "relay.example",
    "fast_flush_domains": "relay.example",
    "virtual_mailbox_domains": "test.example",
    "smtpd_etrn_restrictions":
        "check_client_access inline:{ { 127 = WARN gg-etrn-seen } { ::1 = WARN gg-etrn-seen } }",
}


@pytest.fixture(scope="module")
def etrn_env(tmp_path_factory, default_dns):
    """(backend, greygate): greylisting on (ETRN must not care), etrn_networks
    = 127.0.0.5 and ::1, relay_domains relay.example and noflush.example (the
    latter not in the backend's fast_flush_domains)."""
    backend = PostfixBackend(extra_main=BACKEND_MAIN)
    gg = None
    try:
        backend.start()
        port = free_port(12525)
        workdir = tmp_path_factory.mktemp("gg-etrn")
        cfg = merge(default_config(port, backend.address, default_dns.address), {
            "listen": [f"127.0.0.1:{port}", f"[::1]:{port}"],
            "etrn_networks": [f"{ETRN_CLIENT}/32", "::1/128"],
            "relay_domains": ["relay.example", "noflush.example"],
            "greylist": {"enabled": True, "delay": 60},
            "store": {"type": "memory", "file": ""},
            "control_socket": str(workdir / "control.sock"),
        })
        gg = Greygate(workdir, cfg, port)
        gg.start()
        yield backend, gg
    finally:
        try:
            if gg is not None:
                gg.stop()
        finally:
            backend.destroy()


def session(gg, source=ETRN_CLIENT, host="127.0.0.1"):
    c = RawSMTP(gg.port, host=host, source=source)
    c.greeting()
    return c


def warn_lines(log, source, port):
    """Postfix's WARN lines for ETRNs of the session SOURCE:PORT (XCLIENT
    ADDR and PORT)."""
    return re.findall(rf"warn: ETRN from [^\[\s]*\[{re.escape(source)}\]:{port}: gg-etrn-seen",
                      log)


def disconnect_line(backend, source, port):
    rx = rf"disconnect from [^\[\s]*\[{re.escape(source)}\]:{port} .*"
    return backend.wait_log(rx).group(0)


@pytest.mark.parametrize("arg", ["relay.example", "RELAY.Example", "@relay.example"])
def test_etrn_relayed_to_postfix(etrn_env, arg):
    backend, gg = etrn_env
    mark, gmark = backend.log_mark(), gg.log_mark()
    with session(gg) as c:
        port = c.local_port
        c.ehlo()
        r = assert_reply(c.cmd(f"ETRN {arg}"), 250)
        # Postfix's own reply, verbatim
        assert r.lines == ["250 Queuing started"], r.text
        assert_reply(c.cmd("QUIT"), 221)
    # Postfix saw the ETRN, from the real client (XCLIENT), exactly once
    disc = disconnect_line(backend, ETRN_CLIENT, port)
    assert " etrn=1 " in disc, disc
    log = backend.log(mark)
    assert len(warn_lines(log, ETRN_CLIENT, port)) == 1, log
    ev = gg.wait_event("etrn", since=gmark, client=ETRN_CLIENT)
    assert [(e["domain"], e["result"], e["reply"]) for e in ev] == \
        [(arg, "ok", "250 Queuing started")], ev


def test_etrn_over_ipv6(etrn_env):
    backend, gg = etrn_env
    mark = backend.log_mark()
    with session(gg, source="::1", host="::1") as c:
        port = c.local_port
        c.ehlo()
        assert_reply(c.cmd("ETRN relay.example"), 250, contains="Queuing started")
        c.cmd("QUIT")
    disc = disconnect_line(backend, "::1", port)
    assert " etrn=1 " in disc, disc
    assert len(warn_lines(backend.log(mark), "::1", port)) == 1


def test_postfix_refusal_is_relayed(etrn_env):
    """A domain greygate serves but Postfix does not flush: Postfix's 459
    reaches the client."""
    backend, gg = etrn_env
    mark, gmark = backend.log_mark(), gg.log_mark()
    with session(gg) as c:
        port = c.local_port
        c.ehlo()
        r = c.cmd("ETRN noflush.example")
        assert r.code == 459 and "<noflush.example>" in r.text, r.text
        assert "ETRN not permitted" not in r.text, "greygate's refusal, not Postfix's"
        c.cmd("QUIT")
    assert " etrn=0/1 " in disconnect_line(backend, ETRN_CLIENT, port)
    assert len(warn_lines(backend.log(mark), ETRN_CLIENT, port)) == 1
    ev = gg.wait_event("etrn", since=gmark, client=ETRN_CLIENT)
    assert [(e["domain"], e["result"]) for e in ev] == [("noflush.example", "refused")], ev
    assert ev[0]["reply"] == r.lines[0], ev


def test_etrn_does_not_exempt_mail_from_greylisting(etrn_env):
    """ETRN is never greylisted, and does not whitelist the session either;
    the backend connection it used serves the transaction afterwards."""
    backend, gg = etrn_env
    with session(gg) as c:
        c.ehlo()
        assert_reply(c.cmd("ETRN relay.example"), 250)
        assert_reply(c.cmd("MAIL FROM:<s@sender.example>"), 250)
        assert_reply(c.cmd("RCPT TO:<etrn-gl@test.example>"), 450, "4.2.0",
                     contains="Greylisted")
        # and ETRN again after the transaction ended
        assert_reply(c.cmd("RSET"), 250)
        assert_reply(c.cmd("ETRN relay.example"), 250, contains="Queuing started")
        c.cmd("QUIT")


def assert_refused_locally(backend, gg, source, arg, code, enhanced, text):
    mark, gmark = backend.log_mark(), gg.log_mark()
    with session(gg, source=source) as c:
        port = c.local_port
        c.ehlo()
        assert_reply(c.cmd(f"ETRN {arg}"), code, enhanced, contains=text)
        # the session goes on
        assert_reply(c.cmd("NOOP"), 250)
        c.cmd("QUIT")
    backend.sync_log()
    log = backend.log(mark)
    assert f"[{source}]:{port}" not in log, log
    assert "ETRN" not in log, log
    return gg.events("etrn", since=gmark)


def test_etrn_from_foreign_network(etrn_env):
    backend, gg = etrn_env
    ev = assert_refused_locally(backend, gg, OTHER_CLIENT, "relay.example", 459, "4.7.1",
                                "<relay.example>: ETRN not permitted")
    assert [(e["client"], e["domain"], e["result"]) for e in ev] == \
        [(OTHER_CLIENT, "relay.example", "refused")], ev


@pytest.mark.parametrize("domain", [
    "foreign.example",
    "test.example",            # a local domain is not backed up
    "sub.relay.example",       # nor a subdomain of a backed-up one
    "@foreign.example",
])
def test_etrn_for_domain_not_served(etrn_env, domain):
    backend, gg = etrn_env
    ev = assert_refused_locally(backend, gg, ETRN_CLIENT, domain, 459, "4.7.1",
                                f"<{domain}>: ETRN not permitted")
    assert [(e["domain"], e["result"]) for e in ev] == [(domain, "refused")], ev


def test_etrn_order_of_checks(etrn_env):
    """Before HELO, and inside a transaction: refused, never relayed."""
    backend, gg = etrn_env
    mark = backend.log_mark()
    with session(gg) as c:
        port = c.local_port
        r = c.cmd("ETRN relay.example")
        assert r.code == 503, r.text
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<s@sender.example>"), 250)
        assert_reply(c.cmd("ETRN relay.example"), 503, "5.5.1")
        assert_reply(c.cmd("RSET"), 250)
        assert_reply(c.cmd("ETRN"), 501)
        c.cmd("QUIT")
    backend.sync_log()
    assert "ETRN" not in backend.log(mark)
    assert f"[{ETRN_CLIENT}]:{port}" not in backend.log(mark)


def test_etrn_without_etrn_networks(greygate_factory, make_postfix_backend):
    backend = make_postfix_backend(extra_main=BACKEND_MAIN)
    gg = greygate_factory(upstream=backend)      # no etrn_networks (the default)
    ev = assert_refused_locally(backend, gg, ETRN_CLIENT, "relay.example", 502, "5.5.1",
                                "ETRN")
    assert not [e for e in ev if e.get("result") == "ok"], ev


def test_etrn_for_handover_domain(greygate_factory, make_postfix_backend):
    """handover.domains count as served even when not in relay_domains."""
    backend = make_postfix_backend(extra_main=BACKEND_MAIN)
    gg = greygate_factory(upstream=backend, relay_domains=[],
                          etrn_networks=[f"{ETRN_CLIENT}/32"],
                          handover={"domains": ["relay.example"], "probe_interval": 0})
    mark = backend.log_mark()
    with session(gg) as c:
        port = c.local_port
        c.ehlo()
        assert_reply(c.cmd("ETRN relay.example"), 250, contains="Queuing started")
        assert_reply(c.cmd("ETRN noflush.example"), 459, "4.7.1", contains="ETRN not permitted")
        c.cmd("QUIT")
    assert " etrn=1 " in disconnect_line(backend, ETRN_CLIENT, port)
    assert len(warn_lines(backend.log(mark), ETRN_CLIENT, port)) == 1
