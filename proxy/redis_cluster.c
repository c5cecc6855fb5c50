/*
 * The Redis store's cluster mode (redis_priv.h): the slot map, read with
 * CLUSTER SLOTS (lib/redis_slots.h) from the seeds of store.redis.cluster
 * or any node known since, and one connection per primary, each set up
 * like the master's (AUTH, SCRIPT LOAD) and bounded by redis_bound.
 *
 * The map is read at start, after a MOVED (the one slot is corrected at
 * once, the whole map read again in the background), and whenever a node's
 * connection is lost or refused: in a failover that is how the promoted
 * replica is found. Reads are one at a time, from the loop (a timer), never
 * inside the callback that wanted them, and go round the candidates until
 * one answers, each under the connect and request timeouts; when none does,
 * the next round waits a back-off that grows to REFRESH_MAX_MS.
 *
 * A node whose connection failed is not tried again before its own
 * back-off: decisions for its slots fail at once meanwhile (store.failure)
 * instead of each waiting for a connect. Rounds start REFRESH_MIN_MS apart
 * at least, so a dead primary the map still names (until its replica is
 * promoted) costs a few reads a second, not a loop of them.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "greylist_lua.h"
#include "redis_bound.h"
#include "redis_priv.h"
#include "redis_slots.h"

/* Connections: the primaries of a map, and room as many again for nodes
 * that served before or were named by a redirect and still have requests
 * pending (closed once they have none), so that a full new map always
 * fits. Indexes fit the one-byte slot owners (SLOT_NOBODY is 255). */
#define NODES_MAX (2 * SLOTS_MAX_NODES)
#define SEEDS_MAX 16               /* store.redis.cluster entries used */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define REFRESH_MIN_MS 100
#define REFRESH_MAX_MS 2000

struct cnode {
	struct sentinel_addr a;    /* a.port 0: a free entry */
	redisAsyncContext *ac;
	long long retry_at;        /* ms: no new connection before */
	int backoff_ms;
};

struct redis_cluster {
	struct sentinel_addr seed[SEEDS_MAX];
	size_t nseed;
	struct cnode node[NODES_MAX];
	uint8_t owner[REDIS_SLOTS];    /* index into node, or SLOT_NOBODY */

