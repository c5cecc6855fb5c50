#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "dnsmsg.h"

/* Header flags as a response from a recursive resolver carries them. */
#define QR 0x8000u
#define TC 0x0200u
#define RD 0x0100u
#define RA 0x0080u
#define RESP (QR | RD | RA)
#define T_TXT 16
#define T_OPT 41
#define T_RRSIG 46

/*
 * A DNS message under construction. The builder writes what it is told,
 * including things no server should send: the tests need broken messages
 * as much as good ones.
 */
struct msg {
	unsigned char b[65535];   /* what a TCP answer can hold */
	size_t n;
	size_t rdlen_at;           /* where rr_begin left RDLENGTH to fill in */
};

static void put8(struct msg *m, unsigned v)
{
	assert_true(m->n < sizeof m->b);
	m->b[m->n++] = (unsigned char)v;
}

static void put16(struct msg *m, unsigned v)
{
	put8(m, (v >> 8) & 0xff);
	put8(m, v & 0xff);
}

static void put32(struct msg *m, uint32_t v)
{
	put16(m, v >> 16);
	put16(m, v & 0xffff);
}

static void putbytes(struct msg *m, const void *p, size_t len)
{
	assert_true(len <= sizeof m->b - m->n);
	memcpy(m->b + m->n, p, len);
	m->n += len;
}

static void set16(struct msg *m, size_t at, unsigned v)
{
	assert_true(at + 2 <= m->n);
	m->b[at] = (unsigned char)(v >> 8);
	m->b[at + 1] = (unsigned char)v;
}

static void hdr(struct msg *m, unsigned flags, unsigned qd, unsigned an, unsigned ns,
		unsigned ar)
{
	m->n = 0;
	put16(m, 0x1234);
	put16(m, flags);
	put16(m, qd);
	put16(m, an);
	put16(m, ns);
	put16(m, ar);
}

/* Labels of DOTTED ("" for none), no terminator. */
static void labels(struct msg *m, const char *dotted)
{
	while (*dotted) {
		const char *dot = strchr(dotted, '.');
		size_t l = dot ? (size_t)(dot - dotted) : strlen(dotted);
		put8(m, (unsigned)l);
		putbytes(m, dotted, l);
		dotted += l;
		if (*dotted == '.')
			dotted++;
	}
}

/* An uncompressed name; "" is the root. */
static void name(struct msg *m, const char *dotted)
{
	labels(m, dotted);
	put8(m, 0);
}

/* PREFIX's labels, then a pointer to TARGET. */
static void cname_ptr(struct msg *m, const char *prefix, size_t target)
{
	labels(m, prefix);
	put16(m, 0xc000 | (unsigned)target);
}

static void ptr(struct msg *m, size_t target)
{
	cname_ptr(m, "", target);
}

static void question(struct msg *m, const char *qname, unsigned type)
{
	name(m, qname);
	put16(m, type);
	put16(m, 1);
}

/* Fixed part after an owner name already written; RDLENGTH is filled in by
 * rr_end. */
static void rr_begin_class(struct msg *m, unsigned type, unsigned class, uint32_t ttl)
{
	put16(m, type);
	put16(m, class);
	put32(m, ttl);
	m->rdlen_at = m->n;
	put16(m, 0);
}

static void rr_begin(struct msg *m, unsigned type, uint32_t ttl)
{
	rr_begin_class(m, type, 1, ttl);
}

static void rr_end(struct msg *m)
{
	set16(m, m->rdlen_at, (unsigned)(m->n - m->rdlen_at - 2));
}

/* Owner: the question name at offset 12. */
static void rr_a(struct msg *m, uint32_t ttl, const char *text)
{
	unsigned char b[4];
	assert_int_equal(inet_pton(AF_INET, text, b), 1);
	ptr(m, 12);
	rr_begin(m, 1, ttl);
	putbytes(m, b, 4);
	rr_end(m);
}

static void rr_aaaa(struct msg *m, uint32_t ttl, const char *text)
{
	unsigned char b[16];
	assert_int_equal(inet_pton(AF_INET6, text, b), 1);
	ptr(m, 12);
	rr_begin(m, 28, ttl);
	putbytes(m, b, 16);
	rr_end(m);
}

static void rr_mx(struct msg *m, uint32_t ttl, unsigned pref, const char *exchange)
{
	ptr(m, 12);
	rr_begin(m, 15, ttl);
	put16(m, pref);
	name(m, exchange);
	rr_end(m);
}

static void rr_soa(struct msg *m, const char *owner, uint32_t ttl, uint32_t minimum)
{
	name(m, owner);
	rr_begin(m, 6, ttl);
	name(m, "ns1.example.com");
	name(m, "hostmaster.example.com");
	put32(m, 2024010101);
	put32(m, 7200);
	put32(m, 900);
	put32(m, 1209600);
	put32(m, minimum);
	rr_end(m);
}

static struct dns_answer ans;

/* Parses a copy of exactly M's bytes on the heap, so that ASan sees any read
 * past the end. */
static const struct dns_answer *parse_n(const struct msg *m, size_t len, uint16_t type)
{
	unsigned char *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	memcpy(copy, m->b, len);
	dnsmsg_parse(copy, len, type, &ans);
	free(copy);
	return &ans;
}

static const struct dns_answer *parse(const struct msg *m, uint16_t type)
{
	return parse_n(m, m->n, type);
}

static const char *addr(const struct ipaddr *a)
{
	static char buf[64];
	return ipaddr_str(a, buf, sizeof buf);
}

static void assert_tempfail(const struct msg *m, uint16_t type)
{
	const struct dns_answer *a = parse(m, type);
	assert_int_equal(a->status, DNS_TEMPFAIL);
	assert_int_equal(a->n, 0);
	assert_int_equal(a->ttl, 0);
	assert_false(a->truncated);
}

/* One record whose name was no host name: handed out as "" with bad_name,
 * the answer itself good. */
static void assert_bad_name(const struct msg *m, uint16_t type)
{
	const struct dns_answer *a = parse(m, type);
	assert_int_equal(a->status, DNS_OK);
	assert_int_equal(a->n, 1);
	assert_true(a->rr[0].bad_name);
	assert_string_equal(a->rr[0].name, "");
}

/* ---- good answers ------------------------------------------------------- */

static void build_mx(struct msg *m)
{
	hdr(m, RESP, 1, 3, 0, 0);
	question(m, "example.com", DNS_T_MX);
	/* exchange names compressed against the question, as servers do */
	size_t first;
	ptr(m, 12);
	rr_begin(m, DNS_T_MX, 3600);
	put16(m, 10);
	first = m->n;
	cname_ptr(m, "mx1", 12);
	rr_end(m);

	ptr(m, 12);
	rr_begin(m, DNS_T_MX, 600);
	put16(m, 5);
	cname_ptr(m, "MX0", 12);
	rr_end(m);

	/* pointer into the previous record's RDATA */
	ptr(m, 12);
	rr_begin(m, DNS_T_MX, 1200);
	put16(m, 20);
	cname_ptr(m, "backup", first);
	rr_end(m);
}

