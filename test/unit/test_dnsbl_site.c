/* DNSBL sites in postscreen's syntax (lib/dnsbl_site.h): parsing, what an
 * answer matches, and the reversed query names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dnsbl_site.h"

static bool matches(const struct dnsbl_site *s, const char *answer)
{
	struct ipaddr a;
	assert_true(ipaddr_parse(answer, &a));
	return dnsbl_site_match(s, &a);
}

static void test_parse_range_and_weight(void **state)
{
	(void)state;
	struct dnsbl_site s;
	assert_true(dnsbl_site_parse("Zen.Example=127.0.0.[2..11]*3", &s));
	assert_string_equal(s.domain, "zen.example");
	assert_int_equal(s.weight, 3);
	assert_true(matches(&s, "127.0.0.2"));
	assert_true(matches(&s, "127.0.0.11"));
	assert_false(matches(&s, "127.0.0.1"));
	assert_false(matches(&s, "127.0.0.12"));
	assert_false(matches(&s, "127.0.1.2"));
	assert_false(matches(&s, "::1"));
}

static void test_parse_allowlist(void **state)
{
	(void)state;
	struct dnsbl_site s;
	assert_true(dnsbl_site_parse("list.example=127.0.[0..255].[1..3]*-5", &s));
	assert_int_equal(s.weight, -5);
	assert_true(matches(&s, "127.0.9.1"));
	assert_true(matches(&s, "127.0.255.3"));
	assert_false(matches(&s, "127.0.9.0"));
	assert_false(matches(&s, "127.0.9.4"));
}

static void test_parse_defaults_and_lists(void **state)
{
	(void)state;
	struct dnsbl_site s;
	/* no filter: any 127.x answer; no weight: 1 */
	assert_true(dnsbl_site_parse("bl.example", &s));
	assert_int_equal(s.weight, 1);
	assert_false(s.filtered);
	assert_true(matches(&s, "127.1.2.3"));
	assert_false(matches(&s, "10.0.0.2"));
	assert_true(dnsbl_site_parse("bl.example*2", &s));
	assert_int_equal(s.weight, 2);
	assert_true(dnsbl_site_parse("bl.example=127.0.0.[1;3..5;9]", &s));
	assert_int_equal(s.weight, 1);
	assert_true(matches(&s, "127.0.0.1"));
	assert_false(matches(&s, "127.0.0.2"));
	assert_true(matches(&s, "127.0.0.4"));
	assert_true(matches(&s, "127.0.0.9"));
	assert_false(matches(&s, "127.0.0.10"));
}

static void test_parse_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "=127.0.0.2", "bl..example", "bl.example=", "bl.example=127.0.0",
		"bl.example=127.0.0.256", "bl.example=127.0.0.[5..2]", "bl.example=127.0.0.[1",
		"bl.example=127.0.0.[]", "bl.example=127.0.0.2*", "bl.example*1001",
		"bl.example*x", "bl.example=127.0.0.2*3 ", "bl example", "bl.example=127.0.0.2.1",
		"bl.example=127.0.0.[1;]",
	};
	struct dnsbl_site s;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (dnsbl_site_parse(bad[i], &s))
			fail_msg("accepted \"%s\"", bad[i]);
	char longname[DNSBL_DOMAIN_MAX + 8];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = 0;
	for (size_t i = 50; i < sizeof longname - 1; i += 51)
		longname[i] = '.';
	assert_false(dnsbl_site_parse(longname, &s));
}

static void test_query_name(void **state)
{
	(void)state;
	struct ipaddr a;
	char q[260];
	assert_true(ipaddr_parse("192.0.2.45", &a));
	assert_true(dnsbl_query_name(&a, "zen.example", q, sizeof q));
	assert_string_equal(q, "45.2.0.192.zen.example");
	assert_true(ipaddr_parse("2001:db8::1", &a));
	assert_true(dnsbl_query_name(&a, "bl.example", q, sizeof q));
	assert_string_equal(q, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example");
	assert_false(dnsbl_query_name(&a, "bl.example", q, 20));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_range_and_weight),
		cmocka_unit_test(test_parse_allowlist),
		cmocka_unit_test(test_parse_defaults_and_lists),
		cmocka_unit_test(test_parse_refused),
		cmocka_unit_test(test_query_name),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
