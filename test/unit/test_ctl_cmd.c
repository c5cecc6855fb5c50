#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "ctl_cmd.h"
#include "pool_key.h"
#include "store_type.h"

static void ttl_parse_bounds(void **state)
{
	(void)state;
	int64_t t = -1;
	assert_int_equal(ctl_parse_ttl("1", &t), 0);
	assert_int_equal(t, 1);
	assert_int_equal(ctl_parse_ttl("86400", &t), 0);
	assert_int_equal(t, 86400);
	assert_int_equal(ctl_parse_ttl("315360000", &t), 0);     /* ten years */
	assert_int_equal(t, CTL_TTL_MAX);

	const char *bad[] = {
		"", "0", "-1", "+5", " 5", "5 ", "5s", "0x10", "315360001",
		"9223372036854775807", "9223372036854775808", "99999999999999999999999999",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		t = 42;
		if (ctl_parse_ttl(bad[i], &t) != -1)
			fail_msg("TTL '%s' accepted", bad[i]);
		assert_int_equal(t, 42);                           /* left alone */
	}
}

/* A store that records what `whitelist` asked of it. */
static int wl_calls;
static int64_t wl_ttl;

static int fake_whitelist(void *ctx, const char *net, int threshold, int64_t ttl)
{
	(void)ctx;
	(void)net;
	(void)threshold;
	wl_calls++;
	wl_ttl = ttl;
	return 0;
}

static int run(const char *ttl, char *out, size_t len)
{
	struct gg_config cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.greylist.awl_threshold = 1;
	cfg.greylist.ipv4_prefix = 24;
	cfg.greylist.ipv6_prefix = 64;
	cfg.greylist.pass_lifetime = 3600;
	struct ctl_store st = { .whitelist = fake_whitelist };
	char *argv[] = { "whitelist", "192.0.2.0/24", (char *)ttl };
	FILE *f = fmemopen(out, len, "w");
	assert_non_null(f);
	int rc = ctl_execute(&cfg, &st, NULL, ttl ? 3 : 2, argv, f, NULL);
	fclose(f);
	return rc;
}

static void whitelist_refuses_huge_ttl(void **state)
{
	(void)state;
	char out[512];
	wl_calls = 0;
	assert_int_equal(run("9223372036854775807", out, sizeof out), 2);
	assert_int_equal(wl_calls, 0);
	assert_non_null(strstr(out, "error: TTL '9223372036854775807' is not a number of "
				    "seconds from 1 to 315360000"));

	assert_int_equal(run("315360000", out, sizeof out), 0);
	assert_int_equal(wl_calls, 1);
	assert_int_equal(wl_ttl, CTL_TTL_MAX);
	assert_non_null(strstr(out, "whitelisted net=192.0.2.0/24 ttl=315360000"));

	assert_int_equal(run(NULL, out, sizeof out), 0);         /* default */
	assert_int_equal(wl_ttl, 3600);
}

/* ---- --json ---- */

/* A store of two triplets: one plain, one whose parts hold what JSON must
 * escape and bytes that are not UTF-8. */
static const struct ctl_entry json_entries[] = {
	{ "00112233445566778899aabbccddeeff", "192.0.2.0/24", "", "r@example.org", false,
	  1700000000, 300, false },
	{ "ffeeddccbbaa99887766554433221100", "192.0.2.0/24", "a\"b\\c\td\x01@\xc3\xa9.example",
	  "bad\xff\xc3(\xed\xa0\x80@\xf0\x9f\x93\xa7.example", true, 1700000001, 86400, false },
};

static int json_walk(void *ctx, uint64_t *cursor, size_t budget,
		     bool (*fn)(void *arg, const struct ctl_entry *e), void *arg)
{
	(void)ctx;
	(void)budget;
	for (size_t i = 0; i < 2; i++)
		if (!fn(arg, &json_entries[i]))
			break;
	*cursor = 0;
	return 0;
}

static int json_get(void *ctx, const struct triplet *t, struct ctl_entry *e)
{
	(void)ctx;
	(void)t;
	*e = json_entries[1];
	return 1;
}

static struct gl_params explained_with;     /* the last dry run's parameters */
static char explained_key[POOL_TEXT_MAX];

static int json_explain(void *ctx, const struct gl_params *p, const struct triplet *t,
			struct gl_decision *d)
{
	(void)ctx;
	explained_with = *p;
	snprintf(explained_key, sizeof explained_key, "%s", triplet_keytext(t));
	*d = (struct gl_decision){ .action = GL_GREYLIST, .reason = GL_REASON_EARLY,
				   .delay_left = 42, .capped = true };
	return 0;
}

