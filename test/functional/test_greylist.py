"""Greylisting end to end (the RCPT checks of README.md, and greygate-ctl).

The same rule scenarios run against both stores (the embedded memory store
and Redis); Redis-only behaviour (shared state between MX hosts, outages,
one EVALSHA per decision) has tests of its own.

Timing: delays are 2 s and both stores count whole seconds. A retry sent
less than 1 s of wall time after the first contact is always "early"; a
retry sent at floor(first reply) + delay + 0.2 s is always past the delay.
Where the exact number of seconds left is asserted, the first contact is
aligned to the start of a second.

Senders carry their per-test token in the domain: sender normalisation
rewrites hex and digit runs in the local part (greylist.normalize), never
the domain.
"""

import json
import math
import os
import re
import time

import pytest

from harness.greygate import DELAY, ctl, ctl_ok, merge, wait_past_delay
from harness.redis import RedisMonitor
from harness.smtp import RawSMTP, assert_reply, dot_stuff, make_message
from harness.util import CLIENT_ADDR, wait_until

NET4 = "127.0.0.0/24"
STORE_REASONS = {"new", "early", "triplet", "awl", "retry-window-expired"}


# --------------------------------------------------------------------------
# greygate with greylisting on (gl_gate, in conftest.py), over either store
# --------------------------------------------------------------------------

@pytest.fixture(params=["memory", "redis"])
def kind(request):
    return request.param


def parse_kv_line(line):
    return dict(m.groups() for m in re.finditer(r"(\w+)=(\S+)", line))


def explain(gg, client, sender, rcpt):
    """greygate-ctl explain -> dict with the 'next:' line's keys, 'stored'
    ('nothing' or the entry's state) and the raw text."""
    out = ctl_ok(gg, "explain", client, sender, rcpt)
    lines = out.splitlines()
    res = {"text": out}
    head = parse_kv_line(lines[0])
    res["key"] = head.get("key")
    res["net"] = head.get("net")
    st = [l for l in lines if l.startswith("stored:")]
    if st:
        res["stored"] = "nothing"
    else:
        entry = [l for l in lines if l.startswith("key=")]
        assert entry, f"explain shows neither 'stored: nothing' nor an entry:\n{out}"
        res["stored"] = parse_kv_line(entry[0])["state"]
        res["entry"] = parse_kv_line(entry[0])
    nxt = [l for l in lines if l.startswith("next:")]
    assert nxt, f"explain prints no 'next:' line:\n{out}"
    nkv = parse_kv_line(nxt[0])
    res["next_stored"] = nkv.pop("stored", None)       # "no-capped" or None
    res.update(nkv)
    assert any(l.startswith("why:") for l in lines), f"explain prints no 'why:':\n{out}"
    return res


def list_entries(gg, *filters):
    out = ctl_ok(gg, "list", *filters)
    lines = out.splitlines()
    m = re.search(r"^shown=(\d+)", out, re.M)
    assert m, f"list prints no shown=N:\n{out}"
    entries = [parse_kv_line(l) for l in lines if l.startswith("key=")]
    assert len(entries) == int(m.group(1)), out
    return entries


# --------------------------------------------------------------------------
# SMTP helpers
# --------------------------------------------------------------------------

def client(gg, source=CLIENT_ADDR):
    host = "::1" if ":" in source else "127.0.0.1"
    return RawSMTP(gg.port, host=host, source=source, timeout=15)


def open_session(gg, sender, source=CLIENT_ADDR):
    c = client(gg, source)
    c.greeting()
    c.ehlo()
    assert_reply(c.cmd(f"MAIL FROM:<{sender}>"), 250)
    return c


def rcpt_once(gg, sender, rcpt, source=CLIENT_ADDR):
    """One session: MAIL, RCPT, QUIT. Returns (reply, seconds the RCPT took,
    wall time when the reply arrived)."""
    with open_session(gg, sender, source) as c:
        t0 = time.monotonic()
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        took = time.monotonic() - t0
        at = time.time()
        assert_reply(c.cmd("QUIT"), 221)
    return r, took, at


def decision(gg, rcpt, since=0, timeout=5, **match):
    """The last decision log line for RCPT (after log line SINCE)."""
    evs = gg.wait_event("decision", since=since, timeout=timeout, rcpt=rcpt, **match)
    return evs[-1]


def greylisted(reply, rcpt, seconds=None):
    assert_reply(reply, 450, "4.2.0")
    want = f"450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, retry in "
    assert reply.lines[0].startswith(want), f"want {want!r}..., got {reply.text!r}"
    if seconds is not None:
        unit = "second" if int(seconds) == 1 else "seconds"
        assert reply.lines[0] == want + f"{seconds} {unit}", reply.text


def check_decision(gg, rcpt, since, action, reason, **more):
    ev = decision(gg, rcpt, since)
    assert (ev.get("action"), ev.get("reason")) == (action, reason), \
        f"want action={action} reason={reason}, got: {ev['_line']}"
    for k, v in more.items():
        assert ev.get(k) == str(v), f"want {k}={v}, got: {ev['_line']}"
    return ev


def expect(gg, sender, rcpt, action, reason, source=CLIENT_ADDR, **more):
    """RCPT in a fresh session; checks the reply and the decision log line."""
    mark = gg.log_mark()
    r, took, at = rcpt_once(gg, sender, rcpt, source)
    if action == "greylist":
        greylisted(r, rcpt)
    elif action == "pass":
        assert_reply(r, 250)
    ev = check_decision(gg, rcpt, mark, action, reason, **more)
    if action == "greylist":    # the reply says what the log says
        greylisted(r, rcpt, ev.get("delay_left"))
    return r, ev, at




def align_to_second(frac=0.05):
    """Sleeps until FRAC seconds past the start of the next second; returns
    that second."""
    now = time.time()
    target = math.floor(now) + 1 + frac
    time.sleep(target - now)
    return math.floor(target)


def deliver(gg, backend, sender, rcpt, tok, source=CLIENT_ADDR):
    """A whole message to RCPT; asserts that the backend took it and that it
    reached the Maildir."""
    with open_session(gg, sender, source) as c:
        assert_reply(c.cmd(f"RCPT TO:<{rcpt}>"), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok)))
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)
    return backend.wait_mails(tok)


def sender_for(tok, user="alice"):
    return f"{user}@{tok}.sender.example"


_suffix = [0]


def token_suffix():
    """A short string unique within this run (for recipients in loops)."""
    _suffix[0] += 1
    return f"x{_suffix[0]}"


# --------------------------------------------------------------------------
# The rules, on both stores
# --------------------------------------------------------------------------

