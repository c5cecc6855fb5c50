"""The client side of SMTP for the tests: RawSMTP (byte-level, pipelining,
smuggling, limits), its Reply and assert_reply, LineReader (CRLF lines for
the fake servers), and building DATA payloads (make_message, dot_stuff)."""

import contextlib
import re
import socket
import time

from .util import CLIENT_ADDR, CLIENT_HELO


# --------------------------------------------------------------------------
# Raw SMTP client (pipelining, smuggling, limits)
# --------------------------------------------------------------------------

class ConnectionClosed(Exception):
    pass


class Reply:
    def __init__(self, lines):
        self.lines = lines                      # full lines, without CRLF
        self.code = int(lines[0][:3])
        first = lines[0][4:]
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})\b", first)
        self.enhanced = m.group(1) if m else None
        self.texts = [l[4:] for l in lines]     # text after "NNN-" / "NNN "

    @property
    def text(self):
        return "\n".join(self.lines)

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"Reply({self.text!r})"

    def is_(self, code, enhanced=None):
        return self.code == code and (enhanced is None or self.enhanced == enhanced)


def assert_reply(reply, code, enhanced=None, contains=None):
    assert reply.code == code, f"expected {code} {enhanced or ''}, got: {reply.text!r}"
    if enhanced is not None:
        assert reply.enhanced == enhanced, f"expected {code} {enhanced}, got: {reply.text!r}"
    if contains is not None:
        assert contains.lower() in reply.text.lower(), \
            f"expected {contains!r} in reply, got: {reply.text!r}"
    return reply


class RawSMTP:
    """Byte-level SMTP client: send arbitrary bytes, read complete replies
    (multi-line ones included)."""

    def __init__(self, port, host="127.0.0.1", source=CLIENT_ADDR, timeout=15):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0))
        self.buf = b""
        self.closed_by_peer = False

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for reply")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed_by_peer = True
            raise ConnectionClosed(f"connection closed by peer; unread: {self.buf!r}")
        self.buf += chunk

    def readline(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self, timeout=None):
        lines = []
        while True:
            line = self.readline(timeout)
            assert re.match(r"^[2-5]\d\d([ -]|$)", line), f"malformed reply line {line!r}"
            lines.append(line)
            if len(line) < 4 or line[3] == " ":
                return Reply(lines)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        self.send(line.encode() + b"\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply(timeout)

    def greeting(self):
        return assert_reply(self.reply(), 220)

    def ehlo(self, name=CLIENT_HELO):
        return assert_reply(self.cmd(f"EHLO {name}"), 250)

    def wait_closed(self, timeout=5):
        """True when the peer closes the connection within TIMEOUT (any data
        still arriving is returned in self.buf)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except ConnectionClosed:
            return True
        except (socket.timeout, TimeoutError):
            return False

    def send_message(self, mail_from, rcpts, data, ehlo=True):
        """Convenience: one transaction with ready-made DATA bytes (already
        dot-stuffed, ending with CRLF.CRLF). Returns the end-of-data reply."""
        self.start_data(mail_from, rcpts, ehlo)
        self.send(data)
        return self.reply()

    def start_data(self, mail_from, rcpts, ehlo=True):
        """Greeting and EHLO (unless EHLO is false), MAIL, each RCPT, DATA:
        each must succeed; the body is the caller's."""
        if ehlo:
            self.greeting()
            self.ehlo()
        assert_reply(self.cmd(f"MAIL FROM:<{mail_from}>"), 250)
        for r in rcpts:
            assert_reply(self.cmd(f"RCPT TO:<{r}>"), 250)
        assert_reply(self.cmd("DATA"), 354)


# --------------------------------------------------------------------------
# Lines for the fake servers
# --------------------------------------------------------------------------

class LineReader:
    """CRLF-ended lines from CONN, for the fake SMTP servers; .buf holds
    what came after the last line taken."""

    def __init__(self, conn):
        self.conn = conn
        self.buf = b""

    def wait_line(self):
        """True once a whole line is buffered, False at end of stream."""
        while b"\r\n" not in self.buf:
            data = self.conn.recv(65536)
            if not data:
                return False
            self.buf += data
        return True

    def line(self):
        if not self.wait_line():
            raise EOFError
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def next_starts(self, prefix, wait):
        """Whether the next line, if it has come within WAIT seconds,
        starts with PREFIX (upper case)."""
        timeout = self.conn.gettimeout()
        self.conn.settimeout(wait)
        try:
            self.wait_line()
        except socket.timeout:
            pass
        finally:
            self.conn.settimeout(timeout)
        return self.buf.upper().startswith(prefix)


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------

def make_message(tok, body=b"Hello.\r\n", subject="test", extra_headers=b""):
    """A complete RFC 5322 message with CRLF line ends, not dot-stuffed."""
    head = (f"From: <sender-{tok}@sender.example>\r\n"
            f"To: <rcpt-{tok}@test.example>\r\n"
            f"Subject: {subject} {tok}\r\n"
            f"Message-ID: <{tok}@client.helo.test>\r\n").encode() + extra_headers
    return head + b"\r\n" + body


def dot_stuff(msg):
    """CRLF message -> DATA payload: leading dots doubled, CRLF.CRLF appended."""
    lines = msg.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines)
    return out + b".\r\n"
