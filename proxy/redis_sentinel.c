/*
 * The Redis store's sentinel mode (redis_priv.h): every (re)connect first
 * asks the sentinels in turn which node is the master (lib/sentinel.h reads
 * the answer, as greygate-ctl does), and a subscription to +switch-master
 * on one of them makes a failover take effect at once.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_bound.h"
#include "redis_priv.h"

static void ask_next_sentinel(struct redis_store *R);
static void subscribe_switch_master(struct redis_store *R);

static void log_sentinel(const struct redis_store *R, enum log_level lvl,
			 const struct redis_sentinel *s, const char *what, const char *detail)
{
	struct logline l;
	ll_begin(&l, lvl, "store");
	ll_str(&l, "store", store_type(R->base.kind)->name);
	ll_str(&l, "sentinel", s->name);
	ll_str(&l, "master_name", R->cfg->store.redis.master_name);
	ll_str(&l, "state", what);
	if (detail)
		ll_str(&l, "detail", detail);
	ll_emit(&l);
}

/* An address from a sentinel: numeric only (a name would need a blocking
 * lookup). */
static bool set_master(struct redis_store *R, const char *host, long port)
{
	if (!sentinel_addr_ok(host, port))
		return false;
	snprintf(R->mhost, sizeof R->mhost, "%s", host);
	R->mport = (int)port;
	return true;
}

void redis_sentinel_abandon(struct redis_store *R)
{
	if (R->sentinel_timer)
		evtimer_del(R->sentinel_timer);
	if (R->sc) {
		redisAsyncContext *c = R->sc;
		R->sc = NULL;
		redisAsyncFree(c);
	}
}

static void sentinel_failed(struct redis_store *R, const char *why)
{
	log_sentinel(R, LOG_LVL_WARNING, &R->sent[R->sent_cur], "sentinel-failed", why);
	redis_sentinel_abandon(R);
	ask_next_sentinel(R);
}

static void on_sentinel_reply(redisAsyncContext *c, void *reply, void *priv)
{
	(void)priv;
	struct redis_store *R = c->data;
	redisReply *r = reply;
	if (c != R->sc || !r)
		return;               /* abandoned, or lost: on_sentinel_disconnected */
	struct sentinel_addr m;
	const char *why;
	bool error_reply;
	if (!sentinel_read_master(r, &m, &why, &error_reply) || !set_master(R, m.host, m.port)) {
		if (error_reply)
			redis_count_error(why);
		sentinel_failed(R, why);
		return;
	}
	R->sent_first = R->sent_cur;
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "store");
	ll_str(&l, "store", store_type(R->base.kind)->name);
	ll_str(&l, "sentinel", R->sent[R->sent_cur].name);
	ll_str(&l, "master_name", R->cfg->store.redis.master_name);
	ll_str(&l, "state", "master-found");
	ll_str(&l, "redis", R->mhost);
	ll_int(&l, "port", R->mport);
	ll_emit(&l);
	redis_sentinel_abandon(R);    /* freed once this callback returns */
	subscribe_switch_master(R);
	redis_connect_master(R);
}

static void on_sentinel_connected(const redisAsyncContext *c, int status)
{
	struct redis_store *R = c->data;
	if (c != R->sc)
		return;
	if (status != REDIS_OK) {
		R->sc = NULL;         /* hiredis frees it after this callback */
		sentinel_failed(R, c->errstr);
		return;
	}
	redis_arm(R->sentinel_timer, R->cfg->store.redis.timeout_ms);   /* now for the answer */
}

static void on_sentinel_disconnected(const redisAsyncContext *c, int status)
{
	struct redis_store *R = c->data;
	if (c != R->sc)
		return;
	R->sc = NULL;
	sentinel_failed(R, status == REDIS_OK ? "closed" : redis_lost_why(c));
}

static void on_sentinel_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct redis_store *R = arg;
	if (R->sc)
		sentinel_failed(R, "timeout");
}

/* Asks the sentinels in turn, starting with the one that answered last;
 * when none answers, the whole round is retried after the back-off. */
static void ask_next_sentinel(struct redis_store *R)
{
	evtimer_del(R->sentinel_timer);
	if (R->sent_tried == R->nsent) {
		R->state = R_DOWN;
		redis_log(R, LOG_LVL_WARNING, "no-master", "no sentinel named the master");
		redis_schedule_reconnect(R);
		return;
	}
	R->sent_cur = sentinel_turn(R->sent_first, R->sent_tried++, R->nsent);
	const struct redis_sentinel *s = &R->sent[R->sent_cur];
	R->state = R_DISCOVERING;
	redisAsyncContext *sc = redisAsyncConnect(s->a.host, s->a.port);
	if (sc)
		sc->data = R;
	if (!sc || sc->err || redis_bound_attach(sc, R->loop) < 0) {
		const char *why = sc && sc->err ? sc->errstr : "out of memory";
		log_sentinel(R, LOG_LVL_WARNING, s, "sentinel-failed", why);
		if (sc)
			redisAsyncFree(sc);
		R->sc = NULL;
		ask_next_sentinel(R);
		return;
	}
	R->sc = sc;
	redisAsyncSetConnectCallback(sc, on_sentinel_connected);
	redisAsyncSetDisconnectCallback(sc, on_sentinel_disconnected);
	redis_arm(R->sentinel_timer, R->cfg->store.redis.connect_timeout_ms);
	redisAsyncCommand(sc, on_sentinel_reply, NULL, SENTINEL_ASK,
			  R->cfg->store.redis.master_name);
}

