/*
 * triplet: the greylisting key (client network, sender, recipient).
 *
 * Promises: the key is a SHA-256 over a length-prefixed encoding of the
 * three parts, so no choice of separators inside addresses can make two
 * different triplets share a key ("a@x:b" + "c@y" versus "a@x" + "b:c@y").
 * Every MX host builds the same key for the same triplet, given the same
 * prefixes and normalisation settings.
 */
#ifndef GG_TRIPLET_H
#define GG_TRIPLET_H

#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

#define TRIPLET_KEY_LEN 16                 /* bytes of the digest kept */
#define TRIPLET_HEX_LEN (TRIPLET_KEY_LEN * 2)
#define TRIPLET_PART_MAX 320               /* a normalised address, bounded */
#define NET_TEXT_MAX 50                    /* "ffff:...:ffff/128" */

struct triplet {
	char net[NET_TEXT_MAX];                /* "203.0.113.0/24" */
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

#endif
