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

static unsigned bit_at(const uint8_t *b, unsigned i)
{
	return (b[i / 8] >> (7 - i % 8)) & 1;
}

/* The first bit, below LIMIT, where A and B differ; LIMIT when none does. */
static unsigned first_difference(const uint8_t *a, const uint8_t *b, unsigned limit)
{
	unsigned i = 0;
	while (i + 8 <= limit && a[i / 8] == b[i / 8])
		i += 8;
	while (i < limit && bit_at(a, i) == bit_at(b, i))
		i++;
	return i;
}

/* Room for one more leaf and one more branch, before any reference into
 * the arrays is taken. */
static int reserve(struct nettree *t, size_t klen)
{
	if (t->nleaf == t->leaf_cap) {
		/* indices stay below NETTREE_LEAF */
		size_t cap = t->leaf_cap ? (size_t)t->leaf_cap * 2 : 4;
		if (cap > NETTREE_LEAF || cap > SIZE_MAX / klen) {
			errno = ENOMEM;
			return -1;
		}
		uint8_t *key = realloc(t->key, cap * klen);
		if (!key)
			return -1;
		t->key = key;
		uint8_t *prefix = realloc(t->prefix, cap);
		if (!prefix)
			return -1;
		t->prefix = prefix;
		t->leaf_cap = (uint32_t)cap;
	}
	if (t->nbranch == t->branch_cap) {
		size_t cap = t->branch_cap ? (size_t)t->branch_cap * 2 : 4;
		if (cap > NETTREE_LEAF || cap > SIZE_MAX / sizeof *t->branch) {
			errno = ENOMEM;
			return -1;
		}
		struct nettree_branch *branch = realloc(t->branch, cap * sizeof *branch);
		if (!branch)
			return -1;
		t->branch = branch;
		t->branch_cap = (uint32_t)cap;
		if (t->nbranch == 0)
			t->nbranch = 1; /* branch 0 would read as NETTREE_NIL */
	}
	return 0;
}

static uint32_t new_leaf(struct nettree *t, size_t klen, const uint8_t *key, unsigned prefix)
{
	memcpy(t->key + (size_t)t->nleaf * klen, key, klen);
	t->prefix[t->nleaf] = (uint8_t)prefix;
	return NETTREE_LEAF | t->nleaf++;
}

/* A leaf of the subtree that KEY leads to, following KEY's bits while the
 * branches test bits below LIMIT. */
static uint32_t leaf_near(const struct nettree *t, const uint8_t *key, unsigned limit)
{
	uint32_t r = t->root;
	while (!(r & NETTREE_LEAF) && t->branch[r].bit < limit)
		r = t->branch[r].kids[bit_at(key, t->branch[r].bit)];
	while (!(r & NETTREE_LEAF))
		r = t->branch[r].kids[0];
	return r & ~NETTREE_LEAF;
}

/* Invariants: the leaves under a branch testing bit b agree on the bits
 * before b and both sides hold some; no leaf covers another. */
static int tree_add(struct nettree *t, size_t klen, const uint8_t *key, unsigned prefix)
{
	if (reserve(t, klen) < 0)
		return -1;
	if (t->root == NETTREE_NIL) {
		t->root = new_leaf(t, klen, key, prefix);
		return 0;
	}
	uint32_t near = leaf_near(t, key, prefix);
	unsigned near_prefix = t->prefix[near];
	unsigned d = first_difference(key, t->key + (size_t)near * klen,
				      prefix < near_prefix ? prefix : near_prefix);
	if (d == near_prefix)
		return 0; /* already covered (or a duplicate) */
	uint32_t *link = &t->root;
	while (!(*link & NETTREE_LEAF) && t->branch[*link].bit < d)
		link = &t->branch[*link].kids[bit_at(key, t->branch[*link].bit)];
	if (d == prefix) {
		/* the new network covers the whole subtree: its leaves and
		 * branches stay unused in the arrays until netlist_free */
		*link = new_leaf(t, klen, key, prefix);
		return 0;
	}
	uint32_t b = t->nbranch++;
	unsigned side = bit_at(key, d);
	t->branch[b].bit = (uint8_t)d;
	t->branch[b].kids[!side] = *link;
	t->branch[b].kids[side] = new_leaf(t, klen, key, prefix);
	*link = b;
	return 0;
}

static bool tree_match(const struct nettree *t, size_t klen, const uint8_t *addr)
{
	uint32_t r = t->root;
	if (r == NETTREE_NIL)
		return false;
	while (!(r & NETTREE_LEAF))
		r = t->branch[r].kids[bit_at(addr, t->branch[r].bit)];
	r &= ~NETTREE_LEAF;
	return first_difference(addr, t->key + (size_t)r * klen, t->prefix[r]) == t->prefix[r];
}

int netlist_add(struct netlist *l, const struct cidr *c)
{
	struct nettree *t = c->net.family == AF_INET ? &l->v4 :
			    c->net.family == AF_INET6 ? &l->v6 : NULL;
	if (!t) {
		errno = EINVAL;
		return -1;
	}
	struct ipaddr net = c->net;
	unsigned prefix = c->prefix < family_bits(net.family) ? c->prefix : family_bits(net.family);
	ipaddr_mask(&net, prefix);
	if (tree_add(t, t == &l->v4 ? 4 : 16, net.b, prefix) < 0)
		return -1;
	l->n++;
	return 0;
}

bool netlist_match(const struct netlist *l, const struct ipaddr *a)
{
	if (a->family == AF_INET)
		return tree_match(&l->v4, 4, a->b);
	if (a->family == AF_INET6)
		return tree_match(&l->v6, 16, a->b);
	return false;
}

static void tree_free(struct nettree *t)
{
	free(t->branch);
	free(t->key);
	free(t->prefix);
	memset(t, 0, sizeof *t);
}

void netlist_free(struct netlist *l)
{
	tree_free(&l->v4);
	tree_free(&l->v6);
	l->n = 0;
}
