/*
 * The Redis store's connection to the master (redis_priv.h): connecting
 * with AUTH, SELECT and SCRIPT LOAD queued ahead of any decision, the
 * back-off between attempts, the classification of error replies and the
 * health window the store's health is judged on.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

#include "greylist_lua.h"
#include "redis_bound.h"
#include "redis_priv.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define HEALTH_MIN_FAILED 3        /* failed decisions before health says so */

void redis_log(const struct redis_store *R, enum log_level lvl, const char *what,
	       const char *detail)
{
	struct logline l;
	ll_begin(&l, lvl, "store");
	ll_str(&l, "store", store_type(R->base.kind)->name);
	ll_str(&l, "redis", R->mhost);
	ll_int(&l, "port", R->mport);
	if (R->nsent)
		ll_str(&l, "master_name", R->cfg->store.redis.master_name);
	ll_str(&l, "state", what);
	if (detail)
		ll_str(&l, "detail", detail);
	ll_emit(&l);
}

/* ---- health ---- */

/* More than half of the decisions failed, and at least HEALTH_MIN_FAILED;
 * a change either way is logged once. */
void redis_judge(struct redis_store *R)
{
	long long now = (long long)metrics_now();
	unsigned asked = 0, failed = 0;
	for (size_t i = 0; i < HEALTH_WINDOW; i++) {
		if (now - R->window[i].sec < HEALTH_WINDOW) {
			asked += R->window[i].asked;
			failed += R->window[i].failed;
		}
	}
	bool f = failed >= HEALTH_MIN_FAILED && failed > asked / 2;
	if (f == R->failing)
		return;
	R->failing = f;
	struct logline l;
	ll_begin(&l, f ? LOG_LVL_WARNING : LOG_LVL_INFO, "store");
	ll_str(&l, "store", store_type(R->base.kind)->name);
	ll_str(&l, "redis", R->mhost);
	if (R->mport)             /* 0: a cluster, R->mhost its seeds */
		ll_int(&l, "port", R->mport);
	ll_str(&l, "state", f ? "failing" : "ok");
	if (f)
		ll_str(&l, "reason", R->fail_reason);
	ll_int(&l, "failed", failed);
	ll_int(&l, "decisions", asked);
	ll_int(&l, "seconds", HEALTH_WINDOW);
	if (f)
		ll_str(&l, "detail", R->fail_detail);
	ll_emit(&l);
}

void redis_note_decision(struct redis_store *R, const char *reason, const char *detail)
{
	long long now = (long long)metrics_now();
	size_t i = (size_t)(now % HEALTH_WINDOW);
	if (R->window[i].sec != now) {
		R->window[i].sec = now;
		R->window[i].asked = R->window[i].failed = 0;
	}
	R->window[i].asked++;
	if (reason) {
		R->window[i].failed++;
		snprintf(R->fail_reason, sizeof R->fail_reason, "%s", reason);
		snprintf(R->fail_detail, sizeof R->fail_detail, "%s", detail);
	}
	redis_judge(R);
}

/* ---- error replies ---- */

static const struct redis_errkind errkinds[] = {
	{ "OOM", SE_OOM, KEEP },                  /* maxmemory, noeviction */
	{ "BUSY", SE_BUSY, KEEP },                /* a script runs too long */
	{ "NOSCRIPT", SE_NOSCRIPT, KEEP },        /* on_reply sends EVAL */
	{ "NOPERM", SE_NOPERM, KEEP },            /* ACL: logging in again won't help */
	{ "NOAUTH", SE_NOAUTH, RECONNECT },       /* the reconnect sends AUTH */
	{ "WRONGPASS", SE_WRONGPASS, RECONNECT },
	{ "READONLY", SE_READONLY, RECONNECT },   /* a replica: after a failover */
	{ "MASTERDOWN", SE_MASTERDOWN, FIND_MASTER }, /* a replica cut off */
	{ "LOADING", SE_LOADING, FIND_MASTER },   /* loading its data set */
	/* A cluster's: redirects (followed by store_redis.c), a slot's keys
	 * split by a migration, slots unserved during a failover. */
	{ "MOVED", SE_MOVED, KEEP },
	{ "ASK", SE_ASK, KEEP },
	{ "TRYAGAIN", SE_TRYAGAIN, KEEP },
	{ "CLUSTERDOWN", SE_CLUSTERDOWN, KEEP },
}, unclassified = { NULL, SE_UNCLASSIFIED, KEEP };

