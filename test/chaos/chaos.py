#!/usr/bin/python3
"""The chaos run (test/chaos/README.md): the end-to-end topology with
several sending Postfix instances, a ledger of messages injected over the
run, and faults drawn from a seed (faults.py). At the end, with every fault
healed and every queue drained, each message of the ledger must be in
exactly one mailbox exactly once and intact, or have come back to its
sender as a bounce; the greygates' descriptors and memory must be back
near where they started, and their logs free of sanitizer reports.

    make chaos                                  # 600 s, a random seed
    make chaos CHAOS_SECONDS=120 CHAOS_ARGS="--seed 7"
    GREYGATE_BIN=$PWD/build-asan/greygate /usr/bin/python3 test/chaos/chaos.py --seed 7

Exit status 0 when every check passes, 1 otherwise; the summary, the fault
timeline and every message's delay are printed, and written with a plot
(chaos.png) and the logs to the output directory.
"""

import argparse
import hashlib
import os
import random
import re
import shutil
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

import topology as T  # noqa: E402
from sending import make_message, split_mail  # noqa: E402
from faults import KINDS, Injector, netem_works, restart, schedule  # noqa: E402

SENDERS = ("sender", "sender2", "sender3")
SENDER_POOL = 8                     # envelope senders (so triplets repeat)
FD_SLACK = 2                        # descriptors over the baseline
RSS_SLACK_MIB = 16                  # or half the baseline, whichever is more
ASAN_QUARANTINE_MIB = 256           # ASan keeps freed memory up to this


# The SMTP client's waits for a reply, shortened from Postfix's 300-600 s:
# a connection that the client believes open but the server never had
# (its last handshake ACK lost, then the listener killed; test/chaos/
# README.md, "Seed 202") holds a message until one of these expires, and
# the defaults outlast the drain. Long enough for a sanitizer greygate.
SMTP_CLIENT_TIMEOUTS = {
    "smtp_helo_timeout": "30s", "smtp_mail_timeout": "30s", "smtp_rcpt_timeout": "30s",
    "smtp_data_init_timeout": "30s", "smtp_data_xfer_timeout": "60s",
    "smtp_data_done_timeout": "60s", "smtp_quit_timeout": "30s",
}


class ChaosTopology(T.Topology):
    """The e2e topology with three sending Postfix instances, and mx2's
    Postfix retrying mx1 every few seconds instead of minutes (its
    hand-over (ETRN) is under test too, but a missed one must not leave
    mail in its queue for the default 5 minutes); every SMTP client waits
    at most SMTP_CLIENT_TIMEOUTS for a reply."""
    SENDERS = SENDERS

    def mx_main(self, role):
        main = super().mx_main(role)
        if role == "mx2":
            main.update({"minimal_backoff_time": "4s", "maximal_backoff_time": "10s",
                         "queue_run_delay": "2s", **SMTP_CLIENT_TIMEOUTS})
        return main

    def sender_main(self, name):
        return {**super().sender_main(name), **SMTP_CLIENT_TIMEOUTS}


def now():
    return time.time()


class Ledger:
    """Every message injected: id -> dict(sender, rcpt, via (instance),
    t (injection time, epoch), body digest)."""

    def __init__(self, seed):
        self.tok = f"chaos{seed}"
        self.msgs = {}
        self.errors = []

    def inject(self, topo, i, instance, sender, rcpt):
        msg, body = make_message(sender, rcpt, self.tok, i)
        mid = f"{self.tok}.{i}"
        try:
            topo.postfix[instance].sendmail(sender, [rcpt], msg)
        except Exception as e:           # counted, reported; the run goes on
            self.errors.append(f"{mid}: sendmail on {instance}: {e}")
            return
        self.msgs[mid] = {"sender": sender, "rcpt": rcpt, "via": instance, "t": now(),
                          "digest": hashlib.sha256(body).hexdigest()}


def _message_id(head):
    m = re.search(rb"^message-id:\s*<([^>@]+)@", head, re.I | re.M)
    return m.group(1).decode() if m else None


