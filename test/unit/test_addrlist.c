/* Sender and recipient whitelist patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forms),
		cmocka_unit_test(test_null_sender),
		cmocka_unit_test(test_invalid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