static void test_mx(void **state)
{
	(void)state;
	struct msg m;
	build_mx(&m);
	const struct dns_answer *a = parse(&m, DNS_T_MX);

	assert_int_equal(a->status, DNS_OK);
	assert_int_equal(a->type, DNS_T_MX);
	assert_int_equal(a->n, 3);
	assert_false(a->truncated);
	assert_int_equal(a->ttl, 600);
	assert_int_equal(a->rr[0].pref, 10);
	assert_string_equal(a->rr[0].name, "mx1.example.com");
	assert_int_equal(a->rr[1].pref, 5);
	assert_string_equal(a->rr[1].name, "mx0.example.com");
	assert_int_equal(a->rr[2].pref, 20);
	assert_string_equal(a->rr[2].name, "backup.mx1.example.com");
}

static void build_null_mx(struct msg *m)
{
	hdr(m, RESP, 1, 1, 0, 0);
	question(m, "nomail.example", DNS_T_MX);
	rr_mx(m, 300, 0, "");
}

static void test_null_mx(void **state)
{
	(void)state;
	struct msg m;
	build_null_mx(&m);
	const struct dns_answer *a = parse(&m, DNS_T_MX);

	assert_int_equal(a->status, DNS_OK);
	assert_int_equal(a->n, 1);
	assert_int_equal(a->rr[0].pref, 0);
	assert_string_equal(a->rr[0].name, "");
	assert_int_equal(a->ttl, 300);
}

static void build_a(struct msg *m)
{
	hdr(m, RESP, 1, 3, 0, 0);
	question(m, "mail.example.org", DNS_T_A);
	rr_a(m, 120, "192.0.2.1");
	rr_a(m, 60, "192.0.2.2");
	rr_a(m, 90, "198.51.100.255");
}

static void test_a(void **state)
{
	(void)state;
	struct msg m;
	build_a(&m);
	const struct dns_answer *a = parse(&m, DNS_T_A);

	assert_int_equal(a->status, DNS_OK);
	assert_int_equal(a->n, 3);
	assert_int_equal(a->ttl, 60);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(a->rr[i].addr.family, AF_INET);
	assert_string_equal(addr(&a->rr[0].addr), "192.0.2.1");
	assert_string_equal(addr(&a->rr[1].addr), "192.0.2.2");
	assert_string_equal(addr(&a->rr[2].addr), "198.51.100.255");
	assert_string_equal(a->rr[0].name, "");
}

static void build_aaaa(struct msg *m)
{
	hdr(m, RESP, 1, 3, 0, 1);
	question(m, "mail.example.org", DNS_T_AAAA);
	rr_aaaa(m, 500, "2001:db8::25");
	rr_aaaa(m, 400, "2001:db8:ffff::1:2");
	rr_aaaa(m, 450, "::ffff:192.0.2.7");
	/* EDNS OPT in the additional section, as c-ares passes it on */
	name(m, "");
	rr_begin_class(m, T_OPT, 1232, 0);
	rr_end(m);
}

static void test_aaaa(void **state)
{
	(void)state;
	struct msg m;
	build_aaaa(&m);
	const struct dns_answer *a = parse(&m, DNS_T_AAAA);

	assert_int_equal(a->status, DNS_OK);
	assert_int_equal(a->n, 3);
	assert_int_equal(a->ttl, 400);
	assert_int_equal(a->rr[0].addr.family, AF_INET6);
	assert_string_equal(addr(&a->rr[0].addr), "2001:db8::25");
	assert_int_equal(a->rr[1].addr.family, AF_INET6);
	assert_string_equal(addr(&a->rr[1].addr), "2001:db8:ffff::1:2");
	/* netaddr's convention: v4-mapped is the IPv4 address it carries */
	assert_int_equal(a->rr[2].addr.family, AF_INET);
	assert_string_equal(addr(&a->rr[2].addr), "192.0.2.7");
}

static void build_ptr(struct msg *m)
{
	hdr(m, RESP, 1, 1, 0, 0);
	question(m, "7.2.0.192.in-addr.arpa", DNS_T_PTR);
	ptr(m, 12);
	rr_begin(m, DNS_T_PTR, 86400);
	name(m, "Mail.Example.ORG");
	rr_end(m);
}

static void test_ptr(void **state)
{
	(void)state;
	struct msg m;
	build_ptr(&m);
	const struct dns_answer *a = parse(&m, DNS_T_PTR);

	assert_int_equal(a->status, DNS_OK);
	assert_int_equal(a->n, 1);
	assert_string_equal(a->rr[0].name, "mail.example.org");
	assert_int_equal(a->ttl, 86400);
}

static void build_cname_chain(struct msg *m)
{
	hdr(m, RESP, 1, 4, 0, 0);
	question(m, "www.example.com", DNS_T_A);
	ptr(m, 12);
	rr_begin(m, DNS_T_CNAME, 3000);
	size_t web = m->n;
	name(m, "web.example.net");
	rr_end(m);
	ptr(m, web);
	rr_begin(m, DNS_T_CNAME, 100);
	size_t srv = m->n;
	cname_ptr(m, "srv", web + 4);   /* srv.example.net */
	rr_end(m);
	for (int i = 0; i < 2; i++) {
		ptr(m, srv);
		rr_begin(m, DNS_T_A, 600);
		put32(m, 0xc0000201u + (uint32_t)i);
		rr_end(m);
	}
}

static void test_cname_chain(void **state)
{
	(void)state;
	struct msg m;
	build_cname_chain(&m);
	const struct dns_answer *a = parse(&m, DNS_T_A);

	assert_int_equal(a->status, DNS_OK);
	assert_int_equal(a->n, 2);
	assert_string_equal(addr(&a->rr[0].addr), "192.0.2.1");
	assert_string_equal(addr(&a->rr[1].addr), "192.0.2.2");
	/* the CNAMEs walked count for the TTL */
	assert_int_equal(a->ttl, 100);

	/* the same chain asked as AAAA: no AAAA at the end */
	build_cname_chain(&m);
	assert_int_equal(parse(&m, DNS_T_AAAA)->status, DNS_NODATA);
}

static void build_nxdomain(struct msg *m, uint32_t soa_ttl, uint32_t minimum)
{
	hdr(m, RESP | 3, 1, 0, 1, 0);
	question(m, "nope.example.com", DNS_T_MX);
	rr_soa(m, "example.com", soa_ttl, minimum);
}

