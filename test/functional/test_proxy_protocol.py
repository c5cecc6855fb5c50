"""PROXY protocol v1/v2 from proxy_protocol_networks: the client comes
from the header (and reaches the backend through XCLIENT), anything else
from those networks is refused, and limits count the real client. A
header that names no client (v1 UNKNOWN, v2 LOCAL or UNSPEC) leaves the
client unknown: greeted, but no mail and none of the balancer's trust."""
import socket
import struct

import pytest

from harness.fakes import ScriptedSMTP
from harness.smtp import assert_reply, dot_stuff, make_message
from harness.util import token

PROXY = "127.0.0.9"


def v2(src, dst, sport, dport, command=0x21, fam=0x11, tlv=b""):
    block = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlv
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([command, fam]) + struct.pack("!H", len(block))
            + block)


@pytest.fixture
def pp_gg(greygate_factory):
    return greygate_factory(proxy_protocol_networks=[f"{PROXY}/32"],
                            limits={"max_connections": 100, "max_per_client": 1,
                                    "max_recipients": 100, "max_line": 2048,
                                    "command_timeout": 300, "data_timeout": 600,
                                    "max_errors": 20})


def deliver(c, tok):
    c.greeting()
    c.ehlo()
    return c.send_message(f"s-{tok}@sender.example", [f"r-{tok}@test.example"],
                          dot_stuff(make_message(tok)), ehlo=False)


@pytest.mark.parametrize("version", [1, 2])
def test_client_from_header_reaches_backend(pp_gg, postfix_backend, version):
    tok = token()
    hdr = (b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\r\n" if version == 1
           else v2("203.0.113.7", "192.0.2.1", 40000, 25, tlv=b"\x04\x00\x01X"))
    with pp_gg.raw(source=PROXY) as c:
        c.send(hdr)
        assert_reply(deliver(c, tok), 250)
    mail = postfix_backend.wait_mails(tok)[0]
    assert "[203.0.113.7]" in mail.header("Received")[0]
    ev = pp_gg.wait_event("proxy", client="203.0.113.7")
    assert ev[0]["proxy"] == PROXY and ev[0]["version"] == str(version)


def test_anything_else_from_proxy_networks_refused(pp_gg):
    with pp_gg.raw(source=PROXY) as c:
        c.send(b"EHLO sneaky.example\r\n")
        assert_reply(c.reply(), 421, "4.7.0")
        assert c.wait_closed()
    assert pp_gg.events("reject", cmd="PROXY", rule="proxy_protocol")


def test_truncated_or_oversized_header_refused(pp_gg):
    with pp_gg.raw(source=PROXY) as c:
        c.send(b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 2500000\r\n")
        assert_reply(c.reply(), 421)
    with pp_gg.raw(source=PROXY) as c:
        c.send(b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff" + b"A" * 600)
        assert_reply(c.reply(), 421)


def test_local_health_check(pp_gg):
    with pp_gg.raw(source=PROXY) as c:
        c.send(v2("0.0.0.0", "0.0.0.0", 0, 0, command=0x20, fam=0x00))
        assert_reply(c.reply(), 220)
        assert_reply(c.cmd("QUIT"), 221)
    assert pp_gg.events("proxy", client="unknown", proxy=PROXY, local="yes")


NO_CLIENT = {
    "v1 UNKNOWN": b"PROXY UNKNOWN\r\n",
    "v2 LOCAL": v2("0.0.0.0", "0.0.0.0", 0, 0, command=0x20, fam=0x00),
    "v2 UNSPEC": v2("0.0.0.0", "0.0.0.0", 0, 0, command=0x21, fam=0x00),
}


@pytest.mark.parametrize("hdr", NO_CLIENT.values(), ids=NO_CLIENT.keys())
def test_no_client_in_header_gets_no_trust(greygate_factory, fake_backend, hdr):
    """The balancer is in mynetworks and whitelist.clients (a same-host
    balancer and the default loopback mynetworks): a session whose header
    names no client must not borrow that trust, to relay or to skip
    greylisting, and the backend must never hear of the balancer's address
    as the client."""
    script = ScriptedSMTP(xclient=True)
    fb = fake_backend("serve", script)
    gg = greygate_factory(upstream=fb, proxy_protocol_networks=[f"{PROXY}/32"],
                          mynetworks=["127.0.0.0/8"],
                          whitelist={"clients": ["127.0.0.0/8"]},
                          greylist={"enabled": True})
    tok = token()
    with gg.raw(source=PROXY) as c:
        c.send(hdr)
        assert_reply(c.reply(), 220)
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 451, "4.7.1")
        for rcpt in (f"x-{tok}@foreign.example", f"r-{tok}@test.example"):
            r = c.cmd(f"RCPT TO:<{rcpt}>")
            assert r.code != 250, (rcpt, r)
        assert_reply(c.cmd("NOOP"), 250)
        assert_reply(c.cmd("QUIT"), 221)
    ev = gg.wait_event("reject", cmd="MAIL", client="unknown")
    assert ev[0]["rule"] == "proxy_protocol"
    sent = [ln for conn in script.lines for ln in conn]
    assert not [ln for ln in sent if PROXY.encode() in ln], sent
    assert not [ln for ln in sent if ln.upper().startswith((b"MAIL", b"RCPT"))], sent


def test_health_checks_are_no_clients(pp_gg):
    """v2 LOCAL is the balancer's own health check: it is greeted, and
    with max_per_client = 1 its checks are not counted as one client."""
    with pp_gg.raw(source=PROXY) as a, pp_gg.raw(source=PROXY) as b:
        for c in (a, b):
            c.send(NO_CLIENT["v2 LOCAL"])
            assert_reply(c.reply(), 220)
        for c in (a, b):
            c.ehlo()
            assert_reply(c.cmd("ETRN test.example"), 451, "4.7.1")
            assert_reply(c.cmd("QUIT"), 221)


def test_header_from_others_is_just_a_bad_command(pp_gg):
    with pp_gg.raw() as c:
        c.greeting()
        assert_reply(c.cmd("PROXY TCP4 203.0.113.7 192.0.2.1 40000 25"), 502, "5.5.2")


def test_limits_count_the_real_client(pp_gg):
    with pp_gg.raw(source=PROXY) as a, pp_gg.raw(source=PROXY) as b, \
            pp_gg.raw(source=PROXY) as other:
        a.send(b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\r\n")
        assert_reply(a.reply(), 220)
        b.send(b"PROXY TCP4 203.0.113.7 192.0.2.1 40001 25\r\n")
        assert_reply(b.reply(), 421, "4.7.0")      # max_per_client = 1 for 203.0.113.7
        other.send(b"PROXY TCP4 203.0.113.8 192.0.2.1 40002 25\r\n")
        assert_reply(other.reply(), 220)            # another client, same proxy
