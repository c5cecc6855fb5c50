#include "spf_txn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_key.h"
#include "spf.h"

/* Calls and unlinks every waiter of T; each was waiting for this. */
static void wake_waiters(struct spf_txn *t)
{
	if (!t->waiters.next)
		return;
	struct list_node *pos, *tmp;
	LIST_FOR_EACH_SAFE(pos, tmp, &t->waiters) {
		struct spf_txn_wait *w = LIST_ELEM(pos, struct spf_txn_wait, node);
		list_del(&w->node);
		w->fn(w->arg);
	}
}

static void on_verdict(void *arg, const struct spf_verdict *v)
{
	struct spf_txn *t = arg;
	t->req = NULL;
	t->result = v->r;
	t->narrow_pass = v->r == SPF_PASS && v->narrow_pass;
	t->state = SPF_TXN_KNOWN;
	wake_waiters(t);
}

bool spf_txn_wanted(const struct gg_config *cfg, const struct ipaddr *client, bool scored)
{
	return cfg->greylist.enabled &&
	       (pool_kinds_have(cfg->greylist.pool_keys, cfg->greylist.npool_keys, POOL_SPF) ||
		(scored && cfg->scoring.enabled)) &&
	       !netlist_match(&cfg->mynetworks, client) &&
	       !netlist_match(&cfg->whitelist.clients, client);
}

void spf_txn_start(struct spf_txn *t, const struct ipaddr *client, const char *sender,
		   const char *helo)
{
	spf_txn_release(t);
	*t = (struct spf_txn){ .state = SPF_TXN_KNOWN, .result = SPF_NONE };
	list_init(&t->waiters);
	const char *at = strrchr(sender, '@');
	char local[SPF_LOCAL_MAX + 1] = "";
	const char *domain;
	if (sender[0]) {
		/* no domain, or a local part longer than RFC 5321's 64 bytes
		 * (spf.h: "none"): nothing to ask */
		if (!at || (size_t)(at - sender) >= sizeof local)
			return;
		snprintf(local, sizeof local, "%.*s", (int)(at - sender), sender);
		domain = at + 1;
	} else {
		domain = helo ? helo : "";
	}
	/* (out of memory: no check, no key, as for no domain) */
	if (!domain[0] || strlen(domain) >= DNS_NAME_MAX || !(t->domain = strdup(domain)))
		return;
	t->state = SPF_TXN_ASKING;
	t->req = spf_check(client, t->domain, sender[0] ? local : NULL, helo ? helo : "",
			   on_verdict, t);
}

bool spf_txn_known(struct spf_txn *t, struct spf_txn_wait *w, void (*fn)(void *arg), void *arg)
{
	if (t->state != SPF_TXN_ASKING)
		return true;
	w->fn = fn;
	w->arg = arg;
	list_push_back(&t->waiters, &w->node);
	return false;
}

void spf_txn_unwait(struct spf_txn_wait *w)
{
	if (w->node.next)
		list_del(&w->node);
}

void spf_txn_release(struct spf_txn *t)
{
	spf_cancel(t->req);
	t->req = NULL;
	free(t->domain);
	t->domain = NULL;
	t->state = SPF_TXN_NONE;
	t->narrow_pass = false;
	wake_waiters(t);
}
