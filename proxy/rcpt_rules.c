/*
 * The RCPT rule table, the driver that walks it (rcpt_rules.h) and the rows
 * that check addresses, the sender's domain, relaying and the whitelists;
 * the class and greylist rows are in rcpt_greylist.c. A rule is
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
#include "rcpt_rules_priv.h"
#include "sender_norm.h"
#include "xalloc.h"

struct rule {
	enum why name;                   /* the rule's name: log and metrics */
	enum rule_result (*check)(struct rcpt_rules *c);
	bool may_reject;                 /* can answer a permanent reject */
	bool in_policy;                  /* runs for the policy service too */
};

void rr_answered(struct rcpt_rules *c)
{
	if (--c->pending == 0)
		c->env->wake(c->owner);
}

/* ---- decisions and logs ---- */

void rr_log_decision(struct rcpt_rules *c, enum decision_action action, enum why reason,
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
		/* the class and every part as the line shows them: once per
		 * decision that classes its client */
		metrics_classified(c->class, &c->score);
		char parts[300];
		score_parts_text(&c->score, parts, sizeof parts);
		ll_str(&l, "class", score_class_name(c->class));
		ll_int(&l, "score", c->score.total);
		ll_str(&l, "parts", parts);
	}
	ll_emit(&l);
}

/* FMT has two %s: the address and EXTRA (may be NULL). */
enum rule_result rr_decide(struct rcpt_rules *c, enum rcpt_action action, enum why rule,
			       const char *fmt, const char *addr, const char *extra)
{
	c->out.action = action;
	c->out.rule = rule;
	c->out.reply[0] = 0;
	if (fmt)
		snprintf(c->out.reply, sizeof c->out.reply, fmt, addr, extra ? extra : "");
	return RULE_DECIDED;
}

enum rule_result rr_permit_logged(struct rcpt_rules *c, enum why reason)
{
	rr_log_decision(c, DA_PASS, reason, NULL, NULL);
	return rr_decide(c, RCPT_ACCEPT, reason, NULL, NULL, NULL);
}

/* ---- answers ---- */

/* The client's name, its score or the SPF outcome is known. */
void rr_on_fact(void *arg)
{
	rr_answered(arg);
}

static void on_dns(void *arg, const struct dns_answer *a)
{
	struct rcpt_rules *c = arg;
	int w = a->type == DNS_T_AAAA ? 1 : 0;
	c->dq[w] = NULL;
	c->dns_status[w] = a->status;
	if (a->type == DNS_T_MX)
		c->sender_null_mx = dns_null_mx(a);
	rr_answered(c);
}

static void on_rcpt_mx(void *arg, const struct mxset *m)
{
	struct rcpt_rules *c = arg;
	c->mxr = NULL;
	c->mx = *m;
	c->mx_known = true;
	rr_answered(c);
}

static void lookup(struct rcpt_rules *c, int slot, const char *name, uint16_t type)
{
	c->pending++;
	c->dq[slot] = c->env->lookup(name, type, on_dns, c);
}

void rr_resolve_rcpt_mx(struct rcpt_rules *c)
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
			if (!c->env->client_name(c->facts, &c->fwait, rr_on_fact, c)) {
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
		return rr_permit_logged(c, WHY_MYNETWORKS);
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
	return rr_decide(c, RCPT_REJECT, WHY_REJECT_NON_FQDN_SENDER,
		      "504 5.5.2 <%s>: Sender address rejected: need fully-qualified address%s",
		      c->sender, NULL);
}

static enum rule_result sender_unknown(struct rcpt_rules *c, bool temporary)
{
	if (temporary)
		return rr_decide(c, RCPT_DEFER, WHY_REJECT_UNKNOWN_SENDER_DOMAIN,
			      "450 4.1.8 <%s>: Sender address rejected: Domain not found%s", c->sender,
			      " (temporary DNS failure)");
	return rr_decide(c, RCPT_REJECT, WHY_REJECT_UNKNOWN_SENDER_DOMAIN,
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
				return rr_decide(c, RCPT_REJECT, WHY_REJECT_UNKNOWN_SENDER_DOMAIN,
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
	return rr_decide(c, RCPT_REJECT, WHY_REJECT_NON_FQDN_RECIPIENT,
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
			rr_resolve_rcpt_mx(c);
			return RULE_WAIT;
		}
		return rr_decide(c, RCPT_REJECT, WHY_RELAY_DENIED, "554 5.7.1 <%s>: Relay access denied%s",
			      c->rcpt, NULL);
	}
	if (c->mx.tempfail)
		return rr_decide(c, RCPT_DEFER, WHY_PERMIT_MX_BACKUP,
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
		return rr_decide(c, RCPT_REJECT, WHY_RELAY_DENIED, "554 5.7.1 <%s>: Relay access denied%s",
			      c->rcpt, NULL);
	return RULE_NEXT;
}

/* Not logged: with greylisting off there is no decision to speak of. */
static enum rule_result rule_greylist_disabled(struct rcpt_rules *c)
{
	if (c->cfg->greylist.enabled)
		return RULE_NEXT;
	return rr_decide(c, RCPT_ACCEPT, WHY_GREYLIST_DISABLED, NULL, NULL, NULL);
}

static enum rule_result rule_whitelist_client(struct rcpt_rules *c)
{
	bool listed;
	if (client_listed(c, &listed) == RULE_WAIT)
		return RULE_WAIT;
	return listed ? rr_permit_logged(c, c->wl_client) : RULE_NEXT;
}

static enum rule_result rule_whitelist_sender(struct rcpt_rules *c)
{
	if (addrlist_match(&c->cfg->whitelist.senders, c->sender, strlen(c->sender)))
		return rr_permit_logged(c, WHY_WHITELIST_SENDER);
	return RULE_NEXT;
}

static enum rule_result rule_whitelist_rcpt(struct rcpt_rules *c)
{
	if (addrlist_match(&c->cfg->whitelist.recipients, c->rcpt, strlen(c->rcpt)))
		return rr_permit_logged(c, WHY_WHITELIST_RECIPIENT);
	return RULE_NEXT;
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
	{ WHY_SPAMTRAP, rcpt_rule_spamtrap, true, false },
	{ WHY_HOSTILE, rcpt_rule_class, true, true },    /* and trusted, suspicious */
	{ WHY_GREYLIST, rcpt_rule_greylist, false, true },
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