static void test_nxdomain(void **state)
{
	(void)state;
	struct msg m;

	build_nxdomain(&m, 3600, 900);
	const struct dns_answer *a = parse(&m, DNS_T_MX);
	assert_int_equal(a->status, DNS_NXDOMAIN);
	assert_int_equal(a->n, 0);
	assert_int_equal(a->ttl, 900);

	build_nxdomain(&m, 60, 900);
	a = parse(&m, DNS_T_MX);
	assert_int_equal(a->status, DNS_NXDOMAIN);
	assert_int_equal(a->ttl, 60);

	/* without an SOA: nothing to cache by */
	hdr(&m, RESP | 3, 1, 0, 0, 0);
	question(&m, "nope.example.com", DNS_T_MX);
	a = parse(&m, DNS_T_MX);
	assert_int_equal(a->status, DNS_NXDOMAIN);
	assert_int_equal(a->ttl, 0);

	/* a CNAME to a name that does not exist (RFC 6604): NXDOMAIN */
	hdr(&m, RESP | 3, 1, 1, 1, 0);
	question(&m, "alias.example.com", DNS_T_A);
	ptr(&m, 12);
	rr_begin(&m, DNS_T_CNAME, 300);
	name(&m, "gone.example.net");
	rr_end(&m);
	rr_soa(&m, "example.net", 1800, 600);
	a = parse(&m, DNS_T_A);
	assert_int_equal(a->status, DNS_NXDOMAIN);
	assert_int_equal(a->ttl, 600);
}

static void build_nodata(struct msg *m)
{
	hdr(m, RESP, 1, 0, 1, 0);
	question(m, "example.com", DNS_T_AAAA);
	rr_soa(m, "example.com", 300, 3600);
}

static void test_nodata(void **state)
{
	(void)state;
	struct msg m;

	build_nodata(&m);
	const struct dns_answer *a = parse(&m, DNS_T_AAAA);
	assert_int_equal(a->status, DNS_NODATA);
	assert_int_equal(a->n, 0);
	assert_int_equal(a->ttl, 300);

	/* no SOA */
	hdr(&m, RESP, 1, 0, 0, 0);
	question(&m, "example.com", DNS_T_MX);
	a = parse(&m, DNS_T_MX);
	assert_int_equal(a->status, DNS_NODATA);
	assert_int_equal(a->ttl, 0);

	/* records of other types and of the asked type in another class do
	 * not count */
	hdr(&m, RESP, 1, 3, 1, 0);
	question(&m, "example.com", DNS_T_A);
	ptr(&m, 12);
	rr_begin(&m, T_TXT, 300);
	put8(&m, 2);
	putbytes(&m, "hi", 2);
	rr_end(&m);
	ptr(&m, 12);
	rr_begin_class(&m, DNS_T_A, 3 /* CH */, 300);
	put32(&m, 0x01020304);
	rr_end(&m);
	ptr(&m, 12);
	rr_begin(&m, T_RRSIG, 300);
	putbytes(&m, "\x00\x01\x02\x03\xc0\xff", 6);  /* opaque, not a name */
	rr_end(&m);
	rr_soa(&m, "example.com", 100000, 200000);
	a = parse(&m, DNS_T_A);
	assert_int_equal(a->status, DNS_NODATA);
	assert_int_equal(a->ttl, 86400);
}

static void test_rcodes(void **state)
{
	(void)state;
	struct msg m;

	for (unsigned rcode = 0; rcode < 16; rcode++) {
		build_a(&m);
		set16(&m, 2, RESP | rcode);
		const struct dns_answer *a = parse(&m, DNS_T_A);
		if (rcode == 0)
			assert_int_equal(a->status, DNS_OK);
		else if (rcode == 3)
			assert_int_equal(a->status, DNS_NXDOMAIN);
		else
			assert_int_equal(a->status, DNS_TEMPFAIL);
	}
	/* SERVFAIL and REFUSED as servers send them: no records at all */
	hdr(&m, RESP | 2, 1, 0, 0, 0);
	question(&m, "example.com", DNS_T_MX);
	assert_tempfail(&m, DNS_T_MX);
	hdr(&m, QR | RD | 5, 1, 0, 0, 0);
	question(&m, "example.com", DNS_T_MX);
	assert_tempfail(&m, DNS_T_MX);
}

static void test_header_flags(void **state)
{
	(void)state;
	struct msg m;

	/* truncated (TC): not trusted even with records in it */
	build_a(&m);
	set16(&m, 2, RESP | TC);
	assert_tempfail(&m, DNS_T_A);
	build_nxdomain(&m, 60, 60);
	set16(&m, 2, RESP | TC | 3);
	assert_tempfail(&m, DNS_T_MX);

	/* a query, not a response */
	build_a(&m);
	set16(&m, 2, RD);
	assert_tempfail(&m, DNS_T_A);

	/* not a standard query (opcode 2, STATUS) */
	build_a(&m);
	set16(&m, 2, RESP | (2u << 11));
	assert_tempfail(&m, DNS_T_A);

	/* AA and AD do not matter */
	build_a(&m);
	set16(&m, 2, RESP | 0x0400 | 0x0020);
	assert_int_equal(parse(&m, DNS_T_A)->status, DNS_OK);
}

static void test_odd_but_fine(void **state)
{
	(void)state;
	struct msg m;

	/* no question section */
	hdr(&m, RESP, 0, 1, 0, 0);
	name(&m, "example.com");
	rr_begin(&m, DNS_T_A, 10);
	put32(&m, 0x0a000001);
	rr_end(&m);
	const struct dns_answer *a = parse(&m, DNS_T_A);
	assert_int_equal(a->status, DNS_OK);
	assert_string_equal(addr(&a->rr[0].addr), "10.0.0.1");

	/* bytes after the last section are ignored */
	build_a(&m);
	putbytes(&m, "\0\0\0junk", 7);
	assert_int_equal(parse(&m, DNS_T_A)->status, DNS_OK);

	/* names with '-' and '_' are host names; '/' (RFC 2317) is fine in
	 * the question and a CNAME, which are only walked, not in a PTR */
	hdr(&m, RESP, 1, 2, 0, 0);
	question(&m, "1.0/25.2.0.192.in-addr.arpa", DNS_T_PTR);
	ptr(&m, 12);
	rr_begin(&m, DNS_T_CNAME, 10);
	name(&m, "1.0/24.2.0.192.in-addr.arpa");
	rr_end(&m);
	ptr(&m, 12);
	rr_begin(&m, DNS_T_PTR, 10);
	name(&m, "_x-1.0-25.example");
	rr_end(&m);
	a = parse(&m, DNS_T_PTR);
	assert_int_equal(a->status, DNS_OK);
	assert_false(a->rr[0].bad_name);
	assert_string_equal(a->rr[0].name, "_x-1.0-25.example");
	hdr(&m, RESP, 1, 1, 0, 0);
	question(&m, "1.0/25.2.0.192.in-addr.arpa", DNS_T_PTR);
	ptr(&m, 12);
	rr_begin(&m, DNS_T_PTR, 10);
	name(&m, "x-1.0/25.example");
	rr_end(&m);
	assert_bad_name(&m, DNS_T_PTR);

	/* the SOA's RNAME may carry a dot in its first label (a mailbox):
	 * only names handed out have to be plain */
	hdr(&m, RESP | 3, 1, 0, 1, 0);
	question(&m, "nope.example.com", DNS_T_MX);
	name(&m, "example.com");
	rr_begin(&m, DNS_T_SOA, 600);
	name(&m, "ns1.example.com");
	put8(&m, 8);
	putbytes(&m, "john.doe", 8);
	name(&m, "example.com");
	for (int i = 0; i < 5; i++)
		put32(&m, 300);
	rr_end(&m);
	a = parse(&m, DNS_T_MX);
	assert_int_equal(a->status, DNS_NXDOMAIN);
	assert_int_equal(a->ttl, 300);
}

