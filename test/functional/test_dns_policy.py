"""DNS-based policy at RCPT (the checks README.md lists): sender checks
(reject_non_fqdn_sender, reject_unknown_sender_domain), reject_non_fqdn_recipient,
permit_mx_backup with and without permit_mx_backup_networks, temporary DNS
failures (SERVFAIL, REFUSED, timeouts: always 4xx), the greylisting
exemption for the recipient domain's own MX hosts, and the host-name
whitelist by forward-confirmed reverse DNS.

"This host" is 192.0.2.20 / 2001:db8::20 (my_addresses) and the listen
addresses (127.0.0.1, ::1): only DNS data points there, no traffic goes
anywhere but 127.0.0.x / ::1.

Most cases share one dnsmasq (with scripted misbehaving upstreams for the
SERVFAIL / REFUSED / timeout zones), one private Postfix that accepts every
domain used here (so a wrong "authorised" shows up as a 250, never hidden by
a backend refusal) and two greygates (module scope, greylisting off): every
case opens its own session.
"""

import time

import pytest

from harness.fakes import DnsServer, FakeDns
from harness.greygate import Greygate, default_config, merge, stop_gates
from harness.postfix import BACKEND_DOMAINS, PostfixBackend
from harness.smtp import RawSMTP, assert_reply, dot_stuff, make_message
from harness.util import CLIENT_ADDR, free_port, token

DNS_TIMEOUT_MS = 400

# --------------------------------------------------------------------------
# A scripted upstream name server (what dnsmasq forwards some zones to)
# --------------------------------------------------------------------------

QTYPES = {"A": 1, "MX": 15, "AAAA": 28, "PTR": 12}
RCODES = {"nodata": 0, "servfail": 2, "nxdomain": 3, "refused": 5}


class ScriptedDns(FakeDns):
    """Answers each query by RULES {(qname, "TYPE"): action} else DEFAULT.
    Actions: "servfail", "refused", "nxdomain", "nodata" (NOERROR, empty
    answer), "silent" (never answers)."""

    def __init__(self, default, rules=None):
        self.default = default
        self.rules = {(n.lower(), QTYPES[t]): a for (n, t), a in (rules or {}).items()}
        super().__init__()

    def answer(self, name, qtype):
        action = self.rules.get((name, qtype), self.default)
        return None if action == "silent" else (RCODES[action], [], False)


# --------------------------------------------------------------------------
# The shared zone
# --------------------------------------------------------------------------

ME4, ME6 = "192.0.2.20", "2001:db8::20"


def mx(domain, *hosts):
    """hosts: (name, pref, [addresses]) -> dnsmasq lines. An empty address
    list leaves the name without records (NXDOMAIN)."""
    out = []
    for name, pref, addrs in hosts:
        out.append(f"mx-host={domain},{name},{pref}")
        out += [f"host-record={name},{a}" for a in addrs]
    return out


