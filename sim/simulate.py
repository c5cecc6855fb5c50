#!/usr/bin/python3
"""The deliverability simulator (`make simulate`, sim/README.md).

Plays one synthetic mail day (sim/population.py) with real SMTP from many
loopback source addresses against two greygate pairs at once, each a
primary (mx1, 127.0.1.1) and a backup (mx2, 127.0.1.2) sharing one Redis:

  baseline   /24 keys, no scoring: what postgrey does
  selective  pool keys (spf:, ptr:), DNSBL/DNSWL scoring, classes, spamtraps
             -- each part only when this greygate knows its settings
             (`greygate -t` says; the report names what was on)

Both pairs relay to one smtp-sink; one dnsmasq serves the population's
PTR, A, MX, TXT (SPF) and DNSBL/DNSWL zones. The clock is compressed: the
greylisting delay, lifetimes and every sender's retry interval are divided
by --factor, so a day takes minutes; delays are reported in real-world
(unscaled) seconds, as planned by the trace (the lag of the player behind
its plan is reported beside). Prints a table per population and writes a
PNG of the delay distributions and the table (text and JSON) into --out.

  simulate.py [--quick] [--seed N] [--factor F] [--hours H] [--out DIR]
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "test"))          # the test harness: config rendering, ports
sys.path.insert(0, str(HERE))

from harness.greygate import default_config, merge, render_config  # noqa: E402
from harness.util import free_port, parse_kv  # noqa: E402
import population as popmod  # noqa: E402
from population import DNSBL_ZONE, DNSWL_ZONE, DOMAIN, MX_ADDRS, TRAP  # noqa: E402

SMTP_SINK = "/usr/sbin/smtp-sink"
DELAY = 300                    # the configured greylisting delay, real seconds
SUSPICIOUS_DELAY = 900         # the suspicious class's delay, real seconds
LEGIT = ["gmail", "outlook", "ses", "static", "lists", "trusted"]
POOLS = ["gmail", "outlook", "ses"]


def log(msg):
    print(f"[simulate {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------
# The servers
# --------------------------------------------------------------------------

class Procs:
    """Every process the simulator starts, stopped at exit."""

    def __init__(self, workdir):
        self.dir = workdir
        self.procs = []

    def spawn(self, argv, logname):
        f = open(self.dir / logname, "ab")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def wait_port(host, port, proc, what, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} at start")
        try:
            _, w = await asyncio.open_connection(host, port)
            w.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} does not listen on {host}:{port}")
            await asyncio.sleep(0.05)


def dnsmasq_conf(port, logf, day):
    return "\n".join([
        f"port={port}", "listen-address=127.0.0.1", "bind-interfaces", "no-resolv",
        "no-hosts", "no-negcache", "local-ttl=3600", f"log-facility={logf}",
        "local=/example/", "local=/127.in-addr.arpa/",
    ] + day.dns_lines) + "\n"


def gate_config(args, run, role, port, dns_port, sink_port, redis_port, workdir, extra):
    """The configuration of one greygate: ROLE "primary" or "backup" of RUN."""
    f = args.factor
    addr = MX_ADDRS[0 if role == "primary" else 1]
    cfg = merge(default_config(port, f"127.0.0.1:{sink_port}", f"127.0.0.1:{dns_port}"), {
        "myhostname": f"{'mx1' if role == 'primary' else 'mx2'}.{DOMAIN}",
        "listen": [f"{addr}:{port}"],
        "backend": {"xclient": False, "idle_time": None, "command_timeout": 60},
        "mynetworks": [],
        "local_domains": [DOMAIN] if role == "primary" else [],
        "relay_domains": [] if role == "primary" else [DOMAIN],
        "limits": {"max_connections": 5000, "max_per_client": 500, "max_recipients": 100,
                   "max_errors": 100},
        "log": {"target": "stderr", "level": "info"},
        # The AWL's one-pass-an-hour step is not scaled by the clock
        # factor, so it cannot work in a compressed day: off in both runs.
        "greylist": {"enabled": True, "delay": DELAY // f, "retry_window": 172800 // f,
                     "pass_lifetime": 3110400 // f, "awl_threshold": 0,
                     "max_new_per_client": 1000000, "normalize_sender": True},
        "store": {"type": "redis", "failure": "accept",
                  "redis": {"host": "127.0.0.1", "port": redis_port, "timeout_ms": 1000,
                            "prefix": f"{run}:"}},
        "dns": {"servers": [f"127.0.0.1:{dns_port}"], "timeout_ms": 1000, "tries": 2,
                "cache_size": 20000},
        "control_socket": str(workdir / f"{run}-{role}.sock"),
        "admin": {"listen": f"127.0.0.1:{free_port(19925)}"},
    })
    if role == "backup":
        cfg["handover"] = {"domains": [DOMAIN], "probe_interval": 5, "probe_timeout": 5,
                           "probe_port": port}
    for over in extra:
        cfg = merge(cfg, over)
    return cfg


def run_parts(run, factor):
    """The settings that make RUN what it is, each in the shapes this
    greygate may know them by (the first it accepts wins), as
    [(name, [overlay, ...])]. Baseline: pool keys explicitly off (where
    greygate has them they are on by default). Selective: everything."""
    if run == "baseline":
        return [("pool_keys off", [{"greylist": {"pool_keys": []}}])]
    weights = {"no_ptr": 2, "unconfirmed_ptr": 1, "generic_ptr": 2, "pregreet": 4,
               "bad_helo": 1, "spf_fail": 3, "spf_softfail": 1, "backup_first": 3}
    dnsxl = [f"{DNSBL_ZONE}=127.0.0.[2..11]*3", f"{DNSWL_ZONE}=127.0.[0..255].[1..3]*-5"]
    classes = {"trusted": -3, "suspicious": 3, "hostile": 8}
    return [
        ("pool_keys", [{"greylist": {"pool_keys": ["spf", "ptr"], "spf_max_prefix4": 16,
                                     "spf_max_prefix6": 32}},
                       {"greylist": {"pool_keys": ["spf", "ptr"]}}]),
        ("scoring", [{"scoring": {"dnsbl": dnsxl, "classes": classes,
                                  "suspicious": {"delay": SUSPICIOUS_DELAY // factor},
                                  "hostile": {"action": "reject"}}},
                     {"scoring": {"dnsbl": dnsxl, "classes": classes}},
                     {"scoring": {"dnsbl": dnsxl}}]),
    ] + [(f"weight {w}", [{"scoring": {"weights": {w: v}}}]) for w, v in weights.items()] + [
        ("greet_wait", [{"greet_wait": 1}, {"scoring": {"greet_wait": 1}}]),
        ("spamtraps", [{"spamtraps": [TRAP], "trap_lifetime": 86400 // factor},
                       {"scoring": {"spamtraps": [TRAP], "trap_lifetime": 86400 // factor}}]),
    ]


def accepted(greygate, cfg, path):
    path.write_text(render_config(cfg))
    r = subprocess.run([greygate, "-t", "-c", str(path)], capture_output=True, text=True)
    return r.returncode == 0, (r.stderr or r.stdout).strip().splitlines()[-1:]


def probe_parts(args, run, workdir, mk):
    """The overlays of run_parts() this greygate accepts (with the ones
    before it), and a line saying what is on and off."""
    kept, on, off = [], [], []
    for name, variants in run_parts(run, args.factor):
        whys = []
        for v in variants:
            ok, why = accepted(args.greygate, mk(kept + [v]), workdir / f"{run}-probe.conf")
            if ok:
                kept.append(v)
                on.append(name)
                break
            whys += why
        else:   # the first shape's refusal: the one the specification names
            why = whys[0].split(": ", 1)[-1] if whys else "refused"
            if off and off[-1][1] == why:
                off[-1][0].append(name)
            else:
                off.append(([name], why))
    off = "; ".join(f"{', '.join(names)} ({why})" for names, why in off)
    return kept, f"on: {', '.join(on) or 'nothing'}; off: {off or 'nothing'}"


# --------------------------------------------------------------------------
# The senders
# --------------------------------------------------------------------------

class Reply(Exception):
    pass


async def read_reply(reader, timeout):
    code, text = None, []
    while True:
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            raise Reply("connection closed")
        line = line.decode("latin-1").rstrip("\r\n")
        text.append(line)
        if len(line) < 4 or line[3] != "-":
            code = int(line[:3]) if line[:3].isdigit() else 0
            return code, " ".join(text)


async def attempt(host, port, att, msg, timeout=60):
    """One SMTP session; ('ok'|'temp'|'perm', code of the real recipient)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(att.addr, 0)), timeout)
    except (OSError, asyncio.TimeoutError):
        return "temp", 0
    helo = att.helo or att.addr

    async def cmd(line):
        writer.write(line.encode() + b"\r\n")
        await writer.drain()
        return (await read_reply(reader, timeout))[0]

    try:
        if att.pregreet:                 # talks first: the EHLO before the banner
            writer.write(f"EHLO {helo}\r\n".encode())
            banner = (await read_reply(reader, timeout))[0]
            if banner != 220:
                return ("perm" if banner >= 500 else "temp"), banner
            code = (await read_reply(reader, timeout))[0]
        else:
            banner = (await read_reply(reader, timeout))[0]
            if banner != 220:
                return ("perm" if banner >= 500 else "temp"), banner
            code = await cmd(f"EHLO {helo}")
        if code != 250:
            return "temp", code
        code = await cmd(f"MAIL FROM:<{msg.sender}>")
        if code != 250:
            return ("perm" if code >= 500 else "temp"), code
        real = 0
        for r in msg.rcpts:
            c = await cmd(f"RCPT TO:<{r}>")
            if r == msg.real_rcpt:
                real = c
        if real != 250:
            await cmd("QUIT")
            return ("perm" if real >= 500 else "temp"), real
        if await cmd("DATA") != 354:
            return "temp", real
        code = await cmd(f"Subject: sim {msg.id}\r\n\r\nmessage {msg.id}\r\n.")
        await cmd("QUIT")
        return ("ok" if code == 250 else "perm" if code >= 500 else "temp"), real
    except (Reply, OSError, asyncio.TimeoutError, ValueError):
        return "temp", 0
    finally:
        writer.close()


