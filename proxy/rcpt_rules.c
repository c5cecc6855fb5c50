/*
 * The RCPT rules and the driver that walks them (rcpt_rules.h). A rule is
 * a function of the check's state; one that waits sets its own phase and
 * runs again, from the top of the same row, once its lookups answered.
 *
 * What needs no DNS is decided first: the MX-host exemption, the one
 * lookup most decisions would otherwise wait for, is asked only when the
 * store's answer would refuse the recipient, so a resolver that does not
 * answer delays only those, and greylisting goes on.
 */
#include "rcpt_rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "pool_key.h"
#include "score.h"
#include "sender_norm.h"
#include "triplet.h"
#include "xalloc.h"

enum rule_result {
	RULE_NEXT,      /* no opinion: the next row */
	RULE_WAIT,      /* lookups started: this row again once they answered */
	RULE_DECIDED,   /* c->out holds a permit, a reject or a defer */
};

struct rcpt_rules {
	const struct rcpt_env *env;
	void *owner;
	struct gg_config *cfg;
	size_t row;
	int phase;                       /* the current row's own progress */
	int pending;                     /* answers still to come */
	struct rcpt_verdict out;         /* a rule's decision */
	bool deferred;
	struct rcpt_verdict deferral;    /* the first deferral, remembered */
	bool policy;                     /* only the rows in_policy */

	struct ipaddr client;
	char client_str[48];
	char helo[256];
	char tls[16];
	char sender[SMTP_PATH_MAX + 1];
	char rcpt[SMTP_PATH_MAX + 1];
	const char *sdomain, *rdomain;   /* into sender / rcpt; "" when none */

	/* Whether the client is whitelisted (by address, or by name through
	 * FCrDNS): asked by the rules that skip whitelisted clients, once. */
	bool listed;
	enum why wl_client;              /* why the client is whitelisted, or WHY_NONE */
	char client_name[DNS_NAME_MAX];

	struct dns_query *dq[2];
	enum dns_status dns_status[2];
	bool sender_null_mx;
	struct mxset_req *mxr;
	struct mxset mx;                 /* the recipient domain's MX hosts */
	bool mx_known;
	struct client_facts *facts;
	struct client_facts_wait fwait;
	struct store_call *sreq;
	struct store_result sres;
	char sres_error[160];
	struct triplet t;
	enum pool_kind key_kind;         /* of t, once computed */
	struct spf_txn *spf;             /* the transaction's; NULL: not checked */
	struct spf_txn_wait spfwait;
	double store_started;

	/* Selective greylisting: the connection's score with this session's
	 * HELO added, and its class, once the class row has run. */
	bool scored;
	struct score score;
	enum score_class class;
	struct client_facts_wait swait;
};

struct rule {
	enum why name;                   /* the rule's name: log and metrics */
	enum rule_result (*check)(struct rcpt_rules *c);
	bool may_reject;                 /* can answer a permanent reject */
	bool in_policy;                  /* runs for the policy service too */
};

static void answered(struct rcpt_rules *c)
{
	if (--c->pending == 0)
		c->env->wake(c->owner);
}

/* ---- decisions and logs ---- */

static void log_decision(struct rcpt_rules *c, enum decision_action action, enum why reason,
			 const struct gl_decision *d, const char *error)
{
	metrics_decision(action, reason);
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "decision");
	ll_str(&l, "action", metrics_action_name(action));
	ll_str(&l, "reason", why_name(reason));
	ll_str(&l, "client", c->client_str);
	if (c->t.net[0]) {
		ll_str(&l, "net", c->t.net);
		char key[POOL_TEXT_MAX + 4];
		snprintf(key, sizeof key, "%s%s", c->t.pool[0] ? "" : "net:", triplet_keytext(&c->t));
		ll_str(&l, "key", key);
	}
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
	if (c->scored) {
		char parts[300];
		score_parts_text(&c->score, parts, sizeof parts);
		ll_str(&l, "class", score_class_name(c->class));
		ll_int(&l, "score", c->score.total);
		ll_str(&l, "parts", parts);
	}
	ll_emit(&l);
}

/* FMT has two %s: the address and EXTRA (may be NULL). */
static enum rule_result decide(struct rcpt_rules *c, enum rcpt_action action, enum why rule,
			       const char *fmt, const char *addr, const char *extra)
{
	c->out.action = action;
	c->out.rule = rule;
	c->out.reply[0] = 0;
	if (fmt)
		snprintf(c->out.reply, sizeof c->out.reply, fmt, addr, extra ? extra : "");
	return RULE_DECIDED;
}

