"""Primary outage: the backup greylists, accepts and queues; when the
primary is back, the backup's greygate notices (banner probe) and sends
ETRN to its own Postfix, which hands everything over at once: within
seconds, not at Postfix's next back-off retry (300 s and more here).
The outage is the whole primary host (its network cut), or only its
Postfix: then the primary's greygate refuses new clients with 421 at the
greeting (backend.refuse_when_down), which is what the backup's probe reads."""

import time

import pytest

from harness.util import wait_until

import topology as T
from sending import bounces, sender_queue_empty_for

N_MESSAGES = 20
HANDOVER_LIMIT = 30          # seconds from the primary's return


@pytest.mark.parametrize("outage", ["network", "postfix"])
def test_outage_queued_on_backup_and_handed_over(topo, mailer, tok, outage):
    mx1, mx2 = topo.greygate["mx1"], topo.greygate["mx2"]
    pf_mx2 = topo.postfix["mx2"]
    users = [u for u in T.mailboxes() if not u.startswith("postmaster@")][:5]
    sender = f"outage-{tok}@{T.SENDER_DOMAIN}"
    keys = [(tok, i) for i in range(N_MESSAGES)]
    m1, m2 = mx1.log_mark(), mx2.log_mark()

    if outage == "network":
        topo.link("mx1", False)
    else:
        topo.postfix["mx1"].stop()
    try:
        # the hand-over must have seen the primary go down to react to its
        # return (mx1's greygate notices its Postfix gone within its own
        # backend probe period, 10 s)
        mx2.wait_event("probe", since=m2, state="down", primary=T.HOSTNAME["mx1"],
                       timeout=T.PROBE_INTERVAL * 3 + T.PROBE_TIMEOUT + 15)
        for i in range(N_MESSAGES):
            mailer.send(sender, users[i % len(users)], tok, i)

        # all 20 end up queued on mx2 (deferred: mx1 unreachable), after
        # greylisting there
        def all_on_mx2():
            q = [m for m in pf_mx2.queued_for(sender) if m.get("queue_name") == "deferred"]
            return q if len(q) == N_MESSAGES and sender_queue_empty_for(topo, sender) else None
        try:
            queued = wait_until(all_on_mx2, 90, interval=0.5,
                                  what=f"{N_MESSAGES} messages queued on mx2")
        except AssertionError:
            raise AssertionError("not all messages reached mx2's queue:\n"
                                 + topo.postfix["sender"].queue_listing()
                                 + pf_mx2.queue_listing()) from None
        for m in queued:
            reasons = [rc.get("delay_reason", "") for rc in m["recipients"]]
            assert any(T.ADDR["mx1"] in r or "mx1" in r for r in reasons), reasons
        assert not any(mailer.delivered(u) and any(
            mid.startswith(tok) for mid in mailer.delivered(u)) for u in users), \
            "mail reached mx1 while it was cut off"

        on_mx2 = mx2.events("decision", since=m2, sender=sender)
        for u in users:
            mine = [d for d in on_mx2 if d["rcpt"] == u]
            assert mine and (mine[0]["action"], mine[0]["reason"]) == ("greylist", "new"), \
                [d["_line"] for d in mine]
            assert any(d["action"] == "pass" and d["reason"] == "triplet" for d in mine), \
                [d["_line"] for d in mine]
        assert not mx1.events("decision", since=m1, sender=sender)
    finally:
        t_back = time.monotonic()
        if outage == "network":
            topo.link("mx1", True)
        else:
            topo.postfix["mx1"].start()
    if outage == "postfix":
        refused = mx1.events("reject", since=m1, cmd="CONNECT", rule="backend_down")
        assert refused, "mx1's greygate did not refuse clients while its Postfix was down"

    mx2.wait_event("probe", since=m2, state="up", primary=T.HOSTNAME["mx1"],
                   timeout=T.PROBE_INTERVAL * 3 + 5)
    flushed = mx2.wait_event("handover", since=m2, domain=T.DOMAIN, timeout=10)
    assert flushed[0]["result"] == "flushed", flushed[0]["_line"]
    assert flushed[0]["reply"].startswith("250"), flushed[0]["_line"]

    mailer.wait_delivered(keys, timeout=HANDOVER_LIMIT + 5)
    took = time.monotonic() - t_back
    assert took < HANDOVER_LIMIT, f"hand-over took {took:.1f}s"

    wait_until(lambda: not pf_mx2.queued_for(sender), 20, what="mx2's queue empty")
    mailer.assert_exactly_once_and_intact(keys)
    assert bounces(topo) == []

    # mx2's deliveries were not greylisted on mx1: it is an MX host of the domain
    from_mx2 = [d for d in mx1.events("decision", since=m1, sender=sender)]
    assert from_mx2, "mx1 logged no decision for the handed-over mail"
    assert all(d["client"] == T.ADDR["mx2"] for d in from_mx2), [d["_line"] for d in from_mx2]
    assert all((d["action"], d["reason"]) == ("pass", "mx-host") for d in from_mx2), \
        [d["_line"] for d in from_mx2]
    txns = mx1.events("transaction", since=m1, client=T.ADDR["mx2"], sender=sender)
    assert sum(int(t["nrcpt"]) for t in txns if t["result"] == "accepted") == N_MESSAGES, \
        [t["_line"] for t in txns]
