"""Small helpers every part of the harness uses: where the binary is, the
addresses tests speak from, unique tokens, polling, free ports, key=value log
lines and /proc process look-ups."""

import os
import re
import socket
import time
import uuid
from pathlib import Path


HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent          # parent of test/
GREYGATE_BIN = os.environ.get("GREYGATE_BIN", str(REPO_ROOT / "build" / "greygate"))
# greygate-ctl beside the greygate under test
GREYGATE_CTL = os.environ.get("GREYGATE_CTL",
                              str(Path(GREYGATE_BIN).resolve().parent / "greygate-ctl"))

CLIENT_ADDR = "127.0.0.5"
PROBE_ADDR = "127.0.0.254"            # the greygate fixture's readiness probe
CLIENT_HELO = "client.helo.test"


def token():
    """A short unique token to tie mails and log lines to one test."""
    return uuid.uuid4().hex[:12]


def wait_until(pred, timeout, interval=0.05, what="condition"):
    """Polls PRED until it returns a truthy value; returns that value or
    raises AssertionError after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# Free ports
# --------------------------------------------------------------------------

_handed_out = set()


def _port_is_free(port, host="127.0.0.1"):
    for h in (host, "0.0.0.0"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((h, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port(base=10025):
    """A TCP port on 127.0.0.1 that nothing listens on (and that this process
    has not handed out before). Scans upward from BASE plus a per-process
    offset, staying below the ephemeral range (32768+)."""
    start = base + (os.getpid() % 97) * 13
    for i in range(4000):
        port = 10000 + (start - 10000 + i) % 22000
        if port in _handed_out:
            continue
        if _port_is_free(port):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port found")


def tcp_listening(port, host="127.0.0.1"):
    """Whether some socket listens on HOST:PORT (IPv4), read from
    /proc/net/tcp so that checking does not open a session."""
    want = {f"{socket.htonl(int.from_bytes(socket.inet_aton(h), 'big')):08X}:{port:04X}"
            for h in (host, "0.0.0.0")}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == "0A" and parts[1] in want:
                return True
    return False


_KV = re.compile(r'([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_kv(line):
    d = {}
    for k, v in _KV.findall(line):
        if v.startswith('"'):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        d[k] = v
    return d


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pgid_members(pgid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(d))
    return out


def children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        fields = st.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            kids.append((int(d), comm))
    return kids
