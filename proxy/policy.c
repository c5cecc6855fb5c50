/*
 * The policy service (policy.h): its listener, its connections, and the
 * mapping between Postfix's attributes and answers and the RCPT rules'
 * query and verdict. The protocol's bytes are lib/policy_proto.c's.
 */
#include "policy.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client_facts.h"
#include "list.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "policy_proto.h"
#include "rcpt_check.h"
#include "server.h"
#include "spf_txn.h"
#include "version.h"
#include "xalloc.h"

/* Postfix's smtpd processes each keep one connection (at most
 * default_process_limit of them, 100 by default); past this many a new
 * connection is closed at once. */
#define POLICY_MAX_CONNS 1024
/* Postfix closes an idle policy connection after 300 s
 * (smtpd_policy_service_max_idle) and any after 1000 s (max_ttl); a
 * connection idle for longer than that is nobody's. */
#define POLICY_IDLE 1200
/* Answers queued and not read: past this, requests are not read either. */
#define POLICY_OUT_MAX (64 * 1024)
/* Out of descriptors, accepting pauses this long. */
#define ACCEPT_PAUSE 1

struct pconn {
	struct list_node link;
	struct bufferevent *bev;
	unsigned long long id;
	struct rcpt_check *check;        /* the request being decided, or NULL */
	struct client_facts facts;       /* its client, as Postfix saw it */
	struct spf_txn spf;              /* the request's SPF check */
	/* of the request being decided, for its answer and log line */
	char client[48];
	char helo[256];
	char sender[SMTP_PATH_MAX + 1];
	char rcpt[SMTP_PATH_MAX + 1];
	char instance[64];               /* its message ("" when not known) */
	char prepended[64];              /* the last message given X-Greylist */
};

static struct evconnlistener *listener;
static struct event *resume_timer;
static struct list_node conns = { &conns, &conns };
static unsigned nconns;
static unsigned long long next_id;

/* ---- connections ---- */

static void conn_free(struct pconn *c)
{
	rcpt_check_cancel(c->check);
	client_facts_release(&c->facts);
	spf_txn_release(&c->spf);
	bufferevent_free(c->bev);
	list_del(&c->link);
	nconns--;
	free(c);
}

static void conn_log(const struct pconn *c, enum log_level lvl, const char *result,
		     const char *reason, const char *action)
{
	struct logline l;
	ll_begin(&l, lvl, "policy");
	ll_int(&l, "conn", (long long)c->id);
	ll_str(&l, "result", result);
	if (reason)
		ll_str(&l, "reason", reason);
	if (action)
		ll_str(&l, "action", action);
	ll_emit(&l);
}

static void answer(struct pconn *c, const char *action, const char *text)
{
	metrics_add(M_POLICY_REQUESTS, 1);
	char out[POLICY_ANSWER_MAX];
	size_t n = policy_answer(out, sizeof out, action, text);
	evbuffer_add(bufferevent_get_output(c->bev), out, n);
}

/* As the proxy logs a refusal at RCPT (event=reject, rule=, the
 * refusals metric), with the text Postfix will say. */
static void log_refusal(const struct pconn *c, const struct rcpt_verdict *v, const char *action,
			const char *text)
{
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "reject");
	ll_str(&l, "via", "policy");
	ll_str(&l, "client", c->client);
	ll_str(&l, "helo", c->helo[0] ? c->helo : NULL);
	ll_str(&l, "cmd", "RCPT");
	ll_str(&l, "sender", c->sender[0] ? c->sender : "<>");
	ll_str(&l, "rcpt", c->rcpt);
	if (v->rule != WHY_NONE) {
		ll_str(&l, "rule", why_name(v->rule));
		metrics_refusal(v->rule);
	}
	ll_str(&l, "action", action);
	ll_str(&l, "reply", text);
	ll_emit(&l);
}

/* postgrey's header, in greygate's words. */
static void answer_prepend(struct pconn *c, long long waited)
{
	char date[64] = "";
	time_t now = time(NULL);
	struct tm tm;
	if (localtime_r(&now, &tm))
		strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);
	char text[POLICY_ANSWER_MAX];
	snprintf(text, sizeof text, "X-Greylist: delayed %lld seconds by greygate-%s at %s; %s",
		 waited, GREYGATE_VERSION, srv.cfg->myhostname, date);
	answer(c, "PREPEND", text);
}

static void pump(struct pconn *c);