static enum rule_result permit_logged(struct rcpt_rules *c, enum why reason)
{
	log_decision(c, DA_PASS, reason, NULL, NULL);
	return decide(c, RCPT_ACCEPT, reason, NULL, NULL, NULL);
}

/* ---- answers ---- */

/* The client's name, its score or the SPF outcome is known. */
static void on_fact(void *arg)
{
	answered(arg);
}

static void on_dns(void *arg, const struct dns_answer *a)
{
	struct rcpt_rules *c = arg;
	int w = a->type == DNS_T_AAAA ? 1 : 0;
	c->dq[w] = NULL;
	c->dns_status[w] = a->status;
	if (a->type == DNS_T_MX)
		c->sender_null_mx = dns_null_mx(a);
	answered(c);
}

static void on_rcpt_mx(void *arg, const struct mxset *m)
{
	struct rcpt_rules *c = arg;
	c->mxr = NULL;
	c->mx = *m;
	c->mx_known = true;
	answered(c);
}

static void on_store(void *arg, const struct store_result *r)
{
	struct rcpt_rules *c = arg;
	c->sreq = NULL;
	c->sres = *r;
	if (!r->ok) {
		snprintf(c->sres_error, sizeof c->sres_error, "%s", r->error ? r->error : "?");
		c->sres.error = c->sres_error;
	}
	answered(c);
}

static void lookup(struct rcpt_rules *c, int slot, const char *name, uint16_t type)
{
	c->pending++;
	c->dq[slot] = c->env->lookup(name, type, on_dns, c);
}

static void resolve_rcpt_mx(struct rcpt_rules *c)
{
	c->pending++;
	c->mxr = c->env->mx(c->rdomain, on_rcpt_mx, c);
}

/* Whether the client is whitelisted: by address, else (with
 * whitelist.client_names) by its forward-confirmed name. RULE_WAIT while
 * the name is being looked up; *LISTED set otherwise. */
static enum rule_result client_listed(struct rcpt_rules *c, bool *listed)
{
	const struct gg_config *cfg = c->cfg;
	if (!c->listed) {
		if (netlist_match(&cfg->whitelist.clients, &c->client)) {
			c->wl_client = WHY_WHITELIST_CLIENT;
		} else if (cfg->client_names.names.n) {
			if (!c->env->client_name(c->facts, &c->fwait, on_fact, c)) {
				c->pending++;
				return RULE_WAIT;
			}
			if (c->facts->listed) {
				c->wl_client = WHY_WHITELIST_CLIENT_NAME;
				snprintf(c->client_name, sizeof c->client_name, "%s", c->facts->listed);
			}
		}
		c->listed = true;
	}
	*listed = c->wl_client != WHY_NONE;
	return RULE_NEXT;
}

/* For a rule that spares whitelisted clients, asked once it would apply
 * (so that a rule with nothing to say never waits for the client's name):
 * true when it must return *RES instead, RULE_WAIT while the name is
 * looked up or RULE_NEXT for a whitelisted client. */
static bool spared(struct rcpt_rules *c, enum rule_result *res)
{
	bool listed;
	*res = client_listed(c, &listed);
	return *res == RULE_WAIT || listed;
}

/* ---- the rules ---- */

/* Trusted: every check below is skipped, relaying included. */
static enum rule_result rule_mynetworks(struct rcpt_rules *c)
{
	if (netlist_match(&c->cfg->mynetworks, &c->client))
		return permit_logged(c, WHY_MYNETWORKS);
	return RULE_NEXT;
}

static bool is_fqdn(const char *domain)
{
	return domain[0] == '[' || (strchr(domain, '.') && domain[strlen(domain) - 1] != '.');
}

static enum rule_result rule_non_fqdn_sender(struct rcpt_rules *c)
{
	if (!c->cfg->reject_non_fqdn_sender || !c->sender[0] || is_fqdn(c->sdomain))
		return RULE_NEXT;
	enum rule_result res;
	if (spared(c, &res))
		return res;
	return decide(c, RCPT_REJECT, WHY_REJECT_NON_FQDN_SENDER,
		      "504 5.5.2 <%s>: Sender address rejected: need fully-qualified address%s",
		      c->sender, NULL);
}

