"""The selective-greylisting part of the bench (`bench.py --only selective`).

What greygate decides with scoring on (two DNSBL/DNSWL sites), pool keys
(spf, ptr) and SPF records for the senders costs, with the answers cached
(the load's one client, 127.0.0.1) and with fresh lookups: the sampler's
"fresh" sessions come each from an address of its own in 127.1.0.0/16,
with a forward-confirmed, non-generic name and a sender domain of its own
with an SPF record, so that every decision needs a PTR, an A and an AAAA
query, the two lists' A queries and the domain's TXT query, none of them
in greygate's cache. The same queries are then timed by the sampler itself
(dns_path), in parallel as far as they can be: the DNS answer time the
decision cannot be faster than.

This module holds the zone, the settings and the two small DNS tools (the
timing resolver, and a relay that delays every answer, --dns-delay); it
imports nothing from bench.py, which wires it in.
"""

import heapq
import random
import selectors
import socket
import struct
import time

ZONE = "senders.test"                 # the fresh senders' domains and names
SITES = ["bl.bench.test=127.0.0.[2..11]*3", "wl.bench.test=127.0.[0..255].[1..3]*-5"]
SITE_DOMAINS = [s.split("=", 1)[0] for s in SITES]
FRESH_MAX = 250 * 256                 # at most: 127.1.0.1 .. 127.1.255.250
T_A, T_PTR, T_TXT, T_AAAA = 1, 12, 16, 28


def _letters(i):
    """A label of letters only: a number in a name could read as one of
    the address's octets (generic_name), a letter run as one of its words
    (dyn, dsl...), hence the "o" in front."""
    s = ""
    while True:
        s = chr(ord("a") + i % 26) + s
        i //= 26
        if not i:
            return "o" + s


def fresh_client(i):
    """The I-th fresh client: (address, its name, its sender domain)."""
    org = _letters(i)
    return f"127.1.{i // 250}.{i % 250 + 1}", f"mta.{org}.{ZONE}", f"{org}.{ZONE}"


def zone_lines(load_clients, nfresh):
    """dnsmasq.conf lines for the scored runs: the load's and the sampler's
    clients (LOAD_CLIENTS: {address: name}) and NFRESH fresh ones, with PTR
    and A (host-record), SPF for every sender domain. dnsmasq searches
    these records one by one (3 ms an answer at 16,000 clients, 0.1 ms
    at a few), so the caller asks for no more than its runs use. Nothing is listed
    in the two lists: every client is "normal", and each site's lookup
    is an NXDOMAIN that greygate has to wait for all the same."""
    lines = [
        # Authoritative, so that a negative answer (every list lookup here)
        # carries the zone's SOA, whose TTL greygate caches as it would a
        # real list's; dnsmasq's local=/zone/ answers NXDOMAIN without one
        # (TTL 0: asked again on every connection). The subnets make it
        # answer the PTR queries of the addresses in them too; they must
        # not overlap (dnsmasq answers a PTR from one zone only).
        "auth-server=ns.bench.test,127.0.0.1", "auth-ttl=3600",
        "auth-soa=1,hostmaster.bench.test,1200,120,604800",
        "auth-zone=test,127.1.0.0/16,192.0.2.0/24,2001:db8::/32",
        "auth-zone=example,127.0.0.0/16",
        # the load's sender: a narrow pass for the load's /24
             'txt-record=sender.example,"v=spf1 ip4:127.0.0.0/24 -all"']
    lines += [f"host-record={name},{addr}" for addr, name in load_clients.items()]
    for i in range(min(nfresh, FRESH_MAX)):
        addr, name, dom = fresh_client(i)
        lines.append(f"host-record={name},{addr}")
        lines.append(f'txt-record={dom},"v=spf1 ip4:127.1.0.0/16 -all"')
    return lines


def greygate_settings(dns_server, timeout_ms):
    """What the scored greygate has on top of the bench's settings.
    delay 1: the pass-scored row pre-passes its triplet by sending it
    twice (greygate-ctl cannot make an spf: key)."""
    return {
        "greylist": {"enabled": True, "delay": 1, "max_new_per_client": 10000000,
                     "pool_keys": ["spf", "ptr"]},
        "scoring": {"dnsbl": SITES},
        "dns": {"servers": [dns_server], "timeout_ms": timeout_ms, "tries": 1,
                "cache_size": 10000},
    }