static void test_junk(void **state)
{
	(void)state;
	struct msg m;

	dnsmsg_parse(NULL, 0, DNS_T_A, &ans);
	assert_int_equal(ans.status, DNS_TEMPFAIL);
	assert_int_equal(ans.type, DNS_T_A);
	m.n = 0;
	assert_tempfail(&m, DNS_T_A);

	/* a type this parser cannot return records for */
	build_a(&m);
	assert_tempfail(&m, T_TXT);
	assert_tempfail(&m, DNS_T_CNAME);

	/* more answers announced than there are */
	build_a(&m);
	set16(&m, 6, 4);
	assert_tempfail(&m, DNS_T_A);
	build_a(&m);
	set16(&m, 6, 0xffff);
	assert_tempfail(&m, DNS_T_A);
	build_a(&m);
	set16(&m, 10, 1);
	assert_tempfail(&m, DNS_T_A);
	build_nodata(&m);
	set16(&m, 8, 2);
	assert_tempfail(&m, DNS_T_AAAA);
	build_a(&m);
	set16(&m, 4, 2);
	assert_tempfail(&m, DNS_T_A);

	/* RDLENGTH past the end */
	build_a(&m);
	set16(&m, m.n - 6, 5);
	assert_tempfail(&m, DNS_T_A);

	/* extended label type (0x40) */
	hdr(&m, RESP, 1, 0, 0, 0);
	put8(&m, 0x41);
	put8(&m, 'x');
	put8(&m, 0);
	put32(&m, 0x00010001);
	assert_tempfail(&m, DNS_T_A);

	/* an SOA whose fixed fields are two bytes short, then one too long */
	{
		struct msg s;
		hdr(&s, RESP | 3, 1, 0, 1, 0);
		question(&s, "nope.example.com", DNS_T_MX);
		name(&s, "example.com");
		rr_begin(&s, DNS_T_SOA, 60);
		name(&s, "ns1.example.com");
		name(&s, "hostmaster.example.com");
		for (int i = 0; i < 4; i++)
			put32(&s, 60);
		put16(&s, 0);
		rr_end(&s);
		assert_tempfail(&s, DNS_T_MX);
		s.n -= 2;
		put32(&s, 60);
		put8(&s, 0);
		rr_end(&s);
		assert_tempfail(&s, DNS_T_MX);
	}
}

/* ---- compression pointers ----------------------------------------------- */

/* An MX answer for "example.com" whose exchange WRITE writes, told the
 * offset it starts at. */
static void mx_with(struct msg *m, void (*write)(struct msg *, size_t at))
{
	hdr(m, RESP, 1, 1, 0, 0);
	question(m, "example.com", DNS_T_MX);
	ptr(m, 12);
	rr_begin(m, DNS_T_MX, 60);
	put16(m, 10);
	write(m, m->n);
	rr_end(m);
}

static void w_forward(struct msg *m, size_t at)
{
	put16(m, 0xc000 | (unsigned)(at + 2));
	name(m, "mx.example.com");
}

static void w_self(struct msg *m, size_t at)
{
	put16(m, 0xc000 | (unsigned)at);
}

static void w_loop(struct msg *m, size_t at)
{
	/* "mx" then back to its own start: mx.mx.mx... */
	cname_ptr(m, "mx", at);
}

static void w_header(struct msg *m, size_t at)
{
	(void)at;
	ptr(m, 4);
}

static void w_good(struct msg *m, size_t at)
{
	(void)at;
	cname_ptr(m, "mx", 12);
}

static void test_pointers(void **state)
{
	(void)state;
	struct msg m;

	mx_with(&m, w_good);
	assert_int_equal(parse(&m, DNS_T_MX)->status, DNS_OK);
	assert_string_equal(ans.rr[0].name, "mx.example.com");

	mx_with(&m, w_forward);
	assert_tempfail(&m, DNS_T_MX);

	/* forward to a well-formed name outside the RDATA (a glue record's
	 * owner), so only the direction is wrong */
	hdr(&m, RESP, 1, 1, 0, 1);
	question(&m, "example.com", DNS_T_MX);
	ptr(&m, 12);
	rr_begin(&m, DNS_T_MX, 60);
	put16(&m, 10);
	size_t fwd = m.n;
	ptr(&m, 0);
	rr_end(&m);
	set16(&m, fwd, 0xc000 | (unsigned)m.n);
	name(&m, "mx.example.com");
	rr_begin(&m, DNS_T_A, 60);
	put32(&m, 0xc0000219u);
	rr_end(&m);
	assert_tempfail(&m, DNS_T_MX);
	mx_with(&m, w_self);
	assert_tempfail(&m, DNS_T_MX);
	mx_with(&m, w_loop);
	assert_tempfail(&m, DNS_T_MX);
	mx_with(&m, w_header);
	assert_tempfail(&m, DNS_T_MX);

	/* a pointer in the question pointing at itself */
	hdr(&m, RESP, 1, 0, 0, 0);
	ptr(&m, 12);
	put32(&m, 0x000f0001);
	assert_tempfail(&m, DNS_T_MX);

	/*
	 * Two pointers, each backwards from where it sits, that still make a
	 * loop: the owner at P1 says "a" then jumps to P0 < P1; at P0 the
	 * labels run "b" and a pointer to P1 + 0, a target that is before the
	 * second pointer but not before where the name's run started.
	 */
	hdr(&m, RESP, 1, 2, 0, 0);
	question(&m, "example.com", DNS_T_MX);
	ptr(&m, 12);
	rr_begin(&m, T_TXT, 60);
	size_t p0 = m.n;
	put8(&m, 1);
	put8(&m, 'b');
	size_t fix = m.n;
	put16(&m, 0);
	rr_end(&m);
	ptr(&m, 12);
	rr_begin(&m, DNS_T_MX, 60);
	put16(&m, 1);
	size_t p1 = m.n;
	cname_ptr(&m, "a", p0);
	rr_end(&m);
	set16(&m, fix, 0xc000 | (unsigned)p1);
	assert_tempfail(&m, DNS_T_MX);
	/* the same layout with the inner pointer going to the question */
	set16(&m, fix, 0xc000 | 12);
	assert_int_equal(parse(&m, DNS_T_MX)->status, DNS_OK);
	assert_string_equal(ans.rr[0].name, "a.b.example.com");

	/* a pointer whose second byte is past the end of the RDATA */
	hdr(&m, RESP, 1, 1, 0, 0);
	question(&m, "example.com", DNS_T_PTR);
	ptr(&m, 12);
	rr_begin(&m, DNS_T_PTR, 60);
	put8(&m, 0xc0);
	rr_end(&m);
	put8(&m, 12);
	assert_tempfail(&m, DNS_T_PTR);
}