def test_new_early_pass_delivered(gl_gate, kind, postfix_backend, tok):
    """new -> 450 (delay_left = delay); retry one second later -> 450 early
    with one second left; after the delay -> the RCPT reaches Postfix and the
    message is delivered; a passed triplet passes again at once."""
    gg = gl_gate(kind)
    sender, rcpt = sender_for(tok), f"rcpt-{tok}@test.example"
    with open_session(gg, sender) as c:
        second = align_to_second()
        mark = gg.log_mark()
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        assert math.floor(time.time()) == second, "first RCPT took most of a second"
        greylisted(r, rcpt, DELAY)
        check_decision(gg, rcpt, mark, "greylist", "new", delay_left=DELAY,
                       client=CLIENT_ADDR, net=NET4, sender=sender)
        # the next whole second: one second has passed, one is left
        time.sleep(max(0.0, second + 1.3 - time.time()))
        mark = gg.log_mark()
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        greylisted(r, rcpt, DELAY - 1)
        check_decision(gg, rcpt, mark, "greylist", "early", delay_left=DELAY - 1)
        # no recipient: no DATA
        assert c.cmd("DATA").code in (503, 554)
        assert_reply(c.cmd("QUIT"), 221)
    time.sleep(max(0.0, second + DELAY + 0.3 - time.time()))
    mark = gg.log_mark()
    mails = deliver(gg, postfix_backend, sender, rcpt, tok)
    assert len(mails) == 1
    check_decision(gg, rcpt, mark, "pass", "triplet", waited=DELAY, net=NET4)
    # passed: passes again at once, from another client of the same /24
    expect(gg, sender, rcpt, "pass", "triplet", source="127.0.0.3")


def test_retry_in_one_second_is_singular(gl_gate, kind, tok):
    """With one second to wait, the default text says "1 second"."""
    gg = gl_gate(kind, greylist={"delay": 1})
    rcpt = f"one-{tok}@test.example"
    r, _, _ = rcpt_once(gg, sender_for(tok), rcpt)
    greylisted(r, rcpt, 1)
    assert r.lines[0].endswith("retry in 1 second"), r.text


def test_triplet_parts(gl_gate, kind, tok):
    """The triplet is (client /24, normalised sender, lower-cased recipient):
    another client of the /24, a VERP variant of the sender and an upper-case
    recipient are the same triplet (early); another sender or recipient is
    new."""
    gg = gl_gate(kind)
    sender, rcpt = sender_for(tok, "bounces-1234"), f"rcpt-{tok}@test.example"
    _, _, t0 = expect(gg, sender, rcpt, "greylist", "new", source="127.0.0.2")
    assert time.time() - t0 < 0.8, "too slow to retry early"
    expect(gg, sender_for(tok, "bounces-98765"), f"RCPT-{tok.upper()}@Test.Example",
           "greylist", "early", source="127.0.0.3")
    # greygate-ctl computes the same key for every variant
    [entry] = list_entries(gg)
    for c, snd, rc in (("127.0.0.2", sender, rcpt),
                       ("127.0.0.200", sender_for(tok, "Bounces-55"), rcpt.upper())):
        e = explain(gg, c, snd, rc)
        assert (e["key"], e["stored"]) == (entry["key"], "pending"), e["text"]
    expect(gg, sender_for(tok, "bob"), rcpt, "greylist", "new", source="127.0.0.3")
    expect(gg, sender, f"other-{tok}@test.example", "greylist", "new", source="127.0.0.3")


def test_awl(gl_gate, kind, tok):
    """awl_threshold=1: one passed triplet whitelists the client's network, a
    brand-new triplet from the same /24 passes with reason=awl, while another
    network (::1's /64) is still greylisted. awl_threshold=2: two passes
    within the same hour count once, so that network is not whitelisted."""
    one = gl_gate(kind, greylist={"awl_threshold": 1}, redis={"prefix": "a1:"}, v6=True)
    two = gl_gate(kind, greylist={"awl_threshold": 2}, redis={"prefix": "a2:"})
    s = sender_for(tok)
    expect(one, s, f"a-{tok}@test.example", "greylist", "new", source="127.0.0.2")
    expect(two, s, f"a-{tok}@test.example", "greylist", "new", source="127.0.0.2")
    _, _, last = expect(two, s, f"b-{tok}@test.example", "greylist", "new", source="127.0.0.2")
    wait_past_delay(last)
    expect(one, s, f"a-{tok}@test.example", "pass", "triplet", source="127.0.0.2")
    expect(two, s, f"a-{tok}@test.example", "pass", "triplet", source="127.0.0.2")
    expect(two, s, f"b-{tok}@test.example", "pass", "triplet", source="127.0.0.2")
    # threshold 1: whitelisted network; new sender and recipient, another host
    expect(one, sender_for(tok, "carol"), f"new-{tok}@test.example", "pass", "awl",
           source="127.0.0.3", net=NET4)
    # ... but only that network
    expect(one, sender_for(tok, "carol"), f"new-{tok}@test.example", "greylist", "new",
           source="::1", net="::/64")
    # threshold 2: two passes in one hour are one count
    expect(two, sender_for(tok, "carol"), f"new-{tok}@test.example", "greylist", "new",
           source="127.0.0.3")


def test_max_new_per_client(gl_gate, kind, tok):
    """max_new_per_client=2: the third new triplet of a network in the hour
    is greylisted with stored=no-capped and not stored, so its retry after
    the delay is new again (not a pass); the stored ones pass; list shows
    only the stored ones."""
    gg = gl_gate(kind, greylist={"max_new_per_client": 2})
    s = sender_for(tok)
    r1, r2, r3 = (f"{x}-{tok}@test.example" for x in ("one", "two", "three"))
    _, ev, _ = expect(gg, s, r1, "greylist", "new", source="127.0.0.2")
    assert "stored" not in ev, ev["_line"]
    _, ev, last = expect(gg, s, r2, "greylist", "new", source="127.0.0.3")
    assert "stored" not in ev, ev["_line"]
    expect(gg, s, r3, "greylist", "new", source="127.0.0.2", stored="no-capped")
    # still capped after the first ones, from any host of the network
    expect(gg, s, r3, "greylist", "new", source="127.0.0.4", stored="no-capped")
    e = explain(gg, "127.0.0.5", s, r3)
    assert (e["action"], e["reason"], e["next_stored"]) == ("greylist", "new", "no-capped"), \
        e["text"]
    stored = list_entries(gg, f"net={NET4}")
    assert sorted(e["rcpt"] for e in stored) == sorted([r1, r2]), stored
    wait_past_delay(last)
    expect(gg, s, r3, "greylist", "new", source="127.0.0.2", stored="no-capped")
    expect(gg, s, r1, "pass", "triplet", source="127.0.0.2")
    expect(gg, s, r2, "pass", "triplet", source="127.0.0.2")
    assert len(list_entries(gg, f"net={NET4}")) == 2


# --------------------------------------------------------------------------
# Whitelists (before the store; the memory store is enough)
# --------------------------------------------------------------------------

