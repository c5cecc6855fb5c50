/*
 * redis_priv: what the Redis store's three files share, around one
 * instance (struct redis_store). store_redis.c sends decisions and answers
 * them; redis_conn.c keeps the connection to the master (connect, AUTH/
 * SELECT/SCRIPT LOAD, back-off, error classification, health window);
 * redis_sentinel.c asks the sentinels which node is the master and listens
 * for +switch-master; redis_cluster.c, in a Redis Cluster (store kind
 * "redis-cluster"), keeps the slot map and a connection per primary, and
 * store_redis.c sends each decision where the slot of its keys says.
 *
 * Every hiredis context an instance opens carries the instance in its
 * ->data, and every timer in its argument: the callbacks find their store
 * there, so several instances can live in one process.
 */
#ifndef GG_REDIS_PRIV_H
#define GG_REDIS_PRIV_H

#include <event2/event.h>
#include <hiredis/async.h>
#include <stdbool.h>

#include "log.h"
#include "metrics.h"
#include "sentinel.h"
#include "store.h"

#define HEALTH_WINDOW 10           /* seconds of decisions health looks at */

enum rstate { R_DOWN, R_DISCOVERING, R_CONNECTING, R_UP };

struct redis_sentinel {
	struct sentinel_addr a;
	const char *name;          /* as written in the configuration */
};

struct redis_store {
	struct store base;
	struct event_base *loop;
	struct gg_config *cfg;     /* connection settings fixed at start */
	char sha[41];              /* of greylist_lua, for EVALSHA */
	char marks_sha[41];        /* of marks_lua */

	/* The master: store.redis.host/port, or what the sentinels last named. */
	char mhost[256];
	int mport;
	redisAsyncContext *ac;
	enum rstate state;
	struct event *retry_timer, *connect_timer;
	int backoff_ms;
	int timeouts_in_row;
	/* The last connection was dropped for its replies: the next one does
	 * not reset the back-off, a decision that succeeds does. */
	bool dropped_for_replies;

	/* Decisions sent to Redis, by second, and the verdict drawn from them. */
	struct {
		long long sec;
		unsigned asked, failed;
	} window[HEALTH_WINDOW];
	bool failing;
	char fail_reason[32];      /* of the last failed decision */
	char fail_detail[200];

	/* Sentinel mode (nsent > 0) */
	struct redis_sentinel *sent;
	size_t nsent;
	size_t sent_first;         /* the one that answered last: asked first */
	size_t sent_tried;         /* in the current round */
	size_t sent_cur;           /* the one being asked */
	redisAsyncContext *sc;     /* asking sent[sent_cur] */
	struct event *sentinel_timer;
	redisAsyncContext *pc;     /* subscribed to +switch-master */
	size_t pc_sent;
	struct event *pc_timer;

	/* Cluster mode: the nodes and the slot map (no master connection). */
	struct redis_cluster *cl;
};

/* What to do about an error reply on the master connection. */
enum redis_then {
	KEEP,                      /* the decision fails; the connection stays */
	RECONNECT,                 /* another connection may do better */
	FIND_MASTER,               /* RECONNECT when sentinels can name another node */
};

struct redis_errkind {
	const char *word;
	enum store_error kind;
	enum redis_then then;
};

/* ---- redis_conn.c ---- */

/* Makes R's connection timers: 0, or -1 when out of memory. */
int redis_conn_init(struct redis_store *R);

/* A log line about R's master connection: what happened, DETAIL or NULL. */
void redis_log(const struct redis_store *R, enum log_level lvl, const char *what,
	       const char *detail);
/* Classifies an error reply ERR by its first word and counts it. */
const struct redis_errkind *redis_count_error(const char *err);
/* An error reply ERR to WHAT on R's master connection: counted, and the
 * connection dropped when its kind says another one may do better. */
const struct redis_errkind *redis_master_error(struct redis_store *R, const char *what,
					       const char *err);
/* Drops R's master connection (answering what was pending on it) and
 * schedules a reconnect. */
void redis_drop(struct redis_store *R, const char *why);
/* Connects to R->mhost:mport, queueing the setup commands. */
void redis_connect_master(struct redis_store *R);
/* The next connection (through the sentinels in sentinel mode) after the
 * back-off, which grows with each call until a decision succeeds. */
void redis_schedule_reconnect(struct redis_store *R);
/* Connects now (through the sentinels in sentinel mode). */
void redis_connect_now(struct redis_store *R);
/* Why C failed, in its disconnect callback. */
const char *redis_lost_why(const redisAsyncContext *c);
/* One decision that went to Redis; REASON (a word) and DETAIL when it failed. */
void redis_note_decision(struct redis_store *R, const char *reason, const char *detail);
/* Failing or not, from the decisions of the last HEALTH_WINDOW seconds. */
void redis_judge(struct redis_store *R);
void redis_arm(struct event *ev, int ms);

/* ---- redis_sentinel.c ---- */

/* Reads store.redis.sentinels into R and makes the timers: 0, or -1
 * (logged). */
int redis_sentinel_init(struct redis_store *R);
/* Starts a round of asking the sentinels for the master. */
void redis_ask_sentinels(struct redis_store *R);
/* Stops asking (the current sentinel connection is freed). */
void redis_sentinel_abandon(struct redis_store *R);
/* Drops the +switch-master subscription. */
void redis_unsubscribe(struct redis_store *R);

/* ---- redis_cluster.c ---- */

/* Reads store.redis.cluster into R and asks the seeds for the slot map:
 * 0, or -1 (logged). R is up once a map is read. */
int redis_cluster_init(struct redis_store *R);
void redis_cluster_close(struct redis_store *R);
/* The connection a decision on SLOT goes to, or to ASK when not NULL (an
 * ASK redirect); *NODE says which node, for what the reply tells later.
 * NULL when that node has no connection now (being retried after its
 * back-off): the decision fails. */
redisAsyncContext *redis_cluster_conn(struct redis_store *R, unsigned slot,
				      const struct sentinel_addr *ask, int *node);
/* An error reply ERR from NODE: true when it is a MOVED (the map is
 * corrected and re-read; *ASKING false) or an ASK (*TO, *ASKING true), and
 * the decision is to be sent again. */
bool redis_cluster_redirect(struct redis_store *R, int node, const char *err,
			    struct sentinel_addr *to, bool *asking);
/* Any other error reply ERR from NODE: counted, and the node's connection
 * re-made (and the map re-read) when its kind says another may do better. */
const struct redis_errkind *redis_cluster_error(struct redis_store *R, int node,
						const char *err);
/* NODE seems stuck (requests timing out): its connection is re-made. */
void redis_cluster_node_failed(struct redis_store *R, int node, const char *why);

#endif