static enum rule_result sender_unknown(struct rcpt_rules *c, bool temporary)
{
	if (temporary)
		return decide(c, RCPT_DEFER, WHY_REJECT_UNKNOWN_SENDER_DOMAIN,
			      "450 4.1.8 <%s>: Sender address rejected: Domain not found%s", c->sender,
			      " (temporary DNS failure)");
	return decide(c, RCPT_REJECT, WHY_REJECT_UNKNOWN_SENDER_DOMAIN,
		      "550 5.1.8 <%s>: Sender address rejected: Domain not found%s", c->sender, NULL);
}

/* Phases: 0 ask MX; 1 the MX answer (no MX: ask A and AAAA); 2 those. */
static enum rule_result rule_unknown_sender(struct rcpt_rules *c)
{
	switch (c->phase) {
	case 0: {
		if (!c->cfg->reject_unknown_sender_domain || !c->sdomain[0] || c->sdomain[0] == '[')
			return RULE_NEXT;
		enum rule_result res;
		if (spared(c, &res))
			return res;
		c->phase = 1;
		lookup(c, 0, c->sdomain, DNS_T_MX);
		return RULE_WAIT;
	}
	case 1:
		switch (c->dns_status[0]) {
		case DNS_OK:
			if (c->sender_null_mx)
				return decide(c, RCPT_REJECT, WHY_REJECT_UNKNOWN_SENDER_DOMAIN,
					      "550 5.7.27 <%s>: Sender address rejected: Domain %s does not accept mail (null MX)",
					      c->sender, c->sdomain);
			return RULE_NEXT;
		case DNS_TEMPFAIL:
			return sender_unknown(c, true);
		case DNS_NXDOMAIN:
			return sender_unknown(c, false);
		case DNS_NODATA:
			/* No MX: mail goes to the domain's own address (RFC 5321 5.1). */
			c->phase = 2;
			lookup(c, 0, c->sdomain, DNS_T_A);
			lookup(c, 1, c->sdomain, DNS_T_AAAA);
			return RULE_WAIT;
		}
		return RULE_NEXT;
	default:
		if (c->dns_status[0] != DNS_OK && c->dns_status[1] != DNS_OK)
			return sender_unknown(c, c->dns_status[0] == DNS_TEMPFAIL ||
						 c->dns_status[1] == DNS_TEMPFAIL);
		return RULE_NEXT;
	}
}

static enum rule_result rule_non_fqdn_rcpt(struct rcpt_rules *c)
{
	if (!c->cfg->reject_non_fqdn_recipient || is_fqdn(c->rdomain))
		return RULE_NEXT;
	return decide(c, RCPT_REJECT, WHY_REJECT_NON_FQDN_RECIPIENT,
		      "504 5.5.2 <%s>: Recipient address rejected: need fully-qualified address%s",
		      c->rcpt, NULL);
}

/* Postfix's permit_mx_backup: authorised when this host is one of the
 * lower-preference MX hosts of the domain and not a primary; with
 * permit_mx_backup_networks, only if every address of every primary lies
 * in them. NULL when authorised, else why not. */
static const char *mx_backup_refusal(const struct gg_config *cfg, const struct mxset *m)
{
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
	if (m->status != DNS_OK || m->null_mx || m->n == 0)
		return "no MX";
	if (me_primary)
		return "this host is a primary MX";
	if (!me_backup)
		return "this host is not an MX";
	if (cfg->permit_mx_backup_networks.n && !primaries_inside)
		return "a primary MX lies outside permit_mx_backup_networks";
	return NULL;
}

/* Relay authorisation: local_domains, relay_domains, then
 * permit_mx_backup (phase 1: the MX hosts' answer). A temporary failure
 * of the MX lookup defers under permit_mx_backup's name: whether this
 * host may relay is not known. */
