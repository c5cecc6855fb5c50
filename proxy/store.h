/*
 * store: where greylisting state lives, behind one interface: the embedded
 * store (store_memory.c) or Redis (store_redis.c, shared by every MX host).
 *
 * Promises: one decision is one atomic step in the store; DONE is called
 * exactly once unless the request is cancelled first, and always from the
 * loop, never inside store_decide (store_decide defers what a store
 * answers at once); a store that is down, slow or broken answers ok=false
 * within its timeout instead of holding the session, and the caller
 * applies store.failure. Nothing blocks the loop.
 *
 * A store's own decide (store_ops) may answer inside the call and then
 * returns NULL; only store_decide is for callers.
 */
#ifndef GG_STORE_H
#define GG_STORE_H

#include <stdbool.h>

#include "config.h"
#include "greylist.h"
#include "triplet.h"

struct event_base;
struct store_req;
struct store_call;
struct memstore;

struct store_result {
	bool ok;
	struct gl_decision d;
	const char *error;          /* when !ok: what failed */
};

typedef void (*store_done_fn)(void *arg, const struct store_result *r);

struct store_ops {
	const char *name;
	struct store_req *(*decide)(const struct gg_config *cfg, const struct triplet *t,
				    bool dry_run, store_done_fn done, void *arg);
	void (*cancel)(struct store_req *r);
	bool (*healthy)(void);
	void (*close)(void);
};

/* Opens the store CFG names; returns 0 or -1 (logged). */
int store_open(struct event_base *base, struct gg_config *cfg);
const struct store_ops *store(void);
/* Uses OPS as the store (a worker on the supervisor's embedded store). */
void store_use(struct event_base *base, const struct store_ops *ops);

/* One decision by the store in use; DONE runs later, from the loop, unless
 * store_cancel comes first. Never NULL (out of memory aborts). */
struct store_call *store_decide(const struct gg_config *cfg, const struct triplet *t,
				store_done_fn done, void *arg);
void store_cancel(struct store_call *c);

/* The embedded store, when it is the one in use (greygate-ctl's commands
 * run against it through the control socket); NULL otherwise. */
struct memstore *store_memory_get(void);

/* Gets the greylist parameters of a configuration in the decision's form. */
struct gl_params store_params(const struct gg_config *cfg);

/* Each store's constructor. */
const struct store_ops *store_memory_open(struct event_base *base, struct gg_config *cfg);
const struct store_ops *store_redis_open(struct event_base *base, struct gg_config *cfg);

#endif
