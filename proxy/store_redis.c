/*
 * The Redis store: hiredis's asynchronous API on our event loop. One
 * decision is one EVALSHA of greylist_lua, one read or setting of a
 * network's marks one of marks_lua (EVAL once when Redis answers
 * NOSCRIPT, e.g. after a restart or SCRIPT FLUSH).
 *
 * hiredis 0.14 has no per-command timeout, so each request carries its own
 * timer: when it fires the session gets its answer (a store failure) at
 * once and the late reply, if any, is dropped. Several timeouts in a row
 * mean Redis is stuck: the connection is cut and re-made with back-off, so
 * requests fail fast meanwhile instead of each waiting a full timeout.
 *
 * Error replies are classified by their first word (one table, errkinds)
 * and counted by kind. Some say another connection would do better:
 * NOAUTH/WRONGPASS (the reconnect authenticates again), READONLY (a
 * replica, after a failover); these drop the connection, and the back-off
 * keeps growing across such drops until a decision succeeds again, so a
 * server that refuses every connection's decisions is not hammered.
 * Others (OOM at maxmemory, BUSY, ...) leave the connection up but fail the
 * decision: health looks at the decisions of the last HEALTH_WINDOW seconds
 * (a marks request counts as one), not only at the connection, and a
 * change either way is logged once.
 *
 * With store.redis.sentinels, every (re)connect first asks the sentinels in
 * turn "SENTINEL get-master-addr-by-name NAME" (each under the connect and
 * request timeouts), connects to the address named, and only uses the
 * connection once ROLE says it is a master. A broken connection, stuck
 * requests or a READONLY/NOAUTH/LOADING/MASTERDOWN answer send it back to the
 * sentinels (with the same back-off). A subscription to +switch-master on
 * one sentinel makes a failover take effect at once instead of at the next
 * failure.
 *
 * In a Redis Cluster (redis_cluster.c) a decision goes to the primary that
 * serves the slot of its keys (they share one hash tag): a MOVED reply
 * corrects the slot map and sends it there, an ASK sends it once to the
 * node named, after ASKING; at most MAX_REDIRECTS of them, then the
 * decision fails. Stuck requests re-make the connection of their node.
 *
 * This file sends and answers decisions; the connection is redis_conn.c's,
 * the sentinels redis_sentinel.c's, and each instance's state is one
 * struct redis_store (redis_priv.h).
 */
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "greylist_lua.h"
#include "redis_priv.h"
#include "redis_slots.h"

#define STUCK_AFTER 3              /* timeouts in a row */
#define MAX_REDIRECTS 3            /* MOVED/ASK followed for one decision */
#define NARGS (3 + GL_SCRIPT_NARGS) /* at most: EVALSHA sha 3, then the script's */

struct store_req {
	struct redis_store *owner;
	store_done_fn done;        /* NULL once answered or cancelled */
	void *arg;
	struct event *timer;
	bool retried;              /* sent again as EVAL after NOSCRIPT */
	const char *script;        /* greylist_lua, or marks_lua for a marks request */
	int nargs;
	unsigned slot;             /* cluster: of the keys */
	int node;                  /* cluster: where it was sent last */
	int redirects;
	bool asking;               /* cluster: to ask_to, after ASKING */
	struct sentinel_addr ask_to;
	char *argv[NARGS];
	size_t argvlen[NARGS];
	/* the argument strings: the three keys, each bounded by its array,
	 * the key text, the sender and the recipient; then the script's SHA,
	 * eight numbers of at most 24 bytes and the few literals, under 256
	 * together. Any triplet fits: "too long" below never happens. */
	char buf[sizeof(struct gl_script_keys) + POOL_TEXT_MAX + 2 * TRIPLET_PART_MAX + 256];
};

static struct redis_store *redis_of(void *s)
{
	return (struct redis_store *)s;   /* base is the first member */
}

/* REASON: NULL when RES is a decision, else a word for what failed. */
static void answer(struct store_req *r, const struct store_result *res, const char *reason)
{
	store_done_fn done = r->done;
	r->done = NULL;
	if (r->timer)
		evtimer_del(r->timer);
	if (done) {
		redis_note_decision(r->owner, reason, res->error);
		done(r->arg, res);
	}
}

static void answer_error(struct store_req *r, const char *reason, const char *why)
{
	struct store_result res = { .ok = false, .error = why };
	answer(r, &res, reason);
}

static void req_free(struct store_req *r)
{
	if (r->timer)
		event_free(r->timer);
	free(r);
}

/* ---- decisions ---- */

static bool send_request(struct store_req *r);