static enum rule_result rule_relay(struct rcpt_rules *c)
{
	const struct gg_config *cfg = c->cfg;
	size_t dlen = strlen(c->rdomain);
	if (c->phase == 0) {
		if (dlen && domainlist_match(&cfg->local_domains, c->rdomain, dlen))
			return RULE_NEXT;
		if (dlen && domainlist_match(&cfg->relay_domains, c->rdomain, dlen))
			return RULE_NEXT;
		if (cfg->permit_mx_backup && dlen && c->rdomain[0] != '[') {
			c->phase = 1;
			resolve_rcpt_mx(c);
			return RULE_WAIT;
		}
		return decide(c, RCPT_REJECT, WHY_RELAY_DENIED, "554 5.7.1 <%s>: Relay access denied%s",
			      c->rcpt, NULL);
	}
	if (c->mx.tempfail)
		return decide(c, RCPT_DEFER, WHY_PERMIT_MX_BACKUP,
			      "450 4.4.4 <%s>: Recipient address rejected: %s", c->rcpt,
			      "temporary DNS failure checking relay access");
	const char *why = mx_backup_refusal(cfg, &c->mx);
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
		return decide(c, RCPT_REJECT, WHY_RELAY_DENIED, "554 5.7.1 <%s>: Relay access denied%s",
			      c->rcpt, NULL);
	return RULE_NEXT;
}

/* Not logged: with greylisting off there is no decision to speak of. */
static enum rule_result rule_greylist_disabled(struct rcpt_rules *c)
{
	if (c->cfg->greylist.enabled)
		return RULE_NEXT;
	return decide(c, RCPT_ACCEPT, WHY_GREYLIST_DISABLED, NULL, NULL, NULL);
}

static enum rule_result rule_whitelist_client(struct rcpt_rules *c)
{
	bool listed;
	if (client_listed(c, &listed) == RULE_WAIT)
		return RULE_WAIT;
	return listed ? permit_logged(c, c->wl_client) : RULE_NEXT;
}

static enum rule_result rule_whitelist_sender(struct rcpt_rules *c)
{
	if (addrlist_match(&c->cfg->whitelist.senders, c->sender, strlen(c->sender)))
		return permit_logged(c, WHY_WHITELIST_SENDER);
	return RULE_NEXT;
}

static enum rule_result rule_whitelist_rcpt(struct rcpt_rules *c)
{
	if (addrlist_match(&c->cfg->whitelist.recipients, c->rcpt, strlen(c->rcpt)))
		return permit_logged(c, WHY_WHITELIST_RECIPIENT);
	return RULE_NEXT;
}

/*
 * Selective greylisting: the connection's score (its lookups started at
 * connect; WAIT until they answered) plus this session's HELO and the
 * transaction's SPF fail or softfail (WAIT for it too) gives the class. Trusted passes greylisting (the relay rules ran already: they
 * come first); hostile is refused and never stored; suspicious and normal
 * go on to the greylist row, which applies the class's delay. After a
 * deferral only hostile can change the answer.
 */
static enum rule_result rule_class(struct rcpt_rules *c)
{
	const struct gg_config *cfg = c->cfg;
	if (!cfg->scoring.enabled)
		return RULE_NEXT;
	if (!c->scored) {
		const struct score *s = c->env->client_score(c->facts, &c->swait, on_fact, c);
		if (!s) {
			c->pending++;
			return RULE_WAIT;
		}
		/* the transaction's SPF outcome, started at MAIL FROM */
		if (c->spf && !c->env->spf_known(c->spf, &c->spfwait, on_fact, c)) {
			c->pending++;
			return RULE_WAIT;
		}
		c->score = *s;
		if (c->helo[0] && helo_is_bad(c->helo, cfg->myhostname, &cfg->my_addresses))
			score_add(&c->score, SIG_BAD_HELO, NULL, cfg->scoring.weights[SIG_BAD_HELO]);
		enum spf_result spf = c->spf ? spf_txn_result(c->spf) : SPF_NONE;
		if (spf == SPF_FAIL || spf == SPF_SOFTFAIL) {
			enum signal sig = spf == SPF_FAIL ? SIG_SPF_FAIL : SIG_SPF_SOFTFAIL;
			score_add(&c->score, sig, NULL, cfg->scoring.weights[sig]);
		}
		c->class = score_classify(&cfg->scoring.classes, c->score.total);
		c->scored = true;
		metrics_class(c->class);
	}
	if (c->class == CLASS_TRUSTED && !c->deferred)
		return permit_logged(c, WHY_TRUSTED);
	if (c->class != CLASS_HOSTILE)
		return RULE_NEXT;
	if (cfg->greylist.shadow) {
		log_decision(c, DA_WOULD_REJECT, WHY_HOSTILE, NULL, NULL);
		return decide(c, RCPT_ACCEPT, WHY_HOSTILE, NULL, NULL, NULL);
	}
	bool tempfail = cfg->scoring.hostile_tempfail;
	char why[80];
	snprintf(why, sizeof why, "client classed hostile (score %d)%s", c->score.total,
		 tempfail ? ", try again later" : "");
	log_decision(c, tempfail ? DA_TEMPFAIL : DA_REJECT, WHY_HOSTILE, NULL, NULL);
	return decide(c, tempfail ? RCPT_DEFER : RCPT_REJECT, WHY_HOSTILE,
		      tempfail ? "450 4.7.1 <%s>: Recipient address rejected: %s"
			       : "550 5.7.1 <%s>: Recipient address rejected: %s", c->rcpt, why);
}

