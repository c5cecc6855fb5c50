"""Hostile DNS: whoever controls a client address's reverse zone or a mail
domain's MX records chooses the bytes greygate reads. A name server written
here answers each name with crafted bytes (escapes, a dot or NUL inside a
label, 63/64-byte labels, names past 255 bytes, CNAME loops, the TC bit,
SERVFAIL, silence) and is greygate's only resolver (no dnsmasq between, it
would clean the answers up).

For each case: the session is served (220, the RCPT reply Postfix would give
for that DNS data), the client's name reaches the backend only when it is a
forward-confirmed host name (Postfix writes "unknown" in Received:
otherwise), greygate is alive and serves the next client, and no hostile
name reaches its log. Run under the asan build these also show the heap
stays sound (the 62 x 'a' + backslash PTR freed memory that was written to
later, before the first command).

Then a resolver that never answers: greylisting decisions keep flowing
through a 20-parallel smtp-source storm.
"""

import socket
import struct
import subprocess
import time

import pytest

from harness.fakes import FakeDns, SilentDns
from harness.greygate import Greygate, default_config, merge, stop_gates
from harness.postfix import BACKEND_DOMAINS, PostfixBackend
from harness.smtp import RawSMTP, assert_reply, dot_stuff, make_message
from harness.util import free_port, token, wait_until

T_A, T_CNAME, T_PTR, T_MX, T_AAAA = 1, 5, 12, 15, 28

ME4 = "192.0.2.20"             # my_addresses: "this host" in MX answers
ELSEWHERE = "198.51.100.1"


# --------------------------------------------------------------------------
# Wire format, written by hand so that it can say what no server should
# --------------------------------------------------------------------------

def wire(*labels):
    """A name from LABELS (bytes or str, any length, any bytes)."""
    out = b""
    for lab in labels:
        lab = lab.encode() if isinstance(lab, str) else lab
        out += bytes([len(lab)]) + lab
    return out + b"\0"


def dname(text):
    return wire(*text.split("."))


def rr(rtype, rdata, owner=b"\xc0\x0c", ttl=60):
    """A record; the owner is the question's name unless given."""
    return owner + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata


def ptr(target):
    return rr(T_PTR, target)


def mx(pref, exchange):
    return rr(T_MX, struct.pack(">H", pref) + exchange)


def addr(a, owner=b"\xc0\x0c"):
    return rr(T_A, socket.inet_aton(a), owner)


def rev(a):
    return ".".join(reversed(a.split("."))) + ".in-addr.arpa"


class Answer:
    """What the server says to one (name, type): RECORDS in the answer
    section, RCODE, the TC bit; SILENT: nothing at all."""

    def __init__(self, records=(), rcode=0, tc=False, silent=False):
        self.records, self.rcode, self.tc, self.silent = list(records), rcode, tc, silent


SERVFAIL = Answer(rcode=2)
SILENT = Answer(silent=True)


class CraftedDns(FakeDns):
    """ZONE maps (name, type) to an Answer; anything else is NXDOMAIN."""

    def __init__(self, zone):
        self.zone = {(n.lower(), t): a for (n, t), a in zone.items()}
        super().__init__()

    def answer(self, name, qtype):
        a = self.zone.get((name, qtype), Answer(rcode=3))
        return None if a.silent else (a.rcode, a.records, a.tc)

    def asked(self, name, qtype):
        return (name.lower(), qtype) in self.queries


# --------------------------------------------------------------------------
# The zone
# --------------------------------------------------------------------------

A62_BACKSLASH = wire(b"a" * 62 + b"\\", "net")     # c-ares: one 66-byte label
LONG_NAME = wire("a" * 63, "b" * 63, "c" * 63, "d" * 63, "example")   # 260 bytes

