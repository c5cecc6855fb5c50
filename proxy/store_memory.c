/*
 * The embedded store: memstore on this process's loop, saved to
 * store.file every save_interval seconds and at exit, swept for expired
 * entries a slice at a time.
 */
#include <event2/event.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "memstore.h"
#include "store.h"

#define SWEEP_EVERY 1        /* seconds */
#define SWEEP_BUCKETS 4096   /* per sweep: bounded work on the loop */

static struct memstore *mem;
static struct gg_config *opened_with;   /* file and bounds are fixed at start */
static struct event *save_timer, *sweep_timer;

struct memstore *store_memory_get(void)
{
	return mem;
}

static void save(const char *why)
{
	if (!opened_with->store.file[0])
		return;
	char err[512];
	struct logline l;
	if (memstore_save(mem, opened_with->store.file, time(NULL), err, sizeof err) < 0) {
		ll_begin(&l, LOG_LVL_ERROR, "store_save");
		ll_str(&l, "result", "failed");
		ll_str(&l, "reason", err);
		ll_str(&l, "action", "state kept in memory; retrying at the next save");
	} else {
		struct memstore_stats st = memstore_stats(mem);
		ll_begin(&l, LOG_LVL_DEBUG, "store_save");
		ll_str(&l, "result", "ok");
		ll_str(&l, "why", why);
		ll_int(&l, "triplets", (long long)st.triplets);
	}
	ll_emit(&l);
}

static void on_save(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	save("interval");
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	memstore_sweep(mem, time(NULL), SWEEP_BUCKETS);
}

static struct store_req *mem_decide(const struct gg_config *cfg, const struct triplet *t,
				    bool dry_run, store_done_fn done, void *arg)
{
	struct gl_params p = store_params(cfg);
	struct store_result r = { .ok = true };
	r.d = memstore_decide(mem, &p, time(NULL), t, dry_run);
	done(arg, &r);
	return NULL;
}

static void mem_cancel(struct store_req *r)
{
	(void)r; /* decisions complete at once; nothing is ever pending */
}

static bool mem_healthy(void)
{
	return true;
}

static void mem_close(void)
{
	save("exit");
	event_free(save_timer);
	event_free(sweep_timer);
	memstore_free(mem);
	gg_config_unref(opened_with);
	mem = NULL;
}

static const struct store_ops ops = {
	.name = "memory",
	.decide = mem_decide,
	.cancel = mem_cancel,
	.healthy = mem_healthy,
	.close = mem_close,
};

const struct store_ops *store_memory_open(struct event_base *base, struct gg_config *cfg)
{
	mem = memstore_new((size_t)cfg->store.max_entries);
	if (!mem) {
		log_msg(LOG_LVL_ERROR, "store", "out of memory creating the embedded store");
		return NULL;
	}
	opened_with = gg_config_ref(cfg);
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "store_load");
	ll_str(&l, "store", "memory");
	ll_str(&l, "file", cfg->store.file);
	if (cfg->store.file[0]) {
		char err[512];
		long n = memstore_load(mem, cfg->store.file, time(NULL), err, sizeof err);
		if (n < 0) {
			l.lvl = LOG_LVL_ERROR;
			ll_str(&l, "result", "failed");
			ll_str(&l, "reason", err);
			ll_str(&l, "action", "starting with an empty store; the file is overwritten at the next save");
		} else {
			ll_str(&l, "result", "ok");
			ll_int(&l, "entries", n);
		}
	}
	ll_int(&l, "max_entries", cfg->store.max_entries);
	ll_emit(&l);

	struct timeval save_tv = { cfg->store.save_interval, 0 }, sweep_tv = { SWEEP_EVERY, 0 };
	save_timer = event_new(base, -1, EV_PERSIST, on_save, NULL);
	sweep_timer = event_new(base, -1, EV_PERSIST, on_sweep, NULL);
	event_add(save_timer, &save_tv);
	event_add(sweep_timer, &sweep_tv);
	return &ops;
}
