/* The stepwise load, the bundle a worker is handed and the settings that
 * take a restart: a load in steps of any size, and one from the bundle
 * (whatever the disk says by then), give the configuration a whole load
 * gives; a list file that changes while read, a FIFO where a file is
 * expected, and a malformed bundle are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "tmpdir.h"

static char err[1024];
static char conf[256], clients[256], relay[256], senders[256], names[256];

/* The main file with every kind of list file, and the list files. */
static void write_setup(void)
{
	snprintf(clients, sizeof clients, "%s", path("clients"));
	snprintf(relay, sizeof relay, "%s", path("relay"));
	snprintf(senders, sizeof senders, "%s", path("senders"));
	snprintf(names, sizeof names, "%s", path("names"));
	snprintf(conf, sizeof conf, "%s", path("gg.conf"));
	const char *c = "# clients\n10.0.0.0/8\n 192.0.2.7  # one host\n\n2001:db8::/32\n";
	write_file(clients, c, strlen(c));
	c = "relay.example\n.sub.example\n";
	write_file(relay, c, strlen(c));
	c = "alice@senders.example\n@bulk.example\n";
	write_file(senders, c, strlen(c));
	c = "mx.names.example\n";
	write_file(names, c, strlen(c));
	char text[2048];
	snprintf(text, sizeof text,
		 "myhostname = \"gw.example\";\n"
		 "listen = [ \"127.0.0.1:2525\", \"[::1]:2526\" ];\n"
		 "relay_domains = [ \"inline.example\" ];\n"
		 "relay_domains_file = \"%s\";\n"
		 "store = { type = \"redis\"; max_entries = 2000; redis = { sentinels = [ \"127.0.0.1:26379\" ];"
		 " master_name = \"m\"; }; };\n"
		 "greylist = { delay = 60; message = \"wait \\\"%%s\\\" s\"; };\n"
		 "whitelist = { clients = [ \"198.51.100.0/24\" ]; clients_file = \"%s\";\n"
		 "  senders_file = \"%s\"; client_names_file = \"%s\"; };\n",
		 relay, clients, senders, names);
	write_file(conf, text, strlen(text));
}

static struct gg_config *load_steps(const char *file, size_t budget)
{
	struct gg_config_load *ld = gg_config_load_begin(file, err, sizeof err);
	if (!ld)
		return NULL;
	int r;
	while ((r = gg_config_load_step(ld, budget)) == 0)
		;
	if (r < 0) {
		gg_config_load_abort(ld);
		return NULL;
	}
	return gg_config_load_end(ld);
}

static bool net(const struct netlist *l, const char *a)
{
	struct ipaddr ip;
	assert_true(ipaddr_parse(a, &ip));
	return netlist_match(l, &ip);
}

/* The same answers to the same questions as a whole load of the setup. */
static void assert_setup(const struct gg_config *c)
{
	assert_non_null(c);
	assert_string_equal(c->file, conf);
	assert_string_equal(c->myhostname, "gw.example");
	assert_int_equal(c->nlisten, 2);
	assert_string_equal(c->listen[1], "[::1]:2526");
	assert_string_equal(c->store.type, "redis");
	assert_int_equal(c->store.max_entries, 2000);
	assert_int_equal(c->store.redis.nsentinels, 1);
	assert_int_equal(c->greylist.delay, 60);
	assert_string_equal(c->greylist.message, "wait \"%s\" s");
	assert_true(net(&c->whitelist.clients, "10.1.2.3"));
	assert_true(net(&c->whitelist.clients, "192.0.2.7"));
	assert_false(net(&c->whitelist.clients, "192.0.2.8"));
	assert_true(net(&c->whitelist.clients, "2001:db8::1"));
	assert_true(net(&c->whitelist.clients, "198.51.100.9"));
	assert_false(net(&c->whitelist.clients, "203.0.113.1"));
	assert_int_equal(c->relay_domains.names.n, 3);
	assert_true(domainlist_match(&c->relay_domains, "inline.example", 14));
	assert_true(domainlist_match(&c->relay_domains, "relay.example", 13));
	assert_true(domainlist_match(&c->relay_domains, "a.sub.example", 13));
	/* the hand-over watches the relay domains, file included */
	assert_true(domainlist_match(&c->handover.domains, "relay.example", 13));
	assert_true(addrlist_match(&c->whitelist.senders, "alice@senders.example", 21));
	assert_true(addrlist_match(&c->whitelist.senders, "bob@bulk.example", 16));
	assert_false(addrlist_match(&c->whitelist.senders, "bob@senders.example", 19));
	assert_true(domainlist_match(&c->client_names, "mx.names.example", 16));
}

