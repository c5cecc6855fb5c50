/* session_etrn: ETRN, relayed to the backend for authorised clients. */

#include "session_priv.h"

#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "server.h"

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
 * domain) only when the session rules allow it (etrn_networks and a
 * domain this host backs up); it never touches greylisting.
 */
void cmd_etrn(struct session *s, const struct smtp_cmd *c)
{
	struct sess_query q = session_query(s);
	if (!session_allows(s, "ETRN", SP_ETRN, &q))
		return;
	if (s->txn != TX_NONE) {
		reject_counted(s, "ETRN", "503 5.5.1 Error: MAIL transaction in progress", WHY_NONE);
		return;
	}
	if (c->arg_len == 0 || c->arg_len > SMTP_PATH_MAX || memchr(c->arg, ' ', c->arg_len)) {
		reject_counted(s, "ETRN", "501 5.5.4 Syntax: ETRN domain", WHY_NONE);
		return;
	}
	memcpy(s->rcpt, c->arg, c->arg_len);
	s->rcpt[c->arg_len] = 0;
	q.etrn_arg = s->rcpt;
	q.etrn_len = c->arg_len;
	struct sess_verdict v;
	if (session_rules_check(SP_ETRN_DOMAIN, &q, &v)) {
		/* the etrn event records refusals of a permitted client's domain */
		if (v.rule == WHY_ETRN)
			log_etrn(s, "refused", v.reply, strlen(v.reply));
		session_refuse(s, "ETRN", &v);
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
