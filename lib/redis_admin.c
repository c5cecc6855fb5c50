#include "redis_admin.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "greylist_lua.h"
#include "sentinel.h"

/* How long one command may take once connected. */
#define IO_TIMEOUT_S 5

struct rctx {
	redisContext *c;
	const struct gg_config *cfg;
	char host[256];            /* the master: store.redis.host/port or a sentinel's answer */
	int port;
	char err[256];
	redisReply *held;          /* keeps get()'s strings alive until the next call */
};

/* A reply, or NULL with x->err set (error replies included). */
static redisReply *cmd(struct rctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static redisReply *cmd(struct rctx *x, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(x->c, fmt, ap);
	va_end(ap);
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

/* For a command whose answer says nothing more than that it worked. */
static int done(redisReply *r)
{
	if (!r)
		return -1;
	freeReplyObject(r);
	return 0;
}

/* KIND ID as a key of ours, or false with x->err set. */
static bool key_of(struct rctx *x, char *buf, size_t len, const char *kind, const char *id)
{
	if (gl_key(buf, len, x->cfg->store.redis.prefix, kind, id))
		return true;
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
			    GL_F_SENDER " " GL_F_RCPT, key);
	if (!h)
		return false;
	if (h->type != REDIS_REPLY_ARRAY || h->elements != 5 || h->element[0]->type != REDIS_REPLY_STRING) {
		freeReplyObject(h);
		return true; /* gone meanwhile */
	}
	redisReply *ttl = cmd(x, "TTL %s", key);
	*e = (struct ctl_entry){ hex, str_or(h->element[2], "?"), str_or(h->element[3], ""),
				 str_or(h->element[4], "?"),
				 strcmp(str_or(h->element[1], "0"), "1") == 0,
				 strtoll(h->element[0]->str, NULL, 10),
				 ttl && ttl->type == REDIS_REPLY_INTEGER ? ttl->integer : -1 };
	if (ttl)
		freeReplyObject(ttl);
	*keep = h;
	return true;
}

static int r_walk(void *ctx, uint64_t *cursor, size_t budget,
		  bool (*fn)(void *arg, const struct ctl_entry *e), void *arg)
{
	struct rctx *x = ctx;
	const char *prefix = x->cfg->store.redis.prefix;
	size_t plen = strlen(prefix) + strlen(GL_KEY_TRIPLET);
	char from[24], count[24];  /* hiredis's format knows no %llu nor %zu */
	snprintf(from, sizeof from, "%llu", (unsigned long long)*cursor);
	snprintf(count, sizeof count, "%zu", budget);
	redisReply *r = cmd(x, "SCAN %s MATCH %s" GL_KEY_TRIPLET "* COUNT %s", from, prefix, count);
	if (!r)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(r);
		snprintf(x->err, sizeof x->err, "unexpected SCAN reply");
		return -1;
	}
	*cursor = strtoull(r->element[0]->str, NULL, 10);
	bool go_on = true;
	for (size_t i = 0; go_on && i < r->element[1]->elements; i++) {
		const redisReply *k = r->element[1]->element[i];
		if (k->type != REDIS_REPLY_STRING || strlen(k->str) < plen)
			continue;           /* SCAN's MATCH makes it one of ours */
		struct ctl_entry e;
		redisReply *keep;
		if (!fill_entry(x, k->str, k->str + plen, &e, &keep)) {
			freeReplyObject(r);
			return -1;
		}
		if (keep) {
			go_on = fn(arg, &e);
			freeReplyObject(keep);
		}
	}
	freeReplyObject(r);
	return go_on && *cursor != 0;
}

static int r_get(void *ctx, const struct triplet *t, struct ctl_entry *e)
{
	struct rctx *x = ctx;
	if (x->held)
		freeReplyObject(x->held);
	x->held = NULL;
	char key[200];
	if (!key_of(x, key, sizeof key, GL_KEY_TRIPLET, t->hex) ||
	    !fill_entry(x, key, t->hex, e, &x->held))
		return -1;
	return x->held ? 1 : 0;
}

static int r_explain(void *ctx, const struct gl_params *p, const struct triplet *t,
		     struct gl_decision *d)
{
	struct rctx *x = ctx;
	struct gl_script_keys k;
	gl_script_keys(x->cfg->store.redis.prefix, t, &k);
	redisReply *r = cmd(x, "EVAL %s 3 %s %s %s %lld %lld %lld %d %d 1 %s %s %s", greylist_lua,
			    k.triplet, k.awl, k.new_count, (long long)p->delay,
			    (long long)p->retry_window, (long long)p->pass_lifetime, p->awl_threshold,
			    p->max_new_per_client, triplet_keytext(t), t->sender, t->rcpt);
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
	if (!key_of(x, key, sizeof key, GL_KEY_TRIPLET, t->hex))
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

static int r_del(void *ctx, const char *hex)
{
	struct rctx *x = ctx;
	char key[200];
	if (!key_of(x, key, sizeof key, GL_KEY_TRIPLET, hex))
		return -1;
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
	if (!key_of(x, key, sizeof key, GL_KEY_AWL, net))
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
	ctl_stat_str(out, "store", "redis");
	ctl_stat_str(out, "host", x->host);
	ctl_stat_num(out, "port", x->port);
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
	if (x->c)
		redisFree(x->c);
	free(x);
}

const struct ctl_store *redis_admin_open(const struct gg_config *cfg, void **ctx, FILE *diag)
{
	struct rctx *x = calloc(1, sizeof *x);
	if (!x) {
		fprintf(diag, "greygate-ctl: out of memory\n");
		return NULL;
	}
	x->cfg = cfg;
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