/* The configured text with the seconds left in place of its %s; "1
 * seconds" of the default text becomes "1 second". The text comes from
 * the configuration, so it is never used as a format string. */
static void greylist_reply(struct rcpt_rules *c, long long left)
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
	snprintf(c->out.reply, sizeof c->out.reply,
		 "450 4.2.0 <%s>: Recipient address rejected: %.*s%s%s", c->rcpt,
		 pct ? (int)(pct - m) : (int)strlen(m), m, pct ? secs : "", rest);
}

/* What the pool key is made of, as far as it is known now. */
static struct pool_facts pool_facts_of(const struct rcpt_rules *c)
{
	const struct gg_config *cfg = c->cfg;
	return (struct pool_facts){
		.client = &c->client,
		.spf_pass_domain = c->spf ? spf_txn_pass_domain(c->spf) : NULL,
		.client_name = c->facts ? c->facts->name : NULL,
		.words = (const char *const *)cfg->greylist.generic_name_words,
		.nwords = cfg->greylist.ngeneric_name_words,
		.order = cfg->greylist.pool_keys,
		.norder = cfg->greylist.npool_keys,
	};
}

/*
 * Waits for the facts of the pool key kinds in their configured order,
 * each only while no earlier kind gave a key: with [spf, ptr], a sender
 * SPF vouched for never waits for the client's name. RULE_WAIT while a
 * fact is being found, else RULE_NEXT (the key can be computed).
 */
static enum rule_result pool_facts_ready(struct rcpt_rules *c)
{
	struct pool_facts pf = pool_facts_of(c);
	size_t n = pf.norder;
	for (size_t i = 0; i < n; i++) {
		if (pf.order[i] == POOL_SPF && c->spf &&
		    !c->env->spf_known(c->spf, &c->spfwait, on_fact, c)) {
			c->pending++;
			return RULE_WAIT;
		}
		if (pf.order[i] == POOL_PTR && c->facts &&
		    !c->env->client_name(c->facts, &c->fwait, on_fact, c)) {
			c->pending++;
			return RULE_WAIT;
		}
		/* refreshed: the fact may have been learnt meanwhile */
		pf = pool_facts_of(c);
		pf.norder = i + 1;
		char text[POOL_TEXT_MAX];
		if (pool_key(&pf, text) != POOL_NET)
			break;
	}
	return RULE_NEXT;
}

static void greylist_ask_store(struct rcpt_rules *c)
{
	const struct gg_config *cfg = c->cfg;
	char net[NET_TEXT_MAX], sender[SMTP_PATH_MAX + 4];
	size_t slen = sender_normalise(c->sender, strlen(c->sender), &cfg->greylist.norm, sender,
				       sizeof sender);
	triplet_network(&c->client, (unsigned)cfg->greylist.ipv4_prefix,
			(unsigned)cfg->greylist.ipv6_prefix, net, sizeof net);
	char pool[POOL_TEXT_MAX];
	struct pool_facts pf = pool_facts_of(c);
	c->key_kind = pool_key(&pf, pool);
	if (triplet_make_pool(&c->t, net, pool, sender, slen, c->rcpt, strlen(c->rcpt)) < 0) {
		/* Only hashing can fail here (paths are bounded): a store failure
		 * in effect, handled by the same policy. */
		c->sres = (struct store_result){ .ok = false, .error = "cannot compute the triplet key" };
		return;
	}
	/* suspicious: a longer delay, and no auto-whitelist to count towards
	 * or pass by */
	struct gl_params p = gg_config_gl_params(cfg);
	if (c->scored && c->class == CLASS_SUSPICIOUS) {
		p.delay = cfg->scoring.suspicious_delay;
		p.awl_threshold = 0;
	}
	c->pending++;
	c->store_started = c->env->now();
	c->sreq = c->env->store(&p, &c->t, on_store, c);
}