/* An MX whose exchange is reached through a chain of JUMPS pointers (each
 * to the one before it) ending in "mx.example". */
static void build_jumps(struct msg *m, unsigned jumps)
{
	hdr(m, RESP, 1, 2, 0, 0);
	question(m, "example.com", DNS_T_MX);
	/* the chain lives in an unrelated record's RDATA */
	ptr(m, 12);
	rr_begin(m, T_TXT, 60);
	size_t prev = m->n;
	name(m, "mx.example");
	for (unsigned i = 1; i < jumps; i++) {
		size_t here = m->n;
		ptr(m, prev);
		prev = here;
	}
	rr_end(m);
	ptr(m, 12);
	rr_begin(m, DNS_T_MX, 60);
	put16(m, 7);
	ptr(m, prev);
	rr_end(m);
}

static void test_jump_limit(void **state)
{
	(void)state;
	struct msg m;

	build_jumps(&m, 64);
	const struct dns_answer *a = parse(&m, DNS_T_MX);
	assert_int_equal(a->status, DNS_OK);
	assert_string_equal(a->rr[0].name, "mx.example");

	build_jumps(&m, 65);
	assert_tempfail(&m, DNS_T_MX);
}

/* ---- names -------------------------------------------------------------- */

static void ptr_answer_raw(struct msg *m, const unsigned char *rdata, size_t len)
{
	hdr(m, RESP, 1, 1, 0, 0);
	question(m, "7.2.0.192.in-addr.arpa", DNS_T_PTR);
	ptr(m, 12);
	rr_begin(m, DNS_T_PTR, 60);
	putbytes(m, rdata, len);
	rr_end(m);
}

/* A name of LABELS labels of LEN bytes each, the last one LAST bytes. */
static size_t long_name(unsigned char *out, size_t cap, unsigned nlabels, unsigned len,
			unsigned last)
{
	size_t n = 0;
	for (unsigned i = 0; i < nlabels; i++) {
		unsigned l = i + 1 == nlabels ? last : len;
		assert_true(n + 1 + l + 1 <= cap);
		out[n++] = (unsigned char)l;
		memset(out + n, 'a' + (int)(i % 26), l);
		n += l;
	}
	out[n++] = 0;
	return n;
}

static void test_label_length(void **state)
{
	(void)state;
	struct msg m;
	unsigned char rd[300];
	size_t n;

	n = long_name(rd, sizeof rd, 2, 63, 3);
	ptr_answer_raw(&m, rd, n);
	assert_int_equal(parse(&m, DNS_T_PTR)->status, DNS_OK);
	assert_int_equal(strlen(ans.rr[0].name), 63 + 1 + 3);

	n = long_name(rd, sizeof rd, 2, 64, 3);
	ptr_answer_raw(&m, rd, n);
	assert_tempfail(&m, DNS_T_PTR);
}

static void test_name_length(void **state)
{
	(void)state;
	struct msg m;
	unsigned char rd[300];
	size_t n;

	/* 63+1+63+1+63+1+61 = 253 */
	n = long_name(rd, sizeof rd, 4, 63, 61);
	ptr_answer_raw(&m, rd, n);
	const struct dns_answer *a = parse(&m, DNS_T_PTR);
	assert_int_equal(a->status, DNS_OK);
	assert_false(a->rr[0].bad_name);
	assert_int_equal(strlen(a->rr[0].name), 253);

	/* a target too long is no usable name, not a broken message */
	n = long_name(rd, sizeof rd, 4, 63, 62);
	ptr_answer_raw(&m, rd, n);
	assert_bad_name(&m, DNS_T_PTR);

	/* 127 one-byte labels: 253; 128: 255 */
	n = long_name(rd, sizeof rd, 127, 1, 1);
	ptr_answer_raw(&m, rd, n);
	assert_int_equal(parse(&m, DNS_T_PTR)->status, DNS_OK);
	n = long_name(rd, sizeof rd, 128, 1, 1);
	ptr_answer_raw(&m, rd, n);
	assert_bad_name(&m, DNS_T_PTR);

	/* too long only once the compressed suffix is added: the question
	 * (22 bytes as text) plus 4 x 57 + 4 dots = 254 */
	hdr(&m, RESP, 1, 1, 0, 0);
	question(&m, "7.2.0.192.in-addr.arpa", DNS_T_PTR);
	ptr(&m, 12);
	rr_begin(&m, DNS_T_PTR, 60);
	for (int i = 0; i < 4; i++) {
		put8(&m, 57);
		for (int j = 0; j < 57; j++)
			put8(&m, 'q');
	}
	ptr(&m, 12);
	rr_end(&m);
	assert_bad_name(&m, DNS_T_PTR);

	/* in a name that is only walked (owner, question) the message is
	 * malformed: no server of ours sends one */
	hdr(&m, RESP, 1, 0, 0, 0);
	n = long_name(rd, sizeof rd, 4, 63, 62);
	putbytes(&m, rd, n);
	put32(&m, 0x000c0001);
	assert_tempfail(&m, DNS_T_PTR);
}

static void test_case_folded(void **state)
{
	(void)state;
	struct msg m;

	hdr(&m, RESP, 1, 2, 0, 0);
	question(&m, "EXAMPLE.COM", DNS_T_MX);
	rr_mx(&m, 60, 10, "Mx.Example.COM");
	ptr(&m, 12);
	rr_begin(&m, DNS_T_MX, 60);
	put16(&m, 20);
	cname_ptr(&m, "ALT-Z", 12);
	rr_end(&m);
	const struct dns_answer *a = parse(&m, DNS_T_MX);
	assert_int_equal(a->status, DNS_OK);
	assert_string_equal(a->rr[0].name, "mx.example.com");
	assert_string_equal(a->rr[1].name, "alt-z.example.com");
}

static void test_unplain_labels(void **state)
{
	(void)state;
	struct msg m;
	static const unsigned char bad[] = { '.', '\0', ' ', 0x7f, 0x1b, 0xc3, 0x80, '\n', '\\',
					     '!', '/', '*' };

	for (size_t i = 0; i < sizeof bad; i++) {
		unsigned char rd[] = { 3, 'm', 'x', 'x', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0 };
		rd[2] = bad[i];
		ptr_answer_raw(&m, rd, sizeof rd);
		assert_bad_name(&m, DNS_T_PTR);

		hdr(&m, RESP, 1, 1, 0, 0);
		question(&m, "example", DNS_T_MX);
		ptr(&m, 12);
		rr_begin(&m, DNS_T_MX, 60);
		put16(&m, 10);
		putbytes(&m, rd, sizeof rd);
		rr_end(&m);
		assert_bad_name(&m, DNS_T_MX);
		assert_int_equal(ans.rr[0].pref, 10);
		assert_false(dns_null_mx(&ans));
	}
	/* the bad byte reached through a pointer into the question */
	hdr(&m, RESP, 1, 1, 0, 0);
	put8(&m, 4);
	putbytes(&m, "a.b", 3);
	put8(&m, 'c');
	name(&m, "example");
	put32(&m, 0x000f0001);
	ptr(&m, 12);
	rr_begin(&m, DNS_T_MX, 60);
	put16(&m, 10);
	ptr(&m, 12);
	rr_end(&m);
	assert_bad_name(&m, DNS_T_MX);
}

