#include "store_remote.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "list.h"
#include "log.h"

/* The supervisor answers at once unless it is stuck; past this the session
 * gets a store failure and store.failure decides. */
#define REMOTE_TIMEOUT_MS 1000
#define REMOTE_PENDING_MAX 4096

/* A worker's channel to its supervisor's embedded store. */
struct remote_store {
	struct store base;
	struct event_base *loop;
	int chan;                  /* -1 once the supervisor is gone */
	struct event *chan_ev;
	struct list_node pending;  /* struct store_req, oldest first */
	size_t npending;
	uint64_t next_id;
};

struct store_req {
	struct list_node link;     /* on pending, oldest first */
	struct remote_store *owner;
	uint64_t id;
	store_done_fn done;        /* NULL when cancelled */
	void *arg;
	struct event *timer;
};

static struct remote_store *remote_of(void *s)
{
	return (struct remote_store *)s;   /* base is the first member */
}

/* The oldest pending request, or NULL. */
static struct store_req *first_req(struct remote_store *rs)
{
	struct list_node *n = list_first(&rs->pending);
	return n ? LIST_ELEM(n, struct store_req, link) : NULL;
}

static void unlink_req(struct store_req *r)
{
	list_del(&r->link);
	r->owner->npending--;
	event_free(r->timer);
	free(r);
}

static void fail_req(struct store_req *r, const char *why)
{
	store_done_fn done = r->done;
	void *arg = r->arg;
	unlink_req(r);
	if (done) {
		struct store_result res = { .ok = false, .error = why };
		done(arg, &res);
	}
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	/* A late reply finds no request with its id and is dropped. */
	fail_req(arg, "embedded store (supervisor) timeout");
}

static void on_reply(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct remote_store *rs = arg;
	for (;;) {
		struct remote_reply rep;
		ssize_t n = recv(fd, &rep, sizeof rep, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			/* The supervisor is gone: it restarts us anyway; until then
			 * every decision follows store.failure. */
			log_msg(LOG_LVL_ERROR, "store", "lost the supervisor's embedded store");
			event_del(rs->chan_ev);
			close(rs->chan);
			rs->chan = -1;
			struct store_req *r;
			while ((r = first_req(rs)))
				fail_req(r, "embedded store unreachable");
			return;
		}
		if ((size_t)n != sizeof rep)
			continue;
		struct list_node *ln, *tmp;
		LIST_FOR_EACH_SAFE(ln, tmp, &rs->pending) {
			struct store_req *r = LIST_ELEM(ln, struct store_req, link);
			if (r->id != rep.id)
				continue;
			store_done_fn done = r->done;
			void *darg = r->arg;
			unlink_req(r);
			if (done) {
				struct store_result res = { .ok = rep.ok != 0, .d = rep.d, .marks = rep.marks,
							    .error = rep.ok ? NULL : "embedded store error" };
				done(darg, &res);
			}
			break;
		}
	}
}

/* Sends Q (its id set here) to the supervisor. */
static struct store_req *remote_send(struct remote_store *rs, struct remote_request *q,
				     store_done_fn done, void *arg)
{
	struct store_result fail = { .ok = false, .error = "embedded store unreachable" };
	struct store_req *r = NULL;
	if (rs->chan < 0 || rs->npending >= REMOTE_PENDING_MAX || !(r = calloc(1, sizeof *r)) ||
	    !(r->timer = evtimer_new(rs->loop, on_timeout, r))) {
		free(r);
		done(arg, &fail);
		return NULL;
	}
	q->id = ++rs->next_id;
	if (send(rs->chan, q, sizeof *q, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)sizeof *q) {
		event_free(r->timer);
		free(r);
		done(arg, &fail);
		return NULL;
	}
	r->owner = rs;
	r->id = q->id;
	r->done = done;
	r->arg = arg;
	list_push_back(&rs->pending, &r->link);
	rs->npending++;
	struct timeval tv = { REMOTE_TIMEOUT_MS / 1000, (REMOTE_TIMEOUT_MS % 1000) * 1000 };
	evtimer_add(r->timer, &tv);
	return r;
}

