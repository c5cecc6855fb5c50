#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "greylist_lua.h"
#include "redis_slots.h"
#include "triplet.h"

#include "mk_triplet.h"

static unsigned slot_of(const char *key)
{
	return redis_key_slot(key, strlen(key));
}

/* The reference values of the Redis Cluster specification. */
static void test_crc16_and_slots(void **state)
{
	(void)state;
	assert_int_equal(redis_crc16("123456789", 9), 0x31c3);
	assert_int_equal(slot_of("foo"), 12182);
	assert_int_equal(slot_of("{user1000}.following"), slot_of("user1000"));
	assert_int_equal(slot_of("{user1000}.followers"), slot_of("user1000"));
	/* an empty tag hashes the whole key; only the first '{' counts */
	assert_int_equal(slot_of("foo{}{bar}"), redis_crc16("foo{}{bar}", 10) & 16383);
	assert_int_equal(slot_of("foo{{bar}}zap"), slot_of("{bar"));
	assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
	assert_int_equal(slot_of("gg:{"), redis_crc16("gg:{", 4) & 16383);
	/* greygate's tagged keys of one client network share its slot */
	assert_int_equal(slot_of("gg:t:{192.0.2.0/24}00ff"), slot_of("gg:a:{192.0.2.0/24}"));
	assert_int_equal(slot_of("gg:n:{192.0.2.0/24}"), slot_of("192.0.2.0/24"));
}

/* A plain Redis keeps the names it always had (no re-greylisting on an
 * upgrade); a cluster's share the network's tag, so one slot. */
static void test_script_keys(void **state)
{
	(void)state;
	struct triplet t = mk("192.0.2.0/24", "a@example.org", "b@example.net");
	struct gl_script_keys k;
	gl_script_keys("gg:", &t, false, &k);
	char want[128];
	snprintf(want, sizeof want, "gg:t:%s", t.hex);
	assert_string_equal(k.triplet, want);
	assert_string_equal(k.awl, "gg:a:192.0.2.0/24");
	assert_string_equal(k.new_count, "gg:n:192.0.2.0/24");

	gl_script_keys("gg:", &t, true, &k);
	snprintf(want, sizeof want, "gg:t:{192.0.2.0/24}%s", t.hex);
	assert_string_equal(k.triplet, want);
	assert_string_equal(k.awl, "gg:a:{192.0.2.0/24}");
	assert_string_equal(k.new_count, "gg:n:{192.0.2.0/24}");
	unsigned s = slot_of("192.0.2.0/24");
	assert_int_equal(slot_of(k.triplet), s);
	assert_int_equal(slot_of(k.awl), s);
	assert_int_equal(slot_of(k.new_count), s);

	/* the longest prefix and network still fit */
	struct triplet v6 = mk("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "a@b.c", "d@e.f");
	char prefix[65];
	memset(prefix, 'p', 64);
	prefix[64] = 0;
	gl_script_keys(prefix, &v6, true, &k);
	assert_int_equal(strlen(k.triplet), 64 + 2 + 1 + strlen(v6.net) + 1 + TRIPLET_HEX_LEN);
}

/* The script's KEYS and ARGV, in the order its header lists them: one
 * list for the daemon's decisions and greygate-ctl's explain. */
static void test_script_args(void **state)
{
	(void)state;
	struct triplet t = mk("192.0.2.0/24", "a@example.org", "b@example.net");
	struct gl_params p = { .delay = 300, .retry_window = 86400, .pass_lifetime = 3000000,
			       .awl_threshold = 5, .max_new_per_client = 200,
			       .void_before = 1700000000, .set_backup_first = true,
			       .flagged_delay = 900, .flagged_awl_threshold = 0,
			       .flagged_refuse = false };
	struct gl_script_args a;
	gl_script_args("gg:", &p, &t, false, true, &a);
	char tkey[128];
	snprintf(tkey, sizeof tkey, "gg:t:%s", t.hex);
	const char *want[GL_SCRIPT_NARGS] = {
		tkey, "gg:a:192.0.2.0/24", "gg:n:192.0.2.0/24",
		"300", "86400", "3000000", "5", "200", "1", "192.0.2.0/24", "a@example.org",
		"b@example.net", "1700000000", "1", "900", "0", "0",
	};
	for (size_t i = 0; i < GL_SCRIPT_NARGS; i++)
		assert_string_equal(a.v[i], want[i]);

	p.set_backup_first = false;
	p.flagged_refuse = true;
	gl_script_args("gg:", &p, &t, true, false, &a);
	assert_string_equal(a.v[8], "0");
	assert_string_equal(a.v[13], "0");
	assert_string_equal(a.v[16], "1");
	assert_string_equal(a.v[1], "gg:a:{192.0.2.0/24}");
}

/* ---- replies built by hand ---- */

static redisReply str(char *s)
{
	return (redisReply){ .type = REDIS_REPLY_STRING, .str = s, .len = strlen(s) };
}

static redisReply num(long long v)
{
	return (redisReply){ .type = REDIS_REPLY_INTEGER, .integer = v };
}

static redisReply arr(redisReply **el, size_t n)
{
	return (redisReply){ .type = REDIS_REPLY_ARRAY, .element = el, .elements = n };
}

/* One range LO..HI served by HOST:PORT, with one replica. */
struct entry {
	redisReply lo, hi, host, port, id, node, rhost, rport, replica, e;
	redisReply *nel[3], *rel[2], *el[4];
};

static redisReply *entry(struct entry *x, long long lo, long long hi, char *host, long long port)
{
	x->lo = num(lo);
	x->hi = num(hi);
	x->host = str(host);
	x->port = num(port);
	x->id = str("0123abcd");
	x->nel[0] = &x->host, x->nel[1] = &x->port, x->nel[2] = &x->id;
	x->node = arr(x->nel, 3);
	x->rhost = str("192.0.2.99");
	x->rport = num(7000);
	x->rel[0] = &x->rhost, x->rel[1] = &x->rport;
	x->replica = arr(x->rel, 2);
	x->el[0] = &x->lo, x->el[1] = &x->hi, x->el[2] = &x->node, x->el[3] = &x->replica;
	x->e = arr(x->el, 4);
	return &x->e;
}

/* A network's marks: "PREFIXm:NET" in a plain Redis, "PREFIXm:{NET}" in a
 * cluster; the marks script's answer is three integers, none negative. */
/* The greylist script's answer: seven elements, the second the reason;
 * 2 is a refusal (a flagged triplet whose class is hostile). */
static void test_script_answer(void **state)
{
	(void)state;
	redisReply v[7] = { num(2), str("triplet"), num(0), num(600), num(0), num(0), num(1) };
	redisReply *el[7] = { &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6] };
	redisReply r = arr(el, 7);
	struct gl_decision d = { 0 };
	assert_null(gl_script_answer(&r, &d));
	assert_int_equal(d.action, GL_REFUSE);
	assert_int_equal(d.reason, GL_REASON_TRIPLET);
	assert_int_equal(d.waited, 600);
	assert_true(d.backup_first);
	assert_false(d.first_pass);
	v[0] = num(0);
	v[5] = num(1);
	assert_null(gl_script_answer(&r, &d));
	assert_int_equal(d.action, GL_PASS);
	assert_true(d.first_pass);
	v[6] = str("1");
	assert_non_null(gl_script_answer(&r, &d));
	v[6] = num(0);
	r = arr(el, 6);
	assert_non_null(gl_script_answer(&r, &d));
}

