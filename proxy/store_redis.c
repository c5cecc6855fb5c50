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
 *
 * Error replies are classified by their first word (one table, errkinds)
 * and counted by kind. Some say another connection would do better:
 * NOAUTH/WRONGPASS (the reconnect authenticates again), READONLY (a
 * replica, after a failover); these drop the connection, and the back-off
 * keeps growing across such drops until a decision succeeds again, so a
 * server that refuses every connection's decisions is not hammered.
 * Others (OOM at maxmemory, BUSY, ...) leave the connection up but fail the
 * decision: health looks at the decisions of the last HEALTH_WINDOW seconds,
 * not only at the connection, and a change either way is logged once.
 *
 * With store.redis.sentinels, every (re)connect first asks the sentinels in
 * turn "SENTINEL get-master-addr-by-name NAME" (each under the connect and
 * request timeouts), connects to the address named, and only uses the
 * connection once ROLE says it is a master. A broken connection, stuck
 * requests or a READONLY/NOAUTH/LOADING/MASTERDOWN answer send it back to the
 * sentinels (with the same back-off). A subscription to +switch-master on
 * one sentinel makes a failover take effect at once instead of at the next
 * failure.
 */
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "greylist_lua.h"
#include "log.h"
#include "metrics.h"
#include "redis_bound.h"
#include "sentinel.h"
#include "store.h"

#define STUCK_AFTER 3              /* timeouts in a row */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define NARGS 15                   /* EVALSHA sha 3 k1 k2 k3 + 9 ARGV */
#define HEALTH_WINDOW 10           /* seconds of decisions health looks at */
#define HEALTH_MIN_FAILED 3        /* failed decisions before health says so */

enum rstate { R_DOWN, R_DISCOVERING, R_CONNECTING, R_UP };

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
/* The last connection was dropped for its replies: the next one does not
 * reset the back-off, a decision that succeeds does. */
static bool dropped_for_replies;

/* Decisions sent to Redis, by second, and the verdict drawn from them. */
static struct {
	long long sec;
	unsigned asked, failed;
} window[HEALTH_WINDOW];
static bool failing;
static char fail_reason[32];       /* of the last failed decision */
static char fail_detail[200];

/* The master: store.redis.host/port, or what the sentinels last named. */
static char mhost[256];
static int mport;

/* Sentinel mode (nsent > 0) */
struct sentinel {
	struct sentinel_addr a;
	const char *name;          /* as written in the configuration */
};
static struct sentinel *sent;
static size_t nsent;
static size_t sent_first;          /* the one that answered last: asked first */
static size_t sent_tried;          /* in the current round */
static size_t sent_cur;            /* the one being asked */
static redisAsyncContext *sc;      /* asking sent[sent_cur] */
static struct event *sentinel_timer;
static redisAsyncContext *pc;      /* subscribed to +switch-master */
static size_t pc_sent;
static struct event *pc_timer;

static void schedule_reconnect(void);
static void connect_master(void);

static void log_store(enum log_level lvl, const char *what, const char *detail)
{
	struct logline l;
	ll_begin(&l, lvl, "store");
	ll_str(&l, "store", store_type(STORE_REDIS)->name);
	ll_str(&l, "redis", mhost);
	ll_int(&l, "port", mport);
	if (nsent)
		ll_str(&l, "master_name", cfg->store.redis.master_name);
	ll_str(&l, "state", what);
	if (detail)
		ll_str(&l, "detail", detail);
	ll_emit(&l);
}

static void log_sentinel(enum log_level lvl, const struct sentinel *s, const char *what,
			 const char *detail)
{
	struct logline l;
	ll_begin(&l, lvl, "store");
	ll_str(&l, "store", store_type(STORE_REDIS)->name);
	ll_str(&l, "sentinel", s->name);
	ll_str(&l, "master_name", cfg->store.redis.master_name);
	ll_str(&l, "state", what);
	if (detail)
		ll_str(&l, "detail", detail);
	ll_emit(&l);
}

/* Failing or not, from the decisions of the last HEALTH_WINDOW seconds:
 * more than half of them failed, and at least HEALTH_MIN_FAILED. */
