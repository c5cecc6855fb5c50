#include "session.h"

#include <errno.h>
#include <stdarg.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backend.h"
#include "client_facts.h"
#include "config.h"
#include "connlimit.h"
#include "dotcodec.h"
#include "helo.h"
#include "linger.h"
#include "proxyproto.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "rcpt_ahead.h"
#include "rcpt_check.h"
#include "server.h"
#include "smtp_cmd.h"

/* Replies the client does not read are not buffered without end. */
#define OUT_HIGH (128 * 1024)
#define IN_HIGH_MIN (64 * 1024)
#define HELO_MAX 255
#define RCPT_LOG_MAX 300

enum sstate {
	SS_CMD,      /* reading commands */
	SS_WAIT,     /* a command waits for a check or the backend */
	SS_DATA,     /* the message body is streaming */
	SS_CLOSING,  /* the last reply is being flushed */
	SS_PROXY,    /* waiting for the load balancer's PROXY header */
	SS_TLS_WAIT, /* STARTTLS answered: waiting for the client's first TLS bytes */
};

/*
 * The client's mail transaction, as far as the backend is concerned. Only
 * txn_to() changes it (docs/design.md has the table of what the client gets
 * for each backend failure in each state):
 *   TX_NONE    no MAIL;
 *   TX_MAIL    MAIL given, nothing of it sent to the backend yet (a failed
 *              connection attempt loses nothing: the next RCPT tries again);
 *   TX_SENT    MAIL sent on the session's backend connection;
 *   TX_RCPT    the backend accepted a recipient on that connection;
 *   TX_FAILED  that connection was lost after MAIL went out: recipients it
 *              accepted are gone with it, so the transaction can no longer
 *              deliver; every RCPT and DATA gets a 4xx until RSET, HELO or
 *              the end of the session starts afresh. Never reconnected.
 *   TX_DATA    DATA sent; the body streams to the backend.
 */
enum txn { TX_NONE, TX_MAIL, TX_SENT, TX_RCPT, TX_FAILED, TX_DATA };

struct linebuf {
	char *p;
	size_t cap;
};

struct session {
	struct session *next, *prev;
	struct gg_config *cfg;
	struct bufferevent *bev;
	unsigned long long id;
	enum sstate state;
	struct ipaddr client;
	char client_str[48];
	unsigned client_port;
	time_t started;
	bool counted;        /* in connlimit under client */
	/* A PROXY header without a client (v1 UNKNOWN, v2 LOCAL or UNSPEC):
	 * client holds the balancer's address, which must earn the session
	 * no trust, so such a session takes no mail and reaches no backend. */
	bool client_unknown;
	struct client_facts facts;   /* its name: for XCLIENT and the RCPT rules */
	double line_started; /* first byte of an incomplete command line, or 0 */

	char helo[HELO_MAX + 1];
	bool helo_seen, esmtp;
	bool tls;            /* STARTTLS answered */
	struct event *tls_deadline;  /* set while the TLS hand-shake is pending */
	bool direct_write;   /* replies are written by flush_replies() */
	bool discarding;     /* inside an over-long line */
	int errors;
	unsigned commands;
	unsigned messages;

	/* the transaction */
	enum txn txn;
	char sender[SMTP_PATH_MAX + 1];
	struct linebuf mail_line;  /* MAIL as replayed to the backend */
	struct linebuf fwd_line;   /* the RCPT (or ETRN) being forwarded */
	char rcpt[SMTP_PATH_MAX + 1];
	int rcpt_tried, rcpt_ok;
	char rcpts[RCPT_LOG_MAX];   /* accepted recipients, for the log */
	size_t rcpts_len;
	/* the backend refused our MAIL: its reply, kept for the transaction's
	 * RCPTs (allocated then: most sessions never need its 8 KiB) */
	struct smtp_reply *mail_refused;
	bool be_txn;         /* the backend has a transaction open (it may outlive
				the client's: the next MAIL then RSETs first) */

	struct backend *be;
	struct rcpt_check *check;
	struct rcpt_ahead *ahead;  /* checks of pipelined RCPTs, started early */
	struct dotcodec dc;
	bool body_failed;    /* backend gone or answered early: discard */
	bool body_paused;    /* back-pressure from the backend */
	bool out_paused;     /* back-pressure from the client */

	/* Queued replies are flushed, and a session that ended is freed, from
	 * this event: from the loop, with no frame of the session's on the
	 * stack. */
	struct event *tick;
	bool in_process;
	bool gone;           /* ended: freed by the next tick */
};

static struct session *all_sessions;

static void process_input(struct session *s);
static void resume(struct session *s);
static const char *tls_version(const struct session *s);
static void tls_handshake_over(struct session *s);

/* ---- life cycle ---- */

/* Every line about a session names it and its client first. */
static void begin_line(struct logline *l, const struct session *s, const char *event)
{
	ll_begin(l, LOG_LVL_INFO, event);
	ll_int(l, "id", (long long)s->id);
	ll_str(l, "client", s->client_str);
}

static void log_disconnect(struct session *s)
{
	struct logline l;
	begin_line(&l, s, "disconnect");
	ll_str(&l, "helo", s->helo_seen ? s->helo : NULL);
	ll_int(&l, "commands", s->commands);
	ll_int(&l, "messages", s->messages);
	ll_int(&l, "errors", s->errors);
	ll_int(&l, "duration", (long long)(time(NULL) - s->started));
	ll_emit(&l);
}

/* Lets go of every request in flight, so that none calls back into a
 * session that has ended. Each module allows this inside its own callback
 * (and the session forgets a request before acting on its answer). */
static void release(struct session *s)
{
	if (s->check)
		rcpt_check_cancel(s->check);
	s->check = NULL;
	rcpt_ahead_free(s->ahead);
	s->ahead = NULL;
	client_facts_release(&s->facts);
	backend_free(s->be);
	s->be = NULL;
	tls_handshake_over(s);
}

/* Frees an ended session (kill_session). */
static void destroy(struct session *s)
{
	event_free(s->tick);
	if (s->bev)
		bufferevent_free(s->bev);
	if (s->prev)
		s->prev->next = s->next;
	else
		all_sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s->mail_line.p);
	free(s->fwd_line.p);
	free(s->mail_refused);
	gg_config_unref(s->cfg);
	free(s);
}

static void flush_replies(struct session *s);

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct session *s = arg;
	if (s->gone)
		destroy(s);
	else
		flush_replies(s);
}

/* Ends the session at once, for the connection limits too; only the
 * memory waits for the tick. */
static void kill_session(struct session *s)
{
	if (s->gone)
		return;
	s->gone = true;
	if (s->bev)
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	release(s);
	log_disconnect(s);
	if (s->counted)
		connlimit_release(&s->client);
	srv.active--;
	metrics_add(M_CONNECTIONS_ACTIVE, -1);
	event_active(s->tick, 0, 0);
	server_session_gone();
}

/* The last reply has left: the session ends, and the socket lingers for
 * what the client sent meanwhile (a close with input unread would reset
 * the connection and lose the replies the client has not read yet). A TLS
 * session's bytes may still wait in the filter's underlying buffer. */
static void closed_after_flush(struct session *s)
{
	if (s->direct_write) {
		evutil_socket_t fd = bufferevent_getfd(s->bev);
		bufferevent_setfd(s->bev, -1);
		linger_close(srv.base, fd);
	}
	kill_session(s);
}