def test_whitelist_clients_ipv4_and_ipv6(gl_gate, make_postfix_backend, tok):
    """whitelist.clients: ::1/128 and 127.0.0.2 skip greylisting (and the
    mail is delivered from ::1); 127.0.0.3, same /24 but not listed, is
    greylisted; without the entry, ::1 is greylisted on its /64. Relay
    authorisation still applies to whitelisted clients."""
    # The shared backend has inet_protocols = ipv4, and such a Postfix
    # refuses "XCLIENT ADDR=IPV6:::1" (501 5.5.4 Bad ADDR syntax): an IPv6
    # client needs a backend with IPv6 support, as in production.
    postfix_backend = make_postfix_backend(extra_main={"inet_protocols": "all"})
    gg = gl_gate("memory", v6=True, upstream=postfix_backend,
                 whitelist={"clients": ["::1/128", "127.0.0.2"]})
    s = sender_for(tok)
    mark = gg.log_mark()
    mails = deliver(gg, postfix_backend, s, f"v6-{tok}@test.example", tok, source="::1")
    assert len(mails) == 1
    check_decision(gg, f"v6-{tok}@test.example", mark, "pass", "whitelist-client",
                   client="::1")
    expect(gg, s, f"v4-{tok}@test.example", "pass", "whitelist-client", source="127.0.0.2")
    expect(gg, s, f"v4-{tok}@test.example", "greylist", "new", source="127.0.0.3")
    r, _, _ = rcpt_once(gg, s, f"x-{tok}@foreign.example", source="::1")
    assert_reply(r, 554, "5.7.1")

    plain = gl_gate("memory", v6=True, whitelist={"clients": ["127.0.0.2/32"]})
    expect(plain, s, f"v6-{tok}@test.example", "greylist", "new", source="::1",
           client="::1", net="::/64")
    expect(plain, s, f"v6-{tok}@test.example", "greylist", "early", source="::1")


def test_whitelist_senders_and_recipients(gl_gate, tok):
    """whitelist.senders (user@domain, @domain, .domain) and
    whitelist.recipients (user@, user@domain, @domain), case-insensitive
    domains; anything else is greylisted."""
    gg = gl_gate("memory", whitelist={
        "senders": ["vip@partner.example", "@trusted.example", ".friends.example", "<>"],
        "recipients": ["postmaster@", "abuse@test.example", "@relay.example"]})
    r = f"r-{tok}@test.example"
    expect(gg, "vip@partner.example", r, "pass", "whitelist-sender")
    expect(gg, "vip@PARTNER.Example", r, "pass", "whitelist-sender")
    expect(gg, "anyone@trusted.example", r, "pass", "whitelist-sender")
    expect(gg, "x@mail.friends.example", r, "pass", "whitelist-sender")
    expect(gg, "other@partner.example", r, "greylist", "new")
    expect(gg, "x@untrusted.example", r, "greylist", "new")
    expect(gg, "x@notfriends.example", r, "greylist", "new")
    expect(gg, "", r, "pass", "whitelist-sender")
    s = sender_for(tok)
    expect(gg, s, "postmaster@test.example", "pass", "whitelist-recipient")
    expect(gg, s, "abuse@test.example", "pass", "whitelist-recipient")
    expect(gg, s, f"anyone-{tok}@relay.example", "pass", "whitelist-recipient")
    expect(gg, s, f"abuse-{tok}@test.example", "greylist", "new")
    # whitelisted recipient, but not a domain of ours: relay still denied
    rr, _, _ = rcpt_once(gg, s, "postmaster@foreign.example")
    assert_reply(rr, 554, "5.7.1")


def test_whitelist_files(gl_gate, tmp_path, tok):
    """clients_file, senders_file, recipients_file: one entry a line, '#'
    comments and blank lines ignored; entries add to the inline lists."""
    (tmp_path / "clients").write_text("# trusted relays\n\n127.0.0.2   # one host\n::1/128\n")
    (tmp_path / "senders").write_text("# partners\n@partner.example\n\n")
    (tmp_path / "rcpts").write_text("hostmaster@\n# end\n")
    gg = gl_gate("memory", whitelist={
        "clients": ["127.0.0.9"], "clients_file": str(tmp_path / "clients"),
        "senders_file": str(tmp_path / "senders"),
        "recipients_file": str(tmp_path / "rcpts")})
    r = f"r-{tok}@test.example"
    s = sender_for(tok)
    expect(gg, s, r, "pass", "whitelist-client", source="127.0.0.2")
    expect(gg, s, r, "pass", "whitelist-client", source="127.0.0.9")
    expect(gg, "x@partner.example", r, "pass", "whitelist-sender", source="127.0.0.3")
    expect(gg, s, "hostmaster@test.example", "pass", "whitelist-recipient",
           source="127.0.0.3")
    expect(gg, s, r, "greylist", "new", source="127.0.0.3")
    # SIGHUP re-reads the files (README.md: "whitelists and ... included")
    with open(tmp_path / "clients", "a") as f:
        f.write("127.0.0.3\n")
    mark = gg.log_mark()
    gg.hup()
    gg.wait_event("reload", since=mark, result="ok")
    expect(gg, s, r, "pass", "whitelist-client", source="127.0.0.3")


def test_mynetworks_skip_greylisting(gl_gate, tok):
    """mynetworks clients skip greylisting (and may relay); others do not."""
    gg = gl_gate("memory", mynetworks=["127.0.0.6/32"])
    s = sender_for(tok)
    expect(gg, s, f"r-{tok}@test.example", "pass", "mynetworks", source="127.0.0.6")
    expect(gg, s, f"r-{tok}@elsewhere.example", "pass", "mynetworks", source="127.0.0.6")
    expect(gg, s, f"r-{tok}@test.example", "greylist", "new", source="127.0.0.7")


def test_greylist_message_configurable(gl_gate, tok):
    """greylist.message: its %s becomes the seconds left."""
    gg = gl_gate("memory", greylist={"message": "Come back in %s s, please"})
    rcpt = f"r-{tok}@test.example"
    r, _, _ = rcpt_once(gg, sender_for(tok), rcpt)
    assert r.lines == [f"450 4.2.0 <{rcpt}>: Recipient address rejected: "
                       f"Come back in {DELAY} s, please"], r.text


def test_pipelined_rcpts(gl_gate, kind, postfix_backend, tok):
    """Pipelined RCPTs whose answers come from the store (asynchronous with
    Redis), from the whitelist and from the backend get their replies in
    command order, and the message goes to the passed recipients only."""
    gg = gl_gate(kind, whitelist={"recipients": ["postmaster@"]})
    s = sender_for(tok)
    rp = f"passed-{tok}@test.example"
    ctl_ok(gg, "pass", CLIENT_ADDR, s, rp)
    rcpts = [f"new1-{tok}@test.example", rp, "postmaster@test.example",
             f"new2-{tok}@test.example", f"x-{tok}@foreign.example", f"new1-{tok}@test.example"]
    want = [450, 250, 250, 450, 554, 450]
    with client(gg) as c:
        c.greeting()
        c.ehlo()
        c.send("".join([f"MAIL FROM:<{s}>\r\n"] + [f"RCPT TO:<{r}>\r\n" for r in rcpts]) +
               "DATA\r\n")
        replies = c.replies(len(rcpts) + 2)
        assert_reply(replies[0], 250)
        got = [r.code for r in replies[1:-1]]
        assert got == want, [r.text for r in replies]
        for rep, rc in zip(replies[1:-1], rcpts):
            if rep.code != 250:
                assert f"<{rc}>" in rep.text, (rc, rep.text)
        assert_reply(replies[-1], 354)
        c.send(dot_stuff(make_message(tok)))
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)

    def delivered():
        ms = [m for m in postfix_backend.mails()
              if m.header("message-id") == [f"<{tok}@client.helo.test>"]]
        return ms if len(ms) >= 2 else None
    delivered = wait_until(delivered, 20, what="the message for both passed recipients")
    assert sorted(v for m in delivered for v in m.header("delivered-to")) == \
        sorted([rp, "postmaster@test.example"]), delivered