def delivered(topo):
    """{id: [(mtime, via_mx2, digest), ...]} from mx1's Maildirs."""
    out = {}
    for p in topo.postfix["mx1"].maildir_files():
        try:
            raw = p.read_bytes()
            mtime = p.stat().st_mtime
        except FileNotFoundError:       # moved new/ -> cur/ meanwhile
            continue
        head, body = split_mail(raw)
        mid = _message_id(head)
        if mid:
            via_mx2 = b"mx2." + T.DOMAIN.encode() in head
            out.setdefault(mid, []).append((mtime, via_mx2, hashlib.sha256(body).hexdigest()))
    return out


def bounced(topo, tok):
    """{id: DSN path} for every DSN in a sender's own Maildir, by the
    Message-ID of the original it quotes."""
    out = {}
    pat = re.compile(rb"<(" + re.escape(tok.encode()) + rb"\.\d+)@")
    for name in SENDERS:
        for p in topo.postfix[name].maildir_files():
            for m in pat.finditer(p.read_bytes()):
                out.setdefault(m.group(1).decode(), str(p))
    return out


def queued(topo):
    """{id: 'INSTANCE QUEUE_ID'} of every message still in a queue (the
    Message-ID from cleanup's log line for the queue id)."""
    out = {}
    for n in (*SENDERS, "mx2", "mx1"):
        pf = topo.postfix[n]
        qids = {m.get("queue_id") for m in pf.queue_json()}
        if not qids:
            continue
        for m in re.finditer(r" ([0-9A-F]+): message-id=<([^>@]+)@", pf.log()):
            if m.group(1) in qids:
                out[m.group(2)] = f"{n} {m.group(1)}"
    return out


def queues_empty(topo):
    return all(not topo.postfix[n].queue_json() for n in (*SENDERS, "mx2", "mx1"))