	/* Reading the map: from cand[tried - 1] over rc, the round's candidates
	 * (the nodes connected now, then the seeds, then the other nodes). */
	struct sentinel_addr cand[NODES_MAX + SEEDS_MAX];
	size_t ncand, tried;
	redisAsyncContext *rc;
	struct event *refresh_timer, *rc_timer;
	int refresh_backoff_ms;
	long long refreshed_at;        /* ms: when the last round started */
	bool again;                    /* wanted again while one was under way */
	struct slot_map read;          /* the last reply, read */
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void log_node(const struct redis_store *R, enum log_level lvl,
		     const struct sentinel_addr *a, const char *what, const char *detail)
{
	struct logline l;
	ll_begin(&l, lvl, "store");
	ll_str(&l, "store", store_type(R->base.kind)->name);
	ll_str(&l, "redis", a->host);
	ll_int(&l, "port", a->port);
	ll_str(&l, "state", what);
	if (detail)
		ll_str(&l, "detail", detail);
	ll_emit(&l);
}

static int grow(int ms)
{
	ms = ms ? ms * 2 : BACKOFF_MIN_MS;
	return ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms;
}

/* ---- the slot map ---- */

/* Reads the map again soon (from the loop, REFRESH_MIN_MS after the last
 * round at the earliest), unless a read is under way or due. */
static void refresh_soon(struct redis_cluster *C)
{
	if (C->rc) {
		C->again = true;
		return;
	}
	if (evtimer_pending(C->refresh_timer, NULL))
		return;
	long long wait = C->refreshed_at + REFRESH_MIN_MS - now_ms();
	redis_arm(C->refresh_timer, wait > 0 ? (int)wait : 0);
}

static int node_find(const struct redis_cluster *C, const struct sentinel_addr *a)
{
	for (int i = 0; i < NODES_MAX; i++)
		if (C->node[i].a.port == a->port && strcmp(C->node[i].a.host, a->host) == 0)
			return i;
	return -1;
}

/* The entry of A, made when new: -1 when the table is full. */
static int node_add(struct redis_cluster *C, const struct sentinel_addr *a)
{
	int i = node_find(C, a);
	for (int k = 0; i < 0 && k < NODES_MAX; k++)
		if (C->node[k].a.port == 0) {
			C->node[k] = (struct cnode){ .a = *a };
			i = k;
		}
	return i;
}

static void node_close(struct cnode *n)
{
	if (n->ac) {
		redisAsyncContext *c = n->ac;
		n->ac = NULL;
		redisAsyncFree(c);   /* answers what was pending on it */
	}
}

static bool owns_slots(const struct redis_cluster *C, int i)
{
	return memchr(C->owner, i, sizeof C->owner) != NULL;
}

static void connect_node(struct redis_store *R, int i);

/* The map just read replaces ours: its primaries connected (unless in
 * their back-off), the nodes that serve nothing now and wait for nothing
 * closed. A change is logged with the number of slots that moved. */
static void apply_map(struct redis_store *R)
{
	struct redis_cluster *C = R->cl;
	const struct slot_map *m = &C->read;
	int idx[SLOTS_MAX_NODES];
	for (size_t k = 0; k < m->nnodes; k++) {
		if ((idx[k] = node_add(C, &m->node[k])) < 0) {
			log_node(R, LOG_LVL_ERROR, &m->node[k], "slot-map-refused",
				 "more nodes than greygate keeps connections to; map unchanged");
			return;
		}
	}
	size_t served = 0, changed = 0;
	for (size_t s = 0; s < REDIS_SLOTS; s++) {
		uint8_t o = m->owner[s] == SLOT_NOBODY ? SLOT_NOBODY : (uint8_t)idx[m->owner[s]];
		changed += o != C->owner[s];
		C->owner[s] = o;
		served += o != SLOT_NOBODY;
	}
	long long now = now_ms();
	for (int i = 0; i < NODES_MAX; i++) {
		struct cnode *n = &C->node[i];
		if (!n->a.port)
			continue;
		if (owns_slots(C, i)) {
			if (!n->ac && now >= n->retry_at)
				connect_node(R, i);
		} else if (!n->ac || !n->ac->replies.head) {
			node_close(n);
			n->a.port = 0;
		}
	}
	if (changed) {
		struct logline l;
		ll_begin(&l, served < REDIS_SLOTS ? LOG_LVL_WARNING : LOG_LVL_INFO, "store");
		ll_str(&l, "store", store_type(R->base.kind)->name);
		ll_str(&l, "state", "slot-map");
		ll_int(&l, "primaries", (long long)m->nnodes);
		ll_int(&l, "slots_served", (long long)served);
		ll_int(&l, "slots_changed", (long long)changed);
		ll_str(&l, "from", C->cand[C->tried - 1].host);
		ll_int(&l, "port", C->cand[C->tried - 1].port);
		ll_emit(&l);
	}
	R->state = R_UP;
}

static void ask_next(struct redis_store *R);

static void abandon_read(struct redis_cluster *C)
{
	evtimer_del(C->rc_timer);
	if (C->rc) {
		redisAsyncContext *c = C->rc;
		C->rc = NULL;
		redisAsyncFree(c);
	}
}

static void read_failed(struct redis_store *R, const char *why)
{
	log_node(R, LOG_LVL_WARNING, &R->cl->cand[R->cl->tried - 1], "slot-map-failed", why);
	abandon_read(R->cl);
	ask_next(R);
}

static void on_slots(redisAsyncContext *c, void *reply, void *priv)
{
	(void)priv;
	struct redis_store *R = c->data;
	struct redis_cluster *C = R->cl;
	redisReply *r = reply;
	if (c != C->rc || !r)
		return;        /* abandoned, or lost: on_rc_disconnected */
	const char *bad = slot_map_read(r, C->cand[C->tried - 1].host, &C->read);
	if (bad) {
		char why[300];
		if (r->type == REDIS_REPLY_ERROR)
			redis_count_error(r->str);
		snprintf(why, sizeof why, "%s%s%.200s", bad, r->type == REDIS_REPLY_ERROR ? ": " : "",
			 r->type == REDIS_REPLY_ERROR ? r->str : "");
		read_failed(R, why);
		return;
	}
	apply_map(R);
	abandon_read(C);   /* freed once this callback returns */
	C->refresh_backoff_ms = 0;
	if (C->again) {
		C->again = false;
		redis_arm(C->refresh_timer, BACKOFF_MIN_MS);
	}
}

static void on_rc_connected(const redisAsyncContext *c, int status)
{
	struct redis_store *R = c->data;
	if (c != R->cl->rc || status == REDIS_OK)
		return;
	R->cl->rc = NULL;      /* hiredis frees it after this callback */
	read_failed(R, c->errstr);
}

static void on_rc_disconnected(const redisAsyncContext *c, int status)
{
	struct redis_store *R = c->data;
	if (c != R->cl->rc)
		return;
	R->cl->rc = NULL;
	read_failed(R, status == REDIS_OK ? "closed" : redis_lost_why(c));
}

static void on_rc_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct redis_store *R = arg;
	if (R->cl->rc)
		read_failed(R, "timeout");
}

