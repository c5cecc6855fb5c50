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
 * returns NULL; only store_decide is for callers. The admin operations
 * greygate-ctl runs are part of the interface (store_ops.admin).
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
struct ctl_store;

struct store_result {
	bool ok;
	struct gl_decision d;
	struct gl_marks marks;      /* the answer of a marks request */
	const char *error;          /* when !ok: what failed */
};

typedef void (*store_done_fn)(void *arg, const struct store_result *r);

/* A store: one instance of a kind (lib/store_type.h); each kind embeds
 * this first in its own struct, which holds its state. */
struct store {
	const struct store_ops *ops;
	enum store_kind kind;
};

struct store_ops {
	/* An embedded store (STORE_EMBEDDED) answers inside the call: the
	 * supervisor serves its workers' decisions that way (store_remote). */
	struct store_req *(*decide)(struct store *s, const struct gl_params *p,
				    const struct triplet *t, bool dry_run, store_done_fn done,
				    void *arg);
	/* A client network's marks (greylist.h), after SET (kind
	 * GL_MARK_NONE: a read); answered like decide. */
	struct store_req *(*marks)(struct store *s, const char *net, const struct gl_mark_set *set,
				   store_done_fn done, void *arg);
	void (*cancel)(struct store *s, struct store_req *r);
	bool (*healthy)(struct store *s);
	void (*close)(struct store *s);
	/* greygate-ctl's commands (lib/ctl_cmd.h) on this instance, with the
	 * store as their context; NULL where greygate-ctl reaches the store
	 * without this process (Redis). */
	const struct ctl_store *admin;
};

/* Opens the store of the kind CFG names; returns 0 or -1 (logged). */
int store_open(struct event_base *base, struct gg_config *cfg);
/* The store in use, or NULL before one is open. */
struct store *store(void);
/* Uses S as the store (a worker on the supervisor's embedded store). */
void store_use(struct event_base *base, struct store *s);
bool store_healthy(void);
/* Closes the store in use (the embedded store saves). */
void store_close(void);

/* One decision by the store in use with P (gg_config_gl_params, or a
 * class's own delay and AWL rule); DONE runs later, from the loop, unless
 * store_cancel comes first. Never NULL (out of memory aborts). */
struct store_call *store_decide(const struct gl_params *p, const struct triplet *t,
				store_done_fn done, void *arg);
void store_cancel(struct store_call *c);
/* NET's marks by the store in use, after SET (GL_MARK_NONE: a read), as
 * store_decide answers (r->marks). A failure is no marks to the caller. */
struct store_call *store_marks(const char *net, const struct gl_mark_set *set,
			       store_done_fn done, void *arg);
/* What setting a trap means under CFG: for trap_lifetime, kept as long as
 * the triplets it voids (greylist.retry_window) could be pending. */
struct gl_mark_set store_trap_set(const struct gg_config *cfg);

/* Each kind's constructor (by the rows of lib/store_type.c, in store.c);
 * store_redis_open makes both kinds of Redis store. */
struct store *store_memory_open(struct event_base *base, struct gg_config *cfg);
struct store *store_redis_open(struct event_base *base, struct gg_config *cfg);

#endif
