/*
 * netaddr: IP addresses and networks (CIDR) for the access lists.
 *
 * Promises: IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a dual-stack
 * listener reports for IPv4 clients) are treated as the IPv4 address they
 * carry, so an IPv4 network matches them. No allocation except in
 * netlist_add. netlist_match costs at most one step per address bit,
 * whatever the number of networks in the list.
 */
#ifndef GG_NETADDR_H
#define GG_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ipaddr {
	int family;        /* AF_INET or AF_INET6 */
	uint8_t b[16];     /* network byte order; first 4 bytes for AF_INET */
};

struct cidr {
	struct ipaddr net; /* host bits cleared */
	unsigned prefix;   /* 0..32 or 0..128 */
};

/* One family's networks as a path-compressed binary prefix tree. Only the
 * networks no other one covers are kept, so every network is a leaf and
 * every branch has two children (a branch per leaf, less one). A reference
 * is NETTREE_NIL, NETTREE_LEAF | leaf index, or a branch index (from 1).
 * All zero is the empty tree. */
#define NETTREE_NIL  0u
#define NETTREE_LEAF 0x80000000u

struct nettree {
	uint32_t root;
	struct nettree_branch {
		uint32_t kids[2];  /* the side whose bit is 0, then 1 */
		uint8_t bit;       /* the bit it tests (0: the first) */
	} *branch;             /* one array: a step of a walk reads one line */
	uint32_t nbranch, branch_cap;
	uint8_t *key;          /* per leaf: the network, 4 or 16 bytes */
	uint8_t *prefix;       /* per leaf: its prefix length */
	uint32_t nleaf, leaf_cap;
};

struct netlist {
	struct nettree v4, v6;
	size_t n;              /* networks added (0: the list is empty) */
};

/* From a socket address (AF_INET/AF_INET6, v4-mapped folded to v4). */
bool ipaddr_from_sockaddr(const struct sockaddr *sa, struct ipaddr *out);
/* From text: "192.0.2.1", "2001:db8::1", "[2001:db8::1]". */
bool ipaddr_parse(const char *s, struct ipaddr *out);
/* Text form into BUF (at least 46 bytes); returns BUF. */
const char *ipaddr_str(const struct ipaddr *a, char *buf, size_t len);

/*
 * "192.0.2.0/24", "2001:db8::/32", "[2001:db8::]/32", or a bare address
 * (a /32 or /128). Refuses prefixes out of range and junk. Host bits set
 * beyond the prefix are cleared (as Postfix does with a warning; the caller
 * may warn when *had_host_bits is set; HAD_HOST_BITS may be NULL).
 */
bool cidr_parse(const char *s, struct cidr *out, bool *had_host_bits);
bool cidr_match(const struct cidr *c, const struct ipaddr *a);

/* Masks A to PREFIX bits in place (prefix clamped to the family's width). */
void ipaddr_mask(struct ipaddr *a, unsigned prefix);

/* 0, or -1 with errno ENOMEM (or EINVAL: not AF_INET/AF_INET6). Host bits
 * of C beyond its prefix are ignored. */
int netlist_add(struct netlist *l, const struct cidr *c);
bool netlist_match(const struct netlist *l, const struct ipaddr *a);
void netlist_free(struct netlist *l);

#endif
