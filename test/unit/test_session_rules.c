/*
 * The session rule table (proxy/session_rules.c): every row refusing and
 * letting through, at the points it is tagged with and only there. The
 * rules are pure, so a configuration and a query are the whole fake
 * world.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_rules.h"
#include "tmpdir.h"

static struct gg_config *cfg;
static struct ipaddr client;

static void configure(const char *extra)
{
	char text[2048];
	snprintf(text, sizeof text,
		 "myhostname = \"gw.example\";\n"
		 "listen = [ \"127.0.0.1:2525\" ];\n"
		 "local_domains = [ \"local.example\" ];\n"
		 "store = { type = \"memory\"; file = \"\"; };\n"
		 "%s\n", extra);
	const char *file = path("gg.conf");
	write_file(file, text, strlen(text));
	char err[512];
	gg_config_unref(cfg);
	cfg = gg_config_load(file, err, sizeof err);
	if (!cfg)
		fail_msg("config: %s", err);
}

/* A client that said HELO, known by address, with nothing to refuse. */
static struct sess_query query(const char *addr)
{
	assert_true(ipaddr_parse(addr, &client));
	return (struct sess_query){ .cfg = cfg, .client = &client, .helo_seen = true };
}

static void allowed(enum sess_point at, const struct sess_query *q)
{
	struct sess_verdict v;
	assert_false(session_rules_check(at, q, &v));
}

static void refused(enum sess_point at, const struct sess_query *q, enum why rule, bool counted,
		    const char *reply)
{
	struct sess_verdict v;
	assert_true(session_rules_check(at, q, &v));
	assert_int_equal(v.rule, rule);
	assert_int_equal(v.counted, counted);
	assert_string_equal(v.reply, reply);
}

#define ALL_POINTS (SP_MAIL | SP_MAIL_PARAMS | SP_RCPT | SP_ETRN | SP_ETRN_DOMAIN)

/* Every row is named by a distinct entry of lib/why.h and runs at some
 * point. */
static void test_table_names(void **state)
{
	(void)state;
	size_t n = 0;
	unsigned points;
	for (enum why w; (w = session_rules_row(n, &points)) != WHY_NONE; n++) {
		assert_non_null(why_name(w));
		assert_true(points != 0 && (points & ~ALL_POINTS) == 0);
		for (size_t k = 0; k < n; k++) {
			unsigned p;
			assert_int_not_equal(session_rules_row(k, &p), w);
		}
	}
	assert_int_equal(n, 6);
}

static void test_helo_required(void **state)
{
	(void)state;
	configure("");
	struct sess_query q = query("192.0.2.1");
	q.helo_seen = false;
	const char *r = "503 5.5.1 Error: send HELO/EHLO first";
	refused(SP_MAIL, &q, WHY_HELO_REQUIRED, true, r);
	refused(SP_ETRN, &q, WHY_HELO_REQUIRED, true, r);
	/* not a RCPT's business: MAIL came first */
	allowed(SP_RCPT, &q);
	q.helo_seen = true;
	allowed(SP_MAIL, &q);
	configure("helo_required = false;");
	q = query("192.0.2.1");
	q.helo_seen = false;
	allowed(SP_MAIL, &q);
	allowed(SP_ETRN, &q);
}

static void test_client_unknown(void **state)
{
	(void)state;
	configure("");
	struct sess_query q = query("192.0.2.1");
	q.client_unknown = true;
	const char *r = "451 4.7.1 Error: client address unknown, try again later";
	refused(SP_MAIL, &q, WHY_PROXY_PROTOCOL, true, r);
	refused(SP_ETRN, &q, WHY_PROXY_PROTOCOL, true, r);
	/* HELO comes first: the order of the rows is the order of the checks */
	q.helo_seen = false;
	refused(SP_MAIL, &q, WHY_HELO_REQUIRED, true, "503 5.5.1 Error: send HELO/EHLO first");
}

static void test_message_size(void **state)
{
	(void)state;
	configure("");
	struct sess_query q = query("192.0.2.1");
	q.size_limit = 1000;
	q.size = 1000;
	allowed(SP_MAIL_PARAMS, &q);
	q.size = 1001;
	refused(SP_MAIL_PARAMS, &q, WHY_MESSAGE_SIZE_LIMIT, true,
		"552 5.3.4 Message size exceeds fixed limit");
	allowed(SP_MAIL, &q);
	/* no limit known: any size goes on to the backend */
	q.size_limit = 0;
	allowed(SP_MAIL_PARAMS, &q);
}

static void test_max_recipients(void **state)
{
	(void)state;
	configure("limits = { max_recipients = 3; };");
	struct sess_query q = query("192.0.2.1");
	q.rcpt_ok = 2;
	allowed(SP_RCPT, &q);
	q.rcpt_ok = 3;
	/* not counted as an error */
	refused(SP_RCPT, &q, WHY_MAX_RECIPIENTS, false, "452 4.5.3 Error: too many recipients");
	allowed(SP_MAIL, &q);
}

static struct sess_query etrn(const char *addr, const char *arg)
{
	struct sess_query q = query(addr);
	q.etrn_arg = arg;
	q.etrn_len = strlen(arg);
	return q;
}

static void test_etrn_networks(void **state)
{
	(void)state;
	configure("relay_domains = [ \"relay.example\" ];");
	struct sess_query q = etrn("192.0.2.1", "relay.example");
	refused(SP_ETRN_DOMAIN, &q, WHY_ETRN_NETWORKS, true, "502 5.5.1 Error: ETRN not permitted");
	allowed(SP_ETRN, &q);
}

static void test_etrn(void **state)
{
	(void)state;
	configure("relay_domains = [ \"relay.example\" ]; etrn_networks = [ \"192.0.2.0/24\" ];");
	struct sess_query q = etrn("192.0.2.1", "relay.example");
	allowed(SP_ETRN_DOMAIN, &q);
	q = etrn("192.0.2.1", "@relay.example");
	allowed(SP_ETRN_DOMAIN, &q);
	q = etrn("192.0.2.1", "#relay.example");
	allowed(SP_ETRN_DOMAIN, &q);
	/* outside etrn_networks */
	q = etrn("198.51.100.1", "relay.example");
	refused(SP_ETRN_DOMAIN, &q, WHY_ETRN, true, "459 4.7.1 <relay.example>: ETRN not permitted");
	/* a domain this host is final for, not a backup of */
	q = etrn("192.0.2.1", "@local.example");
	refused(SP_ETRN_DOMAIN, &q, WHY_ETRN, true, "459 4.7.1 <@local.example>: ETRN not permitted");
	q = etrn("192.0.2.1", "other.example");
	refused(SP_ETRN_DOMAIN, &q, WHY_ETRN, true, "459 4.7.1 <other.example>: ETRN not permitted");
	allowed(SP_ETRN, &q);
}

static int teardown(void **state)
{
	gg_config_unref(cfg);
	cfg = NULL;
	return teardown_dir(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_names),
		cmocka_unit_test(test_helo_required),
		cmocka_unit_test(test_client_unknown),
		cmocka_unit_test(test_message_size),
		cmocka_unit_test(test_max_recipients),
		cmocka_unit_test(test_etrn_networks),
		cmocka_unit_test(test_etrn),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown);
}
