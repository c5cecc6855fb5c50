"""ETRN (README.md, "Deployment: a primary and a backup MX"): the primary
may ask the backup to flush its queue for the domain; nobody else may."""

import re

from harness.smtp import assert_reply
from harness.util import wait_until

import topology as T
from sending import bounces, make_message


def etrn(topo, role, domain, server="mx2"):
    with topo.smtp(role, T.ADDR[server], 25) as c:
        assert_reply(c.reply(), 220)
        assert_reply(c.cmd(f"EHLO {T.HOSTNAME[role]}"), 250)
        r = c.cmd(f"ETRN {domain}")
        c.cmd("QUIT")
    return r


def _defer_sender(pf, sender):
    """PF's smtpd answers 450 to mail from SENDER (None: not any more)."""
    if sender:
        pf.postconf(f"smtpd_recipient_restrictions = check_sender_access inline:{{{sender}=DEFER}}")
    else:
        pf.postconf("-X", "smtpd_recipient_restrictions")
    T.run(pf.in_ns("postfix", "-c", str(pf.conf), "reload"))


def test_etrn_from_primary_flushes_the_backup_queue(topo, mailer, tok):
    """mx1's Postfix defers the mail for a while, behind its greygate, which
    stays up (so mx2's probe sees mx1 up and its hand-over does nothing):
    mx2's delivery gets 450 and waits for Postfix's back-off (300 s). Once
    mx1 takes the mail again, mx1 sends ETRN to mx2 and it arrives at once."""
    mx1, mx2 = topo.greygate["mx1"], topo.greygate["mx2"]
    pf1, pf2 = topo.postfix["mx1"], topo.postfix["mx2"]
    sender = f"etrn-{tok}@{T.SENDER_DOMAIN}"
    rcpt = f"frank@{T.DOMAIN}"
    m1, m2 = mx1.log_mark(), mx2.log_mark()

    _defer_sender(pf1, sender)
    try:
        msg, body = make_message(sender, rcpt, tok)
        pf2.sendmail(sender, [rcpt], msg)
        mailer.sent[(tok, 0)] = (rcpt, body)
        deferred = wait_until(
            lambda: [m for m in pf2.queued_for(sender) if m.get("queue_name") == "deferred"],
            30, interval=0.3, what="the message deferred on mx2")
        reason = deferred[0]["recipients"][0].get("delay_reason", "")
        assert "450 4.7.1" in reason, reason
        # mx1's greygate let it through (mx-host) and relayed its Postfix's 450
        rej = mx1.wait_event("reject", since=m1, sender=sender)
        assert rej[0]["reply"].startswith("450 4.7.1"), rej[0]["_line"]
        assert rej[0]["rule"] == "backend", rej[0]["_line"]
        assert mx1.events("decision", since=m1, sender=sender)[0]["reason"] == "mx-host"
    finally:
        _defer_sender(pf1, None)
    assert not mailer.delivered(rcpt).get(f"{tok}.0"), "delivered before the ETRN"
    assert not mx2.events("handover", since=m2), "the hand-over flushed: the test proves nothing"

    r = etrn(topo, "mx1", T.DOMAIN)
    assert_reply(r, 250)
    assert "queuing started" in r.text.lower(), r.text
    ev = mx2.wait_event("etrn", since=m2, client=T.ADDR["mx1"])
    assert ev[0]["result"] == "ok", ev[0]["_line"]

    mailer.wait_delivered([(tok, 0)], timeout=15)
    wait_until(lambda: not pf2.queued_for(sender), 15, what="mx2's queue empty")
    mailer.assert_exactly_once_and_intact([(tok, 0)])
    assert bounces(topo) == []


def test_etrn_refused_for_others(topo):
    mx1, mx2 = topo.greygate["mx1"], topo.greygate["mx2"]
    pf2 = topo.postfix["mx2"]
    mark2 = pf2.log_mark()
    m1, m2 = mx1.log_mark(), mx2.log_mark()

    # the sender is not in mx2's etrn_networks
    assert_reply(etrn(topo, "sender", T.DOMAIN), 459, "4.7.1")
    # mx1 is, but only for the domains mx2 backs up
    assert_reply(etrn(topo, "mx1", "sender.test"), 459, "4.7.1")
    # mx1 has no etrn_networks at all: ETRN is not a command there
    assert_reply(etrn(topo, "mx2", T.DOMAIN, server="mx1"), 502, "5.5.1")

    refused = mx2.events("etrn", since=m2, result="refused")
    assert {e["client"] for e in refused} == {T.ADDR["sender"], T.ADDR["mx1"]}, \
        [e["_line"] for e in refused]
    assert not mx2.events("etrn", since=m2, result="ok")
    r502 = mx1.events("reject", since=m1, cmd="ETRN")
    assert r502 and r502[0]["reply"].startswith("502 5.5.1"), [e["_line"] for e in r502]
    # none of them reached mx2's Postfix
    pf2.sync_log()
    log = pf2.log(mark2)
    assert not re.search(r"etrn=", log), log


