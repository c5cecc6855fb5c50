/*
 * netaddr: IP addresses and networks (CIDR) for the access lists.
 *
 * Promises: IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a dual-stack
 * listener reports for IPv4 clients) are treated as the IPv4 address they
 * carry, so an IPv4 network matches them. No allocation except in
 * netlist_add.
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

struct netlist {
	struct cidr *v;
	size_t n, cap;
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

int netlist_add(struct netlist *l, const struct cidr *c); /* 0 or -1 (ENOMEM) */
bool netlist_match(const struct netlist *l, const struct ipaddr *a);
void netlist_free(struct netlist *l);

#endif