const struct redis_errkind *redis_count_error(const char *err)
{
	size_t n = strcspn(err, " ");
	const struct redis_errkind *k = &unclassified;
	for (size_t i = 0; i < sizeof errkinds / sizeof errkinds[0]; i++)
		if (strlen(errkinds[i].word) == n && strncmp(err, errkinds[i].word, n) == 0)
			k = &errkinds[i];
	metrics_store_error(k->kind);
	return k;
}

const struct redis_errkind *redis_master_error(struct redis_store *R, const char *what,
					       const char *err)
{
	const struct redis_errkind *k = redis_count_error(err);
	if (k->then == RECONNECT || (k->then == FIND_MASTER && R->nsent)) {
		char why[300];
		snprintf(why, sizeof why, "%s: %.200s; %s", what, err,
			 R->nsent ? "asking the sentinels for the master" : "reconnecting");
		R->dropped_for_replies = true;
		redis_drop(R, why);
	}
	return k;
}

/* ---- connection ---- */

void redis_arm(struct event *ev, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(ev, &tv);
}

void redis_drop(struct redis_store *R, const char *why)
{
	if (!R->ac)
		return;
	redis_log(R, LOG_LVL_WARNING, "disconnecting", why);
	redisAsyncContext *c = R->ac;
	R->ac = NULL;
	R->state = R_DOWN;
	evtimer_del(R->connect_timer);
	/* Pending callbacks run now with a NULL reply and answer their sessions
	 * (at the end of the current callback when called from one). */
	redisAsyncFree(c);
	redis_schedule_reconnect(R);
}

const char *redis_lost_why(const redisAsyncContext *c)
{
	const char *refused = redis_bound_refusal(c);
	return refused ? refused : c->errstr;
}

static void on_connected(const redisAsyncContext *c, int status)
{
	struct redis_store *R = c->data;
	if (c != R->ac)
		return;
	if (status != REDIS_OK) {
		evtimer_del(R->connect_timer);
		redis_log(R, LOG_LVL_WARNING, "connect-failed", c->errstr);
		R->ac = NULL;         /* hiredis frees it after this callback */
		R->state = R_DOWN;
		redis_schedule_reconnect(R);
		return;
	}
	if (R->nsent)
		return;               /* up once ROLE says "master"; connect_timer runs on */
	evtimer_del(R->connect_timer);
	R->state = R_UP;
	if (!R->dropped_for_replies)
		R->backoff_ms = 0;
	R->timeouts_in_row = 0;
	redis_log(R, LOG_LVL_INFO, "connected", NULL);
}

static void on_disconnected(const redisAsyncContext *c, int status)
{
	struct redis_store *R = c->data;
	if (c != R->ac)
		return; /* one we dropped on purpose */
	redis_log(R, LOG_LVL_WARNING, "disconnected",
		  status == REDIS_OK ? "closed" : redis_lost_why(c));
	R->ac = NULL;
	R->state = R_DOWN;
	evtimer_del(R->connect_timer);
	redis_schedule_reconnect(R);
}

static void on_setup_reply(redisAsyncContext *c, void *reply, void *priv)
{
	struct redis_store *R = c->data;
	redisReply *r = reply;
	if (c != R->ac || !r || r->type != REDIS_REPLY_ERROR)
		return;
	redis_log(R, LOG_LVL_ERROR, priv, r->str);
	redis_master_error(R, priv, r->str);
}

/* Sentinel mode: what a sentinel names may be stale (a demoted master that
 * came back), so the connection counts only once the node says it is the
 * master. Queued last, so AUTH, SELECT and SCRIPT LOAD are done by then. */