def test_pipelined_rcpts_share_store_round_trips(gl_gate, redis_server, tok):
    """The checks of pipelined RCPTs start together (their EVALSHAs go to
    Redis in one write): with Redis frozen, six pipelined RCPTs are all
    answered after about one store timeout, not one after the other."""
    timeout_ms = 1000
    gg = gl_gate("redis", store={"failure": "tempfail"},
                 redis={"timeout_ms": timeout_ms, "connect_timeout_ms": timeout_ms})
    s = sender_for(tok)
    rcpts = [f"p{i}-{tok}@test.example" for i in range(6)]
    expect(gg, s, f"before-{tok}@test.example", "greylist", "new")
    redis_server.pause()
    try:
        with open_session(gg, s) as c:
            t0 = time.monotonic()
            c.send("".join(f"RCPT TO:<{r}>\r\n" for r in rcpts) + "NOOP\r\n")
            replies = c.replies(len(rcpts) + 1)
            took = time.monotonic() - t0
        assert [(r.code, r.enhanced) for r in replies] == \
            [(451, "4.3.0")] * len(rcpts) + [(250, "2.0.0")], replies
        # one after the other: three timeouts (at least 3 s), after which
        # the store counts as down and the rest are answered at once; together
        # about one, and the bound leaves a loaded machine all the rest
        assert took < 2.8 * timeout_ms / 1000, f"{len(rcpts)} pipelined RCPTs took {took:.2f}s"
    finally:
        redis_server.resume()
    # and with Redis back, each pipelined RCPT is its own decision; the
    # triplet of the repeated one is stored once (new, then early: which
    # of the two comes first is not fixed, their checks run together)
    rcpts = [f"q{i}-{tok}@test.example" for i in range(6)]
    mark = gg.log_mark()
    wait_until(lambda: rcpt_once(gg, s, f"after-{token_suffix()}-{tok}@test.example")[0].code
               == 450, 15, interval=0.3, what="decisions by Redis again")
    with open_session(gg, s) as c:
        c.send("".join(f"RCPT TO:<{r}>\r\n" for r in rcpts + rcpts[:1]))
        replies = c.replies(len(rcpts) + 1)
    assert [r.code for r in replies] == [450] * (len(rcpts) + 1), replies
    for r in rcpts[1:]:
        check_decision(gg, r, mark, "greylist", "new")
    twins = [e for e in gg.events("decision", since=mark) if e.get("rcpt") == rcpts[0]]
    assert sorted(e.get("reason") for e in twins) == ["early", "new"], twins


def test_retry_window_and_pass_lifetime(gl_gate, kind, tok):
    """delay=1, retry_window=2, pass_lifetime=2 (S = the second of the first
    contacts). Triplet A, not retried within retry_window, starts over
    (retry-window-expired), is early, then passes after the delay from its
    new first contact. Triplet B passes at S+1; using it at S+2 renews its
    lifetime, so it still passes at S+3.5 (it would have expired at S+3),
    and unused for more than pass_lifetime it is forgotten (new at S+5.7)."""
    gg = gl_gate(kind, greylist={"delay": 1, "retry_window": 2, "pass_lifetime": 2})
    s = sender_for(tok)
    a, b = f"a-{tok}@test.example", f"b-{tok}@test.example"

    def at(offset):
        time.sleep(max(0.0, S + offset - time.time()))

    S = align_to_second()
    expect(gg, s, a, "greylist", "new", delay_left=1)
    expect(gg, s, b, "greylist", "new", delay_left=1)
    assert time.time() < S + 0.9, "first contacts took most of a second"
    at(1.3)
    expect(gg, s, b, "pass", "triplet", waited=1)
    at(2.5)
    expect(gg, s, b, "pass", "triplet")
    at(3.2)                                              # A: age 3 > retry_window
    _, _, t1 = expect(gg, s, a, "greylist", "retry-window-expired", delay_left=1)
    expect(gg, s, a, "greylist", "early")
    at(3.5)
    expect(gg, s, b, "pass", "triplet")                  # renewed at S+2
    wait_past_delay(t1, 1)
    expect(gg, s, a, "pass", "triplet")
    at(5.7)                                              # B unused since S+3
    expect(gg, s, b, "greylist", "new")


# --------------------------------------------------------------------------
# Memory store persistence, reload
# --------------------------------------------------------------------------

def test_memory_store_survives_restart(gl_gate, tmp_path, tok):
    """Greylisted once, SIGTERM (exit 0, state saved to store.file), started
    again with the same file: the retry after the delay passes (not new).
    Also for the null sender and a quoted local part with a blank and a '%'
    (the file escapes them)."""
    db = tmp_path / "greylist.db"
    s, r = sender_for(tok), f"r-{tok}@test.example"
    odd = f'"john doe%20x"@{tok}.sender.example'
    first = gl_gate("memory", store={"file": str(db), "save_interval": 3600})
    expect(first, s, r, "greylist", "new")
    expect(first, "", f"null-{tok}@test.example", "greylist", "new")
    _, _, last = expect(first, odd, f"odd-{tok}@test.example", "greylist", "new")
    first.stop()                      # SIGTERM; asserts exit status 0
    assert db.exists(), "store.file not written at SIGTERM"
    second = gl_gate("memory", store={"file": str(db), "save_interval": 3600})
    second.wait_event("store_load", result="ok")
    entries = {e["rcpt"]: e for e in list_entries(second)}
    assert set(entries) == {r, f"null-{tok}@test.example", f"odd-{tok}@test.example"}, \
        entries
    assert all(e["state"] == "pending" for e in entries.values()), entries
    assert entries[f"null-{tok}@test.example"]["sender"] == "<>"
    expect(second, s, r, "greylist", "early")
    wait_past_delay(last)
    expect(second, s, r, "pass", "triplet")
    expect(second, "", f"null-{tok}@test.example", "pass", "triplet")
    expect(second, odd, f"odd-{tok}@test.example", "pass", "triplet")


def test_memory_store_periodic_save(gl_gate, tmp_path, tok):
    """store.save_interval: the state reaches store.file while greygate
    runs, not only at exit."""
    db = tmp_path / "greylist.db"
    gg = gl_gate("memory", store={"file": str(db), "save_interval": 1})
    expect(gg, sender_for(tok), f"r-{tok}@test.example", "greylist", "new")
    wait_until(lambda: db.exists() and f"r-{tok}".encode() in db.read_bytes(), 5,
               what="the triplet in store.file")
    [ev] = gg.wait_event("store_save", result="ok", why="interval", timeout=5)[-1:]
    assert int(ev["triplets"]) == 1 and int(ev["bytes"]) > 0, ev["_line"]


