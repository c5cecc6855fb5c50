#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "greylist.h"
#include "memstore.h"
#include "netaddr.h"
#include "triplet.h"
#include "mk_triplet.h"
#include "walk_all.h"
#include "tmpdir.h"

#define T0 INT64_C(1700000000)
#define HOUR 3600

/* The greylist defaults (lib/config.c: a setting left out of the file). */
static const struct gl_params P = {
	.delay = 300,
	.retry_window = 172800,
	.pass_lifetime = 3110400,
	.awl_threshold = 5,
	.max_new_per_client = 100,
	.flagged_delay = 300,
	.flagged_awl_threshold = 5,
};

/* ---------------------------------------------------------------- helpers */

static struct gl_decision decide(const struct gl_params *p, int64_t now, struct gl_triplet *t,
				 struct gl_network *n)
{
	return gl_decide(p, now, t, n, false);
}

static void expect(struct gl_decision d, enum gl_action action, enum gl_reason reason)
{
	if (d.action != action || d.reason != reason)
		fail_msg("got %s/%s, want %s/%s", d.action == GL_PASS ? "pass" : "greylist",
			 gl_reason_name(d.reason), action == GL_PASS ? "pass" : "greylist",
			 gl_reason_name(reason));
}

static void expect_greylist(struct gl_decision d, enum gl_reason reason, int64_t delay_left)
{
	expect(d, GL_GREYLIST, reason);
	assert_int_equal(d.delay_left, delay_left);
}

static bool same_triplet(const struct gl_triplet *a, const struct gl_triplet *b)
{
	return a->exists == b->exists && a->passed == b->passed &&
	       a->backup_first == b->backup_first && a->first_seen == b->first_seen && a->expires == b->expires;
}

static bool same_network(const struct gl_network *a, const struct gl_network *b)
{
	return a->awl_count == b->awl_count && a->awl_last == b->awl_last &&
	       a->awl_expires == b->awl_expires && a->new_count == b->new_count &&
	       a->new_window_end == b->new_window_end;
}

static bool same_decision(struct gl_decision a, struct gl_decision b)
{
	return a.action == b.action && a.reason == b.reason && a.delay_left == b.delay_left &&
	       a.waited == b.waited && a.capped == b.capped && a.first_pass == b.first_pass &&
	       a.backup_first == b.backup_first;
}

static struct ipaddr ip(const char *s)
{
	struct ipaddr a;
	if (!ipaddr_parse(s, &a))
		fail_msg("ipaddr_parse(\"%s\") failed", s);
	return a;
}

/* -------------------------------------------------------------- gl_decide */

static void test_gl_new(void **state)
{
	(void)state;
	struct gl_triplet t = { 0 };
	struct gl_network n = { 0 };
	struct gl_decision d = decide(&P, T0, &t, &n);
	expect_greylist(d, GL_REASON_NEW, P.delay);
	assert_false(d.capped);
	assert_true(t.exists);
	assert_false(t.passed);
	assert_int_equal(t.first_seen, T0);
	assert_true(t.expires > T0 + P.retry_window);
	assert_int_equal(n.new_count, 1);
}

static void test_gl_early(void **state)
{
	(void)state;
	struct gl_triplet t = { 0 };
	struct gl_network n = { 0 };
	decide(&P, T0, &t, &n);
	struct gl_triplet before = t;

	expect_greylist(decide(&P, T0 + 100, &t, &n), GL_REASON_EARLY, 200);
	expect_greylist(decide(&P, T0 + 299, &t, &n), GL_REASON_EARLY, 1);
	/* An early retry does not restart the clock. */
	assert_true(same_triplet(&t, &before));
	assert_int_equal(n.new_count, 1);
}

/* A network caught at a spamtrap: its triplets pending from before the
 * trap start over as new, first seen now; one first seen after it, or one
 * that had passed already, is untouched. */
static void test_gl_void_before(void **state)
{
	(void)state;
	struct gl_triplet t = { 0 }, later = { 0 }, passed = { 0 };
	struct gl_network n = { 0 };
	decide(&P, T0, &t, &n);
	decide(&P, T0, &passed, &n);
	decide(&P, T0 + 400, &passed, &n);
	assert_true(passed.passed);
	struct gl_params trapped = P;
	trapped.void_before = T0 + 500;
	decide(&trapped, T0 + 500, &later, &n);
	expect_greylist(decide(&trapped, T0 + 600, &t, &n), GL_REASON_NEW, 300);
	assert_int_equal(t.first_seen, T0 + 600);
	expect(decide(&trapped, T0 + 900, &t, &n), GL_PASS, GL_REASON_TRIPLET);
	expect(decide(&trapped, T0 + 900, &later, &n), GL_PASS, GL_REASON_TRIPLET);
	expect(decide(&trapped, T0 + 900, &passed, &n), GL_PASS, GL_REASON_TRIPLET);
}

/* backup_first: the flag is set on a triplet stored as new only when asked;
 * a flagged pending triplet is decided with the flagged delay and no
 * auto-whitelist (a suspicious class), or refused with nothing changed;
 * an unflagged one of the same network is not; a passed one passes; past
 * its retry window it starts over as any other. */
static void test_gl_backup_first(void **state)
{
	(void)state;
	struct gl_triplet t = { 0 }, plain = { 0 };
	struct gl_network n = { 0 };
	struct gl_decision d = decide(&P, T0, &plain, &n);
	assert_false(plain.backup_first);
	assert_false(d.backup_first);
	struct gl_params set = P;
	set.set_backup_first = true;
	d = decide(&set, T0, &t, &n);
	expect_greylist(d, GL_REASON_NEW, 300);
	assert_true(t.backup_first);
	assert_false(d.backup_first);                /* its first decision is not scored */

	struct gl_params f = P;
	f.flagged_delay = 900;
	f.flagged_awl_threshold = 0;
	d = decide(&f, T0 + 400, &t, &n);
	expect_greylist(d, GL_REASON_EARLY, 500);
	assert_true(d.backup_first);
	d = decide(&f, T0 + 400, &plain, &n);
	expect(d, GL_PASS, GL_REASON_TRIPLET);
	assert_false(d.backup_first);

	/* an auto-whitelisted network: the flagged triplet does not pass by it */
	struct gl_network awl = { .awl_count = 5, .awl_last = T0, .awl_expires = T0 + 86400 };
	struct gl_network awl_before = awl;
	expect_greylist(decide(&f, T0 + 500, &t, &awl), GL_REASON_EARLY, 400);
	assert_true(same_network(&awl, &awl_before));
	struct gl_triplet fresh = { 0 };
	expect(decide(&f, T0 + 500, &fresh, &awl), GL_PASS, GL_REASON_AWL);

	/* hostile with the part: refused, nothing changed, not even dry */
	struct gl_params refuse = f;
	refuse.flagged_refuse = true;
	struct gl_triplet t_before = t;
	struct gl_network n_before = n;
	d = decide(&refuse, T0 + 1000, &t, &n);
	assert_int_equal(d.action, GL_REFUSE);
	assert_true(d.backup_first);
	assert_int_equal(d.waited, 1000);
	assert_true(same_triplet(&t, &t_before));
	assert_true(same_network(&n, &n_before));
	assert_true(same_decision(gl_decide(&refuse, T0 + 1000, &t, &n, true), d));

	/* past the flagged delay it passes, and a passed triplet passes */
	d = decide(&f, T0 + 1000, &t, &n);
	expect(d, GL_PASS, GL_REASON_TRIPLET);
	assert_true(d.first_pass);
	assert_true(d.backup_first);
	d = decide(&refuse, T0 + 2000, &t, &n);
	expect(d, GL_PASS, GL_REASON_TRIPLET);
	assert_false(d.backup_first);

	/* past the retry window a flagged triplet starts over, flagged again
	 * only when asked */
	struct gl_triplet late = { 0 };
	decide(&set, T0, &late, &n);
	d = decide(&refuse, T0 + P.retry_window + 1, &late, &n);
	expect_greylist(d, GL_REASON_RETRY_WINDOW_EXPIRED, 300);
	assert_false(d.backup_first);
	assert_false(late.backup_first);
}

