"""Redis for the tests: Resp, a minimal RESP2 client (python3-redis is not a
dependency); RedisServer, a private redis-server; RedisCluster, six of them
made a Redis Cluster (3 primaries, 3 replicas); RedisMonitor (MONITOR in a
thread); HugeReplyRedis, a hostile fake that announces huge replies."""

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

    def __init__(self, extra=(), workdir=None):
        self.port = free_port(16379)
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="gg-redis-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.extra = list(extra)         # more redis-server arguments
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
             "--dir", str(self.dir), "--dbfilename", "never.rdb", *self.extra],
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


class RedisCluster:
    """A Redis Cluster on 127.0.0.1: six redis-servers in cluster mode (bus
    ports chosen like the others, not port + 10000), joined by
    `redis-cli --cluster create ... --cluster-replicas 1`, with a short
    cluster-node-timeout so that a killed primary's replica takes over in a
    few seconds. Nodes are RedisServer objects."""

    def __init__(self, node_timeout_ms=1000):
        self.dir = Path(tempfile.mkdtemp(prefix="gg-cluster-"))
        self.node_timeout_ms = node_timeout_ms
        self.nodes = []

    def start(self, timeout=60):
        for i in range(6):
            bus = free_port(17379)
            n = RedisServer(workdir=self.dir / f"node{i}", extra=[
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--cluster-port", str(bus),
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"])
            self.nodes.append(n)
            n.start()
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        r = subprocess.run(["redis-cli", "--cluster", "create", *addrs,
                            "--cluster-replicas", "1", "--cluster-yes"],
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, r.stdout + r.stderr
        wait_until(self.ready, timeout, interval=0.2, what="the cluster ready")
        return self

    def alive(self):
        return [n for n in self.nodes if n.proc is not None and not n.paused]

    def ready(self):
        """Every live node says the cluster is ok, 3 primaries serve all slots
        and each has a replica in sync."""
        try:
            for n in self.alive():
                if "cluster_state:ok" not in n.cmd("CLUSTER", "INFO"):
                    return False
            prim = self.primaries()
            if len(prim) != 3:
                return False
            for n in self.alive():
                info = n.cmd("INFO", "replication")
                if "role:slave" in info and "master_link_status:up" not in info:
                    return False
            return True
        except (OSError, ConnectionError, RedisError):
            return False

    def by_port(self, port):
        return next(n for n in self.nodes if n.port == int(port))

    def _table(self, n=None):
        """CLUSTER NODES as dicts, asked of N (a live node by default)."""
        out = []
        for line in (n or self.alive()[0]).cmd("CLUSTER", "NODES").splitlines():
            f = line.split()
            out.append({"id": f[0], "port": int(f[1].split("@")[0].rsplit(":", 1)[1]),
                        "flags": f[2].split(","), "slots": f[8:]})
        return out

    def node_id(self, node):
        return node.cmd("CLUSTER", "MYID")

    def primaries(self):
        """The live primaries that serve slots, by what a live node says."""
        return [self.by_port(e["port"]) for e in self._table()
                if "master" in e["flags"] and "fail" not in e["flags"] and e["slots"]
                and self.by_port(e["port"]) in self.alive()]

    def slot(self, key):
        return self.alive()[0].cmd("CLUSTER", "KEYSLOT", key)

    def owner(self, slot):
        """The primary serving SLOT, by CLUSTER SLOTS of a live node."""
        for lo, hi, prim, *_ in self.alive()[0].cmd("CLUSTER", "SLOTS"):
            if int(lo) <= slot <= int(hi):
                return self.by_port(prim[1])
        raise AssertionError(f"no node serves slot {slot}")

    def replica_of(self, primary):
        """The live node replicating PRIMARY, by what the replicas themselves
        say (INFO replication): the primary's own CLUSTER NODES may not list
        its replica yet when the cluster has only just formed."""
        def find():
            for n in self.alive():
                if n is primary:
                    continue
                info = n.cmd("INFO", "replication")
                if "role:slave" in info and "master_link_status:up" in info \
                        and re.search(rf"^master_port:{primary.port}\s*$", info, re.M):
                    return n
            return None
        wait_until(lambda: find() is not None, 15, interval=0.1,
                   what=f"a replica of {primary.port}")
        return find()

    def keys(self, pattern="*"):
        """The keys matching PATTERN on every primary: {port: [keys]}."""
        return {n.port: n.keys(pattern) for n in self.primaries()}

    def migrate_start(self, slot, src, dst):
        """SLOT marked importing on DST and migrating on SRC: keys not on SRC
        are now answered with ASK."""
        assert dst.cmd("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(src)) == "OK"
        assert src.cmd("CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(dst)) == "OK"

    @staticmethod
    def migrate_keys(slot, src, dst):
        """SLOT's keys moved from SRC to DST (the slot still migrating)."""
        while True:
            ks = src.cmd("CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not ks:
                return
            assert src.cmd("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000,
                           "KEYS", *ks) == "OK"

    def migrate_finish(self, slot, src, dst):
        """SLOT's keys moved from SRC to DST, and DST made its owner on every
        primary: SRC answers MOVED from now on."""
        self.migrate_keys(slot, src, dst)
        did = self.node_id(dst)
        for n in [dst, src] + [p for p in self.primaries() if p not in (src, dst)]:
            assert n.cmd("CLUSTER", "SETSLOT", slot, "NODE", did) == "OK"
        wait_until(lambda: all(self.owner_by(n, slot) == dst.port for n in self.alive()),
                   15, interval=0.1, what=f"every node seeing slot {slot} on {dst.port}")

    def move_slot(self, slot, src, dst):
        self.migrate_start(slot, src, dst)
        self.migrate_finish(slot, src, dst)

    @staticmethod
    def owner_by(n, slot):
        for lo, hi, prim, *_ in n.cmd("CLUSTER", "SLOTS"):
            if int(lo) <= slot <= int(hi):
                return int(prim[1])
        return None

    def destroy(self):
        for n in self.nodes:
            with contextlib.suppress(Exception):
                n.stop()
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