/* The trigger of a heap corruption once: 62 x 'a' and a backslash, which
 * a name-to-text step would turn into an escape and c-ares into a label
 * longer than 63 bytes. Also: names that Postfix refuses as host names. */
static void test_hostile_targets(void **state)
{
	(void)state;
	struct msg m;
	unsigned char rd[80];
	rd[0] = 63;
	memset(rd + 1, 'a', 62);
	rd[63] = '\\';
	rd[64] = 3;
	memcpy(rd + 65, "net", 3);
	rd[68] = 0;
	ptr_answer_raw(&m, rd, 69);
	assert_bad_name(&m, DNS_T_PTR);

	static const char *const refused[] = { "-a.example", "a-.example", "1.2.3.4", "42" };
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		size_t n = 0;
		const char *p = refused[i];
		while (*p) {
			const char *dot = strchr(p, '.');
			size_t l = dot ? (size_t)(dot - p) : strlen(p);
			rd[n++] = (unsigned char)l;
			memcpy(rd + n, p, l);
			n += l;
			p += l + (dot ? 1 : 0);
		}
		rd[n++] = 0;
		ptr_answer_raw(&m, rd, n);
		assert_bad_name(&m, DNS_T_PTR);
	}

	/* a PTR to the root is no name either; an MX to it is the null MX */
	rd[0] = 0;
	ptr_answer_raw(&m, rd, 1);
	assert_bad_name(&m, DNS_T_PTR);
	build_null_mx(&m);
	assert_true(dns_null_mx(parse(&m, DNS_T_MX)));
	assert_false(ans.rr[0].bad_name);
}

/* ---- RDATA lengths ------------------------------------------------------ */

static void one_rr(struct msg *m, unsigned type, const void *rdata, size_t len)
{
	hdr(m, RESP, 1, 1, 0, 0);
	question(m, "example.com", type);
	ptr(m, 12);
	rr_begin(m, type, 60);
	putbytes(m, rdata, len);
	rr_end(m);
}

static void test_rdlength(void **state)
{
	(void)state;
	struct msg m;
	static const unsigned char z[20];
	static const unsigned char mx[] = { 0, 10, 2, 'm', 'x', 0xc0, 12, 0 };
	static const unsigned char ptrname[] = { 2, 'm', 'x', 0, 0 };

	one_rr(&m, DNS_T_A, z, 4);
	assert_int_equal(parse(&m, DNS_T_A)->status, DNS_OK);
	for (size_t len = 0; len < sizeof z; len++) {
		if (len == 4)
			continue;
		one_rr(&m, DNS_T_A, z, len);
		assert_tempfail(&m, DNS_T_A);
	}
	one_rr(&m, DNS_T_AAAA, z, 16);
	assert_int_equal(parse(&m, DNS_T_AAAA)->status, DNS_OK);
	assert_string_equal(addr(&ans.rr[0].addr), "::");
	for (size_t len = 0; len < sizeof z; len++) {
		if (len == 16)
			continue;
		one_rr(&m, DNS_T_AAAA, z, len);
		assert_tempfail(&m, DNS_T_AAAA);
	}

	/* MX: the name must fill the RDATA exactly */
	one_rr(&m, DNS_T_MX, mx, sizeof mx - 1);
	assert_int_equal(parse(&m, DNS_T_MX)->status, DNS_OK);
	assert_string_equal(ans.rr[0].name, "mx.example.com");
	one_rr(&m, DNS_T_MX, mx, sizeof mx);           /* one byte left over */
	assert_tempfail(&m, DNS_T_MX);
	for (size_t len = 0; len < sizeof mx - 1; len++) {
		one_rr(&m, DNS_T_MX, mx, len);
		/* keep the bytes after the RDATA as they were so that the name
		 * would go on there if the parser looked */
		putbytes(&m, mx + len, sizeof mx - 1 - len);
		assert_tempfail(&m, DNS_T_MX);
	}

	one_rr(&m, DNS_T_PTR, ptrname, sizeof ptrname - 1);
	assert_int_equal(parse(&m, DNS_T_PTR)->status, DNS_OK);
	one_rr(&m, DNS_T_PTR, ptrname, sizeof ptrname);
	assert_tempfail(&m, DNS_T_PTR);
	one_rr(&m, DNS_T_PTR, ptrname, 0);
	assert_tempfail(&m, DNS_T_PTR);

	/* CNAME too */
	hdr(&m, RESP, 1, 2, 0, 0);
	question(&m, "www.example.com", DNS_T_A);
	ptr(&m, 12);
	rr_begin(&m, DNS_T_CNAME, 60);
	name(&m, "web.example.com");
	put8(&m, 0);
	rr_end(&m);
	rr_a(&m, 60, "192.0.2.1");
	assert_tempfail(&m, DNS_T_A);
}

/* ---- every prefix of good messages -------------------------------------- */

struct sample {
	void (*build)(struct msg *);
	uint16_t type;
	enum dns_status want;
};

static void build_nx_sample(struct msg *m)
{
	build_nxdomain(m, 3600, 900);
}

static void build_jumps_sample(struct msg *m)
{
	build_jumps(m, 10);
}

static const struct sample samples[] = {
	{ build_mx, DNS_T_MX, DNS_OK },
	{ build_null_mx, DNS_T_MX, DNS_OK },
	{ build_a, DNS_T_A, DNS_OK },
	{ build_aaaa, DNS_T_AAAA, DNS_OK },
	{ build_ptr, DNS_T_PTR, DNS_OK },
	{ build_cname_chain, DNS_T_A, DNS_OK },
	{ build_nx_sample, DNS_T_MX, DNS_NXDOMAIN },
	{ build_nodata, DNS_T_AAAA, DNS_NODATA },
	{ build_jumps_sample, DNS_T_MX, DNS_OK },
};

static void test_prefixes(void **state)
{
	(void)state;
	struct msg m;

	for (size_t s = 0; s < sizeof samples / sizeof samples[0]; s++) {
		samples[s].build(&m);
		for (size_t len = 0; len < m.n; len++) {
			const struct dns_answer *a = parse_n(&m, len, samples[s].type);
			if (a->status != DNS_TEMPFAIL)
				fail_msg("sample %zu cut at %zu of %zu: %s", s, len, m.n,
					 dns_status_name(a->status));
			assert_int_equal(a->n, 0);
		}
		assert_int_equal(parse(&m, samples[s].type)->status, samples[s].want);
	}
}

