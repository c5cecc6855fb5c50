/*
 * The Redis store: hiredis's asynchronous API on our event loop. One
 * decision is one EVALSHA of greylist_lua (EVAL once when Redis answers
 * NOSCRIPT, e.g. after a restart or SCRIPT FLUSH).
 *
 * hiredis 0.14 has no per-command timeout, so each request carries its own
 * timer: when it fires the session gets its answer (a store failure) at
 * once and the late reply, if any, is dropped. Several timeouts in a row
 * mean Redis is stuck: the connection is cut and re-made with back-off, so
 * requests fail fast meanwhile instead of each waiting a full timeout.
 */
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "greylist_lua.h"
#include "log.h"
#include "store.h"

#define STUCK_AFTER 3              /* timeouts in a row */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define NARGS 15                   /* EVALSHA sha 3 k1 k2 k3 + 9 ARGV */

enum rstate { R_DOWN, R_CONNECTING, R_UP };

struct store_req {
	store_done_fn done;        /* NULL once answered or cancelled */
	void *arg;
	struct event *timer;
	bool retried;              /* sent again as EVAL after NOSCRIPT */
	char *argv[NARGS];
	size_t argvlen[NARGS];
	char buf[1024];            /* holds the argument strings */
};

static struct event_base *base;
static struct gg_config *cfg;      /* connection settings fixed at start */
static redisAsyncContext *ac;
static enum rstate state = R_DOWN;
static struct event *retry_timer, *connect_timer;
static int backoff_ms;
static int timeouts_in_row;
static char sha[41];
static unsigned long long failures;

static void schedule_reconnect(void);

static void log_store(enum log_level lvl, const char *what, const char *detail)
{
	struct logline l;
	ll_begin(&l, lvl, "store");
	ll_str(&l, "store", "redis");
	ll_str(&l, "redis", cfg->store.redis.host);
	ll_int(&l, "port", cfg->store.redis.port);
	ll_str(&l, "state", what);
	if (detail)
		ll_str(&l, "detail", detail);
	ll_emit(&l);
}

static void answer(struct store_req *r, const struct store_result *res)
{
	store_done_fn done = r->done;
	r->done = NULL;
	if (r->timer)
		evtimer_del(r->timer);
	if (done) {
		if (!res->ok)
			failures++;
		done(r->arg, res);
	}
}

static void answer_error(struct store_req *r, const char *why)
{
	struct store_result res = { .ok = false, .error = why };
	answer(r, &res);
}

static void req_free(struct store_req *r)
{
	if (r->timer)
		event_free(r->timer);
	free(r);
}

/* ---- connection ---- */

static void drop_connection(const char *why)
{
	if (!ac)
		return;
	log_store(LOG_LVL_WARNING, "disconnecting", why);
	redisAsyncContext *c = ac;
	ac = NULL;
	state = R_DOWN;
	/* Pending callbacks run now with a NULL reply and answer their sessions. */
	redisAsyncFree(c);
	schedule_reconnect();
}

static void on_connected(const redisAsyncContext *c, int status)
{
	if (c != ac)
		return;
	evtimer_del(connect_timer);
	if (status != REDIS_OK) {
		log_store(LOG_LVL_WARNING, "connect-failed", c->errstr);
		ac = NULL;            /* hiredis frees it after this callback */
		state = R_DOWN;
		schedule_reconnect();
		return;
	}
	state = R_UP;
	backoff_ms = 0;
	timeouts_in_row = 0;
	log_store(LOG_LVL_INFO, "connected", NULL);
}

static void on_disconnected(const redisAsyncContext *c, int status)
{
	if (c != ac)
		return; /* one we dropped on purpose */
	log_store(LOG_LVL_WARNING, "disconnected", status == REDIS_OK ? "closed" : c->errstr);
	ac = NULL;
	state = R_DOWN;
	schedule_reconnect();
}

static void on_setup_reply(redisAsyncContext *c, void *reply, void *priv)
{
	(void)c;
	redisReply *r = reply;
	if (r && r->type == REDIS_REPLY_ERROR)
		log_store(LOG_LVL_ERROR, priv, r->str);
}