def zone_lines(servfail, refused, slow, mixed, flip):
    return [
        # ---- scripted upstreams
        f"server=/flip.test/127.0.0.1#{flip.port}",
        f"server=/servfail.test/127.0.0.1#{servfail.port}",
        f"server=/refused.test/127.0.0.1#{refused.port}",
        f"server=/slow.test/127.0.0.1#{slow.port}",
        f"server=/mixed.test/127.0.0.1#{mixed.port}",
        # ---- sender domains
        *mx("withmx.test", ("mail.withmx.test", 10, ["192.0.2.99"])),
        "host-record=withmx.test,192.0.2.97",
        "cname=cnamesender.test,withmx.test",
        "host-record=aonly.test,192.0.2.98",
        "host-record=aaaaonly.test,2001:db8::98",
        'txt-record=nodata.test,"no mail here"',      # exists: NODATA for MX, A, AAAA
        "dns-rr=nullmx.test,15,000000",               # MX 0 "."
        *mx("ghostmx.test", ("gone.ghostmx.test", 10, [])),   # MX whose exchange does not resolve
        # ---- recipient domains (permit_mx_backup)
        *mx("backup.example", ("mx1.backup.example", 10, ["198.51.100.10"]),
            ("mx2.backup.example", 20, [ME4])),
        *mx("primary.example", ("mx1.primary.example", 10, [ME4]),
            ("mx2.primary.example", 20, ["198.51.100.11"])),
        *mx("equal.example", ("a.equal.example", 10, ["198.51.100.12"]),
            ("b.equal.example", 10, [ME4]), ("c.equal.example", 20, ["203.0.113.12"])),
        *mx("only.example", ("mx.only.example", 10, [ME4])),
        *mx("notme.example", ("mx1.notme.example", 10, ["198.51.100.13"]),
            ("mx2.notme.example", 20, ["203.0.113.13"])),
        "host-record=nomx.example,198.51.100.14",
        "dns-rr=nullmx.example,15,000000",
        *mx("ghost.example", ("gone.ghost.example", 10, []), ("mx2.ghost.example", 20, [ME4])),
        *mx("ghostbackup.example", ("mx1.ghostbackup.example", 10, ["198.51.100.25"]),
            ("gone.ghostbackup.example", 20, []), ("mx3.ghostbackup.example", 30, [ME4])),
        *mx("allghost.example", ("gone1.allghost.example", 10, []),
            ("gone2.allghost.example", 20, [])),
        # MX exchange names resolving through CNAME chains
        *mx("cname.example", ("mx1.cname.example", 10, ["198.51.100.15"]),
            ("alias2.cname.example", 20, [])),
        "cname=alias2.cname.example,alias1.cname.example",
        "cname=alias1.cname.example,real.cname.example",
        f"host-record=real.cname.example,{ME4}",
        *mx("cnameprimary.example", ("alias.cnameprimary.example", 10, []),
            ("mx2.cnameprimary.example", 20, ["198.51.100.16"])),
        "cname=alias.cnameprimary.example,real.cname.example",
        # IPv6-only MX hosts
        *mx("v6.example", ("p.v6.example", 10, ["2001:db8:1::10"]), ("b.v6.example", 20, [ME6])),
        *mx("v6primary.example", ("p.v6primary.example", 10, [ME6]),
            ("b.v6primary.example", 20, ["2001:db8:1::11"])),
        *mx("v6listen.example", ("p.v6listen.example", 10, ["198.51.100.17"]),
            ("b.v6listen.example", 20, ["::1"])),
        # permit_mx_backup_networks
        *mx("outside.example", ("mx1.outside.example", 10, ["203.0.113.10"]),
            ("mx2.outside.example", 20, [ME4])),
        *mx("splitprim.example", ("a.splitprim.example", 10, ["198.51.100.20"]),
            ("b.splitprim.example", 10, ["203.0.113.20"]), ("c.splitprim.example", 20, [ME4])),
        *mx("multiaddr.example", ("m.multiaddr.example", 10, ["198.51.100.21", "203.0.113.21"]),
            ("b.multiaddr.example", 20, [ME4])),
        *mx("dualprim.example", ("d.dualprim.example", 10, []), ("b.dualprim.example", 20, [ME4])),
        "host-record=d.dualprim.example,198.51.100.22,2001:db8:2::22",
        *mx("dualin.example", ("d.dualin.example", 10, []), ("b.dualin.example", 20, [ME4])),
        "host-record=d.dualin.example,198.51.100.23,2001:db8:1::23",
        *mx("manybackups.example", ("mx1.manybackups.example", 10, ["198.51.100.24"]),
            ("mx2.manybackups.example", 20, [ME4]), ("mx3.manybackups.example", 30, ["203.0.113.30"])),
        # temporary failures on the way
        *mx("tfexch.example", ("mx.servfail.test", 10, []), ("mx2.tfexch.example", 20, [ME4])),
        *mx("tfslow.example", ("mx1.tfslow.example", 10, ["198.51.100.18"]),
            ("mx2.tfslow.example", 20, [ME4]), ("mx.slow.test", 30, [])),
        *mx("tfprimary.example", ("mx1.tfprimary.example", 10, [ME4]), ("mx.refused.test", 20, [])),
        *mx("tfmixed.example", ("mx1.tfmixed.example", 10, ["198.51.100.19"]),
            ("mx.mixed.test", 20, []), ("mx3.tfmixed.example", 30, [ME4])),
    ]


# Every recipient domain of the table below: the backend accepts them all,
# so that whatever greygate lets through would be accepted.
RCPT_DOMAINS = [
    "backup.example", "primary.example", "equal.example", "only.example", "notme.example",
    "nomx.example", "nothing.example", "nullmx.example", "ghost.example",
    "ghostbackup.example", "allghost.example", "cname.example", "cnameprimary.example",
    "v6.example", "v6primary.example", "v6listen.example", "outside.example",
    "splitprim.example", "multiaddr.example", "dualprim.example", "dualin.example",
    "manybackups.example", "tfexch.example", "tfslow.example", "tfprimary.example",
    "tfmixed.example", "x.servfail.test", "x.refused.test", "x.slow.test",
]

OK = "authorised"
PRIMARY = "this host is a primary MX"
NOT_MX = "this host is not an MX"
NO_MX = "no MX"
OUTSIDE = "a primary MX lies outside permit_mx_backup_networks"
TEMP = "tempfail"

