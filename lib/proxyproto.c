#include "proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>

/*
 * Both versions are parsed as a prefix of the stream. The rule for the
 * answer is exact in the direction that matters: PP_NEED_MORE is given only
 * while the bytes so far can still be completed into a header we accept, so
 * a client that is not behind the proxy (or a broken proxy) is refused as
 * soon as its bytes prove it, not after a read timeout.
 */

/* ---- v1 field scanners ------------------------------------------------ */

/*
 * Each text field is checked by a small incremental scanner rather than by
 * inet_pton alone: inet_pton can only judge a finished field, and we must
 * also tell whether an unfinished one can still become valid. inet_pton
 * still has the last word on a finished address (see v1_addr), so the
 * scanners only have to be no stricter than it, and the tests check that.
 */

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_xdigit(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Dotted quad as glibc's inet_pton takes it: four decimal octets, no
 * leading zeros (which other parsers read as octal), each at most 255. */
struct v4scan {
	unsigned octets; /* octets started so far, the current one included */
	unsigned digits; /* digits in the current octet */
	unsigned val;    /* value of the current octet */
	bool bad;
};

static void v4_feed(struct v4scan *s, unsigned char c)
{
	if (s->bad)
		return;
	if (is_digit(c)) {
		if (s->octets == 0)
			s->octets = 1;
		if (s->digits > 0 && s->val == 0) {
			s->bad = true;
			return;
		}
		s->digits++;
		s->val = s->val * 10 + (unsigned)(c - '0');
		if (s->digits > 3 || s->val > 255)
			s->bad = true;
	} else if (c == '.') {
		if (s->digits == 0 || s->octets >= 4) {
			s->bad = true;
			return;
		}
		s->octets++;
		s->digits = 0;
		s->val = 0;
	} else {
		s->bad = true;
	}
}

static bool v4_complete(const struct v4scan *s)
{
	return !s->bad && s->octets == 4 && s->digits > 0;
}

/* Fewest bytes that can still finish the address ("1.2." needs "3.4"). */
static size_t v4_need(const struct v4scan *s)
{
	if (s->octets == 0)
		return 7; /* "0.0.0.0" */
	return (s->digits == 0 ? 1 : 0) + (size_t)(4 - s->octets) * 2;
}

/*
 * IPv6 text as inet_pton takes it: groups of 1 to 4 hex digits separated by
 * ':', at most one "::" standing for one or more zero groups, optionally
 * ending in a dotted quad that fills the last two groups. Without "::"
 * there are exactly eight groups; with it at most seven.
 */
struct v6scan {
	unsigned groups;    /* finished groups (before the current token) */
	unsigned hexdigits; /* digits in the current group */
	unsigned colons;    /* ':' just seen in a row: 0, 1 or 2 */
	bool leading_colon; /* the address began with ':', so must be "::" */
	bool dcolon;        /* "::" seen */
	bool in_v4;         /* in the trailing dotted quad */
	bool bad;
	unsigned char group[4]; /* the current group, replayed as an octet on '.' */
	struct v4scan v4;
};

static unsigned v6_max_groups(const struct v6scan *s)
{
	return s->dcolon ? 7 : 8;
}

static void v6_feed(struct v6scan *s, unsigned char c)
{
	if (s->bad)
		return;
	if (s->in_v4) {
		v4_feed(&s->v4, c);
		s->bad = s->v4.bad;
		return;
	}
	if (c == ':') {
		if (s->hexdigits > 0) {
			s->groups++;
			s->hexdigits = 0;
			s->colons = 1;
			/* a lone ':' must be followed by one more group or
			 * become "::" (only if there is none yet); either way
			 * at least one more group's worth must still fit */
			if (s->dcolon ? s->groups + 1 > 7 : s->groups > 7)
				s->bad = true;
		} else if (s->colons == 1) {
			if (s->dcolon) {
				s->bad = true;
				return;
			}
			s->dcolon = true;
			s->colons = 2;
			s->leading_colon = false;
		} else if (s->colons == 2) {
			s->bad = true; /* ":::" */
		} else {
			s->colons = 1; /* at the very start */
			s->leading_colon = true;
		}
	} else if (c == '.') {
		/* the current group was really the first octet of a dotted
		 * quad, which takes two groups and must end the address */
		if (s->hexdigits == 0 ||
		    (s->dcolon ? s->groups + 2 > 7 : s->groups != 6)) {
			s->bad = true;
			return;
		}
		memset(&s->v4, 0, sizeof s->v4);
		for (unsigned i = 0; i < s->hexdigits; i++)
			v4_feed(&s->v4, s->group[i]);
		v4_feed(&s->v4, '.');
		s->in_v4 = true;
		s->bad = s->v4.bad;
	} else if (is_xdigit(c)) {
		if (s->leading_colon) {
			s->bad = true; /* ":1" */
			return;
		}
		if (s->hexdigits == 0 && s->groups + 1 > v6_max_groups(s)) {
			s->bad = true;
			return;
		}
		if (s->hexdigits == 4) {
			s->bad = true;
			return;
		}
		s->group[s->hexdigits++] = c;
		s->colons = 0;
	} else {
		s->bad = true;
	}
}

static bool v6_complete(const struct v6scan *s)
{
	if (s->bad)
		return false;
	if (s->in_v4)
		return v4_complete(&s->v4);
	if (s->colons == 2)
		return true;
	if (s->hexdigits > 0)
		return s->dcolon ? s->groups + 1 <= 7 : s->groups + 1 == 8;
	return false; /* empty, or ends in a lone ':' */
}

static size_t v6_need(const struct v6scan *s)
{
	if (s->in_v4)
		return v4_need(&s->v4);
	if (v6_complete(s))
		return 0;
	if (s->colons == 1)
		return 1; /* a digit, or the ':' that makes "::" */
	return 2;         /* "::", or ":x" after the seventh group */
}

/* Decimal port 0..65535: no sign, no leading zeros except "0" itself. */
struct portscan {
	unsigned digits;
	unsigned long val;
	bool bad;
};

static void port_feed(struct portscan *s, unsigned char c)
{
	if (s->bad)
		return;
	if (!is_digit(c) || (s->digits > 0 && s->val == 0)) {
		s->bad = true;
		return;
	}
	s->digits++;
	s->val = s->val * 10 + (unsigned long)(c - '0');
	if (s->val > 65535)
		s->bad = true;
}

enum v1_kind { V1_IPV4, V1_IPV6, V1_PORT };

struct field {
	enum v1_kind kind;
	union {
		struct v4scan v4;
		struct v6scan v6;
		struct portscan port;
	} u;
};

static void field_init(struct field *f, enum v1_kind kind)
{
	memset(f, 0, sizeof *f);
	f->kind = kind;
}

static bool field_feed(struct field *f, unsigned char c)
{
	switch (f->kind) {
	case V1_IPV4:
		v4_feed(&f->u.v4, c);
		return !f->u.v4.bad;
	case V1_IPV6:
		v6_feed(&f->u.v6, c);
		return !f->u.v6.bad;
	case V1_PORT:
		port_feed(&f->u.port, c);
		return !f->u.port.bad;
	}
	return false;
}

static bool field_complete(const struct field *f)
{
	switch (f->kind) {
	case V1_IPV4:
		return v4_complete(&f->u.v4);
	case V1_IPV6:
		return v6_complete(&f->u.v6);
	case V1_PORT:
		return !f->u.port.bad && f->u.port.digits > 0;
	}
	return false;
}

static size_t field_need(const struct field *f)
{
	switch (f->kind) {
	case V1_IPV4:
		return v4_need(&f->u.v4);
	case V1_IPV6:
		return v6_need(&f->u.v6);
	case V1_PORT:
		return f->u.port.digits > 0 ? 0 : 1;
	}
	return 1;
}

/* ---- addresses --------------------------------------------------------- */

/* Going through ipaddr_from_sockaddr keeps one definition of how a
 * v4-mapped address is folded, whichever way the address arrived. */
static void addr_from_v4(const unsigned char b[4], struct ipaddr *out)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	memcpy(&sin.sin_addr, b, 4);
	(void)ipaddr_from_sockaddr((const struct sockaddr *)&sin, out);
}

