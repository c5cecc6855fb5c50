"""Postfix's policy delegation protocol, as a test speaks it to greygate's
policy service (README.md, "As a Postfix policy service")."""

from .util import CLIENT_ADDR


def policy_request(**attrs):
    """One request at RCPT, as Postfix's smtpd sends it, with ATTRS over
    the defaults (an unnamed client: client_name and reverse_client_name
    "unknown")."""
    base = {"request": "smtpd_access_policy", "protocol_state": "RCPT",
            "protocol_name": "ESMTP", "client_address": CLIENT_ADDR,
            "client_name": "unknown", "reverse_client_name": "unknown",
            "helo_name": "client.example", "instance": "1.2.3"}
    base.update(attrs)
    return "".join(f"{k}={v}\n" for k, v in base.items()).encode() + b"\n"


def read_answers(sock, n, timeout=30):
    """The next N answers on SOCK, without their blank lines."""
    buf = b""
    sock.settimeout(timeout)
    while buf.count(b"\n\n") < n:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {buf!r}"
        buf += chunk
    return [a for a in buf.decode().split("\n\n") if a]
