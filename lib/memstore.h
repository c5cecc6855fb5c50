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
 */
#ifndef GG_MEMSTORE_H
#define GG_MEMSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "greylist.h"
#include "triplet.h"

struct memstore;

struct memstore_stats {
	size_t triplets, networks;
	unsigned long long evicted, expired;
};

/* What list and explain show of one triplet. */
struct memstore_view {
	const char *hex, *net, *sender, *rcpt;
	struct gl_triplet t;
};

struct memstore *memstore_new(size_t max_entries);
void memstore_free(struct memstore *m);

struct gl_decision memstore_decide(struct memstore *m, const struct gl_params *p, int64_t now,
				   const struct triplet *t, bool dry_run);

/* The stored state of T (t.exists false when unknown), for explain. */
struct gl_triplet memstore_get(struct memstore *m, const struct triplet *t);
/* Marks T as passed (greygate-ctl pass). */
int memstore_pass(struct memstore *m, const struct triplet *t, int64_t now, int64_t lifetime);
/* Forgets the triplet with this hex key; returns 1 if it existed. */
int memstore_delete(struct memstore *m, const char *hex);
/* Puts NET on the auto-whitelist until EXPIRES (greygate-ctl whitelist). */
int memstore_whitelist(struct memstore *m, const char *net, int threshold, int64_t expires);
/* Calls FN for every live triplet until it returns false. */
void memstore_foreach(struct memstore *m, int64_t now,
		      bool (*fn)(void *arg, const struct memstore_view *v), void *arg);

void memstore_sweep(struct memstore *m, int64_t now, size_t budget);
struct memstore_stats memstore_stats(const struct memstore *m);

int memstore_save(struct memstore *m, const char *file, int64_t now, char *err, size_t errlen);
/* Returns the number of entries loaded, 0 when FILE does not exist, or -1
 * (store left empty, ERR says "FILE:LINE: reason"). */
long memstore_load(struct memstore *m, const char *file, int64_t now, char *err, size_t errlen);

#endif