/* The store's answer, once the MX-host exemption had its say. */
static enum rule_result greylist_verdict(struct rcpt_rules *c)
{
	const struct store_result *r = &c->sres;
	if (!r->ok) {
		bool tempfail = c->cfg->store.tempfail;
		log_decision(c, tempfail ? DA_TEMPFAIL : DA_PASS, WHY_STORE_FAILURE, NULL, r->error);
		if (!tempfail)
			return decide(c, RCPT_ACCEPT, WHY_STORE_FAILURE, NULL, NULL, NULL);
		return decide(c, RCPT_DEFER, WHY_STORE_FAILURE,
			      "451 4.3.0 <%s>: Temporary lookup failure, try again later%s", c->rcpt,
			      NULL);
	}
	metrics_decision_key(c->key_kind, r->d.action == GL_PASS ? DA_PASS : DA_GREYLIST);
	if (r->d.action == GL_PASS) {
		log_decision(c, DA_PASS, why_of_gl(r->d.reason), &r->d, NULL);
		decide(c, RCPT_ACCEPT, why_of_gl(r->d.reason), NULL, NULL, NULL);
		c->out.first_pass = r->d.first_pass;
		c->out.waited = r->d.first_pass ? r->d.waited : 0;
		return RULE_DECIDED;
	}
	if (c->cfg->greylist.shadow) {
		log_decision(c, DA_WOULD_GREYLIST, why_of_gl(r->d.reason), &r->d, NULL);
		return decide(c, RCPT_ACCEPT, why_of_gl(r->d.reason), NULL, NULL, NULL);
	}
	log_decision(c, DA_GREYLIST, why_of_gl(r->d.reason), &r->d, NULL);
	decide(c, RCPT_DEFER, WHY_GREYLIST, NULL, NULL, NULL);
	greylist_reply(c, r->d.delay_left);
	return RULE_DECIDED;
}

/* Whether the client is one of the addresses of any host in M. */
static bool client_is_mx_host(const struct rcpt_rules *c, const struct mxset *m)
{
	const struct ipaddr *a = &c->client;
	for (size_t i = 0; i < m->n; i++)
		for (size_t k = 0; k < m->host[i].naddr; k++) {
			const struct ipaddr *x = &m->host[i].addr[k];
			if (x->family == a->family &&
			    memcmp(x->b, a->b, a->family == AF_INET ? 4 : 16) == 0)
				return true;
		}
	return false;
}

/*
 * Phases: 0 ask the store; 1 its answer; 2 the MX hosts' answer. The
 * domain's own MX hosts hand over mail they already greylisted: they pass
 * whatever the store says. Asked only for a refusal, so that a decision
 * that passes anyway never waits for DNS. (A refused triplet of an MX host
 * is in the store by now; it is never used, and expires.)
 */
static enum rule_result rule_greylist(struct rcpt_rules *c)
{
	const struct store_result *r = &c->sres;
	switch (c->phase) {
	case 0:
		/* A pool key needs what vouches for the sender: its SPF check,
		 * started at MAIL FROM, or the client's name, the lookup the
		 * session started at the greeting, shared by the connection. */
		if (pool_facts_ready(c) == RULE_WAIT)
			return RULE_WAIT;
		c->phase = 1;
		greylist_ask_store(c);
		return RULE_WAIT;
	case 1: {
		if (c->store_started > 0)
			metrics_observe(H_STORE, c->env->now() - c->store_started);
		if (!r->ok)
			metrics_add(M_STORE_ERRORS, 1);
		bool refusal = r->ok ? r->d.action != GL_PASS : c->cfg->store.tempfail;
		c->phase = 2;
		if (refusal && c->rdomain[0] && c->rdomain[0] != '[' && !c->mx_known) {
			c->mx_known = true;
			resolve_rcpt_mx(c);
			return RULE_WAIT;
		}
		break;
	}
	default:
		break;
	}
	if (c->mx_known && client_is_mx_host(c, &c->mx))
		return permit_logged(c, WHY_MX_HOST);
	return greylist_verdict(c);
}

/* The policy, in order. may_reject: the rule can still change a deferral
 * into a reject, so it runs after one. in_policy: it runs when Postfix
 * asks through the policy service; behind Postfix the address syntax,
 * sender domain and relay checks are Postfix's own restrictions, which
 * smtpd_recipient_restrictions runs (or not) before it asks greygate. */