static void addr_from_v6(const unsigned char b[16], struct ipaddr *out)
{
	struct sockaddr_in6 sin6;

	memset(&sin6, 0, sizeof sin6);
	sin6.sin6_family = AF_INET6;
	memcpy(&sin6.sin6_addr, b, 16);
	(void)ipaddr_from_sockaddr((const struct sockaddr *)&sin6, out);
}

/* A finished v1 address field B[0..LEN). */
static bool v1_addr(const unsigned char *b, size_t len, enum v1_kind kind,
		    struct ipaddr *out)
{
	char text[INET6_ADDRSTRLEN];
	unsigned char bin[16];

	if (len == 0 || len >= sizeof text)
		return false;
	memcpy(text, b, len);
	text[len] = '\0';
	if (kind == V1_IPV4) {
		if (inet_pton(AF_INET, text, bin) != 1)
			return false;
		addr_from_v4(bin, out);
	} else {
		if (inet_pton(AF_INET6, text, bin) != 1)
			return false;
		addr_from_v6(bin, out);
	}
	return true;
}

/* ---- v1 ------------------------------------------------------------------ */

static const char v1_magic[] = "PROXY ";
#define V1_MAGIC_LEN (sizeof v1_magic - 1)

enum { V1_TCP4, V1_TCP6, V1_UNKNOWN, V1_NPROTOS };
static const char *const v1_protos[V1_NPROTOS] = {
	[V1_TCP4] = "TCP4 ", [V1_TCP6] = "TCP6 ", [V1_UNKNOWN] = "UNKNOWN",
};

