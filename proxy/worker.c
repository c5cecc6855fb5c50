/*
 * worker: one serving process: its event loop, its listeners, store
 * connection, resolver and sessions; reload on SIGHUP, drain on SIGTERM.
 * Alone it is all of greygate; under the supervisor it is one of several
 * that share the listen sockets.
 */
#include "worker.h"

#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin.h"
#include "backend.h"
#include "control.h"
#include "handover.h"
#include "linger.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "privs.h"
#include "resolver.h"
#include "spf.h"
#include "server.h"
#include "session.h"
#include "store.h"
#include "store_remote.h"

static struct event *grace_timer, *health_timer, *chan_ev;
static pid_t supervisor;      /* 0 when alone */
static int chan_fd = -1;      /* the supervisor's channel, or -1 when alone */

#define HEALTH_EVERY 1        /* seconds */
#define PROBE_EVERY 10        /* health ticks between backend probes */

/* Reports this worker's view for /healthz; probes the backend now and then
 * so that its state is known without traffic, every second while it is
 * down (clients are refused meanwhile: the way back should be quick). */
static void on_health(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	static unsigned ticks;
	metrics_health(backend_reachable(), store_healthy());
	if ((++ticks % PROBE_EVERY == 0 || !backend_reachable()) && !srv.draining)
		backend_probe(srv.base, srv.cfg);
}

static void grace_over(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	struct logline l;
	ll_begin(&l, LOG_LVL_WARNING, "shutdown");
	ll_str(&l, "reason", "grace period over; closing remaining sessions");
	ll_int(&l, "sessions", srv.active);
	ll_emit(&l);
	session_close_all();
	/* Whatever is left after the 421s had a moment to flush goes with exit. */
	struct timeval tv = { 2, 0 };
	event_base_loopexit(srv.base, &tv);
}

static void drain(const char *why)
{
	if (srv.draining)
		return;
	srv.draining = true;
	listener_close();
	policy_close();
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "shutdown");
	ll_str(&l, "reason", why);
	ll_int(&l, "sessions", srv.active);
	ll_int(&l, "grace", srv.cfg->shutdown_grace);
	ll_emit(&l);
	if (srv.active == 0) {
		event_base_loopexit(srv.base, NULL);
		return;
	}
	struct timeval tv = { srv.cfg->shutdown_grace, 0 };
	grace_timer = evtimer_new(srv.base, grace_over, NULL);
	evtimer_add(grace_timer, &tv);
}

/* A new configuration is in force: what was set up from the old one. */
static void reloaded(void)
{
	backend_probe(srv.base, srv.cfg);
	resolver_reload(srv.cfg);
	spf_limits_of(srv.cfg);
	/* the hand-over keeps what it saw of the primaries across this */
	handover_stop();
	handover_start(srv.base, srv.cfg, srv.slot == 0);
}

static const struct reload_hooks alone_hooks = { .check_restart = true, .applied = reloaded };
/* The supervisor checked the configuration before it sent it. */
static const struct reload_hooks worker_hooks = { .applied = reloaded };

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (sig == SIGHUP && chan_fd >= 0) {
		/* Our own reload would read the file, which only the supervisor
		 * does: it holds the configuration in force for every worker. */
		struct logline l;
		ll_begin(&l, LOG_LVL_WARNING, "reload");
		ll_str(&l, "result", "ignored");
		ll_str(&l, "reason", "a worker reloads through its supervisor; send SIGHUP to it");
		ll_int(&l, "supervisor", supervisor ? supervisor : getppid());
		ll_emit(&l);
	} else if (sig == SIGHUP) {
		server_reload_request(-1);
	} else if (supervisor && getppid() != supervisor) {
		drain("supervisor gone; no new connections, finishing sessions");
	} else {
		drain("signal; no new connections, finishing sessions");
	}
}

/* The supervisor's channel: each message carries a bundle of the new
 * configuration in force; end of file means the supervisor is gone. */
static void on_channel(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	(void)arg;
	char byte;
	struct iovec iov = { &byte, 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
	ssize_t n = recvmsg(fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		event_del(chan_ev);
		drain("supervisor gone; no new connections, finishing sessions");
		return;
	}
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
	    c->cmsg_len == CMSG_LEN(sizeof(int))) {
		int bundle;
		memcpy(&bundle, CMSG_DATA(c), sizeof bundle);
		server_reload_request(bundle);
	}
}

/* Without its supervisor a worker has no store to ask (every RCPT would
 * follow store.failure) and nobody to stop it: it drains as on SIGTERM.
 * The kernel sends that SIGTERM when the supervisor dies; one that died
 * before we asked for it is seen here, as a parent that is not it. The
 * signal stays pending until the loop runs. */
static void watch_supervisor(void)
{
	const char *env = getenv(SUPERVISOR_ENV);
	char *end;
	long pid = env ? strtol(env, &end, 10) : 0;
	if (!env || *end || pid <= 1 || pid > INT_MAX)
		return;
	supervisor = (pid_t)pid;
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != supervisor)
		raise(SIGTERM);
}

/* The supervisor keeps a slot's sockets paused (bound, not listening)
 * while no worker of the slot can serve: this worker re-arms them once
 * everything it needs to serve is open, just before it accepts. The
 * sockets are the listen addresses in order, then policy.listen's. */
