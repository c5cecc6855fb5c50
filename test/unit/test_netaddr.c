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

#include "netaddr.h"

static const char *str(const struct ipaddr *a)
{
	static char buf[64];
	return ipaddr_str(a, buf, sizeof buf);
}

static struct ipaddr ip(const char *s)
{
	struct ipaddr a;
	if (!ipaddr_parse(s, &a))
		fail_msg("ipaddr_parse(\"%s\") failed", s);
	return a;
}

static void test_parse_v4(void **state)
{
	(void)state;
	struct ipaddr a = ip("192.0.2.1");
	static const uint8_t want[16] = { 192, 0, 2, 1 };

	assert_int_equal(a.family, AF_INET);
	assert_memory_equal(a.b, want, 16);
	assert_string_equal(str(&a), "192.0.2.1");
}

static void test_parse_v6(void **state)
{
	(void)state;
	struct ipaddr a = ip("2001:DB8::1");
	static const uint8_t want[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };

	assert_int_equal(a.family, AF_INET6);
	assert_memory_equal(a.b, want, 16);
	assert_string_equal(str(&a), "2001:db8::1");

	a = ip("[2001:db8::1]");
	assert_int_equal(a.family, AF_INET6);
	assert_memory_equal(a.b, want, 16);

	a = ip("::");
	assert_int_equal(a.family, AF_INET6);
	assert_string_equal(str(&a), "::");
}

static void test_parse_v4mapped_folds(void **state)
{
	(void)state;
	struct ipaddr a = ip("::ffff:192.0.2.7");
	static const uint8_t want[16] = { 192, 0, 2, 7 };

	assert_int_equal(a.family, AF_INET);
	assert_memory_equal(a.b, want, 16);
	assert_string_equal(str(&a), "192.0.2.7");

	a = ip("[::FFFF:c000:0207]");
	assert_int_equal(a.family, AF_INET);
	assert_memory_equal(a.b, want, 16);

	/* IPv4-compatible (::a.b.c.d, deprecated) and NAT64 are not mapped. */
	a = ip("::192.0.2.7");
	assert_int_equal(a.family, AF_INET6);
	a = ip("64:ff9b::192.0.2.7");
	assert_int_equal(a.family, AF_INET6);
}

static void test_parse_junk(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "[]", "[", "]", "192.0.2", "192.0.2.256", "192.0.2.1.5",
		"192.0.2.1 ", " 192.0.2.1", "[192.0.2.1]", "2001:db8::1]",
		"[2001:db8::1", "[[2001:db8::1]]", "2001:db8:::1", "fe80::1%eth0",
		"example.org", "192.0.2.1/32", "0x7f.1", "1.2.3.04x",
		"[2001:db8::1]x", "2001:0db8:0000:0000:0000:0000:0000:0000:1",
		"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255.255",
		"[0000:0000:0000:0000:0000:ffff:255.255.255.255]xxxxxxxxxxxxxxxx",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct ipaddr a;
		if (ipaddr_parse(bad[i], &a))
			fail_msg("ipaddr_parse accepted \"%s\"", bad[i]);
	}
}

static void test_from_sockaddr(void **state)
{
	(void)state;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct sockaddr sa = { .sa_family = AF_UNIX };
	struct ipaddr a;

	assert_int_equal(inet_pton(AF_INET, "198.51.100.9", &sin.sin_addr), 1);
	assert_true(ipaddr_from_sockaddr((struct sockaddr *)&sin, &a));
	assert_int_equal(a.family, AF_INET);
	assert_string_equal(str(&a), "198.51.100.9");

	assert_int_equal(inet_pton(AF_INET6, "2001:db8::5", &sin6.sin6_addr), 1);
	assert_true(ipaddr_from_sockaddr((struct sockaddr *)&sin6, &a));
	assert_int_equal(a.family, AF_INET6);
	assert_string_equal(str(&a), "2001:db8::5");

	assert_int_equal(inet_pton(AF_INET6, "::ffff:198.51.100.9", &sin6.sin6_addr), 1);
	assert_true(ipaddr_from_sockaddr((struct sockaddr *)&sin6, &a));
	assert_int_equal(a.family, AF_INET);
	assert_string_equal(str(&a), "198.51.100.9");
	struct ipaddr b = ip("198.51.100.9");
	assert_memory_equal(&a, &b, sizeof a);

	assert_false(ipaddr_from_sockaddr(&sa, &a));
}