/* After "PROXY UNKNOWN": the rest of the line up to CRLF is ignored (it may
 * carry addresses the proxy could not classify), but we still insist on
 * printable text so a binary stream is not taken for a header. */
static enum proxyproto_status v1_unknown(const unsigned char *b, size_t n,
					 size_t p, struct proxyproto_result *r)
{
	size_t start = p;

	for (;; p++) {
		/* the rest is at least CRLF */
		if (p + 2 > PROXYPROTO_V1_MAX)
			return PP_INVALID;
		if (p == n)
			return PP_NEED_MORE;
		if (b[p] == '\r')
			break;
		if (b[p] < 0x20 || b[p] > 0x7e || (p == start && b[p] != ' '))
			return PP_INVALID;
	}
	p++;
	if (p == n)
		return PP_NEED_MORE;
	if (b[p] != '\n')
		return PP_INVALID;
	memset(r, 0, sizeof *r);
	r->len = p + 1;
	r->version = 1;
	r->local = 1;
	return PP_OK;
}

static enum proxyproto_status parse_v1(const unsigned char *b, size_t n,
				       struct proxyproto_result *r)
{
	size_t p, proto = V1_NPROTOS;

	for (p = 0; p < V1_MAGIC_LEN; p++) {
		if (p == n)
			return PP_NEED_MORE;
		if (b[p] != (unsigned char)v1_magic[p])
			return PP_INVALID;
	}

	/* The protocol words are prefix-free, so at most one can match in
	 * full; until one does, any that still agrees keeps us waiting. */
	bool alive = false;
	for (size_t i = 0; i < V1_NPROTOS; i++) {
		size_t wl = strlen(v1_protos[i]);
		size_t k;

		for (k = 0; k < wl && p + k < n; k++)
			if (b[p + k] != (unsigned char)v1_protos[i][k])
				break;
		if (k == wl) {
			proto = i;
			break;
		}
		if (p + k == n)
			alive = true;
	}
	if (proto == V1_NPROTOS)
		return alive ? PP_NEED_MORE : PP_INVALID;
	p += strlen(v1_protos[proto]);
	if (proto == V1_UNKNOWN)
		return v1_unknown(b, n, p, r);

	enum v1_kind akind = proto == V1_TCP4 ? V1_IPV4 : V1_IPV6;
	struct proxyproto_result res;

	memset(&res, 0, sizeof res);
	for (unsigned fi = 0; fi < 4; fi++) {
		struct field f;
		size_t start = p;

		field_init(&f, fi < 2 ? akind : V1_PORT);
		for (;; p++) {
			/* the rest of this field, its separator, one byte and
			 * a separator for each later field, and the LF */
			size_t need = field_need(&f) + 1 + (3 - fi) * 2 + 1;

			if (p + need > PROXYPROTO_V1_MAX)
				return PP_INVALID;
			if (p == n)
				return PP_NEED_MORE;
			if (b[p] == ' ' || b[p] == '\r')
				break;
			if (!field_feed(&f, b[p]))
				return PP_INVALID;
		}
		if (!field_complete(&f) || b[p] != (fi < 3 ? ' ' : '\r'))
			return PP_INVALID;
		if (fi >= 2) {
			uint16_t port = (uint16_t)f.u.port.val;
			if (fi == 2)
				res.src_port = port;
			else
				res.dst_port = port;
		} else if (!v1_addr(b + start, p - start, akind,
				    fi == 0 ? &res.src : &res.dst)) {
			return PP_INVALID;
		}
		p++;
	}
	if (p + 1 > PROXYPROTO_V1_MAX)
		return PP_INVALID;
	if (p == n)
		return PP_NEED_MORE;
	if (b[p] != '\n')
		return PP_INVALID;
	res.len = p + 1;
	res.version = 1;
	*r = res;
	return PP_OK;
}

