"""A hostile or broken "Redis" (the store of the RCPT decision): greygate's
replies from Redis are tiny, so a reply over greygate's bound ends the
connection instead of taking the memory it announces; decisions follow
store.failure meanwhile and greygate reconnects with its usual back-off."""

import pytest

from harness.redis import STREAM, HugeReplyRedis
from harness.smtp import RawSMTP, assert_reply
from harness.util import CLIENT_ADDR, wait_until

RSS_SLACK_KB = 50 * 1024


@pytest.mark.parametrize("shape,detail", [
    ("bulk", "bulk string announced as 1000000000 bytes"),
    ("array", "too many or too large elements"),
])
def test_redis_huge_reply_dropped(greygate_factory, tok, shape, detail):
    fake = HugeReplyRedis(shape)
    try:
        gg = greygate_factory(
            start=False,
            greylist={"enabled": True, "delay": 2, "retry_window": 3600,
                      "pass_lifetime": 86400, "awl_threshold": 0,
                      "max_new_per_client": 100},
            store={"type": "redis", "file": "", "failure": "tempfail",
                   "redis": {"host": "127.0.0.1", "port": fake.port,
                             "timeout_ms": 2000, "connect_timeout_ms": 1000}})
        gg.start()
        gg.wait_event("store", state="connected", timeout=10)
        rss0 = gg.rss_kb("VmHWM")      # peaks: the buffer may be freed later
        mark = gg.log_mark()
        rcpt = f"r-{tok}@test.example"
        with RawSMTP(gg.port, source=CLIENT_ADDR, timeout=30) as c:
            c.greeting()
            c.ehlo()
            assert_reply(c.cmd(f"MAIL FROM:<s@{tok}.example>"), 250)
            r = c.cmd(f"RCPT TO:<{rcpt}>")
            assert_reply(c.cmd("QUIT"), 221)
        # store.failure = tempfail
        assert r.code == 451, r
        ev = gg.wait_event("decision", since=mark, timeout=5, rcpt=rcpt)[-1]
        assert ev["reason"] == "store-failure", ev
        wait_until(lambda: fake.streamed, 30, what="the fake's huge reply to end")
        rss1 = gg.rss_kb("VmHWM")
        assert rss1 - rss0 < RSS_SLACK_KB, \
            f"peak RSS {rss0} kB -> {rss1} kB while the fake streamed {fake.streamed[0]} bytes"
        assert fake.streamed[0] < STREAM, "greygate kept the connection for the whole reply"
        # one line: what, how big, what happens next
        lost = gg.wait_event("store", since=mark, state="disconnected", timeout=5)[-1]
        assert "reply over 65536 bytes" in lost["detail"], lost
        assert detail in lost["detail"] and "reconnect" in lost["detail"], lost
        # and it comes back with the usual back-off
        gg.wait_event("store", since=mark, state="connected", timeout=10)
        wait_until(lambda: fake.connections >= 2, 5, what="a second connection")
    finally:
        fake.stop()
