/*
 * explain: what a hypothetical session of CLIENT, with SENDER and HELO,
 * would learn by DNS, for greygate-ctl explain (lib/ctl_cmd.h, struct
 * ctl_facts): the client's confirmed name, the sender's SPF outcome, and,
 * with scoring on, the client's DNSBL/DNSWL listings and name signals,
 * classed by rcpt_class_of, the RCPT class row's own computation. The
 * same modules as a session (client_facts, client_score, spf_txn), on the
 * event loop: nothing waits for DNS. Nothing is stored, and no decision,
 * class or signal is counted (its DNS lookups and SPF check are, as any,
 * and the check logs its event=spf line).
 *
 * Promises: explain_start always returns the request; DONE is called
 * exactly once, later, from the loop, unless explain_cancel comes first.
 */
#ifndef GG_EXPLAIN_H
#define GG_EXPLAIN_H

#include "config.h"
#include "ctl_cmd.h"
#include "netaddr.h"

struct explain_req;
typedef void (*explain_done_fn)(void *arg, const struct ctl_facts *f);

/* NAME: the client's confirmed name as the caller gives it (NULL: looked
 * up); HELO: NULL or "" when none. The strings need to live only until
 * this returns. */
struct explain_req *explain_start(struct gg_config *cfg, const struct ipaddr *client,
				  const char *sender, const char *name, const char *helo,
				  explain_done_fn done, void *arg);
void explain_cancel(struct explain_req *r);

#endif