static void test_str_small_buffer(void **state)
{
	(void)state;
	struct ipaddr a = ip("192.0.2.100");
	char buf[8];

	memset(buf, 'x', sizeof buf);
	assert_ptr_equal(ipaddr_str(&a, buf, sizeof buf), buf);
	assert_int_equal(buf[0], '\0');
	assert_ptr_equal(ipaddr_str(&a, buf, 0), buf);
}

struct cidr_case {
	const char *text;
	int family;
	const char *net;
	unsigned prefix;
	bool host_bits;
};

static const struct cidr_case good_cidrs[] = {
	{ "192.0.2.0/24", AF_INET, "192.0.2.0", 24, false },
	{ "192.0.2.1/24", AF_INET, "192.0.2.0", 24, true },
	{ "192.0.2.1", AF_INET, "192.0.2.1", 32, false },
	{ "192.0.2.1/32", AF_INET, "192.0.2.1", 32, false },
	{ "0.0.0.0/0", AF_INET, "0.0.0.0", 0, false },
	{ "10.1.2.3/0", AF_INET, "0.0.0.0", 0, true },
	{ "10.255.0.0/9", AF_INET, "10.128.0.0", 9, true },
	{ "10.128.0.0/9", AF_INET, "10.128.0.0", 9, false },
	{ "10.1.2.3/31", AF_INET, "10.1.2.2", 31, true },
	{ "2001:db8::/32", AF_INET6, "2001:db8::", 32, false },
	{ "[2001:db8::]/32", AF_INET6, "2001:db8::", 32, false },
	{ "2001:db8:1::1/48", AF_INET6, "2001:db8:1::", 48, true },
	{ "2001:db8::1", AF_INET6, "2001:db8::1", 128, false },
	{ "[2001:db8::1]", AF_INET6, "2001:db8::1", 128, false },
	{ "2001:db8::1/128", AF_INET6, "2001:db8::1", 128, false },
	{ "2001:db8::ff/121", AF_INET6, "2001:db8::80", 121, true },
	{ "::/0", AF_INET6, "::", 0, false },
	{ "::1/0", AF_INET6, "::", 0, true },
	{ "::ffff:192.0.2.0/120", AF_INET, "192.0.2.0", 24, false },
	{ "::ffff:192.0.2.9/120", AF_INET, "192.0.2.0", 24, true },
	{ "::ffff:192.0.2.9", AF_INET, "192.0.2.9", 32, false },
	{ "[::ffff:192.0.2.9]/128", AF_INET, "192.0.2.9", 32, false },
	{ "::ffff:0.0.0.0/96", AF_INET, "0.0.0.0", 0, false },
	{ "::ffff:0.0.0.0/95", AF_INET6, "::fffe:0:0", 95, true },
	{ "::ffff:192.0.2.9/80", AF_INET6, "::", 80, true },
	{ "192.0.2.0/024", AF_INET, "192.0.2.0", 24, false },
};

static void test_cidr_parse_good(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof good_cidrs / sizeof good_cidrs[0]; i++) {
		const struct cidr_case *t = &good_cidrs[i];
		struct cidr c;
		bool hb = !t->host_bits;

		if (!cidr_parse(t->text, &c, &hb))
			fail_msg("cidr_parse(\"%s\") failed", t->text);
		struct ipaddr want = ip(t->net);
		if (c.net.family != t->family || c.prefix != t->prefix ||
		    memcmp(&c.net, &want, sizeof want) != 0 || hb != t->host_bits)
			fail_msg("\"%s\": got %s/%u host bits %d, want %s/%u %d", t->text,
				 str(&c.net), c.prefix, hb, t->net, t->prefix,
				 t->host_bits);
		/* the host-bits report is optional */
		assert_true(cidr_parse(t->text, &c, NULL));
	}
}

