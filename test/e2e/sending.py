"""Helpers of the end-to-end tests: mail to send (tokens that survive sender
normalisation, bodies that test the way through), the Mailer that sends
through the sender's Postfix and finds what arrived, swaks from a
namespace, and where bounces and queued mail show."""

import random
import time

from harness.util import wait_until

import topology as T


def letters(n=10):
    """A token of letters only: sender normalisation turns digit runs and
    hex-looking runs into '#', these survive it."""
    return "".join(random.choice("ghjkmnpqrstvwxyz") for _ in range(n))


def make_body(tok, i=0):
    """A body that tests the way through: dots at line starts (dot-stuffing
    by the sender, greygate's re-encoding, Postfix's un-stuffing), a lone
    dot, 'From ' at a line start, trailing blanks, a long line."""
    rnd = random.Random(f"{tok}-{i}")
    lines = [
        f"Message {i} of token {tok}.",
        ".",
        "..",
        ".a line with a leading dot",
        "From the beginning of a line",
        "trailing blanks   ",
        "a\ttab",
        "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(900)),
        "",
        *("".join(rnd.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                  for _ in range(76)) for _ in range(20)),
        f"end {tok} {i}",
    ]
    return ("\n".join(lines) + "\n").encode()


def make_message(sender, rcpt, tok, i=0):
    head = (f"From: <{sender}>\n"
            f"To: <{rcpt}>\n"
            f"Subject: e2e {tok} {i}\n"
            f"Message-ID: <{tok}.{i}@{T.HOSTNAME['sender']}>\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\n").encode()
    body = make_body(tok, i)
    return head + b"\n" + body, body


def split_mail(raw):
    head, _, body = raw.partition(b"\n\n")
    return head, body


class Mailer:
    """Sends through the sender's Postfix and finds what arrived in mx1's
    Maildirs."""

    def __init__(self, topo):
        self.t = topo
        self.sent = {}          # (tok, i) -> (rcpt, body)

    def send(self, sender, rcpt, tok, i=0):
        msg, body = make_message(sender, rcpt, tok, i)
        self.t.postfix["sender"].sendmail(sender, [rcpt], msg)
        self.sent[(tok, i)] = (rcpt, body)
        return body

    def delivered(self, rcpt):
        """{Message-ID tail 'tok.i': [raw, ...]} in mx1's Maildir of RCPT."""
        user, _, domain = rcpt.partition("@")
        out = {}
        for p in self.t.postfix["mx1"].maildir_files(domain, user):
            try:
                raw = p.read_bytes()
            except FileNotFoundError:
                continue
            head, _ = split_mail(raw)
            mid = None
            for line in head.split(b"\n"):
                if line.lower().startswith(b"message-id:"):
                    mid = line.split(b"<", 1)[1].split(b"@", 1)[0].decode()
            out.setdefault(mid, []).append(raw)
        return out

    def wait_delivered(self, keys, timeout):
        """Waits until every (tok, i) of KEYS is in mx1's Maildir; returns
        {key: [raw, ...]} (a list: duplicates are the caller's to find)."""
        rcpts = {self.sent[k][0] for k in keys}

        def check():
            found = {}
            for r in rcpts:
                for mid, raws in self.delivered(r).items():
                    found[mid] = raws
            have = {k: found.get(f"{k[0]}.{k[1]}") for k in keys}
            return have if all(have.values()) else None
        return wait_until(check, timeout, interval=0.2,
                          what=f"{len(keys)} message(s) in mx1's Maildir")

    def assert_exactly_once_and_intact(self, keys):
        for k in keys:
            rcpt, body = self.sent[k]
            raws = self.delivered(rcpt).get(f"{k[0]}.{k[1]}", [])
            assert len(raws) == 1, f"message {k} delivered {len(raws)} times to {rcpt}"
            _, got = split_mail(raws[0])
            assert got == body, f"message {k}: body differs from what was sent"


def swaks(topo, role, server, sender, rcpt, helo=None, extra=(), quit_after="RCPT"):
    """swaks from ROLE's namespace (QUIT_AFTER None: the whole message);
    returns (exit code, output, the RCPT reply line)."""
    args = ["swaks", "--server", server, "--from", sender, "--to", rcpt,
            "--helo", helo or T.HOSTNAME[role], "--timeout", "20",
            *(["--quit-after", quit_after] if quit_after else []), *extra]
    r = topo.exec(role, args, check=False, timeout=60)
    out = r.stdout + r.stderr
    lines = out.splitlines()
    rcpt_reply = None
    for idx, line in enumerate(lines):
        if line.startswith(" -> RCPT TO:"):
            for nxt in lines[idx + 1:]:
                if nxt.startswith(("<-  ", "<** ", "<~* ")):
                    rcpt_reply = nxt[4:].strip()
                    break
    return r.returncode, out, rcpt_reply


def sender_queue_empty_for(topo, needle):
    return not topo.postfix["sender"].queued_for(needle)


def bounces(topo):
    """Everything that says a message was bounced, anywhere: DSNs in the
    sender's Maildir, status=bounced in any Postfix log. The whole run
    must have none."""
    out = [str(p) for p in topo.postfix["sender"].maildir_files()]
    for name, pf in topo.postfix.items():
        out += [f"{name}: {l}" for l in pf.log().splitlines() if "status=bounced" in l]
    return out