static void test_steps_same_as_whole(void **state)
{
	(void)state;
	write_setup();
	struct gg_config *whole = gg_config_load(conf, err, sizeof err);
	if (!whole)
		fail_msg("%s", err);
	assert_setup(whole);
	static const size_t budgets[] = { 1, 100, SIZE_MAX };
	for (size_t i = 0; i < 3; i++) {
		struct gg_config *c = load_steps(conf, budgets[i]);
		if (!c)
			fail_msg("budget %zu: %s", budgets[i], err);
		assert_setup(c);
		assert_null(gg_config_restart_setting(whole, c));
		size_t la, lb;
		const void *a = gg_config_bundle(whole, &la), *b = gg_config_bundle(c, &lb);
		assert_int_equal(la, lb);
		assert_memory_equal(a, b, la);
		gg_config_unref(c);
	}
	/* budget 1: one step per byte read or parsed, so many steps */
	struct gg_config_load *ld = gg_config_load_begin(conf, err, sizeof err);
	assert_non_null(ld);
	int steps = 0;
	while (gg_config_load_step(ld, 1) == 0)
		steps++;
	assert_true(steps > 100);
	gg_config_unref(gg_config_load_end(ld));
	gg_config_unref(whole);
}

static void test_bundle_round_trip(void **state)
{
	(void)state;
	write_setup();
	struct gg_config *c = gg_config_load(conf, err, sizeof err);
	assert_non_null(c);
	size_t len;
	const void *b = gg_config_bundle(c, &len);
	assert_non_null(b);
	/* nothing from disk: not the list files, not the main file */
	unlink(clients);
	unlink(relay);
	unlink(conf);
	assert_null(gg_config_load(conf, err, sizeof err));
	struct gg_config_load *ld = gg_config_load_begin_bundle(b, len, err, sizeof err);
	if (!ld)
		fail_msg("%s", err);
	int r;
	while ((r = gg_config_load_step(ld, 7)) == 0)
		;
	assert_int_equal(r, 1);
	struct gg_config *again = gg_config_load_end(ld);
	assert_setup(again);
	/* and a bundle of it is the same bundle */
	size_t len2;
	const void *b2 = gg_config_bundle(again, &len2);
	assert_int_equal(len2, len);
	assert_memory_equal(b2, b, len);
	gg_config_unref(again);
	gg_config_unref(c);
}

