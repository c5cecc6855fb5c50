/*
 * resolver: DNS for the policy checks, on c-ares driven by our event loop
 * (no blocking resolver anywhere), with a bounded cache that honours TTLs,
 * negative answers included (RFC 2308). A temporary failure is always told
 * apart from "does not exist"; it is remembered for a few seconds, and a
 * lookup of a name already being asked joins that query, so a server that
 * does not answer costs one timeout per name, not one per decision.
 *
 * Promises: resolver_lookup always returns a query, and DONE is called
 * exactly once unless the query is cancelled first, always later from the
 * event loop, never inside resolver_lookup: the query stays valid until
 * DONE has run or resolver_cancel was called. A NAME that is not a valid
 * host name (hostname.h) is DNS_NXDOMAIN without a query; when too many
 * lookups are under way a new one fails as DNS_TEMPFAIL rather than
 * waiting. The answer is only valid during the call.
 */
#ifndef GG_RESOLVER_H
#define GG_RESOLVER_H

#include <stdint.h>

#include "config.h"
#include "dnsmsg.h"

struct event_base;
struct dns_query;

typedef void (*dns_done_fn)(void *arg, const struct dns_answer *a);
typedef void (*dns_txt_fn)(void *arg, const struct dns_txt *t);

int resolver_open(struct event_base *base, const struct gg_config *cfg);
/* SIGHUP: new DNS settings take effect for new lookups; lookups under way
 * finish on the old servers. */
void resolver_reload(const struct gg_config *cfg);
void resolver_close(void);

/* NAME without trailing dot; TYPE one of DNS_T_MX, DNS_T_A, DNS_T_AAAA, DNS_T_PTR. */
struct dns_query *resolver_lookup(const char *name, uint16_t type, dns_done_fn done, void *arg);
/* The PTR records of ADDR (in-addr.arpa / ip6.arpa). */
struct dns_query *resolver_lookup_ptr(const struct ipaddr *addr, dns_done_fn done, void *arg);
/* The TXT records of NAME (dnsmsg.h: struct dns_txt), with the same
 * promises, cached alike. */
struct dns_query *resolver_lookup_txt(const char *name, dns_txt_fn done, void *arg);
/* Q may be NULL; after it, Q's DONE is not called and Q is not used. */
void resolver_cancel(struct dns_query *q);

#endif
