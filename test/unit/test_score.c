/* The score (lib/score.h): parts, classes by threshold, the HELO signal;
 * and the scoring settings as the configuration loads them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "config_schema.h"
#include "score.h"
#include "tmpdir.h"

static void test_parts_and_total(void **state)
{
	(void)state;
	struct score s = { 0 };
	char text[200];
	score_parts_text(&s, text, sizeof text);
	assert_string_equal(text, "");
	score_add(&s, SIG_DNSBL, "zen.example", 3);
	score_add(&s, SIG_NO_PTR, NULL, 2);
	score_add(&s, SIG_BAD_HELO, NULL, 0);      /* a weight of 0 is no part */
	assert_int_equal(s.total, 5);
	assert_int_equal(s.n, 2);
	score_parts_text(&s, text, sizeof text);
	assert_string_equal(text, "dnsbl:zen.example:3,no_ptr:2");
	score_add(&s, SIG_DNSWL, "wl.example", -5);
	score_parts_text(&s, text, sizeof text);
	assert_string_equal(text, "dnsbl:zen.example:3,no_ptr:2,dnswl:wl.example:-5");
	score_parts_text(&s, text, 10);             /* cut short, terminated */
	assert_int_equal(strlen(text), 9);
	/* more parts than it names still count */
	struct score many = { 0 };
	for (int i = 0; i < SCORE_PARTS_MAX + 3; i++)
		score_add(&many, SIG_BAD_HELO, NULL, 1);
	assert_int_equal(many.total, SCORE_PARTS_MAX + 3);
	assert_int_equal(many.n, SCORE_PARTS_MAX);
}

static void test_classes(void **state)
{
	(void)state;
	const struct score_classes t = { .trusted = -3, .suspicious = 3, .hostile = 8 };
	assert_int_equal(score_classify(&t, -5), CLASS_TRUSTED);
	assert_int_equal(score_classify(&t, -3), CLASS_TRUSTED);
	assert_int_equal(score_classify(&t, -2), CLASS_NORMAL);
	assert_int_equal(score_classify(&t, 0), CLASS_NORMAL);
	assert_int_equal(score_classify(&t, 2), CLASS_NORMAL);
	assert_int_equal(score_classify(&t, 3), CLASS_SUSPICIOUS);
	assert_int_equal(score_classify(&t, 7), CLASS_SUSPICIOUS);
	assert_int_equal(score_classify(&t, 8), CLASS_HOSTILE);
	assert_string_equal(score_class_name(CLASS_SUSPICIOUS), "suspicious");
	assert_string_equal(signal_name(SIG_UNCONFIRMED_PTR), "unconfirmed_ptr");
}

/* A trapped client is hostile whatever its total, even a DNSWL-listed
 * one; the trap is named once in the parts. */
static void test_trapped_is_hostile(void **state)
{
	(void)state;
	const struct score_classes t = { .trusted = -3, .suspicious = 3, .hostile = 8 };
	struct score s = { 0 };
	score_add(&s, SIG_DNSWL, "wl.example", -5);
	assert_int_equal(score_class_of(&t, &s), CLASS_TRUSTED);
	score_add(&s, SIG_SPAMTRAP, NULL, 0);
	score_add(&s, SIG_SPAMTRAP, NULL, 0);
	assert_true(s.trapped);
	assert_int_equal(s.total, -5);
	assert_int_equal(score_class_of(&t, &s), CLASS_HOSTILE);
	char text[100];
	score_parts_text(&s, text, sizeof text);
	assert_string_equal(text, "dnswl:wl.example:-5,spamtrap:0");
	assert_false(signal_weighted(SIG_SPAMTRAP));
	assert_true(signal_weighted(SIG_BACKUP_FIRST));
	assert_string_equal(signal_name(SIG_BACKUP_FIRST), "backup_first");
}

