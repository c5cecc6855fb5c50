/*
 * The embedded store: memstore on this process's loop, saved to
 * store.file every save_interval seconds and at exit, swept for expired
 * entries a slice at a time.
 *
 * A periodic save is written by a forked child from its copy of the
 * memory (copy-on-write), so that the loop goes on deciding while a large
 * store is written and synced; the loop learns of the child's end through
 * SIGCHLD and reads its report from a pipe. One save runs at a time. The
 * save at exit is written in this process: the loop is over by then.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl_cmd.h"
#include "log.h"
#include "memstore.h"
#include "store.h"

#define SWEEP_EVERY 1        /* seconds */
#define SWEEP_BUCKETS 4096   /* per sweep: bounded work on the loop */

struct mem_store {
	struct store base;
	struct memstore *mem;
	struct gg_config *cfg;          /* file and bounds are fixed at start */
	struct event *save_timer, *sweep_timer, *child_ev;
	struct {
		pid_t pid;              /* the save child, or 0 */
		int fd;                 /* the pipe's read end */
		struct timespec started;
		const char *why;
	} saving;
};

static struct mem_store *mem_of(void *s)
{
	return (struct mem_store *)s;   /* base is the first member */
}

/* What a save child tells its parent through the pipe. */
struct save_report {
	bool ok;
	struct memstore_saved saved;
	char err[400];
};

static long long ms_since(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)(now.tv_sec - start->tv_sec) * 1000 +
	       (now.tv_nsec - start->tv_nsec) / 1000000;
}

static void log_save(const char *why, const struct save_report *rep, long long ms, int status)
{
	struct logline l;
	ll_begin(&l, rep->ok ? LOG_LVL_INFO : LOG_LVL_ERROR, "store_save");
	ll_str(&l, "result", rep->ok ? "ok" : "failed");
	ll_str(&l, "why", why);
	if (rep->ok) {
		ll_int(&l, "triplets", (long long)rep->saved.triplets);
		ll_int(&l, "networks", (long long)rep->saved.networks);
		ll_int(&l, "bytes", (long long)rep->saved.bytes);
	} else {
		ll_str(&l, "reason", rep->err);
		if (status >= 0 && WIFSIGNALED(status))
			ll_int(&l, "signal", WTERMSIG(status));
		ll_str(&l, "action", "state kept in memory; retrying at the next save");
	}
	ll_int(&l, "duration_ms", ms);
	ll_emit(&l);
}

/* The save itself, here or in a save child; REP zeroed first, so that the
 * child's report carries no stray bytes. */
static void save_to_file(struct mem_store *m, struct save_report *rep)
{
	memset(rep, 0, sizeof *rep);
	rep->ok = memstore_save(m->mem, m->cfg->store.file, time(NULL), &rep->saved, rep->err,
				sizeof rep->err) == 0;
}

static void save_here(struct mem_store *m, const char *why)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	struct save_report rep;
	save_to_file(m, &rep);
	log_save(why, &rep, ms_since(&start), -1);
}

/* In the child: nothing of the parent's loop may run here (its signal
 * handlers would write into the parent's signal pipe), and the parent's
 * descriptors are closed so that a connection the parent closes during the
 * save is closed at once, not when the child ends. */
_Noreturn static void save_child(struct mem_store *m, int report_fd, const sigset_t *mask)
{
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	if (dup2(report_fd, STDERR_FILENO + 1) < 0)
		_exit(2);
	report_fd = STDERR_FILENO + 1;
	if (close_range(STDERR_FILENO + 2, ~0u, 0) < 0)
		for (int fd = STDERR_FILENO + 2; fd < 1024; fd++)
			close(fd);
	sigprocmask(SIG_SETMASK, mask, NULL);
	struct save_report rep;
	save_to_file(m, &rep);
	ssize_t n = write(report_fd, &rep, sizeof rep);
	_exit(rep.ok && n == (ssize_t)sizeof rep ? 0 : 1);
}

