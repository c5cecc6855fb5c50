"""The simulator's synthetic mail day: who sends, from where, when they
retry, and the DNS that describes them. Pure and deterministic: the same
seed and size give the same trace, byte for byte (no clock, no network).

Every time here is in real-world seconds; simulate.py divides by the clock
factor when it plays the trace. Client addresses are in 127.0.0.0/8, which
Linux routes to loopback in full, so each simulated host can bind its own
source address. 127.0.0.0/16 is left to the servers (greygates, Redis,
dnsmasq, the sink).

Populations (the behaviours are modelled from what the operators publish
and what greylisting users report; the numbers are ours, not measured):
  gmail, outlook, ses  big pools: every attempt from another address,
                       spread over several /24s in several /16s, forward-
                       confirmed names under one organisation domain, SPF
                       authorising the ranges; SES uses VERP senders.
  static               one address each, RFC 5321-like retry schedules
                       (Postfix, Exim, every 30 minutes); some try the
                       backup MX first.
  lists                mailing lists with VERP or BATV senders.
  trusted              static senders listed in the DNSWL.
  bots                 no retry, one quick retry, or an MTA-like schedule
                       (a compromised server); generic, unconfirmed or no
                       reverse DNS; part listed in the DNSBL, part talk
                       before the banner, part go to the backup first,
                       part hit a spamtrap.
"""

import hashlib
import random
from dataclasses import dataclass, field

DOMAIN = "sim.example"            # the recipient domain (MX: mx1 primary, mx2 backup)
TRAP = f"trap@{DOMAIN}"
MX_ADDRS = ("127.0.1.1", "127.0.1.2")   # mx1 (primary, preference 10), mx2 (backup, 20)
DNSBL_ZONE = "bl.sim.example"
DNSWL_ZONE = "wl.sim.example"
DNSBL_ANSWER = "127.0.0.4"        # a "zen"-like listing
DNSWL_ANSWER = "127.0.9.2"        # a "list.dnswl.org"-like listing: medium trust

# Retry offsets after the first attempt (real seconds), before jitter.
SCHEDULES = {
    # Postfix: minimal_backoff_time 300 s doubling to maximal_backoff_time 4000 s
    "postfix": [300, 900, 2100, 4500, 8500, 12500, 16500, 20500, 24500, 28500],
    # Exim's default: every 15 minutes for 2 hours, then growing by 1.5
    "exim": [900, 1800, 2700, 3600, 4500, 5400, 6300, 7200, 10800, 16200, 24300],
    # RFC 5321 4.5.4.1: at least 30 minutes between tries
    "rfc5321": [1800 * k for k in range(1, 16)],
    # Gmail: first retry after some minutes, then growing intervals
    "gmail": [420, 1260, 2700, 5100, 8700, 13500, 19500, 26700],
    # Exchange Online: a quick first retry, then every 15 minutes or so
    "outlook": [60, 960, 1860, 2760, 3660, 5460, 7260, 10860, 14460, 21660],
    # SES: exponential back-off, keeps trying for many hours
    "ses": [120, 480, 1200, 2700, 5400, 10800, 21600, 32400],
    "none": [],
    "quick": [30],                  # a bot's one quick retry (jittered up to 4x)
}


@dataclass
class Pool:
    """A big sender: addresses, names and SPF under one organisation."""
    name: str
    org: str                        # organisation domain (names, SPF, senders)
    first16: int                    # 127.<first16 + i>.0.0/16 for i < n16
    n16: int
    n24: int                        # /24s used in each /16
    hosts: int                      # addresses used in each /24
    schedule: str
    backup_share: float             # chance that a retry goes to the backup
    verp: bool = False

    def addresses(self):
        return [f"127.{self.first16 + a}.{10 + 7 * b}.{20 + 3 * c}"
                for a in range(self.n16) for b in range(self.n24) for c in range(self.hosts)]

    def host_name(self, addr):
        # Names in the style of the real ones (they carry an octet, as
        # mail-ej1-f45.google.com does): the generic-name heuristic meets them.
        o = addr.split(".")
        if self.name == "gmail":
            return f"mail-{chr(97 + int(o[1]) % 26)}{chr(97 + int(o[2]) % 26)}1-f{o[3]}.{self.org}"
        if self.name == "outlook":
            h = hashlib.sha1(addr.encode()).hexdigest()[:6]
            return f"mail-eur{int(o[1]) % 9}on{h}.outbound.protection.{self.org}"
        return f"a{o[2]}-{o[3]}.smtp-out.{self.org}"

    def spf(self):
        nets = " ".join(f"ip4:127.{self.first16 + a}.0.0/16" for a in range(self.n16))
        return f"v=spf1 {nets} -all"


