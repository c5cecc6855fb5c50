/*
 * fcrdns: forward-confirmed reverse DNS, for whitelist.client_names.
 *
 * Promises: a client counts as NAME only when a PTR record of its address
 * gives NAME and an A or AAAA record of NAME gives the address back (the
 * PTR alone is whatever the owner of the address block wants it to be).
 * Of the PTR names, those that match PATTERNS (NULL: none) are looked up
 * forward, and with ANY the others too, at most FCRDNS_NAMES_MAX in all,
 * the matching ones first; a PTR that is no valid host name counts as no
 * PTR. The answer: NAME, the first name confirmed (with R, MATCH when
 * there is one), and LISTED, a confirmed name that matches PATTERNS ("" when
 * none); it comes as soon as neither can change. fcrdns_verify always
 * returns a request; DONE is called exactly once unless cancelled, always
 * later from the event loop (never inside fcrdns_verify), with NAME a
 * valid host name when MATCH.
 */
#ifndef GG_FCRDNS_H
#define GG_FCRDNS_H

#include "config.h"
#include "dnsmsg.h"
#include "netaddr.h"

#define FCRDNS_NAMES_MAX 4

/* NO_PTR: the address has no PTR that is a host name; NO_MATCH: it has,
 * but none of those looked up gives the address back. */
enum fcrdns_result { FCRDNS_MATCH, FCRDNS_NO_MATCH, FCRDNS_TEMPFAIL, FCRDNS_NO_PTR };

typedef void (*fcrdns_fn)(void *arg, enum fcrdns_result r, const char *name, const char *listed);
struct fcrdns_req;

struct fcrdns_req *fcrdns_verify(const struct ipaddr *client, const struct domainlist *patterns,
				 bool any, fcrdns_fn done, void *arg);
void fcrdns_cancel(struct fcrdns_req *r);

#endif
