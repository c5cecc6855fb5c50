/*
 * client_facts: what is known of a connection's client, computed once per
 * connection and read by the RCPT rules and the session: its address and
 * its forward-confirmed host name (fcrdns.h), looked up at most once,
 * by the first that needs it (the session for XCLIENT at the greeting, or
 * the first RCPT rule that asks whether the client is whitelisted by name).
 *
 * With scoring on, the connection's score (client_score.h) lives here
 * too, started at connect by client_facts_score.
 *
 * Promises: client_facts_name answers at once when the name is known;
 * otherwise it starts the lookup (once) and W's FN is called exactly once,
 * from the event loop, when the name is known, unless client_facts_unwait
 * comes first. Every waiter is gone before client_facts_release.
 */
#ifndef GG_CLIENT_FACTS_H
#define GG_CLIENT_FACTS_H

#include <stdbool.h>

#include "dnsmsg.h"
#include "domainlist.h"
#include "fcrdns.h"
#include "list.h"
#include "netaddr.h"

enum client_name_state { CN_UNASKED, CN_ASKING, CN_KNOWN };

struct client_facts {
	struct ipaddr addr;
	const struct domainlist *patterns;  /* whitelist.client_names of the session's configuration */
	bool any_name;                      /* a name is wanted for itself (XCLIENT NAME) */
	enum client_name_state state;
	enum fcrdns_result result;          /* of NAME, once KNOWN */
	/* Owned copies, NULL when there is none: most connections never
	 * learn a name, and two DNS_NAME_MAX arrays made every session,
	 * idle ones too, 512 bytes larger. */
	char *name;                         /* the confirmed name (with any_name) */
	char *listed;                       /* a confirmed name matching PATTERNS */
	struct fcrdns_req *req;
	struct list_node waiters;
	struct client_score *score;         /* NULL unless scoring is on */
};

struct client_facts_wait {
	struct list_node node;
	void (*fn)(void *arg);
	void *arg;
};

void client_facts_init(struct client_facts *f, const struct ipaddr *addr,
		       const struct domainlist *patterns, bool any_name);
/* The name is known without a lookup: the policy service's client, whose
 * NAME (LEN bytes) Postfix confirmed forward and backward already, or
 * "unknown" / "" when it could not; PTR: whether the address has a PTR
 * name at all (Postfix's reverse_client_name), which tells "no PTR" from
 * "not confirmed". A NAME that is no host name is none. */
void client_facts_known(struct client_facts *f, const char *name, size_t len, bool ptr);
struct gg_config;
/* With CFG's scoring on: the name is wanted, and the score's lookups
 * start now. */
void client_facts_score(struct client_facts *f, struct gg_config *cfg);
/* Starts the name lookup unless it ran already. */
void client_facts_ask(struct client_facts *f);
/* True when the name is known; else W waits (see above). */
bool client_facts_name(struct client_facts *f, struct client_facts_wait *w, void (*fn)(void *arg),
		       void *arg);
void client_facts_unwait(struct client_facts_wait *w);
/* Cancels the lookup and frees the names; F may be all zeroes (never
 * initialised). */
void client_facts_release(struct client_facts *f);

#endif
