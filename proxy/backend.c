#include "backend.h"
#include "backend_priv.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "hostport.h"
#include "log.h"
#include "metrics.h"

/* Body back-pressure: stop reading the client above HIGH, resume below LOW. */
#define BODY_HIGH (256 * 1024)
#define BODY_LOW (64 * 1024)
#define LINE_MAX_BACKEND 4096

static struct backend_caps caps;
/* Whether the last attempt to reach the backend got through, for /healthz. */
static bool reachable = true;
/* Every backend not yet freed, newest first. */
static struct list_node live = { &live, &live };

const struct backend_caps *backend_caps(void)
{
	return &caps;
}

bool backend_reachable(void)
{
	return reachable;
}

void really_free(struct backend *b)
{
	list_del(&b->live_link);
	if (b->bev)
		bufferevent_free(b->bev);
	event_free(b->deliver_ev);
	gg_config_unref(b->cfg);
	free(b);
}

/* The owner's function is called once, from the loop (deliver). */
static void finish(struct backend *b, enum backend_status st)
{
	if (!b->done)
		return;
	b->pending = b->done;
	b->pending_arg = b->done_arg;
	b->pending_st = st;
	b->done = NULL;
	event_active(b->deliver_ev, 0, 0);
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

static void connect_fresh(struct backend *b);

static void go_dead(struct backend *b, enum backend_status st, const char *stage, const char *detail)
{
	if (b->reused && st == BE_UNAVAILABLE) {
		/* An idle connection the backend gave up on while we handed it
		 * over: not an error, the client gets a fresh one. */
		b->reused = false;
		bufferevent_free(b->bev);
		b->bev = NULL;
		connect_fresh(b);
		return;
	}
	if (!b->probe || st != BE_OK)
		log_failure(b, stage, detail);
	if (st == BE_UNAVAILABLE)
		reachable = false;
	b->then = NULL;
	b->state = B_DEAD;
	if (b->bev) {
		bufferevent_free(b->bev);
		b->bev = NULL;
	}
	finish(b, st);
}

/* Commands go straight to the socket, in one write, when nothing is queued
 * ahead of them (the usual case: one command at a time), which spares the
 * write event's epoll_ctl calls and loop iteration; whatever the socket
 * does not take, or a failure, is left to the bufferevent. SECOND may be
 * NULL. */
static void send_lines(struct backend *b, const char *line, size_t len, const char *second,
		       size_t second_len)
{
	struct evbuffer *out = bufferevent_get_output(b->bev);
	char buf[LINE_MAX_BACKEND];
	size_t total = len + 2 + (second ? second_len + 2 : 0);
	if (total > sizeof buf || evbuffer_get_length(out) > 0) {
		evbuffer_add(out, line, len);
		evbuffer_add(out, "\r\n", 2);
		if (second) {
			evbuffer_add(out, second, second_len);
			evbuffer_add(out, "\r\n", 2);
		}
		return;
	}
	memcpy(buf, line, len);
	memcpy(buf + len, "\r\n", 2);
	if (second) {
		memcpy(buf + len + 2, second, second_len);
		memcpy(buf + total - 2, "\r\n", 2);
	}
	ssize_t n = send(bufferevent_getfd(b->bev), buf, total, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0)
		n = 0;
	if ((size_t)n < total)
		evbuffer_add(out, buf + n, total - (size_t)n);
}

static void send_line(struct backend *b, const char *line, size_t len)
{
	send_lines(b, line, len, NULL, 0);
}

/*
 * Which replies a request may get: 4xx and 5xx always, and one positive
 * class: 3 (354) for DATA, 2 for every other command greygate sends, for
 * the hand-shake's steps and for end-of-data. Anything else (a 354 to RCPT,
 * a 1xx, a 250 to DATA) is never relayed: the backend and greygate no
 * longer agree where the dialogue is, so the connection is lost to the
 * request (or unavailable, in the hand-shake).
 */
static int positive_class(const char *line, size_t len)
{
	return len == 4 && strncasecmp(line, "DATA", 4) == 0 ? 3 : 2;
}

static bool reply_fits(const struct backend *b, const struct smtp_reply *r)
{
	int c = r->code / 100;
	return c == b->positive || c == 4 || c == 5;
}

static void expect_reply(struct backend *b, enum bstate st)
{
	b->state = st;
	b->positive = 2;
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
		} else if (IS("PIPELINING")) {
			c.pipelining = true;
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

/* How a refusal of the hand-shake steps that carry the client's own data
 * (XCLIENT, then its HELO) counts. On a reused connection it may be about
 * the connection (the backend's idle timeout, its error or junk-command
 * counts, state left from the last client): that connection is replaced by
 * a fresh one (go_dead), which tells. On a fresh one it fails this session
 * only and says nothing about whether the backend serves others. */
static enum backend_status refusal(const struct backend *b)
{
	return b->reused ? BE_UNAVAILABLE : BE_REFUSED;
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
		 * (and Postfix's own smtp-sink) with 250. A refusal here is about
		 * this client's attributes (or an idle connection's 421 timeout
		 * on a reused one), not about the backend. */
		if (r->code / 100 != 2)
			return go_dead(b, refusal(b), "xclient", r->text);
		send_line(b, b->helo2, strlen(b->helo2));
		return expect_reply(b, B_HELO2);
	case B_HELO2:
		if (r->code != 250)
			return go_dead(b, refusal(b), "helo", r->text);
		b->reused = false;
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
	/* (a stale idle connection is replaced inside the loop: stop then;
	 * a reply waiting for deliver() stops it too) */
	while (b->state != B_DEAD && b->bev == bev && !b->pending) {
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
		if (b->reply_stale) {
			smtp_reply_reset(&b->reply);
			b->reply_stale = false;
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
		if (!reply_fits(b, &b->reply)) {
			char detail[256];
			snprintf(detail, sizeof detail, "reply of a class the command cannot have: %.200s",
				 b->reply.text);
			go_dead(b, b->state == B_BUSY ? BE_LOST : BE_UNAVAILABLE, "read", detail);
			return;
		}
		if (b->state == B_BUSY && b->reply.code == 421) {
			/* "closing the transmission channel": whatever was
			 * given on this connection is gone with it */
			go_dead(b, BE_LOST, "command", b->reply.text);
			return;
		}
		if (b->state == B_BUSY) {
			b->state = B_READY;
			/* Postfix forgets a connection's errors and junk commands
			 * when it accepts a message: only then is it fit for the
			 * next client (proxy/backend.h). */
			b->delivered = b->in_body && b->reply.code / 100 == 2;
			b->in_body = false;
			finish(b, BE_OK);
		} else {
			handshake(b);
		}
	}
}

/* Tells the owner what finish() recorded; woken without a completion, it
 * reads what arrived meanwhile. Nothing here touches B after the owner's
 * function, which may free it. */
static void deliver(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct backend *b = arg;
	backend_reply_fn fn = b->pending;
	if (!fn) {
		if (b->bev)
			on_read(b->bev, b);
		return;
	}
	void *fn_arg = b->pending_arg;
	enum backend_status st = b->pending_st;
	b->pending = NULL;
	/* The reply to the pipelined second command comes next (the owner
	 * lets go of the connection in FIRST_DONE if it wants no more); if
	 * the connection died after the first, the second hears so next. */
	if (st == BE_OK && b->then) {
		b->done = b->then;
		b->done_arg = fn_arg;
		b->then = NULL;
		if (b->state == B_READY && b->bev) {
			b->state = B_BUSY;
			b->positive = b->then_positive;
			struct timeval tv = { b->cfg->backend.command_timeout, 0 };
			bufferevent_set_timeouts(b->bev, &tv, &tv);
		} else {
			finish(b, BE_LOST);
		}
	}
	b->then = NULL;
	b->reply_stale = true;
	if (!b->pending && b->bev && evbuffer_get_length(bufferevent_get_input(b->bev)) > 0)
		event_active(b->deliver_ev, 0, 0);
	fn(fn_arg, st, st == BE_OK ? &b->reply : NULL);
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
	b->deliver_ev = event_new(base, -1, 0, deliver, b);
	if (!b->deliver_ev) {
		free(b);
		return NULL;
	}
	b->base = base;
	b->cfg = gg_config_ref(cfg);
	b->id = id;
	list_push_front(&live, &b->live_link);
	return b;
}

void attach(struct backend *b)
{
	bufferevent_setcb(b->bev, on_read, on_write, on_event, b);
	bufferevent_setwatermark(b->bev, EV_WRITE, BODY_LOW, 0);
	bufferevent_setwatermark(b->bev, EV_READ, 0, 64 * 1024);
	bufferevent_enable(b->bev, EV_READ | EV_WRITE);
}


static void connect_fresh(struct backend *b)
{
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
	attach(b);
	struct timeval tv = { b->cfg->backend.connect_timeout, 0 };
	bufferevent_set_timeouts(b->bev, &tv, &tv);
	b->state = B_CONNECTING;
	metrics_add(M_BACKEND_CONNECTS, 1);
	if (bufferevent_socket_connect(b->bev, (struct sockaddr *)&ss, (int)len) < 0) {
		char detail[128];
		snprintf(detail, sizeof detail, "%s", strerror(errno));
		go_dead(b, BE_UNAVAILABLE, "connect", detail);
	}
}

void backend_open(struct backend *b, const struct backend_client *ci,
		  backend_reply_fn done, void *arg)
{
	b->done = done;
	b->done_arg = arg;
	if (ci && b->cfg->backend.xclient)
		prepare_xclient(b, ci);
	else
		b->xclient[0] = 0;
	if (!b->probe && take_idle(b)) {
		metrics_add(M_BACKEND_REUSED, 1);
		if (b->xclient[0] == 0) {
			/* Without XCLIENT every client looks the same to the
			 * backend: the connection is ready as it is. */
			b->state = B_READY;
			finish(b, BE_OK);
			return;
		}
		b->reused = true;
		send_line(b, b->xclient, strlen(b->xclient));
		expect_reply(b, B_XCLIENT);
		return;
	}
	connect_fresh(b);
}

/* Sends LINE, and SECOND (when not NULL) in the same write; DONE hears the
 * first reply, THEN the second. */
static void command(struct backend *b, const char *line, size_t len, const char *second,
		    size_t second_len, backend_reply_fn done, backend_reply_fn then, void *arg)
{
	b->done = done;
	b->done_arg = arg;
	if (b->state != B_READY || !b->bev) {
		/* The caller checked backend_usable(); the connection died in
		 * between without anybody waiting. */
		go_dead(b, BE_LOST, "command", "backend connection is gone");
		return;
	}
	b->delivered = false;
	b->then = then;
	send_lines(b, line, len, second, second_len);
	expect_reply(b, B_BUSY);
	b->positive = positive_class(line, len);
	b->then_positive = second ? positive_class(second, second_len) : 2;
}

void backend_command(struct backend *b, const char *line, size_t len,
		     backend_reply_fn done, void *arg)
{
	command(b, line, len, NULL, 0, done, NULL, arg);
}

void backend_pipeline(struct backend *b, const char *first, size_t first_len,
		      backend_reply_fn first_done, const char *line, size_t len,
		      backend_reply_fn done, void *arg)
{
	command(b, first, first_len, line, len, first_done, done, arg);
}

void backend_body_begin(struct backend *b, backend_reply_fn done, void *arg)
{
	b->done = done;
	b->done_arg = arg;
	b->state = B_BUSY;
	b->in_body = true;
	b->positive = 2;
	smtp_reply_reset(&b->reply);
	/* The backend says nothing until the body ends, however slow the client
	 * is; only a backend that stops taking the body is timed out here. */
	struct timeval tv = { b->cfg->backend.command_timeout, 0 };
	bufferevent_set_timeouts(b->bev, NULL, &tv);
}

void backend_body_end(struct backend *b)
{
	if (!b->bev)
		return;   /* it died: DONE hears BE_LOST */
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

/* Also full once the backend has answered or died before the end of the
 * body: the owner stops feeding it and hears why from its DONE. */
bool backend_body_full(const struct backend *b)
{
	return !b->bev || b->state != B_BUSY || b->pending ||
	       evbuffer_get_length(bufferevent_get_output(b->bev)) > BODY_HIGH;
}

void backend_shutdown(void)
{
	pool_close_all();
	/* Connections still in use at exit (a start-up probe, a hand-over):
	 * their owners hear BE_LOST and free them; whatever is left goes too. */
	struct list_node *n;
	while ((n = list_first(&live)) != NULL) {
		struct backend *b = LIST_ELEM(n, struct backend, live_link);
		backend_reply_fn fn = b->pending ? b->pending : b->done;
		void *arg = b->pending ? b->pending_arg : b->done_arg;
		b->pending = b->done = NULL;
		b->state = B_DEAD;
		list_del(&b->live_link);
		/* a waiting owner lets go of it in FN, as owners do */
		if (fn)
			fn(arg, BE_LOST, NULL);
		else
			really_free(b);
	}
}
