/*
 * store_type: the kinds of greylisting store, one row each, by the name
 * store.type gives. The configuration looks the name up once at load
 * (gg_config.store.kind); everything else asks the row, never the name.
 * The daemon's open function for each kind is in proxy/store.c, indexed
 * by the same enum (lib/ cannot name proxy/ code: greygate-ctl and the
 * unit tests link lib/ alone); how greygate-ctl reaches each kind is the
 * row's ctl_open. Adding a kind is one row here, its daemon module and,
 * unless it is embedded, its admin module in lib/.
 */
#ifndef GG_STORE_TYPE_H
#define GG_STORE_TYPE_H

#include <stdio.h>

struct ctl_store;
struct gg_config;

enum store_kind {
	STORE_MEMORY,
	STORE_REDIS,
	STORE_REDIS_CLUSTER,       /* "redis" with store.redis.cluster set */
	STORE_KINDS
};

/* The store lives in one process (the supervisor, or a worker alone):
 * several workers reach it over store_remote, and greygate-ctl reaches it
 * through that process's control socket. Otherwise the store is shared by
 * itself (Redis) and greygate-ctl talks to it directly. */
#define STORE_EMBEDDED 1u

struct store_type {
	const char *name;           /* as store.type writes it */
	unsigned flags;
	/* greygate-ctl's own way to the store CFG configures (blocking): the
	 * admin operations (lib/ctl_cmd.h) with *CTX their context, to be
	 * given back to ctl_close; or NULL once DIAG was told why. NULL in
	 * the rows of STORE_EMBEDDED kinds, whose state only the daemon holds:
	 * greygate-ctl asks the daemon through its control socket. */
	const struct ctl_store *(*ctl_open)(const struct gg_config *cfg, void **ctx, FILE *diag);
	void (*ctl_close)(void *ctx);
};

extern const struct store_type store_types[STORE_KINDS];

/* The kind NAME names: 0 and *KIND set, or -1. */
int store_type_find(const char *name, enum store_kind *kind);
/* "\"memory\" or \"redis\"", for a message that lists the names. */
const char *store_type_names(void);

static inline const struct store_type *store_type(enum store_kind k)
{
	return &store_types[k];
}

#endif
