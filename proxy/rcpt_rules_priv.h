/*
 * rcpt_rules_priv.h: what the RCPT rule files share (rcpt_rules.c: the
 * table, the driver and the address, sender and relay rows;
 * rcpt_greylist.c: the class and greylist rows). Not for other modules:
 * they use rcpt_rules.h.
 */
#ifndef GG_RCPT_RULES_PRIV_H
#define GG_RCPT_RULES_PRIV_H

#include "metrics.h"
#include "rcpt_rules.h"
#include "score.h"
#include "spf_txn.h"
#include "triplet.h"

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

/* One answer of R's lookups came: when none is pending any more, the
 * owner is woken to run R again. */
void rr_answered(struct rcpt_rules *c);
/* The client's name, its score or the SPF outcome is known (a
 * client_facts or spf_txn waiter's FN). */
void rr_on_fact(void *arg);
/* Logs the decision line (event=decision) and counts it. */
void rr_log_decision(struct rcpt_rules *c, enum decision_action action, enum why reason,
		     const struct gl_decision *d, const char *error);
/* Sets c->out; FMT has two %s: the address and EXTRA (may be NULL). */
enum rule_result rr_decide(struct rcpt_rules *c, enum rcpt_action action, enum why rule,
			   const char *fmt, const char *addr, const char *extra);
/* A logged and counted permit for REASON. */
enum rule_result rr_permit_logged(struct rcpt_rules *c, enum why reason);
/* Asks for the recipient domain's MX hosts (c->mx once answered). */
void rr_resolve_rcpt_mx(struct rcpt_rules *c);

/* The rows of rcpt_greylist.c. */
enum rule_result rcpt_rule_spamtrap(struct rcpt_rules *c);
enum rule_result rcpt_rule_class(struct rcpt_rules *c);
enum rule_result rcpt_rule_greylist(struct rcpt_rules *c);

#endif