static void on_role(redisAsyncContext *c, void *reply, void *priv)
{
	(void)priv;
	struct redis_store *R = c->data;
	redisReply *r = reply;
	if (c != R->ac || !r || R->state != R_CONNECTING)
		return;
	if (r->type == REDIS_REPLY_ERROR)
		redis_count_error(r->str);
	const char *role = r->type == REDIS_REPLY_ERROR ? r->str
			 : r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
					   r->element[0]->type == REDIS_REPLY_STRING
				 ? r->element[0]->str
				 : "?";
	if (strcmp(role, "master") == 0) {
		evtimer_del(R->connect_timer);
		R->state = R_UP;
		if (!R->dropped_for_replies)
			R->backoff_ms = 0;
		R->timeouts_in_row = 0;
		redis_log(R, LOG_LVL_INFO, "connected", "role=master");
		return;
	}
	char why[200];
	snprintf(why, sizeof why, "not the master (ROLE: %.150s)", role);
	redis_drop(R, why);
}

void redis_connect_master(struct redis_store *R)
{
	const struct gg_config *cfg = R->cfg;
	redisAsyncContext *ac = redisAsyncConnect(R->mhost, R->mport);
	if (ac)
		ac->data = R;
	if (!ac || ac->err || redis_bound_attach(ac, R->loop) < 0) {
		redis_log(R, LOG_LVL_WARNING, "connect-failed",
			  ac && ac->err ? ac->errstr : "out of memory");
		if (ac)
			redisAsyncFree(ac);
		R->ac = NULL;
		R->state = R_DOWN;
		redis_schedule_reconnect(R);
		return;
	}
	R->ac = ac;
	R->state = R_CONNECTING;
	redisAsyncSetConnectCallback(ac, on_connected);
	redisAsyncSetDisconnectCallback(ac, on_disconnected);
	redis_arm(R->connect_timer, cfg->store.redis.connect_timeout_ms);
	/* Queued now, sent as soon as the socket is up, ahead of any decision. */
	if (cfg->store.redis.password[0])
		redisAsyncCommand(ac, on_setup_reply, "auth-failed", "AUTH %s",
				  cfg->store.redis.password);
	if (cfg->store.redis.db)
		redisAsyncCommand(ac, on_setup_reply, "select-failed", "SELECT %d",
				  cfg->store.redis.db);
	redisAsyncCommand(ac, on_setup_reply, "script-load-failed", "SCRIPT LOAD %s", greylist_lua);
	redisAsyncCommand(ac, on_setup_reply, "script-load-failed", "SCRIPT LOAD %s", marks_lua);
	if (R->nsent)
		redisAsyncCommand(ac, on_role, NULL, "ROLE");
}

/* ---- (re)connecting ---- */

void redis_connect_now(struct redis_store *R)
{
	if (R->nsent)
		redis_ask_sentinels(R);
	else
		redis_connect_master(R);
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct redis_store *R = arg;
	if (R->state != R_CONNECTING || !R->ac)
		return;
	redis_log(R, LOG_LVL_WARNING, "connect-failed", "timeout");
	redisAsyncContext *c = R->ac;
	R->ac = NULL;
	R->state = R_DOWN;
	redisAsyncFree(c);
	redis_schedule_reconnect(R);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	redis_connect_now(arg);
}

void redis_schedule_reconnect(struct redis_store *R)
{
	R->backoff_ms = R->backoff_ms ? R->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (R->backoff_ms > BACKOFF_MAX_MS)
		R->backoff_ms = BACKOFF_MAX_MS;
	redis_arm(R->retry_timer, R->backoff_ms);
}

int redis_conn_init(struct redis_store *R)
{
	R->retry_timer = evtimer_new(R->loop, on_retry, R);
	R->connect_timer = evtimer_new(R->loop, on_connect_timeout, R);
	return R->retry_timer && R->connect_timer ? 0 : -1;
}