static void test_gl_pass_after_delay(void **state)
{
	(void)state;
	struct gl_triplet t = { 0 };
	struct gl_network n = { 0 };
	decide(&P, T0, &t, &n);
	decide(&P, T0 + 120, &t, &n);

	struct gl_decision d = decide(&P, T0 + 300, &t, &n);
	expect(d, GL_PASS, GL_REASON_TRIPLET);
	assert_int_equal(d.waited, 300);
	assert_int_equal(d.delay_left, 0);
	assert_true(d.first_pass);
	assert_true(t.passed);
	assert_int_equal(t.expires, T0 + 300 + P.pass_lifetime);

	/* A later retry (the sender's own schedule) passes the same way. */
	struct gl_triplet u = { 0 };
	decide(&P, T0, &u, &n);
	d = decide(&P, T0 + 7200, &u, &n);
	expect(d, GL_PASS, GL_REASON_TRIPLET);
	assert_int_equal(d.waited, 7200);
}

static void test_gl_pass_renews_lifetime(void **state)
{
	(void)state;
	struct gl_triplet t = { 0 };
	struct gl_network n = { 0 };
	decide(&P, T0, &t, &n);
	int64_t now = T0 + 300;
	expect(decide(&P, now, &t, &n), GL_PASS, GL_REASON_TRIPLET);

	for (int i = 0; i < 3; i++) {
		now += P.pass_lifetime - 1;
		struct gl_decision d = decide(&P, now, &t, &n);
		expect(d, GL_PASS, GL_REASON_TRIPLET);
		assert_int_equal(d.delay_left, 0);
		assert_int_equal(d.waited, now - T0);
		assert_false(d.first_pass);   /* passed before: not the pass that ended it */
		assert_int_equal(t.expires, now + P.pass_lifetime);
	}
}

static void test_gl_passed_forgotten(void **state)
{
	(void)state;
	struct gl_triplet t = { 0 };
	struct gl_network n = { 0 };
	decide(&P, T0, &t, &n);
	expect(decide(&P, T0 + 300, &t, &n), GL_PASS, GL_REASON_TRIPLET);

	int64_t now = T0 + 300 + P.pass_lifetime;
	struct gl_decision d = decide(&P, now, &t, &n);
	expect_greylist(d, GL_REASON_NEW, P.delay);
	assert_false(t.passed);
	assert_int_equal(t.first_seen, now);
}

static void test_gl_retry_window(void **state)
{
	(void)state;
	struct gl_network n = { 0 };

	/* A retry at the very end of the window still counts. */
	struct gl_triplet t = { 0 };
	decide(&P, T0, &t, &n);
	expect(decide(&P, T0 + P.retry_window, &t, &n), GL_PASS, GL_REASON_TRIPLET);

	/* One second later it starts over. */
	t = (struct gl_triplet){ 0 };
	decide(&P, T0, &t, &n);
	int64_t late = T0 + P.retry_window + 1;
	expect_greylist(decide(&P, late, &t, &n), GL_REASON_RETRY_WINDOW_EXPIRED, P.delay);
	assert_int_equal(t.first_seen, late);
	assert_false(t.passed);
	expect_greylist(decide(&P, late + 10, &t, &n), GL_REASON_EARLY, P.delay - 10);
	expect(decide(&P, late + P.delay, &t, &n), GL_PASS, GL_REASON_TRIPLET);

	/* Past the grace period it is simply unknown. */
	t = (struct gl_triplet){ 0 };
	decide(&P, T0, &t, &n);
	expect_greylist(decide(&P, T0 + P.retry_window + GL_EXPIRED_GRACE, &t, &n), GL_REASON_NEW,
			P.delay);
}

/* Makes a fresh triplet of N pass at NOW (first seen a delay earlier). */
static void pass_one(const struct gl_params *p, int64_t now, struct gl_network *n)
{
	struct gl_triplet t = { 0 };
	expect(decide(p, now - p->delay, &t, n), GL_GREYLIST, GL_REASON_NEW);
	expect(decide(p, now, &t, n), GL_PASS, GL_REASON_TRIPLET);
}

static void test_gl_awl(void **state)
{
	(void)state;
	struct gl_network n = { 0 };
	int64_t first = T0 + 300;

	/* Ten passes within the hour count once. */
	for (int i = 0; i < 10; i++)
		pass_one(&P, first + i * 60, &n);
	assert_int_equal(n.awl_count, 1);

	/* Passes of a known triplet count too, but not twice within an hour. */
	struct gl_triplet known = { 0 };
	decide(&P, first, &known, &n);
	expect(decide(&P, first + 600, &known, &n), GL_PASS, GL_REASON_TRIPLET);
	expect(decide(&P, first + HOUR - 1, &known, &n), GL_PASS, GL_REASON_TRIPLET);
	assert_int_equal(n.awl_count, 1);

	for (int h = 1; h <= 3; h++) {
		pass_one(&P, first + h * HOUR, &n);
		pass_one(&P, first + h * HOUR + 1800, &n);
	}
	assert_int_equal(n.awl_count, 4);

	struct gl_triplet x = { 0 };
	int64_t now = first + 3 * HOUR + 1900;
	expect_greylist(decide(&P, now, &x, &n), GL_REASON_NEW, P.delay);

	expect(decide(&P, first + 4 * HOUR, &known, &n), GL_PASS, GL_REASON_TRIPLET);
	assert_int_equal(n.awl_count, 5);

	/* Now new triplets of the network pass, and are not stored. */
	struct gl_triplet y = { 0 };
	now = first + 4 * HOUR + 1;
	struct gl_decision d = decide(&P, now, &y, &n);
	expect(d, GL_PASS, GL_REASON_AWL);
	assert_int_equal(d.delay_left, 0);
	assert_false(y.exists);
	/* So does one that was greylisted before and is still early. */
	x = (struct gl_triplet){ 0 };
	decide(&P, now - 60, &x, &(struct gl_network){ 0 });
	expect(decide(&P, now, &x, &n), GL_PASS, GL_REASON_AWL);

	/* Another network is not affected. */
	struct gl_network other = { 0 };
	struct gl_triplet z = { 0 };
	expect_greylist(decide(&P, now, &z, &other), GL_REASON_NEW, P.delay);
}

static void test_gl_awl_lifetime(void **state)
{
	(void)state;
	struct gl_params p = P;
	p.awl_threshold = 2;
	struct gl_network n = { 0 };
	pass_one(&p, T0 + 300, &n);
	pass_one(&p, T0 + 300 + HOUR, &n);
	assert_int_equal(n.awl_count, 2);

	/* Each auto-whitelisted pass renews the network's lifetime... */
	int64_t now = T0 + 300 + HOUR;
	for (int i = 0; i < 2; i++) {
		now += p.pass_lifetime - 1;
		struct gl_triplet t = { 0 };
		expect(decide(&p, now, &t, &n), GL_PASS, GL_REASON_AWL);
	}
	/* ...and unused for a lifetime it is forgotten. */
	now += p.pass_lifetime;
	struct gl_triplet t = { 0 };
	expect_greylist(decide(&p, now, &t, &n), GL_REASON_NEW, p.delay);
	/* The count starts over: one pass is not enough again. */
	expect(decide(&p, now + p.delay, &t, &n), GL_PASS, GL_REASON_TRIPLET);
	struct gl_triplet u = { 0 };
	expect_greylist(decide(&p, now + p.delay + 1, &u, &n), GL_REASON_NEW, p.delay);
}

