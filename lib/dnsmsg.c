#include "dnsmsg.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "hostname.h"

#define HDR_LEN 12
#define RR_FIXED 10            /* type, class, ttl, rdlength */
#define Q_FIXED 4              /* qtype, qclass */
#define CLASS_IN 1
#define NAME_TEXT_MAX (DNS_NAME_MAX - 1)
#define LABEL_MAX 63
#define MAX_JUMPS 64

#define FLAG_QR 0x8000u
#define FLAG_TC 0x0200u
#define OPCODE(f) (((f) >> 11) & 0xfu)
#define RCODE(f) ((f) & 0xfu)
#define RCODE_NOERROR 0
#define RCODE_NXDOMAIN 3

/*
 * Every TTL handed out is capped at a day: the answers feed decisions
 * (greylisting, MX checks) that should notice a changed zone the next day
 * at the latest, whatever TTL a zone asks for, and a forged or broken answer
 * cannot pin itself in a cache for weeks.
 */
#define TTL_CAP 86400u

struct rr {
	uint16_t type, class;
	uint32_t ttl;
	size_t rdata;              /* offset of RDATA in the message */
	size_t rdlen;
};

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* RFC 2181 section 8: a TTL with the top bit set is to be read as zero,
 * not as a very long time. */
static uint32_t sane_ttl(uint32_t t)
{
	if (t > 0x7fffffffu)
		return 0;
	return t > TTL_CAP ? TTL_CAP : t;
}

/*
 * Reads the name at *OFF into OUT (DNS_NAME_MAX bytes, lower case, no
 * trailing dot, "" for the root). Its uncompressed part must end by END
 * (the end of the RDATA holding it, or of the message); *OFF is left just
 * past that part.
 *
 * USABLE is NULL for names that are only walked (owners, the question,
 * the SOA's): for those a text form longer than 253 bytes makes the
 * message malformed. Otherwise the name is one greygate may hand out, and
 * what the sender controls inside a well-formed message (the bytes of a
 * label, the length of the whole) never makes the message malformed:
 * *USABLE says whether OUT is the root or a valid host name, and OUT is ""
 * when not.
 *
 * Each pointer must go strictly before the start of the run of labels it
 * ends (the name's start, then the previous pointer's target), as BIND
 * does: that alone makes loops impossible; the jump limit is a second
 * bound. Targets inside the header are refused, no name lives there.
 */
static bool read_name(const unsigned char *m, size_t len, size_t *off,
		      size_t end, char *out, bool *usable)
{
	size_t pos = *off, run = *off, limit = end, after = 0, tlen = 0;
	unsigned jumps = 0;
	/* a '.' or NUL inside a label has no faithful text form */
	bool faithful = true, fits = true;

	for (;;) {
		if (pos >= limit)
			return false;
		unsigned c = m[pos];
		if ((c & 0xc0) == 0xc0) {
			if (limit - pos < 2)
				return false;
			size_t target = (size_t)(c & 0x3f) << 8 | m[pos + 1];
			if (jumps == 0)
				after = pos + 2;
			if (++jumps > MAX_JUMPS || target >= run || target < HDR_LEN)
				return false;
			pos = run = target;
			/* Earlier parts of the message are not bound by the
			 * RDATA we started in. */
			limit = len;
			continue;
		}
		/* 01 and 10 prefixes: extended label types (RFC 6891 made
		 * them obsolete); no answer we use has them. */
		if (c & 0xc0)
			return false;
		pos++;
		if (c == 0)
			break;
		if (c > limit - pos)
			return false;
		size_t need = tlen ? tlen + 1 + c : c;
		if (!fits || need > NAME_TEXT_MAX) {
			if (!usable)
				return false;
			fits = false;
			pos += c;
			continue;
		}
		if (tlen)
			out[tlen++] = '.';
		for (size_t i = 0; i < c; i++) {
			unsigned char b = m[pos + i];
			if (b == '.' || b == 0)
				faithful = false;
			if (b >= 'A' && b <= 'Z')
				b = (unsigned char)(b - 'A' + 'a');
			out[tlen++] = (char)b;
		}
		pos += c;
	}
	out[tlen] = '\0';
	*off = jumps ? after : pos;
	if (usable) {
		*usable = fits && faithful && (tlen == 0 || hostname_valid(out, tlen));
		if (!*usable)
			out[0] = '\0';
	}
	return true;
}

/* The owner name (only checked, never used: owners are not matched) and
 * the fixed part of the RR at *OFF; *OFF is left past its RDATA. */
static bool read_rr(const unsigned char *m, size_t len, size_t *off, struct rr *rr)
{
	char owner[DNS_NAME_MAX];

	if (!read_name(m, len, off, len, owner, NULL))
		return false;
	if (len - *off < RR_FIXED)
		return false;
	const unsigned char *p = m + *off;
	rr->type = get16(p);
	rr->class = get16(p + 2);
	rr->ttl = sane_ttl(get32(p + 4));
	rr->rdlen = get16(p + 8);
	rr->rdata = *off + RR_FIXED;
	if (rr->rdlen > len - rr->rdata)
		return false;
	*off = rr->rdata + rr->rdlen;
	return true;
}