static int open_listeners(const struct worker_args *w)
{
	if (!w->nfds)
		return listener_open(srv.cfg) < 0 || policy_open(srv.cfg) < 0 ? -1 : 0;
	for (size_t i = 0; i < w->nfds; i++) {
		bool policy = i == srv.cfg->nlisten && srv.cfg->policy.listen[0];
		const char *spec = i < srv.cfg->nlisten ? srv.cfg->listen[i]
			: policy ? srv.cfg->policy.listen : "inherited";
		if (listen(w->fds[i], LISTEN_BACKLOG) < 0) {
			struct logline l;
			ll_begin(&l, LOG_LVL_ERROR, "listen");
			ll_str(&l, "address", spec);
			ll_str(&l, "reason", strerror(errno));
			ll_str(&l, "action", "exiting");
			ll_emit(&l);
			return -1;
		}
		if ((policy ? policy_adopt(w->fds[i], spec) : listener_adopt(w->fds[i], spec)) < 0)
			return -1;
	}
	return 0;
}

static int open_store(const struct worker_args *w)
{
	if (w->store_fd < 0)
		return store_open(srv.base, srv.cfg);
	struct store *s = store_remote_open(srv.base, srv.cfg, w->store_fd);
	if (!s)
		return -1;
	store_use(srv.base, s);
	return 0;
}

int worker_run(const struct worker_args *w)
{
	/* Alone, this process binds for itself: not beside another greygate
	 * (nor its embedded store's file and control socket). */
	if (!w->nfds && (listener_probe(srv.cfg) < 0 || control_probe(srv.cfg) < 0))
		return 1;
	srv.slot = w->slot;
	srv.nworkers = w->nworkers ? w->nworkers : 1;
	signal(SIGPIPE, SIG_IGN);
	srv.base = event_base_new();
	if (!srv.base) {
		log_msg(LOG_LVL_ERROR, "fatal", "cannot create the event loop; exiting");
		return 1;
	}
	/* Signals first: a SIGTERM or SIGHUP that arrives as soon as the port
	 * accepts connections must find its handler. */
	struct event *sigs[3];
	const int signums[3] = { SIGHUP, SIGTERM, SIGINT };
	for (int i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(srv.base, signums[i], on_signal, NULL);
		evsignal_add(sigs[i], NULL);
	}
	if (w->metrics_fd >= 0)
		watch_supervisor();
	server_reload_setup(w->chan_fd >= 0 ? &worker_hooks : &alone_hooks);
	if (w->chan_fd >= 0) {
		chan_fd = w->chan_fd;
		chan_ev = event_new(srv.base, chan_fd, EV_READ | EV_PERSIST, on_channel, NULL);
		if (!chan_ev || event_add(chan_ev, NULL) < 0) {
			log_msg(LOG_LVL_ERROR, "fatal", "cannot watch the supervisor's channel; exiting");
			return 1;
		}
	}
	/* Under a supervisor the signals were blocked across fork and exec. */
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	if ((w->metrics_fd >= 0 ? metrics_init_shared(w->metrics_fd, (unsigned)w->slot, srv.nworkers)
				 : metrics_init_private()) < 0) {
		log_msg(LOG_LVL_ERROR, "fatal", "cannot set up the metrics; exiting");
		return 1;
	}
	if (open_store(w) < 0 || resolver_open(srv.base, srv.cfg) < 0 || spf_open(srv.base) < 0 ||
	    open_listeners(w) < 0)
		return 1;
	spf_limits_of(srv.cfg);
	/* The control socket (the embedded store's commands, explain's
	 * facts) and the admin endpoint are the one process's, or with
	 * workers the supervisor's. */
	if (srv.nworkers == 1) {
		if (admin_open(srv.base, srv.cfg) < 0)
			return 1;
		control_open(srv.base, srv.cfg);
	}
	/* Under a supervisor this process started unprivileged already. */
	if (srv.nworkers == 1 && privs_settle(srv.cfg) < 0)
		return 1;
	health_timer = event_new(srv.base, -1, EV_PERSIST, on_health, NULL);
	struct timeval htv = { HEALTH_EVERY, 0 };
	event_add(health_timer, &htv);
	on_health(-1, 0, NULL);
	handover_start(srv.base, srv.cfg, srv.slot == 0);
	backend_probe(srv.base, srv.cfg);

	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "ready");
	ll_str(&l, "version", GREYGATE_VERSION);
	ll_str(&l, "config", srv.cfg->file);
	ll_str(&l, "backend", srv.cfg->backend.address);
	if (srv.nworkers > 1) {
		ll_int(&l, "worker", srv.slot);
		ll_int(&l, "workers", srv.nworkers);
	}
	ll_emit(&l);

	event_base_dispatch(srv.base);

	server_hold_signals();
	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	if (grace_timer)
		event_free(grace_timer);
	event_free(health_timer);
	if (chan_ev)
		event_free(chan_ev);
	if (chan_fd >= 0)
		close(chan_fd);
	server_reload_stop();
	admin_close();
	listener_close();
	policy_close();
	handover_stop();
	session_shutdown();
	linger_close_all();
	control_close();
	store_close();
	spf_close();
	resolver_close();
	backend_shutdown();
	if (srv.nworkers == 1)
		privs_cleanup(srv.cfg);
	gg_config_unref(srv.cfg);
	event_base_free(srv.base);
	log_msg(LOG_LVL_INFO, "exit", "shutdown complete");
	return 0;
}