static void test_gl_awl_disabled(void **state)
{
	(void)state;
	struct gl_params p = P;
	p.awl_threshold = 0;
	struct gl_network n = { 0 };
	for (int h = 0; h < 10; h++)
		pass_one(&p, T0 + 300 + h * HOUR, &n);
	struct gl_triplet t = { 0 };
	expect_greylist(decide(&p, T0 + 11 * HOUR, &t, &n), GL_REASON_NEW, p.delay);
}

static void test_gl_cap(void **state)
{
	(void)state;
	struct gl_params p = P;
	p.max_new_per_client = 3;
	struct gl_network n = { 0 };
	struct gl_triplet t[4] = { { 0 } };

	for (int i = 0; i < 3; i++) {
		struct gl_decision d = decide(&p, T0 + i, &t[i], &n);
		expect_greylist(d, GL_REASON_NEW, p.delay);
		assert_false(d.capped);
		assert_true(t[i].exists);
	}
	struct gl_decision d = decide(&p, T0 + 10, &t[3], &n);
	expect_greylist(d, GL_REASON_NEW, p.delay);
	assert_true(d.capped);
	assert_false(t[3].exists);

	/* Not stored: its retry after the delay is new again, still capped. */
	d = decide(&p, T0 + 10 + p.delay, &t[3], &n);
	expect_greylist(d, GL_REASON_NEW, p.delay);
	assert_true(d.capped);
	assert_false(t[3].exists);

	/* The stored ones are not affected by the cap. */
	expect(decide(&p, T0 + p.delay, &t[0], &n), GL_PASS, GL_REASON_TRIPLET);
	assert_int_equal(n.new_count, 3);

	/* One second short of the hour the window is still full... */
	d = decide(&p, T0 + HOUR - 1, &t[3], &n);
	assert_true(d.capped);
	/* ...then it starts afresh. */
	d = decide(&p, T0 + HOUR, &t[3], &n);
	expect_greylist(d, GL_REASON_NEW, p.delay);
	assert_false(d.capped);
	assert_true(t[3].exists);
	assert_int_equal(n.new_count, 1);
	expect(decide(&p, T0 + HOUR + p.delay, &t[3], &n), GL_PASS, GL_REASON_TRIPLET);
}

/* DRY_RUN decides as the real call would and leaves T and N alone. */
static void check_dry(const struct gl_params *p, int64_t now, const struct gl_triplet *t,
		      const struct gl_network *n)
{
	struct gl_triplet t1 = *t, t2 = *t;
	struct gl_network n1 = *n, n2 = *n;
	struct gl_decision dry = gl_decide(p, now, &t1, &n1, true);
	assert_true(same_triplet(&t1, t));
	assert_true(same_network(&n1, n));
	struct gl_decision real = gl_decide(p, now, &t2, &n2, false);
	assert_true(same_decision(dry, real));
}

static void test_gl_dry_run(void **state)
{
	(void)state;
	struct gl_params p = P;
	p.max_new_per_client = 2;
	p.awl_threshold = 2;
	struct gl_network n = { 0 };
	struct gl_triplet t = { 0 }, u = { 0 };

	check_dry(&p, T0, &t, &n);                          /* new */
	decide(&p, T0, &t, &n);
	check_dry(&p, T0 + 10, &t, &n);                     /* early */
	check_dry(&p, T0 + 300, &t, &n);                    /* pass, counts for the awl */
	check_dry(&p, T0 + p.retry_window + 1, &t, &n);     /* retry window expired */
	decide(&p, T0 + 300, &t, &n);
	check_dry(&p, T0 + 600 + HOUR, &t, &n);             /* passed */
	decide(&p, T0 + 1, &u, &n);
	struct gl_triplet fresh = { 0 };
	check_dry(&p, T0 + 2, &fresh, &n);                  /* capped */
	decide(&p, T0 + 600 + HOUR, &t, &n);
	assert_int_equal(n.awl_count, 2);
	check_dry(&p, T0 + 700 + HOUR, &fresh, &n);         /* awl */
}

static void test_gl_reason_names(void **state)
{
	(void)state;
	assert_string_equal(gl_reason_name(GL_REASON_NEW), "new");
	assert_string_equal(gl_reason_name(GL_REASON_EARLY), "early");
	assert_string_equal(gl_reason_name(GL_REASON_RETRY_WINDOW_EXPIRED), "retry-window-expired");
	assert_string_equal(gl_reason_name(GL_REASON_TRIPLET), "triplet");
	assert_string_equal(gl_reason_name(GL_REASON_AWL), "awl");
}

/* --------------------------------------------------------------- memstore */

static void test_ms_decisions(void **state)
{
	(void)state;
	struct memstore *m = memstore_new(100);
	assert_non_null(m);
	struct triplet a = mk("203.0.113.0/24", "news@example.com", "user@example.org");

	expect_greylist(memstore_decide(m, &P, T0, &a, false), GL_REASON_NEW, P.delay);
	assert_int_equal(memstore_stats(m).triplets, 1);
	assert_int_equal(memstore_stats(m).networks, 1);
	expect_greylist(memstore_decide(m, &P, T0 + 60, &a, false), GL_REASON_EARLY, 240);
	struct gl_decision d = memstore_decide(m, &P, T0 + 400, &a, false);
	expect(d, GL_PASS, GL_REASON_TRIPLET);
	assert_int_equal(d.waited, 400);
	struct gl_triplet st = memstore_get(m, &a);
	assert_true(st.exists && st.passed);
	assert_int_equal(st.expires, T0 + 400 + P.pass_lifetime);

	/* A triplet that differs in any part is another triplet. */
	struct triplet b = mk("203.0.113.0/24", "news@example.com", "other@example.org");
	expect_greylist(memstore_decide(m, &P, T0 + 401, &b, false), GL_REASON_NEW, P.delay);
	assert_int_equal(memstore_stats(m).triplets, 2);

	/* An expired passed triplet met again is new, in place. */
	int64_t later = T0 + 400 + P.pass_lifetime;
	expect_greylist(memstore_decide(m, &P, later, &a, false), GL_REASON_NEW, P.delay);
	st = memstore_get(m, &a);
	assert_false(st.passed);
	assert_int_equal(st.first_seen, later);
	memstore_free(m);
}

static void test_ms_awl_across_triplets(void **state)
{
	(void)state;
	struct memstore *m = memstore_new(100);
	char rcpt[64];
	for (int h = 0; h < P.awl_threshold; h++) {
		snprintf(rcpt, sizeof rcpt, "user%d@example.org", h);
		struct triplet t = mk("198.51.100.0/24", "news@example.com", rcpt);
		int64_t now = T0 + h * HOUR;
		memstore_decide(m, &P, now, &t, false);
		expect(memstore_decide(m, &P, now + P.delay, &t, false), GL_PASS, GL_REASON_TRIPLET);
	}
	struct triplet t = mk("198.51.100.0/24", "other@example.net", "someone@example.org");
	int64_t now = T0 + P.awl_threshold * HOUR;
	size_t before = memstore_stats(m).triplets;
	expect(memstore_decide(m, &P, now, &t, false), GL_PASS, GL_REASON_AWL);
	assert_int_equal(memstore_stats(m).triplets, before);

	struct triplet elsewhere = mk("198.51.101.0/24", "news@example.com", "user0@example.org");
	expect_greylist(memstore_decide(m, &P, now, &elsewhere, false), GL_REASON_NEW, P.delay);
	memstore_free(m);
}

static void test_ms_cap_not_stored(void **state)
{
	(void)state;
	struct gl_params p = P;
	p.max_new_per_client = 2;
	struct memstore *m = memstore_new(100);
	struct triplet t1 = mk("192.0.2.0/24", "a@example.com", "x@example.org");
	struct triplet t2 = mk("192.0.2.0/24", "b@example.com", "x@example.org");
	struct triplet t3 = mk("192.0.2.0/24", "c@example.com", "x@example.org");
	memstore_decide(m, &p, T0, &t1, false);
	memstore_decide(m, &p, T0, &t2, false);
	struct gl_decision d = memstore_decide(m, &p, T0 + 1, &t3, false);
	expect_greylist(d, GL_REASON_NEW, p.delay);
	assert_true(d.capped);
	assert_int_equal(memstore_stats(m).triplets, 2);
	assert_false(memstore_get(m, &t3).exists);

	d = memstore_decide(m, &p, T0 + 1 + p.delay, &t3, false);
	expect_greylist(d, GL_REASON_NEW, p.delay);
	assert_true(d.capped);

	d = memstore_decide(m, &p, T0 + HOUR, &t3, false);
	assert_false(d.capped);
	assert_true(memstore_get(m, &t3).exists);
	memstore_free(m);
}

