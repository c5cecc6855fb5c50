/*
 * The rule table (rcpt_rules.c) on the event loop: answers only record
 * their result and wake the check through its own event, so the rules run
 * from the loop alone, never inside a call that started a lookup.
 */
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdlib.h>

#include "rcpt_check.h"

#include "client_score.h"
#include "handover.h"
#include "metrics.h"
#include "server.h"
#include "xalloc.h"

struct rcpt_check {
	rcpt_done_fn done;
	void *arg;
	struct event wake;
	struct rcpt_rules *rules;
	double started;
};

static void wake(void *owner)
{
	struct rcpt_check *c = owner;
	event_active(&c->wake, EV_TIMEOUT, 0);
}

/* A connection scored without lookups (started before a reload turned
 * scoring on, or a PROXY client unknown) is normal: no signal. */
static const struct score *connection_score(struct client_facts *f, struct client_facts_wait *w,
					    void (*fn)(void *arg), void *arg)
{
	static const struct score none;
	return f->score ? client_score_ready(f->score, w, fn, arg) : &none;
}

static int64_t connection_trapped_at(struct client_facts *f)
{
	return client_score_trapped_at(f->score);
}

static const struct rcpt_env real_env = {
	.lookup = resolver_lookup,
	.lookup_cancel = resolver_cancel,
	.mx = mxset_resolve,
	.mx_cancel = mxset_cancel,
	.client_name = client_facts_name,
	.client_name_unwait = client_facts_unwait,
	.spf_known = spf_txn_known,
	.spf_unwait = spf_txn_unwait,
	.client_score = connection_score,
	.store = store_decide,
	.store_cancel = store_cancel,
	.trap = client_score_trap,
	.trapped_at = connection_trapped_at,
	.primary_up = handover_primary_up,
	.now = metrics_now,
	.wake = wake,
};

static void release(struct rcpt_check *c)
{
	event_del(&c->wake);
	rcpt_rules_free(c->rules);
	free(c);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct rcpt_check *c = arg;
	struct rcpt_verdict v;
	if (!rcpt_rules_run(c->rules, &v))
		return;
	rcpt_done_fn done = c->done;
	void *done_arg = c->arg;
	metrics_observe(H_DECISION, metrics_now() - c->started);
	release(c);
	done(done_arg, &v);
}

struct rcpt_check *rcpt_check_start(const struct rcpt_query *q, rcpt_done_fn done, void *arg)
{
	struct rcpt_check *c = xcalloc(1, sizeof *c);
	c->done = done;
	c->arg = arg;
	c->started = metrics_now();
	event_assign(&c->wake, srv.base, -1, 0, on_wake, c);
	c->rules = rcpt_rules_new(&real_env, c, q);
	event_active(&c->wake, EV_TIMEOUT, 0);
	return c;
}

void rcpt_check_cancel(struct rcpt_check *c)
{
	if (c)
		release(c);
}