static struct gg_config *load_bundle(const void *b, size_t len)
{
	struct gg_config_load *ld = gg_config_load_begin_bundle(b, len, err, sizeof err);
	if (!ld)
		return NULL;
	int r;
	while ((r = gg_config_load_step(ld, SIZE_MAX)) == 0)
		;
	if (r < 0) {
		gg_config_load_abort(ld);
		return NULL;
	}
	return gg_config_load_end(ld);
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* A bundle of records NAME=DATA (in this order) */
static size_t make(unsigned char *out, size_t cap, const char *const *kv)
{
	size_t n = 8;
	memcpy(out, "GGCONF1\n", 8);
	for (; kv[0]; kv += 2) {
		size_t nl = strlen(kv[0]), dl = strlen(kv[1]);
		assert_true(n + 8 + nl + dl <= cap);
		put32(out + n, (uint32_t)nl);
		memcpy(out + n + 4, kv[0], nl);
		put32(out + n + 4 + nl, (uint32_t)dl);
		memcpy(out + n + 8 + nl, kv[1], dl);
		n += 8 + nl + dl;
	}
	return n;
}

static void test_bundle_malformed(void **state)
{
	(void)state;
	write_setup();
	struct gg_config *c = gg_config_load(conf, err, sizeof err);
	assert_non_null(c);
	size_t len;
	const unsigned char *b = gg_config_bundle(c, &len);
	/* every truncation */
	for (size_t i = 0; i < len; i++) {
		struct gg_config *t = load_bundle(b, i);
		if (t)
			fail_msg("a bundle cut to %zu of %zu bytes was taken", i, len);
	}
	/* a length beyond the end, every byte of the header lengths */
	unsigned char *m = malloc(len);
	assert_non_null(m);
	for (size_t i = 8; i < 8 + 4 + 4 + 4; i++) {
		memcpy(m, b, len);
		m[i] ^= 0x80;
		assert_null(load_bundle(m, len));
	}
	memcpy(m, b, len);
	m[0] = 'X';
	assert_null(load_bundle(m, len));
	free(m);
	gg_config_unref(c);

	unsigned char buf[4096];
	static const char *const good[] = { "file", "/etc/gg.conf", "config", "greylist = { delay = 5; };\n", NULL };
	size_t n = make(buf, sizeof buf, good);
	c = load_bundle(buf, n);
	if (!c)
		fail_msg("%s", err);
	assert_string_equal(c->file, "/etc/gg.conf");
	assert_int_equal(c->greylist.delay, 5);
	gg_config_unref(c);
	static const char *const cases[][9] = {
		{ "config", "", "file", "/x", NULL },                              /* order */
		{ "file", "/x", NULL },                                           /* no config */
		{ "file", "", "config", "", NULL },                               /* empty path */
		{ "file", "/x", "config", "", "config", "", NULL },               /* twice */
		{ "file", "/x", "config", "", "whitelist.clients_file", "10.0.0.1\n", NULL }, /* unasked */
		{ "file", "/x", "config", "relay_domains_file = \"/y\";\n", NULL }, /* missing record */
		{ "file", "/x", "config", "@include \"/etc/passwd\"\n", NULL },    /* reads the disk */
		{ "file", "/x", "config", "greylist = { delay = ; };\n", NULL },   /* syntax */
		{ "file", "/x", "config", "relay_domains_file = \"/y\";\n", "relay_domains_file", "not a domain\n", NULL },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		n = make(buf, sizeof buf, cases[i]);
		err[0] = 0;
		c = load_bundle(buf, n);
		if (c)
			fail_msg("case %zu was taken", i);
		assert_true(strlen(err) > 0);
	}
	/* a NUL inside the file name */
	n = make(buf, sizeof buf, good);
	buf[8 + 4 + 4 + 4 + 1] = 0;
	assert_null(load_bundle(buf, n));
}

static struct gg_config *load_text(const char *text)
{
	write_file(path("r.conf"), text, strlen(text));
	return gg_config_load(path("r.conf"), err, sizeof err);
}

static void test_restart_setting(void **state)
{
	(void)state;
	static const char base[] =
		"listen = [ \"127.0.0.1:2525\", \"127.0.0.1:2526\" ];\n"
		"store = { redis = { sentinels = [ \"127.0.0.1:1\" ]; master_name = \"m\"; }; };\n";
	static const struct {
		const char *name, *text;
	} cases[] = {
		{ "store.type", "store = { type = \"redis\"; redis = { sentinels = [ \"127.0.0.1:1\" ]; master_name = \"m\"; }; };\n" },
		{ "store.file", "store = { file = \"/x\"; redis = { sentinels = [ \"127.0.0.1:1\" ]; master_name = \"m\"; }; };\n" },
		{ "store.failure", "store = { failure = \"tempfail\"; redis = { sentinels = [ \"127.0.0.1:1\" ]; master_name = \"m\"; }; };\n" },
		{ "store.max_entries", "store = { max_entries = 5000; redis = { sentinels = [ \"127.0.0.1:1\" ]; master_name = \"m\"; }; };\n" },
		{ "store.save_interval", "store = { save_interval = 5; redis = { sentinels = [ \"127.0.0.1:1\" ]; master_name = \"m\"; }; };\n" },
		{ "store.redis.host", "store = { redis = { host = \"::1\"; sentinels = [ \"127.0.0.1:1\" ]; master_name = \"m\"; }; };\n" },
		{ "store.redis.port", "store = { redis = { port = 1; sentinels = [ \"127.0.0.1:1\" ]; master_name = \"m\"; }; };\n" },
		{ "store.redis.password", "store = { redis = { password = \"p\"; sentinels = [ \"127.0.0.1:1\" ]; master_name = \"m\"; }; };\n" },
		{ "store.redis.db", "store = { redis = { db = 2; sentinels = [ \"127.0.0.1:1\" ]; master_name = \"m\"; }; };\n" },
		{ "store.redis.timeout_ms", "store = { redis = { timeout_ms = 9; sentinels = [ \"127.0.0.1:1\" ]; master_name = \"m\"; }; };\n" },
		{ "store.redis.connect_timeout_ms", "store = { redis = { connect_timeout_ms = 9; sentinels = [ \"127.0.0.1:1\" ]; master_name = \"m\"; }; };\n" },
		{ "store.redis.prefix", "store = { redis = { prefix = \"x:\"; sentinels = [ \"127.0.0.1:1\" ]; master_name = \"m\"; }; };\n" },
		{ "store.redis.sentinels", "store = { redis = { sentinels = [ \"127.0.0.1:1\", \"127.0.0.1:2\" ]; master_name = \"m\"; }; };\n" },
		{ "store.redis.master_name", "store = { redis = { sentinels = [ \"127.0.0.1:1\" ]; master_name = \"n\"; }; };\n" },
		{ "control_socket", "control_socket = \"/tmp/x.sock\";\n" },
		{ "listen", "listen = [ \"127.0.0.1:2526\", \"127.0.0.1:2525\" ];\n" },
		{ "workers", "workers = 3;\n" },
		{ "admin.listen", "admin = { listen = \"\"; };\n" },
		{ "user", "user = \"nobody\";\n" },
		{ "group", "group = \"nogroup\";\n" },
		{ "run_as_root", "run_as_root = true;\n" },
		{ "pid_file", "pid_file = \"/tmp/x.pid\";\n" },
		{ "policy.listen", "policy = { listen = \"127.0.0.1:10023\"; };\n" },
		{ NULL, "greylist = { delay = 1; };\nmyhostname = \"other.example\";\n"
			"policy = { prepend_header = false; };\n" },
	};
	struct gg_config *old = load_text(base);
	assert_non_null(old);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char text[1024];
		/* the case's line overrides base's (a setting given twice is refused) */
		bool listen = strncmp(cases[i].text, "listen", 6) == 0;
		bool store = strncmp(cases[i].text, "store", 5) == 0;
		snprintf(text, sizeof text, "%s%s%s",
			 listen ? "" : "listen = [ \"127.0.0.1:2525\", \"127.0.0.1:2526\" ];\n",
			 store ? "" : "store = { redis = { sentinels = [ \"127.0.0.1:1\" ]; master_name = \"m\"; }; };\n",
			 cases[i].text);
		struct gg_config *new = load_text(text);
		if (!new)
			fail_msg("%s", err);
		const char *got = gg_config_restart_setting(old, new);
		if (!cases[i].name)
			assert_null(got);
		else if (!got || strcmp(got, cases[i].name) != 0)
			fail_msg("expected %s, got %s", cases[i].name, got ? got : "NULL");
		gg_config_unref(new);
	}
	gg_config_unref(old);
}

