/*
 * memstore: the embedded greylisting store (store.type = "memory") for a
 * single host without Redis.
 *
 * Promises: the same decisions as the Redis store (both apply gl_decide's
 * rules); memory is bounded by max_entries triplets (the least recently
 * used is evicted first, and counted); expired state is dropped by
 * memstore_sweep in bounded steps, never by a scan on the request path;
 * the state survives restarts through memstore_save (write to a temporary
 * file, fsync, rename: a crash leaves the old file or the new one) and
 * memstore_load, which refuses a damaged file as a whole and says where.
 * The hash tables are keyed (SipHash, a random key per store), and no
 * operation looks at more than MEMSTORE_CHAIN_MAX entries of one bucket:
 * whoever chooses senders and recipients cannot make lookups or evictions
 * slow.
 */
#ifndef GG_MEMSTORE_H
#define GG_MEMSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "greylist.h"
#include "siphash.h"
#include "triplet.h"

/* A bucket holds at most this many entries: a new one in a full bucket
 * evicts the bucket's oldest (triplets) or is not kept (networks). With
 * at most two entries a bucket on average and keys nobody can aim, an
 * insertion finds its bucket full about once in 2 * 10^9. */
#define MEMSTORE_CHAIN_MAX 16

struct memstore;

struct memstore_stats {
	size_t triplets, networks;
	unsigned long long evicted, expired;
	size_t longest_walk;      /* the most entries one operation looked at */
};

/* What a save wrote. */
struct memstore_saved {
	unsigned long long triplets, networks, marks, bytes;
};

/* What list and explain show of one triplet. */
struct memstore_view {
	const char *hex, *net, *sender, *rcpt;
	struct gl_triplet t;
};

/* With a random hash key (getrandom); NULL without memory or randomness. */
struct memstore *memstore_new(size_t max_entries);
/* With the hash key KEY, for tests that need to know the buckets. */
struct memstore *memstore_new_keyed(size_t max_entries, const uint8_t key[SIPHASH_KEY_LEN]);
void memstore_free(struct memstore *m);

struct gl_decision memstore_decide(struct memstore *m, const struct gl_params *p, int64_t now,
				   const struct triplet *t, bool dry_run);

/* NET's marks after SET (GL_MARK_NONE: a read), at NOW. A mark the
 * table has no room for is not kept (the network's entry is evicted-
 * counted like its counts would be). */
struct gl_marks memstore_marks(struct memstore *m, const char *net, const struct gl_mark_set *set,
			       int64_t now);

/* The stored state of T (t.exists false when unknown), for explain. */
struct gl_triplet memstore_get(struct memstore *m, const struct triplet *t);
/* Marks T as passed (greygate-ctl pass). */
int memstore_pass(struct memstore *m, const struct triplet *t, int64_t now, int64_t lifetime);
/* Forgets the triplet with this hex key; returns 1 if it existed. */
int memstore_delete(struct memstore *m, const char *hex);
/* Puts NET on the auto-whitelist until EXPIRES (greygate-ctl whitelist). */
int memstore_whitelist(struct memstore *m, const char *net, int threshold, int64_t expires);
/* A walk over the triplets in slices, between which the store may be used
 * and changed at will (greygate-ctl list, served a slice per loop turn).
 * Zeroed, it stands at the start. It is a bucket index: a key's bucket is
 * fixed for the store's life (the table never grows nor is rehashed), and
 * the walk takes a bucket whole and visits each bucket once, in order. So
 * no triplet is shown twice in one walk (not even one deleted and added
 * again), and each one stored from the walk's start to its end, and live,
 * is shown; one added or removed meanwhile may be shown or not. */
struct memstore_walk {
	size_t bucket;               /* the next bucket to look at */
};

/* Calls FN for each live triplet of the next buckets (V valid during the
 * call; FN must not change the store), until about BUDGET buckets and
 * entries have been looked at (at most MEMSTORE_CHAIN_MAX more: a bucket
 * is taken whole). Returns true while there is more to walk, false at the
 * end or when FN returned false (which ends the walk). */
bool memstore_walk(struct memstore *m, struct memstore_walk *w, int64_t now, size_t budget,
		   bool (*fn)(void *arg, const struct memstore_view *v), void *arg);

void memstore_sweep(struct memstore *m, int64_t now, size_t budget);
struct memstore_stats memstore_stats(const struct memstore *m);

/* Writes what is live at NOW to FILE (the compact format of
 * docs/design.md); OUT, if not NULL, gets what was written. */
int memstore_save(struct memstore *m, const char *file, int64_t now, struct memstore_saved *out,
		  char *err, size_t errlen);
/* Reads a file memstore_save wrote, or one in the text format of earlier
 * versions (read once, the next save writes the compact format). Returns
 * the number of entries loaded, 0 when FILE does not exist, or -1 (store
 * left empty, ERR says "FILE: byte N: reason" or, for the text format,
 * "FILE:LINE: reason"). */
long memstore_load(struct memstore *m, const char *file, int64_t now, char *err, size_t errlen);

#endif
