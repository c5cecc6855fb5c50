"""Cross-MX greylisting: one greylisting state (Redis) for both MX hosts.

The sender's first attempt is greylisted on the primary; Postfix then tries
the backup in the same attempt (a 4xx to RCPT from a non-final MX), and the
backup already knows the triplet: reason=early, not new. On a retry after
the delay the primary lets it through: one delivery, no hours of delay."""

import time

from harness.util import wait_until

import topology as T
from sending import bounces, sender_queue_empty_for

RETRY_PERIOD = T.SENDER_MAX_BACKOFF + T.SENDER_QUEUE_RUN_DELAY


def test_greylisted_on_primary_early_on_backup_delivered_once(topo, mailer, tok):
    mx1, mx2 = topo.greygate["mx1"], topo.greygate["mx2"]
    m1, m2 = mx1.log_mark(), mx2.log_mark()
    sender = f"cross-{tok}@{T.SENDER_DOMAIN}"
    rcpt = f"alice@{T.DOMAIN}"

    t0 = time.monotonic()
    mailer.send(sender, rcpt, tok)

    first = mx1.wait_event("decision", since=m1, rcpt=rcpt, sender=sender, timeout=20)[0]
    assert (first["action"], first["reason"]) == ("greylist", "new"), first["_line"]
    assert first["client"] == T.ADDR["sender"]
    assert first["net"] == "203.0.113.0/24"

    got = mailer.wait_delivered([(tok, 0)], timeout=T.DELAY + 2 * RETRY_PERIOD + 15)
    elapsed = time.monotonic() - t0
    assert got
    assert elapsed < T.DELAY + 2 * RETRY_PERIOD, \
        f"delivered after {elapsed:.1f}s, more than delay {T.DELAY}s + two retry periods"
    assert elapsed >= T.DELAY - 1, f"delivered after {elapsed:.1f}s, before the delay was over"

    # The fall-back to the backup in the first attempt saw the same triplet.
    on_mx2 = mx2.events("decision", since=m2, rcpt=rcpt, sender=sender)
    assert on_mx2, ("the sender never fell back to mx2 after mx1's 450: Postfix should "
                    "try the next MX on a 4xx to RCPT\n" + topo.postfix["sender"].log())
    assert on_mx2[0]["action"] == "greylist" and on_mx2[0]["reason"] == "early", on_mx2[0]["_line"]
    assert all(d["reason"] != "new" for d in on_mx2), [d["_line"] for d in on_mx2]
    assert int(on_mx2[0]["delay_left"]) <= T.DELAY
    assert on_mx2[0]["net"] == first["net"]
    # The sender's address has a forward-confirmed, non-generic name under
    # sender.test: both MX hosts key it by that pool (greylist.pool_keys'
    # default), so a retry from another of its addresses would meet it too.
    assert first["key"] == on_mx2[0]["key"] == "ptr:sender.test", first["_line"]

    # Let the dust settle: nothing left anywhere, nothing twice.
    wait_until(lambda: sender_queue_empty_for(topo, tok), 20, what="sender queue empty")
    wait_until(lambda: not topo.postfix["mx2"].queued_for(tok), 20, what="mx2 queue empty")
    mailer.assert_exactly_once_and_intact([(tok, 0)])
    assert bounces(topo) == []

    # The pass: on mx1 (straight), or on mx2 at the very edge of the delay
    # (then mx2 relayed it to mx1 as an MX host). Either way reason=triplet
    # after having waited at least the delay.
    passes = [d for d in mx1.events("decision", since=m1, rcpt=rcpt, sender=sender, action="pass")
              if d["client"] == T.ADDR["sender"]]
    passes += mx2.events("decision", since=m2, rcpt=rcpt, sender=sender, action="pass")
    assert len(passes) == 1, [d["_line"] for d in passes]
    assert passes[0]["reason"] == "triplet" and int(passes[0]["waited"]) >= T.DELAY

    # Redis holds one triplet for it, passed, with the parts greygate-ctl
    # shows (the key text: its pool).
    trip = [x for x in topo.redis_triplets() if x.get("r") == rcpt and x.get("s") == sender]
    assert len(trip) == 1, trip
    assert trip[0]["p"] == "1"
    assert trip[0]["n"] == "ptr:sender.test"
    assert trip[0]["s"] == sender.lower()
