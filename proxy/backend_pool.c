/* backend_pool: the connections no session owns (idle ones for the next
 * client, and ones saying QUIT). */

#include "backend.h"
#include "backend_priv.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>

#include "config.h"

/*
 * Connections no front session owns: idle ones waiting for the next client
 * (newest first), and ones that only wait for their QUIT to be written.
 * Both lists are closed at exit.
 */
struct detached {
	struct bufferevent *bev;
	struct gg_config *cfg;        /* idle: the configuration it was made under */
	struct list_node link;
	struct list_node *list;       /* the list it is on, or NULL */
};

static struct list_node idle_list = { &idle_list, &idle_list };
static struct list_node quitting_list = { &quitting_list, &quitting_list };
static int idle_count;

static void detached_unlink(struct detached *d)
{
	if (!d->list)
		return;
	list_del(&d->link);
	if (d->list == &idle_list)
		idle_count--;
	d->list = NULL;
}

static void detached_link(struct detached *d, struct list_node *list)
{
	d->list = list;
	list_push_front(list, &d->link);
	if (list == &idle_list)
		idle_count++;
}

static void detached_free(struct detached *d)
{
	detached_unlink(d);
	if (d->bev)
		bufferevent_free(d->bev);
	if (d->cfg)
		gg_config_unref(d->cfg);
	free(d);
}

static void quit_flushed(struct bufferevent *bev, void *arg)
{
	(void)bev;
	detached_free(arg);
}

static void quit_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	detached_free(arg);
}

/* Says QUIT and lets the socket close once it is written, so the backend
 * logs a clean end instead of a lost connection. An idle connection leaves
 * the idle list. */
static void quit_detached(struct detached *d)
{
	detached_unlink(d);
	if (d->cfg) {
		gg_config_unref(d->cfg);
		d->cfg = NULL;
	}
	struct evbuffer *out = bufferevent_get_output(d->bev);
	evbuffer_add(out, "QUIT\r\n", 6);
	struct timeval tv = { 5, 0 };
	detached_link(d, &quitting_list);
	bufferevent_setcb(d->bev, NULL, quit_flushed, quit_event, d);
	bufferevent_setwatermark(d->bev, EV_WRITE, 0, 0);
	bufferevent_set_timeouts(d->bev, &tv, &tv);
	bufferevent_disable(d->bev, EV_READ);
	bufferevent_enable(d->bev, EV_WRITE);
}

/* Takes B's connection away from B; NULL when out of memory (the caller
 * then frees the connection). */
static struct detached *detach(struct backend *b)
{
	struct detached *d = calloc(1, sizeof *d);
	if (!d)
		return NULL;
	d->bev = b->bev;
	b->bev = NULL;
	return d;
}

/* An idle connection spoke (typically "421 timeout" before closing) or
 * closed: it is of no use any more. */
static void idle_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	detached_free(arg);
}

static void idle_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct detached *d = arg;
	if (what & BEV_EVENT_TIMEOUT)
		quit_detached(d);   /* nobody needed it within idle_time */
	else
		detached_free(d);
}

/* Keeps B's connection for the next client, when the backend has just
 * accepted a message on it and there is room. */
static bool park(struct backend *b)
{
	const struct gg_config *c = b->cfg;
	if (b->probe || !b->delivered || c->backend.idle_time == 0 ||
	    idle_count >= c->backend.idle_connections ||
	    evbuffer_get_length(bufferevent_get_input(b->bev)) > 0)  /* it said more */
		return false;
	struct detached *d = detach(b);
	if (!d)
		return false;
	d->cfg = gg_config_ref(b->cfg);
	detached_link(d, &idle_list);
	struct timeval tv = { c->backend.idle_time, 0 };
	bufferevent_setcb(d->bev, idle_read, NULL, idle_event, d);
	bufferevent_set_timeouts(d->bev, &tv, NULL);
	bufferevent_disable(d->bev, EV_WRITE);
	bufferevent_enable(d->bev, EV_READ);
	return true;
}

/* (Connections of older configurations are closed on the way.) */
bool take_idle(struct backend *b)
{
	struct list_node *n;
	while ((n = list_first(&idle_list)) != NULL) {
		struct detached *d = LIST_ELEM(n, struct detached, link);
		if (d->cfg != b->cfg) {
			quit_detached(d);
			continue;
		}
		b->bev = d->bev;
		d->bev = NULL;
		detached_free(d);
		attach(b);
		bufferevent_set_timeouts(b->bev, NULL, NULL);
		return true;
	}
	return false;
}

void pool_close_all(void)
{
	struct list_node *n;
	while ((n = list_first(&idle_list)) != NULL)
		detached_free(LIST_ELEM(n, struct detached, link));
	while ((n = list_first(&quitting_list)) != NULL)
		detached_free(LIST_ELEM(n, struct detached, link));
}

void backend_free(struct backend *b)
{
	if (!b)
		return;
	b->done = NULL;
	b->drain_fn = NULL;
	/* A connection in any other state than idle is cut: a half-sent
	 * message must never be completed. */
	if (b->bev && b->state == B_READY && !park(b)) {
		struct detached *d = detach(b);
		if (d)
			quit_detached(d);
	}
	really_free(b);
}