static void test_ms_dry_run(void **state)
{
	(void)state;
	struct memstore *m = memstore_new(100);
	struct triplet a = mk("203.0.113.0/24", "news@example.com", "user@example.org");

	expect_greylist(memstore_decide(m, &P, T0, &a, true), GL_REASON_NEW, P.delay);
	assert_int_equal(memstore_stats(m).triplets, 0);
	assert_int_equal(memstore_stats(m).networks, 0);
	assert_false(memstore_get(m, &a).exists);

	memstore_decide(m, &P, T0, &a, false);
	struct gl_triplet before = memstore_get(m, &a);
	expect(memstore_decide(m, &P, T0 + 300, &a, true), GL_PASS, GL_REASON_TRIPLET);
	struct gl_triplet after = memstore_get(m, &a);
	assert_true(same_triplet(&before, &after));
	expect(memstore_decide(m, &P, T0 + 300, &a, false), GL_PASS, GL_REASON_TRIPLET);
	memstore_free(m);
}

static struct triplet numbered(int i)
{
	char rcpt[64];
	snprintf(rcpt, sizeof rcpt, "user%d@example.org", i);
	return mk("203.0.113.0/24", "news@example.com", rcpt);
}

static void test_ms_lru(void **state)
{
	(void)state;
	struct memstore *m = memstore_new(3);
	struct triplet t[6];
	for (int i = 0; i < 6; i++)
		t[i] = numbered(i);
	for (int i = 0; i < 3; i++)
		memstore_decide(m, &P, T0 + i, &t[i], false);
	memstore_decide(m, &P, T0 + 10, &t[0], false);      /* t0 is used again */

	memstore_decide(m, &P, T0 + 11, &t[3], false);
	struct memstore_stats s = memstore_stats(m);
	assert_int_equal(s.triplets, 3);
	assert_int_equal(s.evicted, 1);
	assert_false(memstore_get(m, &t[1]).exists);        /* the least recently used */
	assert_true(memstore_get(m, &t[0]).exists);
	assert_true(memstore_get(m, &t[2]).exists);
	assert_true(memstore_get(m, &t[3]).exists);

	/* Never above the bound, however many arrive. */
	for (int i = 0; i < 50; i++) {
		struct triplet x = numbered(100 + i);
		memstore_decide(m, &P, T0 + 20 + i, &x, false);
		assert_true(memstore_stats(m).triplets <= 3);
	}
	assert_int_equal(memstore_stats(m).evicted, 51);

	/* The order survives a save and load: the oldest goes first after. */
	memstore_free(m);
	m = memstore_new(3);
	for (int i = 0; i < 3; i++)
		memstore_decide(m, &P, T0 + i, &t[i], false);
	memstore_decide(m, &P, T0 + 10, &t[0], false);      /* order now t1 t2 t0 */
	char err[512];
	assert_int_equal(memstore_save(m, path("lru.db"), T0 + 20, NULL, err, sizeof err), 0);
	struct memstore *m2 = memstore_new(3);
	assert_int_equal(memstore_load(m2, path("lru.db"), T0 + 20, err, sizeof err), 3 + 1);
	memstore_decide(m2, &P, T0 + 21, &t[4], false);
	assert_false(memstore_get(m2, &t[1]).exists);
	assert_true(memstore_get(m2, &t[0]).exists);
	assert_true(memstore_get(m2, &t[2]).exists);
	memstore_free(m2);
	memstore_free(m);
}

static void test_ms_sweep(void **state)
{
	(void)state;
	struct memstore *m = memstore_new(1000);
	/* 20 greylisted triplets, 5 passed ones, over two networks. */
	for (int i = 0; i < 25; i++) {
		struct triplet t = numbered(i);
		memstore_decide(m, &P, T0, &t, false);
		if (i >= 20)
			memstore_decide(m, &P, T0 + P.delay, &t, false);
	}
	struct triplet lone = mk("192.0.2.0/24", "x@example.com", "y@example.org");
	memstore_decide(m, &P, T0, &lone, false);
	assert_int_equal(memstore_stats(m).triplets, 26);
	assert_int_equal(memstore_stats(m).networks, 2);

	/* Nothing has expired yet: a full sweep keeps everything. */
	memstore_sweep(m, T0 + HOUR, 1u << 20);
	assert_int_equal(memstore_stats(m).triplets, 26);
	assert_int_equal(memstore_stats(m).expired, 0);
	/* The lone network's hour is over and it has nothing to keep. */
	assert_int_equal(memstore_stats(m).networks, 1);

	/* Past the retry window and its grace, in small steps. */
	int64_t now = T0 + P.retry_window + GL_EXPIRED_GRACE;
	for (int i = 0; i < 4096; i++)
		memstore_sweep(m, now, 1);
	struct memstore_stats s = memstore_stats(m);
	assert_int_equal(s.triplets, 5);
	assert_int_equal(s.expired, 21);
	assert_int_equal(s.networks, 1);                 /* the auto-whitelist count lives on */

	now = T0 + P.delay + P.pass_lifetime;
	memstore_sweep(m, now, 1u << 20);
	s = memstore_stats(m);
	assert_int_equal(s.triplets, 0);
	assert_int_equal(s.networks, 0);
	assert_int_equal(s.expired, 26);
	memstore_free(m);
}

static bool count_cb(void *arg, const struct memstore_view *v)
{
	(void)v;
	(*(int *)arg)++;
	return true;
}

/* A network's marks: a trap sets until when and since when, a decision
 * that leaves the network's counts empty keeps its marks, they survive a
 * save and a load, and are gone once their time is over. */
static void test_ms_marks(void **state)
{
	(void)state;
	struct memstore *m = memstore_new(1000);
	char err[512];
	const char *net = "203.0.113.0/24";
	const struct gl_mark_set read = { GL_MARK_NONE, 0, 0 },
		trap = { GL_MARK_TRAP, 86400, 172800 };
	struct gl_marks k = memstore_marks(m, net, &read, T0);
	assert_int_equal(k.trapped_until, 0);
	assert_int_equal(k.now, T0);
	assert_int_equal(memstore_stats(m).networks, 0);   /* a read stores nothing */

	k = memstore_marks(m, net, &trap, T0);
	assert_int_equal(k.trapped_until, T0 + 86400);
	assert_int_equal(k.trapped_at, T0);

	/* the network's counts come and go; its marks stay */
	struct triplet t = mk(net, "a@example.com", "b@example.org");
	struct gl_params p = P;
	p.void_before = k.trapped_at;
	memstore_decide(m, &p, T0 + 20, &t, false);
	memstore_sweep(m, T0 + 2 * HOUR, 1 << 20);           /* new-count window over */
	k = memstore_marks(m, net, &read, T0 + 2 * HOUR);
	assert_int_equal(k.trapped_until, T0 + 86400);

	assert_int_equal(memstore_save(m, path("marks.db"), T0 + 2 * HOUR, NULL, err, sizeof err), 0);
	struct memstore *m2 = memstore_new(1000);
	assert_true(memstore_load(m2, path("marks.db"), T0 + 2 * HOUR, err, sizeof err) > 0);
	k = memstore_marks(m2, net, &read, T0 + 3 * HOUR);
	assert_int_equal(k.trapped_until, T0 + 86400);
	assert_int_equal(k.trapped_at, T0);

	/* past the trap's lifetime the record is still there (trapped_at voids
	 * triplets for the retry window), but no longer trapping */
	k = memstore_marks(m2, net, &read, T0 + 86400 + 1);
	assert_true(k.trapped_until < k.now);
	assert_int_equal(k.trapped_at, T0);
	/* past its TTL, gone, and swept */
	k = memstore_marks(m2, net, &read, T0 + 172800);
	assert_int_equal(k.trapped_at, 0);
	memstore_sweep(m2, T0 + 172800, 1 << 20);
	assert_int_equal(memstore_stats(m2).networks, 0);
	memstore_free(m);
	memstore_free(m2);
}

