#include "client_facts.h"

#include <stdlib.h>
#include <string.h>

#include "client_score.h"
#include "hostname.h"

void client_facts_init(struct client_facts *f, const struct ipaddr *addr,
		       const struct domainlist *patterns, bool any_name)
{
	*f = (struct client_facts){ .addr = *addr, .patterns = patterns, .any_name = any_name };
	list_init(&f->waiters);
}

/* A copy of NAME, or NULL for "" (and out of memory: the name is then
 * unknown, as after a lookup that failed). */
static char *keep(const char *name)
{
	return name[0] ? strdup(name) : NULL;
}

static void on_name(void *arg, enum fcrdns_result r, const char *name, const char *listed)
{
	struct client_facts *f = arg;
	f->req = NULL;
	/* Postfix refuses XCLIENT (for the whole connection) with a NAME that
	 * is no host name: such a name is no usable name. */
	if (r == FCRDNS_MATCH && !hostname_valid(name, strlen(name)))
		r = FCRDNS_NO_MATCH;
	f->result = r;
	f->name = r == FCRDNS_MATCH ? keep(name) : NULL;
	f->listed = keep(listed);
	f->state = CN_KNOWN;
	struct list_node *pos, *tmp;
	LIST_FOR_EACH_SAFE(pos, tmp, &f->waiters) {
		struct client_facts_wait *w = LIST_ELEM(pos, struct client_facts_wait, node);
		list_del(&w->node);
		w->fn(w->arg);
	}
}

void client_facts_known(struct client_facts *f, const char *name, size_t len, bool ptr)
{
	f->state = CN_KNOWN;
	f->result = ptr ? FCRDNS_NO_MATCH : FCRDNS_NO_PTR;
	if ((len == 7 && memcmp(name, "unknown", 7) == 0) || !hostname_valid(name, len))
		return;
	f->result = FCRDNS_MATCH;
	if (f->any_name)
		f->name = strndup(name, len);
	if (f->patterns && domainlist_match(f->patterns, name, len))
		f->listed = strndup(name, len);
}

void client_facts_ask(struct client_facts *f)
{
	if (f->state != CN_UNASKED)
		return;
	f->state = CN_ASKING;
	f->req = fcrdns_verify(&f->addr, f->patterns, f->any_name, on_name, f);
}

bool client_facts_name(struct client_facts *f, struct client_facts_wait *w, void (*fn)(void *arg),
		       void *arg)
{
	if (f->state == CN_KNOWN)
		return true;
	client_facts_ask(f);
	w->fn = fn;
	w->arg = arg;
	list_push_back(&f->waiters, &w->node);
	return false;
}

void client_facts_unwait(struct client_facts_wait *w)
{
	if (w->node.next)
		list_del(&w->node);
}

void client_facts_score(struct client_facts *f, struct gg_config *cfg)
{
	if (!cfg->scoring.enabled)
		return;
	f->any_name = true;
	f->score = client_score_start(cfg, f);
}

void client_facts_release(struct client_facts *f)
{
	client_score_free(f->score);
	f->score = NULL;
	fcrdns_cancel(f->req);
	f->req = NULL;
	free(f->name);
	free(f->listed);
	f->name = f->listed = NULL;
}
