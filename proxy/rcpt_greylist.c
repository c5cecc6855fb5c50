/*
 * The RCPT rows that decide by greylisting (rcpt_rules.h has the table):
 * the client's class from its score (selective greylisting) and the
 * greylist row itself: the key (pool_key.h), the store's decision, the
 * MX-host exemption and the reply.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addrlist.h"
#include "log.h"
#include "pool_key.h"
#include "rcpt_rules_priv.h"
#include "sender_norm.h"

static void on_store(void *arg, const struct store_result *r)
{
	struct rcpt_rules *c = arg;
	c->sreq = NULL;
	c->sres = *r;
	if (!r->ok) {
		snprintf(c->sres_error, sizeof c->sres_error, "%s", r->error ? r->error : "?");
		c->sres.error = c->sres_error;
	}
	rr_answered(c);
}

enum score_class rcpt_class_of(const struct gg_config *cfg, const struct score *base,
			       const char *helo, enum spf_result spf, struct score *out)
{
	*out = *base;
	if (helo && helo[0] && helo_is_bad(helo, cfg->myhostname, &cfg->my_addresses))
		score_add(out, SIG_BAD_HELO, NULL, cfg->scoring.weights[SIG_BAD_HELO]);
	if (spf == SPF_FAIL || spf == SPF_SOFTFAIL) {
		enum signal sig = spf == SPF_FAIL ? SIG_SPF_FAIL : SIG_SPF_SOFTFAIL;
		score_add(out, sig, NULL, cfg->scoring.weights[sig]);
	}
	return score_class_of(&cfg->scoring.classes, out);
}

/* The connection's score (its lookups started at connect) plus this
 * session's HELO and the transaction's SPF fail or softfail
 * (rcpt_class_of), and the spamtrap part when TRAPPED (this recipient is
 * one), and its class, into c->score and c->class: RULE_WAIT until all of
 * it is known. */
static enum rule_result scored(struct rcpt_rules *c, bool trapped)
{
	const struct gg_config *cfg = c->cfg;
	if (c->scored)
		return RULE_NEXT;
	const struct score *s = c->env->client_score(c->facts, &c->swait, rr_on_fact, c);
	if (!s) {
		c->pending++;
		return RULE_WAIT;
	}
	/* the transaction's SPF outcome, started at MAIL FROM */
	if (c->spf && !c->env->spf_known(c->spf, &c->spfwait, rr_on_fact, c)) {
		c->pending++;
		return RULE_WAIT;
	}
	c->class = rcpt_class_of(cfg, s, c->helo, c->spf ? spf_txn_result(c->spf) : SPF_NONE,
				 &c->score);
	if (trapped) {
		score_add(&c->score, SIG_SPAMTRAP, NULL, 0);
		c->class = score_class_of(&cfg->scoring.classes, &c->score);
	}
	/* counted with the decision line (rr_log_decision), which may show a
	 * backup_first part the store adds */
	c->scored = true;
	return RULE_NEXT;
}

/* A hostile client's refusal (scoring.hostile.action), for REASON; in
 * shadow mode logged as would-reject and accepted. */
static enum rule_result hostile(struct rcpt_rules *c, enum why reason, const char *what)
{
	const struct gg_config *cfg = c->cfg;
	if (cfg->greylist.shadow) {
		rr_log_decision(c, DA_WOULD_REJECT, reason, NULL, NULL);
		return rr_decide(c, RCPT_ACCEPT, reason, NULL, NULL, NULL);
	}
	bool tempfail = cfg->scoring.hostile_tempfail;
	char why[80];
	snprintf(why, sizeof why, "%s%s", what, tempfail ? ", try again later" : "");
	rr_log_decision(c, tempfail ? DA_TEMPFAIL : DA_REJECT, reason, NULL, NULL);
	return rr_decide(c, tempfail ? RCPT_DEFER : RCPT_REJECT, reason,
		      tempfail ? "450 4.7.1 <%s>: Recipient address rejected: %s"
			       : "550 5.7.1 <%s>: Recipient address rejected: %s", c->rcpt, why);
}

/*
 * A spamtrap (with scoring on): the client's network is marked trapped in
 * the store, for every MX host sharing it (client_score_trap; the store
 * is not waited for), this connection's score gets the spamtrap part, so
 * its later recipients are hostile too, and the recipient is refused as a
 * hostile client's. Waits for the score first, so that the decision line
 * shows it.
 */
enum rule_result rcpt_rule_spamtrap(struct rcpt_rules *c)
{
	const struct gg_config *cfg = c->cfg;
	if (!cfg->scoring.enabled || !cfg->spamtraps.n ||
	    !addrlist_match(&cfg->spamtraps, c->rcpt, strlen(c->rcpt)))
		return RULE_NEXT;
	if (scored(c, true) == RULE_WAIT)
		return RULE_WAIT;
	c->env->trap(c->cfg, c->facts);
	return hostile(c, WHY_SPAMTRAP, "spamtrap");
}

/* The class row's refusal of a hostile client. */
static enum rule_result class_hostile(struct rcpt_rules *c)
{
	char what[64];
	if (c->score.trapped)
		snprintf(what, sizeof what, "client caught at a spamtrap");
	else
		snprintf(what, sizeof what, "client classed hostile (score %d)", c->score.total);
	return hostile(c, WHY_HOSTILE, what);
}

/*
 * Selective greylisting: the client's class from its score (WAIT until
 * it is known). Trusted passes greylisting (the relay rules ran already:
 * they come first); hostile is refused and never stored; suspicious and
 * normal go on to the greylist row, which applies the class's delay.
 * After a deferral only hostile can change the answer. The class and
 * every signal in the score are counted once per decision, with its line
 * (rr_log_decision), or here when no line follows.
 */