static void test_ms_save_load_roundtrip(void **state)
{
	(void)state;
	struct gl_params p = P;
	p.max_new_per_client = 3;
	struct memstore *m = memstore_new(1000);
	char err[512];

	/* An auto-whitelisted network, earned over five hours. */
	for (int h = 0; h < p.awl_threshold; h++) {
		struct triplet t = numbered(h);
		memstore_decide(m, &p, T0 + h * HOUR, &t, false);
		memstore_decide(m, &p, T0 + h * HOUR + p.delay, &t, false);
	}
	int64_t t1 = T0 + 6 * HOUR;
	struct triplet passed = mk("198.51.100.0/24", "a@example.com", "b@example.org");
	struct triplet early = mk("198.51.100.0/24", "c@example.com", "d@example.org");
	struct triplet capped = mk("198.51.100.0/24", "e@example.com", "f@example.org");
	memstore_decide(m, &p, t1, &passed, false);
	expect(memstore_decide(m, &p, t1 + 300, &passed, false), GL_PASS, GL_REASON_TRIPLET);
	memstore_decide(m, &p, t1 + 300, &early, false);
	struct triplet third = mk("198.51.100.0/24", "g@example.com", "h@example.org");
	memstore_decide(m, &p, t1 + 301, &third, false);   /* the network's third new one */

	int64_t saved = t1 + 310;
	assert_int_equal(memstore_save(m, path("state.db"), saved, NULL, err, sizeof err), 0);
	assert_int_equal(access(path("state.db.tmp"), F_OK), -1);

	struct memstore *m2 = memstore_new(1000);
	long n = memstore_load(m2, path("state.db"), saved, err, sizeof err);
	struct memstore_stats s1 = memstore_stats(m), s2 = memstore_stats(m2);
	assert_int_equal(n, (long)(s1.triplets + s1.networks));
	assert_int_equal(s2.triplets, s1.triplets);
	assert_int_equal(s2.networks, s1.networks);
	struct gl_triplet e1 = memstore_get(m, &early), e2 = memstore_get(m2, &early);
	assert_true(same_triplet(&e1, &e2));

	int64_t now = t1 + 320;
	struct gl_decision d = memstore_decide(m2, &p, now, &early, false);
	expect_greylist(d, GL_REASON_EARLY, 280);
	d = memstore_decide(m2, &p, now, &passed, false);
	expect(d, GL_PASS, GL_REASON_TRIPLET);
	assert_int_equal(d.waited, 320);
	d = memstore_decide(m2, &p, now, &capped, false);
	assert_true(d.capped);                             /* the hour's count survived */
	struct triplet fresh = mk("203.0.113.0/24", "new@example.com", "user0@example.org");
	expect(memstore_decide(m2, &p, now, &fresh, false), GL_PASS, GL_REASON_AWL);
	expect(memstore_decide(m2, &p, now + 300, &early, false), GL_PASS, GL_REASON_TRIPLET);

	/* A store saved empty loads empty; a missing file is no error. */
	struct memstore *e = memstore_new(10);
	assert_int_equal(memstore_save(e, path("empty.db"), T0, NULL, err, sizeof err), 0);
	assert_int_equal(memstore_load(e, path("empty.db"), T0, err, sizeof err), 0);
	assert_int_equal(memstore_load(e, path("missing.db"), T0, err, sizeof err), 0);
	int count = 0;
	walk_all(e, T0, count_cb, &count);
	assert_int_equal(count, 0);

	memstore_free(e);
	memstore_free(m2);
	memstore_free(m);
}

/* The backup_first flag of a pending triplet survives a save and a load,
 * and a flagged triplet's retry then takes the flagged delay. */
static void test_ms_backup_first_roundtrip(void **state)
{
	(void)state;
	struct memstore *m = memstore_new(1000);
	char err[512];
	struct gl_params set = P;
	set.set_backup_first = true;
	struct triplet flagged = mk("198.51.100.0/24", "a@example.com", "b@example.org");
	struct triplet plain = mk("198.51.100.0/24", "c@example.com", "d@example.org");
	memstore_decide(m, &set, T0, &flagged, false);
	memstore_decide(m, &P, T0, &plain, false);
	assert_int_equal(memstore_save(m, path("flag.db"), T0 + 10, NULL, err, sizeof err), 0);
	struct memstore *m2 = memstore_new(1000);
	assert_int_equal(memstore_load(m2, path("flag.db"), T0 + 10, err, sizeof err), 3);
	assert_true(memstore_get(m2, &flagged).backup_first);
	assert_false(memstore_get(m2, &plain).backup_first);
	struct gl_params f = P;
	f.flagged_delay = 900;
	struct gl_decision d = memstore_decide(m2, &f, T0 + 400, &flagged, false);
	expect_greylist(d, GL_REASON_EARLY, 500);
	assert_true(d.backup_first);
	expect(memstore_decide(m2, &f, T0 + 400, &plain, false), GL_PASS, GL_REASON_TRIPLET);
	memstore_free(m2);
	memstore_free(m);
}

/* What expired while greygate was down is not loaded, nor counted. */
static void test_ms_load_skips_expired(void **state)
{
	(void)state;
	struct memstore *m = memstore_new(100);
	struct triplet a = numbered(1), b = numbered(2);
	memstore_decide(m, &P, T0, &a, false);
	memstore_decide(m, &P, T0, &b, false);
	memstore_decide(m, &P, T0 + P.delay, &b, false);
	char err[512];
	assert_int_equal(memstore_save(m, path("exp.db"), T0 + P.delay, NULL, err, sizeof err), 0);

	struct memstore *m2 = memstore_new(100);
	int64_t later = T0 + P.retry_window + GL_EXPIRED_GRACE;
	assert_int_equal(memstore_load(m2, path("exp.db"), later, err, sizeof err), 2);
	assert_int_equal(memstore_stats(m2).triplets, 1);
	assert_true(memstore_get(m2, &b).passed);
	assert_false(memstore_get(m2, &a).exists);
	memstore_free(m2);
	memstore_free(m);
}

struct found {
	const char *sender, *rcpt;
	bool seen;
};

static bool find_cb(void *arg, const struct memstore_view *v)
{
	struct found *f = arg;
	if (strcmp(v->sender, f->sender) == 0 && strcmp(v->rcpt, f->rcpt) == 0)
		f->seen = true;
	return true;
}

