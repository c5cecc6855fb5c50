#include "client_score.h"

#include <stdlib.h>

#include "dnsbl_site.h"
#include "generic_name.h"
#include "log.h"
#include "resolver.h"
#include "store.h"
#include "xalloc.h"

struct site_query {
	struct client_score *cs;
	size_t site;                     /* index in cfg->scoring.sites */
	struct dns_query *q;
};

struct client_score {
	struct gg_config *cfg;           /* a reference: the sites' names are parts */
	struct client_facts *facts;
	struct client_facts_wait name_wait;
	int pending;                     /* lookups still to answer */
	struct score score;
	struct store_call *marks;        /* the client network's marks, being read */
	int64_t trapped_at;              /* of those marks: void_before; 0 none */
	struct list_node waiters;
	struct site_query sq[];          /* one per site */
};

static void finished_one(struct client_score *cs)
{
	if (--cs->pending > 0)
		return;
	struct list_node *pos, *tmp;
	LIST_FOR_EACH_SAFE(pos, tmp, &cs->waiters) {
		struct client_facts_wait *w = LIST_ELEM(pos, struct client_facts_wait, node);
		list_del(&w->node);
		w->fn(w->arg);
	}
}

/* The client's network as the store keys its marks: the triplet's network
 * part (the /24 or /64). */
static void client_net(const struct gg_config *cfg, const struct client_facts *f, char *net,
		       size_t len)
{
	triplet_network(&f->addr, (unsigned)cfg->greylist.ipv4_prefix,
			(unsigned)cfg->greylist.ipv6_prefix, net, len);
}

/* At debug: during a store outage this is every connection, and the
 * session goes on either way (ACTION says how). */
static void log_marks_failed(const char *action, const char *error)
{
	struct logline l;
	ll_begin(&l, LOG_LVL_DEBUG, "score");
	ll_str(&l, "site", "store");
	ll_str(&l, "result", "failed");
	ll_str(&l, "action", action);
	ll_str(&l, "error", error);
	ll_emit(&l);
}

static void on_marks(void *arg, const struct store_result *r)
{
	struct client_score *cs = arg;
	cs->marks = NULL;
	if (!r->ok) {
		log_marks_failed("counted as no marks", r->error);
	} else {
		const struct gl_marks *m = &r->marks;
		if (m->trapped_until > m->now)
			score_add(&cs->score, SIG_SPAMTRAP, NULL, 0);
		cs->trapped_at = m->trapped_at;
	}
	finished_one(cs);
}

static void on_site(void *arg, const struct dns_answer *a)
{
	struct site_query *sq = arg;
	struct client_score *cs = sq->cs;
	const struct dnsbl_site *site = &cs->cfg->scoring.sites[sq->site];
	sq->q = NULL;
	if (a->status == DNS_TEMPFAIL) {
		/* debug: during a DNS outage this is every connection */
		struct logline l;
		ll_begin(&l, LOG_LVL_DEBUG, "score");
		ll_str(&l, "site", site->domain);
		ll_str(&l, "result", "tempfail");
		ll_str(&l, "action", "counted as not listed");
		ll_emit(&l);
	}
	for (size_t k = 0; a->status == DNS_OK && k < a->n; k++)
		if (dnsbl_site_match(site, &a->rr[k].addr)) {
			score_add(&cs->score, site->weight < 0 ? SIG_DNSWL : SIG_DNSBL, site->domain,
				  site->weight);
			break;
		}
	finished_one(cs);
}

/* What the client's name says, once known: none, one that does not
 * resolve back, or a confirmed name an access provider gave one of its
 * customers' addresses (greylist.generic_name_words, the address in it). */