# domain -> (without permit_mx_backup_networks, with them)
MX_CASES = {
    "backup.example": (OK, OK),
    "BACKUP.Example": (OK, OK),                  # case does not matter
    "primary.example": (PRIMARY, PRIMARY),
    "equal.example": (PRIMARY, PRIMARY),         # one of two best-preference hosts
    "only.example": (PRIMARY, PRIMARY),          # the only MX
    "notme.example": (NOT_MX, NOT_MX),
    "nomx.example": (NO_MX, NO_MX),              # A record, no MX
    "nothing.example": (NO_MX, NO_MX),           # NXDOMAIN
    "nullmx.example": (NO_MX, NO_MX),            # RFC 7505 null MX
    "ghost.example": (OK, OUTSIDE),              # primary's name does not resolve
    "ghostbackup.example": (OK, OK),             # another backup's name does not resolve
    "allghost.example": (NOT_MX, NOT_MX),
    "cname.example": (OK, OK),                   # backup exchange via a CNAME chain
    "cnameprimary.example": (PRIMARY, PRIMARY),  # primary exchange via a CNAME
    "v6.example": (OK, OK),                      # IPv6-only MX hosts
    "v6primary.example": (PRIMARY, PRIMARY),
    "v6listen.example": (OK, NOT_MX),            # ::1 is a listen address of the first gate only
    "outside.example": (OK, OUTSIDE),
    "splitprim.example": (OK, OUTSIDE),          # one of two primaries outside
    "multiaddr.example": (OK, OUTSIDE),          # one of a primary's two addresses outside
    "dualprim.example": (OK, OUTSIDE),           # the primary's AAAA outside
    "dualin.example": (OK, OK),                  # A and AAAA both inside
    "manybackups.example": (OK, OK),             # backups outside the networks do not matter
    "tfexch.example": (TEMP, TEMP),              # primary exchange's A/AAAA: SERVFAIL
    "tfslow.example": (TEMP, TEMP),              # a backup exchange's A/AAAA: time-out
    "tfprimary.example": (TEMP, TEMP),           # this host is a primary, but a lookup failed
    "tfmixed.example": (TEMP, TEMP),             # A SERVFAIL, AAAA NODATA
    "x.servfail.test": (TEMP, TEMP),             # the MX lookup itself: SERVFAIL
    "x.refused.test": (TEMP, TEMP),              # REFUSED
    "x.slow.test": (TEMP, TEMP),                 # time-out
    "[192.0.2.20]": (NO_MX, NO_MX),              # address literal: never authorised by MX
}


# --------------------------------------------------------------------------
# Module fixtures
# --------------------------------------------------------------------------

class Env:
    pass


def start_gate(tmp_path_factory, backend, dns, made, listen_v6=False, **overrides):
    port = free_port(12525)
    workdir = tmp_path_factory.mktemp("gg-dnspolicy")
    cfg = merge(default_config(port, backend.address, dns.address), overrides)
    cfg["dns"] = {"servers": [dns.address], "timeout_ms": DNS_TIMEOUT_MS, "tries": 1}
    cfg["control_socket"] = str(workdir / "control.sock")
    if listen_v6:
        cfg["listen"] = [f"127.0.0.1:{port}", f"[::1]:{port}"]
    gg = Greygate(workdir, cfg, port)
    made.append(gg)
    gg.start()
    return gg


COMMON = dict(
    permit_mx_backup=True,
    my_addresses=[ME4, ME6],
    reject_unknown_sender_domain=True,
    reject_non_fqdn_sender=True,
    reject_non_fqdn_recipient=True,
    mynetworks=["127.0.0.10/32"],
    whitelist={"clients": ["127.0.0.11/32"]},
)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env()
    upstreams, gates = [], []
    backend = dns = None
    try:
        e.servfail = ScriptedDns("servfail")
        upstreams.append(e.servfail)
        e.refused = ScriptedDns("refused")
        upstreams.append(e.refused)
        e.slow = ScriptedDns("silent")
        upstreams.append(e.slow)
        e.mixed = ScriptedDns("nxdomain", {
            ("mixed.test", "MX"): "nodata", ("mixed.test", "A"): "nodata",
            ("mixed.test", "AAAA"): "servfail",
            ("mx.mixed.test", "A"): "servfail", ("mx.mixed.test", "AAAA"): "nodata"})
        upstreams.append(e.mixed)
        e.flip = ScriptedDns("servfail")
        upstreams.append(e.flip)
        dns = DnsServer(tmp_path_factory.mktemp("dns-policy"),
                        zone_lines(e.servfail, e.refused, e.slow, e.mixed, e.flip))
        dns.start()
        e.dns = dns
        backend = PostfixBackend(extra_main={
            "virtual_mailbox_domains": " ".join(BACKEND_DOMAINS + RCPT_DOMAINS)})
        backend.start()
        e.backend = backend
        # permit_mx_backup without networks; also listens on [::1]
        e.gate = start_gate(tmp_path_factory, backend, dns, gates, listen_v6=True, **COMMON)
        # ... and with permit_mx_backup_networks
        e.gate_nets = start_gate(tmp_path_factory, backend, dns, gates,
                                 permit_mx_backup_networks=["198.51.100.0/24", "2001:db8:1::/48"],
                                 **COMMON)
        yield e
    finally:
        errors = stop_gates(gates)
        if dns:
            dns.stop()
        if backend:
            backend.destroy()
        for u in upstreams:
            u.close()
        if errors:
            pytest.fail(errors, pytrace=False)