# Reverse DNS, one client address per case: (PTR answer, what Postfix's
# Received: line shows as the client's name).
PTR_CASES = {
    "62a-backslash": ("127.0.0.61", Answer([ptr(A62_BACKSLASH)]), "unknown"),
    "escaped-dot": ("127.0.0.62", Answer([ptr(wire(b"evil\\.name", "example"))]), "unknown"),
    "dot-in-label": ("127.0.0.63", Answer([ptr(wire(b"evil.name", "example"))]), "unknown"),
    "nul-in-label": ("127.0.0.64", Answer([ptr(wire(b"evil\0name", "example"))]), "unknown"),
    "bang": ("127.0.0.65", Answer([ptr(dname("evil!name.example"))]), "unknown"),
    "label-64": ("127.0.0.66", Answer([ptr(wire("e" * 64, "example"))]), "unknown"),
    "name-260": ("127.0.0.67", Answer([ptr(LONG_NAME)]), "unknown"),
    "ptr-to-root": ("127.0.0.68", Answer([ptr(b"\0")]), "unknown"),
    "cname-loop": ("127.0.0.69", Answer([
        rr(T_CNAME, dname("loop1.example")),
        rr(T_CNAME, dname("loop2.example"), owner=dname("loop1.example")),
        rr(T_CNAME, dname("loop1.example"), owner=dname("loop2.example"))]), "unknown"),
    "truncated": ("127.0.0.70", Answer([ptr(dname("tc.example"))], tc=True), "unknown"),
    "servfail": ("127.0.0.71", SERVFAIL, "unknown"),
    "silent": ("127.0.0.72", SILENT, "unknown"),
    # two PTRs, one hostile: the good one is still the client's name
    "one-of-two": ("127.0.0.73", Answer([ptr(A62_BACKSLASH), ptr(dname("two.example"))]),
                   "two.example"),
    # the longest labels there are: a name all right
    "label-63": ("127.0.0.74", Answer([ptr(wire("f" * 63, "example"))]),
                 "f" * 63 + ".example"),
    "good": ("127.0.0.75", Answer([ptr(dname("good-host.example"))]), "good-host.example"),
}

# The cases whose answer is well-formed but names no host: logged as such.
BAD_NAME_CASES = ("62a-backslash", "escaped-dot", "dot-in-label", "nul-in-label", "bang",
                  "name-260", "ptr-to-root", "one-of-two")

# Forward records that would confirm each hostile name, were it taken as
# text: only the name checks keep these clients nameless.
FORWARD = {
    "evil.name.example": "127.0.0.63",
    "evil\\.name.example": "127.0.0.62",
    "evil!name.example": "127.0.0.65",
    "evil": "127.0.0.64",
    "tc.example": "127.0.0.70",
    "two.example": "127.0.0.73",
    "f" * 63 + ".example": "127.0.0.74",
    "good-host.example": "127.0.0.75",
}

# permit_mx_backup: (MX answer, the RCPT reply's code and enhanced code).
# primary.ok.test is elsewhere, backup.ok.test and the hostile names'
# text forms are this host.
MX_CASES = {
    "goodmx.test": (Answer([mx(10, dname("primary.ok.test")), mx(20, dname("backup.ok.test"))]),
                    250, "2.1.5"),
    "backslashmx.test": (Answer([mx(10, dname("primary.ok.test")), mx(20, A62_BACKSLASH)]),
                         554, "5.7.1"),
    "dotmx.test": (Answer([mx(10, dname("primary.ok.test")), mx(20, wire(b"mx.evil", "test"))]),
                   554, "5.7.1"),
    "nulmx.test": (Answer([mx(10, dname("primary.ok.test")), mx(20, wire(b"mx\0evil", "test"))]),
                   554, "5.7.1"),
    # a primary whose name is no host name is one without an address: the
    # backup is still authorised (not a failure of the whole answer)
    "longprimary.test": (Answer([mx(10, LONG_NAME), mx(20, dname("backup.ok.test"))]),
                         250, "2.1.5"),
    "loopmx.test": (Answer([rr(T_CNAME, dname("loopa.test")),
                            rr(T_CNAME, dname("loopb.test"), owner=dname("loopa.test")),
                            rr(T_CNAME, dname("loopa.test"), owner=dname("loopb.test"))]),
                    554, "5.7.1"),
    "servfailmx.test": (SERVFAIL, 450, "4.4.4"),
    "truncmx.test": (Answer([mx(20, dname("backup.ok.test"))], tc=True), 450, "4.4.4"),
    "silentmx.test": (SILENT, 450, "4.4.4"),
}