class Player:
    """Plays DAY against one pair of greygates; results per message."""

    def __init__(self, port, factor, horizon, sem):
        self.port, self.factor = port, factor
        self.horizon, self.sem = horizon, sem
        self.results = {}
        self.lags = []

    async def play(self, msg, t0):
        res = {"outcome": "undelivered", "delay": None, "tries": 0, "deferred": 0,
               "codes": []}
        loop = asyncio.get_running_loop()
        for att in msg.attempts:
            if att.t > self.horizon:
                break
            await asyncio.sleep(max(0.0, t0 + att.t / self.factor - loop.time()))
            async with self.sem:
                self.lags.append((loop.time() - t0) * self.factor - att.t)
                out, code = await attempt(MX_ADDRS[att.mx], self.port, att, msg)
            res["tries"] += 1
            res["codes"].append(code)
            if out == "ok":
                res["outcome"] = "delivered"
                res["delay"] = att.t - msg.attempts[0].t
                break
            if out == "perm":
                res["outcome"] = "rejected"
                break
            res["deferred"] += 1
        self.results[msg.id] = res


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------

def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def retry_gap(schedule):
    """The retry interval that spans the configured delay (a sender's
    first chance to pass): the target's "one retry interval"."""
    times = [0] + popmod.SCHEDULES[schedule]
    for a, b in zip(times, times[1:]):
        if b >= DELAY:
            return b - a
    return 0