@pytest.fixture
def own_gate(env, tmp_path_factory):
    """A greygate of the first kind (permit_mx_backup, no networks) for one
    test only: for tests that may bring it down, so that a crash is blamed
    on the test that caused it, not on every test after it."""
    gates = []
    try:
        yield start_gate(tmp_path_factory, env.backend, env.dns, gates, **COMMON)
    finally:
        errors = stop_gates(gates)
        if errors:
            pytest.fail(errors, pytrace=False)


def assert_never_reached_backend(backend, mark, source, port):
    """The session (XCLIENT ADDR/PORT, logged with smtpd_client_port_logging)
    never shows up in the backend's log."""
    backend.sync_log()
    log = backend.log(mark)
    assert f"[{source}]:{port}" not in log, log


def rcpt_once(gg, sender, rcpt, source=CLIENT_ADDR, host="127.0.0.1"):
    """One session: MAIL SENDER (must get 250), RCPT RCPT -> (reply, client port)."""
    with RawSMTP(gg.port, host=host, source=source) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<{sender}>"), 250, "2.1.0")
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        port = c.local_port
        c.cmd("QUIT")
    return r, port


def deliver_one(gg, backend, sender, rcpt, tok, source=CLIENT_ADDR):
    """One full transaction; the message must arrive in the backend's Maildir."""
    with RawSMTP(gg.port, source=source) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<{sender}>"), 250, "2.1.0")
        assert_reply(c.cmd(f"RCPT TO:<{rcpt}>"), 250, "2.1.5")
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok)))
        assert_reply(c.reply(), 250, "2.0.0")
        assert_reply(c.cmd("QUIT"), 221)
    mails = backend.wait_mails(tok)
    assert [m.header("delivered-to")[0].lower() for m in mails] == [rcpt.lower()]


# --------------------------------------------------------------------------
# permit_mx_backup
# --------------------------------------------------------------------------

@pytest.mark.parametrize("with_networks", [False, True], ids=["no-networks", "networks"])
@pytest.mark.parametrize("domain", list(MX_CASES))
def test_permit_mx_backup(env, domain, with_networks):
    gg = env.gate_nets if with_networks else env.gate
    expected = MX_CASES[domain][1 if with_networks else 0]
    tok = token()
    rcpt = f"r-{tok}@{domain}"
    sender = f"s-{tok}@withmx.test"
    mark, bmark = gg.log_mark(), env.backend.log_mark()
    if expected == OK:
        deliver_one(gg, env.backend, sender, rcpt, tok)
        ev = gg.wait_event("relay", since=mark, rcpt=rcpt)
        assert len(ev) == 1, ev
        assert ev[0]["rule"] == "permit_mx_backup" and ev[0]["result"] == "authorised", ev
        assert ev[0]["domain"].lower() == domain.lower() and "why" not in ev[0], ev
        return
    r, port = rcpt_once(gg, sender, rcpt)
    if expected == TEMP:
        # never a permanent reject on a temporary DNS failure
        assert_reply(r, 450, "4.4.4", contains=f"<{rcpt}>")
        ev = gg.wait_event("reject", since=mark, rcpt=rcpt)
        assert [e["rule"] for e in ev] == ["permit_mx_backup"], ev
        verdicts = [e for e in gg.events("relay", since=mark, rcpt=rcpt)
                    if e.get("result") in ("authorised", "not-authorised")]
        assert not verdicts, f"a relay verdict despite the temporary failure: {verdicts}"
    else:
        assert_reply(r, 554, "5.7.1", contains=f"<{rcpt}>: Relay access denied")
        if not domain.startswith("["):
            ev = gg.wait_event("relay", since=mark, rcpt=rcpt)
            assert len(ev) == 1, ev
            assert ev[0]["rule"] == "permit_mx_backup", ev
            assert ev[0]["result"] == "not-authorised", ev
            assert ev[0]["why"] == expected, ev
    assert_never_reached_backend(env.backend, bmark, CLIENT_ADDR, port)