/* Closes once the replies already queued have reached the client. */
static void close_after_flush(struct session *s)
{
	s->state = SS_CLOSING;
	bufferevent_disable(s->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		closed_after_flush(s);
	/* otherwise on_write finishes it */
}

/* ---- replies ---- */

/* Replies are queued; they leave together once the callbacks of this loop
 * pass are done (on_tick). */
static void queued(struct session *s)
{
	event_active(s->tick, 0, 0);
}

static void reply(struct session *s, const char *text)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	evbuffer_add(out, text, strlen(text));
	evbuffer_add(out, "\r\n", 2);
	queued(s);
}

static void replyf(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void replyf(struct session *s, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	reply(s, buf);
}

/* text: the reply as the client saw it; NULL when it was told nothing (the
 * connection is closed). */
static void log_reject(struct session *s, const char *cmd, const char *text, enum why rule)
{
	struct logline l;
	begin_line(&l, s, "reject");
	ll_str(&l, "helo", s->helo_seen ? s->helo : NULL);
	ll_str(&l, "cmd", cmd);
	if (s->txn != TX_NONE)
		ll_str(&l, "sender", s->sender);
	if (strcmp(cmd, "RCPT") == 0)
		ll_str(&l, "rcpt", s->rcpt);
	if (rule != WHY_NONE) {
		ll_str(&l, "rule", why_name(rule));
		metrics_refusal(rule);
	}
	/* The reply as the client saw it, minus its line ends. */
	size_t n = text ? strlen(text) : 0;
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		n--;
	if (text)
		ll_strn(&l, "reply", text, n);
	ll_emit(&l);
}

/* A refusal that counts towards limits.max_errors (Postfix's hard error
 * limit): after too many, the client is told 421 and cut off. Returns false
 * when the session is closing. */
static bool count_error(struct session *s, const char *cmd)
{
	if (++s->errors < s->cfg->limits.max_errors)
		return true;
	replyf(s, "421 4.7.0 %s Error: too many errors", s->cfg->myhostname);
	log_reject(s, cmd, "421 4.7.0 Error: too many errors", WHY_MAX_ERRORS);
	close_after_flush(s);
	return false;
}

/* A refusal logged and answered; it does not count towards max_errors. */
static void refuse(struct session *s, const char *cmd, const char *text, enum why rule)
{
	log_reject(s, cmd, text, rule);
	reply(s, text);
}

static bool reject_counted(struct session *s, const char *cmd, const char *text, enum why rule)
{
	refuse(s, cmd, text, rule);
	return count_error(s, cmd);
}

/* A reply relayed from the backend, which ends in CRLF already. */
static void relay_reply(struct session *s, const struct smtp_reply *r)
{
	evbuffer_add(bufferevent_get_output(s->bev), r->text, r->len);
	queued(s);
}

/* ---- transaction ---- */

/* The client's forward-confirmed host name for XCLIENT NAME (and the
 * log), or [UNAVAILABLE] / [TEMPUNAVAIL] as Postfix spells "none" and "not
 * yet". */
static const char *client_name(const struct session *s)
{
	const struct client_facts *f = &s->facts;
	if (!f->any_name)
		return "[UNAVAILABLE]";
	if (f->state != CN_KNOWN || f->result == FCRDNS_TEMPFAIL)
		return "[TEMPUNAVAIL]";
	return f->name[0] ? f->name : "[UNAVAILABLE]";
}

static void log_transaction(struct session *s, const char *result, const char *text, size_t len)
{
	struct logline l;
	begin_line(&l, s, "transaction");
	ll_str(&l, "helo", s->helo_seen ? s->helo : NULL);
	ll_str(&l, "sender", s->sender);
	ll_str(&l, "client_name", client_name(s));
	ll_int(&l, "nrcpt", s->rcpt_ok);
	ll_strn(&l, "rcpts", s->rcpts, s->rcpts_len);
	ll_str(&l, "tls", s->tls ? tls_version(s) : "no");
	ll_str(&l, "result", result);
	if (s->state == SS_DATA || s->dc.in_bytes)
		ll_int(&l, "size", (long long)s->dc.out_bytes);
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	ll_strn(&l, "reply", text, len);
	ll_emit(&l);
}

/* The backend gets the client's HELO through XCLIENT; after a new HELO the
 * old backend connection speaks for the wrong name, so it goes. */
static void drop_backend(struct session *s)
{
	backend_free(s->be);
	s->be = NULL;
	s->be_txn = false;
}

/* The one place the transaction changes state. */
static void txn_to(struct session *s, enum txn to)
{
	switch (to) {
	case TX_NONE:
		s->sender[0] = 0;
		s->rcpt_tried = s->rcpt_ok = 0;
		s->rcpts_len = 0;
		free(s->mail_refused);
		s->mail_refused = NULL;
		s->body_failed = false;
		dotcodec_init(&s->dc);
		rcpt_ahead_free(s->ahead);
		s->ahead = NULL;
		break;
	case TX_FAILED:
		/* whatever the connection still holds must never be delivered */
		drop_backend(s);
		break;
	default:
		break;
	}
	s->txn = to;
}

/* Ends an open transaction that produced no message (RSET, HELO, QUIT,
 * disconnect) so that its recipients show up in the log. */
static void abort_transaction(struct session *s, const char *why)
{
	if (s->txn != TX_NONE && s->rcpt_ok > 0)
		log_transaction(s, "aborted", why, strlen(why));
	txn_to(s, TX_NONE);
}

static struct backend_client client_info(const struct session *s)
{
	return (struct backend_client){
		.addr = s->client_str,
		.ipv6 = s->client.family == AF_INET6,
		.port = s->client_port,
		.name = client_name(s),
		.helo = s->helo_seen ? s->helo : NULL,
		.esmtp = s->esmtp,
	};
}

/* ---- RCPT ---- */

#define TXN_LOST "451 4.4.2 Error: connection to the mail system lost, try again later"

/* The backend failed while CMD (RCPT or DATA) waited for it. Once MAIL has
 * gone out on the connection, the transaction is failed; before, nothing
 * was lost and the next RCPT may try a new connection. */
static void backend_failed(struct session *s, const char *cmd, enum backend_status st)
{
	const char *t = st == BE_UNAVAILABLE
				? "451 4.4.1 Error: mail system temporarily unavailable, try again later"
			: st == BE_REFUSED
				? "451 4.3.0 Error: the mail system refused this session, try again later"
				: TXN_LOST;
	reply(s, t);
	log_reject(s, cmd, t, st == BE_REFUSED ? WHY_BACKEND_REFUSED : WHY_BACKEND);
	if (s->txn == TX_MAIL)
		drop_backend(s);
	else
		txn_to(s, TX_FAILED);
	resume(s);
}

static void rcpt_backend_failed(struct session *s, enum backend_status st)
{
	backend_failed(s, "RCPT", st);
}

static void note_rcpt(struct session *s)
{
	size_t n = strlen(s->rcpt);
	if (s->rcpts_len + n + 1 >= sizeof s->rcpts)
		return; /* the count still says how many */
	if (s->rcpts_len)
		s->rcpts[s->rcpts_len++] = ',';
	memcpy(s->rcpts + s->rcpts_len, s->rcpt, n);
	s->rcpts_len += n;
}

static void rcpt_refused_with_mail(struct session *s)
{
	/* Postfix's proxy does the same: the recipient gets the reason the
	 * sender was refused, and nothing reaches the backend. */
	relay_reply(s, s->mail_refused);
	log_reject(s, "RCPT", s->mail_refused->text, WHY_BACKEND_MAIL);
	resume(s);
}

static void rcpt_replied(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	struct session *s = arg;
	if (st != BE_OK) {
		rcpt_backend_failed(s, st);
	} else if (s->mail_refused) {
		/* pipelined behind the refused MAIL: its own reply says nothing */
		rcpt_refused_with_mail(s);
	} else {
		relay_reply(s, r);
		if (r->code / 100 == 2) {
			txn_to(s, TX_RCPT);
			s->rcpt_ok++;
			note_rcpt(s);
			resume(s);
		} else {
			log_reject(s, "RCPT", r->text, WHY_BACKEND);
			if (r->code < 500 || count_error(s, "RCPT"))
				resume(s);
		}
	}
}

static void rcpt_forward(struct session *s)
{
	if (s->mail_refused) {
		rcpt_refused_with_mail(s);
		return;
	}
	if (!s->be) {   /* (MAIL went out on a connection: it is there) */
		rcpt_backend_failed(s, BE_LOST);
		return;
	}
	backend_command(s->be, s->fwd_line.p, strlen(s->fwd_line.p), rcpt_replied, s);
}

/* The reply to the replayed MAIL; the RCPT follows it, or is already on
 * its way (PIPELINING). */
static void note_mail_reply(struct session *s, const struct smtp_reply *r)
{
	if (r->code / 100 == 2)
		s->be_txn = true;
	else if ((s->mail_refused = malloc(sizeof *s->mail_refused)) != NULL)
		*s->mail_refused = *r;
	/* (out of memory: the RCPT goes on and the backend refuses it) */
}

static void mail_replied(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	struct session *s = arg;
	if (st != BE_OK) {
		rcpt_backend_failed(s, st);
	} else {
		note_mail_reply(s, r);
		rcpt_forward(s);
	}
}

static void mail_replied_pipelined(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	struct session *s = arg;
	if (st != BE_OK)
		rcpt_backend_failed(s, st);
	else
		note_mail_reply(s, r);
}

/* MAIL and the first RCPT in one round trip when the backend pipelines. */
static void send_mail(struct session *s)
{
	const char *m = s->mail_line.p, *r = s->fwd_line.p;
	txn_to(s, TX_SENT);
	if (backend_caps()->pipelining)
		backend_pipeline(s->be, m, strlen(m), mail_replied_pipelined, r, strlen(r),
				 rcpt_replied, s);
	else
		backend_command(s->be, m, strlen(m), mail_replied, s);
}

static void rset_then_mail(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	(void)r;
	struct session *s = arg;
	s->be_txn = false;
	if (st != BE_OK)
		rcpt_backend_failed(s, st);
	else
		send_mail(s);
}

static void backend_opened(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	(void)r;
	struct session *s = arg;
	if (st != BE_OK)
		rcpt_backend_failed(s, st);
	else
		send_mail(s);
}

/* Connects, XCLIENTs and replays MAIL as needed, then forwards the RCPT. */
static void rcpt_to_backend(struct session *s)
{
	if (s->txn != TX_MAIL) {
		rcpt_forward(s);
		return;
	}
	if (backend_usable(s->be)) {
		if (s->be_txn)
			backend_command(s->be, "RSET", 4, rset_then_mail, s);
		else
			send_mail(s);
		return;
	}
	drop_backend(s);
	s->be = backend_new(srv.base, s->cfg, s->id);
	if (!s->be) {
		rcpt_backend_failed(s, BE_UNAVAILABLE);
		return;
	}
	struct backend_client ci = client_info(s);
	backend_open(s->be, &ci, backend_opened, s);
}

static void rcpt_decided(void *arg, const struct rcpt_verdict *v)
{
	struct session *s = arg;
	s->check = NULL;
	if (v->action == RCPT_ACCEPT) {
		rcpt_to_backend(s);
	} else if (v->action == RCPT_DEFER) {
		/* Greylisting and temporary failures are no client errors: a list
		 * server with many recipients must not be cut off for them. */
		refuse(s, "RCPT", v->reply, v->rule);
		resume(s);
	} else if (reject_counted(s, "RCPT", v->reply, v->rule)) {
		resume(s);
	}
}

/* ---- commands ---- */

static void wait_for(struct session *s)
{
	s->state = SS_WAIT;
	bufferevent_disable(s->bev, EV_READ);
}

/* Temporary: a balancer that lost its clients' addresses is a fault its
 * admin fixes, and mail sent meanwhile should wait in senders' queues. */
static void refuse_unknown_client(struct session *s, const char *cmd)
{
	reject_counted(s, cmd, "451 4.7.1 Error: client address unknown, try again later",
		       WHY_PROXY_PROTOCOL);
}

static bool need_helo(struct session *s, const char *cmd)
{
	if (s->helo_seen || !s->cfg->helo_required)
		return true;
	reject_counted(s, cmd, "503 5.5.1 Error: send HELO/EHLO first", WHY_NONE);
	return false;
}

static void cmd_helo(struct session *s, const struct smtp_cmd *c, bool esmtp)
{
	if (c->arg_len == 0) {
		reject_counted(s, esmtp ? "EHLO" : "HELO",
			       esmtp ? "501 5.5.4 Syntax: EHLO hostname" : "501 5.5.4 Syntax: HELO hostname",
			       WHY_NONE);
		return;
	}
	if (c->arg_len > HELO_MAX) {
		reject_counted(s, esmtp ? "EHLO" : "HELO", "501 5.5.4 Error: host name too long", WHY_NONE);
		return;
	}
	/* The backend is handed this name after XCLIENT: what it would refuse
	 * is refused here, with its words, before it gets that far. */
	switch (helo_check(c->arg, c->arg_len)) {
	case HELO_OK:
		break;
	case HELO_BAD_UTF8:
		reject_counted(s, esmtp ? "EHLO" : "HELO", "500 5.5.2 Error: bad UTF-8 syntax", WHY_NONE);
		return;
	case HELO_CONTROL:
		reject_counted(s, esmtp ? "EHLO" : "HELO",
			       esmtp ? "501 5.5.4 Syntax: EHLO hostname" : "501 5.5.4 Syntax: HELO hostname",
			       WHY_NONE);
		return;
	}
	abort_transaction(s, "new HELO/EHLO");
	if (s->be && (!s->helo_seen || s->esmtp != esmtp || strlen(s->helo) != c->arg_len ||
		      memcmp(s->helo, c->arg, c->arg_len) != 0))
		drop_backend(s);
	memcpy(s->helo, c->arg, c->arg_len);
	s->helo[c->arg_len] = 0;
	s->helo_seen = true;
	s->esmtp = esmtp;
	if (!esmtp) {
		replyf(s, "250 %s", s->cfg->myhostname);
		return;
	}
	/* Offer only what the backend offers too: a client must never be
	 * invited to use an extension that fails one hop later. */
	const struct backend_caps *bc = backend_caps();
	struct evbuffer *out = bufferevent_get_output(s->bev);
	evbuffer_add_printf(out, "250-%s\r\n250-PIPELINING\r\n", s->cfg->myhostname);
	if (!bc->known || bc->size) {
		if (bc->size_limit)
			evbuffer_add_printf(out, "250-SIZE %lu\r\n", bc->size_limit);
		else
			evbuffer_add_printf(out, "250-SIZE\r\n");
	}
	if (!bc->known || bc->eightbitmime)
		evbuffer_add_printf(out, "250-8BITMIME\r\n");
	if (bc->smtputf8)
		evbuffer_add_printf(out, "250-SMTPUTF8\r\n");
	if (bc->dsn)
		evbuffer_add_printf(out, "250-DSN\r\n");
	if (s->cfg->tls_ctx && !s->tls)
		evbuffer_add_printf(out, "250-STARTTLS\r\n");
	reply(s, "250 ENHANCEDSTATUSCODES");
}

static bool parse_path(struct session *s, const struct smtp_cmd *c, bool mail, struct smtp_path *p)
{
	const char *cmd = mail ? "MAIL" : "RCPT";
	switch (smtp_path_parse(c->arg, c->arg_len, mail ? "FROM:" : "TO:", p)) {
	case SMTP_PATH_OK:
		if (!mail && p->is_null)
			break;
		return true;
	case SMTP_PATH_NO_KEYWORD:
		reject_counted(s, cmd, mail ? "501 5.5.4 Syntax: MAIL FROM:<address>"
					    : "501 5.5.4 Syntax: RCPT TO:<address>", WHY_NONE);
		return false;
	case SMTP_PATH_BAD_PARAM:
		reject_counted(s, cmd, "501 5.5.4 Bad parameter syntax", WHY_NONE);
		return false;
	case SMTP_PATH_TOO_LONG:
	case SMTP_PATH_SYNTAX:
		break;
	}
	reject_counted(s, cmd, mail ? "501 5.1.7 Bad sender address syntax"
				    : "501 5.1.3 Bad recipient address syntax", WHY_NONE);
	return false;
}

/* Grows B to NEED bytes; a buffer never shrinks, so that the transactions
 * of a session allocate once. */
static char *linebuf_reserve(struct linebuf *b, size_t need)
{
	if (need > b->cap) {
		char *n = realloc(b->p, need);
		if (!n)
			return NULL;
		b->p = n;
		b->cap = need;
	}
	return b->p;
}

/* "MAIL FROM:<addr> params" as the backend gets it: the address as the
 * client spelt it (without a source route), the parameters verbatim. */
static char *forward_line(struct linebuf *buf, const char *verb, const struct smtp_path *p)
{
	size_t need = strlen(verb) + p->addr_len + p->params_len + 8;
	char *n = linebuf_reserve(buf, need);
	if (!n)
		return NULL;
	snprintf(n, need, "%s<%.*s>%s%.*s", verb, (int)p->addr_len, p->addr,
		 p->params_len ? " " : "", (int)p->params_len, p->params);
	return n;
}

static void cmd_mail(struct session *s, const struct smtp_cmd *c)
{
	if (!need_helo(s, "MAIL"))
		return;
	if (s->client_unknown) {
		refuse_unknown_client(s, "MAIL");
		return;
	}
	if (s->txn != TX_NONE) {
		reject_counted(s, "MAIL", "503 5.5.1 Error: nested MAIL command", WHY_NONE);
		return;
	}
	struct smtp_path p;
	if (!parse_path(s, c, true, &p))
		return;
	const char *v;
	size_t vlen;
	const struct backend_caps *bc = backend_caps();
	if (bc->size_limit && smtp_param_find(p.params, p.params_len, "SIZE", &v, &vlen)) {
		char num[24];
		if (vlen >= sizeof num || vlen == 0) {
			reject_counted(s, "MAIL", "501 5.5.4 Bad SIZE parameter", WHY_NONE);
			return;
		}
		memcpy(num, v, vlen);
		num[vlen] = 0;
		char *end;
		errno = 0;
		unsigned long long size = strtoull(num, &end, 10);
		if (*end || errno) {
			reject_counted(s, "MAIL", "501 5.5.4 Bad SIZE parameter", WHY_NONE);
			return;
		}
		if (size > bc->size_limit) {
			reject_counted(s, "MAIL", "552 5.3.4 Message size exceeds fixed limit", WHY_NONE);
			return;
		}
	}
	if (!forward_line(&s->mail_line, "MAIL FROM:", &p)) {
		reply(s, "451 4.3.0 Error: out of memory");
		return;
	}
	txn_to(s, TX_NONE);
	memcpy(s->sender, p.addr, p.addr_len);
	s->sender[p.addr_len] = 0;
	txn_to(s, TX_MAIL);
	reply(s, "250 2.1.0 Ok");
}

static struct rcpt_query rcpt_query_for(struct session *s, const struct smtp_path *rcpt)
{
	return (struct rcpt_query){
		.cfg = s->cfg,
		.facts = &s->facts,
		.client = &s->client,
		.client_str = s->client_str,
		.helo = s->helo_seen ? s->helo : NULL,
		.sender = s->sender,
		.rcpt = rcpt,
		.tls = tls_version(s),
	};
}

/* "postmaster" without a domain, in any case. */
static bool is_postmaster(const struct smtp_path *p)
{
	return p->addr_len == 10 && strncasecmp(p->addr, "postmaster", 10) == 0;
}

static void cmd_rcpt(struct session *s, const struct smtp_cmd *c, const char *line, size_t len)
{
	if (s->txn == TX_NONE) {
		reject_counted(s, "RCPT", "503 5.5.1 Error: need MAIL command", WHY_NONE);
		return;
	}
	struct smtp_path p;
	if (!parse_path(s, c, false, &p))
		return;
	memcpy(s->rcpt, p.addr, p.addr_len);
	s->rcpt[p.addr_len] = 0;
	if (s->rcpt_ok >= s->cfg->limits.max_recipients) {
		/* Not an error: a client with many recipients sends the rest in
		 * the next transaction (RFC 5321 4.5.3.1.8). */
		refuse(s, "RCPT", "452 4.5.3 Error: too many recipients", WHY_MAX_RECIPIENTS);
		return;
	}
	if (s->txn == TX_FAILED) {
		refuse(s, "RCPT", TXN_LOST, WHY_BACKEND);
		return;
	}
	if (!forward_line(&s->fwd_line, "RCPT TO:", &p)) {
		reply(s, "451 4.3.0 Error: out of memory");
		return;
	}
	s->rcpt_tried++;
	wait_for(s);
	if (is_postmaster(&p)) {
		/* RFC 5321 4.5.1: always accepted, never greylisted; the
		 * backend resolves it. */
		rcpt_to_backend(s);
		return;
	}
	if (s->ahead && rcpt_ahead_take(s->ahead, line, len, rcpt_decided, s))
		return;
	struct rcpt_query q = rcpt_query_for(s, &p);
	s->check = rcpt_check_start(&q, rcpt_decided, s);
}

/*
 * While a RCPT is being decided, the RCPTs the client pipelined behind it
 * (complete lines in the input, up to the first other command) start their
 * checks too (proxy/rcpt_ahead.h). The first lines of the input are the
 * ones already started.
 */
static void look_ahead(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t skip = s->ahead ? rcpt_ahead_count(s->ahead) : 0;
	struct evbuffer_ptr pos;
	evbuffer_ptr_set(in, &pos, 0, EVBUFFER_PTR_SET);
	char line[RCPT_AHEAD_LINE_MAX];
	for (;;) {
		if (s->ahead && !rcpt_ahead_room(s->ahead))
			return;
		size_t eol_len;
		struct evbuffer_ptr eol = evbuffer_search_eol(in, &pos, &eol_len, EVBUFFER_EOL_LF);
		if (eol.pos < 0)
			return;
		size_t n = (size_t)(eol.pos - pos.pos);
		if (n > sizeof line)
			return;
		if (evbuffer_copyout_from(in, &pos, line, n) != (ev_ssize_t)n)
			return;
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (skip > 0) {
			skip--;
		} else {
			struct smtp_cmd c;
			struct smtp_path p;
			smtp_cmd_parse(line, n, &c);
			if (c.verb != SMTP_VERB_RCPT ||
			    smtp_path_parse(c.arg, c.arg_len, "TO:", &p) != SMTP_PATH_OK || p.is_null ||
			    is_postmaster(&p))
				return;
			if (!s->ahead && !(s->ahead = rcpt_ahead_new()))
				return;
			struct rcpt_query q = rcpt_query_for(s, &p);
			if (!rcpt_ahead_start(s->ahead, line, n, &q))
				return;
		}
		if (evbuffer_ptr_set(in, &pos, (size_t)eol.pos + eol_len, EVBUFFER_PTR_SET) < 0)
			return;
	}
}

/* ---- DATA ---- */

static void data_finished(struct session *s, const char *text, size_t len, bool accepted)
{
	log_transaction(s, accepted ? "accepted" : "rejected", text, len);
	if (accepted) {
		s->messages++;
		metrics_add(M_MESSAGES_ACCEPTED, 1);
		metrics_add(M_BYTES_RELAYED, (int64_t)s->dc.out_bytes);
	} else {
		metrics_add(M_MESSAGES_REJECTED, 1);
	}
	s->be_txn = false;
	txn_to(s, TX_NONE);
	struct timeval tv = { s->cfg->limits.command_timeout, 0 };
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	resume(s);
}

static void body_replied(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	struct session *s = arg;
	if (s->state == SS_DATA) {
		/* The backend spoke (or died) before the body was complete:
		 * whatever it said, the message is not safely accepted. Read the
		 * rest of the client's data and then say so. */
		s->body_failed = true;
		drop_backend(s);
		if (s->body_paused) {
			s->body_paused = false;
			bufferevent_enable(s->bev, EV_READ);
		}
		return;
	}
	if (st != BE_OK) {
		const char *t = "451 4.4.2 Error: connection to the mail system lost, message not accepted";
		reply(s, t);
		drop_backend(s);
		data_finished(s, t, strlen(t), false);
	} else {
		relay_reply(s, r);
		data_finished(s, r->text, r->len, r->code / 100 == 2);
	}
}

static void body_drained(void *arg)
{
	struct session *s = arg;
	if (!s->body_paused || s->state != SS_DATA)
		return;
	s->body_paused = false;
	bufferevent_enable(s->bev, EV_READ);
	process_input(s);
}

static void data_replied(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	struct session *s = arg;
	if (st != BE_OK) {
		backend_failed(s, "DATA", st);
	} else if (r->code != 354) {
		relay_reply(s, r);
		log_transaction(s, "rejected", r->text, r->len);
		txn_to(s, TX_NONE);
		resume(s);
	} else {
		txn_to(s, TX_DATA);
		relay_reply(s, r);
		dotcodec_init(&s->dc);
		s->body_failed = false;
		backend_body_begin(s->be, body_replied, s);
		backend_on_drain(s->be, body_drained, s);
		s->state = SS_DATA;
		struct timeval tv = { s->cfg->limits.data_timeout, 0 };
		bufferevent_set_timeouts(s->bev, &tv, &tv);
		bufferevent_enable(s->bev, EV_READ);
		process_input(s);
	}
}

static void cmd_data(struct session *s, const struct smtp_cmd *c)
{
	if (c->arg_len) {
		reject_counted(s, "DATA", "501 5.5.4 Syntax: DATA", WHY_NONE);
		return;
	}
	if (s->txn == TX_NONE) {
		reject_counted(s, "DATA", "503 5.5.1 Error: need MAIL command", WHY_NONE);
		return;
	}
	if (s->txn == TX_RCPT && !s->be)   /* (recipients were accepted on one) */
		txn_to(s, TX_FAILED);
	if (s->txn == TX_FAILED) {
		refuse(s, "DATA", TXN_LOST, WHY_BACKEND);
		return;
	}
	if (s->rcpt_ok == 0) {
		reject_counted(s, "DATA", s->rcpt_tried ? "554 5.5.1 Error: no valid recipients"
						     : "503 5.5.1 Error: need RCPT command", WHY_NONE);
		return;
	}
	/* (a connection that died idle: backend_command reports it) */
	wait_for(s);
	backend_command(s->be, "DATA", 4, data_replied, s);
}

/* Feeds buffered client data through the re-encoder into the backend until
 * the end of the message, the end of the input, or back-pressure. */
static void pump_body(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	bool done = false;
	while (!done && evbuffer_get_length(in) > 0) {
		if (!s->body_failed && backend_body_full(s->be)) {
			s->body_paused = true;
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		struct evbuffer *out = s->body_failed ? NULL : backend_body(s->be);
		size_t used = dotcodec_feed(&s->dc, v.iov_base, v.iov_len, out, &done);
		if (used == (size_t)-1) {
			s->body_failed = true;
			drop_backend(s);
			continue;
		}
		evbuffer_drain(in, used);
	}
	if (!done)
		return;
	if (s->body_failed) {
		const char *t = "451 4.4.2 Error: connection to the mail system lost, message not accepted";
		reply(s, t);
		data_finished(s, t, strlen(t), false);
		return;
	}
	/* The reply to end-of-data is the backend's; wait for it. */
	s->state = SS_WAIT;
	bufferevent_disable(s->bev, EV_READ);
	backend_body_end(s->be);
}

/* ---- the rest of the commands ---- */

static void rset_replied(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	(void)r;
	struct session *s = arg;
	if (st != BE_OK)
		drop_backend(s);
	s->be_txn = false;
	reply(s, "250 2.0.0 Ok");
	resume(s);
}

static void cmd_rset(struct session *s)
{
	abort_transaction(s, "RSET");
	if (s->be_txn && backend_usable(s->be)) {
		wait_for(s);
		backend_command(s->be, "RSET", 4, rset_replied, s);
		return;
	}
	reply(s, "250 2.0.0 Ok");
}

/* ---- ETRN (SPEC 6) ---- */

static void log_etrn(struct session *s, const char *result, const char *text, size_t len)
{
	struct logline l;
	begin_line(&l, s, "etrn");
	ll_str(&l, "domain", s->rcpt);
	ll_str(&l, "result", result);
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	ll_strn(&l, "reply", text, len);
	ll_emit(&l);
}

static void etrn_replied(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	struct session *s = arg;
	if (st != BE_OK) {
		const char *t = st == BE_LOST
					? "458 4.4.2 Error: connection to the mail system lost, try ETRN later"
					: "458 4.4.1 Error: mail system unavailable, try ETRN later";
		reply(s, t);
		log_etrn(s, "failed", t, strlen(t));
		drop_backend(s);
	} else {
		relay_reply(s, r);
		log_etrn(s, r->code / 100 == 2 ? "ok" : "refused", r->text, r->len);
	}
	resume(s);
}

static void etrn_send(struct session *s)
{
	backend_command(s->be, s->fwd_line.p, strlen(s->fwd_line.p), etrn_replied, s);
}

static void etrn_opened(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	struct session *s = arg;
	if (st != BE_OK)
		etrn_replied(s, st, r);
	else
		etrn_send(s);
}

/*
 * ETRN is relayed to the backend (whose fast_flush_domains must list the
 * domain) only for a client in etrn_networks and a domain this host backs
 * up; it never touches greylisting.
 */
static void cmd_etrn(struct session *s, const struct smtp_cmd *c)
{
	const struct gg_config *cfg = s->cfg;
	if (!need_helo(s, "ETRN"))
		return;
	if (s->client_unknown) {
		refuse_unknown_client(s, "ETRN");
		return;
	}
	if (s->txn != TX_NONE) {
		reject_counted(s, "ETRN", "503 5.5.1 Error: MAIL transaction in progress", WHY_NONE);
		return;
	}
	if (c->arg_len == 0 || c->arg_len > SMTP_PATH_MAX || memchr(c->arg, ' ', c->arg_len)) {
		reject_counted(s, "ETRN", "501 5.5.4 Syntax: ETRN domain", WHY_NONE);
		return;
	}
	/* "@domain" (and its subdomains) and "#queue" are forms Postfix knows;
	 * the domain itself must be one we serve either way. */
	const char *d = c->arg;
	size_t dlen = c->arg_len;
	if (d[0] == '@' || d[0] == '#') {
		d++;
		dlen--;
	}
	memcpy(s->rcpt, c->arg, c->arg_len);
	s->rcpt[c->arg_len] = 0;
	char text[SMTP_PATH_MAX + 64];
	if (cfg->etrn_networks.n == 0) {
		reject_counted(s, "ETRN", "502 5.5.1 Error: ETRN not permitted", WHY_ETRN_NETWORKS);
		return;
	}
	if (!netlist_match(&cfg->etrn_networks, &s->client) ||
	    !(domainlist_match(&cfg->relay_domains, d, dlen) ||
	      domainlist_match(&cfg->handover.domains, d, dlen))) {
		snprintf(text, sizeof text, "459 4.7.1 <%s>: ETRN not permitted", s->rcpt);
		log_etrn(s, "refused", text, strlen(text));
		reject_counted(s, "ETRN", text, WHY_ETRN);
		return;
	}
	char *line = linebuf_reserve(&s->fwd_line, c->arg_len + 8);
	if (!line) {
		reply(s, "451 4.3.0 Error: out of memory");
		return;
	}
	snprintf(line, c->arg_len + 8, "ETRN %s", s->rcpt);
	wait_for(s);
	if (backend_usable(s->be) && !s->be_txn) {
		etrn_send(s);
		return;
	}
	drop_backend(s);
	s->be = backend_new(srv.base, s->cfg, s->id);
	if (!s->be) {
		etrn_replied(s, BE_UNAVAILABLE, NULL);
		return;
	}
	struct backend_client ci = client_info(s);
	backend_open(s->be, &ci, etrn_opened, s);
}

/* ---- STARTTLS (RFC 3207) ---- */

static void session_set_callbacks(struct session *s);

/* Hand-shakes of this process that have not finished yet: each holds its
 * TLS state until then, so there are at most tls.max_handshakes. */
static int tls_pending;

/* The hand-shake finished, or the session ended: its slot is free. */
static void tls_handshake_over(struct session *s)
{
	if (!s->tls_deadline)
		return;
	event_free(s->tls_deadline);
	s->tls_deadline = NULL;
	tls_pending--;
}

static void on_tls_info(const SSL *ssl, int where, int ret)
{
	(void)ret;
	if (where & SSL_CB_HANDSHAKE_DONE)
		tls_handshake_over(SSL_get_app_data(ssl));
}

/* After the 220 the client can be told nothing more in plaintext: a
 * hand-shake not finished in time ends the connection. */
static void on_tls_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct session *s = arg;
	log_reject(s, "STARTTLS", NULL, WHY_TLS_HANDSHAKE_TIMEOUT);
	kill_session(s);
}

/*
 * The TLS layer is a filter over the plaintext connection. Whatever the
 * client pipelined after STARTTLS is thrown away before the filter exists:
 * plaintext sent ahead must never be read as if it came through TLS (the
 * STARTTLS command injection class). The session then starts over: no
 * HELO, no transaction, and the backend connection (whose XCLIENT
 * described the plaintext session) goes. The filter itself waits for the
 * client's first bytes (tls_begin).
 */
static void cmd_starttls(struct session *s, const struct smtp_cmd *c)
{
	if (c->arg_len) {
		reject_counted(s, "STARTTLS", "501 5.5.4 Syntax: STARTTLS", WHY_NONE);
		return;
	}
	if (s->txn != TX_NONE) {
		reject_counted(s, "STARTTLS", "503 5.5.1 Error: MAIL transaction in progress", WHY_NONE);
		return;
	}
	/* Postfix's answer when it cannot start TLS now: the client may go
	 * on in plaintext */
	if (tls_pending >= s->cfg->tls_max_handshakes) {
		refuse(s, "STARTTLS", "454 4.7.0 TLS not available due to temporary reason",
		       WHY_MAX_TLS_HANDSHAKES);
		return;
	}
	s->tls_deadline = evtimer_new(srv.base, on_tls_deadline, s);
	if (!s->tls_deadline) {
		reply(s, "454 4.7.0 TLS not available due to local problem");
		return;
	}
	struct timeval tv = { s->cfg->tls_handshake_timeout, 0 };
	evtimer_add(s->tls_deadline, &tv);
	tls_pending++;
	reply(s, "220 2.0.0 Ready to start TLS");
	struct evbuffer *in = bufferevent_get_input(s->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	s->state = SS_TLS_WAIT;
	s->tls = true;
	abort_transaction(s, "STARTTLS");
	drop_backend(s);
	s->helo_seen = false;
	s->esmtp = false;
	s->helo[0] = 0;
}

/* The client's first bytes after the 220 are here, in the plaintext
 * input, where the filter reads them from. Only now is the TLS state
 * allocated: a client that says STARTTLS and sends nothing costs what a
 * plaintext session costs until its deadline. */
static void tls_begin(struct session *s)
{
	SSL *ssl = SSL_new(s->cfg->tls_ctx);
	struct bufferevent *tls = ssl ? bufferevent_openssl_filter_new(
		srv.base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE) : NULL;
	if (!tls) {
		SSL_free(ssl);
		struct logline l;
		ll_begin(&l, LOG_LVL_ERROR, "starttls");
		ll_int(&l, "id", (long long)s->id);
		ll_str(&l, "client", s->client_str);
		ll_str(&l, "error", "cannot set up TLS (out of memory); connection closed");
		ll_emit(&l);
		kill_session(s);
		return;
	}
	SSL_set_app_data(ssl, s);
	SSL_set_info_callback(ssl, on_tls_info);
	/* what is left of the 220 leaves ahead of the hand-shake, through the
	 * plaintext bufferevent as the filter expects */
	bufferevent_enable(s->bev, EV_WRITE);
	s->bev = tls;
	s->state = SS_CMD;
	session_set_callbacks(s);
}

static const char *tls_version(const struct session *s)
{
	if (!s->tls)
		return NULL;
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
	return ssl ? SSL_get_version(ssl) : NULL;
}

static void handle_command(struct session *s, const char *line, size_t len)
{
	struct smtp_cmd c;
	smtp_cmd_parse(line, len, &c);
	s->commands++;
	switch (c.verb) {
	case SMTP_VERB_HELO:
		return cmd_helo(s, &c, false);
	case SMTP_VERB_EHLO:
		return cmd_helo(s, &c, true);
	case SMTP_VERB_MAIL:
		return cmd_mail(s, &c);
	case SMTP_VERB_RCPT:
		return cmd_rcpt(s, &c, line, len);
	case SMTP_VERB_DATA:
		return cmd_data(s, &c);
	case SMTP_VERB_RSET:
		return cmd_rset(s);
	case SMTP_VERB_NOOP:
		return reply(s, "250 2.0.0 Ok");
	case SMTP_VERB_HELP:
		return reply(s, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT");
	case SMTP_VERB_QUIT:
		abort_transaction(s, "QUIT");
		reply(s, "221 2.0.0 Bye");
		return close_after_flush(s);
	case SMTP_VERB_VRFY:
	case SMTP_VERB_EXPN:
		if (s->cfg->disable_vrfy_command)
			reject_counted(s, smtp_verb_name(c.verb),
				       c.verb == SMTP_VERB_VRFY ? "502 5.5.1 VRFY command is disabled"
								: "502 5.5.1 EXPN command is disabled",
				       WHY_NONE);
		else
			reply(s, "252 2.0.0 Send some mail, I will try my best");
		return;
	case SMTP_VERB_ETRN:
		return cmd_etrn(s, &c);
	case SMTP_VERB_STARTTLS:
		if (s->cfg->tls_ctx && !s->tls)
			return cmd_starttls(s, &c);
		reject_counted(s, "STARTTLS", "502 5.5.2 Error: command not recognized", WHY_NONE);
		return;
	default: {
		/* The verb as typed (bounded; the logger escapes it). */
		char verb[17];
		size_t n = c.name_len < sizeof verb - 1 ? c.name_len : sizeof verb - 1;
		memcpy(verb, c.name, n);
		verb[n] = 0;
		reject_counted(s, verb, "502 5.5.2 Error: command not recognized", WHY_NONE);
		return;
	}
	}
}

/* ---- the client's name ---- */

/* Looked up once the client's address is final, in the background, when
 * XCLIENT wants it: by the first recipient that goes to the backend it is
 * known (else XCLIENT says [TEMPUNAVAIL], which Postfix treats as a
 * temporary failure). The RCPT rules share the same lookup. */
static void start_name_lookup(struct session *s)
{
	client_facts_init(&s->facts, &s->client, &s->cfg->client_names,
			  s->cfg->backend.xclient && !s->client_unknown);
	if (s->facts.any_name)
		client_facts_ask(&s->facts);
}

/*
 * While the backend cannot be reached, new clients are refused at once
 * (backend.refuse_when_down): a sender then tries the next MX host now
 * instead of meeting 451 at RCPT, and a backup's hand-over probe, which
 * reads this banner, sees the primary as down until its MTA is back.
 */
static void greet(struct session *s)
{
	if (s->cfg->backend.refuse_when_down && !backend_reachable()) {
		char t[400];
		snprintf(t, sizeof t, "421 4.3.2 %s Service temporarily unavailable, try again later",
			 s->cfg->myhostname);
		refuse(s, "CONNECT", t, WHY_BACKEND_DOWN);
		close_after_flush(s);
	} else {
		start_name_lookup(s);
		replyf(s, "220 %s", s->cfg->banner);
	}
}

/* ---- PROXY protocol ---- */

static void refuse_proxy(struct session *s, const char *why)
{
	log_reject(s, "PROXY", why, WHY_PROXY_PROTOCOL);
	replyf(s, "421 4.7.0 %s Error: %s", s->cfg->myhostname, why);
	close_after_flush(s);
}

/* A connection from proxy_protocol_networks starts with the load
 * balancer's header: the real client comes from it, and nothing else is
 * accepted from those networks. Returns true once the session may go on. */
static bool read_proxy_header(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t have = evbuffer_get_length(in);
	if (have == 0)
		return false;
	size_t n = have < PROXYPROTO_V2_MAX ? have : PROXYPROTO_V2_MAX;
	const unsigned char *p = evbuffer_pullup(in, (ssize_t)n);
	struct proxyproto_result r;
	enum proxyproto_status st = proxyproto_parse(p, n, &r);
	if (st == PP_NEED_MORE && n < PROXYPROTO_V2_MAX)
		return false;
	if (st != PP_OK) {
		refuse_proxy(s, "PROXY protocol header required");
		return false;
	}
	evbuffer_drain(in, r.len);
	char proxy[48];
	memcpy(proxy, s->client_str, sizeof proxy);
	if (r.local) {
		/* not counted in connlimit either: the balancer is no client */
		s->client_unknown = true;
		s->client_port = 0;
		snprintf(s->client_str, sizeof s->client_str, "unknown");
	} else {
		if (!connlimit_acquire(&r.src, (int)listener_share(s->cfg->limits.max_per_client))) {
			refuse_proxy(s, "too many connections from your address");
			return false;
		}
		s->client = r.src;
		s->counted = true;
		s->client_port = r.src_port;
		ipaddr_str(&r.src, s->client_str, sizeof s->client_str);
	}
	struct logline l;
	begin_line(&l, s, "proxy");
	ll_int(&l, "port", s->client_port);
	ll_str(&l, "proxy", proxy);
	ll_int(&l, "version", r.version);
	if (r.local)
		ll_str(&l, "local", "yes");
	ll_emit(&l);
	s->state = SS_CMD;
	greet(s);
	return true;
}

/* Takes one command line off the input. Returns false when there is no
 * complete line yet. */
static bool next_line(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t max = (size_t)s->cfg->limits.max_line;
	size_t eol_len;
	struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (p.pos < 0) {
		size_t have = evbuffer_get_length(in);
		/* One line may not take longer than command_timeout in all, however
		 * steadily its bytes trickle in (slow-loris). */
		double now = metrics_now();
		if (have > 0 && s->line_started == 0)
			s->line_started = now;
		if (have > 0 && now - s->line_started > s->cfg->limits.command_timeout) {
			log_reject(s, "LINE", "421 4.4.2 Error: timeout exceeded", WHY_COMMAND_TIMEOUT);
			replyf(s, "421 4.4.2 %s Error: timeout exceeded", s->cfg->myhostname);
			close_after_flush(s);
			return false;
		}
		if (have > max + 1) {
			/* Too long already: drop what we have and the rest of the
			 * line when it comes; the reply goes out at its end. */
			evbuffer_drain(in, have);
			s->discarding = true;
		}
		return false;
	}
	size_t n = (size_t)p.pos;
	s->line_started = 0;
	if (s->discarding || n > max + 1) {
		evbuffer_drain(in, n + eol_len);
		s->discarding = false;
		s->commands++;
		reject_counted(s, "LINE", "500 5.5.2 Error: line too long", WHY_MAX_LINE);
		return true;
	}
	unsigned char *line = evbuffer_pullup(in, (ssize_t)(n + eol_len));
	if (n > 0 && line[n - 1] == '\r')
		n--;
	if (n > max) {
		evbuffer_drain(in, p.pos + eol_len);
		s->commands++;
		reject_counted(s, "LINE", "500 5.5.2 Error: line too long", WHY_MAX_LINE);
		return true;
	}
	/* The line is handled in place; it is drained afterwards, and nothing
	 * reads the input buffer meanwhile (reads are off while waiting). */
	size_t total = (size_t)p.pos + eol_len;
	handle_command(s, (const char *)line, n);
	/* After STARTTLS the old input is gone with everything in it. */
	if (s->state != SS_TLS_WAIT)
		evbuffer_drain(in, total);
	if (s->state == SS_WAIT && s->txn != TX_NONE && !s->gone && (s->check || s->ahead))
		look_ahead(s);
	return true;
}

static void process_input(struct session *s)
{
	if (s->in_process)
		return;
	s->in_process = true;
	while (!s->gone) {
		if (s->state == SS_PROXY) {
			if (!read_proxy_header(s))
				break;
			continue;
		}
		if (s->state == SS_TLS_WAIT) {
			if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0)
				tls_begin(s);
			break;
		}
		if (s->state == SS_DATA) {
			if (s->body_paused)
				break;
			size_t before = evbuffer_get_length(bufferevent_get_input(s->bev));
			pump_body(s);
			if (s->state == SS_DATA &&
			    evbuffer_get_length(bufferevent_get_input(s->bev)) == before)
				break;
			continue;
		}
		if (s->state != SS_CMD || s->out_paused)
			break;
		if (!next_line(s))
			break;
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > OUT_HIGH &&
		    s->state != SS_CLOSING) {
			s->out_paused = true;
			bufferevent_disable(s->bev, EV_READ);
		}
	}
	s->in_process = false;
}

static void resume(struct session *s)
{
	if (s->state == SS_CLOSING || s->gone)
		return;
	s->state = SS_CMD;
	if (!s->out_paused)
		bufferevent_enable(s->bev, EV_READ);
	process_input(s);
}

/* ---- event loop entries ---- */

static void on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct session *s = arg;
	process_input(s);
}

