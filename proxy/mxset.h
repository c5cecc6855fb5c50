/*
 * mxset: the MX hosts of a domain with their addresses, the input of
 * permit_mx_backup (relay authorisation) and of the greylisting exemption
 * for the domain's own MX hosts.
 *
 * Promises: the MX RRset and then A and AAAA of each exchange (at most
 * MX_HOSTS_MAX, best preference first) are looked up concurrently; any
 * temporary DNS failure on the way is reported (tempfail), never turned
 * into "not found". An exchange whose name is no valid host name is kept
 * (its preference counts) with NAME "" and no address. mxset_resolve
 * always returns a request; DONE is called exactly once unless cancelled,
 * always later from the event loop, never inside mxset_resolve.
 */
#ifndef GG_MXSET_H
#define GG_MXSET_H

#include <stdbool.h>
#include <stdint.h>

#include "dnsmsg.h"
#include "netaddr.h"

#define MX_HOSTS_MAX 10
#define MX_ADDRS_MAX 16

struct mx_host {
	uint16_t pref;
	char name[DNS_NAME_MAX];       /* "" when the exchange was no host name */
	size_t naddr;
	struct ipaddr addr[MX_ADDRS_MAX];
};

struct mxset {
	enum dns_status status;   /* of the MX lookup itself */
	bool null_mx;             /* RFC 7505: "MX 0 ." */
	bool tempfail;            /* some lookup failed temporarily */
	size_t n;
	struct mx_host host[MX_HOSTS_MAX];
};

typedef void (*mxset_fn)(void *arg, const struct mxset *m);
struct mxset_req;

struct mxset_req *mxset_resolve(const char *domain, mxset_fn done, void *arg);
void mxset_cancel(struct mxset_req *r);

#endif
