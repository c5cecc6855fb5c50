/*
 * The RCPT decision runs as a sequence of steps; a step either decides,
 * moves on, or starts lookups and waits. Answers only record their result
 * and wake the check through its own event, so the steps run from the
 * loop alone, never inside a call that started a lookup.
 *
 * What needs no DNS is decided first: the MX-host exemption, the one
 * lookup most decisions would otherwise wait for, is asked only when the
 * store's answer would refuse the recipient, so a resolver that does not
 * answer delays only those, and greylisting goes on.
 */
#include "rcpt_check.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fcrdns.h"
#include "log.h"
#include "metrics.h"
#include "mxset.h"
#include "resolver.h"
#include "sender_norm.h"
#include "server.h"
#include "store.h"
#include "triplet.h"
#include "xalloc.h"

enum step {
	ST_CLIENT,        /* mynetworks; whitelisted client address */
	ST_CLIENT_NAME,   /* whitelisted client name (FCrDNS) */
	ST_SENDER,        /* reject_non_fqdn_sender; MX of the sender domain */
	ST_SENDER_MX,     /* reject_unknown_sender_domain: the MX answer */
	ST_SENDER_ADDR,   /* ... no MX: the A/AAAA answers */
	ST_RCPT,          /* reject_non_fqdn_recipient */
	ST_RELAY,         /* local_domains, relay_domains, permit_mx_backup */
	ST_RELAY_MX,      /* permit_mx_backup: the MX hosts' answer */
	ST_EXEMPT,        /* whitelists */
	ST_STORE,         /* greylisting */
	ST_STORE_DONE,
	ST_MX_HOST,       /* a refusal unless the client is an MX host of the domain */
};

/*
 * Lookups are started only from run(); an answer records its result and,
 * once nothing is pending, wakes run() through the event WAKE.
 */
struct rcpt_check {
	rcpt_done_fn done;
	void *arg;
	struct gg_config *cfg;
	struct event wake;
	enum step step;
	bool finished;
	int pending;                     /* answers still to come */

	struct ipaddr client;
	char client_str[48];
	char helo[256];
	char tls[16];
	char sender[SMTP_PATH_MAX + 1];
	char rcpt[SMTP_PATH_MAX + 1];
	const char *sdomain, *rdomain;   /* into sender / rcpt; "" when none */

	enum why wl_client;              /* why the client is whitelisted, or WHY_NONE */
	char client_name[DNS_NAME_MAX];

	struct dns_query *dq[2];
	enum dns_status dns_status[2];
	bool sender_null_mx;
	struct mxset_req *mxr;
	struct mxset mx;                 /* the recipient domain's MX hosts */
	bool mx_known;
	struct fcrdns_req *fcr;
	struct store_call *sreq;
	struct store_result sres;
	char sres_error[160];
	struct triplet t;

	struct rcpt_verdict v;
	double started, store_started;
};

static void answered(struct rcpt_check *c)
{
	if (--c->pending == 0)
		event_active(&c->wake, EV_TIMEOUT, 0);
}

/* ---- decisions and logs ---- */

static void log_decision(struct rcpt_check *c, enum decision_action action, enum why reason,
			 const struct gl_decision *d, const char *error)
{
	metrics_decision(action, reason);
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "decision");
	ll_str(&l, "action", metrics_action_name(action));
	ll_str(&l, "reason", why_name(reason));
	ll_str(&l, "client", c->client_str);
	if (c->t.net[0])
		ll_str(&l, "net", c->t.net);
	if (c->client_name[0])
		ll_str(&l, "client_name", c->client_name);
	ll_str(&l, "helo", c->helo[0] ? c->helo : NULL);
	ll_str(&l, "tls", c->tls[0] ? c->tls : "no");
	ll_str(&l, "sender", c->sender[0] ? c->sender : "<>");
	ll_str(&l, "rcpt", c->rcpt);
	if (d && d->action == GL_GREYLIST)
		ll_int(&l, "delay_left", d->delay_left);
	if (d && d->action == GL_PASS && d->reason == GL_REASON_TRIPLET)
		ll_int(&l, "waited", d->waited);
	if (d && d->capped)
		ll_str(&l, "stored", "no-capped");
	if (error)
		ll_str(&l, "error", error);
	ll_emit(&l);
}