# The greylisting exemption for the recipient domain's MX hosts.
GL_CLIENT = "127.0.0.80"
GL_CASES = {
    "gl-good.test": (Answer([mx(10, dname("mxhost.test"))]), 250),
    "gl-dot.test": (Answer([mx(10, wire(b"gl.evil", "test"))]), 450),
    "gl-backslash.test": (Answer([mx(10, A62_BACKSLASH)]), 450),
}


SLOW_DOMAIN = "slowmx.test"    # its MX lookup never gets an answer


def zone():
    z = {(SLOW_DOMAIN, T_MX): SILENT}
    for client, answer, _ in PTR_CASES.values():
        z[(rev(client), T_PTR)] = answer
    for name, a in FORWARD.items():
        z[(name, T_A)] = Answer([addr(a)])
    for domain, (answer, _, _) in MX_CASES.items():
        z[(domain, T_MX)] = answer
    for domain, (answer, _) in GL_CASES.items():
        z[(domain, T_MX)] = answer
    z[("primary.ok.test", T_A)] = Answer([addr(ELSEWHERE)])
    z[("backup.ok.test", T_A)] = Answer([addr(ME4)])
    z[("mx.evil.test", T_A)] = Answer([addr(ME4)])
    z[("gl.evil.test", T_A)] = Answer([addr(GL_CLIENT)])
    z[("mxhost.test", T_A)] = Answer([addr(GL_CLIENT)])
    return z


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

class Env:
    pass


def start_gate(tmp_path_factory, backend, dns_address, made, **overrides):
    port = free_port(12525)
    workdir = tmp_path_factory.mktemp("gg-dnshostile")
    cfg = merge(default_config(port, backend.address), overrides)
    cfg["dns"] = {"servers": [dns_address], "timeout_ms": 300, "tries": 1}
    cfg["control_socket"] = str(workdir / "control.sock")
    gg = Greygate(workdir, cfg, port)
    made.append(gg)
    gg.start()
    return gg


@pytest.fixture(scope="module")
def env():
    e = Env()
    e.dns = CraftedDns(zone())
    e.backend = PostfixBackend(extra_main={"virtual_mailbox_domains": " ".join(
        BACKEND_DOMAINS + list(MX_CASES) + list(GL_CASES) + [SLOW_DOMAIN])})
    try:
        e.backend.start()
        yield e
    finally:
        e.backend.destroy()
        e.dns.close()


@pytest.fixture
def make_gate(env, tmp_path_factory):
    """A greygate for one test only: a crash is blamed on the case that
    caused it, not on every case after it."""
    gates = []
    try:
        yield lambda **overrides: start_gate(tmp_path_factory, env.backend, env.dns.address,
                                             gates, **overrides)
    finally:
        errors = stop_gates(gates)
        if errors:
            pytest.fail(errors, pytrace=False)


def relay_gate(make_gate):
    return make_gate(permit_mx_backup=True, my_addresses=[ME4])


def greylist_gate(make_gate):
    return make_gate(greylist={"enabled": True}, local_domains=["test.example"] + list(GL_CASES))


HOSTILE_TEXT = ("a" * 62, "evil", "loop1", "loopa", "e" * 64)


def assert_clean_log(gg, since):
    """No hostile name, in any spelling, in what greygate logged."""
    lines = gg.log_lines()[since:]
    bad = [l for l in lines if any(h in l for h in HOSTILE_TEXT)]
    assert not bad, bad


