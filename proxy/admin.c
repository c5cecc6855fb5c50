#include "admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accept_pause.h"
#include "hostport.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "server.h"

/* A health checker and a scraper need a few connections for well under a
 * second each: a connection beyond ADMIN_MAX_CONNS is closed at once, one
 * still open ADMIN_DEADLINE seconds after it was accepted is closed
 * whatever it is sending (evhttp's own timeout restarts with every byte). */
#define ADMIN_MAX_CONNS 32
#define ADMIN_DEADLINE 10
/* Requests are answered at most REQ_RATE a second (bursts of REQ_BURST);
 * beyond that a request waits for its turn, and its connection is not read
 * meanwhile, so that no client can have more of the loop than that. A
 * refusal (503) would not do: it costs half of what /metrics does. With
 * one request waiting per connection at most, the wait is under a second. */
#define REQ_RATE 50
#define REQ_BURST 100
/* What was refused or delayed is logged at most once per interval. */
#define REFUSED_LOG_EVERY 10
/* Out of descriptors, accepting is paused this long: a listener that
 * retried at once would spin on the connection waiting in its backlog. */
#define ACCEPT_PAUSE_MS 1000

struct route {
	void (*serve)(struct evhttp_request *req, void *arg);
};

struct conn {
	struct bufferevent *bev;           /* until the evhttp connection is known */
	struct evhttp_connection *evcon;   /* NULL until then */
	struct event *timer;               /* first: adopt at once; then: the deadline */
	struct evhttp_request *waiting;    /* for a token, on route */
	const struct route *route;
	struct list_node link;             /* on conns: all connections */
	struct list_node qlink;            /* on queue while waiting, in turn */
};

static struct evhttp *http;
static struct list_node conns = { &conns, &conns };
static unsigned nconns;
static struct list_node queue = { &queue, &queue };
static struct evconnlistener *listener;
static struct event *pace_timer, *refused_timer;
static struct accept_pause accept_rest;
static unsigned long over_cap, over_deadline, delayed, accept_failed;
static int accept_errno;
static double tokens;
static struct timespec tokens_at;

static void refused_log(void)
{
	struct logline l;
	ll_begin(&l, LOG_LVL_WARNING, "admin");
	ll_str(&l, "result", "refused");
	ll_int(&l, "over_connection_cap", (long long)over_cap);
	ll_int(&l, "closed_at_deadline", (long long)over_deadline);
	ll_int(&l, "requests_delayed", (long long)delayed);
	if (accept_failed) {
		ll_int(&l, "accept_failed", (long long)accept_failed);
		ll_str(&l, "accept_error", strerror(accept_errno));
	}
	char limits[96];
	snprintf(limits, sizeof limits, "%d connections, %d s each, %d requests/s burst %d",
		 ADMIN_MAX_CONNS, ADMIN_DEADLINE, REQ_RATE, REQ_BURST);
	ll_str(&l, "limits", limits);
	ll_int(&l, "next_report_in", REFUSED_LOG_EVERY);
	ll_emit(&l);
	over_cap = over_deadline = delayed = accept_failed = 0;
}

/* The first refusal is logged at once, the ones after it once per
 * interval, so that a flood costs a line every few seconds. */
static void on_refused_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (over_cap + over_deadline + delayed + accept_failed == 0)
		return;
	refused_log();
	struct timeval tv = { REFUSED_LOG_EVERY, 0 };
	event_add(refused_timer, &tv);
}

static void note(unsigned long *counter)
{
	(*counter)++;
	if (evtimer_pending(refused_timer, NULL))
		return;
	refused_log();
	struct timeval tv = { REFUSED_LOG_EVERY, 0 };
	event_add(refused_timer, &tv);
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
	(void)arg;
	(void)lev;
	accept_errno = errno;
	accept_pause_start(&accept_rest, &listener, 1, ACCEPT_PAUSE_MS);
	note(&accept_failed);
}

static void dequeue(struct conn *c)
{
	list_del(&c->qlink);
	c->waiting = NULL;
}

static void conn_free(struct conn *c)
{
	if (c->waiting)
		dequeue(c);
	list_del(&c->link);
	if (c->evcon)
		nconns--;
	if (c->bev)
		bufferevent_decref(c->bev);
	event_free(c->timer);
	free(c);
}