def stats(day, results):
    rows = {}
    for pop in LEGIT + ["bots"]:
        ms = [m for m in day.messages if m.pop == pop]
        rs = [results[m.id] for m in ms]
        delivered = [r for r in rs if r["outcome"] == "delivered"]
        delayed = [r for r in rs if r["deferred"] > 0 or r["outcome"] != "delivered"]
        delays = [r["delay"] for r in delivered if r["delay"] > 0]
        row = {"messages": len(ms),
               "delayed": len(delayed) / len(ms) if ms else 0,
               "median": statistics.median(delays) if delays else 0,
               "p95": pct(delays, 0.95) or 0, "max": max(delays) if delays else 0,
               "never": sum(r["outcome"] != "delivered" for r in rs) / len(ms) if ms else 0,
               "rejected": sum(r["outcome"] == "rejected" for r in rs) / len(ms) if ms else 0,
               "delays": [r["delay"] if r["outcome"] == "delivered" else None for r in rs]}
        if pop in POOLS:
            # Delays per (pool, sender, recipient): a message that starts
            # while an earlier one of its triple still waits shares that
            # wait (no key could spare it); one that starts later and is
            # delayed again is a second delay.
            per = {}
            for m, r in sorted(zip(ms, rs), key=lambda mr: mr[0].attempts[0].t):
                n, until = per.get(m.triple, (0, -1.0))
                t = m.attempts[0].t
                if r["deferred"] > 0:
                    done = t + (r["delay"] if r["delay"] is not None else 1e12)
                    n, until = (n, max(until, done)) if t < until else (n + 1, done)
                per[m.triple] = (n, until)
            per = {k: n for k, (n, _) in per.items()}
            row["triples"] = len(per)
            row["triples_over1"] = sum(v > 1 for v in per.values())
            row["max_per_triple"] = max(per.values()) if per else 0
            pool = next(p for p in popmod.POOLS if p.name == pop)
            row["target_p95"] = 1.2 * DELAY + retry_gap(pool.schedule)
        rows[pop] = row
    return rows