static void test_mark_key_and_answer(void **state)
{
	(void)state;
	char key[128];
	assert_true(gl_mark_key("gg:", "192.0.2.0/24", false, key, sizeof key));
	assert_string_equal(key, "gg:m:192.0.2.0/24");
	assert_true(gl_mark_key("gg:", "192.0.2.0/24", true, key, sizeof key));
	assert_string_equal(key, "gg:m:{192.0.2.0/24}");
	assert_int_equal(slot_of(key), slot_of("192.0.2.0/24"));
	assert_false(gl_mark_key("gg:", "192.0.2.0/24", false, key, 10));

	redisReply v[3] = { num(1700000000), num(1700086400), num(1700000000) };
	redisReply *el[3] = { &v[0], &v[1], &v[2] };
	redisReply r = arr(el, 3);
	struct gl_marks m;
	assert_null(gl_marks_answer(&r, &m));
	assert_int_equal(m.now, 1700000000);
	assert_int_equal(m.trapped_until, 1700086400);
	assert_int_equal(m.trapped_at, 1700000000);
	v[2] = num(-1);
	assert_non_null(gl_marks_answer(&r, &m));
	v[2] = str("1");
	assert_non_null(gl_marks_answer(&r, &m));
	r = arr(el, 2);
	assert_non_null(gl_marks_answer(&r, &m));
	assert_string_equal(gl_mark_op(GL_MARK_TRAP), "trap");
	assert_string_equal(gl_mark_op(GL_MARK_NONE), "");
}

static struct slot_map map;

static void test_slot_map(void **state)
{
	(void)state;
	struct entry a, b, c;
	redisReply *el[3] = { entry(&a, 0, 5460, "127.0.0.1", 7001),
			      entry(&b, 5461, 10922, "", 7002),
			      entry(&c, 10923, 16383, "2001:db8::1", 7001) };
	redisReply r = arr(el, 3);
	assert_null(slot_map_read(&r, "127.0.0.2", &map));
	assert_int_equal(map.nnodes, 3);
	assert_string_equal(map.node[map.owner[0]].host, "127.0.0.1");
	assert_int_equal(map.node[map.owner[5460]].port, 7001);
	/* an empty address is the node that was asked */
	assert_string_equal(map.node[map.owner[5461]].host, "127.0.0.2");
	assert_int_equal(map.node[map.owner[10922]].port, 7002);
	assert_string_equal(map.node[map.owner[16383]].host, "2001:db8::1");

	/* a slot nobody serves (a range missing, or an unknown address) */
	c.host = str("?");
	assert_null(slot_map_read(&r, "127.0.0.2", &map));
	assert_int_equal(map.nnodes, 2);
	assert_int_equal(map.owner[16383], SLOT_NOBODY);
	assert_int_equal(map.owner[10922], 1);
}

