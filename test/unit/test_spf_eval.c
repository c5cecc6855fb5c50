/* The SPF evaluator (lib/spf_eval.h) on a small fake zone: which
 * mechanism a pass came through and whether it is narrow, the lookup
 * limits and budget; and the outcome cache (lib/spf_cache.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "spf_cache.h"
#include "spf_eval.h"

/* name, type ("TXT", "A", "AAAA", "MX"), data */
static const char *const zone[][3] = {
	{ "narrow4.example", "TXT", "v=spf1 ip4:198.51.100.0/16 -all" },
	{ "wide4.example", "TXT", "v=spf1 ip4:198.51.0.0/15 -all" },
	{ "all.example", "TXT", "v=spf1 +all" },
	{ "qall.example", "TXT", "v=spf1 ?all" },
	{ "a24.example", "TXT", "v=spf1 a:host.a24.example/24 -all" },
	{ "host.a24.example", "A", "198.51.100.7" },
	{ "a8.example", "TXT", "v=spf1 a:host.a24.example/8 -all" },
	{ "mx.example", "TXT", "v=spf1 mx//48 -all" },
	{ "mx.example", "MX", "mail.mx.example" },
	{ "mail.mx.example", "AAAA", "2001:db8:1::25" },
	{ "inc.example", "TXT", "v=spf1 include:narrow4.example -all" },
	{ "v6.example", "TXT", "v=spf1 ip6:2001:db8::/32 ip6:2001:db8::/24 -all" },
	{ "v6wide.example", "TXT", "v=spf1 ip6:2001:db8::/24 -all" },
	{ "exists.example", "TXT", "v=spf1 exists:%{ir}.ok.example exists:any.ok.example -all" },
	{ "any.ok.example", "A", "127.0.0.2" },
	{ "7.100.51.198.ok.example", "A", "127.0.0.2" },
	{ "loop.example", "TXT", "v=spf1 include:loop.example" },
	{ "voids.example", "TXT", "v=spf1 a:n1.example a:n2.example a:n3.example +all" },
	{ "fail.example", "TXT", "v=spf1 -all" },
	{ "soft.example", "TXT", "v=spf1 ~all" },
	{ "two.example", "TXT", "v=spf1 -all" },
	{ "two.example", "TXT", "v=spf1 +all" },
	{ "redir.example", "TXT", "v=spf1 redirect=narrow4.example" },
};

static unsigned asked;

static void answer(const char *name, uint16_t type, struct dns_answer *a)
{
	memset(a, 0, sizeof *a);
	a->type = type;
	a->status = DNS_NXDOMAIN;
	const char *t = type == DNS_T_A ? "A" : type == DNS_T_AAAA ? "AAAA" : "MX";
	for (size_t i = 0; i < sizeof zone / sizeof zone[0]; i++) {
		if (strcmp(zone[i][0], name) != 0)
			continue;
		if (a->status == DNS_NXDOMAIN)
			a->status = DNS_NODATA;
		if (strcmp(zone[i][1], t) != 0)
			continue;
		struct dns_rr *rr = &a->rr[a->n++];
		if (type == DNS_T_MX)
			snprintf(rr->name, sizeof rr->name, "%s", zone[i][2]);
		else
			assert_true(ipaddr_parse(zone[i][2], &rr->addr));
		a->status = DNS_OK;
	}
}

/* bigN.example: a record of big_len bytes that includes big(N+1).example,
 * up to big_depth, whose record passes 192.0.2.0/24 */
static unsigned big_len, big_depth;

static bool big_txt(const char *name, struct dns_txt *t)
{
	unsigned n;
	char tail;
	if (sscanf(name, "big%u.exampl%c", &n, &tail) != 2)
		return false;
	int len = n < big_depth ? snprintf(t->buf, sizeof t->buf, "v=spf1 include:big%u.example x=", n + 1)
				: snprintf(t->buf, sizeof t->buf, "v=spf1 ip4:192.0.2.0/24 x=");
	while ((unsigned)len < big_len)
		t->buf[len++] = 'a';
	t->status = DNS_OK;
	t->n = 1;
	t->rr[0].len = (size_t)len;
	return true;
}

