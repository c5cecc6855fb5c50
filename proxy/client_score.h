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
/* Cancels what is under way; every waiter must be gone. CS may be NULL. */
void client_score_free(struct client_score *cs);

#endif