/* FMT has two %s: the address and EXTRA (may be NULL). */
static void decide(struct rcpt_check *c, enum rcpt_action action, enum why rule,
		   const char *fmt, const char *addr, const char *extra)
{
	c->v.action = action;
	c->v.rule = rule;
	if (fmt)
		snprintf(c->v.reply, sizeof c->v.reply, fmt, addr, extra ? extra : "");
	c->finished = true;
}

static void accept_with(struct rcpt_check *c, enum why reason)
{
	log_decision(c, DA_PASS, reason, NULL, NULL);
	decide(c, RCPT_ACCEPT, reason, NULL, NULL, NULL);
}

/* ---- answers ---- */

static void on_client_name(void *arg, enum fcrdns_result r, const char *name)
{
	struct rcpt_check *c = arg;
	c->fcr = NULL;
	if (r == FCRDNS_MATCH) {
		c->wl_client = WHY_WHITELIST_CLIENT_NAME;
		snprintf(c->client_name, sizeof c->client_name, "%s", name);
	}
	answered(c);
}

static void on_dns(void *arg, const struct dns_answer *a)
{
	struct rcpt_check *c = arg;
	int w = a->type == DNS_T_AAAA ? 1 : 0;
	c->dq[w] = NULL;
	c->dns_status[w] = a->status;
	if (a->type == DNS_T_MX)
		c->sender_null_mx = dns_null_mx(a);
	answered(c);
}

static void on_rcpt_mx(void *arg, const struct mxset *m)
{
	struct rcpt_check *c = arg;
	c->mxr = NULL;
	c->mx = *m;
	c->mx_known = true;
	answered(c);
}

static void on_store(void *arg, const struct store_result *r)
{
	struct rcpt_check *c = arg;
	c->sreq = NULL;
	c->sres = *r;
	if (!r->ok) {
		snprintf(c->sres_error, sizeof c->sres_error, "%s", r->error ? r->error : "?");
		c->sres.error = c->sres_error;
	}
	answered(c);
}

static void lookup(struct rcpt_check *c, int slot, const char *name, uint16_t type)
{
	c->pending++;
	c->dq[slot] = resolver_lookup(name, type, on_dns, c);
}

/* ---- step: sender ---- */

static bool is_fqdn(const char *domain)
{
	return domain[0] == '[' || (strchr(domain, '.') && domain[strlen(domain) - 1] != '.');
}

static void sender_unknown(struct rcpt_check *c, bool temporary)
{
	if (temporary)
		decide(c, RCPT_DEFER, WHY_REJECT_UNKNOWN_SENDER_DOMAIN,
		       "450 4.1.8 <%s>: Sender address rejected: Domain not found%s", c->sender,
		       " (temporary DNS failure)");
	else
		decide(c, RCPT_REJECT, WHY_REJECT_UNKNOWN_SENDER_DOMAIN,
		       "550 5.1.8 <%s>: Sender address rejected: Domain not found%s", c->sender, NULL);
}

static void step_sender(struct rcpt_check *c)
{
	const struct gg_config *cfg = c->cfg;
	c->step = ST_RCPT;
	if (c->wl_client != WHY_NONE || !c->sender[0])
		return;
	if (cfg->reject_non_fqdn_sender && !is_fqdn(c->sdomain)) {
		decide(c, RCPT_REJECT, WHY_REJECT_NON_FQDN_SENDER,
		       "504 5.5.2 <%s>: Sender address rejected: need fully-qualified address%s",
		       c->sender, NULL);
		return;
	}
	if (!cfg->reject_unknown_sender_domain || !c->sdomain[0] || c->sdomain[0] == '[')
		return;
	c->step = ST_SENDER_MX;
	lookup(c, 0, c->sdomain, DNS_T_MX);
}

static void step_sender_mx(struct rcpt_check *c)
{
	c->step = ST_RCPT;
	switch (c->dns_status[0]) {
	case DNS_OK:
		if (c->sender_null_mx)
			decide(c, RCPT_REJECT, WHY_REJECT_UNKNOWN_SENDER_DOMAIN,
			       "550 5.7.27 <%s>: Sender address rejected: Domain %s does not accept mail (null MX)",
			       c->sender, c->sdomain);
		return;
	case DNS_TEMPFAIL:
		sender_unknown(c, true);
		return;
	case DNS_NXDOMAIN:
		sender_unknown(c, false);
		return;
	case DNS_NODATA:
		/* No MX: mail goes to the domain's own address (RFC 5321 5.1). */
		c->step = ST_SENDER_ADDR;
		lookup(c, 0, c->sdomain, DNS_T_A);
		lookup(c, 1, c->sdomain, DNS_T_AAAA);
		return;
	}
}

