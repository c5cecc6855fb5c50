/*
 * redis_admin: greygate-ctl's commands (lib/ctl_cmd.h) on the Redis store,
 * with blocking hiredis calls: a command-line tool waits for its answer,
 * and talking to Redis itself lets it work from any host that reaches
 * Redis and while greygate is stopped. The keys and fields are those of
 * greylist_lua.h, which the daemon's store writes; the dry-run decision
 * of `explain` is the daemon's own script. With store.redis.sentinels the
 * master is the one the first answering sentinel names
 * (sentinel_ask_each). With store.redis.cluster (the redis-cluster row)
 * the slot map comes from the first node listed that gives one, each key's
 * command goes to the primary serving its slot (keys tagged with the
 * network, greylist_lua.h), and list and stats walk every primary; del KEY
 * looks for the key on each (the key's network is not in KEY).
 *
 * Reached through the store registry (lib/store_type.c), never by name.
 */
#ifndef GG_REDIS_ADMIN_H
#define GG_REDIS_ADMIN_H

#include <stdio.h>

#include "config.h"
#include "ctl_cmd.h"

/* Connects to the master CFG's store.redis names (authenticated, its db
 * selected): the operations and *CTX, or NULL with why on DIAG. */
const struct ctl_store *redis_admin_open(const struct gg_config *cfg, void **ctx, FILE *diag);
void redis_admin_close(void *ctx);

#endif
