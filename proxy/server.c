/*
 * server: the state every module of a serving process shares, and the
 * reload that a worker and the supervisor both do.
 */
#include "server.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "metrics.h"

struct server srv;

void server_hold_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

void server_session_gone(void)
{
	listener_resume();
	if (srv.draining && srv.active == 0)
		event_base_loopexit(srv.base, NULL);
}

/* A bundle comes from our own supervisor, but a mapping of any size
 * would be taken on trust: bound it. */
#define BUNDLE_MAX ((size_t)1 << 30)
/* List-file bytes loaded per turn of the loop: sessions and store
 * requests run between two turns. */
#define RELOAD_BUDGET (64 * 1024)

struct bundle {
	void *p;
	size_t len;
};

/* Maps the bundle FD (closed either way); false with ERR filled. */
static bool bundle_map(int fd, struct bundle *b, char *err, size_t errlen)
{
	struct stat st;
	b->p = NULL;
	b->len = 0;
	if (fstat(fd, &st) < 0 || st.st_size <= 0 || (size_t)st.st_size > BUNDLE_MAX) {
		snprintf(err, errlen, "bundle:0: unusable (%lld bytes)", (long long)st.st_size);
		close(fd);
		return false;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		snprintf(err, errlen, "bundle:0: cannot map it");
		return false;
	}
	b->p = p;
	b->len = (size_t)st.st_size;
	return true;
}

static void bundle_unmap(struct bundle *b)
{
	if (b->p)
		munmap(b->p, b->len);
	b->p = NULL;
	b->len = 0;
}

struct gg_config *server_load_bundle(int fd, char *err, size_t errlen)
{
	struct bundle b;
	if (!bundle_map(fd, &b, err, errlen))
		return NULL;
	struct gg_config *c = NULL;
	struct gg_config_load *ld = gg_config_load_begin_bundle(b.p, b.len, err, errlen);
	if (ld) {
		int r;
		while ((r = gg_config_load_step(ld, SIZE_MAX)) == 0)
			;
		if (r > 0)
			c = gg_config_load_end(ld);
		else
			gg_config_load_abort(ld);
	}
	bundle_unmap(&b);
	return c;
}

/* The reload in progress, and what is asked for after it: at most one
 * more load, of the newest bundle or of the file. */
static struct {
	const struct reload_hooks *hooks;
	struct event *ev;
	struct gg_config_load *ld;
	struct bundle bundle;        /* mapped while it is being loaded */
	const char *source;
	double started;
	int pending_fd;
	bool pending_file;
	char err[1024];              /* the loader writes here, up to its end */
} rl = { .pending_fd = -1 };

static void reload_end(struct logline *l, enum log_level lvl, const char *result)
{
	ll_begin(l, lvl, "reload");
	ll_str(l, "result", result);
	ll_str(l, "source", rl.source);
	ll_int(l, "duration_ms", (long long)((metrics_now() - rl.started) * 1000));
}

static void reload_failed(const char *err)
{
	struct logline l;
	reload_end(&l, LOG_LVL_ERROR, "failed");
	ll_str(&l, "reason", err);
	ll_str(&l, "action", "keeping the configuration in force");
	ll_emit(&l);
	metrics_add(M_RELOADS_FAILED, 1);
}

/* All or nothing: a configuration that needs a restart is refused whole
 * (applying the rest would leave the process running something that no
 * file says). */
static void reload_apply(struct gg_config *c)
{
	struct logline l;
	const char *setting = rl.hooks->check_restart ? gg_config_restart_setting(srv.cfg, c) : NULL;
	char err[256];
	if (setting) {
		reload_end(&l, LOG_LVL_ERROR, "refused");
		ll_str(&l, "setting", setting);
		ll_str(&l, "reason", "needs a restart");
		ll_str(&l, "action", "keeping the configuration in force");
		ll_emit(&l);
		metrics_add(M_RELOADS_FAILED, 1);
		gg_config_unref(c);
		return;
	}
	if (rl.hooks->prepare && !rl.hooks->prepare(c, err, sizeof err)) {
		reload_failed(err);
		gg_config_unref(c);
		return;
	}
	log_setup(c->log.target, c->log.level);
	gg_config_unref(srv.cfg);
	srv.cfg = c;
	reload_end(&l, LOG_LVL_INFO, "ok");
	ll_str(&l, "file", c->file);
	ll_emit(&l);
	metrics_add(M_RELOADS_OK, 1);
	if (rl.hooks->applied)
		rl.hooks->applied();
}

static void reload_begin(void)
{
	rl.started = metrics_now();
	rl.source = rl.pending_fd >= 0 ? "bundle" : "file";
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "reload");
	ll_str(&l, "state", "started");
	ll_str(&l, "source", rl.source);
	ll_emit(&l);
	if (rl.pending_fd >= 0) {
		int fd = rl.pending_fd;
		rl.pending_fd = -1;
		if (bundle_map(fd, &rl.bundle, rl.err, sizeof rl.err))
			rl.ld = gg_config_load_begin_bundle(rl.bundle.p, rl.bundle.len,
							    rl.err, sizeof rl.err);
	} else {
		rl.pending_file = false;
		rl.ld = gg_config_load_begin(srv.cfg->file, rl.err, sizeof rl.err);
	}
	if (!rl.ld) {
		reload_failed(rl.err);
		bundle_unmap(&rl.bundle);
	}
}

/* One turn: begin a load, or do one step of it. The event re-arms itself
 * with a zero timeout, so the loop polls its sockets between two steps. */
static void on_reload_turn(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (!rl.ld) {
		reload_begin();
	} else {
		int r = gg_config_load_step(rl.ld, RELOAD_BUDGET);
		if (r != 0) {
			struct gg_config_load *ld = rl.ld;
			rl.ld = NULL;
			if (r > 0) {
				reload_apply(gg_config_load_end(ld));
			} else {
				gg_config_load_abort(ld);
				reload_failed(rl.err);
			}
			bundle_unmap(&rl.bundle);
		}
	}
	if (rl.ld || rl.pending_fd >= 0 || rl.pending_file) {
		struct timeval now = { 0, 0 };
		evtimer_add(rl.ev, &now);
	}
}

void server_reload_setup(const struct reload_hooks *hooks)
{
	rl.hooks = hooks;
	rl.ev = evtimer_new(srv.base, on_reload_turn, NULL);
}

void server_reload_request(int bundle_fd)
{
	if (bundle_fd >= 0) {
		/* only the newest bundle matters */
		if (rl.pending_fd >= 0)
			close(rl.pending_fd);
		rl.pending_fd = bundle_fd;
	} else {
		rl.pending_file = true;
	}
	if (!evtimer_pending(rl.ev, NULL)) {
		struct timeval now = { 0, 0 };
		evtimer_add(rl.ev, &now);
	}
}

void server_reload_stop(void)
{
	if (rl.ld)
		gg_config_load_abort(rl.ld);
	rl.ld = NULL;
	bundle_unmap(&rl.bundle);
	if (rl.pending_fd >= 0)
		close(rl.pending_fd);
	rl.pending_fd = -1;
	rl.pending_file = false;
	if (rl.ev)
		event_free(rl.ev);
	rl.ev = NULL;
}