static void connect_now(void)
{
	ac = redisAsyncConnect(cfg->store.redis.host, cfg->store.redis.port);
	if (!ac || ac->err) {
		log_store(LOG_LVL_WARNING, "connect-failed", ac ? ac->errstr : "out of memory");
		if (ac)
			redisAsyncFree(ac);
		ac = NULL;
		schedule_reconnect();
		return;
	}
	state = R_CONNECTING;
	redisLibeventAttach(ac, base);
	redisAsyncSetConnectCallback(ac, on_connected);
	redisAsyncSetDisconnectCallback(ac, on_disconnected);
	struct timeval tv = { cfg->store.redis.connect_timeout_ms / 1000,
			      (cfg->store.redis.connect_timeout_ms % 1000) * 1000 };
	evtimer_add(connect_timer, &tv);
	/* Queued now, sent as soon as the socket is up, ahead of any decision. */
	if (cfg->store.redis.password[0])
		redisAsyncCommand(ac, on_setup_reply, "auth-failed", "AUTH %s",
				  cfg->store.redis.password);
	if (cfg->store.redis.db)
		redisAsyncCommand(ac, on_setup_reply, "select-failed", "SELECT %d",
				  cfg->store.redis.db);
	redisAsyncCommand(ac, on_setup_reply, "script-load-failed", "SCRIPT LOAD %s", greylist_lua);
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (state != R_CONNECTING || !ac)
		return;
	log_store(LOG_LVL_WARNING, "connect-failed", "timeout");
	redisAsyncContext *c = ac;
	ac = NULL;
	state = R_DOWN;
	redisAsyncFree(c);
	schedule_reconnect();
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	connect_now();
}

static void schedule_reconnect(void)
{
	backoff_ms = backoff_ms ? backoff_ms * 2 : BACKOFF_MIN_MS;
	if (backoff_ms > BACKOFF_MAX_MS)
		backoff_ms = BACKOFF_MAX_MS;
	struct timeval tv = { backoff_ms / 1000, (backoff_ms % 1000) * 1000 };
	evtimer_add(retry_timer, &tv);
}

/* ---- decisions ---- */

static bool send_request(struct store_req *r);

static void on_reply(redisAsyncContext *c, void *reply, void *priv)
{
	(void)c;
	struct store_req *r = priv;
	redisReply *rep = reply;
	if (!r->done) {           /* timed out or cancelled already */
		req_free(r);
		return;
	}
	if (!rep) {
		answer_error(r, "redis connection lost");
		req_free(r);
		return;
	}
	timeouts_in_row = 0;
	if (rep->type == REDIS_REPLY_ERROR) {
		if (!r->retried && strncmp(rep->str, "NOSCRIPT", 8) == 0 && ac) {
			r->retried = true;
			send_request(r);
			return;
		}
		char why[200];
		snprintf(why, sizeof why, "redis error: %s", rep->str);
		answer_error(r, why);
		req_free(r);
		return;
	}
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 5 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER ||
	    rep->element[1]->type != REDIS_REPLY_STRING ||
	    rep->element[2]->type != REDIS_REPLY_INTEGER ||
	    rep->element[3]->type != REDIS_REPLY_INTEGER ||
	    rep->element[4]->type != REDIS_REPLY_INTEGER) {
		answer_error(r, "unexpected reply from the greylist script");
		req_free(r);
		return;
	}
	struct store_result res = { .ok = true };
	res.d.action = rep->element[0]->integer == 0 ? GL_PASS : GL_GREYLIST;
	const char *reason = rep->element[1]->str;
	static const enum gl_reason reasons[] = { GL_REASON_NEW, GL_REASON_EARLY,
						  GL_REASON_RETRY_WINDOW_EXPIRED,
						  GL_REASON_TRIPLET, GL_REASON_AWL };
	bool known = false;
	for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
		if (strcmp(reason, gl_reason_name(reasons[i])) == 0) {
			res.d.reason = reasons[i];
			known = true;
		}
	if (!known) {
		answer_error(r, "unknown reason from the greylist script");
		req_free(r);
		return;
	}
	res.d.delay_left = rep->element[2]->integer;
	res.d.waited = rep->element[3]->integer;
	res.d.capped = rep->element[4]->integer != 0;
	answer(r, &res);
	req_free(r);
}

