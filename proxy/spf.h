/*
 * spf: SPF (RFC 7208) checks for the daemon, asynchronous on the shared
 * resolver (resolver.h): lib/spf_eval.h does the evaluation, this module
 * answers its lookups with resolver_lookup / resolver_lookup_txt and keeps
 * recent outcomes in a small cache (lib/spf_cache.h).
 *
 * Promises: spf_check always returns a request, and DONE is called exactly
 * once unless spf_cancel is called first, always later from the event
 * loop, never inside spf_check (a cached outcome too). The verdict is only
 * valid during the call. Nothing blocks: every lookup is the resolver's,
 * at most SPF_BUDGET_DEFAULT of them per check, and at most 1024 checks
 * under way (past that, temperror at once). Each finished check logs
 * one line (event=spf). Inputs are bounded: a domain that is no DNS name
 * is "none" (RFC 7208 section 4.3), a local part longer than 64 bytes
 * counts as "postmaster"'s would not: the check is "none" too.
 *
 * narrow_pass is what a key may be built on: a pass through a mechanism
 * that identifies a sender, not +all/?all, nor an ip4 wider than
 * greylist.spf_max_prefix4 (an a/mx counts with the prefix it gives,
 * a/24 is 24), nor an ip6 wider than spf_max_prefix6 (spf_eval.h says
 * more).
 */
#ifndef GG_SPF_H
#define GG_SPF_H

#include <stdbool.h>

#include "dnsmsg.h"
#include "netaddr.h"
#include "spf_eval.h"

struct event_base;
struct spf_req;

struct spf_verdict {
	enum spf_result r;
	bool narrow_pass;
	char domain[DNS_NAME_MAX];            /* pass: whose record matched */
	char mechanism[SPF_MECH_TEXT_MAX];    /* pass: the mechanism, as written */
	unsigned prefix;                      /* pass through ip4/ip6/a/mx: its prefix */
};

typedef void (*spf_done_fn)(void *arg, const struct spf_verdict *v);

/* At start, after resolver_open: the loop to complete cached checks on. */
int spf_open(struct event_base *base);
void spf_close(void);
struct gg_config;
/* How wide an ip4/ip6 (or a/mx prefix) may be and still be a narrow pass:
 * CFG's greylist.spf_max_prefix4/6, at start and after a reload; when
 * they changed, cached outcomes are forgotten. */
void spf_limits_of(const struct gg_config *cfg);

/*
 * Checks CLIENT against the SPF record of DOMAIN (the MAIL FROM domain, or
 * the HELO name for the null sender) for the sender LOCAL@DOMAIN (LOCAL
 * NULL or "" for <>: RFC 7208's "postmaster"); HELO is the client's HELO
 * name (%{h}), "" when none.
 */
struct spf_req *spf_check(const struct ipaddr *client, const char *domain, const char *local,
			  const char *helo, spf_done_fn done, void *arg);
/* R may be NULL; after it, R's DONE is not called and R is not used. */
void spf_cancel(struct spf_req *r);

#endif
