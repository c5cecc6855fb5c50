#!/usr/bin/env python3
"""Writes the hand-made DNS response seeds of corpus/dnsmsg/.

Run from test/fuzz/: python3 make_dns_seeds.py. The seeds are committed;
this script only documents how they were made (and remakes them).
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "dnsmsg")


def name(n):
    if n in ("", "."):
        return b"\0"
    return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".")) + b"\0"


def hdr(qd, an, ns, ar, rcode=0, flags=0x8180):
    return struct.pack(">HHHHHH", 0x1234, flags | rcode, qd, an, ns, ar)


def q(n, t):
    return name(n) + struct.pack(">HH", t, 1)


def rr(owner, t, ttl, rdata, cls=1):
    o = owner if isinstance(owner, bytes) else name(owner)
    return o + struct.pack(">HHIH", t, cls, ttl, len(rdata)) + rdata


PTR_C = b"\xc0\x0c"  # pointer to the question name
seeds = {
    "mx_two": hdr(1, 2, 0, 0) + q("Example.ORG", 15)
    + rr(PTR_C, 15, 3600, struct.pack(">H", 10) + name("mx1.example.org"))
    + rr(PTR_C, 15, 300, struct.pack(">H", 20) + b"\x03mx2" + PTR_C),
    "a_cname": hdr(1, 2, 0, 0) + q("www.example.com", 1)
    + rr(PTR_C, 5, 60, name("web.example.com"))
    + rr(name("web.example.com"), 1, 120, bytes([192, 0, 2, 1])),
    "aaaa_mapped": hdr(1, 2, 0, 0) + q("v6.example", 28)
    + rr(PTR_C, 28, 100, bytes(15) + b"\x01")
    + rr(PTR_C, 28, 0x80000000, bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 9])),
    "ptr": hdr(1, 1, 0, 0) + q("1.2.0.192.in-addr.arpa", 12)
    + rr(PTR_C, 12, 86400 * 7, name("Host.Example.NET")),
    "nxdomain_soa": hdr(1, 0, 1, 0, rcode=3) + q("nope.example", 15)
    + rr(name("example"), 6, 900, name("ns.example") + name("hostmaster.example")
         + struct.pack(">IIIII", 1, 7200, 900, 1209600, 300)),
    "nodata_opt": hdr(1, 0, 0, 1) + q("example.net", 28)
    + rr(b"\0", 41, 0, b"", cls=1232),
    "servfail": hdr(1, 0, 0, 0, rcode=2) + q("example.org", 1),
    "loop_pointer": hdr(1, 1, 0, 0) + q("a.example", 15)
    + rr(PTR_C, 15, 60, struct.pack(">H", 0) + b"\xc0\x2a"),
    # TXT: an SPF record in two character-strings, another record, an empty one
    "txt_spf": hdr(1, 3, 0, 0) + q("example.com", 16)
    + rr(PTR_C, 16, 300, b"\x17v=spf1 ip4:192.0.2.0/24\x05 -all")
    + rr(PTR_C, 16, 300, b"\x0agoogle=abc")
    + rr(PTR_C, 16, 300, b""),
    # more records than DNS_MAX_RR (32): the rest is checked, then dropped
    "a_33": hdr(1, 33, 0, 0) + q("many.example", 1)
    + b"".join(rr(PTR_C, 1, 60 + i, bytes([198, 51, 100, i])) for i in range(33)),
}
os.makedirs(OUT, exist_ok=True)
for k, v in seeds.items():
    with open(os.path.join(OUT, k), "wb") as f:
        f.write(v)
print(len(seeds), "seeds in", OUT)