def fmt_s(s):
    if s is None:
        return "-"
    return f"{s / 60:.0f}m" if s < 3600 * 2 else f"{s / 3600:.1f}h"


def table(runs):
    lines = []
    hdr = (f"{'population':<10} {'run':<10} {'msgs':>5} {'delayed':>8} {'median':>7} {'p95':>7} "
           f"{'max':>7} {'never':>6} {'blocked (5xx)':>13} {'pool triples >1 delay (max)':>28}")
    lines += [hdr, "-" * len(hdr)]
    for pop in LEGIT + ["bots"]:
        for run, rows in runs.items():
            r = rows[pop]
            blocked = (f"{100 * r['never']:.0f}% ({100 * r['rejected']:.0f}%)" if pop == "bots"
                       else "")
            trip = (f"{r['triples_over1']}/{r['triples']} ({r['max_per_triple']})"
                    f"  p95 target {fmt_s(r['target_p95'])}" if "triples" in r else "")
            lines.append(f"{pop:<10} {run:<10} {r['messages']:>5} {100 * r['delayed']:>7.0f}% "
                         f"{fmt_s(r['median']):>7} {fmt_s(r['p95']):>7} {fmt_s(r['max']):>7} "
                         f"{100 * r['never']:>5.0f}% {blocked:>13} {trip:>28}")
    return "\n".join(lines)


def targets(runs):
    """Issue 14's targets, read off the selective run (and the baseline's
    bots): one line each, "met" or "MISSED"."""
    if "selective" not in runs:
        return []
    sel, out = runs["selective"], []

    def line(ok, what):
        out.append(f"  {'met   ' if ok else 'MISSED'} {what}")
    for pop in POOLS:
        r = sel[pop]
        line(r["triples_over1"] == 0 and r["never"] == 0 and r["p95"] <= r["target_p95"],
             f"{pop}: {r['triples_over1']} triples delayed more than once (0), p95 "
             f"{fmt_s(r['p95'])} (<= {fmt_s(r['target_p95'])}), never delivered "
             f"{100 * r['never']:.0f}% (0)")
    line(sel["trusted"]["delayed"] == 0,
         f"trusted: {100 * sel['trusted']['delayed']:.0f}% delayed (0)")
    if "baseline" in runs:
        b, s = runs["baseline"]["bots"]["never"], sel["bots"]["never"]
        line(s >= b, f"bots: {100 * s:.0f}% blocked (>= baseline's {100 * b:.0f}%)")
    return ["targets (issue 14), selective run:"] + out