static void decided(void *arg, const struct rcpt_verdict *v)
{
	struct pconn *c = arg;
	c->check = NULL;
	char text[sizeof v->reply];
	switch (v->action) {
	case RCPT_ACCEPT:
		/* As postgrey adds it: on the pass that ended a triplet's
		 * greylisting (not on every later mail of the triplet), and
		 * once per message (each recipient is a triplet of its own, and
		 * Postfix adds a header per PREPEND). */
		if (v->first_pass && srv.cfg->policy.prepend_header &&
		    !(c->instance[0] && strcmp(c->instance, c->prepended) == 0)) {
			answer_prepend(c, (long long)v->waited);
			memcpy(c->prepended, c->instance, sizeof c->prepended);
		} else {
			answer(c, "DUNNO", NULL);
		}
		break;
	case RCPT_DEFER:
	case RCPT_REJECT: {
		/* A temporary failure of greylisting or the store defers only
		 * what nothing else refuses for good, as postgrey answers it. A
		 * hostile client's tempfail (scoring.hostile.action) is a
		 * refusal of the client itself, not of a triplet: it defers
		 * whatever else would permit, with the proxy's code. */
		const char *action = v->action == RCPT_REJECT ? "REJECT"
				   : v->rule == WHY_HOSTILE   ? "450"
							      : "DEFER_IF_PERMIT";
		policy_reply_text(v->reply, c->rcpt, text, sizeof text);
		log_refusal(c, v, action, text);
		answer(c, action, text);
		break;
	}
	}
	pump(c);
}

/* A copy of V into BUF (SIZE bytes with its NUL); false when it does not
 * fit. */
static bool take(const struct policy_value *v, char *buf, size_t size)
{
	if (v->len >= size)
		return false;
	memcpy(buf, v->p ? v->p : "", v->len);
	buf[v->len] = 0;
	return true;
}

/* Starts the decision for R, or answers it at once. A request greygate
 * cannot use is answered DUNNO: Postfix checked its fields before it
 * asked, so such a request is no client's doing, and refusing mail for it
 * would be greygate's fault. */
static void request(struct pconn *c, const struct policy_request *r)
{
	if (!policy_value_is(r, PA_REQUEST, "smtpd_access_policy")) {
		conn_log(c, LOG_LVL_WARNING, "unusable", "request is not smtpd_access_policy",
			 "answering DUNNO");
		answer(c, "DUNNO", NULL);
		return;
	}
	if (!policy_value_is(r, PA_PROTOCOL_STATE, "RCPT")) {
		answer(c, "DUNNO", NULL);
		return;
	}
	char tls[32], name[256];
	struct ipaddr addr;
	const char *why = NULL;
	if (!take(&r->v[PA_CLIENT_ADDRESS], c->client, sizeof c->client) ||
	    !ipaddr_parse(c->client, &addr))
		why = "client_address is no IP address";
	else if (!take(&r->v[PA_RECIPIENT], c->rcpt, sizeof c->rcpt) || !c->rcpt[0])
		why = "recipient missing or longer than 254 bytes";
	else if (!take(&r->v[PA_SENDER], c->sender, sizeof c->sender))
		why = "sender longer than 254 bytes";
	if (why) {
		conn_log(c, LOG_LVL_WARNING, "unusable", why, "answering DUNNO");
		answer(c, "DUNNO", NULL);
		return;
	}
	/* Beyond their bounds these only inform the log: cut, not refused. */
	snprintf(c->helo, sizeof c->helo, "%.*s", (int)r->v[PA_HELO_NAME].len,
		 r->v[PA_HELO_NAME].p ? r->v[PA_HELO_NAME].p : "");
	if (!take(&r->v[PA_ENCRYPTION_PROTOCOL], tls, sizeof tls))
		tls[0] = 0;
	if (!take(&r->v[PA_CLIENT_NAME], name, sizeof name))
		name[0] = 0;
	if (!take(&r->v[PA_INSTANCE], c->instance, sizeof c->instance))
		c->instance[0] = 0;

	struct smtp_path rcpt = { .addr_len = strlen(c->rcpt) };
	memcpy(rcpt.addr, c->rcpt, rcpt.addr_len + 1);
	const char *at = strrchr(rcpt.addr, '@');
	rcpt.at = at ? (size_t)(at - rcpt.addr) : rcpt.addr_len;

	/* Postfix looked the client's name up: client_name is the confirmed
	 * name (or "unknown"), reverse_client_name the PTR name (or
	 * "unknown": none). Without them greygate looks it up itself when a
	 * rule needs it. With scoring on the name is wanted (generic_ptr),
	 * and the client's DNSBL/DNSWL lookups start now, as at a connect. */
	client_facts_release(&c->facts);
	client_facts_init(&c->facts, &addr, &srv.cfg->client_names, srv.cfg->scoring.enabled);
	if (r->v[PA_CLIENT_NAME].p)
		client_facts_known(&c->facts, name, strlen(name),
				   !policy_value_is(r, PA_REVERSE_CLIENT_NAME, "unknown"));
	client_facts_score(&c->facts, srv.cfg);
	/* the checker's cache spares the requests of one message the lookups */
	spf_txn_release(&c->spf);
	if (spf_txn_wanted(srv.cfg, &addr, true))
		spf_txn_start(&c->spf, &addr, c->sender, c->helo);
	struct rcpt_query q = {
		.cfg = srv.cfg, .facts = &c->facts, .client = &addr, .client_str = c->client,
		.helo = c->helo, .sender = c->sender, .rcpt = &rcpt, .tls = tls[0] ? tls : NULL,
		.spf = &c->spf, .policy = true,
	};
	c->check = rcpt_check_start(&q, decided, c);
}