static void test_list_changed_while_read(void **state)
{
	(void)state;
	for (int how = 0; how < 2; how++) {
		write_setup();
		struct gg_config_load *ld = gg_config_load_begin(conf, err, sizeof err);
		assert_non_null(ld);
		/* into the first list file (relay_domains_file): a byte read */
		assert_int_equal(gg_config_load_step(ld, 1), 0);
		if (how == 0) {
			FILE *f = fopen(relay, "a");
			assert_non_null(f);
			fputs("more.example\n", f);
			fclose(f);
		} else {
			write_file(path("relay.new"), "other.example\n", 14);
			assert_int_equal(rename(path("relay.new"), relay), 0);
		}
		int r;
		while ((r = gg_config_load_step(ld, 1)) == 0)
			;
		assert_int_equal(r, -1);
		gg_config_load_abort(ld);
		assert_non_null(strstr(err, "changed while being read"));
		assert_non_null(strstr(err, relay));
		char prefix[300];
		snprintf(prefix, sizeof prefix, "%s:4: relay_domains_file", conf);
		assert_int_equal(strncmp(err, prefix, strlen(prefix)), 0);
	}
}

static void test_fifo_refused(void **state)
{
	(void)state;
	unlink(path("fifo"));
	assert_int_equal(mkfifo(path("fifo"), 0600), 0);
	char fifo[256], text[1024];
	snprintf(fifo, sizeof fifo, "%s", path("fifo"));

	/* an @include two levels down, after a comment that mentions one */
	snprintf(text, sizeof text, "/* @include \"%s\"\n*/\n\n@include \"%s\"\n", fifo, fifo);
	write_file(path("inner.conf"), text, strlen(text));
	snprintf(text, sizeof text, "# @include \"%s\"\nmyhostname = \"a.example\";\n"
				    "  @include \"%s\"\n", fifo, path("inner.conf"));
	write_file(path("outer.conf"), text, strlen(text));
	time_t t0 = time(NULL);
	assert_null(gg_config_load(path("outer.conf"), err, sizeof err));
	char want[600];
	snprintf(want, sizeof want, "%s:4: @include '%s': not a regular file",
		 path("inner.conf"), fifo);
	assert_string_equal(err, want);

	/* the main file itself */
	assert_null(gg_config_load(fifo, err, sizeof err));
	assert_non_null(strstr(err, "not a regular file"));

	/* a list file */
	snprintf(text, sizeof text, "\nrelay_domains_file = \"%s\";\n", fifo);
	assert_null(load_text(text));
	snprintf(want, sizeof want, "%s:2: relay_domains_file '%s': not a regular file",
		 path("r.conf"), fifo);
	assert_string_equal(err, want);

	/* TLS files */
	snprintf(text, sizeof text, "tls = { cert = \"%s\";\n key = \"%s\"; };\n", fifo, fifo);
	assert_null(load_text(text));
	assert_non_null(strstr(err, "tls.cert"));
	assert_non_null(strstr(err, "not a regular file"));
	assert_true(time(NULL) - t0 < 5);

	/* a missing include: its line; a good one is read */
	write_file(path("inc.conf"), "greylist = { delay = 7; };\n", 27);
	char inc[256];
	snprintf(inc, sizeof inc, "%s", path("inc.conf"));
	snprintf(text, sizeof text, "@include \"%s\"\n\n@include \"%s\"\n", inc,
		 path("none.conf"));
	assert_null(load_text(text));
	assert_non_null(strstr(err, ":3: @include"));
	snprintf(text, sizeof text, "@include \"%s\"\n", inc);
	struct gg_config *c = load_text(text);
	assert_non_null(c);
	assert_int_equal(c->greylist.delay, 7);
	gg_config_unref(c);
	/* a refused setting in an included file: that file's name and line */
	write_file(inc, "\n\nlimits = { max_line = 1; };\n", 29);
	assert_null(load_text(text));
	snprintf(want, sizeof want, "%s:3: limits.max_line = 1 is out of range", inc);
	assert_int_equal(strncmp(err, want, strlen(want)), 0);
}

static void test_list_file_errors_keep_lines(void **state)
{
	(void)state;
	write_setup();
	const char *text = "ok.example\n\nnot a domain\n";
	write_file(relay, text, strlen(text));
	struct gg_config *c = load_steps(conf, 3);
	assert_null(c);
	char want[600];
	snprintf(want, sizeof want, "%s:4: %s:3: 'not a domain' is not a domain name", conf, relay);
	assert_string_equal(err, want);
	/* a line too long */
	char big[600];
	memset(big, 'a', sizeof big);
	big[sizeof big - 1] = '\n';
	write_file(relay, big, sizeof big);
	assert_null(gg_config_load(conf, err, sizeof err));
	assert_non_null(strstr(err, ":1: line too long"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_steps_same_as_whole),
		cmocka_unit_test(test_bundle_round_trip),
		cmocka_unit_test(test_bundle_malformed),
		cmocka_unit_test(test_restart_setting),
		cmocka_unit_test(test_list_changed_while_read),
		cmocka_unit_test(test_fifo_refused),
		cmocka_unit_test(test_list_file_errors_keep_lines),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