static void judge(void)
{
	long long now = (long long)metrics_now();
	unsigned asked = 0, failed = 0;
	for (size_t i = 0; i < HEALTH_WINDOW; i++) {
		if (now - window[i].sec < HEALTH_WINDOW) {
			asked += window[i].asked;
			failed += window[i].failed;
		}
	}
	bool f = failed >= HEALTH_MIN_FAILED && failed > asked / 2;
	if (f == failing)
		return;
	failing = f;
	struct logline l;
	ll_begin(&l, f ? LOG_LVL_WARNING : LOG_LVL_INFO, "store");
	ll_str(&l, "store", store_type(STORE_REDIS)->name);
	ll_str(&l, "redis", mhost);
	ll_int(&l, "port", mport);
	ll_str(&l, "state", f ? "failing" : "ok");
	if (f)
		ll_str(&l, "reason", fail_reason);
	ll_int(&l, "failed", failed);
	ll_int(&l, "decisions", asked);
	ll_int(&l, "seconds", HEALTH_WINDOW);
	if (f)
		ll_str(&l, "detail", fail_detail);
	ll_emit(&l);
}

/* One decision that went to Redis; REASON (a word) and DETAIL when it failed. */
static void note_decision(const char *reason, const char *detail)
{
	long long now = (long long)metrics_now();
	size_t i = (size_t)(now % HEALTH_WINDOW);
	if (window[i].sec != now) {
		window[i].sec = now;
		window[i].asked = window[i].failed = 0;
	}
	window[i].asked++;
	if (reason) {
		window[i].failed++;
		snprintf(fail_reason, sizeof fail_reason, "%s", reason);
		snprintf(fail_detail, sizeof fail_detail, "%s", detail);
	}
	judge();
}