static void answer_txt(const char *name, struct dns_txt *t)
{
	memset(t, 0, sizeof *t);
	if (big_txt(name, t))
		return;
	t->status = DNS_NXDOMAIN;
	size_t used = 0;
	for (size_t i = 0; i < sizeof zone / sizeof zone[0]; i++) {
		if (strcmp(zone[i][0], name) != 0)
			continue;
		if (t->status == DNS_NXDOMAIN)
			t->status = DNS_NODATA;
		if (strcmp(zone[i][1], "TXT") != 0)
			continue;
		size_t len = strlen(zone[i][2]);
		memcpy(t->buf + used, zone[i][2], len);
		t->rr[t->n].off = used;
		t->rr[t->n++].len = len;
		used += len;
		t->status = DNS_OK;
	}
}

static struct spf_eval e;

static const struct spf_outcome *check_budget(const char *ip, const char *domain, unsigned budget)
{
	struct spf_input in = { .domain = domain, .local = "someone", .helo = "helo.example",
				.max_prefix4 = 16, .max_prefix6 = 32, .budget = budget };
	assert_true(ipaddr_parse(ip, &in.ip));
	spf_eval_init(&e, &in);
	asked = 0;
	while (spf_eval_run(&e) == SPF_STEP_LOOKUP) {
		asked++;
		if (e.q.type == DNS_T_TXT) {
			static struct dns_txt t;
			answer_txt(e.q.name, &t);
			spf_eval_feed_txt(&e, &t);
		} else {
			static struct dns_answer a;
			answer(e.q.name, e.q.type, &a);
			spf_eval_feed(&e, &a);
		}
	}
	assert_int_equal(asked, e.out.lookups);
	return &e.out;
}

static const struct spf_outcome *check(const char *ip, const char *domain)
{
	return check_budget(ip, domain, 0);
}

static void pass_is(const struct spf_outcome *o, bool narrow, enum spf_kind kind,
		    unsigned prefix, const char *domain, const char *mech)
{
	assert_string_equal(spf_result_name(o->r), "pass");
	if (o->narrow_pass != narrow)
		fail_msg("%s in %s: narrow %d", o->mechanism, o->domain, o->narrow_pass);
	assert_int_equal(o->kind, kind);
	assert_int_equal(o->prefix, prefix);
	assert_string_equal(o->domain, domain);
	assert_string_equal(o->mechanism, mech);
}

static void test_narrow_pass(void **state)
{
	(void)state;
	pass_is(check("198.51.1.1", "narrow4.example"), true, SPF_IP4, 16, "narrow4.example",
		"ip4:198.51.100.0/16");
	pass_is(check("198.51.1.1", "wide4.example"), false, SPF_IP4, 15, "wide4.example",
		"ip4:198.51.0.0/15");
	pass_is(check("192.0.2.1", "all.example"), false, SPF_ALL, 0, "all.example", "+all");
	/* ?all: neutral, no pass at all */
	const struct spf_outcome *o = check("192.0.2.1", "qall.example");
	assert_int_equal(o->r, SPF_NEUTRAL);
	assert_false(o->narrow_pass);
	/* a/24: the prefix given counts, not the host's address */
	pass_is(check("198.51.100.200", "a24.example"), true, SPF_A, 24, "a24.example",
		"a:host.a24.example/24");
	pass_is(check("198.51.100.200", "a8.example"), false, SPF_A, 8, "a8.example",
		"a:host.a24.example/8");
	pass_is(check("2001:db8:1::99", "mx.example"), true, SPF_MX, 48, "mx.example", "mx//48");
	/* through include: the mechanism inside, with its domain */
	pass_is(check("198.51.1.1", "inc.example"), true, SPF_IP4, 16, "narrow4.example",
		"ip4:198.51.100.0/16");
	pass_is(check("198.51.1.1", "redir.example"), true, SPF_IP4, 16, "narrow4.example",
		"ip4:198.51.100.0/16");
	pass_is(check("2001:db8::1", "v6.example"), true, SPF_IP6, 32, "v6.example",
		"ip6:2001:db8::/32");
	pass_is(check("2001:db8::1", "v6wide.example"), false, SPF_IP6, 24, "v6wide.example",
		"ip6:2001:db8::/24");
	/* exists: narrow only when its name is made of the address */
	pass_is(check("198.51.100.7", "exists.example"), true, SPF_EXISTS, 0, "exists.example",
		"exists:%{ir}.ok.example");
	pass_is(check("198.51.100.8", "exists.example"), false, SPF_EXISTS, 0, "exists.example",
		"exists:any.ok.example");
}