/* Returns false after answering and freeing R when it cannot be sent. */
static bool send_request(struct store_req *r)
{
	if (r->retried) {
		r->argv[0] = "EVAL";
		r->argvlen[0] = 4;
		r->argv[1] = (char *)greylist_lua;
		r->argvlen[1] = strlen(greylist_lua);
	}
	if (redisAsyncCommandArgv(ac, on_reply, r, NARGS, (const char **)r->argv, r->argvlen) !=
	    REDIS_OK) {
		answer_error(r, "cannot send the command to redis");
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
	/* The reply may still come; on_reply frees R then. */
	answer_error(r, "redis timeout");
	if (++timeouts_in_row >= STUCK_AFTER)
		drop_connection("several requests timed out in a row");
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

static struct store_req *redis_decide(const struct gg_config *c, const struct triplet *t,
				      bool dry_run, store_done_fn done, void *arg)
{
	struct store_result fail = { .ok = false, .error = "redis not connected" };
	if (state != R_UP || !ac) {
		failures++;
		done(arg, &fail);
		return NULL;
	}
	struct store_req *r = calloc(1, sizeof *r);
	if (!r) {
		fail.error = "out of memory";
		failures++;
		done(arg, &fail);
		return NULL;
	}
	r->done = done;
	r->arg = arg;
	const char *prefix = cfg->store.redis.prefix;
	char k1[128], k2[128], k3[128], nums[5][24];
	snprintf(k1, sizeof k1, "%s" GL_KEY_TRIPLET "%s", prefix, t->hex);
	snprintf(k2, sizeof k2, "%s" GL_KEY_AWL "%s", prefix, t->net);
	snprintf(k3, sizeof k3, "%s" GL_KEY_NEW "%s", prefix, t->net);
	snprintf(nums[0], sizeof nums[0], "%d", c->greylist.delay);
	snprintf(nums[1], sizeof nums[1], "%d", c->greylist.retry_window);
	snprintf(nums[2], sizeof nums[2], "%d", c->greylist.pass_lifetime);
	snprintf(nums[3], sizeof nums[3], "%d", c->greylist.awl_threshold);
	snprintf(nums[4], sizeof nums[4], "%d", c->greylist.max_new_per_client);
	size_t used = 0;
	const char *args[NARGS] = { "EVALSHA", sha, "3", k1, k2, k3, nums[0], nums[1], nums[2],
				    nums[3], nums[4], dry_run ? "1" : "0", t->net, t->sender, t->rcpt };
	for (int i = 0; i < NARGS; i++) {
		if (!put_arg(r, &used, i, args[i])) {
			free(r);
			fail.error = "triplet too long for a redis request";
			failures++;
			done(arg, &fail);
			return NULL;
		}
	}
	r->timer = evtimer_new(base, on_timeout, r);
	struct timeval tv = { c->store.redis.timeout_ms / 1000, (c->store.redis.timeout_ms % 1000) * 1000 };
	if (!r->timer || evtimer_add(r->timer, &tv) < 0) {
		req_free(r);
		fail.error = "out of memory";
		failures++;
		done(arg, &fail);
		return NULL;
	}
	return send_request(r) ? r : NULL;
}

static void redis_cancel(struct store_req *r)
{
	if (r) {
		r->done = NULL;      /* freed when its reply (or the disconnect) arrives */
		evtimer_del(r->timer);
	}
}

static bool redis_healthy(void)
{
	return state == R_UP;
}

static void redis_close(void)
{
	if (ac) {
		redisAsyncContext *c = ac;
		ac = NULL;
		redisAsyncFree(c);
	}
	event_free(retry_timer);
	event_free(connect_timer);
	gg_config_unref(cfg);
}

static const struct store_ops ops = {
	.name = "redis",
	.decide = redis_decide,
	.cancel = redis_cancel,
	.healthy = redis_healthy,
	.close = redis_close,
};

static void script_sha1(void)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	EVP_Digest(greylist_lua, strlen(greylist_lua), md, &n, EVP_sha1(), NULL);
	static const char hex[] = "0123456789abcdef";
	for (unsigned i = 0; i < n && i < 20; i++) {
		sha[2 * i] = hex[md[i] >> 4];
		sha[2 * i + 1] = hex[md[i] & 15];
	}
	sha[40] = 0;
}

const struct store_ops *store_redis_open(struct event_base *b, struct gg_config *c)
{
	base = b;
	cfg = gg_config_ref(c);
	script_sha1();
	retry_timer = evtimer_new(base, on_retry, NULL);
	connect_timer = evtimer_new(base, on_connect_timeout, NULL);
	if (!retry_timer || !connect_timer) {
		log_msg(LOG_LVL_ERROR, "store", "out of memory creating the redis store");
		return NULL;
	}
	/* Start-up does not wait for Redis: until it answers, decisions follow
	 * store.failure, and the connection is retried in the background. */
	connect_now();
	return &ops;
}