/* Takes the complete requests in the input, one at a time: a request
 * being decided holds the ones behind it, so answers leave in order. */
static void pump(struct pconn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	while (!c->check) {
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) > POLICY_OUT_MAX)
			break;   /* on_write takes it up again */
		size_t len = evbuffer_get_length(in);
		if (len == 0)
			break;
		if (len > POLICY_REQUEST_MAX)
			len = POLICY_REQUEST_MAX;
		const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
		struct policy_request r;
		const char *why = NULL;
		enum policy_status st = buf ? policy_parse(buf, len, &r, &why) : POLICY_BAD;
		if (st == POLICY_MORE)
			break;
		if (st == POLICY_BAD) {
			metrics_add(M_POLICY_ERRORS, 1);
			conn_log(c, LOG_LVL_WARNING, "protocol error", why ? why : "out of memory",
				 "closing this connection");
			conn_free(c);
			return;
		}
		request(c, &r);
		evbuffer_drain(in, r.len);
	}
	if (c->check || evbuffer_get_length(bufferevent_get_output(c->bev)) > POLICY_OUT_MAX)
		bufferevent_disable(c->bev, EV_READ);
	else
		bufferevent_enable(c->bev, EV_READ);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	pump(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct pconn *c = arg;
	if (!c->check)
		pump(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct pconn *c = arg;
	/* Postfix closing an idle connection is the normal end: not logged. */
	if (what & BEV_EVENT_TIMEOUT)
		conn_log(c, LOG_LVL_INFO, "idle", "no request for a while", "closing");
	else if ((what & BEV_EVENT_ERROR) && EVUTIL_SOCKET_ERROR() != ECONNRESET)
		conn_log(c, LOG_LVL_WARNING, "error", strerror(EVUTIL_SOCKET_ERROR()), "closing");
	conn_free(c);
}

/* ---- listening ---- */

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (listener)
		evconnlistener_enable(listener);
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
	(void)arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct logline l;
	ll_begin(&l, LOG_LVL_ERROR, "policy");
	ll_str(&l, "result", "accept failed");
	ll_str(&l, "reason", strerror(err));
	ll_str(&l, "action", "pausing new policy connections for a second");
	ll_emit(&l);
	/* A pending connection keeps the socket readable: without a pause
	 * the loop would spin on it. */
	evconnlistener_disable(lev);
	struct timeval tv = { ACCEPT_PAUSE, 0 };
	evtimer_add(resume_timer, &tv);
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	(void)lev;
	(void)sa;
	(void)salen;
	(void)arg;
	if (srv.draining || nconns >= POLICY_MAX_CONNS) {
		evutil_closesocket(fd);
		return;
	}
	struct pconn *c = xcalloc(1, sizeof *c);
	c->bev = bufferevent_socket_new(srv.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		evutil_closesocket(fd);
		free(c);
		return;
	}
	c->id = ++next_id;
	list_push_back(&conns, &c->link);
	nconns++;
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	/* Reading stops while a whole request's worth waits: pump takes what
	 * is complete, and a request that does not end within the bound is
	 * refused. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, POLICY_REQUEST_MAX);
	struct timeval idle = { POLICY_IDLE, 0 };
	bufferevent_set_timeouts(c->bev, &idle, &idle);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

int policy_adopt(int fd, const char *spec)
{
	if (!resume_timer)
		resume_timer = evtimer_new(srv.base, on_resume, NULL);
	listener = resume_timer ? evconnlistener_new(srv.base, on_accept, NULL,
						     LEV_OPT_CLOSE_ON_FREE, -1, fd)
				: NULL;
	if (!listener) {
		log_msg(LOG_LVL_ERROR, "policy", "out of memory adopting the policy socket; exiting");
		close(fd);
		return -1;
	}
	evconnlistener_set_error_cb(listener, on_accept_error);
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "policy");
	ll_str(&l, "result", "listening");
	ll_str(&l, "address", spec);
	ll_emit(&l);
	return 0;
}

int policy_open(const struct gg_config *cfg)
{
	if (!cfg->policy.listen[0])
		return 0;
	int fd = listener_bind(cfg->policy.listen);
	return fd < 0 ? -1 : policy_adopt(fd, cfg->policy.listen);
}

void policy_close(void)
{
	if (listener)
		evconnlistener_free(listener);
	listener = NULL;
	if (resume_timer)
		event_free(resume_timer);
	resume_timer = NULL;
	struct list_node *pos, *tmp;
	LIST_FOR_EACH_SAFE(pos, tmp, &conns)
		conn_free(LIST_ELEM(pos, struct pconn, link));
}
