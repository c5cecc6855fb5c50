/*
 * session_greet: the greetings both ways: the 220 banner with the pregreet
 * test (greet_wait, like Postfix's postscreen_greet_wait), and the
 * client's HELO/EHLO with the EHLO reply's extensions.
 *
 * An SMTP client speaks after the server's banner (RFC 5321 3.1); a bot
 * that writes its EHLO at once, without waiting, gives itself away. With
 * scoring on and greet_wait > 0 the banner is held while the connection's
 * score (client_score.h: its DNSBL/DNSWL and name lookups, started just
 * before) comes in, and no longer than greet_wait seconds: a client whose
 * score is below scoring.classes.suspicious then gets its banner at once,
 * delayed by its lookups only (parallel, and usually cached), never by
 * greet_wait. A client that is suspicious already waits the whole
 * greet_wait: the test is worth its time where the score is in doubt.
 * Whatever the client sends meanwhile adds the pregreet signal to the
 * connection's score, so every RCPT decision of the session sees it; the
 * bytes themselves are not lost: they are the first commands read after
 * the banner.
 *
 * Clients the RCPT rules permit before their class is asked (mynetworks,
 * whitelist.clients, whitelist.client_names once the name is known) and
 * sessions where greylisting is off are never held: postscreen, too,
 * skips its tests for allowlisted clients. A PROXY header is read before
 * the greeting starts, so it is never taken for pregreet, and the score is
 * that of the client it names.
 *
 * Promises: nothing blocks (a timer and the score's wait); the banner goes
 * out exactly once, from the loop; greet_cancel lets go of both at once.
 */
#include "session_priv.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "client_score.h"
#include "helo.h"
#include "metrics.h"
#include "server.h"

/* The start of what a pregreeting client sent, for the log. */
#define EARLY_LOG_MAX 64

struct greet_hold {
	struct event *timer;             /* greet_wait from the start, or now */
	struct client_facts_wait wait;   /* for the connection's score */
	double since;                    /* metrics_now() when the hold began */
	bool spoke;                      /* pregreet noticed */
};

static void send_banner(struct session *s)
{
	replyf(s, "220 %s", s->cfg->banner);
}

/* Clients whose score decides nothing: the RCPT rules permit them before
 * the class row (rcpt_rules.c). */
static bool exempt(const struct session *s)
{
	const struct gg_config *cfg = s->cfg;
	return !cfg->greylist.enabled || netlist_match(&cfg->mynetworks, &s->client) ||
	       netlist_match(&cfg->whitelist.clients, &s->client);
}

/* With the score in: whether the banner waits for the rest of greet_wait.
 * Pregreet points count: a client that talked while its lookups ran is
 * as doubtful as one the lists made suspicious. */
static bool holds_on(const struct session *s, const struct score *sc)
{
	/* the name's lookup is part of the score: a listed name is known now */
	return !s->facts.listed && sc->total >= s->cfg->scoring.classes.suspicious;
}

void greet_cancel(struct session *s)
{
	struct greet_hold *h = s->hold;
	if (!h)
		return;
	client_facts_unwait(&h->wait);
	event_free(h->timer);
	free(h);
	s->hold = NULL;
}

static void on_release(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct session *s = arg;
	greet_cancel(s);
	/* closing meanwhile (shutdown told it 421): no banner after that */
	if (s->state != SS_GREET)
		return;
	s->state = SS_CMD;
	send_banner(s);
	/* the command timeout starts with the banner */
	session_set_callbacks(s);
	process_input(s);   /* what the client sent before the banner */
}

/* Called from the score's lookups: from the loop, inside their list of
 * waiters, so the banner leaves through the timer, not from here. */
static void on_score(void *arg)
{
	struct session *s = arg;
	struct greet_hold *h = s->hold;
	const struct score *sc = client_score_ready(s->facts.score, &h->wait, on_score, s);
	if (sc && !holds_on(s, sc)) {
		struct timeval now = { 0, 0 };
		evtimer_add(h->timer, &now);
	}
}

void greet_banner(struct session *s)
{
	const struct gg_config *cfg = s->cfg;
	struct client_score *cs = s->facts.score;
	if (!cs || cfg->greet_wait <= 0 || exempt(s)) {
		send_banner(s);
		return;
	}
	struct greet_hold *h = calloc(1, sizeof *h);
	struct event *timer = h ? evtimer_new(srv.base, on_release, s) : NULL;
	if (!timer) {
		/* out of memory: no test rather than no banner */
		free(h);
		send_banner(s);
		return;
	}
	h->timer = timer;
	h->since = metrics_now();
	s->hold = h;
	s->state = SS_GREET;
	/* no command timeout before the banner: greet_wait bounds the hold */
	bufferevent_set_timeouts(s->bev, NULL, NULL);
	struct timeval tv = { cfg->greet_wait, 0 };
	const struct score *sc = client_score_ready(cs, &h->wait, on_score, s);
	if (sc && !holds_on(s, sc))
		tv.tv_sec = 0;
	evtimer_add(timer, &tv);
}

void greet_early(struct session *s)
{
	struct greet_hold *h = s->hold;
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t n = evbuffer_get_length(in);
	if (!h || h->spoke || n == 0)
		return;
	h->spoke = true;
	client_score_add(s->facts.score, SIG_PREGREET);
	char early[EARLY_LOG_MAX];
	ev_ssize_t got = evbuffer_copyout(in, early, sizeof early);
	size_t len = got > 0 ? (size_t)got : 0;
	const char *eol = memchr(early, '\n', len);
	if (eol)
		len = (size_t)(eol - early);
	if (len > 0 && early[len - 1] == '\r')
		len--;
	struct logline l;
	begin_line(&l, s, "pregreet");
	ll_int(&l, "bytes", (long long)n);
	ll_int(&l, "after_ms", (long long)((metrics_now() - h->since) * 1000));
	ll_strn(&l, "line", early, len);
	ll_emit(&l);
}

void cmd_helo(struct session *s, const struct smtp_cmd *c, bool esmtp)
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