static void ask_next(struct redis_store *R)
{
	struct redis_cluster *C = R->cl;
	if (C->tried == C->ncand) {
		C->refresh_backoff_ms = grow(C->refresh_backoff_ms);
		if (C->refresh_backoff_ms > REFRESH_MAX_MS)
			C->refresh_backoff_ms = REFRESH_MAX_MS;
		struct logline l;
		ll_begin(&l, LOG_LVL_WARNING, "store");
		ll_str(&l, "store", store_type(R->base.kind)->name);
		ll_str(&l, "state", "no-slot-map");
		ll_str(&l, "detail", "no node answered CLUSTER SLOTS; trying again");
		ll_int(&l, "retry_ms", C->refresh_backoff_ms);
		ll_emit(&l);
		C->again = false;
		redis_arm(C->refresh_timer, C->refresh_backoff_ms);
		return;
	}
	const struct sentinel_addr *a = &C->cand[C->tried++];
	redisAsyncContext *rc = redisAsyncConnect(a->host, a->port);
	if (rc)
		rc->data = R;
	if (!rc || rc->err || redis_bound_attach(rc, R->loop) < 0) {
		log_node(R, LOG_LVL_WARNING, a, "slot-map-failed",
			 rc && rc->err ? rc->errstr : "out of memory");
		if (rc)
			redisAsyncFree(rc);
		ask_next(R);
		return;
	}
	C->rc = rc;
	redisAsyncSetConnectCallback(rc, on_rc_connected);
	redisAsyncSetDisconnectCallback(rc, on_rc_disconnected);
	redis_arm(C->rc_timer, R->cfg->store.redis.connect_timeout_ms + R->cfg->store.redis.timeout_ms);
	if (R->cfg->store.redis.password[0])
		redisAsyncCommand(rc, NULL, NULL, "AUTH %s", R->cfg->store.redis.password);
	redisAsyncCommand(rc, on_slots, NULL, "CLUSTER SLOTS");
}

static void add_cand(struct redis_cluster *C, const struct sentinel_addr *a)
{
	for (size_t i = 0; i < C->ncand; i++)
		if (C->cand[i].port == a->port && strcmp(C->cand[i].host, a->host) == 0)
			return;
	C->cand[C->ncand++] = *a;
}

