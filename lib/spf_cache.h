/*
 * spf_cache: recent SPF outcomes, so that a sender's every message (and
 * every MX host's worker asking again) does not repeat the same dozen DNS
 * lookups. Keyed by what an outcome can depend on: the domain checked, the
 * client address, and the local part and HELO name that macros may use.
 *
 * Promises: pure (the caller gives the time); a fixed number of slots
 * chosen by a keyed hash (siphash.h), so the memory is bounded and an
 * attacker cannot aim at a slot; a new outcome replaces whatever had its
 * slot. temperror is never stored (the next check may well succeed).
 */
#ifndef GG_SPF_CACHE_H
#define GG_SPF_CACHE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "siphash.h"
#include "spf_eval.h"

struct spf_cache_key {
	const char *domain, *local, *helo;
	struct ipaddr ip;
};

struct spf_cache;

/* SLOTS entries kept for TTL seconds each; NULL when out of memory. */
struct spf_cache *spf_cache_new(unsigned slots, unsigned ttl, const uint8_t key[SIPHASH_KEY_LEN]);
void spf_cache_free(struct spf_cache *c);
bool spf_cache_get(struct spf_cache *c, const struct spf_cache_key *k, time_t now,
		   struct spf_outcome *out);
void spf_cache_put(struct spf_cache *c, const struct spf_cache_key *k, time_t now,
		   const struct spf_outcome *out);

#endif
