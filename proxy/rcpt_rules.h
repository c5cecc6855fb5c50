/*
 * rcpt_rules: the RCPT policy as data. One ordered table of rules (in
 * rcpt_rules.c, the only place the order exists), each a named check that
 * answers NEXT, WAIT (it started lookups; it runs again once they all
 * answered) or DECIDED (permit, reject or defer, with its reply). The
 * driver walks the table; no rule names its successor.
 *
 * Deferral, as Postfix's smtpd_check.c does it: a DEFER (a temporary
 * failure, greylisting) does not end the walk. It is remembered (the
 * first one) and the rules that may still reject for good run on: a later
 * REJECT wins; a later PERMIT, or the end of the table, gives the
 * remembered deferral. Rules that can only permit or defer are skipped
 * once a deferral is remembered (they could not change the answer, and
 * the greylisting store is not written for a recipient that is deferred
 * anyway).
 *
 * The rules reach the world only through struct rcpt_env: DNS, the MX
 * sets, the client's name (client_facts.h), the transaction's SPF outcome
 * (spf_txn.h), the greylisting store and the clock. rcpt_check.c gives
 * the real ones and the event loop; test/unit/test_rcpt_rules.c gives
 * fakes and runs the table without a network.
 *
 * Promises: rcpt_rules_run never calls back; an env lookup's answer only
 * records its result and, when nothing is pending any more, calls
 * env->wake, after which the owner calls rcpt_rules_run again (from its
 * loop, never inside the answer). rcpt_rules_free cancels what is pending.
 */
#ifndef GG_RCPT_RULES_H
#define GG_RCPT_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client_facts.h"
#include "config.h"
#include "mxset.h"
#include "netaddr.h"
#include "resolver.h"
#include "score.h"
#include "smtp_cmd.h"
#include "spf_txn.h"
#include "store.h"
#include "why.h"

struct rcpt_query {
	struct gg_config *cfg;
	struct client_facts *facts;    /* the connection's; outlives the check */
	const struct ipaddr *client;
	const char *client_str;
	const char *helo;
	const char *sender;            /* "" for the null sender */
	const struct smtp_path *rcpt;
	const char *tls;               /* the TLS version, NULL for plaintext */
	/* The transaction's SPF check (spf_txn.h), for the spf: pool key;
	 * outlives the check. NULL: SPF is not checked. */
	struct spf_txn *spf;
	/* Asked by Postfix through the policy service (proxy/policy.c): only
	 * the rows marked for it run; the others (address syntax, sender
	 * domain, relay authorisation) are Postfix's own restrictions there. */
	bool policy;
};

enum rcpt_action { RCPT_ACCEPT, RCPT_REJECT, RCPT_DEFER };

struct rcpt_verdict {
	enum rcpt_action action;
	enum why rule;                 /* which rule or reason decided, for the log */
	char reply[600];               /* the reply to give unless ACCEPT */
	/* ACCEPT by the pass that ended a triplet's greylisting: the seconds
	 * since it was first seen (0 otherwise). */
	bool first_pass;
	int64_t waited;
};

struct rcpt_rules;

/* What the rules use of the world. Each lookup follows its module's
 * contract (resolver.h, mxset.h, client_facts.h, spf_txn.h, store.h):
 * DONE exactly once unless cancelled, never inside the call. */
struct rcpt_env {
	struct dns_query *(*lookup)(const char *name, uint16_t type, dns_done_fn done, void *arg);
	void (*lookup_cancel)(struct dns_query *q);
	struct mxset_req *(*mx)(const char *domain, mxset_fn done, void *arg);
	void (*mx_cancel)(struct mxset_req *r);
	bool (*client_name)(struct client_facts *f, struct client_facts_wait *w,
			    void (*fn)(void *arg), void *arg);
	void (*client_name_unwait)(struct client_facts_wait *w);
	bool (*spf_known)(struct spf_txn *t, struct spf_txn_wait *w, void (*fn)(void *arg),
			  void *arg);
	void (*spf_unwait)(struct spf_txn_wait *w);
	/* The connection's score (client_score.h), NULL while it waits (W's
	 * FN then runs once it is known; client_name_unwait takes W back). */
	const struct score *(*client_score)(struct client_facts *f, struct client_facts_wait *w,
					    void (*fn)(void *arg), void *arg);
	struct store_call *(*store)(const struct gl_params *p, const struct triplet *t,
				    store_done_fn done, void *arg);
	/* Marks the client's network trapped in the store and the
	 * connection's score trapped (client_score_trap: not waited for). */
	void (*trap)(struct gg_config *cfg, struct client_facts *f);
	/* When the client's network was trapped (client_score_trapped_at), 0
	 * none: asked once the score is known. */
	int64_t (*trapped_at)(struct client_facts *f);
	/* Whether a primary MX of DOMAIN other than this host answered the
	 * hand-over probe last (handover_primary_up); false when not known. */
	bool (*primary_up)(const char *domain);
	void (*store_cancel)(struct store_call *c);
	double (*now)(void);           /* monotonic seconds, for latencies */
	/* Every lookup of R answered: run R again, from the loop. */
	void (*wake)(void *owner);
};

/* The strings of Q need to live only until this returns. */
struct rcpt_rules *rcpt_rules_new(const struct rcpt_env *env, void *owner,
				  const struct rcpt_query *q);
/* Runs rules until one waits (false) or the verdict is known (true,
 * *V set); after true, only rcpt_rules_free. */
bool rcpt_rules_run(struct rcpt_rules *r, struct rcpt_verdict *v);
void rcpt_rules_free(struct rcpt_rules *r);

/* Selective greylisting's class (README.md, "Selective greylisting"): the
 * connection's score BASE (client_score.h) with what the session adds,
 * its HELO (NULL or "": none) and the transaction's SPF outcome, into
 * *OUT, and the class that falls in. The one computation behind the
 * class row and greygate-ctl explain (proxy/explain.c); counts nothing. */
enum score_class rcpt_class_of(const struct gg_config *cfg, const struct score *base,
			       const char *helo, enum spf_result spf, struct score *out);

/* The table, for documentation and tests: the name of row I (its lib/why
 * entry), WHY_NONE past the end. */
enum why rcpt_rules_row(size_t i);
/* Whether row I runs for the policy service (struct rcpt_query.policy). */
bool rcpt_rules_row_in_policy(size_t i);

#endif