static void on_reply(redisAsyncContext *c, void *reply, void *priv)
{
	struct store_req *r = priv;
	struct redis_store *R = r->owner;
	redisReply *rep = reply;
	if (!r->done) {           /* timed out or cancelled already */
		req_free(r);
		return;
	}
	if (!rep) {
		answer_error(r, "connection-lost", "redis connection lost");
		req_free(r);
		return;
	}
	R->timeouts_in_row = 0;
	if (rep->type == REDIS_REPLY_ERROR) {
		if (R->cl && r->redirects < MAX_REDIRECTS &&
		    redis_cluster_redirect(R, r->node, rep->str, &r->ask_to, &r->asking)) {
			r->redirects++;
			send_request(r);
			return;
		}
		const struct redis_errkind *k = c == R->ac ? redis_master_error(R, "redis error", rep->str)
						: R->cl    ? redis_cluster_error(R, r->node, rep->str)
							   : redis_count_error(rep->str);
		if (k->kind == SE_NOSCRIPT && !r->retried && (R->ac || R->cl)) {
			r->retried = true;
			send_request(r);
			return;
		}
		char why[200], word[sizeof R->fail_reason];
		snprintf(why, sizeof why, "redis error: %s", rep->str);
		snprintf(word, sizeof word, "%.*s", (int)strcspn(rep->str, " "), rep->str);
		answer_error(r, word, why);
		req_free(r);
		return;
	}
	struct store_result res = { .ok = true };
	const char *bad = r->script == marks_lua ? gl_marks_answer(rep, &res.marks)
						 : gl_script_answer(rep, &res.d);
	if (bad) {
		answer_error(r, "bad-reply", bad);
		req_free(r);
		return;
	}
	R->dropped_for_replies = false;
	R->backoff_ms = 0;
	answer(r, &res, NULL);
	req_free(r);
}

/* Returns false after answering and freeing R when it cannot be sent. */
static bool send_request(struct store_req *r)
{
	if (r->retried) {
		r->argv[0] = "EVAL";
		r->argvlen[0] = 4;
		r->argv[1] = (char *)r->script;
		r->argvlen[1] = strlen(r->script);
	}
	redisAsyncContext *ac = r->owner->ac;
	if (r->owner->cl) {
		ac = redis_cluster_conn(r->owner, r->slot, r->asking ? &r->ask_to : NULL, &r->node);
		if (!ac) {
			answer_error(r, "node-down", "no connection to the cluster node for the slot");
			req_free(r);
			return false;
		}
		if (r->asking)
			redisAsyncCommand(ac, NULL, NULL, "ASKING");
	}
	if (redisAsyncCommandArgv(ac, on_reply, r, r->nargs, (const char **)r->argv, r->argvlen) !=
	    REDIS_OK) {
		answer_error(r, "send-failed", "cannot send the command to redis");
		req_free(r);
		return false;
	}
	return true;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct store_req *r = arg;
	struct redis_store *R = r->owner;
	/* The reply may still come; on_reply frees R then. */
	answer_error(r, "timeout", "redis timeout");
	if (++R->timeouts_in_row < STUCK_AFTER)
		return;
	if (R->cl) {
		R->timeouts_in_row = 0;
		redis_cluster_node_failed(R, r->node, "several requests timed out in a row");
	} else {
		redis_drop(R, "several requests timed out in a row");
	}
}

/* Appends S to R's buffer as argument I. */
static bool put_arg(struct store_req *r, size_t *used, int i, const char *s)
{
	size_t n = strlen(s);
	if (*used + n + 1 > sizeof r->buf)
		return false;
	memcpy(r->buf + *used, s, n + 1);
	r->argv[i] = r->buf + *used;
	r->argvlen[i] = n;
	*used += n + 1;
	return true;
}

/* Sends SCRIPT (by its SHA) with the NARGS arguments ARGS, routed in a
 * cluster by the slot of ARGS[3], its first key; NULL when answered
 * already (a failure). */
static struct store_req *redis_send(struct redis_store *R, const char *script, const char *sha,
				    int nargs, const char *const *args, store_done_fn done,
				    void *arg)
{
	struct store_result fail = { .ok = false, .error = "redis not connected" };
	if (R->state != R_UP || !(R->ac || R->cl)) {
		done(arg, &fail);
		return NULL;
	}
	struct store_req *r = calloc(1, sizeof *r);
	if (!r) {
		fail.error = "out of memory";
		done(arg, &fail);
		return NULL;
	}
	r->owner = R;
	r->done = done;
	r->arg = arg;
	r->script = script;
	r->nargs = nargs;
	/* the slot only routes a cluster's requests (a CRC16 of the key,
	 * bit by bit: 0.45 % of greygate's CPU in a storm, for nothing
	 * without a cluster; R->cl is fixed for the store's life) */
	r->slot = R->cl ? redis_key_slot(args[3], strlen(args[3])) : 0;
	size_t used = 0;
	for (int i = 0; i < nargs; i++) {
		if (!put_arg(r, &used, i, i == 1 ? sha : args[i])) {
			free(r);
			fail.error = "triplet too long for a redis request";
			done(arg, &fail);
			return NULL;
		}
	}
	r->timer = evtimer_new(R->loop, on_timeout, r);
	int ms = R->cfg->store.redis.timeout_ms;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	if (!r->timer || evtimer_add(r->timer, &tv) < 0) {
		req_free(r);
		fail.error = "out of memory";
		done(arg, &fail);
		return NULL;
	}
	return send_request(r) ? r : NULL;
}

