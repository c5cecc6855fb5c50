#include "client_score.h"

#include <stdlib.h>

#include "dnsbl_site.h"
#include "generic_name.h"
#include "log.h"
#include "resolver.h"
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

void client_score_free(struct client_score *cs)
{
	if (!cs)
		return;
	for (size_t i = 0; i < cs->cfg->scoring.nsites; i++)
		resolver_cancel(cs->sq[i].q);
	client_facts_unwait(&cs->name_wait);
	gg_config_unref(cs->cfg);
	free(cs);
}