static void test_slot_map_refused(void **state)
{
	(void)state;
	struct entry a;
	redisReply *el[1] = { entry(&a, 0, 100, "127.0.0.1", 7001) };
	redisReply r = arr(el, 1);
	assert_null(slot_map_read(&r, "127.0.0.1", &map));
	a.hi = num(16384);
	assert_non_null(slot_map_read(&r, "127.0.0.1", &map));
	a.hi = num(100), a.lo = num(101);      /* reversed */
	assert_non_null(slot_map_read(&r, "127.0.0.1", &map));
	a.lo = num(-1);
	assert_non_null(slot_map_read(&r, "127.0.0.1", &map));
	a.lo = num(0), a.host = str("redis.example");    /* a name */
	assert_non_null(slot_map_read(&r, "127.0.0.1", &map));
	a.host = str("127.0.0.1"), a.port = num(0);
	assert_non_null(slot_map_read(&r, "127.0.0.1", &map));
	a.port = str("7001");                            /* a string, not a number */
	assert_non_null(slot_map_read(&r, "127.0.0.1", &map));
	a.port = num(7001), a.node = str("x");
	assert_non_null(slot_map_read(&r, "127.0.0.1", &map));
	a.node = arr(a.nel, 3);
	a.e.elements = 2;                                /* no node */
	assert_non_null(slot_map_read(&r, "127.0.0.1", &map));
	/* an address with a NUL inside is not the address it seems */
	a.e.elements = 4;
	a.host.len = 12;
	assert_non_null(slot_map_read(&r, "127.0.0.1", &map));
	redisReply e = { .type = REDIS_REPLY_ERROR, .str = "ERR This instance has cluster support disabled" };
	assert_non_null(slot_map_read(&e, "127.0.0.1", &map));
}

/* More primaries than SLOTS_MAX_NODES: refused, not truncated. */
static void test_slot_map_too_many_nodes(void **state)
{
	(void)state;
	enum { N = SLOTS_MAX_NODES + 1 };
	static struct entry x[N];
	static redisReply *el[N];
	for (int i = 0; i < N; i++)
		el[i] = entry(&x[i], i, i, "127.0.0.1", 1000 + i);
	redisReply r = arr(el, N);
	assert_non_null(slot_map_read(&r, "127.0.0.1", &map));
	r.elements = N - 1;
	assert_null(slot_map_read(&r, "127.0.0.1", &map));
	assert_int_equal(map.nnodes, SLOTS_MAX_NODES);
}

static void test_redirects(void **state)
{
	(void)state;
	struct redirect d;
	assert_true(redirect_parse("MOVED 3999 127.0.0.1:6381", "127.0.0.9", &d));
	assert_int_equal(d.kind, REDIRECT_MOVED);
	assert_int_equal(d.slot, 3999);
	assert_string_equal(d.to.host, "127.0.0.1");
	assert_int_equal(d.to.port, 6381);
	assert_true(redirect_parse("ASK 16383 ::1:7000", "127.0.0.9", &d));
	assert_int_equal(d.kind, REDIRECT_ASK);
	assert_string_equal(d.to.host, "::1");
	assert_true(redirect_parse("MOVED 0 :7002", "127.0.0.9", &d));
	assert_string_equal(d.to.host, "127.0.0.9");

	assert_false(redirect_parse("MOVED 16384 127.0.0.1:6381", "x", &d));
	assert_false(redirect_parse("MOVED -1 127.0.0.1:6381", "x", &d));
	assert_false(redirect_parse("MOVED 1 127.0.0.1:0", "x", &d));
	assert_false(redirect_parse("MOVED 1 127.0.0.1:65536", "x", &d));
	assert_false(redirect_parse("MOVED 1 127.0.0.1:63x", "x", &d));
	assert_false(redirect_parse("MOVED 1 redis.example:6379", "x", &d));
	assert_false(redirect_parse("MOVED 1 127.0.0.1", "x", &d));
	assert_false(redirect_parse("MOVED 1", "x", &d));
	assert_false(redirect_parse("MOVEDX 1 127.0.0.1:1", "x", &d));
	assert_false(redirect_parse("ERR wrong", "x", &d));
	assert_false(redirect_parse("ASK 00000000000001 127.0.0.1:1", "x", &d));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc16_and_slots),
		cmocka_unit_test(test_script_keys),
		cmocka_unit_test(test_script_args),
		cmocka_unit_test(test_mark_key_and_answer),
		cmocka_unit_test(test_script_answer),
		cmocka_unit_test(test_slot_map),
		cmocka_unit_test(test_slot_map_refused),
		cmocka_unit_test(test_slot_map_too_many_nodes),
		cmocka_unit_test(test_redirects),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