def proc_stats(gg):
    """(RSS in KiB, open descriptors) of a greygate process."""
    pid = gg.proc.pid
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class Run:
    def __init__(self, args, topo):
        self.args = args
        self.topo = topo
        self.t0 = None
        self.ledger = Ledger(args.seed)
        self.faults = schedule(args.seed, args.seconds)
        self.netem = netem_works(topo)
        self.inj = Injector(topo, self.netem)
        self.problems = []
        self.baseline = {}              # name -> (RSS KiB, descriptors) before the traffic
        self.stop = threading.Event()
        self.log = []                   # printed lines of the timeline

    def say(self, text):
        t = now() - self.t0 if self.t0 else 0.0
        line = f"[{t:7.1f}s] {text}"
        self.log.append(line)
        print(line, flush=True)

    # -- the two threads: mail, and faults
    def inject_all(self):
        rng = random.Random(f"mail-{self.args.seed}")
        senders = ["".join(rng.choice("ghjkmnpqrstvwxyz") for _ in range(8))
                   + f"@{T.SENDER_DOMAIN}" for _ in range(SENDER_POOL)]
        rcpts = [u for u in T.mailboxes() if not u.startswith("postmaster@")]
        n = self.args.messages
        span = self.args.seconds * 0.9     # the last ones still meet the last faults
        for i in range(n):
            at = self.t0 + span * i / n
            if self.stop.wait(max(0.0, at - now())):
                return
            self.ledger.inject(self.topo, i, SENDERS[i % len(SENDERS)], rng.choice(senders),
                               rng.choice(rcpts))

    def _apply(self, f, heal):
        try:
            note = (self.inj.heal if heal else self.inj.begin)(f)
        except Exception as e:
            self.problems.append(f"fault {f.describe()}: {'heal' if heal else 'begin'}: {e}")
            note = f"FAILED: {str(e).splitlines()[0]}"
        if heal:
            f.healed = now() - self.t0
        else:
            f.began = now() - self.t0
            f.note = note
        self.say(f"{'heal ' if heal else 'fault'} {f.describe()}{' (' + note + ')' if note else ''}")

    def run_faults(self):
        events = sorted([(f.start, 0, f) for f in self.faults] + [(f.end, 1, f) for f in self.faults],
                        key=lambda e: (e[0], e[1]))
        active = []
        try:
            for at, heal, f in events:
                while now() < self.t0 + at:
                    if self.stop.wait(min(1.0, max(0.0, self.t0 + at - now()))):
                        return
                    self.check_alive()
                if heal:
                    if f in active:
                        active.remove(f)
                        self._apply(f, True)
                else:
                    active.append(f)
                    self._apply(f, False)
        finally:
            for f in active:            # Ctrl-C, an error: heal before teardown
                self._apply(f, True)

    def check_alive(self):
        """A greygate that died without being killed is a finding; it is
        restarted so that the run can go on."""
        for gg in self.topo.greygate.values():
            if gg.name in self.inj.killed or gg.proc is None or gg.proc.poll() is None:
                continue
            tail = "\n".join(gg.log_lines()[-20:])
            self.problems.append(f"greygate {gg.name} died (exit {gg.proc.returncode}):\n{tail}")
            self.say(f"greygate {gg.name} DIED with exit {gg.proc.returncode}; restarting")
            gg.logf.close()
            restart(gg)

    # -- the phases
    def go(self):
        self.baseline = {n: proc_stats(gg) for n, gg in self.topo.greygate.items()}
        self.t0 = now()
        self.say(f"start: seed={self.args.seed} messages={self.args.messages} "
                 f"seconds={self.args.seconds} greygate={T.GREYGATE_BIN} root={self.topo.root} "
                 f"netem={'yes' if self.netem else 'no (loss by nftables, no delay)'}")
        for f in self.faults:
            self.say(f"  planned {f.start:6.1f}s +{f.duration:4.1f}s {f.describe()}")
        mail = threading.Thread(target=self.inject_all, name="mail")
        fl = threading.Thread(target=self.run_faults, name="faults")
        mail.start()
        fl.start()
        try:
            while mail.is_alive() or fl.is_alive():
                mail.join(0.5)
                fl.join(0.5)
        finally:
            self.stop.set()
            mail.join()
            fl.join()
        self.check_alive()
        self.say(f"injected {len(self.ledger.msgs)} messages; every fault healed; draining")
        self.drain()

    def drain(self):
        """Flushes the senders' and mx2's queues until they are empty and
        every message is accounted for, or DRAIN seconds have passed."""
        deadline = now() + self.args.drain
        last_flush = 0.0
        while now() < deadline:
            if now() - last_flush >= 10:
                for n in (*SENDERS, "mx2"):
                    self.topo.postfix[n].flush()
                last_flush = now()
            got, back = delivered(self.topo), bounced(self.topo, self.ledger.tok)
            if all(m in got or m in back for m in self.ledger.msgs) and queues_empty(self.topo):
                self.say("drained: queues empty, every message accounted for")
                return
            time.sleep(2)
        self.problems.append(f"not drained after {self.args.drain}s")
        for n in (*SENDERS, "mx2", "mx1"):
            listing = self.topo.postfix[n].queue_listing().strip()
            if listing and "Mail queue is empty" not in listing:
                self.say(f"queue of {n} after the drain:\n{listing}")

    def resources(self):
        """Descriptors back within FD_SLACK of the baseline (polled: the
        last connections close a little after the last delivery) and RSS
        within the slack."""
        asan = T.binary_is_sanitized(T.GREYGATE_BIN)
        out = []
        for name, gg in self.topo.greygate.items():
            rss0, fd0 = self.baseline[name]
            if gg.proc is None or gg.proc.poll() is not None:
                self.problems.append(f"greygate {name} is not running at the end")
                continue
            deadline = now() + 30
            while True:
                rss, fd = proc_stats(gg)
                if fd <= fd0 + FD_SLACK or now() > deadline:
                    break
                time.sleep(1)
            slack = max(RSS_SLACK_MIB * 1024, rss0 // 2) + (ASAN_QUARANTINE_MIB * 1024 if asan else 0)
            ok = fd <= fd0 + FD_SLACK and rss <= rss0 + slack
            out.append(f"{name}: fds {fd0} -> {fd} (slack {FD_SLACK}), "
                       f"RSS {rss0} -> {rss} KiB (slack {slack} KiB): {'ok' if ok else 'FAIL'}")
            if not ok:
                self.problems.append(f"greygate {name} resources: {out[-1]}")
        return out

    def sanitizer_lines(self):
        bad = []
        for gg in self.topo.greygate.values():
            bad += [f"{gg.name}: {l}" for l in gg.log_lines()
                    if any(m in l for m in T.SANITIZER_MARKERS)]
        return bad

    # -- the verdict
    def report(self, outdir):
        got, back = delivered(self.topo), bounced(self.topo, self.ledger.tok)
        waiting = queued(self.topo)
        once, dups, lost, stuck, bounces, corrupt, delays = [], [], [], [], [], [], []
        lines = []
        for mid, m in sorted(self.ledger.msgs.items(), key=lambda kv: kv[1]["t"]):
            copies = got.get(mid, [])
            t_in = m["t"] - self.t0
            if len(copies) == 1:
                once.append(mid)
            elif len(copies) > 1:
                dups.append(mid)
            elif mid in back:
                bounces.append(mid)
            elif mid in waiting:
                stuck.append(mid)
            else:
                lost.append(mid)
            if any(c[2] != m["digest"] for c in copies):
                corrupt.append(mid)
            if copies:
                first = min(copies)
                d = first[0] - m["t"]
                delays.append((t_in, d, first[1]))
                lines.append(f"{mid}\t{m['via']}\t{t_in:.1f}\t{d:.1f}\t"
                             f"{'mx2' if first[1] else 'mx1'}\t{len(copies)}")
            else:
                where = ("bounced" if mid in back else
                         f"QUEUED({waiting[mid]})" if mid in waiting else "LOST")
                lines.append(f"{mid}\t{m['via']}\t{t_in:.1f}\t-\t{where}\t0")
        (outdir / "delays.tsv").write_text(
            "id\tsender_instance\tinjected_s\tdelay_s\tarrived_via\tcopies\n"
            + "\n".join(lines) + "\n")
        print("\nper-message delivery (id, sender instance, injected at, delay, via, copies):")
        print("\n".join(lines))
        print("\nfault timeline (actual):")
        for f in self.faults:
            if f.began is None:
                continue
            healed = f"{f.healed:7.1f}s" if f.healed is not None else "   never"
            print(f"  {f.began:7.1f}s .. {healed}  {f.describe()}  {f.note}")
        if dups:
            print("duplicated:", " ".join(dups))
        if lost:
            print("lost:", " ".join(lost))
        if stuck:
            print("still queued after the drain:", " ".join(f"{m} ({waiting[m]})" for m in stuck))
        if bounces:
            print("bounced:", " ".join(f"{b} ({back[b]})" for b in bounces))
        if corrupt:
            print("body differs from what was sent:", " ".join(corrupt))
        for e in self.ledger.errors:
            self.problems.append(f"injection: {e}")
        bounced_logs = [f"{n}: {l}" for n in (*SENDERS, "mx1", "mx2")
                        for l in self.topo.postfix[n].log().splitlines() if "status=bounced" in l]
        for l in bounced_logs:
            print("postfix:", l)
        # not failures, but what held mail longest: a client that waited for
        # a reply until SMTP_CLIENT_TIMEOUTS (a connection the server never
        # had, or lost on a faulty link)
        stalls = [f"{n}: {l}" for n in (*SENDERS, "mx2")
                  for l in self.topo.postfix[n].log().splitlines()
                  if "timed out while" in l and "/error[" not in l]
        print(f"\nSMTP client reply timeouts: {len(stalls)}")
        for l in stalls:
            print("  " + l)
        if dups:
            self.problems.append(f"{len(dups)} duplicated")
        if lost:
            self.problems.append(f"{len(lost)} lost")
        if stuck:
            self.problems.append(f"{len(stuck)} still queued after the drain")
        if corrupt:
            self.problems.append(f"{len(corrupt)} with a changed body")
        res = self.resources()
        print("\ngreygate resources:\n  " + "\n  ".join(res))
        san = self.sanitizer_lines()
        if san:
            self.problems.append("sanitizer report:\n" + "\n".join(san[:20]))
        ds = [d for _, d, _ in delays]
        kinds = sorted({f.kind for f in self.faults if f.began is not None})
        summary = (f"chaos: seed={self.args.seed} messages={len(self.ledger.msgs)} "
                   f"delivered_once={len(once)} duplicates={len(dups)} lost={len(lost)} queued={len(stuck)} "
                   f"bounced={len(bounces)} faults={sum(f.began is not None for f in self.faults)} "
                   f"kinds={len(kinds)}/{len(KINDS)} "
                   f"max_delay={max(ds) if ds else 0:.1f}s "
                   f"median_delay={statistics.median(ds) if ds else 0:.1f}s "
                   f"via_mx2={sum(1 for _, _, v in delays if v)} reply_timeouts={len(stalls)} "
                   f"sanitizer={'yes' if T.binary_is_sanitized(T.GREYGATE_BIN) else 'no'}")
        plot(outdir / "chaos.png", delays, lost + stuck + bounces, self.ledger, self.t0, self.faults,
             summary)
        return summary

    def save_logs(self, outdir):
        for n, gg in self.topo.greygate.items():
            shutil.copy(gg.log_path, outdir / f"greygate-{n}.log")
        for n, pf in self.topo.postfix.items():
            copy_if_there(pf.logfile, outdir / f"postfix-{n}.log")
        (outdir / "timeline.txt").write_text("\n".join(self.log) + "\n")


def copy_if_there(src, dst):
    """A Postfix that never logged has no log file."""
    try:
        shutil.copy(src, dst)
    except OSError:
        pass


def plot(path, delays, missing, ledger, t0, faults, title):
    """Delay against injection time, one dot per message (mx1 directly or
    through mx2), fault intervals shaded by kind; undelivered messages as
    red crosses on the axis."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: python3-matplotlib is not installed (test/e2e/deps.sh)")
        return
    fig, ax = plt.subplots(figsize=(13, 6))
    cmap = plt.get_cmap("tab10")
    colours = {k: cmap(i % 10) for i, k in enumerate(KINDS)}
    seen = set()
    lanes = {}
    for f in faults:
        if f.began is None:
            continue
        end = f.healed if f.healed is not None else f.began
        lane = 0
        while lanes.get(lane, -1) > f.began:
            lane += 1
        lanes[lane] = end
        ax.axvspan(f.began, end, ymin=lane * 0.5, ymax=lane * 0.5 + 0.5, alpha=0.35,
                   color=colours[f.kind], label=None if f.kind in seen else f.kind, lw=0)
        seen.add(f.kind)
    direct = [(t, d) for t, d, v in delays if not v]
    via = [(t, d) for t, d, v in delays if v]
    if direct:
        ax.scatter(*zip(*direct), s=10, c="black", label="delivered via mx1", zorder=3)
    if via:
        ax.scatter(*zip(*via), s=14, c="blue", marker="^", label="delivered via mx2", zorder=3)
    if missing:
        ax.scatter([ledger.msgs[m]["t"] - t0 for m in missing], [0] * len(missing), s=40, c="red",
                   marker="x", label="lost, still queued or bounced", zorder=4)
    ax.set_xlabel("injected at (s from start)")
    ax.set_ylabel("delivery delay (s)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="fault and mail schedule (random)")
    ap.add_argument("--seconds", type=float,
                    default=float(os.environ.get("CHAOS_SECONDS") or 600),
                    help="length of the traffic and fault phase (CHAOS_SECONDS, 600)")
    ap.add_argument("--messages", type=int, default=None, help="ledger size (seconds / 2)")
    ap.add_argument("--drain", type=float, default=None,
                    help="bound of the drain phase, seconds (60 + seconds / 4)")
    ap.add_argument("--out", default=None, help="output directory (/var/tmp/gg-chaos-SEED-TIME)")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1, 100000)
    if args.messages is None:
        args.messages = max(10, int(args.seconds / 2))
    if args.drain is None:
        args.drain = 60 + args.seconds / 4
    if T.binary_is_sanitized(T.GREYGATE_BIN):
        args.drain *= 1.5
    outdir = Path(args.out or f"/var/tmp/gg-chaos-{args.seed}-{time.strftime('%Y%m%dT%H%M%S')}")
    outdir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        sys.exit("chaos: needs root (network namespaces, Postfix)")

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    summary = None
    problems = []
    topo = ChaosTopology()
    with topo:
        r = Run(args, topo)
        try:
            r.go()
            summary = r.report(outdir)
        finally:
            r.save_logs(outdir)
        problems = r.problems
    problems += topo.problems              # teardown: exit status, sanitizer
    print(f"\noutput: {outdir}")
    for p in problems:
        print(f"PROBLEM: {p}")
    result = "PASS" if not problems else "FAIL"
    print(f"{summary} result={result}")
    (outdir / "summary.txt").write_text(f"{summary} result={result}\n"
                                        + "".join(f"PROBLEM: {p}\n" for p in problems))
    sys.exit(0 if not problems else 1)


if __name__ == "__main__":
    main()
