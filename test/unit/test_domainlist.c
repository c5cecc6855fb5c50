/* Domain lists: exact names and ".suffix" entries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "domainlist.h"

static bool in(const struct domainlist *l, const char *d)
{
	return domainlist_match(l, d, strlen(d));
}

static void test_exact(void **state)
{
	(void)state;
	struct domainlist l = { 0 };
	assert_false(in(&l, "example.org"));
	assert_true(domainlist_add(&l, "example.org"));
	assert_true(domainlist_add(&l, "a-b_c.example"));
	assert_true(in(&l, "example.org"));
	assert_true(in(&l, "EXAMPLE.Org"));
	assert_true(in(&l, "example.org."));
	assert_true(in(&l, "A-B_C.example."));
	assert_false(in(&l, "example.org.."));
	assert_false(in(&l, "sub.example.org"));
	assert_false(in(&l, "xexample.org"));
	assert_false(in(&l, "example.or"));
	assert_false(in(&l, "example.orgx"));
	assert_false(in(&l, ".example.org"));
	assert_false(in(&l, ""));
	assert_false(in(&l, "."));
	/* the length given, not the string's */
	assert_true(domainlist_match(&l, "example.org.evil", 11));
	assert_true(domainlist_match(&l, "example.org.evil", 12));
	assert_false(domainlist_match(&l, "example.org", 10));
	/* a NUL inside the name is not a terminator */
	assert_false(domainlist_match(&l, "example.org\0", 12));
	domainlist_free(&l);
	assert_false(in(&l, "example.org"));
	domainlist_free(&l);
}

static void test_suffix(void **state)
{
	(void)state;
	struct domainlist l = { 0 };
	assert_true(domainlist_add(&l, ".customer.example"));
	assert_true(in(&l, "a.customer.example"));
	assert_true(in(&l, "A.Customer.EXAMPLE."));
	assert_true(in(&l, "x.y.z.customer.example"));
	assert_false(in(&l, "customer.example"));
	assert_false(in(&l, "customer.example."));
	assert_false(in(&l, ".customer.example"));
	assert_true(in(&l, "..customer.example"));
	assert_false(in(&l, "acustomer.example"));
	assert_false(in(&l, "a.customer.example.org"));
	assert_false(in(&l, "a.customer.exampl"));
	assert_false(in(&l, "example"));
	/* a long name under a short suffix */
	char longname[1100];
	memset(longname, 'a', sizeof longname);
	for (size_t i = 3; i < 1000; i += 4)
		longname[i] = '.';
	snprintf(longname + 1000, sizeof longname - 1000, ".customer.example");
	assert_true(in(&l, longname));
	longname[1000] = 'x';
	assert_false(in(&l, longname));
	domainlist_free(&l);
}

/* Exact and suffix entries side by side, nested suffixes, duplicates. */
static void test_mixed(void **state)
{
	(void)state;
	struct domainlist l = { 0 };
	assert_true(domainlist_add(&l, "example"));
	assert_true(domainlist_add(&l, ".b.example"));
	assert_true(domainlist_add(&l, ".a.b.example"));
	assert_true(domainlist_add(&l, "b.example"));
	assert_true(domainlist_add(&l, ".b.example"));
	assert_true(domainlist_add(&l, "org"));
	assert_true(in(&l, "example"));
	assert_true(in(&l, "b.example"));
	assert_true(in(&l, "a.b.example"));
	assert_true(in(&l, "z.a.b.example"));
	assert_false(in(&l, "a.example"));
	assert_false(in(&l, "x.example"));
	assert_true(in(&l, "org."));
	assert_false(in(&l, "example.org"));
	assert_false(in(&l, "b.example.org"));
	domainlist_free(&l);
}

static uint64_t rnd_state = 88172645463325252ULL;

static uint32_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (uint32_t)(rnd_state >> 16);
}

/* Many entries (the table grows several times): every one is still found,
 * in any case, and its neighbours are not. */
static void test_many(void **state)
{
	(void)state;
	enum { N = 5000 };
	struct domainlist l = { 0 };
	char d[64];
	for (unsigned i = 0; i < N; i++) {
		snprintf(d, sizeof d, "%sd%u.example", i % 3 ? "" : ".", i);
		assert_true(domainlist_add(&l, d));
	}
	for (unsigned i = 0; i < N; i++) {
		snprintf(d, sizeof d, "%s%s%u.EXAMPLE", i % 3 ? "" : "sub.", rnd() % 2 ? "D" : "d", i);
		assert_true(in(&l, d));
		snprintf(d, sizeof d, "d%u.example", i + N);
		assert_false(in(&l, d));
		snprintf(d, sizeof d, "%sd%u.example", i % 3 ? "x." : "", i);
		assert_false(in(&l, d));
	}
	domainlist_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact),
		cmocka_unit_test(test_suffix),
		cmocka_unit_test(test_mixed),
		cmocka_unit_test(test_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