static void test_cidr_parse_bad(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "/", "/24", "192.0.2.0/", "192.0.2.0/33", "192.0.2.0/-1",
		"192.0.2.0/+8", "192.0.2.0/ 8", "192.0.2.0 /8", "192.0.2.0/8 ",
		"192.0.2.0/8x", "192.0.2.0/0x8", "192.0.2.0/8/8", "192.0.2.0/0008",
		"192.0.2.0/4294967320", "2001:db8::/129", "2001:db8::/1280",
		"::ffff:192.0.2.0/129", "[2001:db8::/32]", "[2001:db8::]32",
		"[192.0.2.0]/24", "2001:db8::]/32", "junk", "junk/8", "192.0.2/24",
		"192.0.2.0//24", "2001:db8::/", "[]/0",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct cidr c;
		bool hb;
		if (cidr_parse(bad[i], &c, &hb))
			fail_msg("cidr_parse accepted \"%s\"", bad[i]);
	}
}

static struct cidr net(const char *s)
{
	struct cidr c;
	if (!cidr_parse(s, &c, NULL))
		fail_msg("cidr_parse(\"%s\") failed", s);
	return c;
}

static void test_cidr_match(void **state)
{
	(void)state;
	struct cidr c = net("192.0.2.0/24");
	struct ipaddr a;

	assert_true(cidr_match(&c, (a = ip("192.0.2.0"), &a)));
	assert_true(cidr_match(&c, (a = ip("192.0.2.255"), &a)));
	assert_false(cidr_match(&c, (a = ip("192.0.3.0"), &a)));
	assert_false(cidr_match(&c, (a = ip("192.0.1.255"), &a)));
	assert_true(cidr_match(&c, (a = ip("::ffff:192.0.2.44"), &a)));
	assert_false(cidr_match(&c, (a = ip("::192.0.2.44"), &a)));

	c = net("10.128.0.0/9");
	assert_true(cidr_match(&c, (a = ip("10.255.255.255"), &a)));
	assert_false(cidr_match(&c, (a = ip("10.127.255.255"), &a)));

	c = net("0.0.0.0/0");
	assert_true(cidr_match(&c, (a = ip("255.255.255.255"), &a)));
	assert_false(cidr_match(&c, (a = ip("2001:db8::1"), &a)));

	c = net("192.0.2.1/32");
	assert_true(cidr_match(&c, (a = ip("192.0.2.1"), &a)));
	assert_false(cidr_match(&c, (a = ip("192.0.2.0"), &a)));

	c = net("2001:db8::/32");
	assert_true(cidr_match(&c, (a = ip("2001:db8:ffff::1"), &a)));
	assert_false(cidr_match(&c, (a = ip("2001:db9::1"), &a)));
	assert_false(cidr_match(&c, (a = ip("32.1.13.184"), &a)));

	c = net("2001:db8::80/121");
	assert_true(cidr_match(&c, (a = ip("2001:db8::ff"), &a)));
	assert_false(cidr_match(&c, (a = ip("2001:db8::7f"), &a)));

	c = net("::1/128");
	assert_true(cidr_match(&c, (a = ip("::1"), &a)));
	assert_false(cidr_match(&c, (a = ip("::2"), &a)));

	/* IPv6 /0 means IPv6 only: IPv4 clients arrive folded. */
	c = net("::/0");
	assert_true(cidr_match(&c, (a = ip("2001:db8::1"), &a)));
	assert_false(cidr_match(&c, (a = ip("::ffff:192.0.2.1"), &a)));

	c = net("::ffff:192.0.2.0/120");
	assert_true(cidr_match(&c, (a = ip("192.0.2.200"), &a)));
	assert_false(cidr_match(&c, (a = ip("192.0.3.1"), &a)));
}

