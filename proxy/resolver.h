/*
 * resolver: DNS for the policy checks, on c-ares driven by our event loop
 * (no blocking resolver anywhere), with a bounded cache that honours TTLs,
 * negative answers included (RFC 2308). A temporary failure is never
 * cached and is always told apart from "does not exist".
 *
 * Promises: DONE is called exactly once unless the query is cancelled
 * first; on a cache hit it runs before resolver_lookup returns (which then
 * returns NULL). The answer is only valid during the call.
 */
#ifndef GG_RESOLVER_H
#define GG_RESOLVER_H

#include <stdint.h>

#include "config.h"
#include "dnsmsg.h"

struct event_base;
struct dns_query;

typedef void (*dns_done_fn)(void *arg, const struct dns_answer *a);

int resolver_open(struct event_base *base, const struct gg_config *cfg);
/* SIGHUP: new DNS settings take effect for new lookups; lookups under way
 * finish on the old servers. */
void resolver_reload(const struct gg_config *cfg);
void resolver_close(void);

/* NAME without trailing dot; TYPE one of DNS_T_MX, DNS_T_A, DNS_T_AAAA, DNS_T_PTR. */
struct dns_query *resolver_lookup(const char *name, uint16_t type, dns_done_fn done, void *arg);
/* The PTR records of ADDR (in-addr.arpa / ip6.arpa). */
struct dns_query *resolver_lookup_ptr(const struct ipaddr *addr, dns_done_fn done, void *arg);
void resolver_cancel(struct dns_query *q);

#endif
