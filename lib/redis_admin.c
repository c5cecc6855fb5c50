#include "redis_admin.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "greylist_lua.h"
#include "redis_slots.h"
#include "sentinel.h"

/* How long one command may take once connected. */
#define IO_TIMEOUT_S 5
/* A walk's cursor in a cluster: the primary's index above, its SCAN cursor
 * below (Redis's cursors stay far below 2^56). */
#define NODE_SHIFT 56

struct rctx {
	redisContext *c;           /* where the next command goes */
	const struct gg_config *cfg;
	char host[256];            /* the master: store.redis.host/port or a sentinel's answer */
	int port;
	char err[256];
	redisReply *held;          /* keeps get()'s strings alive until the next call */
	/* A Redis Cluster (store.redis.cluster): a connection per primary of
	 * the map, and the keys' hash tags (greylist_lua.h); NULL map else. */
	struct slot_map *map;
	redisContext *node[SLOTS_MAX_NODES];
};

/* R, or NULL with x->err set (error replies included). */
static redisReply *checked(struct rctx *x, redisReply *r)
{
	if (!r) {
		snprintf(x->err, sizeof x->err, "%s", x->c->errstr);
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(x->err, sizeof x->err, "%s", r->str);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

static redisReply *cmd(struct rctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static redisReply *cmd(struct rctx *x, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(x->c, fmt, ap);
	va_end(ap);
	return checked(x, r);
}

/* For a command whose answer says nothing more than that it worked. */
static int done(redisReply *r)
{
	if (!r)
		return -1;
	freeReplyObject(r);
	return 0;
}

/* In a cluster, the next command goes to the primary serving KEY's slot;
 * false with x->err set when none does. */
static bool route(struct rctx *x, const char *key)
{
	if (!x->map)
		return true;
	unsigned slot = redis_key_slot(key, strlen(key));
	if (x->map->owner[slot] == SLOT_NOBODY) {
		snprintf(x->err, sizeof x->err, "no cluster node serves slot %u", slot);
		return false;
	}
	x->c = x->node[x->map->owner[slot]];
	return true;
}

/* KIND ID as a key of ours, tagged with NET in a cluster, and routed
 * there; false with x->err set. */
static bool key_of(struct rctx *x, char *buf, size_t len, const char *kind, const char *net,
		   const char *id)
{
	if (gl_key_tagged(buf, len, x->cfg->store.redis.prefix, kind, x->map ? net : NULL, id))
		return route(x, buf);
	snprintf(x->err, sizeof x->err, "key too long");
	return false;
}

static const char *str_or(const redisReply *r, const char *def)
{
	return r && r->type == REDIS_REPLY_STRING ? r->str : def;
}

/* Fills E from the triplet hash KEY and its TTL; *KEEP holds E's strings
 * (NULL: the key is gone). False on a failure. */
static bool fill_entry(struct rctx *x, const char *key, const char *hex, struct ctl_entry *e,
		       redisReply **keep)
{
	*keep = NULL;
	redisReply *h = cmd(x, "HMGET %s " GL_F_FIRST " " GL_F_PASSED " " GL_F_NET " "
			    GL_F_SENDER " " GL_F_RCPT " " GL_F_BACKUP, key);
	if (!h)
		return false;
	if (h->type != REDIS_REPLY_ARRAY || h->elements != 6 || h->element[0]->type != REDIS_REPLY_STRING) {
		freeReplyObject(h);
		return true; /* gone meanwhile */
	}
	redisReply *ttl = cmd(x, "TTL %s", key);
	*e = (struct ctl_entry){ hex, str_or(h->element[2], "?"), str_or(h->element[3], ""),
				 str_or(h->element[4], "?"),
				 strcmp(str_or(h->element[1], "0"), "1") == 0,
				 strtoll(h->element[0]->str, NULL, 10),
				 ttl && ttl->type == REDIS_REPLY_INTEGER ? ttl->integer : -1,
				 strcmp(str_or(h->element[5], "0"), "1") == 0 };
	if (ttl)
		freeReplyObject(ttl);
	*keep = h;
	return true;
}

/* One SCAN of the triplet keys matching PREFIX t: PATTERN from *CURSOR,
 * on x->c: the reply (an array of cursor and keys), or NULL (x->err set).
 * *CURSOR moves on. */
static redisReply *scan(struct rctx *x, uint64_t *cursor, size_t budget, const char *pattern)
{
	char from[24], count[24];  /* hiredis's format knows no %llu nor %zu */
	snprintf(from, sizeof from, "%llu", (unsigned long long)*cursor);
	snprintf(count, sizeof count, "%zu", budget);
	redisReply *r = cmd(x, "SCAN %s MATCH %s" GL_KEY_TRIPLET "%s COUNT %s", from,
			    x->cfg->store.redis.prefix, pattern, count);
	if (!r)
		return NULL;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(r);
		snprintf(x->err, sizeof x->err, "unexpected SCAN reply");
		return NULL;
	}
	*cursor = strtoull(r->element[0]->str, NULL, 10);
	return r;
}

/* The triplet hex of KEY (PREFIX t:HEX, or PREFIX t:{NET}HEX in a
 * cluster), or NULL when KEY is not one greygate writes. */
static const char *hex_of(const struct rctx *x, const char *key)
{
	const char *id = key + strlen(x->cfg->store.redis.prefix) + strlen(GL_KEY_TRIPLET);
	if (x->map) {
		const char *close = *id == '{' ? strchr(id, '}') : NULL;
		id = close ? close + 1 : NULL;
	}
	return id && strlen(id) == TRIPLET_HEX_LEN ? id : NULL;
}

/* A cluster's walk goes through its primaries in turn, each from SCAN
 * cursor 0 to 0 again; *CURSOR says which primary and where. */
static int r_walk(void *ctx, uint64_t *cursor, size_t budget,
		  bool (*fn)(void *arg, const struct ctl_entry *e), void *arg)
{
	struct rctx *x = ctx;
	size_t nodes = x->map ? x->map->nnodes : 1;
	size_t at = (size_t)(*cursor >> NODE_SHIFT);
	uint64_t sc = *cursor & ((1ULL << NODE_SHIFT) - 1);
	if (at >= nodes)
		return 0;
	if (x->map)
		x->c = x->node[at];
	redisReply *r = scan(x, &sc, budget, "*");
	if (!r)
		return -1;
	if (sc >> NODE_SHIFT) {
		freeReplyObject(r);
		snprintf(x->err, sizeof x->err, "SCAN cursor out of range");
		return -1;
	}
	if (sc == 0)
		at++;               /* this primary is done */
	*cursor = (uint64_t)at << NODE_SHIFT | sc;
	bool go_on = true;
	for (size_t i = 0; go_on && i < r->element[1]->elements; i++) {
		const redisReply *k = r->element[1]->element[i];
		const char *hex = k->type == REDIS_REPLY_STRING ? hex_of(x, k->str) : NULL;
		if (!hex)
			continue;
		struct ctl_entry e;
		redisReply *keep;
		if (!fill_entry(x, k->str, hex, &e, &keep)) {
			freeReplyObject(r);
			return -1;
		}
		if (keep) {
			go_on = fn(arg, &e);
			freeReplyObject(keep);
		}
	}
	freeReplyObject(r);
	return go_on && at < nodes;
}

static int r_get(void *ctx, const struct triplet *t, struct ctl_entry *e)
{
	struct rctx *x = ctx;
	if (x->held)
		freeReplyObject(x->held);
	x->held = NULL;
	char key[200];
	if (!key_of(x, key, sizeof key, GL_KEY_TRIPLET, triplet_keytext(t), t->hex) ||
	    !fill_entry(x, key, t->hex, e, &x->held))
		return -1;
	return x->held ? 1 : 0;
}

static int r_explain(void *ctx, const struct gl_params *p, const struct triplet *t,
		     struct gl_decision *d)
{
	struct rctx *x = ctx;
	struct gl_script_args a;
	gl_script_args(x->cfg->store.redis.prefix, p, t, x->map != NULL, true, &a);
	if (!route(x, a.k.triplet))
		return -1;
	const char *argv[3 + GL_SCRIPT_NARGS] = { "EVAL", greylist_lua, "3" };
	memcpy(argv + 3, a.v, sizeof a.v);
	redisReply *r = checked(x, redisCommandArgv(x->c, 3 + GL_SCRIPT_NARGS, argv, NULL));
	if (!r)
		return -1;
	const char *bad = gl_script_answer(r, d);
	if (bad)
		snprintf(x->err, sizeof x->err, "%s", bad);
	freeReplyObject(r);
	return bad ? -1 : 0;
}

/* First seen is now on the Redis clock, as the script writes it, unless
 * the triplet was seen before. */
static int r_pass(void *ctx, const struct triplet *t, int64_t lifetime)
{
	struct rctx *x = ctx;
	char key[200];
	if (!key_of(x, key, sizeof key, GL_KEY_TRIPLET, triplet_keytext(t), t->hex))
		return -1;
	redisReply *now = cmd(x, "TIME");
	if (!now)
		return -1;
	if (now->type != REDIS_REPLY_ARRAY || now->elements < 1 ||
	    now->element[0]->type != REDIS_REPLY_STRING) {
		freeReplyObject(now);
		snprintf(x->err, sizeof x->err, "unexpected TIME reply");
		return -1;
	}
	char first[24];
	snprintf(first, sizeof first, "%s", now->element[0]->str);
	freeReplyObject(now);
	return done(cmd(x, "HSETNX %s " GL_F_FIRST " %s", key, first)) < 0 ||
	       done(cmd(x, "HSET %s " GL_F_PASSED " 1 " GL_F_NET " %s " GL_F_SENDER " %s "
			GL_F_RCPT " %s", key, triplet_keytext(t), t->sender, t->rcpt)) < 0 ||
	       done(cmd(x, "EXPIRE %s %lld", key, (long long)lifetime)) < 0 ? -1 : 0;
}

/* A cluster's triplet key names its network, which HEX does not tell: the
 * key is looked for on every primary (a SCAN of each, as list does). 1 and
 * KEY found (the connection set to its node), 0 absent, -1 error. */
static int find_in_cluster(struct rctx *x, const char *hex, char *key, size_t len)
{
	char pattern[TRIPLET_HEX_LEN + 8];
	snprintf(pattern, sizeof pattern, "{*}%s", hex);
	for (size_t i = 0; i < x->map->nnodes; i++) {
		x->c = x->node[i];
		uint64_t sc = 0;
		do {
			redisReply *r = scan(x, &sc, 1000, pattern);
			if (!r)
				return -1;
			bool found = r->element[1]->elements > 0 &&
				     r->element[1]->element[0]->type == REDIS_REPLY_STRING;
			if (found)
				snprintf(key, len, "%s", r->element[1]->element[0]->str);
			freeReplyObject(r);
			if (found)
				return 1;
		} while (sc != 0);
	}
	return 0;
}

static int r_del(void *ctx, const char *hex)
{
	struct rctx *x = ctx;
	char key[200];
	if (x->map) {
		int f = find_in_cluster(x, hex, key, sizeof key);
		if (f <= 0)
			return f;
	} else if (!key_of(x, key, sizeof key, GL_KEY_TRIPLET, NULL, hex)) {
		return -1;
	}
	redisReply *r = cmd(x, "DEL %s", key);
	if (!r)
		return -1;
	int n = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
	freeReplyObject(r);
	return n;
}

static int r_whitelist(void *ctx, const char *net, int threshold, int64_t ttl)
{
	struct rctx *x = ctx;
	char key[200];
	if (!key_of(x, key, sizeof key, GL_KEY_AWL, net, x->map ? "" : net))
		return -1;
	return done(cmd(x, "HSET %s " GL_A_COUNT " %d " GL_A_COUNTED " 0", key, threshold)) < 0 ||
	       done(cmd(x, "EXPIRE %s %lld", key, (long long)ttl)) < 0 ? -1 : 0;
}

static bool count_one(void *arg, const struct ctl_entry *e)
{
	long *n = arg;
	n[0]++;
	n[1] += e->passed;
	return true;
}

static int r_stats(void *ctx, struct ctl_stats *out)
{
	struct rctx *x = ctx;
	long n[2] = { 0, 0 };
	uint64_t cursor = 0;
	int more;
	while ((more = r_walk(ctx, &cursor, 500, count_one, n)) > 0)
		;
	if (more < 0)
		return -1;
	if (x->map) {
		ctl_stat_str(out, "store", "redis-cluster");
		ctl_stat_num(out, "primaries", (long long)x->map->nnodes);
	} else {
		ctl_stat_str(out, "store", "redis");
		ctl_stat_str(out, "host", x->host);
		ctl_stat_num(out, "port", x->port);
	}
	ctl_stat_str(out, "prefix", x->cfg->store.redis.prefix);
	ctl_stat_num(out, "triplets", n[0]);
	ctl_stat_num(out, "passed", n[1]);
	ctl_stat_num(out, "pending", n[0] - n[1]);
	return 0;
}

static const char *r_error(void *ctx)
{
	return ((struct rctx *)ctx)->err;
}

static const struct ctl_store redis_ops = {
	r_walk, r_get, r_explain, r_pass, r_del, r_whitelist, r_stats, r_error,
};

static void tell_sentinel(void *diag, const char *entry, const char *why)
{
	fprintf(diag, "greygate-ctl: sentinel %s: %s\n", entry, why);
}

void redis_admin_close(void *ctx)
{
	struct rctx *x = ctx;
	if (!x)
		return;
	if (x->held)
		freeReplyObject(x->held);
	if (x->map) {
		for (size_t i = 0; i < SLOTS_MAX_NODES; i++)
			if (x->node[i])
				redisFree(x->node[i]);
		free(x->map);
	} else if (x->c) {
		redisFree(x->c);
	}
	free(x);
}

/* Connects x->c to HOST PORT, authenticated: true, or false with why on
 * DIAG (x->c NULL). */
static bool connect_to(struct rctx *x, const char *host, int port, FILE *diag)
{
	const struct gg_config *cfg = x->cfg;
	struct timeval tv = { cfg->store.redis.connect_timeout_ms / 1000,
			      (cfg->store.redis.connect_timeout_ms % 1000) * 1000 };
	x->c = redisConnectWithTimeout(host, port, tv);
	if (!x->c || x->c->err) {
		fprintf(diag, "greygate-ctl: cannot connect to redis %s:%d: %s\n", host, port,
			x->c ? x->c->errstr : "out of memory");
	} else {
		struct timeval io = { IO_TIMEOUT_S, 0 };
		redisSetTimeout(x->c, io);
		if (!cfg->store.redis.password[0] ||
		    done(cmd(x, "AUTH %s", cfg->store.redis.password)) == 0)
			return true;
		fprintf(diag, "greygate-ctl: redis %s:%d: %s\n", host, port, x->err);
	}
	if (x->c)
		redisFree(x->c);
	x->c = NULL;
	return false;
}

/* store.redis.cluster: the slot map from the first node listed that gives
 * one, then a connection to each of its primaries. */
static bool open_cluster(struct rctx *x, FILE *diag)
{
	const struct gg_config *cfg = x->cfg;
	if (!(x->map = calloc(1, sizeof *x->map))) {
		fprintf(diag, "greygate-ctl: out of memory\n");
		return false;
	}
	bool have = false;
	for (size_t i = 0; !have && i < cfg->store.redis.ncluster; i++) {
		struct sentinel_addr a;
		if (!sentinel_parse(cfg->store.redis.cluster[i], &a) || !connect_to(x, a.host, a.port, diag))
			continue;   /* the loader checked the entry; a failure is told */
		redisReply *r = cmd(x, "CLUSTER SLOTS");
		const char *bad = r ? slot_map_read(r, a.host, x->map) : x->err;
		if (bad)
			fprintf(diag, "greygate-ctl: redis %s: %s\n", cfg->store.redis.cluster[i], bad);
		have = !bad;
		if (r)
			freeReplyObject(r);
		redisFree(x->c);
		x->c = NULL;
	}
	if (!have) {
		fprintf(diag, "greygate-ctl: no node in store.redis.cluster gave the slot map\n");
		return false;
	}
	for (size_t i = 0; i < x->map->nnodes; i++) {
		if (!connect_to(x, x->map->node[i].host, x->map->node[i].port, diag))
			return false;
		x->node[i] = x->c;
	}
	x->c = x->node[0];   /* for what has no key (TIME) */
	return true;
}

const struct ctl_store *redis_admin_open(const struct gg_config *cfg, void **ctx, FILE *diag)
{
	struct rctx *x = calloc(1, sizeof *x);
	if (!x) {
		fprintf(diag, "greygate-ctl: out of memory\n");
		return NULL;
	}
	x->cfg = cfg;
	if (cfg->store.kind == STORE_REDIS_CLUSTER) {
		if (!open_cluster(x, diag))
			goto fail;
		*ctx = x;
		return &redis_ops;
	}
	snprintf(x->host, sizeof x->host, "%s", cfg->store.redis.host);
	x->port = cfg->store.redis.port;
	struct timeval tv = { cfg->store.redis.connect_timeout_ms / 1000, (cfg->store.redis.connect_timeout_ms % 1000) * 1000 };
	struct sentinel_addr m;
	if (cfg->store.redis.nsentinels) {
		if (!sentinel_ask_each(cfg->store.redis.sentinels, cfg->store.redis.nsentinels, cfg->store.redis.master_name, tv, &m,
				       tell_sentinel, diag)) {
			fprintf(diag, "greygate-ctl: no sentinel named the master '%s'\n",
				cfg->store.redis.master_name);
			goto fail;
		}
		snprintf(x->host, sizeof x->host, "%s", m.host);
		x->port = m.port;
	}
	x->c = redisConnectWithTimeout(x->host, x->port, tv);
	if (!x->c || x->c->err) {
		fprintf(diag, "greygate-ctl: cannot connect to redis %s:%d: %s\n", x->host, x->port,
			x->c ? x->c->errstr : "out of memory");
		goto fail;
	}
	struct timeval io = { IO_TIMEOUT_S, 0 };
	redisSetTimeout(x->c, io);
	if ((cfg->store.redis.password[0] && done(cmd(x, "AUTH %s", cfg->store.redis.password)) < 0) ||
	    (cfg->store.redis.db && done(cmd(x, "SELECT %d", cfg->store.redis.db)) < 0)) {
		fprintf(diag, "greygate-ctl: redis: %s\n", x->err);
		goto fail;
	}
	*ctx = x;
	return &redis_ops;
fail:
	redis_admin_close(x);
	return NULL;
}