/* REASON: NULL when RES is a decision, else a word for what failed. */
static void answer(struct store_req *r, const struct store_result *res, const char *reason)
{
	store_done_fn done = r->done;
	r->done = NULL;
	if (r->timer)
		evtimer_del(r->timer);
	if (done) {
		note_decision(reason, res->error);
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

/* ---- error replies ---- */

/* What to do about an error reply on the master connection. */
enum then {
	KEEP,                      /* the decision fails; the connection stays */
	RECONNECT,                 /* another connection may do better */
	FIND_MASTER,               /* RECONNECT when sentinels can name another node */
};

static const struct errkind {
	const char *word;
	enum store_error kind;
	enum then then;
} errkinds[] = {
	{ "OOM", SE_OOM, KEEP },                  /* maxmemory, noeviction */
	{ "BUSY", SE_BUSY, KEEP },                /* a script runs too long */
	{ "NOSCRIPT", SE_NOSCRIPT, KEEP },        /* on_reply sends EVAL */
	{ "NOPERM", SE_NOPERM, KEEP },            /* ACL: logging in again won't help */
	{ "NOAUTH", SE_NOAUTH, RECONNECT },       /* the reconnect sends AUTH */
	{ "WRONGPASS", SE_WRONGPASS, RECONNECT },
	{ "READONLY", SE_READONLY, RECONNECT },   /* a replica: after a failover */
	{ "MASTERDOWN", SE_MASTERDOWN, FIND_MASTER }, /* a replica cut off */
	{ "LOADING", SE_LOADING, FIND_MASTER },   /* loading its data set */
}, unclassified = { NULL, SE_UNCLASSIFIED, KEEP };

/* Classifies an error reply ERR by its first word and counts it. */
static const struct errkind *count_error(const char *err)
{
	size_t n = strcspn(err, " ");
	const struct errkind *k = &unclassified;
	for (size_t i = 0; i < sizeof errkinds / sizeof errkinds[0]; i++)
		if (strlen(errkinds[i].word) == n && strncmp(err, errkinds[i].word, n) == 0)
			k = &errkinds[i];
	metrics_store_error(k->kind);
	return k;
}

static void drop_connection(const char *why);

/* An error reply ERR to WHAT on the master connection: counted, and the
 * connection dropped when its kind says another one may do better. Returns
 * the kind. */
static const struct errkind *master_error(const char *what, const char *err)
{
	const struct errkind *k = count_error(err);
	if (k->then == RECONNECT || (k->then == FIND_MASTER && nsent)) {
		char why[300];
		snprintf(why, sizeof why, "%s: %.200s; %s", what, err,
			 nsent ? "asking the sentinels for the master" : "reconnecting");
		dropped_for_replies = true;
		drop_connection(why);
	}
	return k;
}

/* ---- connection ---- */

static void arm(struct event *ev, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(ev, &tv);
}

static void drop_connection(const char *why)
{
	if (!ac)
		return;
	log_store(LOG_LVL_WARNING, "disconnecting", why);
	redisAsyncContext *c = ac;
	ac = NULL;
	state = R_DOWN;
	evtimer_del(connect_timer);
	/* Pending callbacks run now with a NULL reply and answer their sessions
	 * (at the end of the current callback when called from one). */
	redisAsyncFree(c);
	schedule_reconnect();
}

/* Why C failed, in its disconnect callback. */
static const char *lost_why(const redisAsyncContext *c)
{
	const char *refused = redis_bound_refusal(c);
	return refused ? refused : c->errstr;
}

static void on_connected(const redisAsyncContext *c, int status)
{
	if (c != ac)
		return;
	if (status != REDIS_OK) {
		evtimer_del(connect_timer);
		log_store(LOG_LVL_WARNING, "connect-failed", c->errstr);
		ac = NULL;            /* hiredis frees it after this callback */
		state = R_DOWN;
		schedule_reconnect();
		return;
	}
	if (nsent)
		return;               /* up once ROLE says "master"; connect_timer runs on */
	evtimer_del(connect_timer);
	state = R_UP;
	if (!dropped_for_replies)
		backoff_ms = 0;
	timeouts_in_row = 0;
	log_store(LOG_LVL_INFO, "connected", NULL);
}

static void on_disconnected(const redisAsyncContext *c, int status)
{
	if (c != ac)
		return; /* one we dropped on purpose */
	log_store(LOG_LVL_WARNING, "disconnected", status == REDIS_OK ? "closed" : lost_why(c));
	ac = NULL;
	state = R_DOWN;
	evtimer_del(connect_timer);
	schedule_reconnect();
}

static void on_setup_reply(redisAsyncContext *c, void *reply, void *priv)
{
	redisReply *r = reply;
	if (c != ac || !r || r->type != REDIS_REPLY_ERROR)
		return;
	log_store(LOG_LVL_ERROR, priv, r->str);
	master_error(priv, r->str);
}

/* Sentinel mode: what a sentinel names may be stale (a demoted master that
 * came back), so the connection counts only once the node says it is the
 * master. Queued last, so AUTH, SELECT and SCRIPT LOAD are done by then. */
static void on_role(redisAsyncContext *c, void *reply, void *priv)
{
	(void)priv;
	redisReply *r = reply;
	if (c != ac || !r || state != R_CONNECTING)
		return;
	if (r->type == REDIS_REPLY_ERROR)
		count_error(r->str);
	const char *role = r->type == REDIS_REPLY_ERROR ? r->str
			 : r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
					   r->element[0]->type == REDIS_REPLY_STRING
				 ? r->element[0]->str
				 : "?";
	if (strcmp(role, "master") == 0) {
		evtimer_del(connect_timer);
		state = R_UP;
		if (!dropped_for_replies)
			backoff_ms = 0;
		timeouts_in_row = 0;
		log_store(LOG_LVL_INFO, "connected", "role=master");
		return;
	}
	char why[200];
	snprintf(why, sizeof why, "not the master (ROLE: %.150s)", role);
	drop_connection(why);
}

static void connect_master(void)
{
	ac = redisAsyncConnect(mhost, mport);
	if (!ac || ac->err || redis_bound_attach(ac, base) < 0) {
		log_store(LOG_LVL_WARNING, "connect-failed",
			  ac && ac->err ? ac->errstr : "out of memory");
		if (ac)
			redisAsyncFree(ac);
		ac = NULL;
		state = R_DOWN;
		schedule_reconnect();
		return;
	}
	state = R_CONNECTING;
	redisAsyncSetConnectCallback(ac, on_connected);
	redisAsyncSetDisconnectCallback(ac, on_disconnected);
	arm(connect_timer, cfg->store.redis.connect_timeout_ms);
	/* Queued now, sent as soon as the socket is up, ahead of any decision. */
	if (cfg->store.redis.password[0])
		redisAsyncCommand(ac, on_setup_reply, "auth-failed", "AUTH %s",
				  cfg->store.redis.password);
	if (cfg->store.redis.db)
		redisAsyncCommand(ac, on_setup_reply, "select-failed", "SELECT %d",
				  cfg->store.redis.db);
	redisAsyncCommand(ac, on_setup_reply, "script-load-failed", "SCRIPT LOAD %s", greylist_lua);
	if (nsent)
		redisAsyncCommand(ac, on_role, NULL, "ROLE");
}

/* ---- sentinels ---- */

static void ask_next_sentinel(void);
static void subscribe_switch_master(void);

/* An address from a sentinel: numeric only (a name would need a blocking
 * lookup). */
static bool set_master(const char *host, long port)
{
	if (!sentinel_addr_ok(host, port))
		return false;
	snprintf(mhost, sizeof mhost, "%s", host);
	mport = (int)port;
	return true;
}

static void sentinel_abandon(void)
{
	if (sentinel_timer)
		evtimer_del(sentinel_timer);
	if (sc) {
		redisAsyncContext *c = sc;
		sc = NULL;
		redisAsyncFree(c);
	}
}

static void sentinel_failed(const char *why)
{
	log_sentinel(LOG_LVL_WARNING, &sent[sent_cur], "sentinel-failed", why);
	sentinel_abandon();
	ask_next_sentinel();
}

static void on_sentinel_reply(redisAsyncContext *c, void *reply, void *priv)
{
	(void)priv;
	redisReply *r = reply;
	if (c != sc || !r)
		return;               /* abandoned, or lost: on_sentinel_disconnected */
	struct sentinel_addr m;
	const char *why;
	bool error_reply;
	if (!sentinel_read_master(r, &m, &why, &error_reply) || !set_master(m.host, m.port)) {
		if (error_reply)
			count_error(why);
		sentinel_failed(why);
		return;
	}
	sent_first = sent_cur;
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "store");
	ll_str(&l, "store", store_type(STORE_REDIS)->name);
	ll_str(&l, "sentinel", sent[sent_cur].name);
	ll_str(&l, "master_name", cfg->store.redis.master_name);
	ll_str(&l, "state", "master-found");
	ll_str(&l, "redis", mhost);
	ll_int(&l, "port", mport);
	ll_emit(&l);
	sentinel_abandon();           /* freed once this callback returns */
	subscribe_switch_master();
	connect_master();
}

static void on_sentinel_connected(const redisAsyncContext *c, int status)
{
	if (c != sc)
		return;
	if (status != REDIS_OK) {
		sc = NULL;            /* hiredis frees it after this callback */
		sentinel_failed(c->errstr);
		return;
	}
	arm(sentinel_timer, cfg->store.redis.timeout_ms);   /* now for the answer */
}

static void on_sentinel_disconnected(const redisAsyncContext *c, int status)
{
	if (c != sc)
		return;
	sc = NULL;
	sentinel_failed(status == REDIS_OK ? "closed" : lost_why(c));
}

static void on_sentinel_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (sc)
		sentinel_failed("timeout");
}

