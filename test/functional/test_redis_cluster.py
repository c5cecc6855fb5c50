"""Redis Cluster (store.redis.cluster): greygate reads the slot map from the
seeds, sends each decision to the primary serving the slot of its keys
(all of one decision's keys share the client network's hash tag), follows
MOVED after a slot is resharded and ASK while it migrates, and survives a
primary killed during traffic: decisions meanwhile follow store.failure,
none hangs, and the state is found on the promoted replica.

Real processes: six redis-servers in cluster mode (3 primaries, 3
replicas, made by redis-cli --cluster create; harness/redis.py) and
greygate, all on 127.0.0.1. Client networks are 127.0.N.0/24 (sources
127.0.N.5), one hash tag each.
"""

import os
import re
import shutil
import subprocess
import time

import pytest

from harness.greygate import default_config, get, metric, rcpt_once, render_config, require_binary
from harness.redis import RedisCluster
from harness.smtp import assert_reply
from harness.util import GREYGATE_CTL, free_port, wait_until

DELAY = 2
TIMEOUT_MS = 300
GL = {"enabled": True, "delay": DELAY, "retry_window": 3600, "pass_lifetime": 86400,
      "awl_threshold": 0, "max_new_per_client": 1000}


@pytest.fixture
def rcluster():
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        pytest.fail("redis-server/redis-cli are not installed (Debian package redis-server)",
                    pytrace=False)
    c = RedisCluster()
    try:
        yield c.start()
    finally:
        c.destroy()


def cluster_gate(greygate_factory, rc, failure="accept", greylist=None, **over):
    seeds = [f"127.0.0.1:{n.port}" for n in rc.nodes[:2]]
    admin = free_port(19925)
    gg = greygate_factory(
        start=False, greylist={**GL, **(greylist or {})}, admin={"listen": f"127.0.0.1:{admin}"},
        store={"type": "redis", "file": "", "failure": failure,
               "redis": {"cluster": seeds, "timeout_ms": TIMEOUT_MS,
                         "connect_timeout_ms": TIMEOUT_MS, "prefix": "gg:"}}, **over)
    gg.admin_port = admin
    gg.start()
    gg.wait_event("store", state="slot-map", timeout=10)
    return gg


def replies(gg, kind):
    """Error replies of KIND greygate counted (/metrics)."""
    _, text = get(gg.admin_port, "/metrics")
    return metric(text, "greygate_store_error_replies_total", kind=kind)


def net(n):
    return f"127.0.{n}.0/24"


def source(n):
    return f"127.0.{n}.5"



def decision(gg, rcpt, since):
    return gg.wait_event("decision", since=since, timeout=5, rcpt=rcpt)[-1]


def tag_slot(rc, n):
    return rc.slot("{" + net(n) + "}")


def nets_on_every_primary(rc):
    """One network N per primary, the primary serving its tag's slot."""
    chosen = {}
    for n in range(1, 200):
        chosen.setdefault(rc.owner(tag_slot(rc, n)).port, n)
        if len(chosen) == 3:
            return chosen
    raise AssertionError("no networks spread over the three primaries")


def evalsha_calls(node):
    stats = node.cmd("INFO", "commandstats")
    m = re.search(r"cmdstat_evalsha:calls=(\d+)", stats)
    return int(m.group(1)) if m else 0