static void test_results_and_limits(void **state)
{
	(void)state;
	assert_int_equal(check("192.0.2.1", "fail.example")->r, SPF_FAIL);
	assert_int_equal(check("192.0.2.1", "soft.example")->r, SPF_SOFTFAIL);
	assert_int_equal(check("192.0.2.1", "nowhere.example")->r, SPF_NONE);
	assert_int_equal(check("192.0.2.1", "two.example")->r, SPF_PERMERROR);
	assert_int_equal(check("192.0.2.1", "nodot")->r, SPF_NONE);
	/* an include loop ends at the 10-lookup limit */
	const struct spf_outcome *o = check("192.0.2.1", "loop.example");
	assert_int_equal(o->r, SPF_PERMERROR);
	assert_int_equal(o->lookups, 11);
	/* the third void lookup */
	assert_int_equal(check("192.0.2.1", "voids.example")->r, SPF_PERMERROR);
	/* our own budget, under the RFC's limits */
	o = check_budget("192.0.2.1", "loop.example", 3);
	assert_int_equal(o->r, SPF_PERMERROR);
	assert_int_equal(o->lookups, 3);
	assert_string_equal(o->why, "lookup budget spent");
	/* inputs too long to be real: nothing asked */
	char longname[300];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	o = check("192.0.2.1", longname);
	assert_int_equal(o->r, SPF_NONE);
	assert_int_equal(o->lookups, 0);
}

/* The records of a chain of includes share one buffer: a chain of 11
 * records of the 450 bytes RFC 7208 section 3.4 asks for fits, a chain
 * of longer ones that does not is permerror. */
static void test_record_chain(void **state)
{
	(void)state;
	big_len = 450;
	big_depth = 10;
	const struct spf_outcome *o = check("192.0.2.1", "big0.example");
	assert_int_equal(o->r, SPF_PASS);
	assert_string_equal(o->domain, "big10.example");
	big_len = 2000;
	big_depth = 4;
	o = check("192.0.2.1", "big0.example");
	assert_int_equal(o->r, SPF_PERMERROR);
	assert_string_equal(o->why, "SPF records too long in all");
	big_depth = 2;
	assert_int_equal(check("192.0.2.1", "big0.example")->r, SPF_PASS);
}

static void test_cache(void **state)
{
	(void)state;
	static const uint8_t key[SIPHASH_KEY_LEN] = { 1, 2, 3 };
	struct spf_cache *c = spf_cache_new(8, 300, key);
	assert_non_null(c);
	struct spf_cache_key k = { .domain = "Example.COM", .local = "a", .helo = "h" };
	assert_true(ipaddr_parse("192.0.2.1", &k.ip));
	struct spf_outcome o = { .r = SPF_PASS, .narrow_pass = true }, got;
	assert_false(spf_cache_get(c, &k, 1000, &got));
	spf_cache_put(c, &k, 1000, &o);
	/* the domain's case does not matter, the local part's does */
	k.domain = "example.com";
	assert_true(spf_cache_get(c, &k, 1299, &got));
	assert_int_equal(got.r, SPF_PASS);
	assert_true(got.narrow_pass);
	assert_false(spf_cache_get(c, &k, 1300, &got));   /* expired */
	k.local = "A";
	assert_false(spf_cache_get(c, &k, 1000, &got));
	k.local = "a";
	struct spf_cache_key other = k;
	assert_true(ipaddr_parse("192.0.2.2", &other.ip));
	assert_false(spf_cache_get(c, &other, 1000, &got));
	/* temperror is not kept */
	o.r = SPF_TEMPERROR;
	spf_cache_put(c, &other, 1000, &o);
	assert_false(spf_cache_get(c, &other, 1000, &got));
	spf_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_narrow_pass),
		cmocka_unit_test(test_results_and_limits),
		cmocka_unit_test(test_record_chain),
		cmocka_unit_test(test_cache),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
