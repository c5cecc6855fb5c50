"""No open relay, ever (README.md, the RCPT checks): the backup relays only
for domains whose primaries lie in permit_mx_backup_networks and that list
it as a lower-preference MX; a DNS failure is a 450 4.4.4, never a 5xx.
swaks from the sender's namespace straight to mx2:25 (and mx1:25)."""

import re
import time

import pytest

import topology as T
from sending import swaks

# domain -> (reply code, enhanced code, mx2's `why` in its relay log line)
CASES = {
    "onlymx2.test": (554, "5.7.1", "this host is a primary MX"),
    "nomx2.test": (554, "5.7.1", "this host is not an MX"),
    "outside.test": (554, "5.7.1", "a primary MX lies outside permit_mx_backup_networks"),
    "halfout.test": (554, "5.7.1", "a primary MX lies outside permit_mx_backup_networks"),
    "nxdomain.test": (554, "5.7.1", "no MX"),
    "broken.test": (450, "4.4.4", None),
}


def reply_parts(line):
    m = re.match(r"(\d{3})[ -](\d\.\d{1,3}\.\d{1,3})?", line or "")
    assert m, f"no RCPT reply found: {line!r}"
    return int(m.group(1)), m.group(2)


@pytest.mark.parametrize("domain", list(CASES))
def test_backup_refuses_to_relay(topo, tok, domain):
    code, enhanced, why = CASES[domain]
    mx2 = topo.greygate["mx2"]
    pf2 = topo.postfix["mx2"]
    mark, pmark = mx2.log_mark(), pf2.log_mark()
    rcpt = f"victim-{tok}@{domain}"

    rc, out, line = swaks(topo, "sender", f"{T.ADDR['mx2']}:25", f"spam-{tok}@{T.SENDER_DOMAIN}",
                          rcpt)
    assert reply_parts(line) == (code, enhanced), out
    if code == 554:
        assert "Relay access denied" in line, out
    assert rc != 0, out

    relay = mx2.events("relay", since=mark, rcpt=rcpt)
    if why:
        assert relay and relay[0]["result"] == "not-authorised" and relay[0]["why"] == why, \
            [e["_line"] for e in relay] or mx2.log_lines()[mark:]
    else:
        assert not any(e["result"] == "authorised" for e in relay)
    # greygate decided alone: mx2's Postfix never saw the recipient
    pf2.sync_log()
    assert rcpt not in pf2.log(pmark)


def test_backup_relays_for_its_primary(topo, tok):
    """The control: example.test (mx1 primary in the allowed networks, mx2
    MX 20) is authorised, then greylisted like anywhere else."""
    mx2 = topo.greygate["mx2"]
    mark = mx2.log_mark()
    rcpt = f"alice@{T.DOMAIN}"
    sender = f"relayok-{tok}@{T.SENDER_DOMAIN}"
    rc, out, line = swaks(topo, "sender", f"{T.ADDR['mx2']}:25", sender, rcpt)
    assert reply_parts(line) == (450, "4.2.0"), out
    relay = mx2.events("relay", since=mark, rcpt=rcpt)
    assert relay and relay[0]["result"] == "authorised", [e["_line"] for e in relay]
    d = mx2.events("decision", since=mark, sender=sender)
    assert (d[0]["action"], d[0]["reason"]) == ("greylist", "new"), d


@pytest.mark.parametrize("domain", ["outside.test", "nomx2.test", "sender.test"])
def test_primary_refuses_to_relay(topo, tok, domain):
    """mx1 does not back anybody up: everything but its own domain is
    refused."""
    rcpt = f"victim-{tok}@{domain}"
    rc, out, line = swaks(topo, "sender", f"{T.ADDR['mx1']}:25", f"spam-{tok}@{T.SENDER_DOMAIN}",
                          rcpt)
    assert reply_parts(line) == (554, "5.7.1"), out


def test_unknown_recipient_of_the_domain_is_refused_by_postfix_on_both(topo, tok):
    """Behind greygate's greylisting, Postfix refuses mailboxes that do not
    exist, on the primary (virtual_mailbox_maps) and on the backup
    (relay_recipient_maps): no bounce to a forged sender later."""
    sender = f"nobody-{tok}@{T.SENDER_DOMAIN}"
    for mx in ("mx1", "mx2"):
        rcpt = f"nosuchuser-{tok}@{T.DOMAIN}"
        rc, out, line = swaks(topo, "sender", f"{T.ADDR[mx]}:25", sender, rcpt)
        assert reply_parts(line) == (450, "4.2.0"), out      # greylisted first
    time.sleep(T.DELAY + 1)
    for mx in ("mx1", "mx2"):
        rcpt = f"nosuchuser-{tok}@{T.DOMAIN}"
        rc, out, line = swaks(topo, "sender", f"{T.ADDR[mx]}:25", sender, rcpt)
        code, enhanced = reply_parts(line)
        assert code == 550 and enhanced == "5.1.1", out