def plot(day, runs, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 1]})
    colours = dict(zip(LEGIT, ["tab:red", "tab:blue", "tab:orange", "tab:green", "tab:purple",
                               "tab:brown"]))
    style = {"baseline": "--", "selective": "-"}
    horizon_h = day.hours + 6
    for run, rows in runs.items():
        for pop in LEGIT:
            ds = rows[pop]["delays"]
            if not ds:
                continue
            xs = [0.0] + sorted(d / 3600 for d in ds if d is not None) + [horizon_h]
            ys = [sum(1 for d in ds if d is not None and d / 3600 <= x) / len(ds) for x in xs]
            ax.step(xs, ys, where="post", linestyle=style.get(run, ":"), color=colours[pop],
                    label=f"{pop} ({run})")
    ax.set_xlim(0, min(8, horizon_h))
    ax.set_xlabel("delay, real-world hours (first attempt to delivery)")
    ax.set_ylabel("share of messages delivered")
    ax.set_title("Delivered within x hours (dashed: baseline /24 keys)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    names = list(runs)
    vals = [100 * runs[n]["bots"]["never"] for n in names]
    bx.bar(names, vals, color=["grey", "tab:green"][:len(names)])
    bx.set_ylim(0, 100)
    bx.set_title("bots: share never delivered")
    bx.set_ylabel("%")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def key_kinds(logpaths):
    """The network parts of the stored keys, by kind, from the decision log
    lines (net=spf:..., net=ptr:..., or an address prefix), and the classes."""
    kinds, classes = {}, {}
    for p in logpaths:
        for line in p.read_text(errors="replace").splitlines():
            if "event=decision" not in line:
                continue
            d = parse_kv(line)
            nets = [d.get(f, "") for f in ("key", "net")]
            pool = [n for n in nets if n[:4] in ("spf:", "ptr:", "net:")]
            k = pool[0][:3] if pool else "net"
            kinds[k] = kinds.get(k, 0) + 1
            if "class" in d:
                classes[d["class"]] = classes.get(d["class"], 0) + 1
    return kinds, classes


# --------------------------------------------------------------------------

async def main_async(args, workdir, procs):
    day = popmod.Day(seed=args.seed, hours=args.hours, scale=args.scale)
    log(f"trace: seed {args.seed}, {args.hours} h of arrivals, {len(day.messages)} messages "
        f"{popmod.summary(day)}, clock factor {args.factor}, delay {DELAY} s "
        f"-> {DELAY // args.factor} s")
    dns_port, redis_port, sink_port = free_port(15353), free_port(16379), free_port(16025)
    (workdir / "dnsmasq.conf").write_text(dnsmasq_conf(dns_port, workdir / "dnsmasq.log", day))
    dns = procs.spawn(["dnsmasq", "--keep-in-foreground", "-C", str(workdir / "dnsmasq.conf"),
                       "--user=root", "--pid-file="], "dnsmasq.out")
    redis = procs.spawn(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                         "--save", "", "--appendonly", "no", "--dir", str(workdir)], "redis.log")
    sink = procs.spawn([SMTP_SINK, "-u", "postfix", "-m", "2000", f"127.0.0.1:{sink_port}",
                        "1024"], "sink.log")
    await wait_port("127.0.0.1", redis_port, redis, "redis-server")
    await wait_port("127.0.0.1", sink_port, sink, "smtp-sink")
    await asyncio.sleep(0.3)
    if dns.poll() is not None:
        raise RuntimeError("dnsmasq did not start: see " + str(workdir / "dnsmasq.out"))

    runs, players, gatelogs, notes = {}, {}, {}, {}
    for run in args.runs:
        port = free_port(17025)        # both MX hosts of the run, on their own addresses

        def mk(ex, port=port, run=run):
            return gate_config(args, run, "primary", port, dns_port, sink_port, redis_port,
                               workdir, ex)
        extra, notes[run] = probe_parts(args, run, workdir, mk)
        log(f"{run}: {notes[run]}")
        for role in ("primary", "backup"):
            cfg = gate_config(args, run, role, port, dns_port, sink_port, redis_port, workdir,
                              extra)
            conf = workdir / f"{run}-{role}.conf"
            conf.write_text(render_config(cfg))
            p = procs.spawn([args.greygate, "-c", str(conf)], f"{run}-{role}.log")
            gatelogs.setdefault(run, []).append(workdir / f"{run}-{role}.log")
            await wait_port(MX_ADDRS[0 if role == "primary" else 1], port, p,
                            f"greygate {run} {role}")
        players[run] = Player(port, args.factor, day.window + args.tail * 3600,
                              asyncio.Semaphore(args.concurrency))
    await asyncio.sleep(1)            # the backups' hand-over probes see the primaries up
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.5
    end = (day.window + args.tail * 3600) / args.factor
    log(f"playing {len(day.messages)} messages x {len(players)} runs over {end:.0f} s")
    tasks = [asyncio.create_task(pl.play(m, t0)) for pl in players.values() for m in day.messages]
    await asyncio.gather(*tasks)
    log("done")
    for run, pl in players.items():
        runs[run] = stats(day, pl.results)
        lag = sorted(pl.lags)
        runs[run]["_lag"] = {"p95": pct(lag, 0.95), "max": lag[-1] if lag else 0}
        runs[run]["_keys"], runs[run]["_classes"] = key_kinds(gatelogs[run])
    return day, runs, notes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short day (about 2 minutes)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--factor", type=int, default=150,
                    help="clock compression; 300 s (the delay) must divide by it")
    ap.add_argument("--hours", type=float, help="hours of arrivals (12; --quick 1.5)")
    ap.add_argument("--tail", type=float, help="hours played after the last arrival "
                    "(6; --quick 3)")
    ap.add_argument("--scale", type=float, help="message count multiplier (1; --quick 0.3)")
    ap.add_argument("--runs", default="baseline,selective")
    ap.add_argument("--concurrency", type=int, default=300)
    ap.add_argument("--greygate", default=str(ROOT / "build" / "greygate"))
    ap.add_argument("--out", default=str(ROOT / "build" / "sim"))
    args = ap.parse_args()
    args.hours = args.hours or (1.5 if args.quick else 12.0)
    args.tail = args.tail if args.tail is not None else (3.0 if args.quick else 6.0)
    args.scale = args.scale or (0.3 if args.quick else 1.0)
    args.runs = args.runs.split(",")
    if DELAY % args.factor or SUSPICIOUS_DELAY % args.factor:
        sys.exit(f"--factor {args.factor}: {DELAY} and {SUSPICIOUS_DELAY} must divide by it")
    if os.geteuid() != 0:
        sys.exit("simulate.py runs as root (smtp-sink -u postfix, dnsmasq --user=root)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="gg-sim-", dir="/tmp"))
    os.chmod(workdir, 0o755)
    procs = Procs(workdir)
    try:
        day, runs, notes = asyncio.run(main_async(args, workdir, procs))
    finally:
        procs.stop()
    title = (f"greygate deliverability simulator: seed {args.seed}, {len(day.messages)} messages, "
             f"{args.hours:g} h + {args.tail:g} h tail, delay {DELAY} s, clock /{args.factor}")
    text = [title, "", table(runs), ""] + targets(runs) + [""]
    for run, rows in runs.items():
        text.append(f"{run}: keys {rows['_keys']} classes {rows['_classes'] or '-'}; player lag "
                    f"p95 {rows['_lag']['p95'] or 0:.0f} s, max {rows['_lag']['max']:.0f} s "
                    f"(real-world)" + (f"; {notes[run]}" if run in notes else ""))
    text.append(f"logs and configurations: {workdir}")
    report = "\n".join(text)
    print(report)
    (out / "report.txt").write_text(report + "\n")
    (out / "results.json").write_text(json.dumps(
        {run: {p: {k: v for k, v in r.items() if k != "delays"} if isinstance(r, dict) else r
               for p, r in rows.items()} for run, rows in runs.items()}, indent=1, default=str))
    plot(day, runs, out / "delays.png", title)
    print(f"wrote {out / 'report.txt'}, {out / 'results.json'}, {out / 'delays.png'}")


if __name__ == "__main__":
    main()