static const struct rule rules[] = {
	{ WHY_MYNETWORKS, rule_mynetworks, false, true },
	{ WHY_REJECT_NON_FQDN_SENDER, rule_non_fqdn_sender, true, false },
	{ WHY_REJECT_UNKNOWN_SENDER_DOMAIN, rule_unknown_sender, true, false },
	{ WHY_REJECT_NON_FQDN_RECIPIENT, rule_non_fqdn_rcpt, true, false },
	{ WHY_RELAY_DENIED, rule_relay, true, false },
	{ WHY_GREYLIST_DISABLED, rule_greylist_disabled, false, true },
	{ WHY_WHITELIST_CLIENT, rule_whitelist_client, false, true },
	{ WHY_WHITELIST_SENDER, rule_whitelist_sender, false, true },
	{ WHY_WHITELIST_RECIPIENT, rule_whitelist_rcpt, false, true },
	{ WHY_HOSTILE, rule_class, true, false },   /* and trusted, suspicious */
	{ WHY_GREYLIST, rule_greylist, false, true },
};
#define NRULES (sizeof rules / sizeof rules[0])

enum why rcpt_rules_row(size_t i)
{
	return i < NRULES ? rules[i].name : WHY_NONE;
}

bool rcpt_rules_row_in_policy(size_t i)
{
	return i < NRULES && rules[i].in_policy;
}

/* ---- the driver ---- */

bool rcpt_rules_run(struct rcpt_rules *c, struct rcpt_verdict *v)
{
	while (c->pending == 0) {
		if (c->row == NRULES) {
			/* Nothing decided: permitted, unless deferred. */
			if (c->deferred)
				*v = c->deferral;
			else
				*v = (struct rcpt_verdict){ .action = RCPT_ACCEPT, .rule = WHY_NONE };
			return true;
		}
		const struct rule *r = &rules[c->row];
		bool skip = (c->deferred && !r->may_reject) || (c->policy && !r->in_policy);
		enum rule_result res = skip ? RULE_NEXT : r->check(c);
		if (res == RULE_WAIT)
			continue;
		c->row++;
		c->phase = 0;
		if (res == RULE_NEXT)
			continue;
		if (c->out.action == RCPT_DEFER) {
			if (!c->deferred)
				c->deferral = c->out;
			c->deferred = true;
			continue;
		}
		/* A reject wins over a deferral; a permit does not erase it. */
		*v = c->out.action == RCPT_ACCEPT && c->deferred ? c->deferral : c->out;
		return true;
	}
	return false;
}

struct rcpt_rules *rcpt_rules_new(const struct rcpt_env *env, void *owner,
				  const struct rcpt_query *q)
{
	struct rcpt_rules *c = xcalloc(1, sizeof *c);
	c->env = env;
	c->owner = owner;
	c->cfg = gg_config_ref(q->cfg);
	c->facts = q->facts;
	c->policy = q->policy;
	c->client = *q->client;
	snprintf(c->client_str, sizeof c->client_str, "%s", q->client_str);
	snprintf(c->helo, sizeof c->helo, "%s", q->helo ? q->helo : "");
	snprintf(c->tls, sizeof c->tls, "%s", q->tls ? q->tls : "");
	snprintf(c->sender, sizeof c->sender, "%s", q->sender);
	snprintf(c->rcpt, sizeof c->rcpt, "%.*s", (int)q->rcpt->addr_len, q->rcpt->addr);
	c->spf = q->spf;
	const char *at = strrchr(c->sender, '@');
	c->sdomain = at ? at + 1 : "";
	size_t dlen;
	smtp_path_domain(q->rcpt, &dlen);
	c->rdomain = dlen ? c->rcpt + (q->rcpt->addr_len - dlen) : "";
	return c;
}

void rcpt_rules_free(struct rcpt_rules *c)
{
	if (!c)
		return;
	c->env->lookup_cancel(c->dq[0]);
	c->env->lookup_cancel(c->dq[1]);
	c->env->mx_cancel(c->mxr);
	c->env->client_name_unwait(&c->fwait);
	c->env->spf_unwait(&c->spfwait);
	c->env->client_name_unwait(&c->swait);
	c->env->store_cancel(c->sreq);
	gg_config_unref(c->cfg);
	free(c);
}