/* Asks the sentinels in turn, starting with the one that answered last;
 * when none answers, the whole round is retried after the back-off. */
static void ask_next_sentinel(void)
{
	evtimer_del(sentinel_timer);
	if (sent_tried == nsent) {
		state = R_DOWN;
		log_store(LOG_LVL_WARNING, "no-master", "no sentinel named the master");
		schedule_reconnect();
		return;
	}
	sent_cur = sentinel_turn(sent_first, sent_tried++, nsent);
	const struct sentinel *s = &sent[sent_cur];
	state = R_DISCOVERING;
	sc = redisAsyncConnect(s->a.host, s->a.port);
	if (!sc || sc->err || redis_bound_attach(sc, base) < 0) {
		const char *why = sc && sc->err ? sc->errstr : "out of memory";
		log_sentinel(LOG_LVL_WARNING, s, "sentinel-failed", why);
		if (sc)
			redisAsyncFree(sc);
		sc = NULL;
		ask_next_sentinel();
		return;
	}
	redisAsyncSetConnectCallback(sc, on_sentinel_connected);
	redisAsyncSetDisconnectCallback(sc, on_sentinel_disconnected);
	arm(sentinel_timer, cfg->store.redis.connect_timeout_ms);
	redisAsyncCommand(sc, on_sentinel_reply, NULL, SENTINEL_ASK, cfg->store.redis.master_name);
}

/* +switch-master "NAME OLDIP OLDPORT NEWIP NEWPORT": go to the new master
 * now rather than at the next failure. */
