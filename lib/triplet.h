/*
 * triplet: the greylisting key (client network, sender, recipient).
 *
 * Promises: the key is a SHA-256 over a length-prefixed encoding of the
 * three parts, so no choice of separators inside addresses can make two
 * different triplets share a key ("a@x:b" + "c@y" versus "a@x" + "b:c@y").
 * Every MX host builds the same key for the same triplet, given the same
 * prefixes and normalisation settings.
 *
 * The first part is the client's network, or a pool key (pool_key.h:
 * "spf:example.com", "ptr:example.com") when one applies. For the network
 * the hashed text is the network alone ("203.0.113.0/24"), as in versions
 * before pool keys, so an upgrade keeps every stored key.
 */
#ifndef GG_TRIPLET_H
#define GG_TRIPLET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

#define TRIPLET_KEY_LEN 16                 /* bytes of the digest kept */
#define TRIPLET_HEX_LEN (TRIPLET_KEY_LEN * 2)
#define TRIPLET_PART_MAX 320               /* a normalised address, bounded */
#define NET_TEXT_MAX 50                    /* "ffff:...:ffff/128" */
#define POOL_TEXT_MAX (4 + 253 + 1)        /* "ptr:" + a host name */

struct triplet {
	/* The client's network, "203.0.113.0/24": max_new_per_client counts
	 * by it whatever the key. "" when not known (an entry loaded from a
	 * file has only its key text). */
	char net[NET_TEXT_MAX];
	char pool[POOL_TEXT_MAX];              /* "spf:example.com"; "" for the network key */
	char sender[TRIPLET_PART_MAX];         /* normalised; "<>" for the null sender */
	char rcpt[TRIPLET_PART_MAX];           /* lower case */
	uint8_t key[TRIPLET_KEY_LEN];
	char hex[TRIPLET_HEX_LEN + 1];
};

/* The client's network as text: CLIENT masked to V4_PREFIX or V6_PREFIX. */
void triplet_network(const struct ipaddr *client, unsigned v4_prefix, unsigned v6_prefix,
		     char *out, size_t outlen);

/* Fills T from the parts (SENDER already normalised; RCPT is lower-cased
 * here) and computes the key. Returns -1 for a part of TRIPLET_PART_MAX
 * bytes or more (SMTP paths are shorter) or if hashing failed. */
int triplet_make(struct triplet *t, const char *net, const char *sender, size_t sender_len,
		 const char *rcpt, size_t rcpt_len);
/* The same with a pool key POOL ("" or NULL: the network key). */
int triplet_make_pool(struct triplet *t, const char *net, const char *pool, const char *sender,
		      size_t sender_len, const char *rcpt, size_t rcpt_len);
/* From a stored key text (what triplet_keytext gave): a pool key or a
 * network, told apart by the pool kinds' prefixes (pool_kind_of). */
int triplet_make_text(struct triplet *t, const char *keytext, const char *sender,
		      size_t sender_len, const char *rcpt, size_t rcpt_len);

/* The first part as hashed, as the auto-whitelist counts it and as the
 * stores keep it: the pool key, else the network. */
const char *triplet_keytext(const struct triplet *t);

#endif
