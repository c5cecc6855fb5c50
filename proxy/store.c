#include "store.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"

static struct store *current;
static struct event_base *loop;

/* A decision as its caller sees it: the store's own request while one is
 * under way, then the answer, handed over from the loop by EV. */
struct store_call {
	struct event *ev;
	struct store_req *req;
	store_done_fn done;
	void *arg;
	struct store_result res;
	char error[200];            /* a copy: the store's text may not outlive its call */
};

/* Each kind's constructor, by the rows of lib/store_type.c. */
static struct store *(*const opens[STORE_KINDS])(struct event_base *, struct gg_config *) = {
	[STORE_MEMORY] = store_memory_open,
	[STORE_REDIS] = store_redis_open,
	[STORE_REDIS_CLUSTER] = store_redis_open,   /* in cluster mode */
};

int store_open(struct event_base *base, struct gg_config *cfg)
{
	loop = base;
	current = opens[cfg->store.kind](base, cfg);
	return current ? 0 : -1;
}

void store_use(struct event_base *base, struct store *s)
{
	loop = base;
	current = s;
}

struct store *store(void)
{
	return current;
}

bool store_healthy(void)
{
	return current->ops->healthy(current);
}

void store_close(void)
{
	if (current)
		current->ops->close(current);
	current = NULL;
}

static void deliver(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct store_call *c = arg;
	store_done_fn done = c->done;
	void *darg = c->arg;
	event_free(c->ev);
	done(darg, &c->res);
	free(c);
}

static void answered(void *arg, const struct store_result *r)
{
	struct store_call *c = arg;
	c->req = NULL;
	c->res = *r;
	if (r->error) {
		snprintf(c->error, sizeof c->error, "%s", r->error);
		c->res.error = c->error;
	}
	event_active(c->ev, EV_TIMEOUT, 1);
}

static struct store_call *call_new(store_done_fn done, void *arg)
{
	struct store_call *c = xcalloc(1, sizeof *c);
	if (!(c->ev = event_new(loop, -1, 0, deliver, c))) {
		log_msg(LOG_LVL_ERROR, "store", "cannot make an event for a decision; exiting");
		abort();
	}
	c->done = done;
	c->arg = arg;
	return c;
}

struct store_call *store_decide(const struct gl_params *p, const struct triplet *t,
				store_done_fn done, void *arg)
{
	struct store_call *c = call_new(done, arg);
	c->req = current->ops->decide(current, p, t, false, answered, c);
	return c;
}

struct store_call *store_marks(const char *net, const struct gl_mark_set *set,
			       store_done_fn done, void *arg)
{
	struct store_call *c = call_new(done, arg);
	c->req = current->ops->marks(current, net, set, answered, c);
	return c;
}

struct gl_mark_set store_trap_set(const struct gg_config *cfg)
{
	int64_t win = cfg->greylist.retry_window, life = cfg->trap_lifetime;
	return (struct gl_mark_set){ GL_MARK_TRAP, life, life > win ? life : win };
}

void store_cancel(struct store_call *c)
{
	if (!c)
		return;
	if (c->req)
		current->ops->cancel(current, c->req);
	event_free(c->ev);
	free(c);
}