def test_permit_mx_backup_start_up_warning(env):
    """Without permit_mx_backup_networks greygate warns at start-up; with
    them it does not."""
    warn = [e for e in env.gate.events("config") if e.get("setting") == "permit_mx_backup"]
    assert len(warn) == 1 and warn[0].get("level") == "warning", warn
    assert "permit_mx_backup_networks" in warn[0]["reason"], warn
    assert not [e for e in env.gate_nets.events("config")
                if e.get("setting") == "permit_mx_backup"]


def test_relay_domains_do_not_need_dns(env):
    """local_domains / relay_domains decide before permit_mx_backup: no MX
    lookup, no relay log line."""
    tok = token()
    mark = env.gate.log_mark()
    deliver_one(env.gate, env.backend, f"s-{tok}@withmx.test", f"r-{tok}@relay.example", tok)
    assert not env.gate.events("relay", since=mark)


def test_pipelined_rcpts_with_lookups_keep_their_order(own_gate):
    """RCPTs whose checks wait for DNS (some for a time-out) answer in
    command order when pipelined."""
    tok = token()
    rcpts = [(f"a-{tok}@x.slow.test", 450, "4.4.4"),
             (f"b-{tok}@backup.example", 250, "2.1.5"),
             (f"c-{tok}@notme.example", 554, "5.7.1"),
             (f"d-{tok}@tfslow.example", 450, "4.4.4"),
             (f"e-{tok}@test.example", 250, "2.1.5")]
    with own_gate.raw() as c:
        c.greeting()
        c.ehlo()
        c.send(f"MAIL FROM:<s-{tok}@withmx.test>\r\n"
               + "".join(f"RCPT TO:<{r}>\r\n" for r, _, _ in rcpts) + "RSET\r\n")
        assert_reply(c.reply(), 250, "2.1.0")
        for r, code, enhanced in rcpts:
            # greygate's refusals name the recipient; the backend's "250 2.1.5 Ok" does not
            assert_reply(c.reply(), code, enhanced, contains=None if code == 250 else f"<{r}>")
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)


def test_client_gone_while_lookups_pending(env, own_gate):
    """Sessions that end while their RCPT waits for DNS answers (time-outs of
    the sender's MX, the recipient's MX, an exchange's addresses) leave
    greygate serving; the late answers are dropped."""
    gg = own_gate
    for sender, rcpt in [("s@x.slow.test", "r@test.example"),
                         ("s@withmx.test", "r@x.slow.test"),
                         ("s@withmx.test", "r@tfslow.example")]:
        c = gg.raw()
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<{sender}>"), 250)
        c.send(f"RCPT TO:<{rcpt}>\r\n")
        c.close()
    time.sleep(DNS_TIMEOUT_MS / 1000 + 0.3)    # the answers (time-outs) come in
    assert gg.alive()
    tok = token()
    deliver_one(gg, env.backend, f"s-{tok}@withmx.test", f"r-{tok}@backup.example", tok)


# --------------------------------------------------------------------------
# Sender and recipient checks
# --------------------------------------------------------------------------

SENDER_CASES = [
    ("s@withmx.test", 250, "2.1.5"),          # MX
    ("s@cnamesender.test", 250, "2.1.5"),     # CNAME to a domain with MX
    ("s@aonly.test", 250, "2.1.5"),           # no MX, A
    ("s@aaaaonly.test", 250, "2.1.5"),        # no MX, AAAA only
    ("s@ghostmx.test", 250, "2.1.5"),         # an MX (that points nowhere) is an MX
    ("s@[192.0.2.1]", 250, "2.1.5"),          # address literal: no lookup
    ("", 250, "2.1.5"),                       # the null sender is not checked
    ("s@nodata.test", 550, "5.1.8"),          # exists, but NODATA for MX, A and AAAA
    ("s@nxsender.test", 550, "5.1.8"),        # NXDOMAIN
    ("s@nullmx.test", 550, "5.7.27"),         # null MX
    ("s@x.servfail.test", 450, "4.1.8"),      # SERVFAIL
    ("s@x.refused.test", 450, "4.1.8"),       # REFUSED
    ("s@x.slow.test", 450, "4.1.8"),          # time-out
    ("s@mixed.test", 450, "4.1.8"),           # MX NODATA, A NODATA, AAAA SERVFAIL
    ("s@localhost", 504, "5.5.2"),            # reject_non_fqdn_sender
    ("s", 504, "5.5.2"),
]


@pytest.mark.parametrize("sender,code,enhanced", SENDER_CASES,
                         ids=[s or "null" for s, _, _ in SENDER_CASES])
def test_sender_checks(env, sender, code, enhanced):
    tok = token()
    rcpt = f"r-{tok}@test.example"
    r, _ = rcpt_once(env.gate, sender, rcpt)
    assert_reply(r, code, enhanced)
    if code != 250:
        assert f"<{sender}>" in r.text and "Sender address rejected" in r.text, r.text
        rule = "reject_non_fqdn_sender" if code == 504 else "reject_unknown_sender_domain"
        ev = env.gate.wait_event("reject", rcpt=rcpt)
        assert ev[0]["rule"] == rule, ev


