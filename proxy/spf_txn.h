/*
 * spf_txn: the SPF check of one mail transaction (or one policy request),
 * for the spf: pool key (pool_key.h) and the spf_fail / spf_softfail
 * score signals (score.h). It starts at MAIL FROM, in the background, so
 * that the MAIL reply never waits for it; the RCPT rules wait for its
 * outcome only in the rows that use it (greylisting, when it needs the
 * key; the class row, when scoring is on).
 *
 * What is checked: the MAIL FROM domain, or the HELO name for the null
 * sender (RFC 7208 section 2.3/2.4). Only a narrow pass (spf.h) names the
 * sender: its checked domain becomes spf_txn_pass_domain. Every other
 * outcome (none, neutral, fail, softfail, temperror, permerror, a wide
 * pass) gives no pool key: the greylisting key falls back to the next
 * kind. Never a bypass: the key only groups retries.
 *
 * Promises: spf_txn_known answers at once when the outcome is known (or
 * no check was started); otherwise W's FN is called exactly once, from
 * the event loop, when it is, unless spf_txn_unwait comes first.
 * spf_txn_release cancels the check and calls the waiters still there
 * (the outcome is then "no key"), so nothing waits for a check that is
 * gone. A zeroed struct spf_txn is a valid, released one.
 */
#ifndef GG_SPF_TXN_H
#define GG_SPF_TXN_H

#include <stdbool.h>

#include "config.h"
#include "dnsmsg.h"
#include "list.h"
#include "netaddr.h"
#include "spf_record.h"

struct spf_req;

enum spf_txn_state { SPF_TXN_NONE, SPF_TXN_ASKING, SPF_TXN_KNOWN };

struct spf_txn {
	enum spf_txn_state state;
	struct spf_req *req;
	enum spf_result result;             /* once KNOWN */
	/* The checked domain, owned while a check is started: a session
	 * keeps its struct spf_txn, idle or not, so this is no array. */
	char *domain;
	bool narrow_pass;                   /* once KNOWN */
	struct list_node waiters;
};

struct spf_txn_wait {
	struct list_node node;
	void (*fn)(void *arg);
	void *arg;
};

/* Whether CFG wants CLIENT's transactions checked: greylisting on, with
 * "spf" among greylist.pool_keys or (SCORED: the caller's rules classify
 * the client; the policy service's do not) scoring on, for a client that
 * mynetworks or whitelist.clients do not pass anyway (a busy relay of our
 * own would cost DNS for nothing). */
bool spf_txn_wanted(const struct gg_config *cfg, const struct ipaddr *client, bool scored);
/* Releases what T had, then checks CLIENT for SENDER ("" for <>, then
 * HELO's domain is checked; HELO may be NULL or ""). Nothing to check (no
 * domain): known at once, no key. */
void spf_txn_start(struct spf_txn *t, const struct ipaddr *client, const char *sender,
		   const char *helo);
/* True when the outcome is known or no check runs; else W waits. */
bool spf_txn_known(struct spf_txn *t, struct spf_txn_wait *w, void (*fn)(void *arg), void *arg);
void spf_txn_unwait(struct spf_txn_wait *w);
/* The outcome once KNOWN; none when no check ran or it is not known. */
static inline enum spf_result spf_txn_result(const struct spf_txn *t)
{
	return t->state == SPF_TXN_KNOWN ? t->result : SPF_NONE;
}

/* The checked domain when SPF passed narrowly, else NULL. (Inline: the
 * RCPT rules read it without linking the checker.) */
static inline const char *spf_txn_pass_domain(const struct spf_txn *t)
{
	return t->state == SPF_TXN_KNOWN && t->narrow_pass ? t->domain : NULL;
}
void spf_txn_release(struct spf_txn *t);

#endif