void redis_ask_sentinels(struct redis_store *R)
{
	R->sent_tried = 0;
	ask_next_sentinel(R);
}

/* ---- +switch-master ---- */

/* +switch-master "NAME OLDIP OLDPORT NEWIP NEWPORT": go to the new master
 * now rather than at the next failure. */
static void on_switch_master(redisAsyncContext *c, void *reply, void *priv)
{
	(void)priv;
	struct redis_store *R = c->data;
	redisReply *r = reply;
	if (c != R->pc || !r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(r->element[0]->str, "subscribe") == 0) {
		log_sentinel(R, LOG_LVL_INFO, &R->sent[R->pc_sent], "subscribed", "+switch-master");
		return;
	}
	if (strcmp(r->element[0]->str, "message") != 0 || r->element[2]->type != REDIS_REPLY_STRING)
		return;
	char name[129], oldh[64], newh[64];
	long oldp, newp;
	if (sscanf(r->element[2]->str, "%128s %63s %ld %63s %ld", name, oldh, &oldp, newh,
		   &newp) != 5 ||
	    strcmp(name, R->cfg->store.redis.master_name) != 0)
		return;
	if (R->ac && strcmp(newh, R->mhost) == 0 && newp == R->mport)
		return;           /* there already, or on the way */
	char prev[sizeof R->mhost];
	int prevp = R->mport;
	snprintf(prev, sizeof prev, "%s", R->mhost);
	if (!set_master(R, newh, newp))
		return;
	char detail[400];
	snprintf(detail, sizeof detail, "+switch-master from %s:%ld (was using %s:%d)", oldh, oldp,
		 prev, prevp);
	redis_log(R, LOG_LVL_INFO, "switch-master", detail);
	redis_sentinel_abandon(R);
	evtimer_del(R->retry_timer);
	if (R->ac) {
		redisAsyncContext *old = R->ac;
		R->ac = NULL;
		R->state = R_DOWN;
		evtimer_del(R->connect_timer);
		redisAsyncFree(old);  /* answers what was pending on the old master */
	}
	R->backoff_ms = 0;
	redis_connect_master(R);
}

static void on_pc_connected(const redisAsyncContext *c, int status)
{
	struct redis_store *R = c->data;
	if (c != R->pc)
		return;
	evtimer_del(R->pc_timer);
	if (status != REDIS_OK)
		R->pc = NULL;         /* tried again at the next discovery */
}

static void on_pc_disconnected(const redisAsyncContext *c, int status)
{
	struct redis_store *R = c->data;
	if (c != R->pc)
		return;
	R->pc = NULL;
	log_sentinel(R, LOG_LVL_WARNING, &R->sent[R->pc_sent], "unsubscribed",
		     status == REDIS_OK ? "connection lost" : redis_lost_why(c));
}

void redis_unsubscribe(struct redis_store *R)
{
	if (R->pc) {
		redisAsyncContext *c = R->pc;
		R->pc = NULL;
		redisAsyncFree(c);
	}
}

static void on_pc_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	redis_unsubscribe(arg);
}

/* On the sentinel that just answered; a lost subscription is made again at
 * the next discovery (a failure finds the new master without it, too). */
static void subscribe_switch_master(struct redis_store *R)
{
	if (R->pc)
		return;
	R->pc_sent = R->sent_cur;
	const struct redis_sentinel *s = &R->sent[R->pc_sent];
	redisAsyncContext *pc = redisAsyncConnect(s->a.host, s->a.port);
	if (pc)
		pc->data = R;
	if (!pc || pc->err || redis_bound_attach(pc, R->loop) < 0) {
		if (pc)
			redisAsyncFree(pc);
		return;
	}
	R->pc = pc;
	redisAsyncSetConnectCallback(pc, on_pc_connected);
	redisAsyncSetDisconnectCallback(pc, on_pc_disconnected);
	redis_arm(R->pc_timer, R->cfg->store.redis.connect_timeout_ms);
	redisAsyncCommand(pc, on_switch_master, NULL, "SUBSCRIBE +switch-master");
}

int redis_sentinel_init(struct redis_store *R)
{
	const struct gg_config *c = R->cfg;
	R->nsent = c->store.redis.nsentinels;
	/* no master until a sentinel names one */
	snprintf(R->mhost, sizeof R->mhost, "-");
	R->mport = 0;
	R->sent = calloc(R->nsent, sizeof *R->sent);
	R->sentinel_timer = evtimer_new(R->loop, on_sentinel_timeout, R);
	R->pc_timer = evtimer_new(R->loop, on_pc_timeout, R);
	if (!R->sent || !R->sentinel_timer || !R->pc_timer) {
		log_msg(LOG_LVL_ERROR, "store", "out of memory creating the redis store");
		return -1;
	}
	for (size_t i = 0; i < R->nsent; i++) {
		R->sent[i].name = c->store.redis.sentinels[i];
		if (!sentinel_parse(R->sent[i].name, &R->sent[i].a)) {   /* the loader checked */
			log_msg(LOG_LVL_ERROR, "store", "bad store.redis.sentinels entry");
			return -1;
		}
	}
	return 0;
}