static void on_switch_master(redisAsyncContext *c, void *reply, void *priv)
{
	(void)priv;
	redisReply *r = reply;
	if (c != pc || !r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(r->element[0]->str, "subscribe") == 0) {
		log_sentinel(LOG_LVL_INFO, &sent[pc_sent], "subscribed", "+switch-master");
		return;
	}
	if (strcmp(r->element[0]->str, "message") != 0 || r->element[2]->type != REDIS_REPLY_STRING)
		return;
	char name[129], oldh[64], newh[64];
	long oldp, newp;
	if (sscanf(r->element[2]->str, "%128s %63s %ld %63s %ld", name, oldh, &oldp, newh,
		   &newp) != 5 ||
	    strcmp(name, cfg->store.redis.master_name) != 0)
		return;
	if (ac && strcmp(newh, mhost) == 0 && newp == mport)
		return;           /* there already, or on the way */
	char prev[sizeof mhost];
	int prevp = mport;
	snprintf(prev, sizeof prev, "%s", mhost);
	if (!set_master(newh, newp))
		return;
	char detail[400];
	snprintf(detail, sizeof detail, "+switch-master from %s:%ld (was using %s:%d)", oldh, oldp,
		 prev, prevp);
	log_store(LOG_LVL_INFO, "switch-master", detail);
	sentinel_abandon();
	evtimer_del(retry_timer);
	if (ac) {
		redisAsyncContext *old = ac;
		ac = NULL;
		state = R_DOWN;
		evtimer_del(connect_timer);
		redisAsyncFree(old);  /* answers what was pending on the old master */
	}
	backoff_ms = 0;
	connect_master();
}

static void on_pc_connected(const redisAsyncContext *c, int status)
{
	if (c != pc)
		return;
	evtimer_del(pc_timer);
	if (status != REDIS_OK)
		pc = NULL;            /* tried again at the next discovery */
}

static void on_pc_disconnected(const redisAsyncContext *c, int status)
{
	if (c != pc)
		return;
	pc = NULL;
	log_sentinel(LOG_LVL_WARNING, &sent[pc_sent], "unsubscribed",
		     status == REDIS_OK ? "connection lost" : lost_why(c));
}

static void on_pc_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (pc) {
		redisAsyncContext *c = pc;
		pc = NULL;
		redisAsyncFree(c);
	}
}

/* On the sentinel that just answered; a lost subscription is made again at
 * the next discovery (a failure finds the new master without it, too). */
static void subscribe_switch_master(void)
{
	if (pc)
		return;
	pc_sent = sent_cur;
	pc = redisAsyncConnect(sent[pc_sent].a.host, sent[pc_sent].a.port);
	if (!pc || pc->err || redis_bound_attach(pc, base) < 0) {
		if (pc)
			redisAsyncFree(pc);
		pc = NULL;
		return;
	}
	redisAsyncSetConnectCallback(pc, on_pc_connected);
	redisAsyncSetDisconnectCallback(pc, on_pc_disconnected);
	arm(pc_timer, cfg->store.redis.connect_timeout_ms);
	redisAsyncCommand(pc, on_switch_master, NULL, "SUBSCRIBE +switch-master");
}

/* ---- (re)connecting ---- */

static void connect_now(void)
{
	if (nsent) {
		sent_tried = 0;
		ask_next_sentinel();
	} else {
		connect_master();
	}
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
	arm(retry_timer, backoff_ms);
}

/* ---- decisions ---- */

static bool send_request(struct store_req *r);

