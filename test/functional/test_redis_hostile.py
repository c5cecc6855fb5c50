"""A hostile or broken "Redis" (the store of the RCPT decision): greygate's
replies from Redis are tiny, so a reply over greygate's bound ends the
connection instead of taking the memory it announces; decisions follow
store.failure meanwhile and greygate reconnects with its usual back-off."""

import socket
import threading
import time

import pytest

from conftest import CLIENT_ADDR, RawSMTP, assert_reply, free_port, wait_until

HUGE = 1_000_000_000          # announced bulk length
STREAM = 300 * 1024 * 1024    # what the fake streams at most
RSS_SLACK_KB = 50 * 1024


class HugeReplyRedis:
    """A fake Redis on 127.0.0.1 that answers PING/AUTH/SELECT/SCRIPT LOAD
    like Redis and every EVALSHA/EVAL with a bulk string announced as 1 GB
    (or an array of 10^9 elements), then streams up to STREAM bytes of it
    while the peer reads, and holds the connection."""

    def __init__(self, shape):
        self.shape = shape
        self.port = free_port(16379)
        self.lsock = socket.create_server(("127.0.0.1", self.port))
        self.lsock.settimeout(0.2)
        self.connections = 0
        self.streamed = []           # bytes sent per huge reply
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    @staticmethod
    def _command(f):
        line = f.readline()
        if not line.startswith(b"*"):
            return None
        args = []
        for _ in range(int(line[1:])):
            n = int(f.readline()[1:])
            args.append(f.read(n + 2)[:-2])
        return args

    def _serve(self, s):
        s.settimeout(10)
        f = s.makefile("rb")
        try:
            while not self.stopping:
                args = self._command(f)
                if not args:
                    return
                name = args[0].upper()
                if name in (b"EVALSHA", b"EVAL"):
                    self._stream(s)
                    return
                if name == b"SCRIPT":
                    s.sendall(b"$40\r\n" + b"0" * 40 + b"\r\n")
                else:
                    s.sendall(b"+OK\r\n")
        except OSError:
            pass
        finally:
            s.close()

    def _stream(self, s):
        sent = 0
        if self.shape == "bulk":
            head, chunk = b"$%d\r\n" % HUGE, b"x" * 65536
        else:
            head, chunk = b"*%d\r\n" % HUGE, b":1\r\n" * 16384
        try:
            s.sendall(head)
            while sent < STREAM and not self.stopping:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass                    # greygate dropped the connection
        self.streamed.append(sent)
        while not self.stopping:    # and holds the connection, unfinished
            time.sleep(0.1)

    def stop(self):
        self.stopping = True
        self.lsock.close()


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
