"""Redis outage in the middle of traffic (README.md, "When Redis fails"):
with store.failure = accept greylisting is skipped while the store is away;
no message is lost, none is refused with a 5xx, and greylisting resumes when
Redis is back. Two kinds of outage: Redis killed (connections reset, then an
empty Redis comes back) and Redis cut off (connections hang: every request
times out)."""

import time

from harness.util import wait_until

import topology as T
from sending import bounces, sender_queue_empty_for


def _connected_since(gg, mark):
    return [e for e in gg.events("store", since=mark) if e.get("state") == "connected"]


def _store_up(gg):
    """The last word of GG about its Redis connection is "connected"."""
    ev = [e for e in gg.events("store") if e.get("state")]
    return ev and ev[-1]["state"] == "connected"


def test_redis_outage_mid_traffic(topo, mailer, tok):
    mx1, mx2 = topo.greygate["mx1"], topo.greygate["mx2"]
    users = [u for u in T.mailboxes() if not u.startswith("postmaster@")][5:10]
    sender = f"redis-{tok}@{T.SENDER_DOMAIN}"
    after = f"redisback-{tok}@{T.SENDER_DOMAIN}"
    m1 = mx1.log_mark()
    smark = topo.postfix["sender"].log_mark()
    n = 0

    def send(snd, count):
        nonlocal n
        keys = []
        for _ in range(count):
            mailer.send(snd, users[n % len(users)], tok, n)
            keys.append((tok, n))
            n += 1
        return keys

    # A: greylisted while Redis is up; their retries come during the outage
    a = send(sender, 3)
    wait_until(lambda: len(mx1.events("decision", since=m1, sender=sender, action="greylist"))
                 >= 3, 20, what="phase A greylisted on mx1")

    try:
        # B: Redis killed
        topo.redis_kill()
        mark_b = mx1.log_mark()
        b = send(sender, 3)
        mailer.wait_delivered(b, timeout=30)
        fails = mx1.events("decision", since=mark_b, reason="store-failure", sender=sender)
        assert fails and all(d["action"] == "pass" for d in fails), [d["_line"] for d in fails]

        # Redis back (empty: no persistence), both gateways reconnect
        mark_up1, mark_up2 = mx1.log_mark(), mx2.log_mark()
        topo.redis_start()
        wait_until(lambda: _connected_since(mx1, mark_up1) and _connected_since(mx2, mark_up2),
                     20, interval=0.2, what="both greygates reconnected to Redis")

        # C: Redis cut off: requests hang until store.redis.timeout_ms
        topo.link("redis", False)
        mark_c = mx1.log_mark()
        c = send(sender, 3)
        mailer.wait_delivered(c, timeout=40)
        fails = mx1.events("decision", since=mark_c, reason="store-failure", sender=sender)
        assert fails and all(d["action"] == "pass" for d in fails), [d["_line"] for d in fails]
    finally:
        topo.link("redis", True)
        if topo.redis is None or topo.redis.poll() is not None:
            topo.redis_start()
    # (a gateway that had no traffic during the cut never noticed it)
    wait_until(lambda: _store_up(mx1) and _store_up(mx2), 20, interval=0.2,
                 what="both greygates connected to Redis")

    # D: greylisting works again (a new sender: new triplets)
    mark_d = mx1.log_mark()
    d = send(after, 2)
    wait_until(lambda: mx1.events("decision", since=mark_d, sender=after, action="greylist",
                                    reason="new"), 20, what="greylisting again after the outage")

    everything = a + b + c + d
    mailer.wait_delivered(everything, timeout=60)
    wait_until(lambda: sender_queue_empty_for(topo, sender) and
                 sender_queue_empty_for(topo, after), 30, what="sender queue empty")
    wait_until(lambda: not topo.postfix["mx2"].queued_for(tok), 30, what="mx2 queue empty")
    time.sleep(1)
    mailer.assert_exactly_once_and_intact(everything)
    assert bounces(topo) == []

    # No 5xx anywhere on the way: not from greygate, not seen by the sender.
    # (A pipelined DATA after recipients that all got 4xx is answered "554
    # 5.5.1 no valid recipients", as Postfix's smtpd does; the sender goes
    # by the 4xx of its recipients: deferred, as its log shows.)
    for gg in (mx1, mx2):
        for who in (sender, after):
            fives = [e["_line"] for e in gg.events("reject", since=0, sender=who)
                     if e.get("reply", "").startswith("5")
                     and not (e.get("cmd") == "DATA" and "no valid recipients" in e["reply"])]
            assert not fives, fives
    said5 = [l for l in topo.postfix["sender"].log(smark).splitlines() if " said: 5" in l]
    assert not said5, said5
