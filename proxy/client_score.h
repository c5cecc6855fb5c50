/*
 * client_score: the score of a connection's client (lib/score.h) from
 * what is known at connect: its listings on the scoring.dnsbl sites, all
 * asked in parallel, and its name (client_facts.h: no PTR, a PTR that is
 * not forward-confirmed, a confirmed name that looks generic). Started once per connection when scoring is on;
 * the RCPT rules wait for it and add what depends on the session (the
 * HELO), then classify.
 *
 * Promises: client_score_start starts every lookup at once and returns a
 * score that stays valid until client_score_free. client_score_ready
 * answers the score at once when every lookup has answered; otherwise it
 * returns NULL and W's FN is called exactly once, from the loop, when they
 * have, unless client_facts_unwait(W) comes first. A lookup that fails
 * (timeout, SERVFAIL) adds nothing: a signal that cannot be had is no
 * signal. Nothing is counted here: the RCPT decision that classes the
 * client counts its signals (metrics_classified), and greygate-ctl
 * explain's hypothetical sessions (proxy/explain.c) count nothing.
 *
 * With spamtraps, the client network's marks (greylist.h) are read from
 * the store beside the lookups: trapped adds the spamtrap part (hostile
 * whatever the total). A store that fails answers no marks. (backup_first
 * is no mark: the triplet carries it, rcpt_greylist.c.)
 */
#ifndef GG_CLIENT_SCORE_H
#define GG_CLIENT_SCORE_H

#include "client_facts.h"
#include "config.h"
#include "score.h"

struct client_score;

struct client_score *client_score_start(struct gg_config *cfg, struct client_facts *facts);
const struct score *client_score_ready(struct client_score *cs, struct client_facts_wait *w,
				       void (*fn)(void *arg), void *arg);
/* Adds SIG, a signal the session noticed itself (pregreet), with its
 * scoring.weights setting: every later RCPT decision of the connection
 * sees it (and counts it, as every part: metrics_classified). Never
 * calls a waiter. */
void client_score_add(struct client_score *cs, enum signal sig);
/* When the client's network was caught at a spamtrap (its marks, on the
 * store's clock), for gl_params.void_before; 0: never, or not known yet. */
int64_t client_score_trapped_at(const struct client_score *cs);
/* Marks F's network trapped in the store, without waiting for it (a
 * failure is logged at debug), and adds the spamtrap part to F's score,
 * so that the connection's later recipients are hostile too. */
void client_score_trap(struct gg_config *cfg, struct client_facts *f);
/* Cancels what is under way; every waiter must be gone. CS may be NULL. */
void client_score_free(struct client_score *cs);

#endif
