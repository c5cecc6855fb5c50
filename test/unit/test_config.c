/* Configuration loading: defaults, every kind of refusal with its line, and
 * the domain and network lists the relay decision depends on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "config.h"

static char path[64];
static char err[1024];

static struct gg_config *load_text(const char *text)
{
	snprintf(path, sizeof path, "/tmp/gg-config-test-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	err[0] = 0;
	struct gg_config *c = gg_config_load(path, err, sizeof err);
	unlink(path);
	return c;
}

/* The error must start with "FILE:LINE: " and mention WHAT. */
static void assert_refused(const char *text, int line, const char *what)
{
	struct gg_config *c = load_text(text);
	assert_null(c);
	char prefix[128];
	snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("expected prefix '%s' in '%s'", prefix, err);
	if (!strstr(err, what))
		fail_msg("expected '%s' in '%s'", what, err);
}

static void test_defaults(void **state)
{
	(void)state;
	struct gg_config *c = load_text("myhostname = \"mx.example.org\";\n");
	assert_non_null(c);
	assert_string_equal(c->banner, "mx.example.org ESMTP");
	assert_int_equal(c->nlisten, 1);
	assert_string_equal(c->backend.address, "127.0.0.1:10025");
	assert_true(c->backend.xclient);
	assert_true(c->helo_required);
	assert_true(c->disable_vrfy_command);
	assert_int_equal(c->limits.max_line, 2048);
	assert_int_equal(c->limits.max_recipients, 100);
	assert_int_equal(c->limits.max_errors, 20);
	struct ipaddr a;
	assert_true(ipaddr_parse("127.0.0.9", &a));
	assert_true(netlist_match(&c->mynetworks, &a));
	assert_true(ipaddr_parse("::1", &a));
	assert_true(netlist_match(&c->mynetworks, &a));
	assert_true(ipaddr_parse("192.0.2.1", &a));
	assert_false(netlist_match(&c->mynetworks, &a));
	gg_config_unref(c);
}

static void test_full(void **state)
{
	(void)state;
	struct gg_config *c = load_text(
		"myhostname = \"gw.test\";\n"
		"listen = [ \"127.0.0.1:2525\", \"[::1]:2525\" ];\n"
		"backend = { address = \"[::1]:10025\"; xclient = false; connect_timeout = 3; };\n"
		"mynetworks = [ ];\n"
		"local_domains = [ \"Example.ORG.\" ];\n"
		"relay_domains = [ \".customer.example\" ];\n"
		"limits = { max_line = 1000; max_per_client = 3; };\n"
		"log = { target = \"syslog\"; level = \"debug\"; };\n");
	assert_non_null(c);
	assert_int_equal(c->nlisten, 2);
	assert_false(c->backend.xclient);
	assert_int_equal(c->backend.connect_timeout, 3);
	assert_int_equal(c->limits.max_line, 1000);
	assert_int_equal(c->limits.max_per_client, 3);
	assert_int_equal(c->mynetworks.n, 0);
	assert_true(domainlist_match(&c->local_domains, "example.org", 11));
	assert_true(domainlist_match(&c->local_domains, "EXAMPLE.org.", 12));
	assert_false(domainlist_match(&c->local_domains, "sub.example.org", 15));
	assert_false(domainlist_match(&c->local_domains, "xexample.org", 12));
	assert_true(domainlist_match(&c->relay_domains, "a.customer.example", 18));
	assert_false(domainlist_match(&c->relay_domains, "customer.example", 16));
	assert_false(domainlist_match(&c->relay_domains, "acustomer.example", 17));
	gg_config_unref(c);
}

static void test_refusals(void **state)
{
	(void)state;
	assert_refused("\nmyhostname = = \"a\";\n", 2, "syntax error");
	assert_refused("\n\nmynetwork = [ ];\n", 3, "unknown setting 'mynetwork'");
	assert_refused("limits = {\n  max_lines = 5;\n};\n", 2, "unknown setting 'limits.max_lines'");
	assert_refused("limits = { max_line = 100; };\n", 1, "out of range");
	assert_refused("\nhelo_required = \"yes\";\n", 2, "true or false");
	assert_refused("listen = [ \"127.0.0.1\" ];\n", 1, "ADDRESS:PORT");
	assert_refused("listen = [ \"::1:25\" ];\n", 1, "ADDRESS:PORT");
	assert_refused("listen = [ ];\n", 1, "at least one");
	assert_refused("backend = { address = \"mail.example:25\"; };\n", 1, "backend.address");
	assert_refused("mynetworks = [ \"10.0.0.0/33\" ];\n", 1, "not an address or network");
	assert_refused("mynetworks = [ 5 ];\n", 1, "list of strings");
	assert_refused("local_domains = [ \"bad domain\" ];\n", 1, "not a domain name");
	assert_refused("log = { level = \"loud\"; };\n", 1, "log.level");
	assert_refused("relay_domains_file = \"/nonexistent/greygate\";\n", 1, "relay_domains_file");
	assert_refused("\npolicy = { listen = \"127.0.0.1\"; };\n", 2, "policy.listen");
	/* the SMTP port's connections would be spread to the policy service */
	assert_refused("listen = [ \"127.0.0.1:2525\" ];\npolicy = { listen = \"127.0.0.1:2525\"; };\n",
		       2, "takes the connections of listen address '127.0.0.1:2525'");
	assert_refused("listen = [ \"0.0.0.0:25\" ];\npolicy = { listen = \"127.0.0.1:25\"; };\n",
		       2, "policy.listen");
	assert_refused("listen = [ \"[2001:db8::1]:25\" ];\npolicy = { listen = \"[::]:25\"; };\n",
		       2, "policy.listen");
	struct gg_config *c = load_text("listen = [ \"127.0.0.1:25\", \"[::1]:25\" ];\n"
					"policy = { listen = \"127.0.0.1:10023\"; prepend_header = false; };\n");
	assert_non_null(c);
	assert_string_equal(c->policy.listen, "127.0.0.1:10023");
	assert_false(c->policy.prepend_header);
	gg_config_unref(c);
	c = load_text("listen = [ \"[::]:25\" ];\npolicy = { listen = \"0.0.0.0:25\"; };\n");
	assert_non_null(c);   /* v6 sockets are v6-only: no collision */
	gg_config_unref(c);
}

