"""The listener when the process runs out of descriptors: no busy loop, no
flood of log lines, clients answered, and service back once descriptors are
free again."""
import os
import resource
import time

from harness.smtp import ConnectionClosed, RawSMTP, assert_reply
from harness.util import wait_until


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; the split starts at field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def greeting(port, timeout):
    """The greeting of a new connection and the connection (None: no
    greeting within TIMEOUT seconds, connection closed)."""
    c = RawSMTP(port, timeout=timeout)
    try:
        return c.reply(), c
    except (ConnectionClosed, OSError):
        c.close()
        return None, None


def served(port):
    r, c = greeting(port, 2)
    if c:
        c.close()
    return r is not None and r.code == 220


def test_descriptor_exhaustion(greygate_factory):
    gg = greygate_factory()
    nfds = len(os.listdir(f"/proc/{gg.pid}/fd"))
    limit = nfds + 8
    resource.prlimit(gg.pid, resource.RLIMIT_NOFILE, (limit, limit))
    mark = gg.log_mark()
    held, over = [], []
    try:
        # until the process cannot take one more
        for _ in range(limit):
            r, c = greeting(gg.port, 2)
            if r is None or r.code != 220:
                over.append((r, c))
                break
            held.append(c)
        assert over, f"{len(held)} sessions and still descriptors left"
        # a few more clients knock while it is full
        for _ in range(4):
            over.append(greeting(gg.port, 1))
        cpu0 = cpu_seconds(gg.pid)
        time.sleep(2)
        cpu = cpu_seconds(gg.pid) - cpu0
        failures = [l for l in gg.log_lines()[mark:] if "accept failed" in l]
        assert cpu < 0.5, f"{cpu:.2f} s of CPU in 2 s while out of descriptors"
        assert len(failures) <= 3, f"{len(failures)} lines about failed accepts:\n" \
            + "\n".join(failures[:5])
        # the clients it could not take were told to come back later
        for r, _ in over:
            assert r is not None, "a client got no greeting at all"
            assert_reply(r, 421, "4.3.2")
    finally:
        for c in held:
            c.close()
        for _, c in over:
            if c:
                c.close()
    # descriptors free again (once the sessions have seen their clients
    # leave): served again
    wait_until(lambda: served(gg.port), 3, interval=0.1, what="a 220 greeting")