static void name_known(struct client_score *cs)
{
	const struct gg_config *cfg = cs->cfg;
	const int *w = cfg->scoring.weights;
	const struct client_facts *f = cs->facts;
	if (f->result == FCRDNS_NO_PTR)
		score_add(&cs->score, SIG_NO_PTR, NULL, w[SIG_NO_PTR]);
	else if (f->result == FCRDNS_NO_MATCH)
		score_add(&cs->score, SIG_UNCONFIRMED_PTR, NULL, w[SIG_UNCONFIRMED_PTR]);
	else if (f->result == FCRDNS_MATCH && f->name &&
		 generic_name(f->name, &f->addr, (const char *const *)cfg->greylist.generic_name_words,
			      cfg->greylist.ngeneric_name_words))
		score_add(&cs->score, SIG_GENERIC_PTR, NULL, w[SIG_GENERIC_PTR]);
}

static void on_name(void *arg)
{
	name_known(arg);
	finished_one(arg);
}

struct client_score *client_score_start(struct gg_config *cfg, struct client_facts *facts)
{
	size_t n = cfg->scoring.nsites;
	struct client_score *cs = xcalloc(1, sizeof *cs + n * sizeof cs->sq[0]);
	cs->cfg = gg_config_ref(cfg);
	cs->facts = facts;
	list_init(&cs->waiters);
	/* held until every lookup is started, so none can finish the score early */
	cs->pending = 1;
	for (size_t i = 0; i < n; i++) {
		char qname[DNS_NAME_MAX];
		cs->sq[i] = (struct site_query){ .cs = cs, .site = i };
		if (!dnsbl_query_name(&facts->addr, cfg->scoring.sites[i].domain, qname, sizeof qname))
			continue;
		cs->pending++;
		cs->sq[i].q = resolver_lookup(qname, DNS_T_A, on_site, &cs->sq[i]);
	}
	if (client_facts_name(facts, &cs->name_wait, on_name, cs))
		name_known(cs);
	else
		cs->pending++;
	/* the spamtrap marks other MX hosts may have set, read beside the
	 * lookups */
	if (store() && cfg->spamtraps.n) {
		char net[NET_TEXT_MAX];
		client_net(cfg, facts, net, sizeof net);
		struct gl_mark_set read = { GL_MARK_NONE, 0, 0 };
		cs->pending++;
		cs->marks = store_marks(net, &read, on_marks, cs);
	}
	finished_one(cs);   /* a lookup answers from the loop only: none has yet */
	return cs;
}

const struct score *client_score_ready(struct client_score *cs, struct client_facts_wait *w,
				       void (*fn)(void *arg), void *arg)
{
	if (cs->pending == 0)
		return &cs->score;
	w->fn = fn;
	w->arg = arg;
	list_push_back(&cs->waiters, &w->node);
	return NULL;
}

void client_score_add(struct client_score *cs, enum signal sig)
{
	int points = cs->cfg->scoring.weights[sig];
	score_add(&cs->score, sig, NULL, points);
}

int64_t client_score_trapped_at(const struct client_score *cs)
{
	return cs ? cs->trapped_at : 0;
}

static void mark_set(void *arg, const struct store_result *r)
{
	(void)arg;
	if (!r->ok)
		log_marks_failed("mark not set", r->error);
}

void client_score_trap(struct gg_config *cfg, struct client_facts *f)
{
	if (!store())
		return;
	char net[NET_TEXT_MAX];
	client_net(cfg, f, net, sizeof net);
	struct gl_mark_set set = store_trap_set(cfg);
	store_marks(net, &set, mark_set, NULL);
	struct client_score *cs = f->score;
	if (cs && !cs->score.trapped)
		score_add(&cs->score, SIG_SPAMTRAP, NULL, 0);
}

void client_score_free(struct client_score *cs)
{
	if (!cs)
		return;
	for (size_t i = 0; i < cs->cfg->scoring.nsites; i++)
		resolver_cancel(cs->sq[i].q);
	client_facts_unwait(&cs->name_wait);
	store_cancel(cs->marks);
	gg_config_unref(cs->cfg);
	free(cs);
}