def test_temporary_failures_are_cached_briefly(env):
    """A temporary failure is remembered for a few seconds (an outage costs
    one timeout per name, not one per decision), then asked again: once
    the name server answers NXDOMAIN, the 450 becomes a 550 (and the
    other way round)."""
    try:
        env.flip.default = "servfail"
        r, _ = rcpt_once(env.gate, "s@flip.test", f"r-{token()}@test.example")
        assert_reply(r, 450, "4.1.8")
        failed_at = time.monotonic()
        asked = len(env.flip.queries)
        env.flip.default = "nxdomain"
        r, _ = rcpt_once(env.gate, "s@flip.test", f"r-{token()}@test.example")
        assert_reply(r, 450, "4.1.8")
        assert len(env.flip.queries) == asked, "a remembered failure was asked again"
        time.sleep(max(0.0, failed_at + 5.5 - time.monotonic()))
        for default, code, enhanced in [("nxdomain", 550, "5.1.8"), ("servfail", 450, "4.1.8")]:
            env.flip.default = default
            r, _ = rcpt_once(env.gate, "s@flip.test", f"r-{token()}@test.example")
            assert_reply(r, code, enhanced)
    finally:
        env.flip.default = "servfail"


def test_later_reject_wins_over_temporary_failure(env):
    """A temporary failure does not end the checks (Postfix's
    DEFER_IF_PERMIT): the sender domain's name server times out, but the
    recipient is a relay attempt, and the permanent refusal wins: 554, not
    an invitation to retry."""
    rcpt = f"r-{token()}@notme.example"
    r, _ = rcpt_once(env.gate, "s@x.slow.test", rcpt)
    assert_reply(r, 554, "5.7.1", contains="Relay access denied")
    ev = env.gate.wait_event("reject", rcpt=rcpt)
    assert ev[0]["rule"] == "relay_denied", ev


def test_later_permit_keeps_the_deferral(env):
    """The same time-out with a recipient this host may take (a backup MX
    of its domain, greylisting off: every later rule permits): the
    remembered deferral is the answer, not the permit."""
    rcpt = f"r-{token()}@backup.example"
    r, _ = rcpt_once(env.gate, "s@x.slow.test", rcpt)
    assert_reply(r, 450, "4.1.8", contains="temporary DNS failure")
    ev = env.gate.wait_event("reject", rcpt=rcpt)
    assert ev[0]["rule"] == "reject_unknown_sender_domain", ev


@pytest.mark.parametrize("rcpt", ["u", "u@localhost"])
def test_non_fqdn_recipient(env, rcpt):
    r, _ = rcpt_once(env.gate, "s@withmx.test", rcpt)
    assert_reply(r, 504, "5.5.2", contains=f"<{rcpt}>: Recipient address rejected")


@pytest.mark.parametrize("source,relays", [("127.0.0.10", True), ("127.0.0.11", False)],
                         ids=["mynetworks", "whitelist.clients"])
def test_trusted_clients_skip_sender_checks(env, source, relays):
    """mynetworks and whitelist.clients skip the sender checks; only
    mynetworks may relay."""
    for sender in ("s@nxsender.test", "s@nullmx.test", "s@x.servfail.test", "s"):
        tok = token()
        r, _ = rcpt_once(env.gate, sender, f"r-{tok}@test.example", source=source)
        assert_reply(r, 250, "2.1.5")
    tok = token()
    r, _ = rcpt_once(env.gate, "s@nxsender.test", f"r-{tok}@notme.example", source=source)
    if relays:
        assert_reply(r, 250, "2.1.5")
    else:
        assert_reply(r, 554, "5.7.1", contains="Relay access denied")


# --------------------------------------------------------------------------
# Greylisting exemption for the recipient domain's MX hosts
# --------------------------------------------------------------------------

GREYLIST = {"greylist": {"enabled": True, "delay": 60},
            "store": {"type": "memory", "file": ""}}


def gl_gate(greygate_factory, dns, **overrides):
    cfg = dict(GREYLIST, reject_unknown_sender_domain=True,
               dns={"servers": [dns.address], "timeout_ms": DNS_TIMEOUT_MS, "tries": 1})
    cfg.update(overrides)
    return greygate_factory(**cfg)