/* ---- limits ------------------------------------------------------------- */

static void test_max_rr(void **state)
{
	(void)state;
	struct msg m;
	char text[32];

	hdr(&m, RESP, 1, DNS_MAX_RR, 0, 0);
	question(&m, "many.example", DNS_T_A);
	for (unsigned i = 0; i < DNS_MAX_RR; i++) {
		snprintf(text, sizeof text, "10.0.0.%u", i);
		rr_a(&m, 1000 - i, text);
	}
	const struct dns_answer *a = parse(&m, DNS_T_A);
	assert_int_equal(a->status, DNS_OK);
	assert_int_equal(a->n, DNS_MAX_RR);
	assert_false(a->truncated);
	assert_int_equal(a->ttl, 1000 - (DNS_MAX_RR - 1));

	/* ten more, with smaller TTLs that must not count */
	hdr(&m, RESP, 1, DNS_MAX_RR + 10, 0, 0);
	question(&m, "many.example", DNS_T_A);
	for (unsigned i = 0; i < DNS_MAX_RR + 10; i++) {
		snprintf(text, sizeof text, "10.0.0.%u", i);
		rr_a(&m, 1000 - i, text);
	}
	a = parse(&m, DNS_T_A);
	assert_int_equal(a->status, DNS_OK);
	assert_int_equal(a->n, DNS_MAX_RR);
	assert_true(a->truncated);
	assert_int_equal(a->ttl, 1000 - (DNS_MAX_RR - 1));
	assert_string_equal(addr(&a->rr[DNS_MAX_RR - 1].addr), "10.0.0.31");

	/* a broken record past the limit still breaks the message */
	hdr(&m, RESP, 1, DNS_MAX_RR + 1, 0, 0);
	question(&m, "many.example", DNS_T_A);
	for (unsigned i = 0; i < DNS_MAX_RR; i++)
		rr_a(&m, 60, "10.0.0.1");
	ptr(&m, 12);
	rr_begin(&m, DNS_T_A, 60);
	putbytes(&m, "\1\2\3", 3);
	rr_end(&m);
	assert_tempfail(&m, DNS_T_A);
}

static void test_ttl(void **state)
{
	(void)state;
	struct msg m;

	hdr(&m, RESP, 1, 1, 0, 0);
	question(&m, "example.com", DNS_T_A);
	rr_a(&m, 1000000, "192.0.2.1");
	assert_int_equal(parse(&m, DNS_T_A)->ttl, 86400);

	hdr(&m, RESP, 1, 1, 0, 0);
	question(&m, "example.com", DNS_T_A);
	rr_a(&m, 86401, "192.0.2.1");
	assert_int_equal(parse(&m, DNS_T_A)->ttl, 86400);

	hdr(&m, RESP, 1, 1, 0, 0);
	question(&m, "example.com", DNS_T_A);
	rr_a(&m, 0, "192.0.2.1");
	assert_int_equal(parse(&m, DNS_T_A)->status, DNS_OK);
	assert_int_equal(ans.ttl, 0);

	/* RFC 2181: the top bit set means zero */
	hdr(&m, RESP, 1, 1, 0, 0);
	question(&m, "example.com", DNS_T_A);
	rr_a(&m, 0x80000000u, "192.0.2.1");
	assert_int_equal(parse(&m, DNS_T_A)->ttl, 0);
	hdr(&m, RESP, 1, 1, 0, 0);
	question(&m, "example.com", DNS_T_A);
	rr_a(&m, 0x7fffffffu, "192.0.2.1");
	assert_int_equal(parse(&m, DNS_T_A)->ttl, 86400);

	/* negative TTLs too */
	build_nxdomain(&m, 0xffffffffu, 0xffffffffu);
	assert_int_equal(parse(&m, DNS_T_MX)->ttl, 0);
	build_nxdomain(&m, 999999, 604800);
	assert_int_equal(parse(&m, DNS_T_MX)->ttl, 86400);
	build_nxdomain(&m, 999999, 3);
	assert_int_equal(parse(&m, DNS_T_MX)->ttl, 3);
}

static void test_status_name(void **state)
{
	(void)state;
	assert_string_equal(dns_status_name(DNS_OK), "ok");
	assert_string_equal(dns_status_name(DNS_NXDOMAIN), "nxdomain");
	assert_string_equal(dns_status_name(DNS_NODATA), "nodata");
	assert_string_equal(dns_status_name(DNS_TEMPFAIL), "tempfail");
}

/* ---- fuzz --------------------------------------------------------------- */

static uint64_t rng_state;

