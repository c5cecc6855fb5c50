/*
 * pool_key: which key groups a client's mail for greylisting. Big senders
 * retry from other addresses, often in other networks; keyed by the
 * client's /24 they are greylisted again at every retry. A pool key names
 * the sender instead of its network, when something vouches for who it is:
 *
 *   spf:<domain>  SPF for the MAIL FROM domain (HELO domain for <>) passed
 *                 through a mechanism narrow enough to identify a sender
 *                 (the SPF evaluator judges that and fills SPF_PASS_DOMAIN);
 *   ptr:<domain>  the client's forward-confirmed name does not look
 *                 generic (generic_name.h) and has a registrable domain
 *                 (regdomain.h): "ptr:example.com" for mx7.out.example.com;
 *   net           otherwise: the client's network, as always.
 *
 * The kinds are tried in the configured order (greylist.pool_keys); the
 * first that applies is the key. A pool key never lets mail skip the
 * first delay: it only lets a retry from another address count as the
 * same attempt.
 *
 * Promises: pure (regdomain's list aside), no allocation, every input
 * bounded: a domain or name that is not a valid host name gives no pool
 * key.
 */
#ifndef GG_POOL_KEY_H
#define GG_POOL_KEY_H

#include <stdbool.h>
#include <stddef.h>

#include "netaddr.h"
#include "triplet.h"

enum pool_kind { POOL_NET, POOL_SPF, POOL_PTR };
#define POOL_KINDS (POOL_PTR + 1)

struct pool_facts {
	const struct ipaddr *client;
	/* The domain SPF passed for, narrowly; NULL when it did not (or was
	 * not evaluated). */
	const char *spf_pass_domain;
	/* The client's forward-confirmed host name; NULL when none. */
	const char *client_name;
	const char *const *words;          /* greylist.generic_name_words */
	size_t nwords;
	const enum pool_kind *order;       /* greylist.pool_keys, in order */
	size_t norder;
};

/* The key kind for F, and its text into OUT ("spf:example.com"; "" for
 * POOL_NET, whose text is the network, triplet_network). */
enum pool_kind pool_key(const struct pool_facts *f, char out[POOL_TEXT_MAX]);

/* Whether K is one of ORDER[0..N). */
bool pool_kinds_have(const enum pool_kind *order, size_t n, enum pool_kind k);

/* "net", "spf", "ptr": the log's key= prefix, the metrics label and the
 * names greylist.pool_keys takes. */
const char *pool_kind_name(enum pool_kind k);
bool pool_kind_parse(const char *name, enum pool_kind *k);
/* The kind of a stored key text (triplet_keytext). */
enum pool_kind pool_kind_of(const char *keytext);

#endif