def assert_serving(gg, rcpt_code=250):
    """Alive, and the next client is served up to its RCPT reply."""
    assert gg.alive()
    with RawSMTP(gg.port, source="127.0.0.99") as c:
        assert_reply(c.greeting(), 220)
        assert_reply(c.ehlo(), 250)
        assert_reply(c.cmd("MAIL FROM:<s@test.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<r-{token()}@test.example>"), rcpt_code)
        assert_reply(c.cmd("QUIT"), 221)


# --------------------------------------------------------------------------
# Reverse DNS: the client's name
# --------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(PTR_CASES))
def test_client_name_from_hostile_ptr(env, make_gate, case):
    client, _, shown = PTR_CASES[case]
    gg = relay_gate(make_gate)
    mark = gg.log_mark()
    tok = token()
    with RawSMTP(gg.port, source=client) as c:
        assert_reply(c.greeting(), 220)
        assert_reply(c.ehlo(), 250)
        # The name is looked up from the greeting on and sent with the
        # first recipient: wait for what the lookup would ask last.
        if shown != "unknown":
            wait_until(lambda: env.dns.asked(shown, T_AAAA), 5, what=f"forward lookup of {shown}")
        else:
            wait_until(lambda: env.dns.asked(rev(client), T_PTR), 5, what="the PTR query")
        time.sleep(0.4 if case in ("silent", "truncated") else 0.2)
        r = c.send_message("s@test.example", [f"r-{tok}@test.example"],
                           dot_stuff(make_message(tok)), ehlo=False)
        assert_reply(r, 250)
        assert_reply(c.cmd("QUIT"), 221)
    mail = env.backend.wait_mails(tok)[0]
    received = mail.header("received")
    assert any(f"({shown} [{client}])" in h for h in received), received
    if case in BAD_NAME_CASES:
        ev = gg.events("dns", since=mark, name=rev(client))
        assert [(e["result"], e["ignored"]) for e in ev] == [("bad-names", "1")], ev
    assert_clean_log(gg, mark)
    assert_serving(gg)


# --------------------------------------------------------------------------
# MX answers: permit_mx_backup and the greylisting exemption
# --------------------------------------------------------------------------

@pytest.mark.parametrize("domain", list(MX_CASES))
def test_relay_by_hostile_mx(make_gate, domain):
    _, code, enhanced = MX_CASES[domain]
    gg = relay_gate(make_gate)
    mark = gg.log_mark()
    with RawSMTP(gg.port, source="127.0.0.90") as c:
        assert_reply(c.greeting(), 220)
        assert_reply(c.ehlo(), 250)
        assert_reply(c.cmd("MAIL FROM:<s@test.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<r-{token()}@{domain}>", timeout=10), code, enhanced)
        assert_reply(c.cmd("QUIT"), 221)
    assert_clean_log(gg, mark)
    assert_serving(gg)


@pytest.mark.parametrize("domain", list(GL_CASES))
def test_mx_host_exemption_by_hostile_mx(make_gate, domain):
    _, code = GL_CASES[domain]
    gg = greylist_gate(make_gate)
    mark = gg.log_mark()
    with RawSMTP(gg.port, source=GL_CLIENT) as c:
        assert_reply(c.greeting(), 220)
        assert_reply(c.ehlo(), 250)
        assert_reply(c.cmd("MAIL FROM:<s@test.example>"), 250)
        r = c.cmd(f"RCPT TO:<r-{token()}@{domain}>", timeout=10)
        assert_reply(r, code, "2.1.5" if code == 250 else "4.2.0")
        assert_reply(c.cmd("QUIT"), 221)
    ev = gg.events("decision", since=mark)
    assert [e["reason"] for e in ev] == ["mx-host" if code == 250 else "new"], ev
    assert_clean_log(gg, mark)
    assert_serving(gg, 450)


