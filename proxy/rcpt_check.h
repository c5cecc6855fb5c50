/*
 * rcpt_check: the decision at RCPT time, as an asynchronous step: a check
 * may have to wait for the store or for DNS while other sessions go on, so
 * the answer comes through a function. The policy itself is the rule table
 * of rcpt_rules.h; this module runs it on the event loop with the real
 * resolver, MX sets, FCrDNS and store.
 *
 * Promises: rcpt_check_start always returns the check; DONE is called
 * exactly once unless the check is cancelled first, always later from the
 * event loop, never inside rcpt_check_start. The query's strings need to
 * live only until rcpt_check_start returns. The recipient domain's MX
 * hosts are looked up only when the decision would otherwise refuse the
 * recipient (greylisting, a store failure that defers): they pass.
 */
#ifndef GG_RCPT_CHECK_H
#define GG_RCPT_CHECK_H

#include "rcpt_rules.h"

typedef void (*rcpt_done_fn)(void *arg, const struct rcpt_verdict *v);

struct rcpt_check;

struct rcpt_check *rcpt_check_start(const struct rcpt_query *q, rcpt_done_fn done, void *arg);
void rcpt_check_cancel(struct rcpt_check *c);

#endif
