#include "netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* "[" + the longest IPv6 text (INET6_ADDRSTRLEN includes the NUL) + "]". */
#define ADDR_TEXT_MAX (INET6_ADDRSTRLEN + 2)

static const uint8_t v4mapped_prefix[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
};

static unsigned family_bits(int family)
{
	return family == AF_INET ? 32 : 128;
}

static void set_v4(struct ipaddr *out, const void *b4)
{
	memset(out, 0, sizeof *out);
	out->family = AF_INET;
	memcpy(out->b, b4, 4);
}

static void set_v6(struct ipaddr *out, const void *b16)
{
	memset(out, 0, sizeof *out);
	out->family = AF_INET6;
	memcpy(out->b, b16, 16);
}

static bool is_v4mapped(const struct ipaddr *a)
{
	return a->family == AF_INET6 &&
	       memcmp(a->b, v4mapped_prefix, sizeof v4mapped_prefix) == 0;
}

/* A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; folding them
 * lets one IPv4 network entry cover both ways the same client can arrive. */
static void fold_v4mapped(struct ipaddr *a)
{
	if (is_v4mapped(a)) {
		uint8_t b4[4];
		memcpy(b4, a->b + 12, 4);
		set_v4(a, b4);
	}
}

bool ipaddr_from_sockaddr(const struct sockaddr *sa, struct ipaddr *out)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		set_v4(out, &sin->sin_addr);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		set_v6(out, &sin6->sin6_addr);
		fold_v4mapped(out);
		return true;
	}
	return false;
}

/* S[0..LEN) without folding: a bare IPv4 or IPv6 address, or an IPv6 address
 * in brackets (brackets around IPv4 are refused, as Postfix does). */
static bool parse_unfolded(const char *s, size_t len, struct ipaddr *out)
{
	char text[ADDR_TEXT_MAX];
	uint8_t b[16];
	bool bracketed = len >= 2 && s[0] == '[' && s[len - 1] == ']';

	if (bracketed) {
		s++;
		len -= 2;
	}
	if (len == 0 || len >= sizeof text)
		return false;
	memcpy(text, s, len);
	text[len] = '\0';
	if (!bracketed && inet_pton(AF_INET, text, b) == 1) {
		set_v4(out, b);
		return true;
	}
	if (inet_pton(AF_INET6, text, b) == 1) {
		set_v6(out, b);
		return true;
	}
	return false;
}

bool ipaddr_parse(const char *s, struct ipaddr *out)
{
	if (!parse_unfolded(s, strlen(s), out))
		return false;
	fold_v4mapped(out);
	return true;
}

const char *ipaddr_str(const struct ipaddr *a, char *buf, size_t len)
{
	socklen_t n = len > INET6_ADDRSTRLEN ? INET6_ADDRSTRLEN : (socklen_t)len;

	if (len == 0)
		return buf;
	if (!inet_ntop(a->family, a->b, buf, n))
		buf[0] = '\0';
	return buf;
}

void ipaddr_mask(struct ipaddr *a, unsigned prefix)
{
	unsigned bits = family_bits(a->family);

	if (prefix > bits)
		prefix = bits;
	size_t whole = prefix / 8;
	unsigned rest = prefix % 8;
	if (rest) {
		a->b[whole] &= (uint8_t)(0xff << (8 - rest));
		whole++;
	}
	memset(a->b + whole, 0, bits / 8 - whole);
}

/* Decimal prefix length: digits only (no sign, no blanks), at most three. */
static bool parse_prefix(const char *s, unsigned max, unsigned *out)
{
	unsigned v = 0;
	size_t i;

	for (i = 0; s[i]; i++) {
		if (i == 3 || s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (i == 0 || v > max)
		return false;
	*out = v;
	return true;
}

bool cidr_parse(const char *s, struct cidr *out, bool *had_host_bits)
{
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	struct ipaddr a;
	unsigned prefix;

	if (!parse_unfolded(s, alen, &a))
		return false;
	prefix = family_bits(a.family);
	if (slash && !parse_prefix(slash + 1, prefix, &prefix))
		return false;

	struct ipaddr masked = a;
	ipaddr_mask(&masked, prefix);
	if (had_host_bits)
		*had_host_bits = memcmp(masked.b, a.b, sizeof a.b) != 0;
	/* ::ffff:0:0/96 and narrower is exactly IPv4 space; wider networks
	 * stay IPv6 since they also hold addresses that are not IPv4. */
	if (prefix >= 96 && is_v4mapped(&masked)) {
		fold_v4mapped(&masked);
		prefix -= 96;
	}
	out->net = masked;
	out->prefix = prefix;
	return true;
}

bool cidr_match(const struct cidr *c, const struct ipaddr *a)
{
	if (c->net.family != a->family)
		return false;
	struct ipaddr m = *a;
	ipaddr_mask(&m, c->prefix);
	return memcmp(m.b, c->net.b, family_bits(a->family) / 8) == 0;
}

int netlist_add(struct netlist *l, const struct cidr *c)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		if (cap < l->cap || cap > SIZE_MAX / sizeof *l->v) {
			errno = ENOMEM;
			return -1;
		}
		struct cidr *v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *c;
	return 0;
}

bool netlist_match(const struct netlist *l, const struct ipaddr *a)
{
	for (size_t i = 0; i < l->n; i++)
		if (cidr_match(&l->v[i], a))
			return true;
	return false;
}

void netlist_free(struct netlist *l)
{
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}