POOLS = [
    Pool("gmail", "gmailsim.example", 30, 4, 6, 8, "gmail", 0.25),
    Pool("outlook", "outlooksim.example", 40, 3, 8, 6, "outlook", 0.15),
    Pool("ses", "amazonses-sim.example", 50, 3, 4, 8, "ses", 0.10, verp=True),
]


@dataclass
class Host:
    """A static host: one address, its DNS, how it behaves."""
    addr: str
    helo: str
    ptr: str = None                 # PTR name (None: no PTR)
    a_of_ptr: bool = True           # the PTR name resolves back (FCrDNS)
    spf_domain: str = None          # a domain whose SPF authorises addr
    dnsbl: bool = False
    dnswl: bool = False


@dataclass
class Attempt:
    t: float                        # real seconds from the start of the day
    addr: str
    helo: str
    mx: int                         # 0 primary, 1 backup
    pregreet: bool = False


@dataclass
class Message:
    id: int
    pop: str
    sender: str                     # MAIL FROM of this message
    rcpts: list                     # RCPT TO, in order (a trap first for some bots)
    real_rcpt: str                  # the one whose acceptance means delivery
    attempts: list
    triple: tuple = None            # (pool, logical sender, rcpt) for pools
    flags: dict = field(default_factory=dict)