/* Everything queued for the client has been written. */
static void output_drained(struct session *s)
{
	if (s->state == SS_CLOSING) {
		closed_after_flush(s);
	} else if (s->out_paused) {
		s->out_paused = false;
		if (s->state == SS_CMD) {
			bufferevent_enable(s->bev, EV_READ);
			process_input(s);
		}
	}
}

/*
 * Writes the queued replies straight to the socket. Through the
 * bufferevent's write event every reply would cost two epoll_ctl calls and
 * a loop iteration (bench/README.md); only what the socket does not take
 * now waits for the write event, which is switched off again once the
 * output has drained (on_write). Plaintext sockets only: TLS writes go
 * through the filter.
 */
static void flush_replies(struct session *s)
{
	if (!s->direct_write)
		return;
	struct evbuffer *out = bufferevent_get_output(s->bev);
	while (!s->gone && evbuffer_get_length(out) > 0) {
		/* a socket bufferevent keeps the front of its output frozen */
		evbuffer_unfreeze(out, 1);
		evbuffer_write(out, bufferevent_getfd(s->bev));
		evbuffer_freeze(out, 1);
		if (evbuffer_get_length(out) > 0) {
			/* the socket is full, or failed: the write event finds out */
			bufferevent_enable(s->bev, EV_WRITE);
			return;
		}
		output_drained(s);   /* may queue more replies */
	}
}