static struct store_req *redis_decide(struct store *s, const struct gl_params *p,
				      const struct triplet *t, bool dry_run, store_done_fn done,
				      void *arg)
{
	struct redis_store *R = redis_of(s);
	struct gl_script_args a;
	gl_script_args(R->cfg->store.redis.prefix, p, t, R->cl != NULL, dry_run, &a);
	const char *args[NARGS] = { "EVALSHA", NULL, "3" };
	memcpy(args + 3, a.v, sizeof a.v);
	return redis_send(R, greylist_lua, R->sha, NARGS, args, done, arg);
}

static struct store_req *redis_marks(struct store *s, const char *net,
				     const struct gl_mark_set *set, store_done_fn done, void *arg)
{
	struct redis_store *R = redis_of(s);
	char key[72 + NET_TEXT_MAX], nums[2][24];
	if (!gl_mark_key(R->cfg->store.redis.prefix, net, R->cl != NULL, key, sizeof key)) {
		struct store_result fail = { .ok = false, .error = "marks key too long" };
		done(arg, &fail);
		return NULL;
	}
	snprintf(nums[0], sizeof nums[0], "%lld", (long long)set->lifetime);
	snprintf(nums[1], sizeof nums[1], "%lld", (long long)set->ttl);
	const char *args[] = { "EVALSHA", NULL, "1", key, gl_mark_op(set->kind), nums[0], nums[1] };
	return redis_send(R, marks_lua, R->marks_sha, 7, args, done, arg);
}

static void redis_cancel(struct store *s, struct store_req *r)
{
	(void)s;
	if (r) {
		r->done = NULL;      /* freed when its reply (or the disconnect) arrives */
		evtimer_del(r->timer);
	}
}

/* Called every second (worker.c): judging here too lets a failing store
 * recover once its failures age out, with or without traffic. */
static bool redis_healthy(struct store *s)
{
	struct redis_store *R = redis_of(s);
	redis_judge(R);
	return R->state == R_UP && !R->failing;
}

static void redis_close(struct store *s)
{
	struct redis_store *R = redis_of(s);
	if (R->ac) {
		redisAsyncContext *c = R->ac;
		R->ac = NULL;
		redisAsyncFree(c);
	}
	redis_sentinel_abandon(R);
	redis_unsubscribe(R);
	if (R->cl)
		redis_cluster_close(R);
	if (R->retry_timer)
		event_free(R->retry_timer);
	if (R->connect_timer)
		event_free(R->connect_timer);
	if (R->sentinel_timer)
		event_free(R->sentinel_timer);
	if (R->pc_timer)
		event_free(R->pc_timer);
	free(R->sent);
	gg_config_unref(R->cfg);
	free(R);
}

/* greygate-ctl talks to Redis itself: no admin here. */
static const struct store_ops ops = {
	.decide = redis_decide,
	.marks = redis_marks,
	.cancel = redis_cancel,
	.healthy = redis_healthy,
	.close = redis_close,
};

static void script_sha1(const char *script, char sha[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	EVP_Digest(script, strlen(script), md, &n, EVP_sha1(), NULL);
	static const char hex[] = "0123456789abcdef";
	for (unsigned i = 0; i < n && i < 20; i++) {
		sha[2 * i] = hex[md[i] >> 4];
		sha[2 * i + 1] = hex[md[i] & 15];
	}
	sha[40] = 0;
}

struct store *store_redis_open(struct event_base *b, struct gg_config *c)
{
	struct redis_store *R = calloc(1, sizeof *R);
	if (!R) {
		log_msg(LOG_LVL_ERROR, "store", "out of memory creating the redis store");
		return NULL;
	}
	R->base = (struct store){ &ops, c->store.kind };
	R->loop = b;
	R->cfg = gg_config_ref(c);
	R->state = R_DOWN;
	script_sha1(greylist_lua, R->sha);
	script_sha1(marks_lua, R->marks_sha);
	snprintf(R->mhost, sizeof R->mhost, "%s", c->store.redis.host);
	R->mport = c->store.redis.port;
	if (redis_conn_init(R) < 0) {
		log_msg(LOG_LVL_ERROR, "store", "out of memory creating the redis store");
		redis_close(&R->base);
		return NULL;
	}
	if (c->store.redis.nsentinels && redis_sentinel_init(R) < 0) {
		redis_close(&R->base);
		return NULL;
	}
	if (c->store.kind == STORE_REDIS_CLUSTER) {
		if (redis_cluster_init(R) < 0) {
			redis_close(&R->base);
			return NULL;
		}
		return &R->base;   /* up once a node gives the slot map */
	}
	/* Start-up does not wait for Redis: until it answers, decisions follow
	 * store.failure, and the connection is retried in the background. */
	redis_connect_now(R);
	return &R->base;
}