static void save_in_child(struct mem_store *m, const char *why)
{
	if (!m->cfg->store.file[0])
		return;
	if (m->saving.pid > 0) {
		struct logline l;
		ll_begin(&l, LOG_LVL_WARNING, "store_save");
		ll_str(&l, "result", "skipped");
		ll_str(&l, "why", why);
		ll_str(&l, "reason", "the previous save is still running");
		ll_emit(&l);
		return;
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		struct save_report rep = { .ok = false };
		snprintf(rep.err, sizeof rep.err, "pipe: %s", strerror(errno));
		log_save(why, &rep, 0, -1);
		return;
	}
	/* Signals stay blocked across fork until the child has reset them. */
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid_t pid = fork();
	if (pid == 0)
		save_child(m, p[1], &old);
	int fork_errno = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		struct save_report rep = { .ok = false };
		snprintf(rep.err, sizeof rep.err, "fork: %s", strerror(fork_errno));
		log_save(why, &rep, 0, -1);
		return;
	}
	m->saving.pid = pid;
	m->saving.fd = p[0];
	m->saving.why = why;
	clock_gettime(CLOCK_MONOTONIC, &m->saving.started);
}

/* The child has ended (STATUS, or -1 when it was reaped elsewhere): its
 * report is in the pipe, or it died without one. */
static void save_ended(struct mem_store *m, int status)
{
	struct save_report rep;
	ssize_t n = read(m->saving.fd, &rep, sizeof rep);
	if (n != (ssize_t)sizeof rep) {
		memset(&rep, 0, sizeof rep);
		snprintf(rep.err, sizeof rep.err, "the save process ended without a report");
	}
	rep.err[sizeof rep.err - 1] = 0;
	log_save(m->saving.why, &rep, ms_since(&m->saving.started), status);
	close(m->saving.fd);
	m->saving.pid = 0;
	m->saving.fd = -1;
}

static void on_child(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	struct mem_store *m = arg;
	if (m->saving.pid <= 0)
		return;
	int status;
	pid_t r = waitpid(m->saving.pid, &status, WNOHANG);
	if (r == m->saving.pid)
		save_ended(m, status);
	else if (r < 0 && errno == ECHILD)
		save_ended(m, -1);
}

/* At exit a save still running is stopped: the one that follows has
 * newer state, and both would write the same temporary file. */
static void save_abandon(struct mem_store *m)
{
	if (m->saving.pid <= 0)
		return;
	kill(m->saving.pid, SIGKILL);
	while (waitpid(m->saving.pid, NULL, 0) < 0 && errno == EINTR)
		;
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "store_save");
	ll_str(&l, "result", "stopped");
	ll_str(&l, "why", m->saving.why);
	ll_str(&l, "reason", "exiting; the exit save follows");
	ll_int(&l, "duration_ms", ms_since(&m->saving.started));
	ll_emit(&l);
	close(m->saving.fd);
	m->saving.pid = 0;
	m->saving.fd = -1;
}

static void on_save(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	save_in_child(arg, "interval");
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct mem_store *m = arg;
	memstore_sweep(m->mem, time(NULL), SWEEP_BUCKETS);
}

static struct store_req *mem_decide(struct store *s, const struct gl_params *p,
				    const struct triplet *t, bool dry_run, store_done_fn done,
				    void *arg)
{
	struct store_result r = { .ok = true };
	r.d = memstore_decide(mem_of(s)->mem, p, time(NULL), t, dry_run);
	done(arg, &r);
	return NULL;
}

static struct store_req *mem_marks(struct store *s, const char *net,
				   const struct gl_mark_set *set, store_done_fn done, void *arg)
{
	struct store_result r = { .ok = true };
	r.marks = memstore_marks(mem_of(s)->mem, net, set, time(NULL));
	done(arg, &r);
	return NULL;
}

static void mem_cancel(struct store *s, struct store_req *r)
{
	(void)s;
	(void)r; /* decisions complete at once; nothing is ever pending */
}

static bool mem_healthy(struct store *s)
{
	(void)s;
	return true;
}

static void mem_close(struct store *s)
{
	struct mem_store *m = mem_of(s);
	save_abandon(m);
	if (m->cfg->store.file[0])
		save_here(m, "exit");
	event_free(m->save_timer);
	event_free(m->sweep_timer);
	event_free(m->child_ev);
	memstore_free(m->mem);
	gg_config_unref(m->cfg);
	free(m);
}

/* ---- greygate-ctl's commands, through the control socket ---- */

struct walk_ctx {
	bool (*fn)(void *arg, const struct ctl_entry *e);
	void *arg;
	int64_t now;
};