def test_mx_hosts_of_recipient_domain_skip_greylisting(greygate_factory, dns_server,
                                                       postfix_backend):
    dns = dns_server([
        "host-record=sender.test,192.0.2.1",
        *mx("relay.example", ("mx1.relay.example", 10, ["127.0.0.7"]),
            ("mx2.relay.example", 20, ["127.0.0.5"]), ("mx3.relay.example", 30, ["::1"])),
        # test.example's MX reached through a CNAME
        "mx-host=test.example,alias.test.example,10",
        "cname=alias.test.example,real.test.example",
        "host-record=real.test.example,127.0.0.8",
        *mx("foreign.example", ("mx.foreign.example", 10, ["127.0.0.5"])),
    ], local=("example", "test", "in-addr.arpa", "ip6.arpa"))
    gg = gl_gate(greygate_factory, dns, start=False)
    # and a listener on ::1 for the IPv6 MX host
    gg.config["listen"].append(f"[::1]:{gg.port}")
    gg.write_config(gg.config)
    gg.start()

    tok = token()
    sender = f"s-{tok}@sender.test"
    rcpt = f"r-{tok}@relay.example"

    def attempt(source, rcpt, host="127.0.0.1"):
        mark = gg.log_mark()
        r, _ = rcpt_once(gg, sender, rcpt, source=source, host=host)
        return r, gg.events("decision", since=mark, rcpt=rcpt)

    # an ordinary client: greylisted (and the triplet is now in the store)
    r, ev = attempt("127.0.0.6", rcpt)
    assert_reply(r, 450, "4.2.0", contains="Greylisted")
    assert [e["action"] for e in ev] == ["greylist"], ev
    # the backup MX (127.0.0.5) and the primary MX (127.0.0.7) of the
    # recipient domain, same sender and recipient, same /24: pass at once
    for src in ("127.0.0.5", "127.0.0.7"):
        r, ev = attempt(src, rcpt)
        assert_reply(r, 250, "2.1.5")
        assert [(e["action"], e["reason"], e["client"]) for e in ev] == \
            [("pass", "mx-host", src)], ev
    # ... over IPv6 too (AAAA ::1)
    r, ev = attempt("::1", rcpt, host="::1")
    assert_reply(r, 250, "2.1.5")
    assert [(e["action"], e["reason"]) for e in ev] == [("pass", "mx-host")], ev
    # the MX hosts' passes did not pass the triplet for everybody
    r, ev = attempt("127.0.0.6", rcpt)
    assert_reply(r, 450, "4.2.0", contains="Greylisted")
    assert [e["action"] for e in ev] == ["greylist"], ev

    # it is about the RECIPIENT domain's MX hosts: 127.0.0.5 is no MX of
    # test.example (127.0.0.8 is, through a CNAME)
    rcpt2 = f"r2-{tok}@test.example"
    r, ev = attempt("127.0.0.5", rcpt2)
    assert_reply(r, 450, "4.2.0")
    r, ev = attempt("127.0.0.8", rcpt2)
    assert_reply(r, 250, "2.1.5")
    assert [(e["action"], e["reason"]) for e in ev] == [("pass", "mx-host")], ev

    # exempt from greylisting, not from relay authorisation
    r, ev = attempt("127.0.0.5", f"r3-{tok}@foreign.example")
    assert_reply(r, 554, "5.7.1", contains="Relay access denied")

    # and the message of an MX host really goes through
    with gg.raw(source="127.0.0.5") as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<{sender}>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{rcpt}>"), 250, "2.1.5")
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok)))
        assert_reply(c.reply(), 250, "2.0.0")
        c.cmd("QUIT")
    postfix_backend.wait_mails(tok)


# --------------------------------------------------------------------------
# whitelist.client_names: forward-confirmed reverse DNS
# --------------------------------------------------------------------------

FCRDNS_ZONE = [
    "host-record=sender.test,192.0.2.1",
    # 127.0.0.5: PTR mail.good.test, whose A is 127.0.0.5 -> confirmed
    "ptr-record=5.0.0.127.in-addr.arpa,mail.good.test",
    "host-record=mail.good.test,127.0.0.5",
    # 127.0.0.6: PTR to a name that does not resolve
    "ptr-record=6.0.0.127.in-addr.arpa,fake.good.test",
    # 127.0.0.7: PTR to a name that resolves to another address
    "ptr-record=7.0.0.127.in-addr.arpa,liar.good.test",
    "host-record=liar.good.test,127.0.0.8",
    # 127.0.0.9: confirmed, but a name that is not whitelisted
    "ptr-record=9.0.0.127.in-addr.arpa,mail.other.test",
    "host-record=mail.other.test,127.0.0.9",
]


