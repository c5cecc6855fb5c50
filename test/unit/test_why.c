#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "greylist.h"
#include "why.h"

/* What logs and dashboards match on: these names and kinds never change
 * (new entries may come). */
static const struct {
	const char *name;
	unsigned kinds;
} published[] = {
	{ "new", WHY_REASON }, { "early", WHY_REASON }, { "retry-window-expired", WHY_REASON },
	{ "triplet", WHY_REASON }, { "awl", WHY_REASON }, { "whitelist-client", WHY_REASON },
	{ "whitelist-client-name", WHY_REASON }, { "whitelist-sender", WHY_REASON },
	{ "whitelist-recipient", WHY_REASON }, { "mynetworks", WHY_REASON },
	{ "mx-host", WHY_REASON }, { "greylist-disabled", WHY_REASON },
	{ "store-failure", WHY_REASON | WHY_REFUSAL }, { "greylist", WHY_LOGGED },
	{ "relay_denied", WHY_REFUSAL }, { "reject_non_fqdn_sender", WHY_REFUSAL },
	{ "reject_unknown_sender_domain", WHY_REFUSAL }, { "reject_non_fqdn_recipient", WHY_REFUSAL },
	{ "permit_mx_backup", WHY_REFUSAL }, { "max_errors", WHY_REFUSAL },
	{ "max_line", WHY_REFUSAL }, { "max_recipients", WHY_REFUSAL },
	{ "helo_required", WHY_LOGGED }, { "message_size_limit", WHY_LOGGED },
	{ "command_timeout", WHY_REFUSAL }, { "data_timeout", WHY_REFUSAL },
	{ "backend", WHY_REFUSAL }, { "backend_refused", WHY_REFUSAL },
	{ "backend_mail", WHY_REFUSAL }, { "backend_down", WHY_REFUSAL },
	{ "etrn", WHY_REFUSAL }, { "etrn_networks", WHY_REFUSAL },
	{ "proxy_protocol", WHY_REFUSAL }, { "max_tls_handshakes", WHY_REFUSAL },
	{ "tls_handshake_timeout", WHY_REFUSAL },
	{ "trusted", WHY_REASON }, { "hostile", WHY_REASON | WHY_REFUSAL },
};

static enum why find(const char *name)
{
	for (enum why w = WHY_NONE + 1; w < WHY_COUNT; w++)
		if (strcmp(why_name(w), name) == 0)
			return w;
	return WHY_NONE;
}

static unsigned kinds_of(enum why w)
{
	return (why_is(w, WHY_REASON) ? WHY_REASON : 0) | (why_is(w, WHY_REFUSAL) ? WHY_REFUSAL : 0);
}

static void test_published_names(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof published / sizeof published[0]; i++) {
		enum why w = find(published[i].name);
		assert_int_not_equal(w, WHY_NONE);
		assert_int_equal(kinds_of(w), published[i].kinds);
	}
}

/* Every name is a log value that needs no quoting and a label value that
 * needs no escaping, and names one entry only. */
static void test_names_plain_and_unique(void **state)
{
	(void)state;
	assert_null(why_name(WHY_NONE));
	assert_null(why_name(WHY_COUNT));
	assert_false(why_is(WHY_NONE, WHY_REASON | WHY_REFUSAL));
	assert_false(why_is(WHY_COUNT, WHY_REASON | WHY_REFUSAL));
	for (enum why w = WHY_NONE + 1; w < WHY_COUNT; w++) {
		const char *n = why_name(w);
		assert_non_null(n);
		assert_true(n[0] != '\0');
		assert_int_equal(strspn(n, "abcdefghijklmnopqrstuvwxyz_-"), strlen(n));
		assert_int_equal(find(n), w);
		/* counted as something, but for the logged-only (see why.h) */
		if (w != WHY_GREYLIST && w != WHY_HELO_REQUIRED && w != WHY_MESSAGE_SIZE_LIMIT)
			assert_int_not_equal(kinds_of(w), 0);
	}
}

/* The store's reasons are decision reasons of the table, one entry each,
 * and the names the store (and its Redis script) speak are the table's. */
static void test_store_reasons(void **state)
{
	(void)state;
	for (int i = 0; i < GL_REASONS; i++) {
		enum gl_reason r = (enum gl_reason)i;
		enum why w = why_of_gl(r);
		assert_int_not_equal(w, WHY_NONE);
		assert_true(why_is(w, WHY_REASON));
		assert_false(why_is(w, WHY_REFUSAL));
		assert_string_equal(gl_reason_name(r), why_name(w));
		for (int k = 0; k < i; k++)
			assert_int_not_equal(why_of_gl((enum gl_reason)k), w);
		enum gl_reason back = GL_REASON_NEW;
		assert_true(gl_reason_parse(why_name(w), &back));
		assert_int_equal(back, r);
	}
	assert_int_equal(why_of_gl((enum gl_reason)GL_REASONS), WHY_NONE);
	assert_string_equal(gl_reason_name((enum gl_reason)GL_REASONS), "unknown");
	enum gl_reason r = GL_REASON_AWL;
	assert_false(gl_reason_parse("mynetworks", &r));
	assert_false(gl_reason_parse("unknown", &r));
	assert_false(gl_reason_parse("", &r));
	assert_int_equal(r, GL_REASON_AWL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_published_names),
		cmocka_unit_test(test_names_plain_and_unique),
		cmocka_unit_test(test_store_reasons),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