def test_passing_decision_asks_no_dns(env, make_gate):
    """The MX hosts of the recipient domain matter only for a refusal: a
    triplet that passes is not held up by a lookup that never answers.
    (The failed lookup is remembered for 5 s: the retry comes later.)"""
    gg = make_gate(greylist={"enabled": True, "delay": 0},
                   local_domains=["test.example", SLOW_DOMAIN])
    rcpt = f"r-{token()}@{SLOW_DOMAIN}"

    def attempt(code, enhanced):
        with RawSMTP(gg.port, source="127.0.0.81") as c:
            assert_reply(c.greeting(), 220)
            assert_reply(c.ehlo(), 250)
            assert_reply(c.cmd("MAIL FROM:<s@test.example>"), 250)
            assert_reply(c.cmd(f"RCPT TO:<{rcpt}>"), code, enhanced)
            assert_reply(c.cmd("QUIT"), 221)

    attempt(450, "4.2.0")
    assert env.dns.queries.count((SLOW_DOMAIN, T_MX)) == 1
    time.sleep(5.5)
    mark = gg.log_mark()
    attempt(250, "2.1.5")
    assert env.dns.queries.count((SLOW_DOMAIN, T_MX)) == 1
    assert [e["reason"] for e in gg.events("decision", since=mark)] == ["triplet"]


# --------------------------------------------------------------------------
# A resolver that never answers
# --------------------------------------------------------------------------

def test_greylisting_goes_on_while_dns_is_silent(tmp_path_factory):
    """The storm of the report: 20 parallel smtp-source sessions, a new
    triplet each, greylisting on, the only DNS server silent (two tries of
    500 ms for each name: 1.5 s a lookup, the defaults scaled down). Every
    session gets its decision, and the outage costs one timeout per name
    every few seconds, not one per decision (which took 300 / 20 x 1.5 s
    and some 1,000 queries: it takes a few); a later client gets its 450
    at once."""
    hole = SilentDns()
    backend = PostfixBackend()
    gates = []
    try:
        backend.start()
        port = free_port(12525)
        workdir = tmp_path_factory.mktemp("gg-dnssilent")
        cfg = merge(default_config(port, backend.address), {
            "greylist": {"enabled": True},
            "dns": {"servers": [hole.address], "timeout_ms": 500, "tries": 2},
            "control_socket": str(workdir / "control.sock")})
        gg = Greygate(workdir, cfg, port)
        gates.append(gg)
        gg.start()
        messages = 300
        started = time.monotonic()
        p = subprocess.run(["smtp-source", "-A", "-N", "-s", "20", "-m", str(messages),
                            "-M", "storm.test", "-f", "s@test.example",
                            "-t", "r@test.example", f"127.0.0.1:{port}"],
                           capture_output=True, timeout=60)
        took = time.monotonic() - started
        assert p.returncode == 0, p.stderr
        print(f"storm: {messages} messages in {took:.1f} s, {len(hole.queries)} queries")
        decisions = gg.events("decision")
        assert len(decisions) == messages, (len(decisions), took)
        assert all(e["action"] == "greylist" for e in decisions)
        # one timeout per name every few seconds, not one per decision
        assert took < 12, took
        assert len(hole.queries) < 30, len(hole.queries)
        with RawSMTP(port, source="127.0.0.98") as c:
            t0 = time.monotonic()
            assert_reply(c.greeting(), 220)
            assert_reply(c.ehlo(), 250)
            assert_reply(c.cmd("MAIL FROM:<s@test.example>"), 250)
            assert_reply(c.cmd(f"RCPT TO:<r-{token()}@test.example>"), 450, "4.2.0")
            assert time.monotonic() - t0 < 5
    finally:
        errors = stop_gates(gates)
        backend.destroy()
        hole.close()
        if errors:
            pytest.fail(errors, pytrace=False)