/* greylist.pool_keys and its companions: defaults, order, refusals. */
static void test_pool_keys(void **state)
{
	(void)state;
	struct gg_config *c = load_text("myhostname = \"mx.example.org\";\n");
	assert_non_null(c);
	assert_int_equal(c->greylist.npool_keys, 2);
	assert_int_equal(c->greylist.pool_keys[0], POOL_SPF);
	assert_int_equal(c->greylist.pool_keys[1], POOL_PTR);
	assert_int_equal(c->greylist.spf_max_prefix4, 16);
	assert_int_equal(c->greylist.spf_max_prefix6, 32);
	assert_true(c->greylist.ngeneric_name_words > 10);
	gg_config_unref(c);

	c = load_text("greylist = { pool_keys = [ \"ptr\", \"spf\" ];\n"
		      "  generic_name_words = [ \"dyn\", \"dial-up\" ]; };\n");
	assert_non_null(c);
	assert_int_equal(c->greylist.npool_keys, 2);
	assert_int_equal(c->greylist.pool_keys[0], POOL_PTR);
	assert_int_equal(c->greylist.ngeneric_name_words, 2);
	assert_string_equal(c->greylist.generic_name_words[1], "dial-up");
	gg_config_unref(c);

	c = load_text("greylist = { pool_keys = [ ]; generic_name_words = [ ]; };\n");
	assert_non_null(c);
	assert_int_equal(c->greylist.npool_keys, 0);
	assert_int_equal(c->greylist.ngeneric_name_words, 0);
	gg_config_unref(c);

	assert_refused("greylist = {\n  pool_keys = [ \"dkim\" ];\n};\n", 2, "greylist.pool_keys");
	assert_refused("greylist = {\n  pool_keys = [ \"net\" ];\n};\n", 2, "greylist.pool_keys");
	assert_refused("greylist = {\n  pool_keys = [ \"ptr\", \"ptr\" ];\n};\n", 2, "twice");
	assert_refused("greylist = {\n  generic_name_words = [ \"a b\" ];\n};\n", 2,
		       "greylist.generic_name_words");
	assert_refused("greylist = {\n  generic_name_words = [ \"\" ];\n};\n", 2,
		       "greylist.generic_name_words");
	assert_refused("greylist = {\n  spf_max_prefix4 = 33;\n};\n", 2, "out of range");
}

static void test_relay_domains_file(void **state)
{
	(void)state;
	char list[] = "/tmp/gg-relay-XXXXXX";
	int fd = mkstemp(list);
	assert_true(fd >= 0);
	const char *text = "# customers\nOne.example  # first\n\n  two.example\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	char conf[256];
	snprintf(conf, sizeof conf,
		 "relay_domains = [ \"zero.example\" ];\nrelay_domains_file = \"%s\";\n", list);
	struct gg_config *c = load_text(conf);
	assert_non_null(c);
	assert_int_equal(c->relay_domains.names.n, 3);
	assert_true(domainlist_match(&c->relay_domains, "one.example", 11));
	assert_true(domainlist_match(&c->relay_domains, "two.example", 11));
	assert_true(domainlist_match(&c->relay_domains, "zero.example", 12));
	gg_config_unref(c);

	fd = open(list, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	text = "ok.example\nnot a domain\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_refused(conf, 2, ":2: 'not a domain'");
	unlink(list);
}

static void test_refcount(void **state)
{
	(void)state;
	struct gg_config *c = load_text("local_domains = [ \"example.org\" ];\n");
	assert_non_null(c);
	assert_ptr_equal(gg_config_ref(c), c);
	gg_config_unref(c);
	/* still usable after one of two references went */
	assert_true(domainlist_match(&c->local_domains, "example.org", 11));
	gg_config_unref(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_pool_keys),
		cmocka_unit_test(test_relay_domains_file),
		cmocka_unit_test(test_refcount),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