static void on_write(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct session *s = arg;
	if (s->direct_write && !s->gone)
		bufferevent_disable(s->bev, EV_WRITE);
	output_drained(s);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct session *s = arg;
	/* the TLS filter reports its finished hand-shake this way */
	if (what == BEV_EVENT_CONNECTED)
		return;
	if ((what & BEV_EVENT_TIMEOUT) && s->state != SS_CLOSING) {
		bool in_data = s->state == SS_DATA;
		log_reject(s, in_data ? "DATA" : "TIMEOUT", "421 4.4.2 Error: timeout exceeded",
			   in_data ? WHY_DATA_TIMEOUT : WHY_COMMAND_TIMEOUT);
		abort_transaction(s, "timeout");
		/* A body cut short must not become a message: cut the backend. */
		if (in_data)
			drop_backend(s);
		replyf(s, "421 4.4.2 %s Error: timeout exceeded", s->cfg->myhostname);
		close_after_flush(s);
		bufferevent_enable(s->bev, EV_WRITE);
		/* a client that reads nothing either */
		struct timeval tv = { 10, 0 };
		bufferevent_set_timeouts(s->bev, NULL, &tv);
	} else {
		if (s->state == SS_DATA)
			drop_backend(s);
		abort_transaction(s, "lost connection");
		kill_session(s);
	}
}

