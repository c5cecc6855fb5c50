#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "generic_name.h"

static const char *const words[] = {
	"dyn", "dynamic", "dhcp", "pool", "ppp", "dsl", "cable", "cust", "client", "broadband",
};
#define NWORDS (sizeof words / sizeof words[0])

static bool generic(const char *name, const char *addr)
{
	struct ipaddr a;
	if (!ipaddr_parse(addr, &a))
		fail_msg("bad test address %s", addr);
	return generic_name(name, &a, words, NWORDS);
}

static void check(const char *addr, const char *const *names, size_t n, bool want)
{
	for (size_t i = 0; i < n; i++) {
		if (generic(names[i], addr) != want)
			fail_msg("%s for %s: want %s", names[i], addr, want ? "generic" : "not generic");
	}
}
#define CHECK(addr, list, want) check(addr, list, sizeof list / sizeof list[0], want)

static void test_v4_decimal(void **state)
{
	(void)state;
	static const char *const yes[] = {
		"203-0-113-7.example.net",
		"7.113.0.203.example.net",
		"host-203.0.113.7.example.net",
		"c-203-0-113-7.hsd1.ma.example.net",
		"ip203-0-113-7.example.net",
		"0-113-7.example.net",             /* the last three octets */
		"7-113-0.example.net",             /* reversed */
		"203.000.113.007.example.net",     /* zero-padded */
		"h203000113007.example.net",
		"x000113007y.example.net",
		"203-0-113-007.example.net",
		"a7b113c0d203.example.net",        /* any separators */
		"203-0-113-7.",                    /* one trailing dot */
	};
	static const char *const no[] = {
		"mail.example.net",
		"mx1.example.net",
		"203-0-113-8.example.net",         /* another host */
		"113-7.example.net",               /* two octets say too little */
		"0113007.example.net",             /* 7 digits: not padded octets */
		"20301137.example.net",            /* unpadded concatenation is ambiguous */
		"mail-113-0-7.example.net",        /* not in either order */
		"1113-7-0.example.net",
	};
	CHECK("203.0.113.7", yes, true);
	CHECK("203.0.113.7", no, false);
	/* IPv4-mapped arrives folded to IPv4 */
	assert_true(generic("203-0-113-7.example.net", "::ffff:203.0.113.7"));
}

static void test_v4_hex(void **state)
{
	(void)state;
	static const char *const yes[] = {
		"cb007107.example.net",
		"CB007107.example.net",
		"ipcb007107.example.net",
		"077100cb.example.net",            /* the other byte order */
	};
	static const char *const no[] = {
		"cb007108.example.net",
		"cb0071.example.net",
	};
	CHECK("203.0.113.7", yes, true);
	CHECK("203.0.113.7", no, false);
}

static void test_v6(void **state)
{
	(void)state;
	static const char *const yes[] = {
		"2001-db8-0-0-0-0-1234-5678.example.net",
		"2001-0db8-0000-0000-0000-0000-1234-5678.example.net",
		"x-1234-5678.example.net",
		"ip6-12345678.example.net",
		"8.7.6.5.4.3.2.1.example.net",
		"5678-1234.example.net",
	};
	static const char *const no[] = {
		"mail.example.net",
		"2001-db8-0-0-0-0-1234-5679.example.net",
		"1234-5678x.example.net",          /* a part with a non-hex letter */
		"8.7.6.5.4.3.2.example.net",       /* seven nibbles */
		"12345-678.example.net",
	};
	CHECK("2001:db8::1234:5678", yes, true);
	CHECK("2001:db8::1234:5678", no, false);
}

static void test_words(void **state)
{
	(void)state;
	static const char *const yes[] = {
		"dyn.example.net",
		"host.DYN.example.net",
		"dsl7-113.example.net",
		"ip-7-dyn.example.net",
		"x.pool.example.net",
		"broadband9.example.net",
		"a-cable-b.example.net",
		"dynamic_host.example.net",
	};
	static const char *const no[] = {
		"dynect.example.net",              /* a word never matches part of a run */
		"mail.poolside.example",
		"adsl.example.net",
		"customs.example.net",
		"mx.example.com",
	};
	CHECK("192.0.2.1", yes, true);
	CHECK("192.0.2.1", no, false);

	/* a configured word compares with whole labels too */
	static const char *const dashed[] = { NULL, "", "dial-up" };
	assert_true(generic_name("dial-up.example.net", NULL, dashed, 3));
	assert_false(generic_name("dial.example.net", NULL, dashed, 3));
	/* no words, no address: only a bad name is generic */
	assert_false(generic_name("dyn.example.net", NULL, NULL, 0));
}

static void test_bad_names(void **state)
{
	(void)state;
	assert_true(generic_name(NULL, NULL, NULL, 0));
	assert_true(generic_name("", NULL, NULL, 0));
	assert_true(generic_name(".", NULL, NULL, 0));
	assert_true(generic_name("a..b", NULL, NULL, 0));
	assert_true(generic_name("1.2.3.4", NULL, NULL, 0));
	assert_true(generic_name("caf\xc3\xa9.example", NULL, NULL, 0));
	assert_true(generic_name("bücher.example", NULL, NULL, 0));
	assert_false(generic_name("xn--bcher-kva.example", NULL, NULL, 0));

	/* long: 253 bytes is a name, 254 is not, with or without a final dot */
	char buf[400];
	memset(buf, 'a', sizeof buf);
	for (size_t i = 60; i < 300; i += 61)
		buf[i] = '.';
	buf[253] = '\0';
	assert_false(generic_name(buf, NULL, NULL, 0));
	buf[253] = '.';
	buf[254] = '\0';
	assert_false(generic_name(buf, NULL, NULL, 0));
	buf[253] = 'a';
	assert_true(generic_name(buf, NULL, NULL, 0));
	buf[254] = 'a';
	buf[sizeof buf - 1] = '\0';
	assert_true(generic_name(buf, NULL, NULL, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v4_decimal),
		cmocka_unit_test(test_v4_hex),
		cmocka_unit_test(test_v6),
		cmocka_unit_test(test_words),
		cmocka_unit_test(test_bad_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
