#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "ctl_cmd.h"
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
	int rc = ctl_execute(&cfg, &st, NULL, ttl ? 3 : 2, argv, f);
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
		cmocka_unit_test(redis_admin_tells_why),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