static int json_stats(void *ctx, struct ctl_stats *s)
{
	(void)ctx;
	ctl_stat_str(s, "store", "fake \"one\"");
	ctl_stat_num(s, "triplets", 2);
	ctl_stat_num(s, "passed", -1);
	return 0;
}

static int run_facts(char **argv, int argc, char *out, size_t len, const struct ctl_facts *facts)
{
	static const enum pool_kind spf_only[] = { POOL_SPF };
	struct gg_config cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.greylist.ipv4_prefix = 24;
	cfg.greylist.ipv6_prefix = 64;
	cfg.greylist.delay = 300;
	cfg.greylist.awl_threshold = 5;
	cfg.scoring.suspicious_delay = 900;
	memcpy(cfg.greylist.pool_keys, spf_only, sizeof spf_only);
	cfg.greylist.npool_keys = 1;
	struct ctl_store st = { .walk = json_walk, .get = json_get, .explain = json_explain,
				.stats = json_stats };
	memset(out, 0, len);
	FILE *f = fmemopen(out, len, "w");
	assert_non_null(f);
	int rc = ctl_execute(&cfg, &st, NULL, argc, argv, f, facts);
	fclose(f);
	return rc;
}

static int run_json(char **argv, int argc, char *out, size_t len)
{
	return run_facts(argv, argc, out, len, NULL);
}

/* explain with the daemon's facts: the class line, the next decision the
 * class makes (hostile, trusted) or the dry run with the class's
 * parameters (suspicious), the spf: key; and the facts line read back. */
static void explain_shows_the_class(void **state)
{
	(void)state;
	char out[2048], line[1024];
	struct ctl_facts f = { .scoring = CTL_SCORING_ON, .cls = CLASS_HOSTILE, .score = 11,
			       .spf = "pass" };
	snprintf(f.parts, sizeof f.parts, "dnsbl:bl.test:8,no_ptr:3");
	snprintf(f.spf_domain, sizeof f.spf_domain, "b.example");
	FILE *mem = fmemopen(line, sizeof line, "w");
	ctl_facts_write(mem, &f);
	fclose(mem);
	assert_string_equal(line, "facts scoring=on class=hostile score=11 "
				  "parts=dnsbl:bl.test:8,no_ptr:3 name= spf=pass spf_domain=b.example\n");
	struct ctl_facts back;
	assert_true(ctl_facts_read(line, &back));
	assert_int_equal(back.scoring, CTL_SCORING_ON);
	assert_int_equal(back.cls, CLASS_HOSTILE);
	assert_int_equal(back.score, 11);
	assert_string_equal(back.parts, f.parts);
	assert_string_equal(back.spf_domain, "b.example");
	assert_false(ctl_facts_read("facts class=nonsense scoring=on\n", &back));
	assert_false(ctl_facts_read("status=0\n", &back));

	char *explain[] = { "explain", "192.0.2.7", "a@b.example", "r@example.org" };
	assert_int_equal(run_facts(explain, 4, out, sizeof out, &f), 0);
	assert_non_null(strstr(out, "score: class=hostile score=11 parts=dnsbl:bl.test:8,no_ptr:3\n"
				    "next: action=reject reason=hostile\n"));
	assert_string_equal(explained_key, "spf:b.example");

	f.cls = CLASS_SUSPICIOUS;
	assert_int_equal(run_facts(explain, 4, out, sizeof out, &f), 0);
	assert_non_null(strstr(out, "next: action=greylist reason=early delay_left=42"));
	assert_int_equal(explained_with.delay, 900);
	assert_int_equal(explained_with.awl_threshold, 0);

	f.cls = CLASS_TRUSTED;
	char *json[] = { "--json", "explain", "192.0.2.7", "a@b.example", "r@example.org" };
	assert_int_equal(run_facts(json, 5, out, sizeof out, &f), 0);
	assert_non_null(strstr(out, "\"scoring\":\"on\",\"class\":\"trusted\",\"score\":11,"
				    "\"parts\":\"dnsbl:bl.test:8,no_ptr:3\",\"next\":{\"action\":\"pass\","
				    "\"reason\":\"trusted\",\"capped\":false}"));

	f.scoring = CTL_SCORING_OFF;
	assert_int_equal(run_facts(explain, 4, out, sizeof out, &f), 0);
	assert_non_null(strstr(out, "score: class=normal scoring=off\n"));
	assert_int_equal(explained_with.delay, 300);
}