# --------------------------------------------------------------------------
# the timing resolver
# --------------------------------------------------------------------------

def _query(qname, qtype):
    qid = random.getrandbits(16)
    body = b"".join(bytes([len(l)]) + l.encode() for l in qname.rstrip(".").split("."))
    return qid, struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + body + b"\0" + \
        struct.pack(">HH", qtype, 1)


def dns_path(server, addr, name, domain, timeout=3.0):
    """Asks SERVER ((host, port), UDP) what greygate asks for a fresh
    client ADDR whose name is NAME sending from DOMAIN: the PTR and then
    the name's A and AAAA (they need the PTR's answer), the domain's TXT
    and each site's A, all else at once. Returns (critical path, the
    slowest single answer) in microseconds: the time from the first query
    to the last answer of the longest chain, i.e. what an evaluator that
    started everything together could not beat. None on a timeout."""
    rev = ".".join(reversed(addr.split(".")))
    sel = selectors.DefaultSelector()
    socks = []
    t0 = time.perf_counter_ns()
    single = [0]

    def ask(qname, qtype, then=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(server)
        qid, pkt = _query(qname, qtype)
        sel.register(s, selectors.EVENT_READ, (qid, then, time.perf_counter_ns()))
        socks.append(s)
        s.send(pkt)

    ask(f"{rev}.in-addr.arpa", T_PTR, then=name)
    ask(domain, T_TXT)
    for d in SITE_DOMAINS:
        ask(f"{rev}.{d}", T_A)
    pending, end = len(socks), t0
    deadline = time.monotonic() + timeout
    try:
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            for key, _ in sel.select(left):
                qid, then, sent = key.data
                pkt = key.fileobj.recv(4096)
                if len(pkt) < 12 or struct.unpack(">H", pkt[:2])[0] != qid:
                    continue
                now = time.perf_counter_ns()
                single[0] = max(single[0], now - sent)
                end = max(end, now)
                sel.unregister(key.fileobj)
                pending -= 1
                if then:                 # the PTR: now the name's addresses
                    ask(then, T_A)
                    ask(then, T_AAAA)
                    pending += 2
    finally:
        for s in socks:
            s.close()
        sel.close()
    return (end - t0) // 1000, single[0] // 1000


# --------------------------------------------------------------------------
# the delaying relay (bench.py --dns-delay MS)
# --------------------------------------------------------------------------

def relay_main(listen_port, upstream_port, delay_ms):
    """UDP relay on 127.0.0.1:LISTEN_PORT to dnsmasq on UPSTREAM_PORT that
    holds every answer DELAY_MS before passing it on: a DNS server that far
    away, for every query (dnsmasq's own cache, or greygate's, is then the
    only thing that saves the wait). One upstream socket per query, so that
    two clients' query ids never meet."""
    sel = selectors.DefaultSelector()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    lsock.bind(("127.0.0.1", listen_port))
    sel.register(lsock, selectors.EVENT_READ, None)
    held = []                         # (due, seq, packet, client)
    seq = 0
    while True:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else None
        for key, _ in sel.select(timeout):
            if key.data is None:
                pkt, client = lsock.recvfrom(4096)
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                u.connect(("127.0.0.1", upstream_port))
                u.send(pkt)
                sel.register(u, selectors.EVENT_READ, (client, time.monotonic() + 5))
            else:
                client, _ = key.data
                pkt = key.fileobj.recv(4096)
                sel.unregister(key.fileobj)
                key.fileobj.close()
                seq += 1
                heapq.heappush(held, (time.monotonic() + delay_ms / 1000, seq, pkt, client))
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, _, pkt, client = heapq.heappop(held)
            lsock.sendto(pkt, client)
        # upstream sockets that never got an answer
        for key in list(sel.get_map().values()):
            if key.data is not None and key.data[1] < now:
                sel.unregister(key.fileobj)
                key.fileobj.close()

