"""The faults of the chaos run (README.md here): what each one does to the
end-to-end topology and how it is healed, and the schedule drawn from a
seed.

A fault holds one or more *resources* (a greygate, a Postfix, Redis, the
DNS server, mx1's cable, the network's shaping); two faults never hold the
same resource at once, and at most MAX_CONCURRENT are active together. So
two faults can combine (Redis frozen while mx1 is cut off), but every fault
has a heal time inside the fault window, and the run heals whatever is
still active before it drains the queues: nothing makes delivery
impossible forever.
"""

import os
import random
import signal
import subprocess

import topology as T

MAX_CONCURRENT = 2

# kind -> (resources, what it does)
KINDS = {
    "greygate-kill-mx1": (("gg-mx1",), "greygate on mx1 killed with SIGKILL, restarted"),
    "greygate-kill-mx2": (("gg-mx2",), "greygate on mx2 killed with SIGKILL, restarted"),
    "postfix-stop-mx1": (("pf-mx1",), "Postfix behind mx1's greygate stopped, started"),
    "postfix-stop-mx2": (("pf-mx2",), "Postfix behind mx2's greygate stopped, started"),
    "redis-kill": (("redis",), "redis-server killed (SIGKILL), restarted empty"),
    "redis-freeze": (("redis",), "redis-server frozen (SIGSTOP), thawed (SIGCONT)"),
    "mx1-cut": (("link-mx1",), "mx1's bridge port down, up again"),
    "dns-stop": (("dns",), "dnsmasq killed, restarted"),
    "net-loss": (("net",), "loss and delay (tc netem) on the link of one host"),
}


class Fault:
    def __init__(self, kind, start, duration):
        self.kind = kind
        self.start = start              # planned, seconds from the run's start
        self.duration = duration
        self.params = {}                # drawn details (loss %, delay)
        self.began = None               # actual, seconds from the run's start
        self.healed = None
        self.note = ""

    @property
    def end(self):
        return self.start + self.duration

    @property
    def resources(self):
        return KINDS[self.kind][0]

    def describe(self):
        p = " ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind}{' ' + p if p else ''}"


def schedule(seed, seconds):
    """Faults for a run of SECONDS, drawn from SEED: they start after a
    warm-up (the first messages meet a healthy system) and are healed by
    85% of the run. The first ones go through every kind once, in a
    seeded order, so a long enough run sees them all."""
    rng = random.Random(f"chaos-{seed}")
    first = max(10.0, seconds * 0.05)
    last = seconds * 0.85
    mean_gap = max(8.0, seconds / 40)
    max_len = min(45.0, max(8.0, seconds / 10))
    order = list(KINDS)
    rng.shuffle(order)
    faults = []
    t = first
    while True:
        t += rng.expovariate(1.0 / mean_gap)
        duration = rng.uniform(3.0, max_len)
        if t + duration > last:
            if t > last - 3.0:
                break
            duration = last - t
        active = [f for f in faults if f.start < t + duration and f.end > t]
        held = {r for f in active for r in f.resources}
        if len(active) >= MAX_CONCURRENT:
            continue
        free = [k for k in KINDS if not held & set(KINDS[k][0])]
        pending = [k for k in order if k in free]
        if pending:
            kind = pending[0]
            order.remove(kind)
        elif free:
            kind = rng.choice(free)
        else:
            continue
        f = Fault(kind, round(t, 1), round(duration, 1))
        if kind == "net-loss":
            f.params = {"host": rng.choice(("sender", "mx1", "mx2", "redis")),
                        "loss": f"{rng.choice((10, 20, 30))}%",
                        "delay": f"{rng.choice((50, 150, 300))}ms"}
        faults.append(f)
    return faults


def restart(gg):
    """Starts greygate GG again after a kill; ready when it logs
    event=ready (the health check would need the Postfix behind it, which
    may be stopped by another fault)."""
    mark = gg.log_mark()
    gg.start(timeout=90, ready=lambda: gg.events("ready", since=mark))


