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
	assert_true(l.cap >= l.n);

	assert_true(netlist_match(&l, (a = ip("10.0.0.1"), &a)));
	assert_true(netlist_match(&l, (a = ip("10.99.255.255"), &a)));
	assert_true(netlist_match(&l, (a = ip("::ffff:10.42.1.1"), &a)));
	assert_false(netlist_match(&l, (a = ip("10.100.0.1"), &a)));
	assert_true(netlist_match(&l, (a = ip("2001:db8::25"), &a)));
	assert_false(netlist_match(&l, (a = ip("2001:db9::25"), &a)));

	netlist_free(&l);
	assert_null(l.v);
	assert_int_equal(l.n, 0);
	assert_false(netlist_match(&l, (a = ip("10.0.0.1"), &a)));
	netlist_free(&l);
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