/* ---- v2 ------------------------------------------------------------------ */

static const unsigned char v2_sig[12] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
};

#define V2_HDR 16
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_FAM_UNSPEC 0x00
#define V2_FAM_TCP4 0x11
#define V2_FAM_TCP6 0x21
#define V2_ADDR4_LEN 12
#define V2_ADDR6_LEN 36

static enum proxyproto_status parse_v2(const unsigned char *b, size_t n,
				       struct proxyproto_result *r)
{
	for (size_t i = 0; i < sizeof v2_sig; i++) {
		if (i == n)
			return PP_NEED_MORE;
		if (b[i] != v2_sig[i])
			return PP_INVALID;
	}
	if (n < 13)
		return PP_NEED_MORE;
	unsigned cmd = b[12] & 0x0F;
	if ((b[12] >> 4) != 2 || (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY))
		return PP_INVALID;
	if (n < 14)
		return PP_NEED_MORE;
	unsigned fam = b[13];
	/* UDP and UNIX sockets make no sense in front of an SMTP server, so
	 * they are refused even with LOCAL rather than waved through */
	if (fam != V2_FAM_UNSPEC && fam != V2_FAM_TCP4 && fam != V2_FAM_TCP6)
		return PP_INVALID;
	if (n < 16) {
		/* the high byte alone can already rule out the length */
		if (n == 15 && ((size_t)b[14] << 8) > PROXYPROTO_V2_MAX - V2_HDR)
			return PP_INVALID;
		return PP_NEED_MORE;
	}
	size_t alen = (size_t)b[14] << 8 | b[15];
	if (alen > PROXYPROTO_V2_MAX - V2_HDR)
		return PP_INVALID;
	size_t total = V2_HDR + alen;

	/* LOCAL is the proxy talking for itself (health checks); PROXY with
	 * UNSPEC means the proxy could not tell us the client. Either way the
	 * block is ignored and no client is known. */
	bool local = cmd == V2_CMD_LOCAL || fam == V2_FAM_UNSPEC;
	size_t minlen = fam == V2_FAM_TCP4 ? V2_ADDR4_LEN : V2_ADDR6_LEN;

	if (!local) {
		if (alen < minlen)
			return PP_INVALID;
		/* TLVs must tile the rest of the block exactly; check what
		 * has arrived so an overrun is refused without waiting for
		 * bytes that would not help */
		size_t q = V2_HDR + minlen;
		while (q < total) {
			if (total - q < 3)
				return PP_INVALID;
			if (n < q + 3)
				break;
			size_t tlen = (size_t)b[q + 1] << 8 | b[q + 2];
			if (tlen > total - q - 3)
				return PP_INVALID;
			q += 3 + tlen;
		}
	}
	if (n < total)
		return PP_NEED_MORE;

	struct proxyproto_result res;
	memset(&res, 0, sizeof res);
	res.len = total;
	res.version = 2;
	if (local) {
		res.local = 1;
	} else if (fam == V2_FAM_TCP4) {
		addr_from_v4(b + 16, &res.src);
		addr_from_v4(b + 20, &res.dst);
		res.src_port = (uint16_t)(b[24] << 8 | b[25]);
		res.dst_port = (uint16_t)(b[26] << 8 | b[27]);
	} else {
		addr_from_v6(b + 16, &res.src);
		addr_from_v6(b + 32, &res.dst);
		res.src_port = (uint16_t)(b[48] << 8 | b[49]);
		res.dst_port = (uint16_t)(b[50] << 8 | b[51]);
	}
	*r = res;
	return PP_OK;
}

enum proxyproto_status proxyproto_parse(const unsigned char *buf, size_t len,
					struct proxyproto_result *r)
{
	if (len == 0)
		return PP_NEED_MORE;
	if (buf[0] == (unsigned char)v1_magic[0])
		return parse_v1(buf, len, r);
	if (buf[0] == v2_sig[0])
		return parse_v2(buf, len, r);
	return PP_INVALID;
}