/* A round: the nodes connected now know the current map best. */
static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct redis_store *R = arg;
	struct redis_cluster *C = R->cl;
	if (C->rc)
		return;
	C->refreshed_at = now_ms();
	C->ncand = C->tried = 0;
	for (int i = 0; i < NODES_MAX; i++)
		if (C->node[i].a.port && C->node[i].ac)
			add_cand(C, &C->node[i].a);
	for (size_t i = 0; i < C->nseed; i++)
		add_cand(C, &C->seed[i]);
	for (int i = 0; i < NODES_MAX; i++)
		if (C->node[i].a.port)
			add_cand(C, &C->node[i].a);
	ask_next(R);
}

/* ---- the primaries' connections ---- */

static int node_of(const struct redis_cluster *C, const redisAsyncContext *c)
{
	for (int i = 0; i < NODES_MAX; i++)
		if (C->node[i].ac == c)
			return i;
	return -1;
}

/* Node I's connection is gone (NULL already): not again before its
 * back-off, and the map is read again (a failover shows there). */
static void node_lost(struct redis_store *R, int i, const char *what, const char *why)
{
	struct cnode *n = &R->cl->node[i];
	log_node(R, LOG_LVL_WARNING, &n->a, what, why);
	n->backoff_ms = grow(n->backoff_ms);
	n->retry_at = now_ms() + n->backoff_ms;
	refresh_soon(R->cl);
}

static void on_node_connected(const redisAsyncContext *c, int status)
{
	struct redis_store *R = c->data;
	int i = node_of(R->cl, c);
	if (i < 0)
		return;
	if (status != REDIS_OK) {
		R->cl->node[i].ac = NULL;   /* hiredis frees it after this callback */
		node_lost(R, i, "connect-failed", c->errstr);
		return;
	}
	R->cl->node[i].backoff_ms = 0;
	log_node(R, LOG_LVL_INFO, &R->cl->node[i].a, "connected", NULL);
}

static void on_node_disconnected(const redisAsyncContext *c, int status)
{
	struct redis_store *R = c->data;
	int i = node_of(R->cl, c);
	if (i < 0)
		return;        /* one we closed on purpose */
	R->cl->node[i].ac = NULL;
	node_lost(R, i, "disconnected", status == REDIS_OK ? "closed" : redis_lost_why(c));
}

static void on_node_setup(redisAsyncContext *c, void *reply, void *priv)
{
	struct redis_store *R = c->data;
	redisReply *r = reply;
	int i = node_of(R->cl, c);
	if (i < 0 || !r || r->type != REDIS_REPLY_ERROR)
		return;
	log_node(R, LOG_LVL_ERROR, &R->cl->node[i].a, priv, r->str);
	redis_cluster_error(R, i, r->str);
}

static void connect_node(struct redis_store *R, int i)
{
	struct cnode *n = &R->cl->node[i];
	redisAsyncContext *ac = redisAsyncConnect(n->a.host, n->a.port);
	if (ac)
		ac->data = R;
	if (!ac || ac->err || redis_bound_attach(ac, R->loop) < 0) {
		const char *why = ac && ac->err ? ac->errstr : "out of memory";
		char detail[200];
		snprintf(detail, sizeof detail, "%s", why);
		if (ac)
			redisAsyncFree(ac);
		node_lost(R, i, "connect-failed", detail);
		return;
	}
	n->ac = ac;
	redisAsyncSetConnectCallback(ac, on_node_connected);
	redisAsyncSetDisconnectCallback(ac, on_node_disconnected);
	/* Queued now, sent once the socket is up, ahead of any decision. */
	if (R->cfg->store.redis.password[0])
		redisAsyncCommand(ac, on_node_setup, "auth-failed", "AUTH %s",
				  R->cfg->store.redis.password);
	redisAsyncCommand(ac, on_node_setup, "script-load-failed", "SCRIPT LOAD %s", greylist_lua);
	redisAsyncCommand(ac, on_node_setup, "script-load-failed", "SCRIPT LOAD %s", marks_lua);
}