/* Callbacks, bounds and timeouts of the client connection (again after
 * STARTTLS, on the TLS filter). */
static void session_set_callbacks(struct session *s)
{
	/* The TLS filter reserves its whole read window in the input before
	 * each read, and an idle session keeps that reservation: one line's
	 * worth there, not IN_HIGH_MIN (32 KiB more per idle TLS session). */
	size_t high = (size_t)s->cfg->limits.max_line + 2;
	if (!s->tls && high < IN_HIGH_MIN)
		high = IN_HIGH_MIN;
	bufferevent_setwatermark(s->bev, EV_READ, 0, high);
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	struct timeval tv = { s->cfg->limits.command_timeout, 0 };
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	s->direct_write = !s->tls;
	bufferevent_enable(s->bev, s->direct_write ? EV_READ : EV_READ | EV_WRITE);
}

void session_start(evutil_socket_t fd, const struct sockaddr *sa, const struct ipaddr *client,
		   bool via_proxy)
{
	struct session *s = calloc(1, sizeof *s);
	struct event *tick = s ? event_new(srv.base, -1, 0, on_tick, s) : NULL;
	struct bufferevent *bev = tick ? bufferevent_socket_new(srv.base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
	if (!bev) {
		log_msg(LOG_LVL_ERROR, "accept", "out of memory; connection closed");
		if (tick)
			event_free(tick);
		free(s);
		evutil_closesocket(fd);
		if (!via_proxy)
			connlimit_release(client);
		return;
	}
	s->bev = bev;
	s->tick = tick;
	s->cfg = gg_config_ref(srv.cfg);
	s->id = ++srv.next_id;
	s->client = *client;
	ipaddr_str(client, s->client_str, sizeof s->client_str);
	s->client_port = sa->sa_family == AF_INET6
				 ? ntohs(((const struct sockaddr_in6 *)sa)->sin6_port)
				 : ntohs(((const struct sockaddr_in *)sa)->sin_port);
	s->started = time(NULL);
	s->state = via_proxy ? SS_PROXY : SS_CMD;
	s->counted = !via_proxy;
	dotcodec_init(&s->dc);
	s->next = all_sessions;
	if (all_sessions)
		all_sessions->prev = s;
	all_sessions = s;
	srv.active++;
	metrics_add(M_CONNECTIONS_ACTIVE, 1);

	session_set_callbacks(s);

	struct logline l;
	begin_line(&l, s, "connect");
	ll_int(&l, "port", s->client_port);
	if (via_proxy)
		ll_str(&l, "proxy_protocol", "waiting");
	ll_emit(&l);
	if (!via_proxy)
		greet(s);
}

void session_close_all(void)
{
	for (struct session *s = all_sessions, *next; s; s = next) {
		next = s->next;
		if (s->state == SS_CLOSING || s->gone)
			continue;
		if (s->state == SS_DATA)
			drop_backend(s);
		abort_transaction(s, "shutdown");
		replyf(s, "421 4.3.2 %s Service shutting down", s->cfg->myhostname);
		close_after_flush(s);
		bufferevent_enable(s->bev, EV_WRITE);
	}
}

void session_shutdown(void)
{
	while (all_sessions) {
		kill_session(all_sessions);
		destroy(all_sessions);
	}
}
