"""Servers a test scripts: LoopbackServer (a socket served by a thread),
FakeBackend (misbehaving SMTP backends), ScriptedSMTP (an SMTP server that
misbehaves once at a given step), DnsServer (a private dnsmasq), FakeDns
(a UDP name server answering what the test says) and BannerServer (a
primary MX for the hand-over probe, with relay_mx_zone its DNS)."""

import contextlib
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from .smtp import LineReader
from .util import free_port, wait_until


# --------------------------------------------------------------------------
# Scripted SMTP backends
# --------------------------------------------------------------------------

class LoopbackServer:
    """A socket on 127.0.0.1 served by a thread of its own until close().
    A subclass sets up its own state, then hands its bound socket to
    LoopbackServer.__init__; its serve_once() handles at most one arrival,
    and a socket.timeout (the socket waits 0.1 s at most) or OSError from
    it means only that nothing came this time."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(0.1)
        self.port = sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _run(self):
        while not self._stop.is_set():
            try:
                self.serve_once()
            except (socket.timeout, OSError):
                continue

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


class FakeBackend(LoopbackServer):
    """A misbehaving backend on 127.0.0.1:<free port>. MODE:
    'silent'   accepts connections and never says a word;
    'close'    accepts and closes at once;
    'greet421' greets with 421 and closes;
    'serve'    hands each connection to SERVE(conn) in a thread of its own."""

    def __init__(self, mode, serve=None):
        self.mode = mode
        self.serve = serve
        self.conns = []
        self.accepted = 0
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", free_port(11025)))
        sock.listen(128)
        super().__init__(sock)

    def serve_once(self):
        conn, _ = self.sock.accept()
        self.accepted += 1
        if self.mode == "greet421":
            with contextlib.suppress(OSError):
                conn.sendall(b"421 4.3.2 Service shutting down\r\n")
            conn.close()
        elif self.mode == "close":
            conn.close()
        elif self.mode == "serve":
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()
        else:
            self.conns.append(conn)

    def close(self):
        super().close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()


class ScriptedSMTP:
    """An SMTP server for FakeBackend('serve', ScriptedSMTP(...)) that
    misbehaves once, the first time any connection reaches STEP, and records what
    it got. STEP: 'MAIL', 'RCPT1', 'RCPT2' (the n-th RCPT of the
    connection), 'DATA', 'EOD' (end of data), 'RSET', 'XCLIENT' (any),
    'XCLIENT2' (the second of a connection: one greygate reuses); ACTION:
    'close' (closes instead of replying), 'silent' (never replies), a
    reply code such as '421', '451', '554' (replied instead of the usual,
    then closes if 421), or 'idle421' / 'idleclose' (replies as usual, then
    CLOSE_AFTER seconds later says 421 and closes, or just closes).
    XCLIENT_REFUSE: an ADDR= value whose XCLIENT is refused with 501 on any
    connection (a refusal of one client's attributes).
    WATCH_MAIL: at each MAIL, waits half a second for what comes next
    before replying.
    .lines: the command lines of every connection (list of lists of bytes);
    .delivered: (sender, [recipients]) of every message it accepted;
    .rcpt_with_mail (WATCH_MAIL): for every MAIL, whether the RCPT after it
    had arrived before MAIL was answered."""

    def __init__(self, step=None, action=None, pipelining=False, xclient=False,
                 xclient_refuse=None, close_after=0.3, watch_mail=False):
        self.step, self.action = step, action
        self.pipelining, self.xclient = pipelining, xclient
        self.xclient_refuse = xclient_refuse
        self.close_after = close_after
        self.watch_mail = watch_mail
        self.lines = []
        self.delivered = []
        self.rcpt_with_mail = []
        self.faulted = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, conn):
        faulty = False   # this connection misbehaved
        got = []
        with self._lock:
            self.lines.append(got)
        conn.settimeout(30)
        reader = LineReader(conn)
        line = reader.line

        def fault(step):
            """True when the reply to STEP was replaced (or withheld)."""
            nonlocal faulty
            with self._lock:
                if step != self.step or self.faulted.is_set():
                    return False
                self.faulted.set()
                faulty = True
            if self.action in ("idle421", "idleclose"):
                return False
            if self.action == "close":
                raise EOFError
            if self.action == "silent":   # until greygate gives up on us
                while conn.recv(65536):
                    pass
                raise EOFError
            conn.sendall(f"{self.action} {self.action[0]}.3.0 scripted failure\r\n".encode())
            if self.action == "421":
                raise EOFError
            return True

        def after(step):
            if faulty and step == self.step and self.action in ("idle421", "idleclose"):
                time.sleep(self.close_after)
                if self.action == "idle421":
                    conn.sendall(b"421 4.4.2 backend.test Error: timeout exceeded\r\n")
                raise EOFError

        ehlo = b"250-sink.test\r\n" + (b"250-PIPELINING\r\n" if self.pipelining else b"") \
            + (b"250-XCLIENT ADDR NAME PORT HELO PROTO\r\n" if self.xclient else b"") \
            + b"250 8BITMIME\r\n"
        sender, rcpts, nrcpt, nxclient = None, [], 0, 0
        try:
            conn.sendall(b"220 sink.test ESMTP\r\n")
            while True:
                cmd = line()
                got.append(cmd)
                up = cmd.upper()
                if up.startswith(b"EHLO") or up.startswith(b"HELO"):
                    conn.sendall(ehlo if up.startswith(b"EHLO") else b"250 sink.test\r\n")
                elif up.startswith(b"XCLIENT"):
                    nxclient += 1
                    if self.xclient_refuse and b"ADDR=" + self.xclient_refuse.encode() + b" " in cmd:
                        conn.sendall(b"501 5.5.4 Bad XCLIENT syntax\r\n")
                    elif not fault("XCLIENT") and not fault(f"XCLIENT{nxclient}"):
                        conn.sendall(b"220 sink.test ESMTP\r\n")
                elif up.startswith(b"MAIL"):
                    if self.watch_mail:
                        self.rcpt_with_mail.append(reader.next_starts(b"RCPT", 0.5))
                    if not fault("MAIL"):
                        sender, rcpts, nrcpt = cmd[10:].decode(errors="replace"), [], 0
                        conn.sendall(b"250 2.1.0 Ok\r\n")
                        after("MAIL")
                elif up.startswith(b"RCPT"):
                    nrcpt += 1
                    if not fault(f"RCPT{nrcpt}"):
                        rcpts.append(cmd[8:].decode(errors="replace"))
                        conn.sendall(b"250 2.1.5 Ok\r\n")
                        after(f"RCPT{nrcpt}")
                elif up == b"DATA":
                    if not fault("DATA"):
                        conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        while line() != b".":
                            pass
                        got.append(b".")
                        if not fault("EOD"):
                            self.delivered.append((sender, rcpts))
                            conn.sendall(b"250 2.0.0 Ok: queued\r\n")
                        sender, rcpts = None, []
                elif up == b"RSET":
                    if not fault("RSET"):
                        sender, rcpts, nrcpt = None, [], 0
                        conn.sendall(b"250 2.0.0 Ok\r\n")
                elif up == b"QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    break
                else:
                    conn.sendall(b"250 2.0.0 Ok\r\n")
        except (EOFError, OSError):
            pass
        finally:
            conn.close()


# --------------------------------------------------------------------------
# DNS: dnsmasq
# --------------------------------------------------------------------------

class DnsServer:
    """A private dnsmasq on 127.0.0.1:<free port>, serving exactly LINES
    (dnsmasq.conf syntax: mx-host=, host-record=, cname=, ptr-record=,
    dns-rr=, server=/domain/addr#port ...). Names under the LOCAL domains
    that it has no record for are answered NXDOMAIN at once; it never asks
    anybody else unless a server= line says so."""

    def __init__(self, workdir, lines=(), local=("example", "test")):
        self.workdir = Path(workdir)
        self.port = free_port(15353)
        self.lines = list(lines)
        self.local = local
        self.proc = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        conf = self.workdir / "dnsmasq.conf"
        body = [f"port={self.port}", "listen-address=127.0.0.1", "bind-interfaces",
                "no-resolv", "no-hosts", "no-negcache", "log-queries",
                f"log-facility={self.workdir / 'dnsmasq.log'}"]
        body += [f"local=/{d}/" for d in self.local]
        body += self.lines
        conf.write_text("\n".join(body) + "\n")
        self.proc = subprocess.Popen(["dnsmasq", "--keep-in-foreground", "-C", str(conf),
                                      "--user=root", "--pid-file="],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        wait_until(lambda: self._answers() or self.proc.poll() is not None, 10,
                   what="dnsmasq answering")
        if self.proc.poll() is not None:
            raise AssertionError("dnsmasq did not start: "
                                 + self.proc.stderr.read().decode(errors="replace"))
        return self

    def _answers(self):
        # any well-formed reply to a query means it is up
        q = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
             b"\x05probe\x04test\x00\x00\x01\x00\x01")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(q, ("127.0.0.1", self.port))
                return len(s.recv(512)) >= 12
            except OSError:
                return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class FakeDns(LoopbackServer):
    """A UDP name server on 127.0.0.1:<port> that a test scripts: a subclass's
    answer(name, qtype) gives (rcode, [records], tc) for each query, or None
    to say nothing at all. NAME is lower case, a dot inside a label written
    "\\.". .queries: the (name, qtype) of every query, in order. Nothing is
    listening on TCP, so a retry after TC finds the port closed."""

    def __init__(self):
        self.queries = []
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        super().__init__(sock)

    @staticmethod
    def _question(q):
        labels, off = [], 12
        while q[off]:
            n = q[off]
            # a dot inside a label stays told apart from the dot between
            labels.append(q[off + 1:off + 1 + n].decode("latin-1").lower().replace(".", "\\."))
            off += 1 + n
        qtype = struct.unpack(">H", q[off + 1:off + 3])[0]
        return ".".join(labels), qtype, off + 5

    def serve_once(self):
        q, peer = self.sock.recvfrom(4096)
        try:
            name, qtype, qend = self._question(q)
        except (IndexError, struct.error):
            return
        self.queries.append((name, qtype))
        a = self.answer(name, qtype)
        if a is None:
            return
        rcode, records, tc = a
        rd = struct.unpack(">H", q[2:4])[0] & 0x0100
        flags = 0x8000 | 0x0400 | rd | 0x0080 | (0x0200 if tc else 0) | rcode  # QR AA RD RA TC
        self.sock.sendto(q[:2] + struct.pack(">HHHHH", flags, 1, len(records), 0, 0) +
                         q[12:qend] + b"".join(records), peer)


class SilentDns(FakeDns):
    """A name server that takes queries, counts them and never answers
    (for a site or a zone dnsmasq forwards to it: server=/zone/ip#port)."""

    def answer(self, name, qtype):
        return None


# --------------------------------------------------------------------------
# A primary MX for the hand-over probe
# --------------------------------------------------------------------------

PRIMARY_ADDR = "127.0.0.3"


def relay_mx_zone(primary_addr=PRIMARY_ADDR):
    """relay.example: its primary MX on PRIMARY_ADDR, its backup this host
    (backup.relay.example = 192.0.2.20, a greygate's my_addresses)."""
    return ["mx-host=relay.example,primary.relay.example,10",
            "mx-host=relay.example,backup.relay.example,20",
            f"host-record=primary.relay.example,{primary_addr}",
            "host-record=backup.relay.example,192.0.2.20"]


class BannerServer:
    """A primary MX as greygate's hand-over probe sees it, on ADDR:port
    (not 127.0.0.1, where greygate listens: that is "this host"). Modes:
    "down" (nothing listens: connection refused), "220" (greets, waits for
    QUIT), "554" (greets with a refusal), "silent" (accepts, never speaks)."""

    def __init__(self, port, mode="down", addr=PRIMARY_ADDR):
        self.port = port
        self.addr = addr
        self.mode = None
        self.lsock = None
        self.connections = 0
        self.received = []          # lines the probes sent
        self.lock = threading.Lock()
        self.conns = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()
        self.set_mode(mode)

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode
            if mode == "down" and self.lsock is not None:
                self.lsock.close()
                self.lsock = None
            elif mode != "down" and self.lsock is None:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((self.addr, self.port))
                s.listen(16)
                s.settimeout(0.05)
                self.lsock = s

    def _accept_loop(self):
        while not self._stop.is_set():
            with self.lock:
                s, mode = self.lsock, self.mode
            if s is None:
                time.sleep(0.02)
                continue
            try:
                conn, _ = s.accept()
            except (socket.timeout, OSError):
                continue
            with self.lock:
                self.connections += 1
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, mode), daemon=True).start()

    def _serve(self, conn, mode):
        try:
            conn.settimeout(5)
            if mode == "220":
                conn.sendall(b"220 primary.relay.example ESMTP\r\n")
            elif mode == "554":
                conn.sendall(b"554 5.3.2 primary.relay.example not accepting mail\r\n")
            buf = b""
            while True:                 # until the prober closes
                chunk = conn.recv(1024)
                if not chunk:
                    break
                buf += chunk
            with self.lock:
                self.received += buf.decode("ascii", "replace").splitlines()
        except OSError:
            pass
        finally:
            conn.close()

    def count(self):
        with self.lock:
            return self.connections

    def close(self):
        self._stop.set()
        self.thread.join(5)
        with self.lock:
            if self.lsock is not None:
                self.lsock.close()
                self.lsock = None
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass
