#include "backend.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hostport.h"
#include "log.h"
#include "metrics.h"

/* Body back-pressure: stop reading the client above HIGH, resume below LOW. */
#define BODY_HIGH (256 * 1024)
#define BODY_LOW (64 * 1024)
#define LINE_MAX_BACKEND 4096

enum bstate {
	B_IDLE,        /* not connected */
	B_CONNECTING,
	B_GREETING,    /* waiting for 220 */
	B_EHLO,        /* waiting for the reply to our EHLO */
	B_XCLIENT,     /* waiting for the new 220 after XCLIENT */
	B_HELO2,       /* waiting for the reply to EHLO/HELO as the client */
	B_READY,
	B_BUSY,        /* a command is outstanding */
	B_DEAD,
};

struct backend {
	struct backend *live_prev, *live_next;   /* every backend not yet freed */
	struct event_base *base;
	struct gg_config *cfg;
	unsigned long long id;
	struct bufferevent *bev;
	enum bstate state;
	struct smtp_reply reply;
	backend_reply_fn done;
	void *done_arg;
	void (*drain_fn)(void *);
	void *drain_arg;
	char helo2[600];      /* the EHLO/HELO to send after XCLIENT */
	char xclient[2048];
	int in_cb;
	bool free_pending;
	bool probe;           /* throw-away connection that only learns caps */
};

static struct backend_caps caps;
/* Whether the last attempt to reach the backend got through, for /healthz. */
static bool reachable = true;
static struct backend *live;

const struct backend_caps *backend_caps(void)
{
	return &caps;
}

bool backend_reachable(void)
{
	return reachable;
}

static void really_free(struct backend *b)
{
	if (b->live_prev)
		b->live_prev->live_next = b->live_next;
	else
		live = b->live_next;
	if (b->live_next)
		b->live_next->live_prev = b->live_prev;
	if (b->bev)
		bufferevent_free(b->bev);
	gg_config_unref(b->cfg);
	free(b);
}

/* Calls the owner's function once, and tolerates the owner freeing us inside. */
static void finish(struct backend *b, enum backend_status st)
{
	backend_reply_fn fn = b->done;
	void *arg = b->done_arg;
	b->done = NULL;
	if (!fn)
		return;
	b->in_cb++;
	fn(arg, st, st == BE_OK ? &b->reply : NULL);
	b->in_cb--;
	if (b->free_pending && b->in_cb == 0)
		really_free(b);
}

static void log_failure(struct backend *b, const char *what, const char *detail)
{
	metrics_add(M_BACKEND_ERRORS, 1);
	struct logline l;
	ll_begin(&l, LOG_LVL_WARNING, "backend_error");
	ll_int(&l, "id", (long long)b->id);
	ll_str(&l, "backend", b->cfg->backend.address);
	ll_str(&l, "stage", what);
	ll_str(&l, "detail", detail);
	ll_emit(&l);
}

static void go_dead(struct backend *b, enum backend_status st, const char *stage, const char *detail)
{
	if (!b->probe || st != BE_OK)
		log_failure(b, stage, detail);
	if (st == BE_UNAVAILABLE)
		reachable = false;
	b->state = B_DEAD;
	if (b->bev) {
		bufferevent_free(b->bev);
		b->bev = NULL;
	}
	finish(b, st);
}

static void send_line(struct backend *b, const char *line, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(b->bev);
	evbuffer_add(out, line, len);
	evbuffer_add(out, "\r\n", 2);
}

static void expect_reply(struct backend *b, enum bstate st)
{
	b->state = st;
	smtp_reply_reset(&b->reply);
	struct timeval tv = { b->cfg->backend.command_timeout, 0 };
	bufferevent_set_timeouts(b->bev, &tv, &tv);
}

/* The keywords of an EHLO reply, so the front side never offers more. */
static void learn_caps(const struct smtp_reply *r)
{
	struct backend_caps c = { .known = true };
	size_t pos = 0;
	const char *t;
	size_t n;
	bool first = true;
	while (smtp_reply_next_line(r, &pos, &t, &n)) {
		if (first) { /* the greeting line names the host */
			first = false;
			continue;
		}
		size_t kw = 0;
		while (kw < n && t[kw] != ' ')
			kw++;
#define IS(name) (kw == sizeof(name) - 1 && strncasecmp(t, name, kw) == 0)
		if (IS("SIZE")) {
			c.size = true;
			char num[24] = "";
			if (n > kw + 1 && n - kw - 1 < sizeof num) {
				memcpy(num, t + kw + 1, n - kw - 1);
				num[n - kw - 1] = 0;
				c.size_limit = strtoul(num, NULL, 10);
			}
		} else if (IS("8BITMIME")) {
			c.eightbitmime = true;
		} else if (IS("SMTPUTF8")) {
			c.smtputf8 = true;
		} else if (IS("DSN")) {
			c.dsn = true;
		} else if (IS("XCLIENT")) {
			c.xclient = true;
		} else if (IS("ENHANCEDSTATUSCODES")) {
			c.enhancedstatuscodes = true;
		}
#undef IS
	}
	caps = c;
}