class Day:
    """The trace of one mail day: messages with their planned attempts, and
    the DNS records of every host."""

    def __init__(self, seed=1, hours=12.0, scale=1.0):
        self.rnd = random.Random(seed)
        self.hours = hours
        self.window = hours * 3600
        self.scale = scale          # message count multiplier
        self.dns_lines = []
        self.messages = []
        self.users = [f"user{i:03d}@{DOMAIN}" for i in range(150)]
        self._build()
        self.messages.sort(key=lambda m: (m.attempts[0].t, m.id))

    # -- helpers
    def n(self, base):
        return max(1, round(base * self.scale))

    def when(self):
        return self.rnd.uniform(0, self.window)

    def jitter(self, offsets, spread=0.15):
        return [o * self.rnd.uniform(1 - spread, 1 + spread) for o in offsets]

    def add(self, pop, sender, rcpt, t0, schedule, place, triple=None, rcpts=None, **flags):
        """PLACE(k) -> (addr, helo, mx, pregreet) of attempt k."""
        times = [t0] + [t0 + o for o in self.jitter(SCHEDULES[schedule])]
        if schedule == "quick":
            times = [t0, t0 + self.rnd.uniform(10, 120)]
        atts = [Attempt(t, *place(k)) for k, t in enumerate(times)]
        self.messages.append(Message(len(self.messages), pop, sender, rcpts or [rcpt], rcpt,
                                     atts, triple, flags))

    def host_dns(self, h):
        if h.ptr:
            self.dns_lines.append(f"ptr-record={rev(h.addr)},{h.ptr}")
            if h.a_of_ptr:
                self.dns_lines.append(f"address=/{h.ptr}/{h.addr}")
        if h.dnsbl:
            self.dns_lines.append(f"address=/{rev(h.addr, '')}{DNSBL_ZONE}/{DNSBL_ANSWER}")
        if h.dnswl:
            self.dns_lines.append(f"address=/{rev(h.addr, '')}{DNSWL_ZONE}/{DNSWL_ANSWER}")

    def txt(self, name, text):
        self.dns_lines.append(f'txt-record={name},"{text}"')

    # -- the populations
    def _build(self):
        self.dns_lines += [f"mx-host={DOMAIN},mx1.{DOMAIN},10", f"mx-host={DOMAIN},mx2.{DOMAIN},20",
                           f"address=/mx1.{DOMAIN}/{MX_ADDRS[0]}",
                           f"address=/mx2.{DOMAIN}/{MX_ADDRS[1]}"]
        self._pools()
        self._static("static", 70, 40, 70, dnswl=False)
        self._lists()
        self._static("trusted", 80, 12, 25, dnswl=True)
        self._bots()

    def _pools(self):
        for p in POOLS:
            addrs = p.addresses()
            for a in addrs:
                self.dns_lines.append(f"ptr-record={rev(a)},{p.host_name(a)}")
                self.dns_lines.append(f"address=/{p.host_name(a)}/{a}")
            self.txt(p.org, p.spf())
            self.dns_lines.append(f"mx-host={p.org},mx.{p.org},10")
            # conversations: a sender writes to a recipient a few times a day
            for _ in range(self.n(60)):
                local = "".join(self.rnd.choice("abcdefghijklmnop") for _ in range(7))
                rcpt = self.rnd.choice(self.users)
                for _ in range(self.rnd.choice([1, 1, 2, 3, 4])):
                    if p.verp:
                        sender = (f"0100{self.rnd.getrandbits(48):012x}-"
                                  f"{self.rnd.getrandbits(64):016x}-000000@{p.org}")
                    else:
                        sender = f"{local}@{p.org}"

                    def place(k, p=p, addrs=addrs):
                        a = self.rnd.choice(addrs)
                        # the first attempt goes to the primary, as RFC 5321
                        # section 5.1 orders and these operators do; a retry
                        # may go to either (the draw is made for every
                        # attempt, so the trace is the same either way)
                        backup = self.rnd.random() < p.backup_share
                        mx = 1 if backup and k > 0 else 0
                        return a, p.host_name(a), mx, False
                    self.add(p.name, sender, rcpt, self.when(), p.schedule, place,
                             triple=(p.name, local, rcpt))

    def _static(self, pop, base, nhosts, nmsgs, dnswl):
        hosts = []
        for i in range(nhosts):
            addr = f"127.{base + i // 200}.{i % 200 + 1}.25"
            org = f"{pop}{i}.example"
            name = f"mail.{org}"
            h = Host(addr, name, ptr=name, dnswl=dnswl)
            if i % 3 != 2:            # two in three publish SPF
                h.spf_domain = org
                self.txt(org, f"v=spf1 ip4:{addr} -all")
            self.host_dns(h)
            hosts.append((h, org, self.rnd.choice(["postfix", "exim", "rfc5321"]),
                          self.rnd.random() < 0.15))
        for _ in range(self.n(nmsgs)):
            h, org, sched, backup_first = self.rnd.choice(hosts)
            sender = f"{self.rnd.choice(['info', 'sales', 'jo', 'max', 'kim'])}@{org}"
            self.add(pop, sender, self.rnd.choice(self.users), self.when(), sched,
                     lambda k, h=h, b=backup_first: (h.addr, h.helo, 1 if (b and k == 0) else 0,
                                                     False))

    def _lists(self):
        for i in range(4):
            org = f"lists{i}.example"
            addr = f"127.90.{i + 1}.10"
            h = Host(addr, f"lists.{org}", ptr=f"lists.{org}", spf_domain=org)
            self.txt(org, f"v=spf1 ip4:{addr} -all")
            self.host_dns(h)
            for _ in range(self.n(5)):       # posts; each to several of our users
                t0 = self.when()
                tag = f"{self.rnd.getrandbits(24):06x}"
                for rcpt in self.rnd.sample(self.users, self.n(8)):
                    if i % 2 == 0:          # VERP: the recipient in the sender
                        user, dom = rcpt.split("@")
                        sender = f"news-bounces+{user}={dom}@{org}"
                    else:                   # BATV: a tag that changes daily
                        sender = f"prvs=0{self.rnd.randint(100, 999)}{tag}=news-bounces@{org}"
                    self.add("lists", sender, rcpt, t0 + self.rnd.uniform(0, 30), "postfix",
                             lambda k, h=h: (h.addr, h.helo, 0, False))

    def _bots(self):
        for i in range(self.n(500)):
            addr = f"127.{100 + self.rnd.randrange(100)}.{self.rnd.randrange(256)}." \
                   f"{1 + self.rnd.randrange(254)}"
            o = addr.split(".")
            r = self.rnd.random()
            if r < 0.5:                      # generic, forward-confirmed
                ptr, fc = f"dyn-{o[0]}-{o[1]}-{o[2]}-{o[3]}.pool.isp{i % 7}.example", True
            elif r < 0.8:                    # no PTR at all
                ptr, fc = None, False
            else:                            # a name that does not resolve back
                ptr, fc = f"host{i}.hosting{i % 5}.example", False
            h = Host(addr, "", ptr=ptr, a_of_ptr=fc, dnsbl=self.rnd.random() < 0.45)
            self.host_dns(h)
            helo = self.rnd.choice([f"[{addr}]", "User-PC", "localhost", ptr or "win7"])
            r = self.rnd.random()
            sched = "none" if r < 0.55 else "quick" if r < 0.8 else "postfix"
            pregreet = self.rnd.random() < 0.2
            backup_first = self.rnd.random() < 0.15
            trap = self.rnd.random() < 0.05
            forged = self.rnd.choice(self.users[:20]).replace(DOMAIN, "gmailsim.example")
            rcpt = self.rnd.choice(self.users)
            self.add("bots", forged, rcpt, self.when(), sched,
                     lambda k, a=addr, hl=helo, b=backup_first, pg=pregreet:
                         (a, hl, 1 if (b and k == 0) else 0, pg),
                     rcpts=[TRAP, rcpt] if trap else None,
                     dnsbl=h.dnsbl, pregreet=pregreet, backup_first=backup_first, trap=trap,
                     retry=sched)


def rev(addr, suffix="in-addr.arpa"):
    """1.2.3.4 -> 4.3.2.1.in-addr.arpa (or 4.3.2.1.<suffix> for a DNSxL)."""
    r = ".".join(reversed(addr.split("."))) + "."
    return r + suffix


def summary(day):
    """Messages per population: a line for the log."""
    out = {}
    for m in day.messages:
        out[m.pop] = out.get(m.pop, 0) + 1
    return out