static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
	struct conn *c = arg;
	evhttp_connection_set_closecb(evcon, NULL, NULL);
	/* A client that left while its request waited: evhttp leaves the
	 * request to us (it expects a reply); else it frees it itself. */
	if (c->waiting && !evhttp_request_get_connection(c->waiting))
		evhttp_request_free(c->waiting);
	conn_free(c);
}

/* evhttp has no hook for a new connection; it takes the bufferevent from
 * on_new_bev and, before the loop runs again, gives it its callbacks with
 * the evhttp connection as their argument: the one way, in 2.1, to learn
 * of a connection before it sends a request, and to close it. */
static void adopt(struct conn *c)
{
	bufferevent_data_cb readcb;
	void *arg = NULL;
	bufferevent_getcb(c->bev, &readcb, NULL, NULL, &arg);
	struct evhttp_connection *evcon = arg;
	if (!readcb || !evcon || evhttp_connection_get_bufferevent(evcon) != c->bev) {
		/* evhttp gave up on it already (out of memory) */
		conn_free(c);
		return;
	}
	bufferevent_decref(c->bev);
	c->bev = NULL;
	if (nconns >= ADMIN_MAX_CONNS) {
		note(&over_cap);
		conn_free(c);
		evhttp_connection_free(evcon);
		return;
	}
	c->evcon = evcon;
	nconns++;
	evhttp_connection_set_closecb(evcon, on_conn_close, c);
	struct timeval tv = { ADMIN_DEADLINE, 0 };
	event_add(c->timer, &tv);
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct conn *c = arg;
	if (!c->evcon) {
		adopt(c);
		return;
	}
	note(&over_deadline);
	evhttp_connection_free(c->evcon); /* calls on_conn_close */
}

static struct bufferevent *on_new_bev(struct event_base *base, void *arg)
{
	(void)arg;
	struct conn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(base, on_conn_timer, c);
	if (!c->bev || !c->timer) {
		if (c->bev)
			bufferevent_free(c->bev);
		if (c->timer)
			event_free(c->timer);
		free(c);
		return NULL;
	}
	/* ours until adopt(): evhttp may free it before that */
	bufferevent_incref(c->bev);
	list_init(&c->qlink);
	list_push_front(&conns, &c->link);
	event_active(c->timer, EV_TIMEOUT, 0);
	return c->bev;
}

static void send_text(struct evhttp_request *req, int code, const char *reason,
		      const char *ctype, const char *text, size_t len)
{
	struct evbuffer *body = evbuffer_new();
	if (!body) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add(body, text, len);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
	evhttp_send_reply(req, code, reason, body);
	evbuffer_free(body);
}

static void on_healthz(struct evhttp_request *req, void *arg)
{
	(void)arg;
	char reason[128], text[160];
	/* a balancer should move new clients elsewhere before the port closes */
	bool ok = !srv.draining && metrics_healthy(reason, sizeof reason);
	if (srv.draining)
		snprintf(reason, sizeof reason, "shutting down");
	int n = snprintf(text, sizeof text, "%s\n", reason);
	send_text(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "text/plain",
		  text, (size_t)n);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
	(void)arg;
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (!out) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	metrics_write(out);
	fclose(out);
	send_text(req, 200, "OK", "text/plain; version=0.0.4", text, len);
	free(text);
}

static void on_not_found(struct evhttp_request *req, void *arg)
{
	(void)arg;
	evhttp_send_error(req, 404, NULL);
}

static const struct route healthz = { on_healthz }, metrics = { on_metrics },
			  not_found = { on_not_found };

/* Takes a token if there is one; else says in how long there is. */
static bool take_token(struct timeval *wait)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	tokens += ((double)(now.tv_sec - tokens_at.tv_sec) +
		   (double)(now.tv_nsec - tokens_at.tv_nsec) / 1e9) * REQ_RATE;
	tokens_at = now;
	if (tokens > REQ_BURST)
		tokens = REQ_BURST;
	if (tokens >= 1) {
		tokens -= 1;
		return true;
	}
	long us = (long)((1 - tokens) * 1e6 / REQ_RATE) + 1;
	*wait = (struct timeval){ us / 1000000, us % 1000000 };
	return false;
}

static void on_pace(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	struct timeval wait;
	struct list_node *n;
	while ((n = list_first(&queue))) {
		if (!take_token(&wait)) {
			event_add(pace_timer, &wait);
			return;
		}
		struct conn *c = LIST_ELEM(n, struct conn, qlink);
		struct evhttp_request *req = c->waiting;
		dequeue(c);
		c->route->serve(req, NULL);
	}
}