static uint32_t rnd(void)
{
	/* xorshift64*: fixed seed, so a failure can be replayed */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

static void mutate(struct msg *m)
{
	unsigned k = 1 + rnd() % 4;

	for (unsigned i = 0; i < k && m->n > 0; i++) {
		size_t at = rnd() % m->n;
		switch (rnd() % 8) {
		case 0:                 /* flip a bit */
			m->b[at] ^= (unsigned char)(1u << (rnd() % 8));
			break;
		case 1:                 /* any byte */
			m->b[at] = (unsigned char)rnd();
			break;
		case 2:                 /* a pointer somewhere */
			if (at + 1 < m->n) {
				unsigned t = rnd() % (m->n + 16);
				m->b[at] = (unsigned char)(0xc0 | (t >> 8));
				m->b[at + 1] = (unsigned char)t;
			}
			break;
		case 3:                 /* cut */
			m->n = at;
			break;
		case 4:                 /* insert a byte */
			if (m->n < sizeof m->b) {
				memmove(m->b + at + 1, m->b + at, m->n - at);
				m->b[at] = (unsigned char)rnd();
				m->n++;
			}
			break;
		case 5:                 /* delete a byte */
			memmove(m->b + at, m->b + at + 1, m->n - at - 1);
			m->n--;
			break;
		case 6:                 /* a count in the header */
			if (m->n >= 12)
				m->b[4 + 2 * (rnd() % 4) + 1] = (unsigned char)(rnd() % 8);
			break;
		default:                /* a length-looking byte */
			m->b[at] = (unsigned char)(rnd() % 70);
			break;
		}
	}
}

static void check_invariants(const struct dns_answer *a, uint16_t type)
{
	assert_int_equal(a->type, type);
	assert_true(a->ttl <= 86400);
	assert_true(a->n <= DNS_MAX_RR);
	if (a->status != DNS_OK) {
		assert_int_equal(a->n, 0);
		assert_false(a->truncated);
		return;
	}
	assert_true(a->n > 0);
	for (size_t i = 0; i < a->n; i++) {
		const char *s = a->rr[i].name;
		size_t len = strnlen(s, DNS_NAME_MAX);
		assert_true(len < DNS_NAME_MAX);
		for (size_t j = 0; j < len; j++) {
			unsigned char c = (unsigned char)s[j];
			assert_true(c > 0x20 && c < 0x7f);
			assert_false(c >= 'A' && c <= 'Z');
			if (c == '.')
				assert_true(j > 0 && j + 1 < len && s[j + 1] != '.');
		}
		if (type == DNS_T_A)
			assert_int_equal(a->rr[i].addr.family, AF_INET);
		if (type == DNS_T_AAAA)
			assert_true(a->rr[i].addr.family == AF_INET ||
				    a->rr[i].addr.family == AF_INET6);
	}
}

static void test_fuzz(void **state)
{
	(void)state;
	static const uint16_t types[] = { DNS_T_A, DNS_T_AAAA, DNS_T_MX, DNS_T_PTR };
	struct msg m;
	unsigned counts[4] = { 0 };
	const char *seed = getenv("DNSMSG_FUZZ_SEED");

	rng_state = seed ? strtoull(seed, NULL, 0) : 0x9e3779b97f4a7c15ull;
	if (rng_state == 0)
		rng_state = 1;
	for (unsigned iter = 0; iter < 100000; iter++) {
		const struct sample *s = &samples[rnd() % (sizeof samples / sizeof samples[0])];
		s->build(&m);
		mutate(&m);
		/* mostly the type the message answers, sometimes another */
		uint16_t type = rnd() % 8 ? s->type : types[rnd() % 4];
		const struct dns_answer *a = parse(&m, type);
		assert_true(a->status <= DNS_TEMPFAIL);
		counts[a->status]++;
		check_invariants(a, type);
	}
	/* the mutations should reach both sides, or the loop tests little */
	assert_true(counts[DNS_OK] > 1000);
	assert_true(counts[DNS_TEMPFAIL] > 1000);
}

/* ---- TXT (SPF records) ------------------------------------------------- */

static struct dns_txt txt;

static const struct dns_txt *parse_txt(const struct msg *m)
{
	unsigned char *copy = malloc(m->n ? m->n : 1);
	assert_non_null(copy);
	memcpy(copy, m->b, m->n);
	dnsmsg_parse_txt(copy, m->n, &txt);
	free(copy);
	return &txt;
}

/* One TXT record of the given character-strings (NULL-terminated). */
static void rr_txt(struct msg *m, const char *const *strings)
{
	ptr(m, 12);
	rr_begin(m, T_TXT, 300);
	for (; *strings; strings++) {
		put8(m, (unsigned)strlen(*strings));
		putbytes(m, *strings, strlen(*strings));
	}
	rr_end(m);
}

static bool txt_is(const struct dns_txt *t, size_t i, const char *want)
{
	return t->rr[i].len == strlen(want) && memcmp(t->buf + t->rr[i].off, want, t->rr[i].len) == 0;
}

static void test_txt(void **state)
{
	(void)state;
	struct msg m;
	static const char *const spf[] = { "v=spf1 ip4:192.0.2.0/24", " -all", NULL };
	static const char *const other[] = { "google-site-verification=x", NULL };
	static const char *const empty[] = { NULL };

	/* character-strings concatenated without a separator (RFC 7208 3.3) */
	hdr(&m, RESP, 1, 3, 0, 0);
	question(&m, "example.com", T_TXT);
	rr_txt(&m, spf);
	rr_txt(&m, other);
	rr_txt(&m, empty);
	const struct dns_txt *t = parse_txt(&m);
	assert_int_equal(t->status, DNS_OK);
	assert_int_equal(t->ttl, 300);
	assert_int_equal(t->n, 3);
	assert_false(t->truncated);
	assert_true(txt_is(t, 0, "v=spf1 ip4:192.0.2.0/24 -all"));
	assert_true(txt_is(t, 1, "google-site-verification=x"));
	assert_true(txt_is(t, 2, ""));

	/* a string longer than its RDATA: the message is broken */
	hdr(&m, RESP, 1, 1, 0, 0);
	question(&m, "example.com", T_TXT);
	ptr(&m, 12);
	rr_begin(&m, T_TXT, 300);
	put8(&m, 10);
	putbytes(&m, "short", 5);
	rr_end(&m);
	assert_int_equal(parse_txt(&m)->status, DNS_TEMPFAIL);
	assert_int_equal(txt.n, 0);

	/* a record past DNS_TXT_REC_MAX keeps its first bytes, says so */
	static char chunk[256];
	memset(chunk, 'a', 255);
	const char *big[12];
	for (int i = 0; i < 11; i++)
		big[i] = chunk;
	big[11] = NULL;
	hdr(&m, RESP, 1, 2, 0, 0);
	question(&m, "example.com", T_TXT);
	rr_txt(&m, big);
	rr_txt(&m, spf);
	t = parse_txt(&m);
	assert_int_equal(t->status, DNS_OK);
	assert_int_equal(t->n, 2);
	assert_true(t->rr[0].too_long);
	assert_int_equal(t->rr[0].len, DNS_TXT_REC_MAX);
	assert_false(t->rr[1].too_long);
	assert_true(txt_is(t, 1, "v=spf1 ip4:192.0.2.0/24 -all"));

	/* more than the buffer holds: truncated, what fits kept */
	hdr(&m, RESP, 1, 5, 0, 0);
	question(&m, "example.com", T_TXT);
	for (int i = 0; i < 5; i++)
		rr_txt(&m, big);
	t = parse_txt(&m);
	assert_int_equal(t->status, DNS_OK);
	assert_true(t->truncated);
	assert_int_equal(t->n, DNS_TXT_BUF / DNS_TXT_REC_MAX);

	/* none: NODATA; and dnsmsg_parse still refuses TXT */
	build_a(&m);
	assert_int_equal(parse_txt(&m)->status, DNS_NODATA);
	assert_tempfail(&m, T_TXT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mx),
		cmocka_unit_test(test_null_mx),
		cmocka_unit_test(test_a),
		cmocka_unit_test(test_aaaa),
		cmocka_unit_test(test_ptr),
		cmocka_unit_test(test_cname_chain),
		cmocka_unit_test(test_nxdomain),
		cmocka_unit_test(test_nodata),
		cmocka_unit_test(test_rcodes),
		cmocka_unit_test(test_header_flags),
		cmocka_unit_test(test_odd_but_fine),
		cmocka_unit_test(test_junk),
		cmocka_unit_test(test_pointers),
		cmocka_unit_test(test_jump_limit),
		cmocka_unit_test(test_label_length),
		cmocka_unit_test(test_name_length),
		cmocka_unit_test(test_case_folded),
		cmocka_unit_test(test_unplain_labels),
		cmocka_unit_test(test_hostile_targets),
		cmocka_unit_test(test_rdlength),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_max_rr),
		cmocka_unit_test(test_ttl),
		cmocka_unit_test(test_status_name),
		cmocka_unit_test(test_fuzz),
		cmocka_unit_test(test_txt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