/* A name that must fill the RDATA from OFF to its end exactly. */
static bool rdata_name(const unsigned char *m, size_t len, size_t off, size_t end,
		       char *out, bool *usable)
{
	return read_name(m, len, &off, end, out, usable) && off == end;
}

static void set_addr(struct ipaddr *out, const unsigned char *b, int family)
{
	/* Built as a socket address so that netaddr's rule for them (v4-mapped
	 * IPv6 is the IPv4 address it carries) applies to AAAA records too and
	 * the results compare equal to client addresses. */
	if (family == AF_INET) {
		struct sockaddr_in sin;
		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		memcpy(&sin.sin_addr, b, 4);
		ipaddr_from_sockaddr((const struct sockaddr *)&sin, out);
	} else {
		struct sockaddr_in6 sin6;
		memset(&sin6, 0, sizeof sin6);
		sin6.sin6_family = AF_INET6;
		memcpy(&sin6.sin6_addr, b, 16);
		ipaddr_from_sockaddr((const struct sockaddr *)&sin6, out);
	}
}

/* Decodes the RDATA of a record of the asked type into OUT. */
static bool read_rdata(const unsigned char *m, size_t len, const struct rr *rr,
		       struct dns_rr *out)
{
	const unsigned char *p = m + rr->rdata;
	size_t end = rr->rdata + rr->rdlen;
	bool usable;

	switch (rr->type) {
	case DNS_T_A:
		if (rr->rdlen != 4)
			return false;
		set_addr(&out->addr, p, AF_INET);
		return true;
	case DNS_T_AAAA:
		if (rr->rdlen != 16)
			return false;
		set_addr(&out->addr, p, AF_INET6);
		return true;
	case DNS_T_MX:
		if (rr->rdlen < 2)
			return false;
		out->pref = get16(p);
		/* the root stays: it is the null MX (RFC 7505) */
		if (!rdata_name(m, len, rr->rdata + 2, end, out->name, &usable))
			return false;
		out->bad_name = !usable;
		return true;
	case DNS_T_PTR:
		if (!rdata_name(m, len, rr->rdata, end, out->name, &usable))
			return false;
		out->bad_name = !usable || !out->name[0];
		return true;
	default:
		return false;
	}
}

/* min(SOA TTL, SOA MINIMUM) per RFC 2308 section 5; the SOA's names are
 * only checked for structure (RNAME is a mailbox and may well hold a dot in
 * its first label). */
static bool soa_ttl(const unsigned char *m, size_t len, const struct rr *rr, uint32_t *ttl)
{
	char scratch[DNS_NAME_MAX];
	size_t off = rr->rdata, end = rr->rdata + rr->rdlen;

	if (!read_name(m, len, &off, end, scratch, NULL) ||
	    !read_name(m, len, &off, end, scratch, NULL) ||
	    end - off != 20)
		return false;
	uint32_t minimum = sane_ttl(get32(m + off + 16));
	*ttl = rr->ttl < minimum ? rr->ttl : minimum;
	return true;
}

static bool supported(uint16_t type)
{
	return type == DNS_T_A || type == DNS_T_AAAA || type == DNS_T_MX ||
	       type == DNS_T_PTR || type == DNS_T_TXT;
}

/* A TXT record's character-strings (RFC 1035 section 3.3.14: length
 * byte, then that many bytes; at least one) concatenated into T. */
static bool read_txt(const unsigned char *m, const struct rr *rr, struct dns_txt *t)
{
	size_t off = rr->rdata, end = rr->rdata + rr->rdlen, used = 0;
	if (t->n)
		used = t->rr[t->n - 1].off + t->rr[t->n - 1].len;
	bool fits = t->n < DNS_TXT_MAX_RR;
	size_t start = used, textlen = 0;
	bool too_long = false;
	while (off < end) {
		size_t l = m[off++];
		if (l > end - off)
			return false;
		/* keep what fits of this record and of the buffer */
		size_t room = DNS_TXT_REC_MAX - textlen;
		size_t take = l < room ? l : room;
		if (take < l)
			too_long = true;
		if (fits && take > DNS_TXT_BUF - used) {
			fits = false;
		}
		if (fits) {
			memcpy(t->buf + used, m + off, take);
			used += take;
		}
		textlen += take;
		off += l;
	}
	if (!fits) {
		t->truncated = true;
		return true;
	}
	t->rr[t->n].off = start;
	t->rr[t->n].len = used - start;
	t->rr[t->n].too_long = too_long;
	t->n++;
	return true;
}

/* Does the work of dnsmsg_parse; false means DNS_TEMPFAIL. TXT is non-NULL
 * for a TXT query, whose records go there (A only gets their count). */
static bool parse(const unsigned char *m, size_t len, uint16_t type, struct dns_answer *a,
		  struct dns_txt *txt)
{
	if (!m || len < HDR_LEN || !supported(type) || (type == DNS_T_TXT) != (txt != NULL))
		return false;