static void step_sender_addr(struct rcpt_check *c)
{
	c->step = ST_RCPT;
	if (c->dns_status[0] != DNS_OK && c->dns_status[1] != DNS_OK)
		sender_unknown(c, c->dns_status[0] == DNS_TEMPFAIL || c->dns_status[1] == DNS_TEMPFAIL);
}

/* ---- step: relay authorisation ---- */

/* Postfix's permit_mx_backup: authorised when this host is one of the
 * lower-preference MX hosts of the domain and not a primary; with
 * permit_mx_backup_networks, only if every address of every primary lies
 * in them. */
static void step_relay_mx(struct rcpt_check *c)
{
	const struct gg_config *cfg = c->cfg;
	const struct mxset *m = &c->mx;
	c->step = ST_EXEMPT;
	if (m->tempfail) {
		decide(c, RCPT_DEFER, WHY_PERMIT_MX_BACKUP,
		       "450 4.4.4 <%s>: Recipient address rejected: %s", c->rcpt,
		       "temporary DNS failure checking relay access");
		return;
	}
	bool me_primary = false, me_backup = false, primaries_inside = true;
	uint16_t best = m->n ? m->host[0].pref : 0;
	for (size_t i = 0; i < m->n; i++) {
		const struct mx_host *h = &m->host[i];
		bool me = false;
		for (size_t k = 0; k < h->naddr; k++)
			me |= netlist_match(&cfg->my_addresses, &h->addr[k]);
		if (h->pref == best) {
			me_primary |= me;
			primaries_inside &= h->naddr > 0;
			for (size_t k = 0; k < h->naddr; k++)
				primaries_inside &= netlist_match(&cfg->permit_mx_backup_networks, &h->addr[k]);
		} else {
			me_backup |= me;
		}
	}
	const char *why = NULL;
	if (m->status != DNS_OK || m->null_mx || m->n == 0)
		why = "no MX";
	else if (me_primary)
		why = "this host is a primary MX";
	else if (!me_backup)
		why = "this host is not an MX";
	else if (cfg->permit_mx_backup_networks.n && !primaries_inside)
		why = "a primary MX lies outside permit_mx_backup_networks";
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "relay");
	ll_str(&l, "rule", why_name(WHY_PERMIT_MX_BACKUP));
	ll_str(&l, "result", why ? "not-authorised" : "authorised");
	ll_str(&l, "client", c->client_str);
	ll_str(&l, "rcpt", c->rcpt);
	ll_str(&l, "domain", c->rdomain);
	if (why)
		ll_str(&l, "why", why);
	ll_emit(&l);
	if (why)
		decide(c, RCPT_REJECT, WHY_RELAY_DENIED, "554 5.7.1 <%s>: Relay access denied%s",
		       c->rcpt, NULL);
}

static void step_relay(struct rcpt_check *c)
{
	const struct gg_config *cfg = c->cfg;
	size_t dlen = strlen(c->rdomain);
	c->step = ST_EXEMPT;
	if (dlen && domainlist_match(&cfg->local_domains, c->rdomain, dlen))
		return;
	if (dlen && domainlist_match(&cfg->relay_domains, c->rdomain, dlen))
		return;
	if (cfg->permit_mx_backup && dlen && c->rdomain[0] != '[') {
		c->step = ST_RELAY_MX;
		c->pending++;
		c->mxr = mxset_resolve(c->rdomain, on_rcpt_mx, c);
		return;
	}
	decide(c, RCPT_REJECT, WHY_RELAY_DENIED, "554 5.7.1 <%s>: Relay access denied%s", c->rcpt, NULL);
}

/* ---- step: exemptions ---- */

static void step_exempt(struct rcpt_check *c)
{
	const struct gg_config *cfg = c->cfg;
	if (!cfg->greylist.enabled) {
		decide(c, RCPT_ACCEPT, WHY_GREYLIST_DISABLED, NULL, NULL, NULL);
		return;
	}
	if (c->wl_client != WHY_NONE) {
		accept_with(c, c->wl_client);
		return;
	}
	if (addrlist_match(&cfg->whitelist.senders, c->sender, strlen(c->sender))) {
		accept_with(c, WHY_WHITELIST_SENDER);
		return;
	}
	if (addrlist_match(&cfg->whitelist.recipients, c->rcpt, strlen(c->rcpt))) {
		accept_with(c, WHY_WHITELIST_RECIPIENT);
		return;
	}
	c->step = ST_STORE;
}

