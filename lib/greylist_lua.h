/*
 * greylist_lua: the Redis side of the greylisting decision, one script run
 * by EVALSHA per decision. It applies the rules of greylist.h in the same
 * order, reading, deciding and writing (with TTLs) in one atomic step, on
 * the Redis server's clock (TIME), so that MX hosts with skewed clocks
 * still agree.
 *
 * KEYS: 1 triplet hash (GL_F_* below: first seen, passed, the
 *       backup_first flag, and the parts for greygate-ctl), 2 the key's
 *       auto-whitelist hash (count, time of
 *       the last count; by the pool key when there is one, else by the
 *       network), 3 the client network's new-triplet counter for the hour.
 * ARGV: delay retry_window pass_lifetime awl_threshold max_new_per_client
 *       dry_run(0/1) keytext (triplet_keytext) sender rcpt void_before
 *       set_backup_first(0/1) flagged_delay flagged_awl_threshold
 *       flagged_refuse(0/1) (gl_params; void_before and the booleans
 *       read as 0 when absent, the flagged delay and threshold as the
 *       unflagged ones)
 * Returns { pass(0)|greylist(1)|refuse(2), reason, delay_left, waited,
 *           capped(0/1), first_pass(0/1), backup_first(0/1) }.
 */
#ifndef GG_GREYLIST_LUA_H
#define GG_GREYLIST_LUA_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#include "greylist.h"
#include "triplet.h"

extern const char greylist_lua[];

/*
 * marks_lua: a client network's marks (greylist.h, struct gl_marks), set
 * and read in one step on the Redis server's clock.
 * KEYS: 1 the network's marks hash (GL_KEY_MARK).
 * ARGV: op ("" read, gl_mark_op) lifetime ttl.
 * Returns { now, trapped_until, trapped_at } (0: none).
 */
extern const char marks_lua[];
/* The op word of KIND for marks_lua. */
const char *gl_mark_op(enum gl_mark kind);
/* marks_lua's answer R as *M: NULL, or what is wrong with R. */
const char *gl_marks_answer(const redisReply *r, struct gl_marks *m);

/* The Redis layout, one source for the script, the daemon
 * (proxy/store_redis.c) and greygate-ctl (lib/redis_admin.c). Keys are
 * PREFIX, a kind and an id: */
#define GL_KEY_TRIPLET "t:"        /* + triplet hex: a hash of GL_F_* */
#define GL_KEY_AWL "a:"            /* + key text (triplet_keytext: the pool
                                    * key, else the client network): a
                                    * hash of GL_A_* */
#define GL_KEY_NEW "n:"            /* + client network: a counter */
#define GL_KEY_MARK "m:"           /* + client network ("m:{NET}" in a
                                    * cluster: a slot of its own): a hash
                                    * of GL_M_*, with a TTL */
/* Fields of a triplet hash. */
#define GL_F_FIRST "f"             /* first seen, Unix seconds */
#define GL_F_PASSED "p"            /* "1" passed, "0" pending */
#define GL_F_NET "n"               /* the parts, for greygate-ctl list; this
                                    * one is the key text (a pool key or the
                                    * network: pool_kind_of tells them apart) */
#define GL_F_SENDER "s"
#define GL_F_RCPT "r"
#define GL_F_BACKUP "b"            /* "1": the backup_first flag; absent else */
/* Fields of a marks hash, Unix seconds on the server's clock. */
#define GL_M_TRAPPED_UNTIL "u"
#define GL_M_TRAPPED_AT "t"
/* Fields of an auto-whitelist hash. */
#define GL_A_COUNT "c"             /* passes counted */
#define GL_A_COUNTED "t"           /* when the last one was, Unix seconds */

/* PREFIX KIND {TAG} ID into BUF, or PREFIX KIND ID when TAG is NULL (the
 * braces: a Redis Cluster's hash tag, the triplet's key text): false when it
 * does not fit. */
bool gl_key_tagged(char *buf, size_t len, const char *prefix, const char *kind,
		   const char *tag, const char *id);

/* The script's KEYS for T under PREFIX (at most 64 bytes, the loader
 * says). TAGGED (a Redis Cluster) puts T's key text (triplet_keytext: its
 * pool key, else its network) in braces in every key, "PREFIXt:{KEY}HEX",
 * "PREFIXa:{KEY}", "PREFIXn:{KEY}" ("PREFIXn:{KEY}NET" for a pool key,
 * as the new-triplet cap counts by network): one hash tag, so the three
 * share one slot and the decision stays one EVALSHA there. Untagged
 * names are those of a plain Redis, unchanged. */
struct gl_script_keys {
	/* prefix (64) + "t:{" + a key text + "}" + the hex or a network */
	char triplet[72 + POOL_TEXT_MAX + NET_TEXT_MAX], awl[72 + POOL_TEXT_MAX + NET_TEXT_MAX],
		new_count[72 + POOL_TEXT_MAX + NET_TEXT_MAX];
};
void gl_script_keys(const char *prefix, const struct triplet *t, bool tagged,
		    struct gl_script_keys *k);

/* greylist_lua's KEYS then ARGV (the list above) for deciding T with P
 * under PREFIX (TAGGED: a cluster's keys), DRY_RUN for explain: one
 * source for the daemon (proxy/store_redis.c) and greygate-ctl
 * (lib/redis_admin.c), which put "EVALSHA SHA 3" or "EVAL SCRIPT 3" in
 * front. The strings live in A, and T's, as long as they do. */
#define GL_SCRIPT_NKEYS 3
#define GL_SCRIPT_NARGS (GL_SCRIPT_NKEYS + 14)
struct gl_script_args {
	struct gl_script_keys k;
	char num[8][24];
	const char *v[GL_SCRIPT_NARGS];
};
void gl_script_args(const char *prefix, const struct gl_params *p, const struct triplet *t,
		    bool tagged, bool dry_run, struct gl_script_args *a);

/* The key of NET's marks under PREFIX into BUF ("PREFIXm:NET", or
 * "PREFIXm:{NET}" when TAGGED: in a cluster, a slot of its own). */
bool gl_mark_key(const char *prefix, const char *net, bool tagged, char *buf, size_t len);

/* The script's answer R as *D: NULL, or what is wrong with R. */
const char *gl_script_answer(const redisReply *r, struct gl_decision *d);

#endif