redisAsyncContext *redis_cluster_conn(struct redis_store *R, unsigned slot,
				      const struct sentinel_addr *ask, int *node)
{
	struct redis_cluster *C = R->cl;
	int i = ask ? node_add(C, ask) : C->owner[slot] == SLOT_NOBODY ? -1 : C->owner[slot];
	*node = i;
	if (i < 0) {
		refresh_soon(C);
		return NULL;
	}
	struct cnode *n = &C->node[i];
	if (!n->ac && now_ms() >= n->retry_at)
		connect_node(R, i);
	if (!n->ac)
		refresh_soon(C);   /* in its back-off: has a replica taken over? */
	return n->ac;
}

bool redis_cluster_redirect(struct redis_store *R, int node, const char *err,
			    struct sentinel_addr *to, bool *asking)
{
	struct redis_cluster *C = R->cl;
	struct redirect d;
	if (node < 0 || !redirect_parse(err, C->node[node].a.host, &d))
		return false;
	redis_count_error(err);
	if (d.kind == REDIRECT_ASK) {
		*to = d.to;
		*asking = true;
		return true;
	}
	int i = node_add(C, &d.to);
	if (i < 0)
		return false;
	C->owner[d.slot] = (uint8_t)i;
	*asking = false;
	refresh_soon(C);
	return true;
}

const struct redis_errkind *redis_cluster_error(struct redis_store *R, int node,
						const char *err)
{
	const struct redis_errkind *k = redis_count_error(err);
	if (k->then != KEEP) {
		char why[300];
		snprintf(why, sizeof why, "redis error: %.200s; reconnecting", err);
		redis_cluster_node_failed(R, node, why);
	} else if (k->kind == SE_CLUSTERDOWN) {
		refresh_soon(R->cl);   /* slots unserved for now: a failover under way */
	}
	return k;
}

void redis_cluster_node_failed(struct redis_store *R, int node, const char *why)
{
	if (node < 0 || !R->cl->node[node].ac)
		return;
	node_close(&R->cl->node[node]);
	node_lost(R, node, "disconnecting", why);
}

/* ---- the instance ---- */

int redis_cluster_init(struct redis_store *R)
{
	const struct gg_config *c = R->cfg;
	struct redis_cluster *C = calloc(1, sizeof *C);
	if (!C) {
		log_msg(LOG_LVL_ERROR, "store", "out of memory creating the redis cluster store");
		return -1;
	}
	R->cl = C;
	memset(C->owner, SLOT_NOBODY, sizeof C->owner);
	C->refresh_timer = evtimer_new(R->loop, on_refresh, R);
	C->rc_timer = evtimer_new(R->loop, on_rc_timeout, R);
	if (!C->refresh_timer || !C->rc_timer) {
		log_msg(LOG_LVL_ERROR, "store", "out of memory creating the redis cluster store");
		return -1;
	}
	for (size_t i = 0; i < c->store.redis.ncluster && C->nseed < SEEDS_MAX; i++) {
		if (!sentinel_parse(c->store.redis.cluster[i], &C->seed[C->nseed])) {   /* the loader checked */
			log_msg(LOG_LVL_ERROR, "store", "bad store.redis.cluster entry");
			return -1;
		}
		C->nseed++;
	}
	/* The health lines name the cluster by its seeds, not one node. */
	size_t n = 0;
	for (size_t i = 0; i < c->store.redis.ncluster && n < sizeof R->mhost; i++) {
		int w = snprintf(R->mhost + n, sizeof R->mhost - n, "%s%s", i ? "," : "",
				 c->store.redis.cluster[i]);
		if (w < 0)
			break;
		n += (size_t)w;
	}
	R->mport = 0;
	redis_arm(C->refresh_timer, 0);
	return 0;
}

void redis_cluster_close(struct redis_store *R)
{
	struct redis_cluster *C = R->cl;
	if (C->rc_timer)
		abandon_read(C);
	for (int i = 0; i < NODES_MAX; i++)
		node_close(&C->node[i]);
	if (C->refresh_timer)
		event_free(C->refresh_timer);
	if (C->rc_timer)
		event_free(C->rc_timer);
	free(C);
	R->cl = NULL;
}