static void on_reply(redisAsyncContext *c, void *reply, void *priv)
{
	struct store_req *r = priv;
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
	timeouts_in_row = 0;
	if (rep->type == REDIS_REPLY_ERROR) {
		const struct errkind *k = c == ac ? master_error("redis error", rep->str)
						  : count_error(rep->str);
		if (k->kind == SE_NOSCRIPT && !r->retried && ac) {
			r->retried = true;
			send_request(r);
			return;
		}
		char why[200], word[sizeof fail_reason];
		snprintf(why, sizeof why, "redis error: %s", rep->str);
		snprintf(word, sizeof word, "%.*s", (int)strcspn(rep->str, " "), rep->str);
		answer_error(r, word, why);
		req_free(r);
		return;
	}
	struct store_result res = { .ok = true };
	const char *bad = gl_script_answer(rep, &res.d);
	if (bad) {
		answer_error(r, "bad-reply", bad);
		req_free(r);
		return;
	}
	dropped_for_replies = false;
	backoff_ms = 0;
	answer(r, &res, NULL);
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
	/* The reply may still come; on_reply frees R then. */
	answer_error(r, "timeout", "redis timeout");
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

static struct store_req *redis_decide(struct store *s, const struct gl_params *p,
				      const struct triplet *t, bool dry_run, store_done_fn done,
				      void *arg)
{
	(void)s;
	struct store_result fail = { .ok = false, .error = "redis not connected" };
	if (state != R_UP || !ac) {
		done(arg, &fail);
		return NULL;
	}
	struct store_req *r = calloc(1, sizeof *r);
	if (!r) {
		fail.error = "out of memory";
		done(arg, &fail);
		return NULL;
	}
	r->done = done;
	r->arg = arg;
	struct gl_script_keys k;
	char nums[5][24];
	gl_script_keys(cfg->store.redis.prefix, t, &k);
	snprintf(nums[0], sizeof nums[0], "%lld", (long long)p->delay);
	snprintf(nums[1], sizeof nums[1], "%lld", (long long)p->retry_window);
	snprintf(nums[2], sizeof nums[2], "%lld", (long long)p->pass_lifetime);
	snprintf(nums[3], sizeof nums[3], "%d", p->awl_threshold);
	snprintf(nums[4], sizeof nums[4], "%d", p->max_new_per_client);
	size_t used = 0;
	const char *args[NARGS] = { "EVALSHA", sha, "3", k.triplet, k.awl, k.new_count, nums[0], nums[1], nums[2],
				    nums[3], nums[4], dry_run ? "1" : "0", t->net, t->sender, t->rcpt };
	for (int i = 0; i < NARGS; i++) {
		if (!put_arg(r, &used, i, args[i])) {
			free(r);
			fail.error = "triplet too long for a redis request";
			done(arg, &fail);
			return NULL;
		}
	}
	r->timer = evtimer_new(base, on_timeout, r);
	struct timeval tv = { cfg->store.redis.timeout_ms / 1000,
			      (cfg->store.redis.timeout_ms % 1000) * 1000 };
	if (!r->timer || evtimer_add(r->timer, &tv) < 0) {
		req_free(r);
		fail.error = "out of memory";
		done(arg, &fail);
		return NULL;
	}
	return send_request(r) ? r : NULL;
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
	(void)s;
	judge();
	return state == R_UP && !failing;
}

static void redis_close(struct store *s)
{
	(void)s;
	if (ac) {
		redisAsyncContext *c = ac;
		ac = NULL;
		redisAsyncFree(c);
	}
	sentinel_abandon();
	if (pc) {
		redisAsyncContext *c = pc;
		pc = NULL;
		redisAsyncFree(c);
	}
	event_free(retry_timer);
	event_free(connect_timer);
	if (sentinel_timer)
		event_free(sentinel_timer);
	if (pc_timer)
		event_free(pc_timer);
	free(sent);
	gg_config_unref(cfg);
}

/* greygate-ctl talks to Redis itself: no admin here. */
static const struct store_ops ops = {
	.decide = redis_decide,
	.cancel = redis_cancel,
	.healthy = redis_healthy,
	.close = redis_close,
};

/* The state above is still the file's (hiredis's callbacks find it
 * there): one Redis store a process. */
static struct store instance = { &ops, STORE_REDIS };

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

struct store *store_redis_open(struct event_base *b, struct gg_config *c)
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
	snprintf(mhost, sizeof mhost, "%s", c->store.redis.host);
	mport = c->store.redis.port;
	nsent = c->store.redis.nsentinels;
	if (nsent) {
		/* no master until a sentinel names one */
		snprintf(mhost, sizeof mhost, "-");
		mport = 0;
		sent = calloc(nsent, sizeof *sent);
		sentinel_timer = evtimer_new(base, on_sentinel_timeout, NULL);
		pc_timer = evtimer_new(base, on_pc_timeout, NULL);
		if (!sent || !sentinel_timer || !pc_timer) {
			log_msg(LOG_LVL_ERROR, "store", "out of memory creating the redis store");
			return NULL;
		}
		for (size_t i = 0; i < nsent; i++) {
			sent[i].name = c->store.redis.sentinels[i];
			if (!sentinel_parse(sent[i].name, &sent[i].a)) {   /* the loader checked */
				log_msg(LOG_LVL_ERROR, "store", "bad store.redis.sentinels entry");
				return NULL;
			}
		}
	}
	/* Start-up does not wait for Redis: until it answers, decisions follow
	 * store.failure, and the connection is retried in the background. */
	connect_now();
	return &instance;
}