def test_memory_store_damaged_file(gl_gate, tmp_path, tok):
    """A damaged store.file is refused as a whole with FILE: byte N: reason
    (FILE:LINE: reason for the text format of earlier versions); greygate
    starts with an empty store and greylists normally."""
    db = tmp_path / "greylist.db"
    first = gl_gate("memory", store={"file": str(db)})
    expect(first, sender_for(tok), f"r-{tok}@test.example", "greylist", "new")
    first.stop()
    data = bytearray(db.read_bytes())
    assert data.startswith(b"greygate-memstore 2\n"), data[:40]
    data[len(data) // 2] ^= 0x20
    db.write_bytes(bytes(data))
    gg = gl_gate("memory", store={"file": str(db)})
    ev = gg.wait_event("store_load", result="failed")[-1]
    assert f"{db}: byte " in ev.get("reason", "") and "checksum" in ev["reason"], ev["_line"]
    assert list_entries(gg) == []
    expect(gg, sender_for(tok), f"r-{tok}@test.example", "greylist", "new")
    gg.stop()

    db.write_text("greygate-memstore 1\nN 192.0.2.0/24 1 0 0 0 0\nT zz garbage\n")
    gg = gl_gate("memory", store={"file": str(db)})
    ev = gg.wait_event("store_load", result="failed")[-1]
    assert f"{db}:3:" in ev.get("reason", ""), ev["_line"]


def test_greylisting_is_not_an_error(gl_gate, tok):
    """Greylisted RCPTs do not count towards limits.max_errors (a list
    server with many recipients must not be cut off)."""
    gg = gl_gate("memory", limits={"max_connections": 1000, "max_per_client": 50,
                                   "max_recipients": 100, "max_line": 2048,
                                   "command_timeout": 300, "data_timeout": 600,
                                   "max_errors": 2})
    with open_session(gg, sender_for(tok)) as c:
        for i in range(5):
            rc = f"r{i}-{tok}@test.example"
            greylisted(c.cmd(f"RCPT TO:<{rc}>"), rc)
        assert_reply(c.cmd("QUIT"), 221)


def test_sighup_whitelist_session_in_flight(gl_gate, postfix_backend, tok):
    """A session in flight during a reload that whitelists its client keeps
    the old configuration (still greylisted) and is not dropped; a new
    session passes as whitelisted."""
    gg = gl_gate("memory")
    s = sender_for(tok)
    r1, r2 = f"old-{tok}@test.example", f"new-{tok}@test.example"
    with open_session(gg, s, source="127.0.0.2") as old:
        mark = gg.log_mark()
        gg.write_config(merge(gg.config, {"whitelist": {"clients": ["127.0.0.2"]}}))
        gg.hup()
        gg.wait_event("reload", since=mark, result="ok")
        mark = gg.log_mark()
        greylisted(old.cmd(f"RCPT TO:<{r1}>"), r1)
        check_decision(gg, r1, mark, "greylist", "new")
        assert_reply(old.cmd("NOOP"), 250)
        mark2 = gg.log_mark()
        deliver(gg, postfix_backend, s, r2, tok, source="127.0.0.2")
        check_decision(gg, r2, mark2, "pass", "whitelist-client")
        # the old session still works and is still on the old configuration
        greylisted(old.cmd(f"RCPT TO:<{r1}>"), r1)
        check_decision(gg, r1, mark2, "greylist", "early")
        assert_reply(old.cmd("QUIT"), 221)


# --------------------------------------------------------------------------
# greygate-ctl
# --------------------------------------------------------------------------

def test_ctl_commands(gl_gate, kind, tok, request):
    """list / explain / pass / del / whitelist / stats against both stores.
    explain never changes state: explaining twice gives the same answer and
    the real decision afterwards is the one explain announced."""
    gg = gl_gate(kind, greylist={"awl_threshold": 5})
    c2 = "127.0.0.2"
    s, r = sender_for(tok), f"r-{tok}@test.example"

    # unknown triplet
    e1, e2 = explain(gg, c2, s, r), explain(gg, c2, s, r)
    for e in (e1, e2):
        assert (e["stored"], e["action"], e["reason"], e.get("delay_left")) == \
            ("nothing", "greylist", "new", str(DELAY)), e["text"]
        assert e["net"] == NET4, e["text"]
    assert list_entries(gg) == [], "explain stored something"
    if kind == "redis":
        assert request.getfixturevalue("redis_server").keys() == [], "explain wrote to Redis"
    _, _, t0 = expect(gg, s, r, "greylist", "new", source=c2)

    # pending, before the delay: early, twice, and the real decision agrees
    for _ in range(2):
        e = explain(gg, "127.0.0.3", s, r)
        assert (e["stored"], e["action"], e["reason"]) == ("pending", "greylist", "early"), \
            e["text"]
        assert 1 <= int(e["delay_left"]) <= DELAY, e["text"]
    assert time.time() - t0 < 0.8, "too slow to retry early"
    expect(gg, s, r, "greylist", "early", source=c2)

    entries = list_entries(gg)
    assert len(entries) == 1, entries
    ent = entries[0]
    assert (ent["key"], ent["net"], ent["sender"], ent["rcpt"], ent["state"]) == \
        (e1["key"], NET4, s, r, "pending"), ent
    assert re.fullmatch(r"[0-9a-f]{32}", ent["key"]), ent
    assert int(ent["ttl"]) > 0, ent
    assert len(list_entries(gg, f"rcpt={tok}")) == 1
    assert len(list_entries(gg, f"net={NET4}", "state=pending")) == 1
    assert list_entries(gg, "state=passed") == []
    assert list_entries(gg, "net=10.0.0.0/24") == []

    # past the delay: explain says pass/triplet but does not mark it passed
    wait_past_delay(t0)
    for _ in range(2):
        e = explain(gg, c2, s, r)
        assert (e["stored"], e["action"], e["reason"]) == ("pending", "pass", "triplet"), \
            e["text"]
    assert list_entries(gg, "state=passed") == []
    expect(gg, s, r, "pass", "triplet", source=c2)
    assert [x["rcpt"] for x in list_entries(gg, "state=passed")] == [r]

    # del CLIENT SENDER RCPT: new again
    out = ctl_ok(gg, "del", c2, s, r)
    assert f"deleted key={e1['key']}" in out, out
    assert "absent" in ctl_ok(gg, "del", c2, s, r)
    assert explain(gg, c2, s, r)["reason"] == "new"
    expect(gg, s, r, "greylist", "new", source=c2)

    # pass: the next RCPT passes at once
    rp = f"passme-{tok}@test.example"
    out = ctl_ok(gg, "pass", c2, s, rp)
    m = re.search(r"passed key=([0-9a-f]{32})", out)
    assert m, out
    e = explain(gg, c2, s, rp)
    assert (e["stored"], e["action"], e["reason"]) == ("passed", "pass", "triplet"), e["text"]
    expect(gg, s, rp, "pass", "triplet", source=c2)
    # del KEY: new again
    assert f"deleted key={m.group(1)}" in ctl_ok(gg, "del", m.group(1))
    expect(gg, s, rp, "greylist", "new", source=c2)

    # whitelist NET: new triplets from it pass with reason awl
    rw = f"wl-{tok}@test.example"
    assert explain(gg, "127.0.0.7", s, rw)["reason"] == "new"
    assert ctl(gg, "whitelist", "127.0.0.0/16").returncode == 2  # not a /24
    assert f"net={NET4}" in ctl_ok(gg, "whitelist", NET4, "600")
    e = explain(gg, "127.0.0.7", s, rw)
    assert (e["action"], e["reason"]) == ("pass", "awl"), e["text"]
    expect(gg, s, rw, "pass", "awl", source="127.0.0.7")
    expect(gg, sender_for(tok, "zed"), f"wl2-{tok}@test.example", "pass", "awl",
           source="127.0.0.8")

    # IPv6: an address is masked to its /64
    e = explain(gg, "::1", s, rw)
    assert (e["net"], e["reason"]) == ("::/64", "new"), e["text"]
    assert "net=::/64" in ctl_ok(gg, "whitelist", "::1")
    e = explain(gg, "::1", s, rw)
    assert (e["action"], e["reason"]) == ("pass", "awl"), e["text"]

    # list limit=N
    assert len(list_entries(gg)) >= 2
    out = ctl_ok(gg, "list", "limit=1")
    assert re.search(r"^shown=1\b", out, re.M) and out.count("key=") == 1, out

    out = ctl_ok(gg, "stats")
    assert f"store={kind}" in out, out
    if kind == "memory":
        mode = os.stat(gg.config["control_socket"]).st_mode
        assert mode & 0o077 == 0, f"control socket mode {oct(mode)}: others may change state"
    # usage errors: exit 2
    assert ctl(gg, "frobnicate").returncode == 2
    assert ctl(gg, "explain", "not-an-ip", s, r).returncode == 2
    assert ctl(gg, "list", "colour=blue").returncode == 2
    assert ctl(gg, "whitelist", NET4, "soon").returncode == 2


def test_ctl_json(gl_gate, kind, tok):
    """greygate-ctl --json: list prints one JSON object per entry and line,
    explain and stats one object each, with the fields README.md lists and
    the values the text form shows; other commands and errors stay text."""
    gg = gl_gate(kind)
    c2 = "127.0.0.2"
    s, r = sender_for(tok), f"json-{tok}@test.example"
    expect(gg, s, r, "greylist", "new", source=c2)

    out = ctl_ok(gg, "--json", "list", f"rcpt={tok}")
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 1, out
    [row] = rows
    [text] = list_entries(gg, f"rcpt={tok}")
    assert set(row) == {"key", "net", "pool", "sender", "rcpt", "state", "first_seen",
                        "ttl"}, row
    # no pool key for this client: "pool" is null, and text lists no pool=
    assert {k: str(v) for k, v in row.items() if k != "ttl" and v is not None} == \
        {k: v for k, v in text.items() if k != "ttl"}, (row, text)
    assert (row["net"], row["pool"], row["sender"], row["rcpt"], row["state"]) == \
        (NET4, None, s, r, "pending")
    assert isinstance(row["ttl"], int) and row["ttl"] > 0, row
    assert ctl_ok(gg, "--json", "list", "rcpt=nothing-matches") == ""

    e = json.loads(ctl_ok(gg, "--json", "explain", c2, s, r))
    assert (e["key"], e["net"], e["pool"], e["sender"], e["rcpt"]) == \
        (row["key"], NET4, None, s, r), e
    assert e["stored"]["state"] == "pending" and e["stored"]["key"] == row["key"], e
    assert (e["next"]["action"], e["next"]["reason"], e["next"]["capped"]) == \
        ("greylist", "early", False), e
    assert 1 <= e["next"]["delay_left"] <= DELAY and e["why"], e
    e = json.loads(ctl_ok(gg, "--json", "explain", c2, s, f"other-{tok}@test.example"))
    assert e["stored"] is None and e["next"]["reason"] == "new", e

    st = json.loads(ctl_ok(gg, "--json", "stats"))
    assert st["store"] == kind and st["triplets"] >= 1, st
    assert parse_kv_line(ctl_ok(gg, "stats"))["store"] == kind

    # not JSON: pass (a change, not a report) and usage errors
    assert "passed key=" in ctl_ok(gg, "--json", "pass", c2, s, r)
    assert ctl(gg, "--json", "frobnicate").returncode == 2


def test_ctl_del_malformed_key_is_usage_error(gl_gate, kind):
    """`del KEY` with something that is not a 32-hex key is a usage error
    (exit 2), not a store failure (exit 1)."""
    gg = gl_gate(kind)
    r = ctl(gg, "del", "not-a-key")
    assert r.returncode == 2, f"want exit 2, got {r.returncode}: {r.stdout}{r.stderr}"


def test_ctl_store_unreachable(gl_gate, kind, request):
    """greygate-ctl exits 1 when it cannot reach the store (Redis down, or
    no daemon behind the control socket)."""
    gg = gl_gate(kind)
    if kind == "redis":
        request.getfixturevalue("redis_server").stop()
    else:
        gg.stop()
    r = ctl(gg, "stats")
    assert r.returncode == 1, f"want exit 1, got {r.returncode}: {r.stdout}{r.stderr}"
    assert r.stderr.strip(), "no error message"


def test_ctl_whitelist_with_awl_off(gl_gate, kind, tok):
    """greylist.awl_threshold = 0 (auto-whitelist off): an operator's explicit
    `greygate-ctl whitelist NET` must either work (new triplets from NET pass)
    or be refused; it must not report success and do nothing."""
    gg = gl_gate(kind, greylist={"awl_threshold": 0})
    r = ctl(gg, "whitelist", NET4)
    if r.returncode == 0:
        rcpt = f"r-{tok}@test.example"
        mark = gg.log_mark()
        rep, _, _ = rcpt_once(gg, sender_for(tok), rcpt)
        ev = decision(gg, rcpt, mark)
        assert rep.code == 250 and ev["reason"] == "awl", \
            (f"`greygate-ctl whitelist {NET4}` said {r.stdout.strip()!r} (exit 0), "
             f"but a new triplet from it got {rep.text!r} ({ev['_line']})")
    else:
        assert r.returncode == 2 and (r.stdout + r.stderr).strip(), r


def test_ctl_whitelist_ttl_bounded(gl_gate, kind, tok):
    """A TTL that would overflow the expiry time (time + TTL) is refused with
    a clear message, and the daemon lives on (under UBSan the overflow ended
    it; without, the entry was born expired). The longest TTL taken works."""
    gg = gl_gate(kind, greylist={"awl_threshold": 1})
    r = ctl(gg, "whitelist", NET4, "9223372036854775807")
    assert r.returncode == 2, r
    assert "error: TTL '9223372036854775807' is not a number of seconds from 1 to " \
        "315360000 (10 years)" in r.stdout, r
    assert gg.alive()
    out = ctl_ok(gg, "whitelist", NET4, "315360000")
    assert f"whitelisted net={NET4} ttl=315360000" in out, out
    expect(gg, sender_for(tok), f"r-{tok}@test.example", "pass", "awl")


# --------------------------------------------------------------------------
# Redis only
# --------------------------------------------------------------------------

def test_two_gateways_share_redis(gl_gate, redis_server, postfix_backend, tok):
    """Two greygate processes on one Redis (the primary and the backup MX):
    a first attempt on one and an early retry on the other is early (not
    new); the retry after the delay on the other passes and is delivered.
    Both directions."""
    a = gl_gate("redis")
    b = gl_gate("redis")
    s = sender_for(tok)
    ra, rb = f"ab{tok}@test.example", f"ba{tok}@test.example"
    _, _, t0 = expect(a, s, ra, "greylist", "new", source="127.0.0.2")
    _, _, last = expect(b, s, rb, "greylist", "new", source="127.0.0.3")
    assert time.time() - t0 < 0.8, "too slow to retry early"
    expect(b, s, ra, "greylist", "early", source="127.0.0.3")
    expect(a, s, rb, "greylist", "early", source="127.0.0.2")
    wait_past_delay(last)
    mark = b.log_mark()
    deliver(b, postfix_backend, s, ra, "ab" + tok, source="127.0.0.3")
    check_decision(b, ra, mark, "pass", "triplet")
    mark = a.log_mark()
    deliver(a, postfix_backend, s, rb, "ba" + tok, source="127.0.0.2")
    check_decision(a, rb, mark, "pass", "triplet")
    assert len(redis_server.keys("gg:t:*")) == 2


def test_redis_one_evalsha_per_decision(gl_gate, redis_server, tok):
    """Every decision is exactly one EVALSHA (no EVAL, no KEYS/SCAN on the
    request path), whatever its outcome; whitelisted clients cost none.
    Keys are PREFIX t:<32 hex> (fields f p n s r), a:NET, n:NET, all with
    TTLs."""
    gg = gl_gate("redis", greylist={"ipv4_prefix": 32, "max_new_per_client": 4,
                                    "awl_threshold": 3},
                 whitelist={"clients": ["127.0.0.9"]})
    s = sender_for(tok)
    rr = lambda n: f"{n}-{tok}@test.example"  # noqa: E731
    ctl_ok(gg, "pass", "127.0.0.2", s, rr("passed"))
    ctl_ok(gg, "whitelist", "127.0.0.3/32")
    expect(gg, s, rr("warmup"), "greylist", "new", source="127.0.0.2")   # script loaded
    redis_server.cmd("CONFIG", "RESETSTAT")
    mon = RedisMonitor(redis_server)
    mark = gg.log_mark()
    expect(gg, s, rr("n1"), "greylist", "new", source="127.0.0.2")
    expect(gg, s, rr("n2"), "greylist", "new", source="127.0.0.2")
    expect(gg, s, rr("n1"), "greylist", "early", source="127.0.0.2")
    expect(gg, s, rr("n1"), "greylist", "early", source="127.0.0.2")
    expect(gg, s, rr("n3"), "greylist", "new", source="127.0.0.2")
    expect(gg, s, rr("n4"), "greylist", "new", source="127.0.0.2", stored="no-capped")
    expect(gg, s, rr("passed"), "pass", "triplet", source="127.0.0.2")
    expect(gg, s, rr("x"), "pass", "awl", source="127.0.0.3")
    expect(gg, s, rr("y"), "pass", "whitelist-client", source="127.0.0.9")
    decisions = [e for e in gg.events("decision", since=mark) if e["reason"] in STORE_REASONS]
    assert len(decisions) == 8, [e["_line"] for e in decisions]
    time.sleep(0.2)
    mon.stop()
    stats = redis_server.commandstats()
    # what greygate's own connection sent (not the script's calls, not us)
    sent = [c for who, c in mon.commands() if who != "lua"]
    assert sent == ["evalsha"] * len(decisions), sent
    assert stats.get("evalsha") == len(decisions), stats
    for cmd in ("eval", "keys", "scan"):
        assert stats.get(cmd, 0) == 0, f"{cmd} ran on the request path: {stats}"

    # key layout and TTLs
    tkeys = redis_server.keys("gg:t:*")
    assert tkeys and all(re.fullmatch(r"gg:t:[0-9a-f]{32}", k) for k in tkeys), tkeys
    for k in tkeys + redis_server.keys("gg:a:*") + redis_server.keys("gg:n:*"):
        assert redis_server.cmd("TTL", k) > 0, f"{k} has no TTL"
    assert redis_server.keys("gg:n:*") == ["gg:n:127.0.0.2/32"]
    assert int(redis_server.cmd("GET", "gg:n:127.0.0.2/32")) == 4
    assert 0 < redis_server.cmd("TTL", "gg:n:127.0.0.2/32") <= 3600
    assert "gg:a:127.0.0.3/32" in redis_server.keys("gg:a:*")
    [n1] = [x for x in list_entries(gg, f"rcpt=n1-{tok}")]
    h = redis_server.cmd("HGETALL", f"gg:t:{n1['key']}")
    fields = dict(zip(h[::2], h[1::2]))
    assert set(fields) >= {"f", "p", "n", "s", "r"}, fields
    assert (fields["p"], fields["n"], fields["s"], fields["r"]) == \
        ("0", "127.0.0.2/32", s, rr("n1")), fields
    assert abs(int(fields["f"]) - time.time()) < 30, fields
    assert 0 < redis_server.cmd("TTL", f"gg:t:{n1['key']}") <= 3600 + 3600


def test_redis_noscript_falls_back_to_eval(gl_gate, redis_server, tok):
    """After SCRIPT FLUSH (or a Redis without the script) a decision is
    still made: NOSCRIPT -> EVAL once, then EVALSHA works again."""
    gg = gl_gate("redis")
    s = sender_for(tok)
    expect(gg, s, f"a-{tok}@test.example", "greylist", "new")
    redis_server.cmd("SCRIPT", "FLUSH")
    redis_server.cmd("CONFIG", "RESETSTAT")
    expect(gg, s, f"b-{tok}@test.example", "greylist", "new")
    expect(gg, s, f"b-{tok}@test.example", "greylist", "early")
    expect(gg, s, f"a-{tok}@test.example", "greylist", "early")
    stats = redis_server.commandstats()
    assert stats.get("eval") == 1, stats
    assert stats.get("evalsha", 0) >= 2, stats


def test_redis_password_db_prefix(gl_gate, redis_server, tok):
    """store.redis password, db and prefix are honoured by greygate and by
    greygate-ctl."""
    redis_server.cmd("CONFIG", "SET", "requirepass", "s3cret pass")
    gg = gl_gate("redis", redis={"password": "s3cret pass", "db": 3, "prefix": "mx{1}:"})
    s, r = sender_for(tok), f"r-{tok}@test.example"
    expect(gg, s, r, "greylist", "new")
    expect(gg, s, r, "greylist", "early")
    with redis_server.client() as c:
        assert c.cmd("AUTH", "s3cret pass") == "OK"
        assert c.cmd("DBSIZE") == 0, "keys written to db 0"
        assert c.cmd("SELECT", 3) == "OK"
        keys = c.cmd("KEYS", "*")
    assert any(re.fullmatch(r"mx\{1\}:t:[0-9a-f]{32}", k) for k in keys), keys
    assert "mx{1}:n:127.0.0.0/24" in keys, keys
    [e] = list_entries(gg)
    assert e["rcpt"] == r, e


def test_redis_down_at_start(gl_gate, redis_server, tok):
    """greygate starts while Redis is down (does not wait for it; decisions
    follow store.failure) and uses Redis as soon as it comes up."""
    redis_server.stop()
    gg = gl_gate("redis", wait_redis=False)
    s = sender_for(tok)
    expect(gg, s, f"a-{tok}@test.example", "pass", "store-failure")
    mark = gg.log_mark()
    redis_server.start()
    gg.wait_event("store", since=mark, state="connected", timeout=10)
    expect(gg, s, f"a-{tok}@test.example", "greylist", "new")
    assert len(redis_server.keys("gg:t:*")) == 1


def test_redis_pending_at_disconnect_and_sigterm(gl_gate, redis_server, tok):
    """Redis frozen while requests are pending: a client that hangs up
    before its answer, and SIGTERM while another waits, cost nothing: the
    waiting RCPT is answered, greygate exits 0 (teardown checks the status
    and, in a sanitizer build, the log)."""
    timeout_ms = 800
    gg = gl_gate("redis", store={"failure": "tempfail"},
                 redis={"timeout_ms": timeout_ms, "connect_timeout_ms": timeout_ms})
    s = sender_for(tok)
    expect(gg, s, f"before-{tok}@test.example", "greylist", "new")
    redis_server.pause()
    try:
        gone = open_session(gg, s)
        gone.send(f"RCPT TO:<gone-{tok}@test.example>\r\n")
        time.sleep(0.1)
        gone.close()
        c = open_session(gg, s)
        c.send(f"RCPT TO:<wait-{tok}@test.example>\r\n")
        time.sleep(0.1)
        gg.term()
        assert_reply(c.reply(timeout=timeout_ms / 1000 + 2), 451, "4.3.0")
        assert_reply(c.cmd("QUIT"), 221)
        c.close()
        assert gg.wait_exit(10) == 0, f"exit status {gg.returncode}"
    finally:
        redis_server.resume()


@pytest.mark.parametrize("failure", ["accept", "tempfail"])
def test_redis_down(gl_gate, redis_server, postfix_backend, tok, failure):
    """Redis stopped during traffic: accept -> RCPTs pass to Postfix and mail
    is delivered (reason=store-failure action=pass); tempfail -> 451 4.3.0.
    Every RCPT is answered quickly, greygate keeps running, and once Redis
    is back (same port) decisions are Redis's again (new keys appear)."""
    timeout_ms = 300
    gg = gl_gate("redis", store={"failure": failure},
                 redis={"timeout_ms": timeout_ms, "connect_timeout_ms": timeout_ms})
    s = sender_for(tok)
    expect(gg, s, f"before-{tok}@test.example", "greylist", "new")
    assert len(redis_server.keys("gg:t:*")) == 1
    # tempfail answers at once; accept also opens the backend connection
    slack = 0.5 if failure == "tempfail" else 2.0
    inflight = open_session(gg, s, source="127.0.0.2")
    try:
        mark = gg.log_mark()
        redis_server.stop()
        # a session opened before the outage
        t = time.monotonic()
        rin = f"inflight-{tok}@test.example"
        r = inflight.cmd(f"RCPT TO:<{rin}>")
        assert time.monotonic() - t < timeout_ms / 1000 + slack, "RCPT not answered in time"
        for i in range(4):
            rx = f"down{i}-{tok}@test.example"
            m2 = gg.log_mark()
            rep, took, _ = rcpt_once(gg, s, rx)
            assert took < timeout_ms / 1000 + slack, f"RCPT took {took:.2f}s"
            if failure == "accept":
                assert_reply(rep, 250)
                check_decision(gg, rx, m2, "pass", "store-failure")
            else:
                assert_reply(rep, 451, "4.3.0")
                check_decision(gg, rx, m2, "tempfail", "store-failure")
        if failure == "accept":
            assert_reply(r, 250)
            check_decision(gg, rin, mark, "pass", "store-failure")
            assert_reply(inflight.cmd("DATA"), 354)
            inflight.send(dot_stuff(make_message(tok)))
            assert_reply(inflight.reply(), 250)
            postfix_backend.wait_mails(tok)
        else:
            assert_reply(r, 451, "4.3.0")
            check_decision(gg, rin, mark, "tempfail", "store-failure")
        assert_reply(inflight.cmd("QUIT"), 221)
    finally:
        inflight.close()
    assert gg.alive()

    mark = gg.log_mark()
    redis_server.start()
    gg.wait_event("store", since=mark, state="connected", timeout=10)
    assert redis_server.keys("gg:t:*") == []          # a fresh, empty Redis
    expect(gg, s, f"after-{tok}@test.example", "greylist", "new")
    assert len(redis_server.keys("gg:t:*")) == 1
    expect(gg, s, f"after-{tok}@test.example", "greylist", "early")


@pytest.mark.parametrize("failure", ["accept", "tempfail"])
def test_redis_hangs(gl_gate, redis_server, tok, failure):
    """Redis frozen (SIGSTOP): each RCPT is answered within timeout_ms plus
    slack following store.failure, other sessions are served meanwhile (the
    loop does not block), and after SIGCONT decisions are Redis's again."""
    timeout_ms = 500
    gg = gl_gate("redis", store={"failure": failure},
                 redis={"timeout_ms": timeout_ms, "connect_timeout_ms": timeout_ms})
    s = sender_for(tok)
    expect(gg, s, f"before-{tok}@test.example", "greylist", "new")
    redis_server.pause()
    try:
        other = client(gg, "127.0.0.4")
        other.greeting()
        other.ehlo()
        for i in range(4):
            rx = f"hang{i}-{tok}@test.example"
            with open_session(gg, s) as c:
                t = time.monotonic()
                c.send(f"RCPT TO:<{rx}>\r\n")
                if i == 0:
                    # while that RCPT waits for Redis, another session is served
                    t1 = time.monotonic()
                    assert_reply(other.cmd("NOOP"), 250)
                    assert time.monotonic() - t1 < timeout_ms / 1000 / 2, \
                        "event loop blocked while waiting for Redis"
                rep = c.reply()
                took = time.monotonic() - t
                assert took < timeout_ms / 1000 + 0.5, f"RCPT {i} took {took:.2f}s"
                if failure == "accept":
                    assert_reply(rep, 250)
                else:
                    assert_reply(rep, 451, "4.3.0")
        other.close()
        ev = decision(gg, f"hang0-{tok}@test.example")
        assert ev["reason"] == "store-failure", ev["_line"]
    finally:
        redis_server.resume()
    assert gg.alive()

    # back: decisions by Redis again (a new triplet is greylisted and stored)
    def redis_decides():
        rx = f"after-{token_suffix()}-{tok}@test.example"
        mark = gg.log_mark()
        rep, _, _ = rcpt_once(gg, s, rx)
        ev = decision(gg, rx, mark)
        return ev if ev["reason"] == "new" else None
    ev = wait_until(redis_decides, 15, interval=0.3, what="decisions by Redis again")
    assert any(redis_server.cmd("HGET", k, "r") == ev["rcpt"]
               for k in redis_server.keys("gg:t:*")), "no key for the new triplet"