static void test_ms_roundtrip_odd_parts(void **state)
{
	(void)state;
	static const struct {
		const char *sender, *rcpt;
	} odd[] = {
		{ "\"john doe\"@example.org", "\"jane  doe\"@example.org" },
		{ "\"100% sure\"@example.org", "user@example.org" },
		{ "\"tab\there\"@example.org", "\"%41\"@example.org" },
		{ "\"new\nline\"@example.org", "x@example.org" },
		{ "<>", "postmaster@example.org" },
		{ "", "empty-sender@example.org" },
	};
	size_t n = sizeof odd / sizeof odd[0];
	struct memstore *m = memstore_new(100);
	for (size_t i = 0; i < n; i++) {
		struct triplet t = mk("203.0.113.0/24", odd[i].sender, odd[i].rcpt);
		memstore_decide(m, &P, T0, &t, false);
	}
	/* The longest parts, every byte of them escaped: the longest line. */
	char lnet[NET_TEXT_MAX], lsender[TRIPLET_PART_MAX], lrcpt[TRIPLET_PART_MAX];
	memset(lnet, ' ', sizeof lnet - 1);
	lnet[sizeof lnet - 1] = 0;
	memset(lsender, '%', sizeof lsender - 1);
	lsender[sizeof lsender - 1] = 0;
	memset(lrcpt, '\n', sizeof lrcpt - 1);
	lrcpt[sizeof lrcpt - 1] = 0;
	struct triplet longest = mk(lnet, lsender, lrcpt);
	memstore_decide(m, &P, T0, &longest, false);
	/* A network name the admin typed, blanks and all. */
	assert_int_equal(memstore_whitelist(m, "my net", P.awl_threshold, T0 + 1000), 0);

	char err[512];
	assert_int_equal(memstore_save(m, path("odd.db"), T0, NULL, err, sizeof err), 0);
	struct memstore *m2 = memstore_new(100);
	long loaded = memstore_load(m2, path("odd.db"), T0, err, sizeof err);
	if (loaded < 0)
		fail_msg("load: %s", err);
	assert_int_equal(loaded, (long)n + 1 + 2 + 1);     /* + its networks, + my net */
	expect_greylist(memstore_decide(m2, &P, T0 + 1, &longest, false), GL_REASON_EARLY,
			P.delay - 1);
	struct triplet mine = mk("my net", "a@b", "c@d");
	expect(memstore_decide(m2, &P, T0 + 1, &mine, false), GL_PASS, GL_REASON_AWL);
	for (size_t i = 0; i < n; i++) {
		struct triplet t = mk("203.0.113.0/24", odd[i].sender, odd[i].rcpt);
		struct found f = { t.sender, t.rcpt, false };
		walk_all(m2, T0, find_cb, &f);
		if (!f.seen)
			fail_msg("lost \"%s\" -> \"%s\"", odd[i].sender, odd[i].rcpt);
		expect_greylist(memstore_decide(m2, &P, T0 + 1, &t, false), GL_REASON_EARLY,
				P.delay - 1);
	}
	memstore_free(m2);
	memstore_free(m);
}

/* ---- damaged files ---- */

/* TEXT with line LINE (1-based) replaced by REPL, into OUT. */
static size_t replace_line(const char *text, int line, const char *repl, char *out,
			   size_t outlen)
{
	size_t o = 0;
	int l = 1;
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) + 1 : strlen(p);
		int w = l == line ? snprintf(out + o, outlen - o, "%s\n", repl)
				  : snprintf(out + o, outlen - o, "%.*s", (int)len, p);
		assert_true(w >= 0 && (size_t)w < outlen - o);
		o += (size_t)w;
		p += len;
		l++;
	}
	return o;
}

/* The line of TEXT numbered LINE, without its newline. */
static const char *line_of(const char *text, int line)
{
	static char buf[2048];
	const char *p = text;
	for (int l = 1; l < line; l++) {
		p = strchr(p, '\n');
		assert_non_null(p);
		p++;
	}
	size_t len = strcspn(p, "\n");
	assert_true(len < sizeof buf);
	memcpy(buf, p, len);
	buf[len] = 0;
	return buf;
}

/* Line LINE of TEXT with field FIELD (0-based, blank-separated) replaced by
 * REPL, or removed when REPL is NULL. */
static const char *with_field(const char *text, int line, int field, const char *repl)
{
	static char buf[2048];
	char src[2048];
	snprintf(src, sizeof src, "%s", line_of(text, line));
	size_t o = 0;
	int f = 0;
	char *save = NULL;
	for (char *tok = strtok_r(src, " ", &save); tok; tok = strtok_r(NULL, " ", &save), f++) {
		const char *put = f == field ? repl : tok;
		if (!put)
			continue;
		int w = snprintf(buf + o, sizeof buf - o, "%s%s", o ? " " : "", put);
		assert_true(w >= 0 && (size_t)w < sizeof buf - o);
		o += (size_t)w;
	}
	return buf;
}

struct damage {
	const char *what;
	int line;             /* 1-based line to damage; 0: cut the file at CUT */
	int field;            /* blank-separated field to replace; -1: whole line */
	const char *value;    /* the replacement; NULL removes the field */
	int want_line;        /* the line the error must name */
	long cut;
};

/* Applies D to the good file GOOD into OUT; returns the length. */
static size_t damage(const char *good, const struct damage *d, char *out, size_t outlen)
{
	if (d->line == 0) {
		size_t n = (size_t)d->cut;
		assert_true(n < outlen && n <= strlen(good));
		memcpy(out, good, n);
		out[n] = 0;
		return n;
	}
	char repl[2100];
	if (d->field < 0)
		snprintf(repl, sizeof repl, "%s", d->value);
	else
		snprintf(repl, sizeof repl, "%s", with_field(good, d->line, d->field, d->value));
	return replace_line(good, d->line, repl, out, outlen);
}