static struct conn *conn_of(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct list_node *n, *tmp;
	LIST_FOR_EACH_SAFE(n, tmp, &conns) {
		struct conn *c = LIST_ELEM(n, struct conn, link);
		if (c->evcon == evcon)
			return c;
	}
	return NULL;
}

/* Every request comes through here: served now if it is its turn and there
 * is a token, else queued behind the others. */
static void admit(struct evhttp_request *req, void *arg)
{
	const struct route *route = arg;
	struct timeval wait;
	if (list_empty(&queue) && take_token(&wait)) {
		route->serve(req, NULL);
		return;
	}
	struct conn *c = conn_of(req);
	if (!c) {
		/* a connection on_new_bev could not track (out of memory) */
		evhttp_send_error(req, 503, NULL);
		return;
	}
	note(&delayed);
	/* while the queue is not empty, pace_timer is pending */
	if (list_empty(&queue))
		event_add(pace_timer, &wait);
	c->waiting = req;
	c->route = route;
	list_push_back(&queue, &c->qlink);
}

int admin_open(struct event_base *base, const struct gg_config *cfg)
{
	if (!cfg->admin_listen[0])
		return 0;
	char host[64];
	const char *colon = strrchr(cfg->admin_listen, ':');
	size_t hlen = colon ? (size_t)(colon - cfg->admin_listen) : 0;
	if (hlen >= sizeof host)
		hlen = 0;
	memcpy(host, cfg->admin_listen, hlen);
	host[hlen] = 0;
	/* evhttp wants a bare IPv6 address, without the brackets */
	char *h = host;
	if (h[0] == '[' && hlen > 1 && h[hlen - 1] == ']') {
		h[hlen - 1] = 0;
		h++;
	}
	http = evhttp_new(base);
	refused_timer = evtimer_new(base, on_refused_timer, NULL);
	pace_timer = evtimer_new(base, on_pace, NULL);
	bool paused_ok = accept_pause_init(&accept_rest, base, NULL, NULL) == 0;
	errno = ENOMEM;
	struct evhttp_bound_socket *bound = NULL;
	if (http && refused_timer && pace_timer && paused_ok && colon)
		bound = evhttp_bind_socket_with_handle(http, h, (ev_uint16_t)atoi(colon + 1));
	int err = errno;
	bool ok = bound != NULL;
	struct logline l;
	ll_begin(&l, ok ? LOG_LVL_INFO : LOG_LVL_ERROR, "admin");
	ll_str(&l, "listen", cfg->admin_listen);
	if (!ok) {
		/* The operator asked for a health endpoint: without it a load
		 * balancer would take this host for dead. */
		ll_str(&l, "result", "failed");
		ll_str(&l, "reason", strerror(err));
		ll_str(&l, "action", "exiting");
		ll_emit(&l);
		admin_close();
		return -1;
	}
	listener = evhttp_bound_socket_get_listener(bound);
	evconnlistener_set_error_cb(listener, on_accept_error);
	tokens = REQ_BURST;
	clock_gettime(CLOCK_MONOTONIC, &tokens_at);
	/* bounded: a health checker and a scraper, not the internet */
	evhttp_set_bevcb(http, on_new_bev, NULL);
	evhttp_set_max_headers_size(http, 8192);
	evhttp_set_max_body_size(http, 0);
	evhttp_set_timeout(http, ADMIN_DEADLINE);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_cb(http, "/healthz", admit, (void *)&healthz);
	evhttp_set_cb(http, "/metrics", admit, (void *)&metrics);
	evhttp_set_gencb(http, admit, (void *)&not_found);
	ll_str(&l, "result", "listening");
	ll_emit(&l);
	return 0;
}

void admin_close(void)
{
	/* evhttp_free closes the connections it knows (on_conn_close frees
	 * them); the ones not adopted yet are only ours */
	if (http)
		evhttp_free(http);
	http = NULL;
	struct list_node *n;
	while ((n = list_first(&conns)))
		conn_free(LIST_ELEM(n, struct conn, link));
	if (refused_timer)
		event_free(refused_timer);
	refused_timer = NULL;
	if (pace_timer)
		event_free(pace_timer);
	pace_timer = NULL;
	accept_pause_free(&accept_rest);
	listener = NULL;
}