static struct store_req *remote_decide(struct store *s, const struct gl_params *p,
				       const struct triplet *t, bool dry_run, store_done_fn done,
				       void *arg)
{
	struct remote_request q = { .params = *p, .dry_run = dry_run, .t = *t };
	return remote_send(remote_of(s), &q, done, arg);
}

static struct store_req *remote_marks(struct store *s, const char *net,
				      const struct gl_mark_set *set, store_done_fn done, void *arg)
{
	struct remote_request q = { .marks = 1, .mark = *set };
	snprintf(q.t.net, sizeof q.t.net, "%s", net);
	return remote_send(remote_of(s), &q, done, arg);
}

static void remote_cancel(struct store *s, struct store_req *r)
{
	(void)s;
	if (r)
		r->done = NULL; /* freed when its reply or timeout comes */
}

static bool remote_healthy(struct store *s)
{
	return remote_of(s)->chan >= 0;
}

static void remote_close(struct store *s)
{
	struct remote_store *rs = remote_of(s);
	struct store_req *r;
	while ((r = first_req(rs)))
		unlink_req(r);
	if (rs->chan_ev)
		event_free(rs->chan_ev);
	if (rs->chan >= 0)
		close(rs->chan);
	free(rs);
}

/* greygate-ctl's commands go to the supervisor's control socket: no admin. */
static const struct store_ops ops = {
	.decide = remote_decide,
	.marks = remote_marks,
	.cancel = remote_cancel,
	.healthy = remote_healthy,
	.close = remote_close,
};

struct store *store_remote_open(struct event_base *b, struct gg_config *cfg, int fd)
{
	struct remote_store *rs = calloc(1, sizeof *rs);
	if (!rs)
		return NULL;
	rs->base = (struct store){ &ops, cfg->store.kind };
	rs->loop = b;
	rs->chan = fd;
	list_init(&rs->pending);
	rs->chan_ev = event_new(b, fd, EV_READ | EV_PERSIST, on_reply, rs);
	if (!rs->chan_ev || event_add(rs->chan_ev, NULL) < 0) {
		if (rs->chan_ev)
			event_free(rs->chan_ev);
		free(rs);
		return NULL;
	}
	return &rs->base;
}

/* ---- supervisor side ---- */

/* An embedded store answers inside decide (store.h): into REP. */
static void answered(void *arg, const struct store_result *r)
{
	struct remote_reply *rep = arg;
	rep->ok = r->ok;
	rep->d = r->d;
	rep->marks = r->marks;
}

static void on_request(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct event *self = arg;
	struct store *s = store();
	for (;;) {
		struct remote_request q;
		ssize_t n = recv(fd, &q, sizeof q, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			/* The worker went away; the supervisor closes this end when it
			 * reaps it, and its replacement gets a new pair. */
			event_del(self);
			return;
		}
		struct remote_reply rep = { .id = q.id };
		if ((size_t)n == sizeof q && s) {
			/* the parts come from our own workers, but still: bounded */
			q.t.net[sizeof q.t.net - 1] = 0;
			q.t.pool[sizeof q.t.pool - 1] = 0;
			q.t.sender[sizeof q.t.sender - 1] = 0;
			q.t.rcpt[sizeof q.t.rcpt - 1] = 0;
			q.t.hex[sizeof q.t.hex - 1] = 0;
			if (q.marks) {
				/* not ok (rep.ok 0) unless the request makes sense */
				if ((unsigned)q.mark.kind <= GL_MARK_TRAP &&
				    q.mark.lifetime >= 0 && q.mark.ttl >= 0)
					s->ops->marks(s, q.t.net, &q.mark, answered, &rep);
			} else {
				s->ops->decide(s, &q.params, &q.t, q.dry_run != 0, answered, &rep);
			}
		}
		if (send(fd, &rep, sizeof rep, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			/* a worker that does not read: its request times out there */
		}
	}
}

struct event *store_remote_serve(struct event_base *b, int fd)
{
	struct event *ev = event_new(b, fd, EV_READ | EV_PERSIST, on_request, event_self_cbarg());
	if (ev && event_add(ev, NULL) < 0) {
		event_free(ev);
		ev = NULL;
	}
	return ev;
}