static void json_list_explain_stats(void **state)
{
	(void)state;
	char out[2048];
	char *list[] = { "--json", "list" };
	assert_int_equal(run_json(list, 2, out, sizeof out), 0);
	assert_string_equal(out,
		"{\"key\":\"00112233445566778899aabbccddeeff\",\"net\":\"192.0.2.0/24\","
		"\"pool\":null,\"sender\":\"<>\",\"rcpt\":\"r@example.org\",\"state\":\"pending\","
		"\"first_seen\":\"2023-11-14T22:13:20Z\",\"ttl\":300}\n"
		"{\"key\":\"ffeeddccbbaa99887766554433221100\",\"net\":\"192.0.2.0/24\","
		"\"pool\":null,\"sender\":\"a\\\"b\\\\c\\u0009d\\u0001@\xc3\xa9.example\","
		"\"rcpt\":\"bad\\ufffd\\ufffd(\\ufffd\\ufffd\\ufffd@\xf0\x9f\x93\xa7.example\","
		"\"state\":\"passed\",\"first_seen\":\"2023-11-14T22:13:21Z\",\"ttl\":86400}\n");

	char *explain[] = { "--json", "explain", "192.0.2.7", "<>", "r@example.org" };
	assert_int_equal(run_json(explain, 5, out, sizeof out), 0);
	assert_non_null(strstr(out, "\"net\":\"192.0.2.0/24\",\"pool\":null,\"sender\":\"<>\","
				    "\"rcpt\":\"r@example.org\",\"stored\":{\"key\":\"ffee"));
	assert_non_null(strstr(out, "\"ttl\":86400},\"scoring\":\"unknown\",\"class\":null,"
				    "\"score\":null,\"parts\":null,\"scoring_why\":\"not asked\","
				    "\"next\":{\"action\":\"greylist\","
				    "\"reason\":\"early\",\"delay_left\":42,\"capped\":true},"
				    "\"why\":\"seen, but the delay has not passed yet\"}\n"));
	assert_int_equal(out[0], '{');
	assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);   /* one line */

	char *stats[] = { "--json", "stats" };
	assert_int_equal(run_json(stats, 2, out, sizeof out), 0);
	assert_string_equal(out, "{\"store\":\"fake \\\"one\\\"\",\"triplets\":2,\"passed\":-1}\n");
	/* the text form is what it was */
	assert_int_equal(run_json(stats + 1, 1, out, sizeof out), 0);
	assert_string_equal(out, "store=fake \"one\" triplets=2 passed=-1\n");
	assert_int_equal(run_json(list + 1, 1, out, sizeof out), 0);
	assert_non_null(strstr(out, "key=00112233445566778899aabbccddeeff net=192.0.2.0/24 "
				    "sender=<> rcpt=r@example.org state=pending "
				    "first_seen=2023-11-14T22:13:20Z ttl=300\n"));
	assert_non_null(strstr(out, "\nshown=2\n"));
}

/* An entry stored under a pool key: the store keeps the key text alone;
 * flagged backup_first, which list shows. */
static const struct ctl_entry pool_entry = { "0123456789abcdef0123456789abcdef",
					     "ptr:example.com", "a@b.example", "r@example.org",
					     true, 1700000000, 60, true };

static int pool_walk(void *ctx, uint64_t *cursor, size_t budget,
		     bool (*fn)(void *arg, const struct ctl_entry *e), void *arg)
{
	(void)ctx;
	(void)budget;
	fn(arg, &pool_entry);
	*cursor = 0;
	return 0;
}

static int pool_get(void *ctx, const struct triplet *t, struct ctl_entry *e)
{
	(void)ctx;
	(void)t;
	*e = pool_entry;
	return 1;
}

static int run_pool(char **argv, int argc, char *out, size_t len)
{
	static const enum pool_kind ptr_only[] = { POOL_PTR };
	struct gg_config cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.greylist.ipv4_prefix = 24;
	cfg.greylist.ipv6_prefix = 64;
	memcpy(cfg.greylist.pool_keys, ptr_only, sizeof ptr_only);
	cfg.greylist.npool_keys = 1;
	struct ctl_store st = { .walk = pool_walk, .get = pool_get, .explain = json_explain };
	memset(out, 0, len);
	FILE *f = fmemopen(out, len, "w");
	assert_non_null(f);
	int rc = ctl_execute(&cfg, &st, NULL, argc, argv, f, NULL);
	fclose(f);
	return rc;
}

/* list and explain show the pool key: as pool= in text, as "pool" in
 * JSON, where "net" is null for an entry that has only its pool key. */