enum rule_result rcpt_rule_class(struct rcpt_rules *c)
{
	if (!c->cfg->scoring.enabled)
		return RULE_NEXT;
	if (scored(c, false) == RULE_WAIT)
		return RULE_WAIT;
	if (c->class == CLASS_TRUSTED && !c->deferred)
		return rr_permit_logged(c, WHY_TRUSTED);
	if (c->class == CLASS_HOSTILE)
		return class_hostile(c);
	/* deferred already, the greylist row does not run: no decision line
	 * counts the class */
	if (c->deferred)
		metrics_classified(c->class, &c->score);
	return RULE_NEXT;
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

/* The class of the client's score with the backup_first part added, the
 * score into *OUT. */
static enum score_class flagged_class(const struct rcpt_rules *c, struct score *out)
{
	*out = c->score;
	score_add(out, SIG_BACKUP_FIRST, NULL, c->cfg->scoring.weights[SIG_BACKUP_FIRST]);
	return score_class_of(&c->cfg->scoring.classes, out);
}

/*
 * The store's parameters for a classed client. backup_first (README.md,
 * "Spamtraps and backup_first"): a triplet stored as new here, on a
 * backup MX of the recipient's domain whose primary answers (the
 * hand-over probe says so), is flagged in the store: its sender skipped
 * the primary. The flag is the triplet's alone, not its network's. Its
 * later decisions, on any MX host sharing the store, carry the
 * backup_first part: the store decides a flagged pending triplet by the
 * class the score has with the part (gg_config_gl_params_flagged; a
 * trusted one, with a negative weight, is decided as normal: the class
 * row's pass comes before any store). The store is one atomic step, so
 * both outcomes go in the parameters. A primary whose state is not known
 * flags nothing.
 */
static struct gl_params classed_params(struct rcpt_rules *c)
{
	const struct gg_config *cfg = c->cfg;
	struct score s;
	struct gl_params p = gg_config_gl_params_flagged(cfg, c->class, flagged_class(c, &s));
	/* what the network had pending before a spamtrap caught it starts
	 * over */
	p.void_before = c->env->trapped_at(c->facts);
	p.set_backup_first = cfg->scoring.weights[SIG_BACKUP_FIRST] != 0 && c->rdomain[0] &&
			     c->env->primary_up(c->rdomain);
	return p;
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
		    !c->env->spf_known(c->spf, &c->spfwait, rr_on_fact, c)) {
			c->pending++;
			return RULE_WAIT;
		}
		if (pf.order[i] == POOL_PTR && c->facts &&
		    !c->env->client_name(c->facts, &c->fwait, rr_on_fact, c)) {
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
	struct gl_params p = c->scored ? classed_params(c) : gg_config_gl_params(cfg);
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
		rr_log_decision(c, tempfail ? DA_TEMPFAIL : DA_PASS, WHY_STORE_FAILURE, NULL, r->error);
		if (!tempfail)
			return rr_decide(c, RCPT_ACCEPT, WHY_STORE_FAILURE, NULL, NULL, NULL);
		return rr_decide(c, RCPT_DEFER, WHY_STORE_FAILURE,
			      "451 4.3.0 <%s>: Temporary lookup failure, try again later%s", c->rcpt,
			      NULL);
	}
	if (r->d.action == GL_REFUSE)
		return class_hostile(c);
	bool shadow = c->cfg->greylist.shadow;
	metrics_decision_key(c->key_kind, r->d.action == GL_PASS ? DA_PASS
					  : shadow ? DA_WOULD_GREYLIST : DA_GREYLIST);
	if (r->d.action == GL_PASS) {
		rr_log_decision(c, DA_PASS, why_of_gl(r->d.reason), &r->d, NULL);
		rr_decide(c, RCPT_ACCEPT, why_of_gl(r->d.reason), NULL, NULL, NULL);
		c->out.first_pass = r->d.first_pass;
		c->out.waited = r->d.first_pass ? r->d.waited : 0;
		return RULE_DECIDED;
	}
	if (shadow) {
		rr_log_decision(c, DA_WOULD_GREYLIST, why_of_gl(r->d.reason), &r->d, NULL);
		return rr_decide(c, RCPT_ACCEPT, why_of_gl(r->d.reason), NULL, NULL, NULL);
	}
	rr_log_decision(c, DA_GREYLIST, why_of_gl(r->d.reason), &r->d, NULL);
	rr_decide(c, RCPT_DEFER, WHY_GREYLIST, NULL, NULL, NULL);
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
enum rule_result rcpt_rule_greylist(struct rcpt_rules *c)
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
		/* a flagged triplet: its decision and its line carry the part */
		if (r->ok && r->d.backup_first && c->scored &&
		    c->cfg->scoring.weights[SIG_BACKUP_FIRST] != 0)
			c->class = flagged_class(c, &c->score);
		bool refusal = r->ok ? r->d.action != GL_PASS : c->cfg->store.tempfail;
		c->phase = 2;
		if (refusal && c->rdomain[0] && c->rdomain[0] != '[' && !c->mx_known) {
			c->mx_known = true;
			rr_resolve_rcpt_mx(c);
			return RULE_WAIT;
		}
		break;
	}
	default:
		break;
	}
	if (c->mx_known && client_is_mx_host(c, &c->mx))
		return rr_permit_logged(c, WHY_MX_HOST);
	return greylist_verdict(c);
}
