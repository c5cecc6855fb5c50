#!/usr/bin/env python3
"""greygate's footprint and cost figures (`make bench-footprint`; the
method and the reference figures are in bench/README.md, "Footprint").

  redis     Redis memory per stored triplet and per auto-whitelist entry:
            bench/footprint.c sends the real greylist script (EVALSHA, the
            KEYS/ARGV greygate sends), pipelined, into a private
            redis-server, and reads INFO memory before and after; then the
            same for the compact layouts the README weighs.
  memstore  the embedded store: heap and RSS per entry, file bytes per
            entry, save and load times (bench/footprint.c, linking
            lib/memstore.c), the fork time of a process that holds them.
  stall     a greygate with store.type = "memory" started on that 1 M-entry
            file (load time, RSS per entry), saving every 2 s in a child,
            while a sampler times RCPT round trips: the longest round trip
            with saves against the same run without them.
  latency   storm decisions/s, 200 concurrent clients, with Redis behind a
            relay that adds 0, 1 and 10 ms of round-trip time (this
            kernel has no sch_netem: see the README).

Runs as root (it uses bench.py's environment: smtp-sink runs as postfix).
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench as B  # noqa: E402  (the bench environment: DNS, sinks, greygate, load)

PARTS = ("redis", "memstore", "stall", "latency")


def kv(line):
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', line)}


def spread(vals, fmt="{:.1f}"):
    if len(vals) == 1:
        return fmt.format(vals[0])
    return (fmt.format(statistics.median(vals)) + " (" + fmt.format(min(vals)) + "–"
            + fmt.format(max(vals)) + f", {len(vals)} runs)")


class Env(B.Env):
    """bench.py's environment, with settings laid over greygate's
    configuration (self.extra) and Redis optionally reached through the
    delay relay (self.gate_redis_port)."""
    extra = {}

    def gg_config(self, *a, **kw):
        cf = self.harness.greygate
        orig = cf.render_config
        cf.render_config = lambda cfg: orig(cf.merge(cfg, self.extra))
        try:
            return super().gg_config(*a, **kw)
        finally:
            cf.render_config = orig


def driver(args, *argv):
    r = subprocess.run([args.driver, *map(str, argv)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{args.driver} {argv}: {r.stderr.strip()}")
    return [kv(l) | {"_tag": l.split()[0]} for l in r.stdout.splitlines() if l.strip()]


# --------------------------------------------------------------------------

def part_redis(env, args, out):
    rows = {}
    for layout in ["script"] + (["noparts", "int", "intbin", "bucket",
                                     "net10", "net100", "net1000"] if args.layouts else []):
        for _ in range(args.runs):
            for d in driver(args, "redis", env.redis_port, args.n, layout):
                if "bytes_per_entry" in d:
                    key = layout if d["_tag"] == "triplets" else d["_tag"]
                    rows.setdefault(key, []).append(float(d["bytes_per_entry"]))
                    B.log(f"  redis {key}: {float(d['bytes_per_entry']):.1f} B/entry "
                          f"({d['keys_added']} keys, {float(d['per_s']):.0f}/s)")
                elif d["_tag"] == "sample":
                    out.setdefault("samples", {})[d["key"]] = int(d["memory_usage"])
    # net_first is a triplet and a new-triplet counter per network
    rows["counter"] = [a - b for a, b in zip(rows.pop("net_first"), rows["script"])]
    out["redis"] = rows


def part_memstore(env, args, out):
    rows = {}
    for k in range(args.runs):
        for d in driver(args, "memstore", args.n, env.dir / "store.file"):
            tag = d.pop("_tag")
            for key, v in d.items():
                with_tag = f"{tag}.{key}"
                rows.setdefault(with_tag, []).append(float(v))
        B.log(f"  memstore run {k + 1}: " + ", ".join(
            f"{key} {v[-1]:g}" for key, v in rows.items() if key.split(".")[1] in
            ("heap_per_entry", "rss_per_entry", "bytes_per_entry", "secs", "mean_ms")))
    out["memstore"] = rows


class RawSampler(B.Sampler):
    def finish(self):
        self.p.stdin.close()
        d = json.loads(self.p.stdout.read())
        self.p.wait(60)
        return sorted(x / 1000 for x in d["lat_us"]), d["errors"]


def start_memory_gate(env, name, file, save_interval):
    env.extra = {"store": {"type": "memory", "file": str(file), "max_entries": 1200000,
                           "save_interval": save_interval}}
    t0 = time.monotonic()
    gg = env.start_greygate(name, log_level="info")
    return gg, time.monotonic() - t0


def rss_kb(pid):
    return B.status_kb(pid, "VmRSS")


def part_stall(env, args, out):
    file = env.dir / "store.file"
    if not file.exists():
        driver(args, "memstore", args.n, file)
    rows = {}
    empty = env.dir / "empty.file"
    gg, _ = start_memory_gate(env, "gg-empty", empty, 86400)
    base_rss = rss_kb(gg.proc.pid)
    B.stop(gg.proc)
    for k in range(args.runs):
        for interval, label in ((86400, "nosave"), (2, "save")):
            work = env.dir / f"work-{label}.file"
            shutil.copy(file, work)
            gg, start_s = start_memory_gate(env, f"gg-{label}{k}", work, interval)
            try:
                text = gg.logf.read_text(errors="replace")
                m = re.search(r"event=store_load .* entries=(\d+)", text)
                entries = int(m.group(1)) if m else 0
                if label == "nosave":
                    rows.setdefault("start_s", []).append(start_s)
                    rows.setdefault("rss_per_entry", []).append(
                        (rss_kb(gg.proc.pid) - base_rss) * 1024 / max(entries, 1))
                smp = RawSampler(gg.port, "storm", 20, f"stall{label}{k}", interval=0.005)
                time.sleep(args.stall_seconds)
                lat, errors = smp.finish()
                saves = [kv(l) for l in gg.logf.read_text(errors="replace").splitlines()
                         if "event=store_save" in l and "result=ok" in l]
            finally:
                B.stop(gg.proc)
            rows.setdefault(f"{label}.max_ms", []).append(lat[-1])
            rows.setdefault(f"{label}.p99_ms", []).append(lat[int(0.99 * (len(lat) - 1))])
            rows.setdefault(f"{label}.samples", []).append(len(lat))
            if saves:
                rows.setdefault("child_save_ms", []).extend(float(s["duration_ms"])
                                                            for s in saves)
                rows.setdefault("saves", []).append(len(saves))
            B.log(f"  stall {label}: {entries} entries loaded, {len(lat)} RCPTs ({errors} err), "
                  f"p99 {lat[int(0.99 * (len(lat) - 1))]:.2f} ms, max {lat[-1]:.2f} ms, "
                  f"{len(saves)} saves " + " ".join(s["duration_ms"] + "ms" for s in saves))
    out["stall"] = rows


def part_latency(env, args, out):
    rows = {}
    spec = dict(B.LOADS["storm"], conc=args.conc)
    for delay in args.delays:
        # "direct": no relay at all, greygate straight to Redis
        relay, port = None, env.redis_port
        if delay != "direct":
            port = env.port(17379)
            relay = B.spawn([args.driver, "relay", str(port), str(env.redis_port), delay],
                            env.dir / f"relay{delay}.log")
            B.wait_port(port, relay)
        env.extra = {"store": {"redis": {"port": port, "timeout_ms": 5000}}}
        gg = env.start_greygate(f"gg-delay{delay}")
        try:
            name = f"storm-{delay}"
            B.log(f"[{name}] {args.conc} clients; Redis {delay} (ms of added RTT)")
            res = B.measure(env, name, gg.port, spec, gg.pids + ([relay.pid] if relay else []),
                            gg.pids, "storm", {},
                            checks={"before": lambda: env.redis_cmd("flushall"),
                                    "metrics": gg.metrics_url})
            rows[delay] = res.runs
        finally:
            B.stop(gg.proc)
            if relay:
                B.stop(relay)
    out["latency"] = rows


# --------------------------------------------------------------------------

def report(out, args):
    L = [f"footprint figures ({args.n} entries; median (min–max) of the runs)"]
    if "redis" in out:
        r = out["redis"]
        L.append("Redis (INFO used_memory delta / entries):")
        names = {"script": "triplet, today's layout (through greylist_lua)",
                 "awl": "auto-whitelist entry (through greylist_lua)",
                 "counter": "new-triplet counter per network (derived)",
                 "noparts": "triplet: hash of f,p only",
                 "int": "triplet: one integer string, hex key",
                 "intbin": "triplet: one integer string, binary key",
                 "bucket": "triplet: 65,536 bucket hashes, 8-byte fields",
                 "net10": "triplet: a hash per network, 10 triplets each",
                 "net100": "triplet: a hash per network, 100 triplets each",
                 "net1000": "triplet: a hash per network, 1000 triplets each"}
        for k, v in r.items():
            L.append(f"  {names.get(k, k):<52} {spread(v)} B")
        for k, v in out.get("samples", {}).items():
            L.append(f"  MEMORY USAGE {k}: {v} B")
    if "memstore" in out:
        m = out["memstore"]
        L.append("embedded store (bench/footprint.c):")
        for key, label, fmt in (("memory.heap_per_entry", "heap per entry, B", "{:.1f}"),
                                ("memory.rss_per_entry", "RSS per entry, B", "{:.1f}"),
                                ("save.bytes_per_entry", "file per entry, B", "{:.1f}"),
                                ("save.secs", "save, s", "{:.3f}"),
                                ("load.secs", "load, s", "{:.3f}"),
                                ("fork.mean_ms", "fork, mean ms", "{:.2f}"),
                                ("fork.max_ms", "fork, max ms", "{:.2f}")):
            if key in m:
                L.append(f"  {label:<24} {spread(m[key], fmt)}")
    if "stall" in out:
        s = out["stall"]
        L.append("greygate, memory store with the 1 M-entry file:")
        for key, label, fmt in (("start_s", "start incl. load, s", "{:.2f}"),
                                ("rss_per_entry", "RSS per entry, B", "{:.1f}"),
                                ("child_save_ms", "save in the child, ms", "{:.0f}"),
                                ("nosave.p99_ms", "RCPT p99 no saves, ms", "{:.2f}"),
                                ("nosave.max_ms", "RCPT max no saves, ms", "{:.2f}"),
                                ("save.p99_ms", "RCPT p99 saving /2s, ms", "{:.2f}"),
                                ("save.max_ms", "RCPT max saving /2s, ms", "{:.2f}")):
            if key in s:
                L.append(f"  {label:<24} {spread(s[key], fmt)}")
    if "latency" in out:
        L.append(f"storm, {args.conc} clients, Redis straight (direct) or behind the delay "
                 "relay (ms of round trip added):")
        lat = out["latency"]
        med = {d: statistics.median(r["rate"] for r in runs) for d, runs in lat.items()}
        for delay, runs in lat.items():
            rel = "".join(f"  = {med[delay] / med[b]:.2f} x {b}" for b in ("0", "direct")
                          if b in med and b != delay)
            L.append(f"  {delay:>6} {'' if delay == 'direct' else 'ms'}  "
                     f"{spread([r['rate'] for r in runs], '{:.0f}')} decisions/s{rel};"
                     f"  greygate's own mean "
                     f"{statistics.median(r['gg_mean'] or 0 for r in runs):.2f} ms;"
                     f"  box {statistics.median(r['box'] for r in runs):.0f}%")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--greygate", default=str(B.ROOT / "build-bench" / "greygate"))
    ap.add_argument("--driver", default=str(B.ROOT / "build-bench" / "bench" / "footprint"))
    ap.add_argument("--only", default=",".join(PARTS))
    ap.add_argument("--n", type=int, default=1000000, help="entries")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-layouts", dest="layouts", action="store_false",
                    help="Redis: only today's layout")
    ap.add_argument("--stall-seconds", type=float, default=10.0)
    ap.add_argument("--conc", type=int, default=200)
    ap.add_argument("--delays", default="direct,0,1,10",
                    help="ms of round trip the relay adds; direct: no relay")
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("footprint.py runs as root (bench.py's environment)")
    args.delays = args.delays.split(",")
    which = args.only.split(",")
    # what bench.py's Env and measure() read
    args.uncached_ptr, args.profile = False, None
    args.max_other, args.retries, args.retry_budget = 0.15, 2, 120

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    t0 = time.monotonic()
    env = Env(args)
    out = {}
    try:
        env.start_redis()
        if "redis" in which:
            B.log("[redis] bytes per triplet and per AWL entry")
            part_redis(env, args, out)
        if "memstore" in which:
            B.log("[memstore] the embedded store, in memory and on disk")
            part_memstore(env, args, out)
        if "stall" in which or "latency" in which:
            env.start_dns()
            env.start_sinks()
        if "stall" in which:
            B.log("[stall] greygate saving 1 M entries while RCPTs are timed")
            part_stall(env, args, out)
        if "latency" in which:
            part_latency(env, args, out)
    finally:
        env.close()
    print(report(out, args))
    print(f"(took {time.monotonic() - t0:.0f}s)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
