/*
 * proxy/spf.c on the real resolver (c-ares, libevent) against a small DNS
 * server this test runs on the same loop: the verdict of a check, that
 * DONE never runs inside spf_check (a cached outcome neither), that a
 * repeated check asks no DNS again (nor one for another client: the
 * resolver caches TXT answers), that a cancelled one stays quiet, and the
 * bound on checks under way.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "metrics.h"
#include "resolver.h"
#include "spf.h"

/* name, type, data (TXT: character-strings separated by '|') */
static const char *const zone[][3] = {
	{ "spf.example", "16", "v=spf1 a:host.spf.example/24 |-all" },
	{ "host.spf.example", "1", "192.0.2.10" },
	{ "wide.example", "16", "v=spf1 ip4:10.0.0.0/8 -all" },
};

static struct event_base *base;
static int srv;
static unsigned queries;

static size_t put_txt(unsigned char *p, const char *data)
{
	size_t n = 0;
	for (const char *s = data; *s;) {
		const char *bar = strchr(s, '|');
		size_t l = bar ? (size_t)(bar - s) : strlen(s);
		p[n++] = (unsigned char)l;
		memcpy(p + n, s, l);
		n += l;
		s += l + (bar != NULL);
	}
	return n;
}

static void on_query(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	(void)arg;
	unsigned char q[512], r[1024];
	struct sockaddr_storage from;
	socklen_t flen = sizeof from;
	ssize_t n = recvfrom(fd, q, sizeof q, 0, (struct sockaddr *)&from, &flen);
	if (n < 17)
		return;
	queries++;
	/* the question's name as text, its end, its type */
	char name[256];
	size_t o = 12, nl = 0;
	while (o < (size_t)n && q[o]) {
		size_t l = q[o++];
		if (nl)
			name[nl++] = '.';
		for (size_t i = 0; i < l && o < (size_t)n && nl < sizeof name - 1; i++)
			name[nl++] = (char)q[o++];
	}
	name[nl] = '\0';
	size_t qend = o + 5;
	if (qend > (size_t)n)
		return;
	unsigned type = (unsigned)q[o + 1] << 8 | q[o + 2];
	memcpy(r, q, qend);
	size_t len = qend;
	unsigned an = 0;
	bool exists = false;
	for (size_t i = 0; i < sizeof zone / sizeof zone[0]; i++) {
		if (strcasecmp(zone[i][0], name) != 0)
			continue;
		exists = true;
		if ((unsigned)atoi(zone[i][1]) != type)
			continue;
		unsigned char *p = r + len;
		p[0] = 0xc0, p[1] = 12;                /* the question's name */
		p[2] = 0, p[3] = (unsigned char)type, p[4] = 0, p[5] = 1;
		p[6] = 0, p[7] = 0, p[8] = 0, p[9] = 60;
		size_t rd = type == 1 ? 4 : put_txt(p + 12, zone[i][2]);
		if (type == 1)
			inet_pton(AF_INET, zone[i][2], p + 12);
		p[10] = (unsigned char)(rd >> 8), p[11] = (unsigned char)rd;
		len += 12 + rd;
		an++;
	}
	r[2] = 0x81;                                  /* QR, RD */
	r[3] = exists ? 0x80 : 0x83;                  /* RA; NXDOMAIN */
	r[6] = 0, r[7] = (unsigned char)an;
	r[8] = r[9] = r[10] = r[11] = 0;
	sendto(fd, r, len, 0, (struct sockaddr *)&from, flen);
}

static bool inside, called;
static struct spf_verdict got;

static void done(void *arg, const struct spf_verdict *v)
{
	(void)arg;
	assert_false(inside);
	called = true;
	got = *v;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	fail_msg("no answer in 30 s");
}

static const struct spf_verdict *check(const char *ip, const char *domain)
{
	struct ipaddr a;
	assert_true(ipaddr_parse(ip, &a));
	called = false;
	inside = true;
	struct spf_req *r = spf_check(&a, domain, "user", "helo.example", done, NULL);
	inside = false;
	assert_non_null(r);
	assert_false(called);
	struct timeval tv = { 30, 0 };
	struct event *t = evtimer_new(base, on_timeout, NULL);
	evtimer_add(t, &tv);
	while (!called)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return &got;
}