static void pool_key_in_list_and_explain(void **state)
{
	(void)state;
	char out[2048];
	char *list[] = { "--json", "list" };
	assert_int_equal(run_pool(list, 2, out, sizeof out), 0);
	assert_string_equal(out,
		"{\"key\":\"0123456789abcdef0123456789abcdef\",\"net\":null,"
		"\"pool\":\"ptr:example.com\",\"sender\":\"a@b.example\","
		"\"rcpt\":\"r@example.org\",\"state\":\"passed\","
		"\"first_seen\":\"2023-11-14T22:13:20Z\",\"ttl\":60,\"backup_first\":true}\n");
	assert_int_equal(run_pool(list + 1, 1, out, sizeof out), 0);
	assert_non_null(strstr(out, "key=0123456789abcdef0123456789abcdef pool=ptr:example.com "
				    "sender=a@b.example "));
	assert_non_null(strstr(out, " ttl=60 backup_first=yes\n"));

	/* the client's confirmed name given: its ptr: key, and the network */
	char *explain[] = { "--json", "explain", "192.0.2.7", "a@b.example", "r@example.org",
			    "mx-1.out.example.com" };
	assert_int_equal(run_pool(explain, 6, out, sizeof out), 0);
	assert_non_null(strstr(out, "\"net\":\"192.0.2.0/24\",\"pool\":\"ptr:example.com\","
				    "\"sender\":\"a@b.example\""));
	assert_non_null(strstr(out, "\"stored\":{\"key\":\"0123456789abcdef0123456789abcdef\","
				    "\"net\":null,\"pool\":\"ptr:example.com\""));
	/* no name: the network key */
	assert_int_equal(run_pool(explain, 5, out, sizeof out), 0);
	assert_non_null(strstr(out, "\"net\":\"192.0.2.0/24\",\"pool\":null,"));
	assert_int_equal(run_pool(explain + 1, 5, out, sizeof out), 0);
	assert_non_null(strstr(out, "net=192.0.2.0/24 pool=ptr:example.com sender=a@b.example "
				    "rcpt=r@example.org key="));
}

/* greygate-ctl asks the row, never the name: a kind it reaches by itself
 * has both ends of the way, an embedded one has none. */
static void rows_say_how_ctl_reaches_them(void **state)
{
	(void)state;
	for (int k = 0; k < STORE_KINDS; k++) {
		const struct store_type *row = store_type((enum store_kind)k);
		bool embedded = row->flags & STORE_EMBEDDED;
		if (embedded != (row->ctl_open == NULL))
			fail_msg("store type %s: embedded=%d but ctl_open %s", row->name, embedded,
				 row->ctl_open ? "set" : "unset");
		assert_true((row->ctl_open == NULL) == (row->ctl_close == NULL));
	}
}

/* The Redis row's way when nothing answers: NULL, each failure told. */
static void redis_admin_tells_why(void **state)
{
	(void)state;
	char *sentinels[] = { "127.0.0.1:1", "[::1]:1" };
	struct gg_config cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.store.redis.host = "127.0.0.1";
	cfg.store.redis.port = 1;               /* nothing listens on port 1 */
	cfg.store.redis.password = "";
	cfg.store.redis.prefix = "gg:";
	cfg.store.redis.master_name = "mymaster";
	cfg.store.redis.connect_timeout_ms = 2000;
	const struct store_type *row = store_type(STORE_REDIS);
	char out[1024];
	void *ctx = NULL;

	FILE *f = fmemopen(out, sizeof out, "w");
	assert_non_null(f);
	assert_null(row->ctl_open(&cfg, &ctx, f));
	fclose(f);
	assert_non_null(strstr(out, "greygate-ctl: cannot connect to redis 127.0.0.1:1:"));

	cfg.store.redis.sentinels = sentinels;
	cfg.store.redis.nsentinels = 2;
	f = fmemopen(out, sizeof out, "w");
	assert_non_null(f);
	assert_null(row->ctl_open(&cfg, &ctx, f));
	fclose(f);
	assert_non_null(strstr(out, "greygate-ctl: sentinel 127.0.0.1:1: "));
	assert_non_null(strstr(out, "greygate-ctl: sentinel [::1]:1: "));
	assert_non_null(strstr(out, "greygate-ctl: no sentinel named the master 'mymaster'"));
	assert_null(strstr(out, "cannot connect to redis"));    /* never tried */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ttl_parse_bounds),
		cmocka_unit_test(whitelist_refuses_huge_ttl),
		cmocka_unit_test(rows_say_how_ctl_reaches_them),
		cmocka_unit_test(json_list_explain_stats),
		cmocka_unit_test(explain_shows_the_class),
		cmocka_unit_test(pool_key_in_list_and_explain),
		cmocka_unit_test(redis_admin_tells_why),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