static void test_mask(void **state)
{
	(void)state;
	struct ipaddr a = ip("255.255.255.255");

	ipaddr_mask(&a, 20);
	assert_string_equal(str(&a), "255.255.240.0");
	ipaddr_mask(&a, 200);
	assert_string_equal(str(&a), "255.255.240.0");
	ipaddr_mask(&a, 0);
	assert_string_equal(str(&a), "0.0.0.0");

	a = ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	ipaddr_mask(&a, 65);
	assert_string_equal(str(&a), "ffff:ffff:ffff:ffff:8000::");
	ipaddr_mask(&a, 1000);
	assert_string_equal(str(&a), "ffff:ffff:ffff:ffff:8000::");
	ipaddr_mask(&a, 128);
	assert_string_equal(str(&a), "ffff:ffff:ffff:ffff:8000::");
}

static void test_netlist(void **state)
{
	(void)state;
	struct netlist l = { 0 };
	struct ipaddr a;
	char text[32];

	assert_false(netlist_match(&l, (a = ip("192.0.2.1"), &a)));
	/* enough entries to make the array grow several times */
	for (unsigned i = 0; i < 100; i++) {
		int n = snprintf(text, sizeof text, "10.%u.0.0/16", i);
		assert_true(n > 0 && (size_t)n < sizeof text);
		struct cidr c = net(text);
		assert_int_equal(netlist_add(&l, &c), 0);
	}
	struct cidr c6 = net("2001:db8::/32");
	assert_int_equal(netlist_add(&l, &c6), 0);
	assert_int_equal(l.n, 101);

	assert_true(netlist_match(&l, (a = ip("10.0.0.1"), &a)));
	assert_true(netlist_match(&l, (a = ip("10.99.255.255"), &a)));
	assert_true(netlist_match(&l, (a = ip("::ffff:10.42.1.1"), &a)));
	assert_false(netlist_match(&l, (a = ip("10.100.0.1"), &a)));
	assert_true(netlist_match(&l, (a = ip("2001:db8::25"), &a)));
	assert_false(netlist_match(&l, (a = ip("2001:db9::25"), &a)));

	netlist_free(&l);
	assert_int_equal(l.n, 0);
	assert_false(netlist_match(&l, (a = ip("10.0.0.1"), &a)));
	netlist_free(&l);
}

static void add(struct netlist *l, const char *text)
{
	struct cidr c = net(text);
	assert_int_equal(netlist_add(l, &c), 0);
}

static bool in(const struct netlist *l, const char *addr)
{
	struct ipaddr a = ip(addr);
	return netlist_match(l, &a);
}

/* A wide network and narrower ones inside it, in either order: the wide one
 * wins wherever it reaches, the narrow ones add nothing outside it. */
static void test_netlist_overlap(void **state)
{
	(void)state;
	static const char *const order[2][4] = {
		{ "10.1.2.0/24", "10.1.2.128/25", "10.0.0.0/8", "10.1.2.3" },
		{ "10.0.0.0/8", "10.1.2.3", "10.1.2.128/25", "10.1.2.0/24" },
	};
	for (int o = 0; o < 2; o++) {
		struct netlist l = { 0 };
		for (int i = 0; i < 4; i++)
			add(&l, order[o][i]);
		add(&l, "10.255.255.255/32");
		assert_true(in(&l, "10.0.0.0"));
		assert_true(in(&l, "10.1.2.3"));
		assert_true(in(&l, "10.200.1.1"));
		assert_true(in(&l, "10.255.255.255"));
		assert_false(in(&l, "9.255.255.255"));
		assert_false(in(&l, "11.0.0.0"));
		netlist_free(&l);
	}
	/* siblings that share a long prefix, and a gap between them */
	struct netlist l = { 0 };
	add(&l, "192.0.2.0/26");
	add(&l, "192.0.2.128/26");
	add(&l, "192.0.2.64/27");
	assert_true(in(&l, "192.0.2.63"));
	assert_true(in(&l, "192.0.2.64"));
	assert_true(in(&l, "192.0.2.95"));
	assert_false(in(&l, "192.0.2.96"));
	assert_false(in(&l, "192.0.2.127"));
	assert_true(in(&l, "192.0.2.128"));
	assert_true(in(&l, "192.0.2.191"));
	assert_false(in(&l, "192.0.2.192"));
	netlist_free(&l);
}

