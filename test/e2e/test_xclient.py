"""What Postfix behind greygate sees of the client: the real
address, HELO and name, passed with XCLIENT, in its log and in the
Received: header it writes."""

import re
import time

import pytest

from harness.util import wait_until

import topology as T
from sending import letters, swaks


@pytest.fixture(scope="module")
def delivered(topo):
    """One message from the sender's namespace straight to mx1 (swaks,
    greylisted once, then accepted): its Received: header and mx1's
    Postfix log lines for it."""
    tok = letters()
    sender = f"xclient-{tok}@{T.SENDER_DOMAIN}"
    rcpt = f"grace@{T.DOMAIN}"
    subject = f"xclient {tok}"
    pf = topo.postfix["mx1"]
    mark = pf.log_mark()
    swaks(topo, "sender", f"{T.ADDR['mx1']}:25", sender, rcpt)
    time.sleep(T.DELAY + 1)
    rc, out, _ = swaks(topo, "sender", f"{T.ADDR['mx1']}:25", sender, rcpt,
                       quit_after=None, extra=["--header", f"Subject: {subject}"])
    if rc != 0:
        raise RuntimeError(f"mx1 did not accept the message:\n{out}")

    def find():
        for p in pf.maildir_files(T.DOMAIN, "grace"):
            raw = p.read_bytes()
            if subject.encode() in raw:
                return raw
        return None
    raw = wait_until(find, 15, what="the message in grace's Maildir")
    head = raw.split(b"\n\n", 1)[0].decode(errors="replace")
    received = re.sub(r"\n[ \t]+", " ", head).split("\n")
    first = next(l for l in received if l.startswith("Received:"))
    pf.sync_log()
    return first, pf.log(mark)


def test_postfix_sees_address_and_helo(delivered):
    received, log = delivered
    assert f"[{T.ADDR['sender']}]" in received, received
    # the HELO name swaks gave (its --helo), not greygate's own
    assert received.startswith(f"Received: from {T.HOSTNAME['sender']} ("), received
    assert re.search(rf"client=\S*\[{re.escape(T.ADDR['sender'])}\]", log), log


# greygate looks the client's name up (forward-confirmed reverse DNS) and
# passes it with XCLIENT NAME, so Postfix records the name, not "unknown"
def test_postfix_sees_the_client_name(delivered):
    received, log = delivered
    assert f"({T.HOSTNAME['sender']} [{T.ADDR['sender']}])" in received, received
    assert f"client={T.HOSTNAME['sender']}[{T.ADDR['sender']}]" in log, log