static void test_ms_load_corrupt(void **state)
{
	(void)state;
	/* A file in the text format of earlier versions, which is still read
	 * (saves write the compact format, test_memstore.c): magic, two
	 * triplets, one network. */
	struct triplet a = numbered(1), b = mk("203.0.113.0/24", "\"john doe\"@example.org", "x@y");
	char err[512];
	char good[16384];
	long long exp = T0 + P.retry_window;
	snprintf(good, sizeof good,
		 "greygate-memstore 1\n"
		 "T %s %lld 0 %lld 203.0.113.0/24 news@example.com user1@example.org\n"
		 "T %s %lld 0 %lld 203.0.113.0/24 \"john%%20doe\"@example.org x@y\n"
		 "N 203.0.113.0/24 0 0 0 2 %lld\n",
		 a.hex, (long long)T0, exp, b.hex, (long long)T0 + 1, exp, (long long)T0 + HOUR);
	/* The layout the damage below is aimed at. */
	assert_int_equal(line_of(good, 2)[0], 'T');
	assert_int_equal(line_of(good, 3)[0], 'T');
	assert_int_equal(line_of(good, 4)[0], 'N');
	assert_non_null(strstr(line_of(good, 3), "john%20doe"));
	size_t good_len = strlen(good);
	long third = (long)(strstr(good, line_of(good, 3)) - good);
	char n4_plus[2100];
	snprintf(n4_plus, sizeof n4_plus, "%s 7", line_of(good, 4));
	char t2_two_blanks[2100];
	snprintf(t2_two_blanks, sizeof t2_two_blanks, "T %s", line_of(good, 2) + 1);
	char t3_plus[2100];
	snprintf(t3_plus, sizeof t3_plus, "%s extra", line_of(good, 3));

	/* T KEY FIRST PASSED EXPIRES NET SENDER RCPT; N NET C LAST EXP NEW END */
	const struct damage cases[] = {
		{ "last newline missing", 0, 0, NULL, 4, (long)good_len - 1 },
		{ "cut in the middle of a line", 0, 0, NULL, 3, third + 20 },
		{ "bad magic", 1, -1, "greygate-memstore 9", 1, 0 },
		{ "another file", 1, -1, "# greylist database", 1, 0 },
		{ "garbage first_seen", 2, 2, "12x", 2, 0 },
		{ "passed not 0/1", 2, 3, "2", 2, 0 },
		{ "key not hex", 2, 1, "zz0102030405060708090a0b0c0d0e0f", 2, 0 },
		{ "key too short", 2, 1, "0102", 2, 0 },
		{ "expires out of range", 2, 4, "99999999999999999999999", 2, 0 },
		{ "bad escape", 3, 6, "\"john%4Gdoe\"@example.org", 3, 0 },
		{ "signed escape", 3, 6, "\"john%-1doe\"@example.org", 3, 0 },
		{ "escape cut short", 3, 6, "\"john\"@example.org%2", 3, 0 },
		{ "triplet field missing", 3, 7, NULL, 3, 0 },
		{ "triplet field extra", 3, -1, t3_plus, 3, 0 },
		{ "unknown kind", 3, 0, "X", 3, 0 },
		{ "empty line", 3, -1, "", 3, 0 },
		{ "two blanks", 2, -1, t2_two_blanks, 2, 0 },
		{ "network field missing", 4, 6, NULL, 4, 0 },
		{ "network field extra", 4, -1, n4_plus, 4, 0 },
		{ "network garbage count", 4, 2, "1y", 4, 0 },
		{ "network count out of range", 4, 2, "99999999999999999999", 4, 0 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct damage *d = &cases[i];
		char text[16384];
		size_t len = damage(good, d, text, sizeof text);
		write_file(path("bad.db"), text, len);

		/* Whatever the store held before, it is empty after a refusal. */
		struct memstore *s = memstore_new(100);
		struct triplet other = numbered(99);
		memstore_decide(s, &P, T0, &other, false);
		char e[512] = "";
		long r = memstore_load(s, path("bad.db"), T0 + 2, e, sizeof e);
		if (r != -1)
			fail_msg("%s: loaded (%ld)", d->what, r);
		char want[300];
		snprintf(want, sizeof want, "%s:%d: ", path("bad.db"), d->want_line);
		if (strncmp(e, want, strlen(want)) != 0)
			fail_msg("%s: error \"%s\", want \"%s...\"", d->what, e, want);
		struct memstore_stats st = memstore_stats(s);
		if (st.triplets != 0 || st.networks != 0)
			fail_msg("%s: store not empty", d->what);
		assert_false(memstore_get(s, &a).exists);
		assert_false(memstore_get(s, &other).exists);
		memstore_free(s);
	}

	/* The undamaged file loads: the refusals were about the damage. */
	struct memstore *s = memstore_new(100);
	write_file(path("bad.db"), good, good_len);
	assert_int_equal(memstore_load(s, path("bad.db"), T0 + 2, err, sizeof err), 3);
	assert_true(memstore_get(s, &b).exists);
	memstore_free(s);
}

/* A file from a store with a larger bound (max_entries lowered since) is
 * loaded as far as it fits, not refused. */
static void test_ms_load_into_smaller_store(void **state)
{
	(void)state;
	struct memstore *m = memstore_new(100);
	char net[32];
	for (int i = 0; i < 4; i++) {
		snprintf(net, sizeof net, "192.0.%d.0/24", i);
		struct triplet t = mk(net, "a@example.com", "b@example.org");
		memstore_decide(m, &P, T0 + i, &t, false);
	}
	char err[512];
	assert_int_equal(memstore_save(m, path("big.db"), T0 + 10, NULL, err, sizeof err), 0);
	memstore_free(m);

	struct memstore *s = memstore_new(2);
	long n = memstore_load(s, path("big.db"), T0 + 10, err, sizeof err);
	if (n < 0)
		fail_msg("refused: %s", err);
	struct memstore_stats st = memstore_stats(s);
	assert_int_equal(st.triplets, 2);
	assert_int_equal(st.networks, 2);
	assert_int_equal(n, 2 + 2);
	assert_int_equal(st.evicted, 2 + 2);
	/* The newest triplets were kept. */
	struct triplet t3 = mk("192.0.3.0/24", "a@example.com", "b@example.org");
	struct triplet t0 = mk("192.0.0.0/24", "a@example.com", "b@example.org");
	assert_true(memstore_get(s, &t3).exists);
	assert_false(memstore_get(s, &t0).exists);
	memstore_free(s);
}

static void test_ms_admin(void **state)
{
	(void)state;
	struct memstore *m = memstore_new(100);
	struct triplet a = numbered(1), b = numbered(2);

	assert_int_equal(memstore_pass(m, &a, T0, P.pass_lifetime), 0);
	expect(memstore_decide(m, &P, T0 + 1, &a, false), GL_PASS, GL_REASON_TRIPLET);

	/* Passing a stale entry by hand starts it afresh. */
	struct triplet stale = numbered(3);
	memstore_decide(m, &P, T0, &stale, false);
	int64_t later = T0 + P.retry_window + GL_EXPIRED_GRACE + 5;
	assert_int_equal(memstore_pass(m, &stale, later, P.pass_lifetime), 0);
	struct gl_decision d = memstore_decide(m, &P, later + 10, &stale, false);
	expect(d, GL_PASS, GL_REASON_TRIPLET);
	assert_int_equal(d.waited, 10);

	memstore_decide(m, &P, T0, &b, false);
	assert_int_equal(memstore_delete(m, b.hex), 1);
	assert_int_equal(memstore_delete(m, b.hex), 0);
	assert_int_equal(memstore_delete(m, "not-a-key"), -1);
	expect_greylist(memstore_decide(m, &P, T0 + 400, &b, false), GL_REASON_NEW, P.delay);

	struct triplet c = mk("192.0.2.0/24", "x@example.com", "y@example.org");
	assert_int_equal(memstore_whitelist(m, "192.0.2.0/24", P.awl_threshold, T0 + 1000), 0);
	expect(memstore_decide(m, &P, T0 + 10, &c, false), GL_PASS, GL_REASON_AWL);
	memstore_free(m);

	/* Passing by hand is a use: the entry moves off the eviction end. */
	m = memstore_new(2);
	struct triplet x = numbered(10), y = numbered(11), z = numbered(12);
	memstore_decide(m, &P, T0, &x, false);
	memstore_decide(m, &P, T0 + 1, &y, false);
	assert_int_equal(memstore_pass(m, &x, T0 + 2, P.pass_lifetime), 0);
	memstore_decide(m, &P, T0 + 3, &z, false);
	assert_true(memstore_get(m, &x).exists);
	assert_false(memstore_get(m, &y).exists);
	memstore_free(m);
}

/* ---------------------------------------------------------------- triplet */

/* Every way of cutting S into (net, sender, rcpt) gives a different key. */
static void check_all_splits(const char *s)
{
	size_t n = strlen(s);
	size_t count = (n + 1) * (n + 2) / 2, k = 0;
	uint8_t (*keys)[TRIPLET_KEY_LEN] = calloc(count, sizeof *keys);
	assert_non_null(keys);
	for (size_t i = 0; i <= n; i++) {
		for (size_t j = i; j <= n; j++) {
			char net[64];
			snprintf(net, sizeof net, "%.*s", (int)i, s);
			struct triplet t;
			assert_int_equal(triplet_make(&t, net, s + i, j - i, s + j, n - j), 0);
			memcpy(keys[k++], t.key, TRIPLET_KEY_LEN);
		}
	}
	for (size_t x = 0; x < count; x++)
		for (size_t y = x + 1; y < count; y++)
			if (memcmp(keys[x], keys[y], TRIPLET_KEY_LEN) == 0)
				fail_msg("two splits of \"%s\" share a key", s);
	free(keys);
}

static void test_triplet_separators(void **state)
{
	(void)state;
	struct triplet t1 = mk("203.0.113.0/24", "a@x:b", "c@y");
	struct triplet t2 = mk("203.0.113.0/24", "a@x", "b:c@y");
	assert_memory_not_equal(t1.key, t2.key, TRIPLET_KEY_LEN);
	assert_string_not_equal(t1.hex, t2.hex);

	struct triplet t3 = mk("203.0.113.0/24:a", "b@x", "c@y");
	struct triplet t4 = mk("203.0.113.0/24", "a:b@x", "c@y");
	assert_memory_not_equal(t3.key, t4.key, TRIPLET_KEY_LEN);

	/* Lengths that read like part of the data. */
	struct triplet t5 = mk("1", "2a", "b");
	struct triplet t6 = mk("12", "a", "b");
	assert_memory_not_equal(t5.key, t6.key, TRIPLET_KEY_LEN);

	check_all_splits("a:b@c:d");
	check_all_splits("1.2/24:a@b|c@d");
	check_all_splits("x \n\t|@:,;=0");
	check_all_splits("aaaaaa");
}

static void test_triplet_stable(void **state)
{
	(void)state;
	struct triplet a = mk("203.0.113.0/24", "newsletter@example.com", "User@Example.ORG");
	struct triplet b = mk("203.0.113.0/24", "newsletter@example.com", "User@Example.ORG");
	assert_memory_equal(a.key, b.key, TRIPLET_KEY_LEN);
	/* SHA-256 of 4-byte big-endian length + bytes for net, sender, rcpt
	 * (lower-cased), first 16 bytes. Every MX host must compute the same:
	 * a change here is a change of the key format. */
	assert_string_equal(a.hex, "9dda9438cd728af25b92f43160c52000");
	assert_string_equal(a.net, "203.0.113.0/24");
	assert_string_equal(a.sender, "newsletter@example.com");
	assert_string_equal(a.rcpt, "user@example.org");
	for (size_t i = 0; i < TRIPLET_KEY_LEN; i++) {
		char two[3];
		snprintf(two, sizeof two, "%02x", a.key[i]);
		assert_memory_equal(two, a.hex + 2 * i, 2);
	}

	struct triplet c = mk("2001:db8:1:2::/64", "<>", "postmaster@example.org");
	assert_string_equal(c.hex, "bb8a78df56e1424f4502a294ce9bd262");
}

static void test_triplet_case(void **state)
{
	(void)state;
	struct triplet a = mk("203.0.113.0/24", "news@example.com", "User@Example.ORG");
	struct triplet b = mk("203.0.113.0/24", "news@example.com", "user@example.org");
	struct triplet c = mk("203.0.113.0/24", "news@example.com", "USER@EXAMPLE.ORG");
	assert_string_equal(a.hex, b.hex);
	assert_string_equal(a.hex, c.hex);
	/* The sender is taken as normalised: its case is the normaliser's call. */
	struct triplet d = mk("203.0.113.0/24", "News@example.com", "user@example.org");
	assert_string_not_equal(b.hex, d.hex);
	/* Only ASCII is folded, whatever the locale: bytes of UTF-8 stay. */
	struct triplet e = mk("203.0.113.0/24", "s@x", "J\xc3\x96RG@Example.de");
	assert_string_equal(e.rcpt, "j\xc3\x96rg@example.de");
	struct triplet f = mk("203.0.113.0/24", "s@x", "j\xc3\xb6rg@example.de");
	assert_string_not_equal(e.hex, f.hex);
}

static void test_triplet_bounds(void **state)
{
	(void)state;
	char big[TRIPLET_PART_MAX + 1];
	memset(big, 'a', sizeof big);
	struct triplet t;
	assert_int_equal(triplet_make(&t, "n", big, TRIPLET_PART_MAX - 1, "r", 1), 0);
	assert_int_equal(strlen(t.sender), TRIPLET_PART_MAX - 1);
	assert_int_equal(triplet_make(&t, "n", big, TRIPLET_PART_MAX, "r", 1), -1);
	assert_int_equal(triplet_make(&t, "n", "s", 1, big, TRIPLET_PART_MAX - 1), 0);
	assert_int_equal(triplet_make(&t, "n", "s", 1, big, TRIPLET_PART_MAX), -1);
	char net[NET_TEXT_MAX + 1];
	memset(net, '1', sizeof net);
	net[NET_TEXT_MAX] = 0;
	assert_int_equal(triplet_make(&t, net, "s", 1, "r", 1), -1);
	net[NET_TEXT_MAX - 1] = 0;
	assert_int_equal(triplet_make(&t, net, "s", 1, "r", 1), 0);
}

static const char *network(const char *client, unsigned v4, unsigned v6)
{
	static char buf[NET_TEXT_MAX];
	struct ipaddr a = ip(client);
	triplet_network(&a, v4, v6, buf, sizeof buf);
	return buf;
}

static void test_triplet_network(void **state)
{
	(void)state;
	assert_string_equal(network("203.0.113.5", 24, 64), "203.0.113.0/24");
	assert_string_equal(network("203.0.113.250", 24, 64), "203.0.113.0/24");
	assert_string_equal(network("::ffff:203.0.113.5", 24, 64), "203.0.113.0/24");
	assert_string_equal(network("203.0.113.5", 32, 128), "203.0.113.5/32");
	assert_string_equal(network("203.0.113.5", 16, 64), "203.0.0.0/16");
	assert_string_equal(network("2001:db8:1:2:3:4:5:6", 24, 64), "2001:db8:1:2::/64");
	assert_string_equal(network("2001:db8:1:2:ffff:ffff:ffff:ffff", 24, 64), "2001:db8:1:2::/64");
	assert_string_equal(network("2001:db8:1:2:3:4:5:6", 32, 128), "2001:db8:1:2:3:4:5:6/128");
	assert_string_equal(network("2001:db8:1:2:3:4:5:6", 24, 48), "2001:db8:1::/48");
	assert_string_equal(network("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 24, 128),
			    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");

	/* Clients of one network share a triplet, of two networks do not. */
	struct triplet a = mk(network("203.0.113.5", 24, 64), "s@x", "r@y");
	struct triplet b = mk(network("203.0.113.77", 24, 64), "s@x", "r@y");
	struct triplet c = mk(network("203.0.114.5", 24, 64), "s@x", "r@y");
	struct triplet d = mk(network("203.0.113.5", 32, 128), "s@x", "r@y");
	struct triplet e = mk(network("203.0.113.77", 32, 128), "s@x", "r@y");
	assert_string_equal(a.hex, b.hex);
	assert_string_not_equal(a.hex, c.hex);
	assert_string_not_equal(a.hex, d.hex);
	assert_string_not_equal(d.hex, e.hex);
	struct triplet f = mk(network("2001:db8::1", 24, 64), "s@x", "r@y");
	struct triplet g = mk(network("2001:db8::ffff:1", 24, 64), "s@x", "r@y");
	struct triplet h = mk(network("2001:db8:0:1::1", 24, 64), "s@x", "r@y");
	assert_string_equal(f.hex, g.hex);
	assert_string_not_equal(f.hex, h.hex);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gl_new),
		cmocka_unit_test(test_gl_early),
		cmocka_unit_test(test_gl_void_before),
		cmocka_unit_test(test_gl_backup_first),
		cmocka_unit_test(test_gl_pass_after_delay),
		cmocka_unit_test(test_gl_pass_renews_lifetime),
		cmocka_unit_test(test_gl_passed_forgotten),
		cmocka_unit_test(test_gl_retry_window),
		cmocka_unit_test(test_gl_awl),
		cmocka_unit_test(test_gl_awl_lifetime),
		cmocka_unit_test(test_gl_awl_disabled),
		cmocka_unit_test(test_gl_cap),
		cmocka_unit_test(test_gl_dry_run),
		cmocka_unit_test(test_gl_reason_names),
		cmocka_unit_test(test_ms_decisions),
		cmocka_unit_test(test_ms_awl_across_triplets),
		cmocka_unit_test(test_ms_cap_not_stored),
		cmocka_unit_test(test_ms_dry_run),
		cmocka_unit_test(test_ms_lru),
		cmocka_unit_test(test_ms_sweep),
		cmocka_unit_test(test_ms_marks),
		cmocka_unit_test(test_ms_save_load_roundtrip),
		cmocka_unit_test(test_ms_backup_first_roundtrip),
		cmocka_unit_test(test_ms_load_skips_expired),
		cmocka_unit_test(test_ms_roundtrip_odd_parts),
		cmocka_unit_test(test_ms_load_corrupt),
		cmocka_unit_test(test_ms_load_into_smaller_store),
		cmocka_unit_test(test_ms_admin),
		cmocka_unit_test(test_triplet_separators),
		cmocka_unit_test(test_triplet_stable),
		cmocka_unit_test(test_triplet_case),
		cmocka_unit_test(test_triplet_bounds),
		cmocka_unit_test(test_triplet_network),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