@pytest.mark.parametrize("pattern", ["mail.good.test", ".good.test"])
def test_client_names_fcrdns(greygate_factory, dns_server, pattern):
    dns = dns_server(FCRDNS_ZONE, local=("example", "test", "in-addr.arpa"))
    gg = gl_gate(greygate_factory, dns, whitelist={"client_names": [pattern]})

    # confirmed and matching: no greylisting, no sender checks ...
    for sender in ("s@nxsender.test", "s@nullmx.test", "s"):
        tok = token()
        rcpt = f"r-{tok}@test.example"
        mark = gg.log_mark()
        r, _ = rcpt_once(gg, sender, rcpt, source="127.0.0.5")
        assert_reply(r, 250, "2.1.5")
        ev = gg.events("decision", since=mark, rcpt=rcpt)
        assert [(e["action"], e["reason"], e.get("client_name")) for e in ev] == \
            [("pass", "whitelist-client-name", "mail.good.test")], ev
    # ... but relay authorisation still applies
    tok = token()
    r, _ = rcpt_once(gg, "s@sender.test", f"r-{tok}@foreign.example", source="127.0.0.5")
    assert_reply(r, 554, "5.7.1", contains="Relay access denied")

    # not confirmed (or not whitelisted): greylisted and checked as usual
    for source in ("127.0.0.6", "127.0.0.7", "127.0.0.9"):
        tok = token()
        rcpt = f"r-{tok}@test.example"
        mark = gg.log_mark()
        r, _ = rcpt_once(gg, f"s-{tok}@sender.test", rcpt, source=source)
        assert_reply(r, 450, "4.2.0", contains="Greylisted")
        ev = gg.events("decision", since=mark, rcpt=rcpt)
        assert [e["action"] for e in ev] == ["greylist"], (source, ev)
        assert all("client_name" not in e for e in ev), ev
        r, _ = rcpt_once(gg, "s@nxsender.test", rcpt, source=source)
        assert_reply(r, 550, "5.1.8")


@pytest.mark.parametrize("failure", ["silent", "servfail"], ids=["timeout", "servfail"])
def test_client_names_reverse_dns_failure(greygate_factory, dns_server, failure):
    """The client's PTR lookup fails temporarily (time-out, SERVFAIL): not
    whitelisted, so greylisted and sender-checked as usual; one plain
    RCPT, no pipelining."""
    upstream = ScriptedDns(failure)
    try:
        dns = dns_server([f"server=/0.0.127.in-addr.arpa/127.0.0.1#{upstream.port}",
                          "host-record=sender.test,192.0.2.1",
                          # forward only (host-record would answer the PTR too)
                          "address=/mail.good.test/127.0.0.5"])
        gg = gl_gate(greygate_factory, dns, whitelist={"client_names": [".good.test"]})
        tok = token()
        rcpt = f"r-{tok}@test.example"
        mark = gg.log_mark()
        r, _ = rcpt_once(gg, f"s-{tok}@sender.test", rcpt, source="127.0.0.5")
        assert_reply(r, 450, "4.2.0", contains="Greylisted")
        ev = gg.events("decision", since=mark, rcpt=rcpt)
        assert [e["action"] for e in ev] == ["greylist"], ev
        r, _ = rcpt_once(gg, "s@nxsender.test", rcpt, source="127.0.0.5")
        assert_reply(r, 550, "5.1.8")
        assert gg.alive()
    finally:
        upstream.close()


# --------------------------------------------------------------------------
# SIGHUP (reloads the whole configuration: README.md, "Running it")
# --------------------------------------------------------------------------

def test_reload_applies_dns_settings(greygate_factory, dns_server):
    """dns.servers changed by SIGHUP: new sessions resolve through the new
    server (or greygate at least says the change needs a restart, as it
    does for listen and store)."""
    old = dns_server(["host-record=old-only.test,192.0.2.1"])
    new = dns_server(["host-record=new-only.test,192.0.2.1"])
    gg = greygate_factory(reject_unknown_sender_domain=True,
                          dns={"servers": [old.address], "timeout_ms": DNS_TIMEOUT_MS,
                               "tries": 1})
    r, _ = rcpt_once(gg, "s@old-only.test", "r@test.example")
    assert_reply(r, 250)
    r, _ = rcpt_once(gg, "s@new-only.test", "r@test.example")
    assert_reply(r, 550, "5.1.8")

    mark = gg.log_mark()
    gg.write_config(merge(gg.config, {"dns": {"servers": [new.address]}}))
    gg.hup()
    gg.wait_event("reload", since=mark, result="ok")
    warned = [e for e in gg.events("reload", since=mark)
              if e.get("level") == "warning" and "dns" in e["_line"]]
    r_new, _ = rcpt_once(gg, "s@new-only.test", "r@test.example")
    r_old, _ = rcpt_once(gg, "s@old-only.test", "r@test.example")
    if not warned:
        assert (r_new.code, r_old.code) == (250, 550), \
            f"dns.servers reload silently ignored: new-only.test -> {r_new}, " \
            f"old-only.test -> {r_old}"