def ctl(gg, *args):
    assert os.access(GREYGATE_CTL, os.X_OK), f"greygate-ctl not found: {GREYGATE_CTL}"
    r = subprocess.run([GREYGATE_CTL, "-c", str(gg.conf_path), *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"greygate-ctl {args} -> {r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout


def listed(gg):
    return [dict(m.groups() for m in re.finditer(r"(\w+)=(\S+)", l))
            for l in ctl(gg, "list").splitlines() if l.startswith("key=")]


def errorstat(node, word):
    m = re.search(rf"errorstat_{word}:count=(\d+)", node.cmd("INFO", "errorstats"))
    return int(m.group(1)) if m else 0


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------

def test_cluster_greylisting_across_slots(rcluster, greygate_factory, tok):
    """Three client networks whose tags are served by the three primaries:
    each first RCPT is greylisted, its three keys (triplet, AWL, new-triplet
    count) are on the primary that serves the tag's slot and nowhere else,
    one EVALSHA per decision; after the delay each passes."""
    gg = cluster_gate(greygate_factory, rcluster)
    chosen = nets_on_every_primary(rcluster)
    sender = f"alice@{tok}.sender.example"
    before = {p.port: evalsha_calls(p) for p in rcluster.primaries()}
    first = time.time()
    for port, n in chosen.items():
        rx = f"r{n}-{tok}@test.example"
        mark = gg.log_mark()
        rep, _, _ = rcpt_once(gg, sender, rx, source(n))
        assert_reply(rep, 450, "4.2.0")
        ev = decision(gg, rx, mark)
        assert (ev["action"], ev["reason"]) == ("greylist", "new"), ev["_line"]
    for port, n in chosen.items():
        assert evalsha_calls(rcluster.by_port(port)) - before[port] == 1

    time.sleep(max(0.0, int(first) + DELAY + 1.1 - time.time()))
    for port, n in chosen.items():
        rx = f"r{n}-{tok}@test.example"
        mark = gg.log_mark()
        rep, _, _ = rcpt_once(gg, sender, rx, source(n))
        assert_reply(rep, 250)
        ev = decision(gg, rx, mark)
        assert (ev["action"], ev["reason"]) == ("pass", "triplet"), ev["_line"]
    # the pass counted the network in its AWL: every key of the network on
    # the primary serving its tag, none elsewhere
    where = rcluster.keys("gg:*")
    for port, n in chosen.items():
        tag = "{" + net(n) + "}"
        mine = [k for k in where[port] if tag in k]
        assert sorted(k.split(":")[1] for k in mine) == ["a", "n", "t"], (port, where)
        assert all(k.startswith(("gg:t:" + tag, "gg:a:" + tag, "gg:n:" + tag)) for k in mine)
        assert all(tag not in k for p, ks in where.items() if p != port for k in ks), where
        assert evalsha_calls(rcluster.by_port(port)) - before[port] == 2
    assert gg.alive()


def test_cluster_moved_after_reshard(rcluster, greygate_factory, tok):
    """A greylisted triplet's slot is moved to another primary (keys
    migrated, CLUSTER SETSLOT NODE): greygate still sends to the old one,
    gets MOVED, follows it, and the retry passes on the new owner; the
    next decision goes there directly."""
    gg = cluster_gate(greygate_factory, rcluster)
    n = 7
    sender = f"bob@{tok}.sender.example"
    rx = f"moved-{tok}@test.example"
    mark = gg.log_mark()
    rep, _, _ = rcpt_once(gg, sender, rx, source(n))
    assert_reply(rep, 450, "4.2.0")
    first = time.time()
    slot = tag_slot(rcluster, n)
    src = rcluster.owner(slot)
    dst = next(p for p in rcluster.primaries() if p is not src)
    rcluster.move_slot(slot, src, dst)
    assert any(k.startswith("gg:t:{" + net(n) + "}") for k in dst.keys("gg:t:*"))

    time.sleep(max(0.0, int(first) + DELAY + 1.1 - time.time()))
    moved_before = errorstat(src, "MOVED")
    mark = gg.log_mark()
    rep, _, took = rcpt_once(gg, sender, rx, source(n))
    assert_reply(rep, 250)
    ev = decision(gg, rx, mark)
    assert (ev["action"], ev["reason"]) == ("pass", "triplet"), ev["_line"]
    assert errorstat(src, "MOVED") == moved_before + 1, "greygate was not sent MOVED"
    assert replies(gg, "moved") == 1
    assert took < TIMEOUT_MS / 1000 + 1.0
    # the map is right now: the next decision is not redirected
    fresh = f"moved2-{tok}@test.example"
    calls = evalsha_calls(dst)
    rep, _, _ = rcpt_once(gg, sender, fresh, source(n))
    assert_reply(rep, 450, "4.2.0")
    assert errorstat(src, "MOVED") == moved_before + 1
    assert evalsha_calls(dst) == calls + 1
    assert gg.alive()


def test_cluster_ask_during_migration(rcluster, greygate_factory, tok):
    """While a slot migrates, its keys already moved: the old owner answers
    ASK, greygate sends ASKING and the decision to the importing node, where
    the triplet passes. A new triplet there (keys missing on both sides)
    gets TRYAGAIN from Redis: that decision follows store.failure at once,
    and once the slot has moved it is greylisted on the new owner."""
    gg = cluster_gate(greygate_factory, rcluster)
    n = 9
    sender = f"carol@{tok}.sender.example"
    rx = f"ask-{tok}@test.example"
    rep, _, _ = rcpt_once(gg, sender, rx, source(n))
    assert_reply(rep, 450, "4.2.0")
    time.sleep(DELAY + 1.1)
    rep, _, _ = rcpt_once(gg, sender, rx, source(n))        # passes: the AWL key is made too
    assert_reply(rep, 250)

    slot = tag_slot(rcluster, n)
    src = rcluster.owner(slot)
    dst = next(p for p in rcluster.primaries() if p is not src)
    tag = "{" + net(n) + "}"
    rcluster.migrate_start(slot, src, dst)
    rcluster.migrate_keys(slot, src, dst)
    assert sorted(k.split(":")[1] for k in dst.keys("gg:*") if tag in k) == ["a", "n", "t"]

    calls = evalsha_calls(dst)
    mark = gg.log_mark()
    rep, _, _ = rcpt_once(gg, sender, rx, source(n))
    assert_reply(rep, 250)
    ev = decision(gg, rx, mark)
    assert (ev["action"], ev["reason"]) == ("pass", "triplet"), ev["_line"]
    assert errorstat(src, "ASK") == 1, "greygate was not sent ASK"
    assert evalsha_calls(dst) == calls + 1
    assert replies(gg, "ask") == 1

    fresh = f"ask2-{tok}@test.example"
    mark = gg.log_mark()
    rep, _, took = rcpt_once(gg, sender, fresh, source(n))
    assert_reply(rep, 250)          # failure = accept
    ev = decision(gg, fresh, mark)
    assert ev["reason"] == "store-failure" and "TRYAGAIN" in ev["error"], ev["_line"]
    assert replies(gg, "tryagain") == 1 and replies(gg, "ask") == 2
    assert took < TIMEOUT_MS / 1000 + 1.0

    rcluster.migrate_finish(slot, src, dst)
    mark = gg.log_mark()
    rep, _, _ = rcpt_once(gg, sender, fresh, source(n))
    assert_reply(rep, 450, "4.2.0")
    ev = decision(gg, fresh, mark)
    assert (ev["action"], ev["reason"]) == ("greylist", "new"), ev["_line"]
    assert any(tag in k and "gg:t:" in k for k in dst.keys("gg:t:*"))
    assert not [k for k in src.keys("gg:*") if tag in k]
    assert gg.alive()


def test_cluster_primary_killed(rcluster, greygate_factory, tok):
    """The primary serving a network is SIGKILLed during traffic
    (failure=tempfail): its replica is promoted within seconds; meanwhile
    every RCPT from that network is answered within the request timeout
    with 450 (greylisted) or 451 (store failure), never 5xx; the other
    primaries' networks are decided as usual throughout; afterwards a
    triplet greylisted before the kill passes on the promoted replica."""
    gg = cluster_gate(greygate_factory, rcluster, failure="tempfail")
    chosen = nets_on_every_primary(rcluster)
    victim_port, n = next(iter(chosen.items()))
    other_n = [m for p, m in chosen.items() if p != victim_port][0]
    victim = rcluster.by_port(victim_port)
    replica = rcluster.replica_of(victim)
    sender = f"dave@{tok}.sender.example"
    kept = f"kept-{tok}@test.example"
    rep, _, _ = rcpt_once(gg, sender, kept, source(n))
    assert_reply(rep, 450, "4.2.0")
    first = time.time()
    tag = "{" + net(n) + "}"
    wait_until(lambda: any(tag in k for k in replica.keys("gg:t:*")), 10,
               what="the triplet on the replica")

    mark = gg.log_mark()
    killed = time.monotonic()
    victim.proc.kill()
    victim.proc.wait()
    victim.proc = None
    codes, i, worst = [], 0, 0.0

    def promoted():
        return "role:master" in replica.cmd("INFO", "replication")

    while True:
        rx = f"during{i}-{tok}@test.example"
        i += 1
        rep, _, took = rcpt_once(gg, sender, rx, source(n))
        worst = max(worst, took)
        assert took < TIMEOUT_MS / 1000 + 2.0, f"RCPT took {took:.2f}s"
        assert rep.code in (450, 451), f"during the failover: {rep.text!r}"
        codes.append(rep.code)
        # the others too: the cluster refuses every slot (CLUSTERDOWN) from
        # when the primary is marked failed until its replica takes over
        rep, _, _ = rcpt_once(gg, sender, rx, source(other_n))
        assert rep.code in (450, 451), rep.text
        if codes[-1] == 450 and promoted() and 451 in codes:
            break
        assert time.monotonic() - killed < 30, \
            "greygate did not follow the failover:\n" + "\n".join(gg.log_lines()[mark:])
        time.sleep(0.1)
    print(f"\nfailover followed in {time.monotonic() - killed:.1f}s; {len(codes)} RCPTs "
          f"meanwhile (codes {sorted(set(codes))}), slowest {worst:.2f}s")
    assert gg.events("store", since=mark, state="connected", port=str(replica.port))

    time.sleep(max(0.0, int(first) + DELAY + 1.1 - time.time()))
    mark = gg.log_mark()
    rep, _, _ = rcpt_once(gg, sender, kept, source(n))
    assert_reply(rep, 250)
    ev = decision(gg, kept, mark)
    assert (ev["action"], ev["reason"]) == ("pass", "triplet"), ev["_line"]
    assert gg.alive()


def test_cluster_primary_frozen(rcluster, greygate_factory, tok):
    """A primary frozen (SIGSTOP) during traffic (failure=accept): RCPTs from
    its network are answered within the request timeout (a pass for store
    failure, logged), none hangs; greygate gives up on the stuck connection,
    and once the cluster has promoted the replica, decisions are
    greylisting again, on the replica. Thawed, the old primary rejoins as a
    replica and nothing changes for greygate."""
    gg = cluster_gate(greygate_factory, rcluster)
    chosen = nets_on_every_primary(rcluster)
    victim_port, n = next(iter(chosen.items()))
    victim = rcluster.by_port(victim_port)
    replica = rcluster.replica_of(victim)
    sender = f"frank@{tok}.sender.example"
    mark = gg.log_mark()
    victim.pause()
    t0 = time.monotonic()
    reasons, i = [], 0
    while True:
        rx = f"frozen{i}-{tok}@test.example"
        i += 1
        since = gg.log_mark()
        rep, _, took = rcpt_once(gg, sender, rx, source(n))
        assert took < TIMEOUT_MS / 1000 + 2.0, f"RCPT took {took:.2f}s"
        assert rep.code in (250, 450), rep.text
        ev = decision(gg, rx, since)
        reasons.append(ev["reason"])
        if ev["reason"] == "new" and "store-failure" in reasons:
            break
        assert time.monotonic() - t0 < 30, \
            "no decision after the failover:\n" + "\n".join(gg.log_lines()[mark:])
        time.sleep(0.05)
    print(f"\nfrozen primary: {len(reasons)} RCPTs, "
          f"{reasons.count('store-failure')} store failures, "
          f"decisions again after {time.monotonic() - t0:.1f}s")
    assert "role:master" in replica.cmd("INFO", "replication")
    assert gg.events("store", since=mark, state="disconnecting", port=str(victim.port))
    tag = "{" + net(n) + "}"
    assert any(tag in k for k in replica.keys("gg:t:*"))

    victim.resume()
    wait_until(lambda: "role:slave" in victim.cmd("INFO", "replication"), 30,
               interval=0.2, what="the thawed primary a replica")
    rx = f"thawed-{tok}@test.example"
    since = gg.log_mark()
    rep, _, _ = rcpt_once(gg, sender, rx, source(n))
    assert_reply(rep, 450, "4.2.0")
    assert decision(gg, rx, since)["reason"] == "new"
    assert gg.alive()


def test_cluster_ctl(rcluster, greygate_factory, tok):
    """greygate-ctl against the cluster: list and stats see the triplets
    of every primary; explain, pass, del (by key and by triplet) and
    whitelist act on the primary serving the network's tag, as the
    daemon's next decision shows."""
    gg = cluster_gate(greygate_factory, rcluster, greylist={"awl_threshold": 3})
    chosen = nets_on_every_primary(rcluster)
    sender = f"erin@{tok}.sender.example"
    for n in chosen.values():
        rep, _, _ = rcpt_once(gg, sender, f"r{n}-{tok}@test.example", source(n))
        assert_reply(rep, 450, "4.2.0")
    entries = listed(gg)
    assert sorted(e["net"] for e in entries) == sorted(net(n) for n in chosen.values()), entries
    assert all(re.fullmatch(r"[0-9a-f]{32}", e["key"]) for e in entries), entries
    out = ctl(gg, "stats")
    assert "store=redis-cluster" in out and "primaries=3" in out and "triplets=3" in out, out

    a, b, c = chosen.values()
    # explain: the stored triplet, routed to its primary, and nothing written
    out = ctl(gg, "explain", source(a), sender, f"r{a}-{tok}@test.example")
    assert "state=pending" in out and "reason=early" in out, out
    # pass: the next RCPT of that triplet passes at once
    rp = f"passme-{tok}@test.example"
    assert "passed key=" in ctl(gg, "pass", source(b), sender, rp)
    rep, _, _ = rcpt_once(gg, sender, rp, source(b))
    assert_reply(rep, 250)
    # del KEY (a key as list shows it) and del CLIENT SENDER RCPT
    key_c = next(e["key"] for e in entries if e["net"] == net(c))
    assert f"deleted key={key_c}" in ctl(gg, "del", key_c)
    assert "absent" in ctl(gg, "del", key_c)
    assert "deleted" in ctl(gg, "del", source(a), sender, f"r{a}-{tok}@test.example")
    assert sorted(e["net"] for e in listed(gg)) == [net(b)] * 2   # r{b} and passme
    # whitelist: a new triplet from that network passes (awl)
    assert "whitelisted" in ctl(gg, "whitelist", net(c))
    mark = gg.log_mark()
    fresh = f"fresh-{tok}@test.example"
    rep, _, _ = rcpt_once(gg, sender, fresh, source(c))
    assert_reply(rep, 250)
    ev = decision(gg, fresh, mark)
    assert (ev["action"], ev["reason"]) == ("pass", "awl"), ev["_line"]
    assert gg.alive()


def test_cluster_spamtrap_mark(rcluster, greygate_factory, tok):
    """A spamtrap's mark goes to the primary serving the slot of its own key,
    gg:m:{NET}, and a later connection from the network reads it there:
    hostile. greygate-ctl list does not take the mark for a triplet."""
    gg = cluster_gate(greygate_factory, rcluster, spamtraps=["trap@test.example"],
                      scoring={"weights": {"no_ptr": 0}})
    rep, _, _ = rcpt_once(gg, f"s@{tok}.sender.example", "trap@test.example", source(12))
    assert_reply(rep, 550, "5.7.1", contains="spamtrap")
    key = "gg:m:{" + net(12) + "}"
    owner = rcluster.owner(rcluster.slot(key))
    wait_until(lambda: owner.cmd("EXISTS", key) == 1, 5, what=f"{key} on {owner.port}")
    assert sorted(owner.cmd("HKEYS", key)) == ["t", "u"]
    assert owner.cmd("TTL", key) > 0
    rx = f"r-{tok}@test.example"
    mark = gg.log_mark()
    rep, _, _ = rcpt_once(gg, f"s@{tok}.sender.example", rx, "127.0.12.9")
    assert_reply(rep, 550, "5.7.1")
    ev = decision(gg, rx, mark)
    assert (ev["reason"], ev["parts"]) == ("hostile", "spamtrap:0"), ev["_line"]
    assert listed(gg) == []


def test_cluster_settings_checked(tmp_path):
    """store.redis.cluster entries are numeric ADDRESS:PORT; a cluster store
    has no sentinels, db 0 only, no braces in the prefix (the hash tag);
    type "redis-cluster" needs the list."""
    cfg = default_config(2525, "127.0.0.1:10025")
    cfg.pop("store")
    base = render_config(cfg)

    def check(store):
        p = tmp_path / "g.conf"
        p.write_text(base + "store = {\n" + store + "\n};\n")
        return subprocess.run([require_binary(), "-t", "-c", str(p)], capture_output=True,
                              text=True, timeout=30)

    ok = 'type = "redis"; redis = { cluster = [ "127.0.0.1:7000", "[::1]:7001" ]; %s };'
    assert check(ok % "").returncode == 0
    for bad, word in [('sentinels = [ "127.0.0.1:26379" ]; master_name = "m";', "sentinels"),
                      ("db = 2;", "store.redis.db"),
                      ('prefix = "gg{x}:";', "store.redis.prefix")]:
        r = check(ok % bad)
        assert r.returncode != 0 and word in r.stderr, (bad, r.stderr)
    r = check('type = "redis"; redis = { cluster = [ "redis.example:7000" ]; };')
    assert r.returncode != 0 and "redis.example:7000" in r.stderr, r.stderr
    r = check('type = "redis-cluster";')
    assert r.returncode != 0 and "store.redis.cluster" in r.stderr, r.stderr