def netem_works(topo):
    """Whether this kernel has sch_netem (tc netem on a scratch interface
    in the sender's namespace: lo, set and removed again)."""
    ns = topo.ns["sender"]
    r = subprocess.run(["tc", "-n", ns, "qdisc", "add", "dev", "lo", "root", "netem",
                        "delay", "1ms"], capture_output=True, timeout=15)
    if r.returncode != 0:
        return False
    subprocess.run(["tc", "-n", ns, "qdisc", "del", "dev", "lo", "root"], capture_output=True,
                   timeout=15)
    return True


class Injector:
    """Applies faults to a Topology and heals them. Each method returns a
    note for the timeline (what was actually done)."""

    def __init__(self, topo, netem):
        self.topo = topo
        self.netem = netem
        self.killed = set()             # greygates down on purpose

    def begin(self, f):
        t = self.topo
        k = f.kind
        if k.startswith("greygate-kill-"):
            gg = t.greygate[k.rsplit("-", 1)[1]]
            self.killed.add(gg.name)
            pid = gg.proc.pid
            gg.proc.kill()
            gg.proc.wait(30)
            gg.logf.close()
            return f"pid {pid} killed"
        if k.startswith("postfix-stop-"):
            t.postfix[k.rsplit("-", 1)[1]].stop()
            return ""
        if k == "redis-kill":
            t.redis_kill()
            return ""
        if k == "redis-freeze":
            os.kill(t.redis.pid, signal.SIGSTOP)
            return f"pid {t.redis.pid}"
        if k == "mx1-cut":
            t.link("mx1", False)
            return ""
        if k == "dns-stop":
            t.dns_stop()
            return ""
        if k == "net-loss":
            return self._shape(f.params["host"], f.params)
        raise ValueError(k)

    def heal(self, f):
        t = self.topo
        k = f.kind
        if k.startswith("greygate-kill-"):
            gg = t.greygate[k.rsplit("-", 1)[1]]
            restart(gg)
            self.killed.discard(gg.name)
            return f"restarted as pid {gg.proc.pid}"
        if k.startswith("postfix-stop-"):
            t.postfix[k.rsplit("-", 1)[1]].start()
            return ""
        if k == "redis-kill":
            t.redis_start()
            return ""
        if k == "redis-freeze":
            os.kill(t.redis.pid, signal.SIGCONT)
            return ""
        if k == "mx1-cut":
            t.link("mx1", True)
            return ""
        if k == "dns-stop":
            t.dns_start()
            return ""
        if k == "net-loss":
            self._unshape(f.params["host"])
            return ""
        raise ValueError(k)

    # Loss and delay on ROLE's link. tc netem shapes what leaves ROLE's
    # eth0 (a lossy, slow link one way is enough to hurt TCP both ways).
    # Without sch_netem, loss alone, and on the wire: nftables drops at
    # random what enters ROLE's eth0 and what enters the bridge from ROLE
    # (ingress hooks, netdev family). A drop on the output hook would not
    # do: the sending stack learns of it (EPERM), which wire loss never says.
    def _shape(self, role, params):
        loss = params["loss"].rstrip("%")
        if self.netem:
            T.run(["tc", "-n", self.topo.ns[role], "qdisc", "add", "dev", "eth0", "root",
                   "netem", "delay", params["delay"], "loss", f"{loss}%"])
            return "tc netem"
        for ns, dev in self._ends(role):
            rules = (f"table netdev chaos {{\n chain in {{\n  type filter hook ingress "
                     f"device \"{dev}\" priority 0;\n  numgen random mod 100 < {loss} drop\n }}\n}}\n")
            T.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules)
        return "no sch_netem in this kernel: loss only (nftables, both ways), no delay"

    def _unshape(self, role):
        if self.netem:
            T.run(["tc", "-n", self.topo.ns[role], "qdisc", "del", "dev", "eth0", "root"])
            return
        for ns, _ in self._ends(role):
            T.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "netdev", "chaos"],
                  check=False)

    def _ends(self, role):
        """The two ends of ROLE's cable: its eth0, the bridge's port."""
        return ((self.topo.ns[role], "eth0"), (self.topo.bridge_ns, role))