static bool walk_entry(void *arg, const struct memstore_view *v)
{
	struct walk_ctx *w = arg;
	struct ctl_entry e = { v->hex, v->net, v->sender, v->rcpt, v->t.passed,
			       v->t.first_seen, v->t.expires - w->now, v->t.backup_first };
	return w->fn(w->arg, &e);
}

static int adm_walk(void *ctx, uint64_t *cursor, size_t budget,
		    bool (*fn)(void *arg, const struct ctl_entry *e), void *arg)
{
	struct walk_ctx w = { fn, arg, time(NULL) };
	struct memstore_walk mw = { (size_t)*cursor };
	bool more = memstore_walk(mem_of(ctx)->mem, &mw, w.now, budget, walk_entry, &w);
	*cursor = mw.bucket;
	return more;
}

static int adm_get(void *ctx, const struct triplet *t, struct ctl_entry *e)
{
	int64_t now = time(NULL);
	struct gl_triplet st = memstore_get(mem_of(ctx)->mem, t);
	if (!st.exists || st.expires <= now)
		return 0;
	*e = (struct ctl_entry){ t->hex, triplet_keytext(t), t->sender, t->rcpt, st.passed, st.first_seen,
				 st.expires - now, st.backup_first };
	return 1;
}

static int adm_explain(void *ctx, const struct gl_params *p, const struct triplet *t,
		       struct gl_decision *d)
{
	*d = memstore_decide(mem_of(ctx)->mem, p, time(NULL), t, true);
	return 0;
}

static int adm_pass(void *ctx, const struct triplet *t, int64_t lifetime)
{
	return memstore_pass(mem_of(ctx)->mem, t, time(NULL), lifetime);
}

static int adm_del(void *ctx, const char *hex)
{
	return memstore_delete(mem_of(ctx)->mem, hex);
}

static int adm_whitelist(void *ctx, const char *net, int threshold, int64_t ttl)
{
	int64_t now = time(NULL);
	/* the parser bounds TTL; saturate anyway rather than wrap */
	int64_t expires = ttl > INT64_MAX - now ? INT64_MAX : now + ttl;
	return memstore_whitelist(mem_of(ctx)->mem, net, threshold, expires);
}

static int adm_stats(void *ctx, struct ctl_stats *out)
{
	struct memstore_stats s = memstore_stats(mem_of(ctx)->mem);
	ctl_stat_str(out, "store", "memory");
	ctl_stat_num(out, "triplets", (long long)s.triplets);
	ctl_stat_num(out, "networks", (long long)s.networks);
	ctl_stat_num(out, "evicted", (long long)s.evicted);
	ctl_stat_num(out, "expired", (long long)s.expired);
	return 0;
}

static const char *adm_error(void *ctx)
{
	(void)ctx;
	return "out of memory or malformed key";
}

static const struct ctl_store admin = {
	adm_walk, adm_get, adm_explain, adm_pass, adm_del, adm_whitelist, adm_stats, adm_error,
};

static const struct store_ops ops = {
	.decide = mem_decide,
	.marks = mem_marks,
	.cancel = mem_cancel,
	.healthy = mem_healthy,
	.close = mem_close,
	.admin = &admin,
};

struct store *store_memory_open(struct event_base *base, struct gg_config *cfg)
{
	struct mem_store *m = calloc(1, sizeof *m);
	if (!m || !(m->mem = memstore_new((size_t)cfg->store.max_entries))) {
		free(m);
		log_msg(LOG_LVL_ERROR, "store", "out of memory creating the embedded store");
		return NULL;
	}
	m->base = (struct store){ &ops, STORE_MEMORY };
	m->saving.fd = -1;
	m->cfg = gg_config_ref(cfg);
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "store_load");
	ll_str(&l, "store", store_type(STORE_MEMORY)->name);
	ll_str(&l, "file", cfg->store.file);
	if (cfg->store.file[0]) {
		char err[512];
		long n = memstore_load(m->mem, cfg->store.file, time(NULL), err, sizeof err);
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
	m->save_timer = event_new(base, -1, EV_PERSIST, on_save, m);
	m->sweep_timer = event_new(base, -1, EV_PERSIST, on_sweep, m);
	m->child_ev = evsignal_new(base, SIGCHLD, on_child, m);
	evsignal_add(m->child_ev, NULL);
	event_add(m->save_timer, &save_tv);
	event_add(m->sweep_timer, &sweep_tv);
	return &m->base;
}
