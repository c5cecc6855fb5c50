/* session_txn: the client's mail transaction (enum txn, txn_to) and the
 * replay of MAIL and RCPT to the backend. */

#include "session_priv.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend.h"
#include "log.h"
#include "rcpt_ahead.h"
#include "rcpt_check.h"
#include "server.h"
#include "smtp_cmd.h"

void log_transaction(struct session *s, const char *result, const char *text, size_t len)
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
void drop_backend(struct session *s)
{
	backend_free(s->be);
	s->be = NULL;
	s->be_txn = false;
}

/* The one place the transaction changes state. */
void txn_to(struct session *s, enum txn to)
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
		spf_txn_release(&s->spf);
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
void abort_transaction(struct session *s, const char *why)
{
	if (s->txn != TX_NONE && s->rcpt_ok > 0)
		log_transaction(s, "aborted", why, strlen(why));
	txn_to(s, TX_NONE);
}

struct backend_client client_info(const struct session *s)
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


/* The backend failed while CMD (RCPT or DATA) waited for it. Once MAIL has
 * gone out on the connection, the transaction is failed; before, nothing
 * was lost and the next RCPT may try a new connection. */
void backend_failed(struct session *s, const char *cmd, enum backend_status st)
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
char *linebuf_reserve(struct linebuf *b, size_t need)
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

void cmd_mail(struct session *s, const struct smtp_cmd *c)
{
	struct sess_query q = session_query(s);
	if (!session_allows(s, "MAIL", SP_MAIL, &q))
		return;
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
		q.size = size;
		q.size_limit = bc->size_limit;
	}
	if (!session_allows(s, "MAIL", SP_MAIL_PARAMS, &q))
		return;
	if (!forward_line(&s->mail_line, "MAIL FROM:", &p)) {
		reply(s, "451 4.3.0 Error: out of memory");
		return;
	}
	txn_to(s, TX_NONE);
	memcpy(s->sender, p.addr, p.addr_len);
	s->sender[p.addr_len] = 0;
	txn_to(s, TX_MAIL);
	/* in the background: the reply does not wait, the RCPT rules may */
	if (spf_txn_wanted(s->cfg, &s->client, true))
		spf_txn_start(&s->spf, &s->client, s->sender, s->helo_seen ? s->helo : NULL);
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
		.spf = &s->spf,
	};
}

/* "postmaster" without a domain, in any case. */
static bool is_postmaster(const struct smtp_path *p)
{
	return p->addr_len == 10 && strncasecmp(p->addr, "postmaster", 10) == 0;
}

void cmd_rcpt(struct session *s, const struct smtp_cmd *c, const char *line, size_t len)
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
	struct sess_query sq = session_query(s);
	if (!session_allows(s, "RCPT", SP_RCPT, &sq))
		return;
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
void look_ahead(struct session *s)
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

/* ---- RSET ---- */

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

void cmd_rset(struct session *s)
{
	abort_transaction(s, "RSET");
	if (s->be_txn && backend_usable(s->be)) {
		wait_for(s);
		backend_command(s->be, "RSET", 4, rset_replied, s);
		return;
	}
	reply(s, "250 2.0.0 Ok");
}