static void test_bad_helo(void **state)
{
	(void)state;
	struct netlist mine = { 0 };
	struct cidr c;
	bool hb;
	assert_true(cidr_parse("192.0.2.20", &c, &hb));
	assert_int_equal(netlist_add(&mine, &c), 0);
	assert_false(helo_is_bad("mail.example.org", "mx.example", &mine));
	assert_false(helo_is_bad("mail.example.org.", "mx.example", &mine));
	assert_false(helo_is_bad("[198.51.100.7]", "mx.example", &mine));
	assert_true(helo_is_bad("198.51.100.7", "mx.example", &mine));     /* bare address */
	assert_true(helo_is_bad("[192.0.2.20]", "mx.example", &mine));     /* ours */
	assert_true(helo_is_bad("localhost", "mx.example", &mine));        /* not FQDN */
	assert_true(helo_is_bad(".example", "mx.example", &mine));
	assert_true(helo_is_bad("example.", "mx.example", &mine));
	assert_true(helo_is_bad("MX.Example", "mx.example", &mine));       /* our name */
	netlist_free(&mine);
}

/* Adding a signal is a row in SCORE_SIGNALS and, when its weight is a
 * setting, that setting's row: each weighted signal has exactly its
 * scoring.weights row, landing in its own slot, and no other does. */
static void test_weight_rows(void **state)
{
	(void)state;
	for (enum signal sig = 0; sig < SIG_COUNT; sig++) {
		char p[64];
		snprintf(p, sizeof p, "scoring.weights.%s", signal_name(sig));
		const struct cfg_setting *r = cfg_setting_find(p);
		if (!signal_weighted(sig)) {
			assert_null(r);
			continue;
		}
		if (!r)
			fail_msg("%s has no row", p);
		assert_int_equal(r->off, offsetof(struct gg_config, scoring.weights) +
						 (size_t)sig * sizeof(int));
	}
}

static struct gg_config *load(const char *text, char *err, size_t errlen)
{
	const char *file = path("gg.conf");
	write_file(file, text, strlen(text));
	return gg_config_load(file, err, errlen);
}

static void test_settings(void **state)
{
	(void)state;
	char err[512];
	struct gg_config *c = load("myhostname = \"m.example\";\n", err, sizeof err);
	assert_non_null(c);
	assert_false(c->scoring.enabled);
	assert_false(c->greylist.shadow);
	assert_int_equal(c->scoring.weights[SIG_NO_PTR], 2);
	assert_int_equal(c->scoring.weights[SIG_GENERIC_PTR], 2);
	assert_int_equal(c->scoring.weights[SIG_PREGREET], 4);
	assert_int_equal(c->greet_wait, 0);   /* off: the banner at once, as before */
	gg_config_unref(c);
	c = load("myhostname = \"m.example\"; greylist = { mode = \"shadow\"; };\n"
		 "scoring = { dnsbl = [ \"zen.example=127.0.0.[2..11]*3\", \"wl.example*-5\" ];\n"
		 "  hostile = { action = \"tempfail\"; }; suspicious = { delay = 600; }; };\n"
		 "greet_wait = 3;\n",
		 err, sizeof err);
	assert_non_null(c);
	assert_true(c->scoring.enabled);
	assert_true(c->greylist.shadow);
	assert_true(c->scoring.hostile_tempfail);
	assert_int_equal(c->scoring.suspicious_delay, 600);
	assert_int_equal(c->scoring.nsites, 2);
	assert_string_equal(c->scoring.sites[1].domain, "wl.example");
	assert_int_equal(c->scoring.sites[1].weight, -5);
	assert_int_equal(c->greet_wait, 3);
	gg_config_unref(c);
	static const struct { const char *text, *error; } bad[] = {
		{ "greylist = { mode = \"enforcing\"; };", "greylist.mode must be" },
		{ "scoring = { hostile = { action = \"drop\"; }; };", "scoring.hostile.action must be" },
		{ "scoring = { dnsbl = [ \"zen.example=127.0.0.[2..300]\" ]; };", "scoring.dnsbl: 'zen" },
		{ "scoring = { suspicious = { delay = 7200; }; };\ngreylist = { retry_window = 3600; };",
		  "scoring.suspicious.delay must be shorter" },
		{ "greet_wait = 61;", "greet_wait" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char text[512];
		snprintf(text, sizeof text, "myhostname = \"m.example\";\n%s\n", bad[i].text);
		assert_null(load(text, err, sizeof err));
		if (!strstr(err, bad[i].error))
			fail_msg("\"%s\": error \"%s\", expected \"%s\"", bad[i].text, err, bad[i].error);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parts_and_total),
		cmocka_unit_test(test_classes),
		cmocka_unit_test(test_trapped_is_hostile),
		cmocka_unit_test(test_bad_helo),
		cmocka_unit_test(test_weight_rows),
		cmocka_unit_test(test_settings),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