/* ---- step: greylisting ---- */

/* "450 4.2.0 <rcpt>: Recipient address rejected: " + the configured text
 * with its one "%s" replaced by the seconds left. The text comes from the
 * configuration, so it is never used as a format string. */
/* The configured text with the seconds left in place of its %s; "1
 * seconds" of the default text becomes "1 second". */
static void greylist_reply(struct rcpt_check *c, long long left)
{
	const char *m = c->cfg->greylist.message;
	const char *pct = strstr(m, "%s");
	const char *rest = pct ? pct + 2 : "";
	char secs[32];
	snprintf(secs, sizeof secs, "%lld", left);
	if (left == 1 && strncmp(rest, " seconds", 8) == 0) {
		snprintf(secs, sizeof secs, "1 second");
		rest += 8;
	}
	snprintf(c->v.reply, sizeof c->v.reply,
		 "450 4.2.0 <%s>: Recipient address rejected: %.*s%s%s", c->rcpt,
		 pct ? (int)(pct - m) : (int)strlen(m), m, pct ? secs : "", rest);
}

static void step_store(struct rcpt_check *c)
{
	const struct gg_config *cfg = c->cfg;
	char net[NET_TEXT_MAX], sender[SMTP_PATH_MAX + 4];
	size_t slen = sender_normalise(c->sender, strlen(c->sender), &cfg->greylist.norm, sender,
				       sizeof sender);
	triplet_network(&c->client, (unsigned)cfg->greylist.ipv4_prefix,
			(unsigned)cfg->greylist.ipv6_prefix, net, sizeof net);
	c->step = ST_STORE_DONE;
	if (triplet_make(&c->t, net, sender, slen, c->rcpt, strlen(c->rcpt)) < 0) {
		/* Only hashing can fail here (paths are bounded): a store failure
		 * in effect, handled by the same policy. */
		c->sres = (struct store_result){ .ok = false, .error = "cannot compute the triplet key" };
		return;
	}
	c->pending++;
	c->store_started = metrics_now();
	c->sreq = store_decide(cfg, &c->t, on_store, c);
}

/* The store's answer, once the MX-host exemption had its say. */
static void store_verdict(struct rcpt_check *c)
{
	const struct store_result *r = &c->sres;
	c->finished = true;
	if (!r->ok) {
		bool tempfail = c->cfg->store.tempfail;
		log_decision(c, tempfail ? DA_TEMPFAIL : DA_PASS, WHY_STORE_FAILURE, NULL, r->error);
		c->v.rule = WHY_STORE_FAILURE;
		c->v.action = tempfail ? RCPT_DEFER : RCPT_ACCEPT;
		if (tempfail)
			snprintf(c->v.reply, sizeof c->v.reply,
				 "451 4.3.0 <%s>: Temporary lookup failure, try again later", c->rcpt);
	} else if (r->d.action == GL_PASS) {
		c->v.action = RCPT_ACCEPT;
		c->v.rule = why_of_gl(r->d.reason);
		log_decision(c, DA_PASS, c->v.rule, &r->d, NULL);
	} else {
		c->v.action = RCPT_DEFER;
		c->v.rule = WHY_GREYLIST;
		log_decision(c, DA_GREYLIST, why_of_gl(r->d.reason), &r->d, NULL);
		greylist_reply(c, r->d.delay_left);
	}
}

/*
 * The domain's own MX hosts hand over mail they already greylisted: they
 * pass whatever the store says. Asked only for a refusal, so that a
 * decision that passes anyway never waits for DNS. (A refused triplet of
 * an MX host is in the store by now; it is never used, and expires.)
 */
static void step_store_done(struct rcpt_check *c)
{
	const struct store_result *r = &c->sres;
	if (c->store_started > 0)
		metrics_observe(H_STORE, metrics_now() - c->store_started);
	if (!r->ok)
		metrics_add(M_STORE_ERRORS, 1);
	bool refusal = r->ok ? r->d.action != GL_PASS : c->cfg->store.tempfail;
	c->step = ST_MX_HOST;
	if (refusal && !c->mx_known && c->rdomain[0] && c->rdomain[0] != '[') {
		c->mx_known = true;
		c->pending++;
		c->mxr = mxset_resolve(c->rdomain, on_rcpt_mx, c);
	}
}

