#include "explain.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_facts.h"
#include "client_score.h"
#include "rcpt_rules.h"
#include "server.h"
#include "spf_txn.h"
#include "xalloc.h"

struct explain_req {
	struct gg_config *cfg;
	explain_done_fn done;
	void *arg;
	struct event wake;               /* runs step() from the loop */
	struct client_facts facts;
	struct spf_txn spf;
	struct client_facts_wait nwait, swait;
	struct spf_txn_wait spfwait;
	char helo[256];
};

/* A fact came: look again, from the loop (never inside the call that
 * started the lookup). */
static void on_fact(void *arg)
{
	struct explain_req *r = arg;
	event_active(&r->wake, EV_TIMEOUT, 0);
}

static void release(struct explain_req *r)
{
	event_del(&r->wake);
	client_facts_unwait(&r->nwait);
	client_facts_unwait(&r->swait);
	spf_txn_unwait(&r->spfwait);
	spf_txn_release(&r->spf);
	client_facts_release(&r->facts);
	gg_config_unref(r->cfg);
	free(r);
}

/* Waits for whatever is not known yet (one wait at a time: each answer
 * wakes this again); once all is, answers. */
static void step(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct explain_req *r = arg;
	const struct gg_config *cfg = r->cfg;
	if (!client_facts_name(&r->facts, &r->nwait, on_fact, r) ||
	    !spf_txn_known(&r->spf, &r->spfwait, on_fact, r))
		return;
	const struct score *base = NULL;
	if (r->facts.score && !(base = client_score_ready(r->facts.score, &r->swait, on_fact, r)))
		return;
	struct ctl_facts f = { .scoring = cfg->scoring.enabled ? CTL_SCORING_ON : CTL_SCORING_OFF,
			       .cls = CLASS_NORMAL };
	if (r->facts.name)
		snprintf(f.name, sizeof f.name, "%s", r->facts.name);
	if (r->spf.state == SPF_TXN_KNOWN) {
		snprintf(f.spf, sizeof f.spf, "%s", spf_result_name(r->spf.result));
		const char *d = spf_txn_pass_domain(&r->spf);
		snprintf(f.spf_domain, sizeof f.spf_domain, "%s", d ? d : "");
	}
	if (base) {
		struct score s;
		f.cls = rcpt_class_of(cfg, base, r->helo, spf_txn_result(&r->spf), &s);
		f.score = s.total;
		score_parts_text(&s, f.parts, sizeof f.parts);
	}
	explain_done_fn done = r->done;
	void *done_arg = r->arg;
	release(r);
	done(done_arg, &f);
}

struct explain_req *explain_start(struct gg_config *cfg, const struct ipaddr *client,
				  const char *sender, const char *name, const char *helo,
				  explain_done_fn done, void *arg)
{
	struct explain_req *r = xcalloc(1, sizeof *r);
	r->cfg = gg_config_ref(cfg);
	r->done = done;
	r->arg = arg;
	snprintf(r->helo, sizeof r->helo, "%s", helo ? helo : "");
	event_assign(&r->wake, srv.base, -1, 0, step, r);
	/* the name is wanted for itself (the ptr: key, generic_ptr) */
	client_facts_init(&r->facts, client, &cfg->client_names, true);
	if (name)
		client_facts_known(&r->facts, name, strlen(name), true);
	client_facts_score(&r->facts, cfg);
	/* as a session's transaction would be checked (a client that
	 * mynetworks or whitelist.clients pass is not) */
	if (spf_txn_wanted(cfg, client, true))
		spf_txn_start(&r->spf, client, sender, r->helo);
	event_active(&r->wake, EV_TIMEOUT, 0);
	return r;
}

void explain_cancel(struct explain_req *r)
{
	if (r)
		release(r);
}
