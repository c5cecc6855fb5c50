#!/usr/bin/python3
"""A picture of the dashboard's main panels from real metrics.

Grafana is not in Debian, so this draws what contrib/grafana/greygate.json
shows with matplotlib, from /metrics scraped once a second while a private
greygate (build/greygate) takes real SMTP traffic on loopback: a
greylisting storm and whitelisted mail relayed to Postfix's smtp-sink,
then the backend stopped for a while, then Redis stopped for a while. Run as root from the repository (make
dashboard-snapshot); writes docs/dashboard.png.

    contrib/grafana/snapshot.py [--phase SECONDS] [--out FILE]
"""

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "test"))
from harness import greygate as gg  # noqa: E402

SINK, SOURCE = "/usr/sbin/smtp-sink", "/usr/sbin/smtp-source"
LINE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (\S+)$')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on port {port}")


def scrape(url):
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


class Load(threading.Thread):
    """smtp-source runs back to back until stopped."""

    def __init__(self, port, sender, storm):
        super().__init__(daemon=True)
        self.port, self.sender, self.storm, self.stop = port, sender, storm, False

    def run(self):
        n = 0
        while not self.stop:
            n += 1
            rcpt = ["-A", "-N", "-t", f"s{n}x@test.example"] if self.storm else ["-t", "u@test.example"]
            subprocess.run([SOURCE, "-s", "5", "-m", "100", "-M", "client.example",
                            "-f", self.sender, "-l", "2048", *rcpt, f"127.0.0.1:{self.port}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={"PATH": "/usr/sbin:/usr/bin"})
            time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", type=int, default=20, help="seconds per phase")
    ap.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    ap.add_argument("--greygate", default=str(ROOT / "build" / "greygate"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gg-snapshot-"))
    procs = []
    try:
        sink_port, redis_port, port, admin = free_port(), free_port(), free_port(), free_port()

        def start_sink():
            p = subprocess.Popen([SINK, "-u", "postfix", "-m", "400", f"127.0.0.1:{sink_port}", "256"])
            procs.append(p)
            wait_port(sink_port)
            return p

        def start_redis():
            p = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
            procs.append(p)
            wait_port(redis_port)
            return p

        sink, redis = start_sink(), start_redis()
        cfg = gg.merge(gg.default_config(port, f"127.0.0.1:{sink_port}"), {
            "backend": {"xclient": False},
            "greylist": {"enabled": True, "delay": 300, "max_new_per_client": 10000000},
            "whitelist": {"senders": ["@pass.example"]},
            "limits": {"max_per_client": 1000},
            "store": {"type": "redis", "failure": "accept",
                      "redis": {"host": "127.0.0.1", "port": redis_port, "timeout_ms": 200}},
            "admin": {"listen": f"127.0.0.1:{admin}"},
            "log": {"target": "stderr", "level": "warning"},
            "control_socket": str(tmp / "gg.sock"),
        })
        (tmp / "gg.conf").write_text(gg.render_config(cfg))
        g = subprocess.Popen([args.greygate, "-c", str(tmp / "gg.conf")],
                             stderr=open(tmp / "gg.log", "w"))
        procs.append(g)
        wait_port(port)
        url = f"http://127.0.0.1:{admin}/metrics"
        samples, marks, done = [], [], threading.Event()

        def sampler():
            t0 = time.monotonic()
            while not done.is_set():
                samples.append((time.monotonic() - t0, scrape(url)))
                time.sleep(1)
        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        # one greylisting storm (every RCPT a new triplet) and one flow of
        # whitelisted mail that reaches the backend
        loads = [Load(port, "s@sender.example", True), Load(port, "s@pass.example", False)]
        for ld in loads:
            ld.start()
        t0 = time.monotonic()

        def mark(what):
            marks.append((time.monotonic() - t0, what))
        mark("traffic")
        time.sleep(args.phase)
        sink.terminate()
        sink.wait()
        mark("backend stopped")
        time.sleep(args.phase)
        sink = start_sink()
        mark("backend back")
        time.sleep(args.phase)
        redis.terminate()
        redis.wait()
        mark("Redis stopped")
        time.sleep(args.phase)
        redis = start_redis()
        mark("Redis back")
        time.sleep(args.phase)
        for ld in loads:
            ld.stop = True
        done.set()
        th.join()
        draw(samples, marks, args.out)
        print(f"wrote {args.out} ({len(samples)} scrapes)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()


def rate(samples, key_fn):
    """Per-second rates of the sum of the series KEY_FN picks, over 3 s."""
    ts, vs = [], []
    for i in range(3, len(samples)):
        (t1, a), (t2, b) = samples[i - 3], samples[i]
        va = sum(v for k, v in a.items() if key_fn(k))
        vb = sum(v for k, v in b.items() if key_fn(k))
        ts.append(t2)
        vs.append(max(0.0, (vb - va) / (t2 - t1)))
    return ts, vs


def quantile(samples, name, q):
    """histogram_quantile over 3-s windows, linear within a bucket."""
    ts, vs = [], []
    for i in range(3, len(samples)):
        (_, a), (t2, b) = samples[i - 3], samples[i]
        buckets = []
        for k, v in b.items():
            m = re.match(re.escape(name) + r'_bucket\{le="([^"]+)"\}$', k)
            if m:
                buckets.append((float(m.group(1)), v - a.get(k, 0)))
        buckets.sort()
        total = buckets[-1][1] if buckets else 0
        if total <= 0:
            continue
        want, prev_le, prev_c = q * total, 0.0, 0.0
        for le, c in buckets:
            if c >= want:
                if le == float("inf"):
                    le = prev_le
                frac = (want - prev_c) / (c - prev_c) if c > prev_c else 1
                ts.append(t2)
                vs.append((prev_le + (le - prev_le) * frac) * 1000)
                break
            prev_le, prev_c = le, c
    return ts, vs


def draw(samples, marks, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(3, 3, figsize=(16, 10))
    fig.suptitle("greygate dashboard (contrib/grafana/greygate.json), drawn from real /metrics")
    last = samples[-1][1]

    def labels_of(metric, label):
        return sorted({re.search(label + r'="([^"]+)"', k).group(1)
                       for k in last if k.startswith(metric + "{") and label + "=" in k})

    def panel(ax, title, unit=""):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("s")
        if unit:
            ax.set_ylabel(unit)
        for t, what in marks[1:]:
            ax.axvline(t, color="grey", ls=":", lw=1)
        ax.grid(alpha=0.3)

    ax = axes[0][0]
    for a in labels_of("greygate_decisions_total", "action"):
        ax.plot(*rate(samples, lambda k, a=a: k.startswith("greygate_decisions_total{") and
                      f'action="{a}"' in k), label=a)
    panel(ax, "Decisions by action", "per s")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    for r in labels_of("greygate_decisions_total", "reason"):
        ax.plot(*rate(samples, lambda k, r=r: k.startswith("greygate_decisions_total{") and
                      f'reason="{r}"' in k), label=r)
    panel(ax, "Decisions by reason", "per s")
    ax.legend(fontsize=8)
    ax = axes[0][2]
    for h, lbl in (("greygate_decision_seconds", "decision"), ("greygate_store_seconds", "store")):
        for q in (0.5, 0.99):
            ax.plot(*quantile(samples, h, q), label=f"{lbl} p{int(q * 100)}")
    panel(ax, "Latency", "ms")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax = axes[1][0]
    ts = [t for t, _ in samples]
    ax.step(ts, [s.get("greygate_store_up", 0) for _, s in samples], label="store up", where="post")
    ax.step(ts, [s.get("greygate_backend_up", 0) + 0.02 for _, s in samples], label="backend up",
            where="post")
    panel(ax, "Health")
    ax.set_ylim(-0.1, 1.2)
    ax.legend(fontsize=8)
    ax = axes[1][1]
    ax.plot(*rate(samples, lambda k: k == "greygate_connections_total"), label="accepted")
    ax.plot(*rate(samples, lambda k: k == "greygate_messages_accepted_total"), label="messages accepted")
    panel(ax, "Traffic", "per s")
    ax.legend(fontsize=8)
    ax = axes[1][2]
    ax.plot(ts, [s.get("greygate_connections_active", 0) for _, s in samples])
    panel(ax, "Sessions open")
    ax = axes[2][0]
    ax.plot(*rate(samples, lambda k: k == "greygate_store_errors_total"), label="store")
    ax.plot(*rate(samples, lambda k: k == "greygate_backend_errors_total"), label="backend")
    ax.plot(*rate(samples, lambda k: k == "greygate_dns_errors_total"), label="DNS")
    panel(ax, "Errors", "per s")
    ax.legend(fontsize=8)
    ax = axes[2][1]
    for r in labels_of("greygate_refusals_total", "rule"):
        ax.plot(*rate(samples, lambda k, r=r: k == f'greygate_refusals_total{{rule="{r}"}}'), label=r)
    panel(ax, "Refusals by rule", "per s")
    if labels_of("greygate_refusals_total", "rule"):
        ax.legend(fontsize=8)
    ax = axes[2][2]
    ax.plot(*rate(samples, lambda k: k == "greygate_bytes_relayed_total"))
    panel(ax, "Bytes relayed", "bytes/s")
    for t, what in marks[1:]:
        axes[0][0].annotate(what, (t, 0), xytext=(2, 2), textcoords="offset points", fontsize=7,
                            rotation=90, color="grey")
    fig.tight_layout()
    fig.savefig(out, dpi=80)


if __name__ == "__main__":
    main()