/* /0 covers its own family only: IPv4 clients are never in an IPv6 network,
 * not even ::/0, and the other way round. */
static void test_netlist_zero(void **state)
{
	(void)state;
	struct netlist l = { 0 };
	add(&l, "192.0.2.0/24");
	add(&l, "0.0.0.0/0");
	add(&l, "198.51.100.7");
	assert_true(in(&l, "0.0.0.0"));
	assert_true(in(&l, "255.255.255.255"));
	assert_true(in(&l, "::ffff:203.0.113.9"));
	assert_false(in(&l, "::"));
	assert_false(in(&l, "2001:db8::1"));
	netlist_free(&l);

	add(&l, "::/0");
	assert_true(in(&l, "::"));
	assert_true(in(&l, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
	assert_true(in(&l, "2001:db8::1"));
	assert_false(in(&l, "192.0.2.1"));
	assert_false(in(&l, "::ffff:192.0.2.1"));
	netlist_free(&l);
}

/* /32 and /128 are one address; the neighbours are out. */
static void test_netlist_hosts(void **state)
{
	(void)state;
	struct netlist l = { 0 };
	add(&l, "192.0.2.1/32");
	add(&l, "192.0.2.3");
	add(&l, "2001:db8::1/128");
	add(&l, "[2001:db8::3]");
	assert_false(in(&l, "192.0.2.0"));
	assert_true(in(&l, "192.0.2.1"));
	assert_false(in(&l, "192.0.2.2"));
	assert_true(in(&l, "192.0.2.3"));
	assert_false(in(&l, "192.0.2.4"));
	assert_false(in(&l, "2001:db8::"));
	assert_true(in(&l, "2001:db8::1"));
	assert_false(in(&l, "2001:db8::2"));
	assert_true(in(&l, "2001:db8::3"));
	assert_false(in(&l, "2001:db8::1:1"));
	assert_false(in(&l, "::c000:201")); /* 192.0.2.1 in the low bits */
	netlist_free(&l);
}

/* IPv4-mapped networks of /96 and narrower are IPv4 networks; wider ones
 * stay IPv6 and match only IPv6 addresses. */
static void test_netlist_v4mapped(void **state)
{
	(void)state;
	struct netlist l = { 0 };
	add(&l, "::ffff:10.0.0.0/104");
	assert_true(in(&l, "10.1.2.3"));
	assert_true(in(&l, "::ffff:10.1.2.3"));
	assert_false(in(&l, "11.1.2.3"));
	assert_false(in(&l, "::10.1.2.3"));
	netlist_free(&l);

	add(&l, "::ffff:0:0/95");
	assert_false(in(&l, "10.1.2.3"));
	assert_true(in(&l, "::fffe:1:2"));
	/* an address that was not folded stays IPv6 */
	struct ipaddr raw = { .family = AF_INET6 };
	raw.b[10] = raw.b[11] = 0xff;
	raw.b[12] = 10;
	assert_true(netlist_match(&l, &raw));
	netlist_free(&l);
}

/* Host bits are cleared; the same network twice is harmless. */
static void test_netlist_host_bits_duplicates(void **state)
{
	(void)state;
	struct netlist l = { 0 };
	for (int i = 0; i < 3; i++) {
		add(&l, "10.1.2.3/8");
		add(&l, "2001:db8::1/32");
		add(&l, "192.0.2.1");
	}
	assert_true(in(&l, "10.200.0.1"));
	assert_true(in(&l, "2001:db8:ffff::"));
	assert_true(in(&l, "192.0.2.1"));
	assert_false(in(&l, "192.0.2.2"));
	assert_false(in(&l, "11.0.0.0"));
	assert_false(in(&l, "2001:db9::"));
	netlist_free(&l);
}

static uint64_t rnd_state = 88172645463325252ULL;

static uint32_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (uint32_t)(rnd_state >> 16);
}

/* Against the definition: an address is in the list when one entry's
 * cidr_match says so. Entries and addresses crowd in a few regions so that
 * prefixes nest, touch and split each other. */
static void test_netlist_random(void **state)
{
	(void)state;
	enum { ENTRIES = 600, QUERIES = 6000 };
	for (int fam = 0; fam < 2; fam++) {
		struct netlist l = { 0 };
		static struct cidr v[ENTRIES];
		unsigned bits = fam ? 128 : 32;
		for (size_t i = 0; i < ENTRIES; i++) {
			struct cidr c = { .net.family = fam ? AF_INET6 : AF_INET };
			for (unsigned k = 0; k < bits / 8; k++)
				c.net.b[k] = (uint8_t)rnd();
			c.net.b[0] &= 0x81;   /* two regions */
			c.net.b[1] &= 0x0f;
			c.prefix = 2 + rnd() % (bits - 1);
			ipaddr_mask(&c.net, c.prefix);
			v[i] = c;
			assert_int_equal(netlist_add(&l, &c), 0);
		}
		for (size_t q = 0; q < QUERIES; q++) {
			struct ipaddr a = { .family = fam ? AF_INET6 : AF_INET };
			for (unsigned k = 0; k < bits / 8; k++)
				a.b[k] = (uint8_t)rnd();
			if (q % 2) { /* near an entry: its prefix, then noise */
				const struct cidr *e = &v[rnd() % ENTRIES];
				unsigned keep = e->prefix > 2 ? e->prefix - rnd() % 3 : e->prefix;
				struct ipaddr m = e->net;
				ipaddr_mask(&m, keep);
				for (unsigned k = 0; k < bits / 8; k++) {
					uint8_t mask = 0;
					for (unsigned b = 0; b < 8; b++)
						if (k * 8 + b < keep)
							mask |= (uint8_t)(0x80 >> b);
					a.b[k] = (uint8_t)((m.b[k] & mask) | (a.b[k] & ~mask));
				}
			} else {
				a.b[0] &= 0x81;
				a.b[1] &= 0x1f;
			}
			bool want = false;
			for (size_t i = 0; i < ENTRIES && !want; i++)
				want = cidr_match(&v[i], &a);
			assert_int_equal(netlist_match(&l, &a), want);
		}
		netlist_free(&l);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_v4),
		cmocka_unit_test(test_parse_v6),
		cmocka_unit_test(test_parse_v4mapped_folds),
		cmocka_unit_test(test_parse_junk),
		cmocka_unit_test(test_from_sockaddr),
		cmocka_unit_test(test_str_small_buffer),
		cmocka_unit_test(test_cidr_parse_good),
		cmocka_unit_test(test_cidr_parse_bad),
		cmocka_unit_test(test_cidr_match),
		cmocka_unit_test(test_mask),
		cmocka_unit_test(test_netlist),
		cmocka_unit_test(test_netlist_overlap),
		cmocka_unit_test(test_netlist_zero),
		cmocka_unit_test(test_netlist_hosts),
		cmocka_unit_test(test_netlist_v4mapped),
		cmocka_unit_test(test_netlist_host_bits_duplicates),
		cmocka_unit_test(test_netlist_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
