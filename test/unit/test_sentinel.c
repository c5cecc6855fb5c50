#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sentinel.h"
#include "store_type.h"

static redisReply str(char *s)
{
	return (redisReply){ .type = REDIS_REPLY_STRING, .str = s, .len = strlen(s) };
}

/* A two-element answer HOST PORT, as a sentinel sends it. */
static bool read_pair(char *host, char *port, struct sentinel_addr *a, const char **why)
{
	redisReply h = str(host), p = str(port);
	redisReply *el[2] = { &h, &p };
	redisReply r = { .type = REDIS_REPLY_ARRAY, .elements = 2, .element = el };
	bool err;
	bool ok = sentinel_read_master(&r, a, why, &err);
	assert_false(err);
	return ok;
}

static void test_master_named(void **state)
{
	(void)state;
	struct sentinel_addr a;
	const char *why;
	assert_true(read_pair("192.0.2.7", "6380", &a, &why));
	assert_string_equal(a.host, "192.0.2.7");
	assert_int_equal(a.port, 6380);
	assert_true(read_pair("2001:db8::1", "6379", &a, &why));
	assert_string_equal(a.host, "2001:db8::1");
}

/* Names (would need a blocking lookup), bad ports and junk are refused
 * alike by the daemon and greygate-ctl. */
static void test_unusable_answers(void **state)
{
	(void)state;
	struct sentinel_addr a;
	const char *why;
	assert_false(read_pair("redis.example", "6379", &a, &why));
	assert_string_equal(why, "unusable answer (not a numeric ADDRESS PORT)");
	assert_false(read_pair("192.0.2.7", "0", &a, &why));
	assert_false(read_pair("192.0.2.7", "65536", &a, &why));
	assert_false(read_pair("192.0.2.7", "63x", &a, &why));
	assert_false(read_pair("192.0.2.7", "", &a, &why));

	bool err;
	redisReply nil = { .type = REDIS_REPLY_NIL };
	assert_false(sentinel_read_master(&nil, &a, &why, &err));
	assert_false(err);
	assert_string_equal(why, "does not know the master name");
	redisReply e = { .type = REDIS_REPLY_ERROR, .str = "NOAUTH Authentication required." };
	assert_false(sentinel_read_master(&e, &a, &why, &err));
	assert_true(err);
	assert_string_equal(why, "NOAUTH Authentication required.");
	redisReply one = str("192.0.2.7");
	redisReply *el[1] = { &one };
	redisReply arr = { .type = REDIS_REPLY_ARRAY, .elements = 1, .element = el };
	assert_false(sentinel_read_master(&arr, &a, &why, &err));
}

static void test_parse_entries(void **state)
{
	(void)state;
	struct sentinel_addr a;
	assert_true(sentinel_parse("192.0.2.1:26379", &a));
	assert_string_equal(a.host, "192.0.2.1");
	assert_int_equal(a.port, 26379);
	assert_true(sentinel_parse("[2001:db8::2]:26380", &a));
	assert_string_equal(a.host, "2001:db8::2");
	assert_int_equal(a.port, 26380);
	assert_false(sentinel_parse("192.0.2.1", &a));
}

static void test_round_starts_with_last(void **state)
{
	(void)state;
	assert_int_equal(sentinel_turn(2, 0, 3), 2);
	assert_int_equal(sentinel_turn(2, 1, 3), 0);
	assert_int_equal(sentinel_turn(2, 2, 3), 1);
}

static void test_store_types(void **state)
{
	(void)state;
	enum store_kind k;
	assert_int_equal(store_type_find("memory", &k), 0);
	assert_int_equal(k, STORE_MEMORY);
	assert_true(store_type(k)->flags & STORE_EMBEDDED);
	assert_int_equal(store_type_find("redis", &k), 0);
	assert_int_equal(k, STORE_REDIS);
	assert_false(store_type(k)->flags & STORE_EMBEDDED);
	assert_int_equal(store_type_find("Redis", &k), -1);
	assert_string_equal(store_type_names(), "\"memory\", \"redis\" or \"redis-cluster\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_master_named),
		cmocka_unit_test(test_unusable_answers),
		cmocka_unit_test(test_parse_entries),
		cmocka_unit_test(test_round_starts_with_last),
		cmocka_unit_test(test_store_types),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
