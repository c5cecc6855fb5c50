"""Redis for the tests: Resp, a minimal RESP2 client (python3-redis is not a
dependency); RedisServer, a private redis-server; RedisMonitor (MONITOR in
a thread); HugeReplyRedis, a hostile fake that announces huge replies."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .util import free_port, wait_until


class RedisError(Exception):
    pass


class Resp:
    """Minimal RESP2 client (python3-redis is not a dependency)."""

    def __init__(self, port, host="127.0.0.1", timeout=5):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def close(self):
        with contextlib.suppress(OSError):
            self.f.close()
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def cmd(self, *args):
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        self.sock.sendall(b"*%d\r\n" % len(parts) +
                          b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        return self._read()

    def _read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            return self.f.read(n + 2)[:-2].decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RedisError(f"bad RESP line {line!r}")


# --------------------------------------------------------------------------
# A private Redis
# --------------------------------------------------------------------------

class RedisServer:
    """redis-server on 127.0.0.1:<port>, no persistence, in a temp dir. Can be
    stopped and started again on the same port, or frozen (SIGSTOP)."""

    def __init__(self):
        self.port = free_port(16379)
        self.dir = Path(tempfile.mkdtemp(prefix="gg-redis-"))
        self.proc = None
        self.paused = False
        self.starts = 0

    @property
    def logfile(self):
        return self.dir / "redis.log"

    def start(self, timeout=10):
        assert self.proc is None, "redis already running"
        self.starts += 1
        self.logf = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--dir", str(self.dir), "--dbfilename", "never.rdb"],
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf,
            start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited: {self.logfile.read_text()}")
            try:
                with Resp(self.port, timeout=1) as r:
                    return r.cmd("PING") == "PONG"
            except (OSError, ConnectionError, RedisError):
                return False
        wait_until(up, timeout, what=f"redis on port {self.port}")
        return self

    def stop(self):
        if self.proc is None:
            return
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.logf.close()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        if self.proc is not None and self.paused:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def client(self):
        return Resp(self.port)

    def cmd(self, *args):
        with self.client() as r:
            return r.cmd(*args)

    def keys(self, pattern="*"):
        """All keys matching PATTERN (SCAN, from the test, never greygate)."""
        out, cursor = [], "0"
        with self.client() as r:
            while True:
                cursor, batch = r.cmd("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
                out += batch
                if cursor == "0":
                    return sorted(set(out))

    def commandstats(self):
        stats = {}
        for line in self.cmd("INFO", "commandstats").splitlines():
            m = re.match(r"cmdstat_([^:]+):calls=(\d+)", line)
            if m:
                stats[m.group(1)] = int(m.group(2))
        return stats

    def destroy(self):
        try:
            self.stop()
        finally:
            if not os.environ.get("GG_KEEP_TMP"):
                shutil.rmtree(self.dir, ignore_errors=True)


class RedisMonitor:
    """MONITOR in a thread: every command Redis runs, with the client that
    sent it ("lua" for commands run by a script)."""

    def __init__(self, rs):
        self.conn = rs.client()
        assert self.conn.cmd("MONITOR") == "OK"
        self.lines = []
        self.conn.sock.settimeout(None)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        with contextlib.suppress(Exception):
            while True:
                line = self.conn.f.readline()
                if not line:
                    return
                self.lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))

    def stop(self):
        with contextlib.suppress(OSError):
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()
        self.thread.join(5)

    def commands(self):
        """[(client, command name lower-cased)]"""
        out = []
        for l in self.lines:
            m = re.match(r'^\+?[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"', l)
            if m:
                out.append((m.group(1), m.group(2).lower()))
        return out


# --------------------------------------------------------------------------
# A hostile one
# --------------------------------------------------------------------------

HUGE = 1_000_000_000          # announced bulk length
STREAM = 300 * 1024 * 1024    # what the fake streams at most


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
        conn = self._connected()
        try:
            while not self.stopping:
                args = self._command(f)
                if not args or not self._answer(s, args, conn):
                    return
        except OSError:
            pass
        finally:
            s.close()

    def _connected(self):
        """A subclass's state for a new connection, given to _answer."""
        return None

    def _answer(self, s, args, conn):
        """Answers one command ARGS on S; False ends the connection. A
        subclass answers otherwise by overriding this."""
        name = args[0].upper()
        if name in (b"EVALSHA", b"EVAL"):
            self._stream(s)
            return False
        if name == b"SCRIPT":
            s.sendall(b"$40\r\n" + b"0" * 40 + b"\r\n")
        else:
            s.sendall(b"+OK\r\n")
        return True

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
