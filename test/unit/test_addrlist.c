/* Sender and recipient whitelist patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "addrlist.h"

static bool match(const struct addrlist *l, const char *addr)
{
	return addrlist_match(l, addr, strlen(addr));
}

static void test_forms(void **state)
{
	(void)state;
	struct addrlist l = { 0 };
	assert_int_equal(addrlist_add(&l, "Boss@Example.ORG"), 0);
	assert_int_equal(addrlist_add(&l, "postmaster@"), 0);
	assert_int_equal(addrlist_add(&l, "@partner.example"), 0);
	assert_int_equal(addrlist_add(&l, ".lists.example"), 0);

	assert_true(match(&l, "boss@example.org"));
	assert_true(match(&l, "BOSS@EXAMPLE.ORG"));
	assert_false(match(&l, "boss@example.org.evil"));
	assert_false(match(&l, "xboss@example.org"));

	assert_true(match(&l, "postmaster@anywhere.example"));
	assert_true(match(&l, "PostMaster@x.y"));
	assert_false(match(&l, "postmasters@x.y"));
	assert_false(match(&l, "apostmaster@x.y"));

	assert_true(match(&l, "anyone@partner.example"));
	assert_false(match(&l, "anyone@sub.partner.example"));
	assert_false(match(&l, "anyone@notpartner.example"));
	assert_false(match(&l, "partner.example"));

	assert_true(match(&l, "a@x.lists.example"));
	assert_true(match(&l, "a@deep.x.lists.example"));
	assert_false(match(&l, "a@lists.example"));
	assert_false(match(&l, "a@badlists.example"));

	/* the separating '@' is the last one */
	assert_true(match(&l, "\"odd@name\"@partner.example"));
	assert_false(match(&l, ""));
	addrlist_free(&l);
}

static void test_null_sender(void **state)
{
	(void)state;
	struct addrlist l = { 0 };
	assert_int_equal(addrlist_add(&l, "@partner.example"), 0);
	assert_false(match(&l, ""));
	assert_int_equal(addrlist_add(&l, "<>"), 0);
	assert_true(match(&l, ""));
	assert_false(match(&l, "<>x@y"));
	addrlist_free(&l);
}

static void test_invalid(void **state)
{
	(void)state;
	static const char *const bad[] = { "", "@", ".", "user", "a b@c", "<a@b>", "\tx@y" };
	struct addrlist l = { 0 };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_false(addrlist_valid(bad[i]));
		assert_int_equal(addrlist_add(&l, bad[i]), -1);
	}
	assert_int_equal(l.n, 0);
	char longp[400];
	memset(longp, 'a', sizeof longp - 1);
	longp[sizeof longp - 1] = 0;
	longp[10] = '@';
	assert_false(addrlist_valid(longp));
}

/* Every kind side by side, with overlaps and duplicates. */
static void test_kinds_together(void **state)
{
	(void)state;
	struct addrlist l = { 0 };
	static const char *const pats[] = {
		"a@x.example", "A@X.EXAMPLE", "b@", "@y.example", ".y.example",
		".deep.z.example", "@z.example", "c@d@", "@odd@domain", "<>", "..w.example",
	};
	for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++)
		assert_int_equal(addrlist_add(&l, pats[i]), 0);

	assert_true(match(&l, "a@x.example"));
	assert_false(match(&l, "a@x.example."));
	assert_false(match(&l, "a@sub.x.example"));
	assert_false(match(&l, "aa@x.example"));

	assert_true(match(&l, "b@anything"));
	assert_true(match(&l, "B@"));
	assert_true(match(&l, "b"));          /* no '@': the whole is the local part */
	assert_false(match(&l, "bb@x"));

	assert_true(match(&l, "u@y.example"));
	assert_true(match(&l, "u@s.y.example"));
	assert_true(match(&l, "u@t.s.Y.Example"));
	assert_false(match(&l, "u@xy.example"));
	assert_false(match(&l, "y.example"));
	assert_false(match(&l, "u.y.example"));   /* no '@': no domain */

	assert_true(match(&l, "u@z.example"));
	assert_false(match(&l, "u@q.z.example"));
	assert_true(match(&l, "u@q.deep.z.example"));
	assert_false(match(&l, "u@deep.z.example"));

	assert_true(match(&l, "c@d@whatever"));   /* local part "c@d" */
	assert_false(match(&l, "c@whatever"));
	assert_false(match(&l, "x@odd@domain"));  /* a domain never holds '@' */

	assert_true(match(&l, "v@a..w.example"));
	assert_false(match(&l, "v@a.w.example"));

	assert_true(match(&l, ""));
	assert_true(match(&l, "<>"));             /* the literal pattern text */
	assert_false(match(&l, "u@"));
	assert_false(match(&l, "@"));
	assert_false(match(&l, "u@example"));
	/* the length given, not the string's */
	assert_true(addrlist_match(&l, "u@z.examplex", 11));
	assert_false(addrlist_match(&l, "u@z.example", 10));
	addrlist_free(&l);
	assert_false(match(&l, "a@x.example"));
	addrlist_free(&l);
}

/* Many patterns of each kind: each found, its neighbours not. */
static void test_many(void **state)
{
	(void)state;
	enum { N = 3000 };
	struct addrlist l = { 0 };
	char p[80];
	for (unsigned i = 0; i < N; i++) {
		switch (i % 4) {
		case 0: snprintf(p, sizeof p, "u%u@d%u.example", i, i); break;
		case 1: snprintf(p, sizeof p, "u%u@", i); break;
		case 2: snprintf(p, sizeof p, "@d%u.example", i); break;
		default: snprintf(p, sizeof p, ".d%u.example", i); break;
		}
		assert_int_equal(addrlist_add(&l, p), 0);
	}
	for (unsigned i = 0; i < N; i++) {
		const char *yes = "", *no = "";
		char y[80], n[80];
		switch (i % 4) {
		case 0: yes = "U%u@D%u.example"; no = "u%u@x.d%u.example"; break;
		case 1: yes = "u%u@D%u.example"; no = "xu%u@d%u.example"; break;
		case 2: yes = "x@d%u.example"; no = "x@s.d%u.example"; break;
		default: yes = "x@s.D%u.example"; no = "x@d%u.example"; break;
		}
		snprintf(y, sizeof y, yes, i, i);
		snprintf(n, sizeof n, no, i, i);
		assert_true(match(&l, y));
		assert_false(match(&l, n));
	}
	assert_false(match(&l, ""));
	addrlist_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forms),
		cmocka_unit_test(test_null_sender),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_kinds_together),
		cmocka_unit_test(test_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