static void step_mx_host(struct rcpt_check *c)
{
	if (c->mx_known && mxset_has_address(&c->mx, &c->client))
		accept_with(c, WHY_MX_HOST);
	else
		store_verdict(c);
}

/* ---- the loop ---- */

static void release(struct rcpt_check *c)
{
	event_del(&c->wake);
	gg_config_unref(c->cfg);
	free(c);
}

static void run(struct rcpt_check *c)
{
	while (c->pending == 0 && !c->finished) {
		switch (c->step) {
		case ST_CLIENT:
			if (netlist_match(&c->cfg->mynetworks, &c->client)) {
				/* Trusted: every check below is skipped, relaying included. */
				accept_with(c, WHY_MYNETWORKS);
				break;
			}
			if (netlist_match(&c->cfg->whitelist.clients, &c->client))
				c->wl_client = WHY_WHITELIST_CLIENT;
			c->step = ST_CLIENT_NAME;
			break;
		case ST_CLIENT_NAME:
			c->step = ST_SENDER;
			if (c->wl_client == WHY_NONE && c->cfg->client_names.names.n) {
				c->pending++;
				c->fcr = fcrdns_verify(&c->client, &c->cfg->client_names, on_client_name, c);
			}
			break;
		case ST_SENDER:
			step_sender(c);
			break;
		case ST_SENDER_MX:
			step_sender_mx(c);
			break;
		case ST_SENDER_ADDR:
			step_sender_addr(c);
			break;
		case ST_RCPT:
			c->step = ST_RELAY;
			if (c->cfg->reject_non_fqdn_recipient && !is_fqdn(c->rdomain))
				decide(c, RCPT_REJECT, WHY_REJECT_NON_FQDN_RECIPIENT,
				       "504 5.5.2 <%s>: Recipient address rejected: need fully-qualified address%s",
				       c->rcpt, NULL);
			break;
		case ST_RELAY:
			step_relay(c);
			break;
		case ST_RELAY_MX:
			step_relay_mx(c);
			break;
		case ST_EXEMPT:
			step_exempt(c);
			break;
		case ST_STORE:
			step_store(c);
			break;
		case ST_STORE_DONE:
			step_store_done(c);
			break;
		case ST_MX_HOST:
			step_mx_host(c);
			break;
		}
	}
	if (!c->finished)
		return;
	rcpt_done_fn done = c->done;
	void *arg = c->arg;
	struct rcpt_verdict v = c->v;
	metrics_observe(H_DECISION, metrics_now() - c->started);
	release(c);
	done(arg, &v);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	run(arg);
}

struct rcpt_check *rcpt_check_start(const struct rcpt_query *q, rcpt_done_fn done, void *arg)
{
	struct rcpt_check *c = xcalloc(1, sizeof *c);
	c->done = done;
	c->arg = arg;
	c->cfg = gg_config_ref(q->cfg);
	event_assign(&c->wake, srv.base, -1, 0, on_wake, c);
	c->client = *q->client;
	snprintf(c->client_str, sizeof c->client_str, "%s", q->client_str);
	snprintf(c->helo, sizeof c->helo, "%s", q->helo ? q->helo : "");
	snprintf(c->tls, sizeof c->tls, "%s", q->tls ? q->tls : "");
	snprintf(c->sender, sizeof c->sender, "%s", q->sender);
	snprintf(c->rcpt, sizeof c->rcpt, "%.*s", (int)q->rcpt->addr_len, q->rcpt->addr);
	const char *at = strrchr(c->sender, '@');
	c->sdomain = at ? at + 1 : "";
	size_t dlen;
	smtp_path_domain(q->rcpt, &dlen);
	c->rdomain = dlen ? c->rcpt + (q->rcpt->addr_len - dlen) : "";
	c->step = ST_CLIENT;
	c->started = metrics_now();
	c->v.action = RCPT_ACCEPT;
	c->v.rule = WHY_NONE;
	event_active(&c->wake, EV_TIMEOUT, 0);
	return c;
}

void rcpt_check_cancel(struct rcpt_check *c)
{
	if (!c)
		return;
	resolver_cancel(c->dq[0]);
	resolver_cancel(c->dq[1]);
	mxset_cancel(c->mxr);
	fcrdns_cancel(c->fcr);
	store_cancel(c->sreq);
	release(c);
}
