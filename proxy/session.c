#include "session.h"
#include "session_priv.h"

#include <stdarg.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "config.h"
#include "connlimit.h"
#include "dotcodec.h"
#include "linger.h"
#include "log.h"
#include "metrics.h"
#include "rcpt_ahead.h"
#include "rcpt_check.h"
#include "server.h"
#include "smtp_cmd.h"

/* Replies the client does not read are not buffered without end. */
#define OUT_HIGH (128 * 1024)
#define IN_HIGH_MIN (64 * 1024)

/* Every session not yet freed, newest first. */
static struct list_node all_sessions = { &all_sessions, &all_sessions };

/* ---- life cycle ---- */

/* Every line about a session names it and its client first. */
void begin_line(struct logline *l, const struct session *s, const char *event)
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
	spf_txn_release(&s->spf);
	greet_cancel(s);   /* before the facts: it may wait for their score */
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
	list_del(&s->link);
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
void kill_session(struct session *s)
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
void close_after_flush(struct session *s)
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

void reply(struct session *s, const char *text)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	evbuffer_add(out, text, strlen(text));
	evbuffer_add(out, "\r\n", 2);
	queued(s);
}

void replyf(struct session *s, const char *fmt, ...)
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
void log_reject(struct session *s, const char *cmd, const char *text, enum why rule)
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
bool count_error(struct session *s, const char *cmd)
{
	if (++s->errors < s->cfg->limits.max_errors)
		return true;
	replyf(s, "421 4.7.0 %s Error: too many errors", s->cfg->myhostname);
	log_reject(s, cmd, "421 4.7.0 Error: too many errors", WHY_MAX_ERRORS);
	close_after_flush(s);
	return false;
}

/* A refusal logged and answered; it does not count towards max_errors. */
void refuse(struct session *s, const char *cmd, const char *text, enum why rule)
{
	log_reject(s, cmd, text, rule);
	reply(s, text);
}

bool reject_counted(struct session *s, const char *cmd, const char *text, enum why rule)
{
	refuse(s, cmd, text, rule);
	return count_error(s, cmd);
}

/* A reply relayed from the backend, which ends in CRLF already. */
void relay_reply(struct session *s, const struct smtp_reply *r)
{
	evbuffer_add(bufferevent_get_output(s->bev), r->text, r->len);
	queued(s);
}

/* ---- commands ---- */

void wait_for(struct session *s)
{
	s->state = SS_WAIT;
	bufferevent_disable(s->bev, EV_READ);
}

struct sess_query session_query(const struct session *s)
{
	return (struct sess_query){
		.cfg = s->cfg,
		.client = &s->client,
		.helo_seen = s->helo_seen,
		.client_unknown = s->client_unknown,
		.rcpt_ok = s->rcpt_ok,
	};
}

bool session_allows(struct session *s, const char *cmd, enum sess_point at,
		    const struct sess_query *q)
{
	struct sess_verdict v;
	if (!session_rules_check(at, q, &v))
		return true;
	session_refuse(s, cmd, &v);
	return false;
}

void session_refuse(struct session *s, const char *cmd, const struct sess_verdict *v)
{
	if (v->counted)
		reject_counted(s, cmd, v->reply, v->rule);
	else
		refuse(s, cmd, v->reply, v->rule);
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

/* The client's forward-confirmed host name for XCLIENT NAME (and the
 * log), or [UNAVAILABLE] / [TEMPUNAVAIL] as Postfix spells "none" and "not
 * yet". */
const char *client_name(const struct session *s)
{
	const struct client_facts *f = &s->facts;
	if (!f->any_name)
		return "[UNAVAILABLE]";
	if (f->state != CN_KNOWN || f->result == FCRDNS_TEMPFAIL)
		return "[TEMPUNAVAIL]";
	return f->name ? f->name : "[UNAVAILABLE]";
}

/* Looked up once the client's address is final, in the background, when
 * XCLIENT wants it: by the first recipient that goes to the backend it is
 * known (else XCLIENT says [TEMPUNAVAIL], which Postfix treats as a
 * temporary failure). The RCPT rules share the same lookup. */
static void start_name_lookup(struct session *s)
{
	const struct gg_config *cfg = s->cfg;
	bool ptr_keys = pool_kinds_have(cfg->greylist.pool_keys, cfg->greylist.npool_keys, POOL_PTR);
	client_facts_init(&s->facts, &s->client, &cfg->client_names,
			  (cfg->backend.xclient || ptr_keys) && !s->client_unknown);
	if (!s->client_unknown)
		client_facts_score(&s->facts, s->cfg);
	if (s->facts.any_name)
		client_facts_ask(&s->facts);
}

/*
 * While the backend cannot be reached, new clients are refused at once
 * (backend.refuse_when_down): a sender then tries the next MX host now
 * instead of meeting 451 at RCPT, and a backup's hand-over probe, which
 * reads this banner, sees the primary as down until its MTA is back.
 */
void greet(struct session *s)
{
	if (s->cfg->backend.refuse_when_down && !backend_reachable()) {
		char t[400];
		snprintf(t, sizeof t, "421 4.3.2 %s Service temporarily unavailable, try again later",
			 s->cfg->myhostname);
		refuse(s, "CONNECT", t, WHY_BACKEND_DOWN);
		close_after_flush(s);
	} else {
		start_name_lookup(s);
		greet_banner(s);
	}
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

void process_input(struct session *s)
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
		if (s->state == SS_GREET) {
			greet_early(s);
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

void resume(struct session *s)
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
void session_set_callbacks(struct session *s)
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
	list_push_front(&all_sessions, &s->link);
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
	struct list_node *pos, *tmp;
	LIST_FOR_EACH_SAFE(pos, tmp, &all_sessions) {
		struct session *s = LIST_ELEM(pos, struct session, link);
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
	struct list_node *n;
	while ((n = list_first(&all_sessions)) != NULL) {
		struct session *s = LIST_ELEM(n, struct session, link);
		kill_session(s);
		destroy(s);
	}
}