	uint16_t flags = get16(m + 2);
	size_t qd = get16(m + 4), an = get16(m + 6), ns = get16(m + 8), ar = get16(m + 10);
	if (!(flags & FLAG_QR) || (flags & FLAG_TC) || OPCODE(flags) != 0)
		return false;
	unsigned rcode = RCODE(flags);
	if (rcode != RCODE_NOERROR && rcode != RCODE_NXDOMAIN)
		return false;
	/* Smallest possible entries: a root name and the fixed part. Refusing
	 * impossible counts up front keeps the walk below short for junk. */
	if (qd * (1 + Q_FIXED) + (an + ns + ar) * (1 + RR_FIXED) > len - HDR_LEN)
		return false;

	size_t off = HDR_LEN;
	char scratch[DNS_NAME_MAX];
	for (size_t i = 0; i < qd; i++) {
		if (!read_name(m, len, &off, len, scratch, NULL) || len - off < Q_FIXED)
			return false;
		off += Q_FIXED;
	}

	uint32_t min_ttl = UINT32_MAX, cname_ttl = UINT32_MAX;
	for (size_t i = 0; i < an; i++) {
		struct rr rr;
		if (!read_rr(m, len, &off, &rr))
			return false;
		if (rr.class != CLASS_IN)
			continue;
		if (rr.type == type && txt) {
			if (!read_txt(m, &rr, txt))
				return false;
			if (a->n < DNS_MAX_RR)
				a->n++;
			if (rr.ttl < min_ttl)
				min_ttl = rr.ttl;
		} else if (rr.type == type) {
			/* Records past the limit are still checked: a message
			 * broken anywhere is not trusted anywhere. */
			struct dns_rr spare;
			struct dns_rr *dst = a->n < DNS_MAX_RR ? &a->rr[a->n] : &spare;
			memset(dst, 0, sizeof *dst);
			if (!read_rdata(m, len, &rr, dst))
				return false;
			if (dst == &spare) {
				a->truncated = true;
				continue;
			}
			a->n++;
			if (rr.ttl < min_ttl)
				min_ttl = rr.ttl;
		} else if (rr.type == DNS_T_CNAME) {
			/* Only walked: the target is never used, and whatever
			 * its bytes, its records follow under it. */
			bool ignored;
			if (!rdata_name(m, len, rr.rdata, rr.rdata + rr.rdlen, scratch, &ignored))
				return false;
			if (rr.ttl < cname_ttl)
				cname_ttl = rr.ttl;
		}
	}

	bool have_soa = false;
	uint32_t neg_ttl = 0;
	for (size_t i = 0; i < ns; i++) {
		struct rr rr;
		if (!read_rr(m, len, &off, &rr))
			return false;
		if (!have_soa && rr.type == DNS_T_SOA && rr.class == CLASS_IN) {
			if (!soa_ttl(m, len, &rr, &neg_ttl))
				return false;
			have_soa = true;
		}
	}

	/* Not used, but walked so that counts and lengths the message cannot
	 * back make it malformed here too. */
	for (size_t i = 0; i < ar; i++) {
		struct rr rr;
		if (!read_rr(m, len, &off, &rr))
			return false;
	}

	if (rcode == RCODE_NOERROR && a->n > 0) {
		a->status = DNS_OK;
		a->ttl = min_ttl < cname_ttl ? min_ttl : cname_ttl;
		return true;
	}
	a->n = 0;
	a->truncated = false;
	memset(a->rr, 0, sizeof a->rr);
	a->status = rcode == RCODE_NXDOMAIN ? DNS_NXDOMAIN : DNS_NODATA;
	a->ttl = neg_ttl;
	return true;
}

void dnsmsg_parse(const unsigned char *msg, size_t len, uint16_t type, struct dns_answer *a)
{
	memset(a, 0, sizeof *a);
	a->type = type;
	if (!parse(msg, len, type, a, NULL)) {
		memset(a, 0, sizeof *a);
		a->type = type;
		a->status = DNS_TEMPFAIL;
	}
}

void dnsmsg_parse_txt(const unsigned char *msg, size_t len, struct dns_txt *t)
{
	struct dns_answer a;
	memset(&a, 0, offsetof(struct dns_answer, rr));
	memset(t, 0, offsetof(struct dns_txt, buf));
	if (!parse(msg, len, DNS_T_TXT, &a, t)) {
		memset(t, 0, offsetof(struct dns_txt, buf));
		t->status = DNS_TEMPFAIL;
		return;
	}
	t->status = a.status;
	t->ttl = a.ttl;
	if (t->status != DNS_OK) {
		t->n = 0;
		t->truncated = false;
	}
}

const char *dns_status_name(enum dns_status s)
{
	switch (s) {
	case DNS_OK:
		return "ok";
	case DNS_NXDOMAIN:
		return "nxdomain";
	case DNS_NODATA:
		return "nodata";
	case DNS_TEMPFAIL:
		return "tempfail";
	}
	return "unknown";
}

bool dns_null_mx(const struct dns_answer *a)
{
	return a->type == DNS_T_MX && a->status == DNS_OK && a->n == 1 && !a->rr[0].name[0] &&
	       !a->rr[0].bad_name;
}