/* RFC 3461 xtext, which XCLIENT values use. */
static size_t xtext(char *out, size_t outlen, const char *in)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (; *in && o + 4 < outlen; in++) {
		unsigned char c = (unsigned char)*in;
		if (c < '!' || c > '~' || c == '+' || c == '=') {
			out[o++] = '+';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = 0;
	return o;
}

static void prepare_xclient(struct backend *b, const struct backend_client *ci)
{
	char helo[800], name[800];
	xtext(helo, sizeof helo, ci->helo ? ci->helo : "[UNAVAILABLE]");
	xtext(name, sizeof name, ci->name ? ci->name : "[UNAVAILABLE]");
	snprintf(b->xclient, sizeof b->xclient,
		 "XCLIENT ADDR=%s%s NAME=%s PORT=%u HELO=%s PROTO=%s",
		 ci->ipv6 ? "IPV6:" : "", ci->addr, name, ci->port, helo,
		 ci->esmtp ? "ESMTP" : "SMTP");
	/* After XCLIENT the next HELO/EHLO sets the HELO name Postfix records,
	 * so it must be the client's, not ours. */
	snprintf(b->helo2, sizeof b->helo2, "%s %s", ci->esmtp ? "EHLO" : "HELO",
		 ci->helo ? ci->helo : b->cfg->myhostname);
}

/* Moves the hand-shake on by one reply. */
static void handshake(struct backend *b)
{
	const struct smtp_reply *r = &b->reply;
	char ehlo[300];
	switch (b->state) {
	case B_GREETING:
		if (r->code != 220)
			return go_dead(b, BE_UNAVAILABLE, "greeting", r->text);
		snprintf(ehlo, sizeof ehlo, "EHLO %s", b->cfg->myhostname);
		send_line(b, ehlo, strlen(ehlo));
		return expect_reply(b, B_EHLO);
	case B_EHLO:
		if (r->code != 250)
			return go_dead(b, BE_UNAVAILABLE, "ehlo", r->text);
		learn_caps(r);
		if (b->xclient[0] == 0) {
			b->state = B_READY;
			reachable = true;
			return finish(b, BE_OK);
		}
		if (!caps.xclient)
			return go_dead(b, BE_UNAVAILABLE, "xclient",
				       "backend does not offer XCLIENT to us (smtpd_authorized_xclient_hosts)");
		send_line(b, b->xclient, strlen(b->xclient));
		return expect_reply(b, B_XCLIENT);
	case B_XCLIENT:
		/* Postfix answers with a new greeting (220); other implementations
		 * (and Postfix's own smtp-sink) with 250. */
		if (r->code / 100 != 2)
			return go_dead(b, BE_UNAVAILABLE, "xclient", r->text);
		send_line(b, b->helo2, strlen(b->helo2));
		return expect_reply(b, B_HELO2);
	case B_HELO2:
		if (r->code != 250)
			return go_dead(b, BE_UNAVAILABLE, "helo", r->text);
		b->state = B_READY;
		reachable = true;
		return finish(b, BE_OK);
	default:
		return;
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct backend *b = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char line[LINE_MAX_BACKEND];
	while (b->state != B_DEAD && b->bev) {
		size_t eol_len;
		struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
		if (p.pos < 0) {
			if (evbuffer_get_length(in) > sizeof line)
				go_dead(b, b->state == B_BUSY ? BE_LOST : BE_UNAVAILABLE,
					"read", "reply line too long");
			return;
		}
		if ((size_t)p.pos >= sizeof line) {
			go_dead(b, b->state == B_BUSY ? BE_LOST : BE_UNAVAILABLE, "read",
				"reply line too long");
			return;
		}
		size_t n = (size_t)p.pos;
		evbuffer_remove(in, line, n);
		evbuffer_drain(in, eol_len);

		if (b->state == B_READY || b->state == B_IDLE) {
			/* Unsolicited: typically "421 timeout" before the server closes. */
			go_dead(b, BE_LOST, "idle", "unexpected reply from an idle backend");
			return;
		}
		enum smtp_reply_status st = smtp_reply_feed(&b->reply, line, n);
		if (st == SMTP_REPLY_BAD) {
			go_dead(b, b->state == B_BUSY ? BE_LOST : BE_UNAVAILABLE, "read",
				"malformed reply");
			return;
		}
		if (st == SMTP_REPLY_MORE)
			continue;
		/* No timeout while idle: an idle backend is only watched for EOF. */
		bufferevent_set_timeouts(b->bev, NULL, NULL);
		if (b->state == B_BUSY) {
			b->state = B_READY;
			b->in_cb++;
			finish(b, BE_OK);
			b->in_cb--;
			if (b->free_pending && b->in_cb == 0) {
				really_free(b);
				return;
			}
		} else {
			b->in_cb++;
			handshake(b);
			b->in_cb--;
			if (b->free_pending && b->in_cb == 0) {
				really_free(b);
				return;
			}
		}
	}
}

static void on_write(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct backend *b = arg;
	if (b->drain_fn)
		b->drain_fn(b->drain_arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct backend *b = arg;
	if (what & BEV_EVENT_CONNECTED) {
		expect_reply(b, B_GREETING);
		return;
	}
	char detail[128];
	if (what & BEV_EVENT_TIMEOUT)
		snprintf(detail, sizeof detail, "timeout");
	else if (what & BEV_EVENT_EOF)
		snprintf(detail, sizeof detail, "connection closed by backend");
	else
		snprintf(detail, sizeof detail, "%s", strerror(errno));
	static const char *const stage[] = {
		[B_IDLE] = "idle", [B_CONNECTING] = "connect", [B_GREETING] = "greeting",
		[B_EHLO] = "ehlo", [B_XCLIENT] = "xclient", [B_HELO2] = "helo",
		[B_READY] = "idle", [B_BUSY] = "command", [B_DEAD] = "dead",
	};
	enum backend_status st = b->state == B_BUSY ? BE_LOST : BE_UNAVAILABLE;
	if (b->state == B_READY) {
		/* An idle connection closed: not worth a warning, the next
		 * transaction reconnects. */
		b->state = B_DEAD;
		bufferevent_free(b->bev);
		b->bev = NULL;
		return;
	}
	go_dead(b, st, stage[b->state], detail);
}

struct backend *backend_new(struct event_base *base, struct gg_config *cfg, unsigned long long id)
{
	struct backend *b = calloc(1, sizeof *b);
	if (!b)
		return NULL;
	b->base = base;
	b->cfg = gg_config_ref(cfg);
	b->id = id;
	b->live_next = live;
	if (live)
		live->live_prev = b;
	live = b;
	return b;
}

void backend_open(struct backend *b, const struct backend_client *ci,
		  backend_reply_fn done, void *arg)
{
	b->done = done;
	b->done_arg = arg;
	if (ci)
		prepare_xclient(b, ci);
	else
		b->xclient[0] = 0;
	if (!b->cfg->backend.xclient)
		b->xclient[0] = 0;

	struct sockaddr_storage ss;
	socklen_t len;
	if (!hostport_parse(b->cfg->backend.address, &ss, &len)) {
		/* validated at load time; kept for safety */
		go_dead(b, BE_UNAVAILABLE, "connect", "bad backend address");
		return;
	}
	b->bev = bufferevent_socket_new(b->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!b->bev) {
		go_dead(b, BE_UNAVAILABLE, "connect", "out of memory");
		return;
	}
	bufferevent_setcb(b->bev, on_read, on_write, on_event, b);
	bufferevent_setwatermark(b->bev, EV_WRITE, BODY_LOW, 0);
	bufferevent_setwatermark(b->bev, EV_READ, 0, 64 * 1024);
	struct timeval tv = { b->cfg->backend.connect_timeout, 0 };
	bufferevent_set_timeouts(b->bev, &tv, &tv);
	bufferevent_enable(b->bev, EV_READ | EV_WRITE);
	b->state = B_CONNECTING;
	if (bufferevent_socket_connect(b->bev, (struct sockaddr *)&ss, (int)len) < 0) {
		char detail[128];
		snprintf(detail, sizeof detail, "%s", strerror(errno));
		go_dead(b, BE_UNAVAILABLE, "connect", detail);
	}
}

void backend_command(struct backend *b, const char *line, size_t len,
		     backend_reply_fn done, void *arg)
{
	b->done = done;
	b->done_arg = arg;
	if (b->state != B_READY || !b->bev) {
		/* The caller checked backend_usable(); the connection died in
		 * between without anybody waiting. */
		go_dead(b, BE_LOST, "command", "backend connection is gone");
		return;
	}
	send_line(b, line, len);
	expect_reply(b, B_BUSY);
}

void backend_body_begin(struct backend *b, backend_reply_fn done, void *arg)
{
	b->done = done;
	b->done_arg = arg;
	b->state = B_BUSY;
	smtp_reply_reset(&b->reply);
	/* The backend says nothing until the body ends, however slow the client
	 * is; only a backend that stops taking the body is timed out here. */
	struct timeval tv = { b->cfg->backend.command_timeout, 0 };
	bufferevent_set_timeouts(b->bev, NULL, &tv);
}

void backend_body_end(struct backend *b)
{
	struct timeval tv = { b->cfg->backend.command_timeout, 0 };
	bufferevent_set_timeouts(b->bev, &tv, &tv);
}

bool backend_usable(const struct backend *b)
{
	return b && b->state == B_READY && b->bev;
}

struct evbuffer *backend_body(struct backend *b)
{
	return bufferevent_get_output(b->bev);
}

void backend_on_drain(struct backend *b, void (*fn)(void *), void *arg)
{
	b->drain_fn = fn;
	b->drain_arg = arg;
}

bool backend_body_full(const struct backend *b)
{
	return b->bev && evbuffer_get_length(bufferevent_get_output(b->bev)) > BODY_HIGH;
}

/* Detached connections that only wait for their QUIT to be written; kept
 * in a list so that exit can close the ones still waiting. */
struct quitting {
	struct bufferevent *bev;
	struct quitting *prev, *next;
};

static struct quitting *quitting_list;

static void quit_done(struct quitting *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		quitting_list = q->next;
	if (q->next)
		q->next->prev = q->prev;
	bufferevent_free(q->bev);
	free(q);
}

static void quit_flushed(struct bufferevent *bev, void *arg)
{
	(void)bev;
	quit_done(arg);
}

static void quit_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	quit_done(arg);
}

/* Says QUIT and lets the socket close once it is written, so the backend
 * logs a clean end instead of a lost connection. */
static void detach_with_quit(struct backend *b)
{
	struct quitting *q = calloc(1, sizeof *q);
	if (!q)
		return; /* the caller frees the connection without QUIT */
	send_line(b, "QUIT", 4);
	struct timeval tv = { 5, 0 };
	q->bev = b->bev;
	q->next = quitting_list;
	if (quitting_list)
		quitting_list->prev = q;
	quitting_list = q;
	bufferevent_setcb(b->bev, NULL, quit_flushed, quit_event, q);
	bufferevent_setwatermark(b->bev, EV_WRITE, 0, 0);
	bufferevent_set_timeouts(b->bev, &tv, &tv);
	bufferevent_disable(b->bev, EV_READ);
	b->bev = NULL;
}

void backend_shutdown(void)
{
	while (quitting_list)
		quit_done(quitting_list);
	/* Connections still in use at exit (a start-up probe, a hand-over):
	 * their owners hear BE_LOST and free them; whatever is left goes too. */
	while (live) {
		struct backend *b = live;
		backend_reply_fn fn = b->done;
		b->done = NULL;
		b->state = B_DEAD;
		b->in_cb++;            /* an owner's backend_free only marks it */
		if (fn)
			fn(b->done_arg, BE_LOST, NULL);
		b->in_cb--;
		really_free(b);
	}
}

void backend_free(struct backend *b)
{
	if (!b)
		return;
	b->done = NULL;
	b->drain_fn = NULL;
	/* A connection in any other state than idle is cut: a half-sent
	 * message must never be completed. */
	if (b->bev && b->state == B_READY)
		detach_with_quit(b);
	if (b->in_cb > 0) {
		b->free_pending = true;
		return;
	}
	really_free(b);
}

static void probe_done(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	(void)r;
	struct backend *b = arg;
	struct logline l;
	ll_begin(&l, st == BE_OK ? LOG_LVL_INFO : LOG_LVL_WARNING, "backend_probe");
	ll_str(&l, "backend", b->cfg->backend.address);
	ll_str(&l, "result", st == BE_OK ? "ok" : "unavailable");
	if (st == BE_OK) {
		ll_int(&l, "size", (long long)caps.size_limit);
		ll_int(&l, "xclient", caps.xclient);
		ll_int(&l, "smtputf8", caps.smtputf8);
		ll_int(&l, "dsn", caps.dsn);
	}
	ll_emit(&l);
	backend_free(b);
}

void backend_probe(struct event_base *base, struct gg_config *cfg)
{
	struct backend *b = backend_new(base, cfg, 0);
	if (!b)
		return;
	b->probe = true;
	backend_open(b, NULL, probe_done, b);
}
