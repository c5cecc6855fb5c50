/*
 * sentinel: finding the Redis master through Redis Sentinel. The daemon's
 * store (asynchronous, proxy/redis_sentinel.c) and greygate-ctl (blocking,
 * sentinel_ask_each) both ask SENTINEL_ASK and read the answer here, so
 * that they accept the same answers and refuse the others alike.
 *
 * Promises: an address is accepted only when numeric (a name would need a
 * DNS lookup that blocks the daemon's loop), with a port in 1..65535.
 */
#ifndef GG_SENTINEL_H
#define GG_SENTINEL_H

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <sys/time.h>

/* Asks a sentinel for the master it knows by the name (the argument). */
#define SENTINEL_ASK "SENTINEL get-master-addr-by-name %s"

struct sentinel_addr {
	char host[INET6_ADDRSTRLEN];
	int port;
};

/* An entry of store.redis.sentinels ("ADDRESS:PORT", "[V6]:PORT"): true
 * and *A filled, or false. */
bool sentinel_parse(const char *entry, struct sentinel_addr *a);

/* Whether HOST PORT is a master address one may connect to. */
bool sentinel_addr_ok(const char *host, long port);

/* The answer R to SENTINEL_ASK: true and *A the master, or false and
 * *WHY what was wrong with it (valid while R is). *ERROR_REPLY tells that R
 * was an error reply (the store counts those by kind). */
bool sentinel_read_master(const redisReply *r, struct sentinel_addr *a, const char **why,
			  bool *error_reply);

/* How one sentinel failed, for the caller to tell. */
typedef void sentinel_report_fn(void *arg, const char *entry, const char *why);

/* Asks ENTRIES[0..N) (store.redis.sentinels) in that order for the master
 * NAME, each connection and answer under TV; the first that names one
 * wins: true and *A. Each sentinel that fails goes to REPORT (if not NULL).
 * Blocks: for greygate-ctl, never for the daemon's loop. */
bool sentinel_ask_each(char *const *entries, size_t n, const char *name, struct timeval tv,
		       struct sentinel_addr *a, sentinel_report_fn *report, void *arg);

/* Which sentinel to ask as the TRIED-th of a round of N that starts with
 * FIRST (the one that answered last). */
static inline size_t sentinel_turn(size_t first, size_t tried, size_t n)
{
	return (first + tried) % n;
}

#endif