static int setup(void **state)
{
	(void)state;
	static char servers[64];
	static struct gg_config cfg;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t slen = sizeof sin;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	srv = socket(AF_INET, SOCK_DGRAM, 0);
	if (srv < 0 || bind(srv, (struct sockaddr *)&sin, sizeof sin) < 0 ||
	    getsockname(srv, (struct sockaddr *)&sin, &slen) < 0)
		return -1;
	evutil_make_socket_nonblocking(srv);
	snprintf(servers, sizeof servers, "127.0.0.1:%u", ntohs(sin.sin_port));
	cfg.dns.servers = servers;
	cfg.dns.timeout_ms = 5000;
	cfg.dns.tries = 3;
	cfg.dns.cache_size = 100;
	base = event_base_new();
	struct event *ev = event_new(base, srv, EV_READ | EV_PERSIST, on_query, NULL);
	if (!base || !ev || event_add(ev, NULL) < 0 || metrics_init_private() < 0 ||
	    resolver_open(base, &cfg) < 0 || spf_open(base) < 0)
		return -1;
	return 0;
}

static void test_check(void **state)
{
	(void)state;
	const struct spf_verdict *v = check("192.0.2.77", "spf.example");
	assert_int_equal(v->r, SPF_PASS);
	assert_true(v->narrow_pass);
	assert_string_equal(v->mechanism, "a:host.spf.example/24");
	assert_string_equal(v->domain, "spf.example");
	assert_int_equal(v->prefix, 24);
	unsigned asked = queries;
	assert_int_equal(asked, 2);    /* TXT, A */

	/* again: from the cache, still from the loop */
	v = check("192.0.2.77", "spf.example");
	assert_int_equal(v->r, SPF_PASS);
	assert_true(v->narrow_pass);
	assert_int_equal(queries, asked);

	/* another client: evaluated again, on the resolver's cached TXT
	 * and A answers */
	v = check("198.51.100.1", "spf.example");  /* outside the /24: -all */
	assert_int_equal(v->r, SPF_FAIL);
	assert_int_equal(queries, asked);

	v = check("10.1.2.3", "wide.example");
	assert_int_equal(v->r, SPF_PASS);
	assert_false(v->narrow_pass);

	v = check("10.1.2.3", "nx.example");
	assert_int_equal(v->r, SPF_NONE);
}

static void test_cancel(void **state)
{
	(void)state;
	struct ipaddr a;
	assert_true(ipaddr_parse("192.0.2.200", &a));
	called = false;
	struct spf_req *r = spf_check(&a, "wide.example", "x", "", done, NULL);
	spf_cancel(r);
	spf_cancel(NULL);
	/* a check after it, of the same record, ends; the cancelled one
	 * never calls (done would see INSIDE unset but CALLED twice is not
	 * told apart: the address differs, so the verdict says which) */
	const struct spf_verdict *v = check("10.9.9.9", "wide.example");
	assert_int_equal(v->r, SPF_PASS);
}

static unsigned ndone, ntemp;

static void count(void *arg, const struct spf_verdict *v)
{
	(void)arg;
	ndone++;
	ntemp += v->r == SPF_TEMPERROR;
}

/* Past 1024 checks under way, a new one is temperror at once; the others
 * go on. */
static void test_inflight_bound(void **state)
{
	(void)state;
	struct ipaddr a;
	assert_true(ipaddr_parse("10.0.0.0", &a));
	ndone = ntemp = 0;
	for (unsigned i = 0; i < 1025; i++) {
		a.b[2] = (uint8_t)(i >> 8);
		a.b[3] = (uint8_t)i;
		assert_non_null(spf_check(&a, "wide.example", "bulk", "", count, NULL));
	}
	struct timeval tv = { 30, 0 };
	struct event *t = evtimer_new(base, on_timeout, NULL);
	evtimer_add(t, &tv);
	while (ndone < 1025)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	assert_int_equal(ntemp, 1);
	/* and the bound is free again */
	assert_int_equal(check("10.200.0.1", "wide.example")->r, SPF_PASS);
}

static int teardown(void **state)
{
	(void)state;
	spf_close();
	resolver_close();
	close(srv);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_inflight_bound),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
