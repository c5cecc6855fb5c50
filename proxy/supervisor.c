#include "supervisor.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "control.h"
#include "metrics.h"
#include "privs.h"
#include "listener.h"
#include "log.h"
#include "resolver.h"
#include "server.h"
#include "spf.h"
#include "store.h"
#include "store_remote.h"
#include "worker.h"

#define RESTART_DELAY 1          /* seconds */
#define RESTART_DELAY_CRASHY 5   /* after a worker that lived less than this */
#define KILL_AFTER_GRACE 10      /* seconds past shutdown_grace */

struct slot {
	pid_t pid;
	int fds[GG_MAX_LISTEN + 1];  /* listen, then policy.listen (worker.c) */
	size_t nfds;
	int store_fd;                /* our end of the store socket pair, or -1 */
	int chan_fd;                 /* our end of its channel (new bundles), or -1 */
	struct event *store_ev;
	struct event *restart;
	time_t started;
};

static struct slot *slots;
static unsigned nslots;
static char self_exe[PATH_MAX];
static bool memory_store;
static int metrics_fd = -1;
static struct event *kill_timer;
/* The configuration in force as a sealed bundle: what every worker starts
 * with, whatever the file says now; and the next one, made before a swap. */
static int bundle_fd = -1, staged_fd = -1;

/* A sealed memfd holding C's bundle: a worker cannot change what its
 * siblings will load. */
static int bundle_make(const struct gg_config *c, char *err, size_t errlen)
{
	size_t len;
	const char *p = gg_config_bundle(c, &len);
	int fd = memfd_create("greygate-config", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		snprintf(err, errlen, "cannot hold the configuration in memory: %s", strerror(errno));
		return -1;
	}
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "cannot hold the configuration in memory: %s",
				 n < 0 ? strerror(errno) : "short write");
			close(fd);
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
		snprintf(err, errlen, "cannot seal the configuration: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* A slot whose worker cannot serve must not take connections into a
 * backlog that nobody reads: shutdown() of a listening socket stops it
 * listening (and resets what waits in its backlog) but keeps the port
 * bound; the slot's next worker calls listen() again when it is ready. */
static void slot_pause(struct slot *s)
{
	for (size_t k = 0; k < s->nfds; k++)
		shutdown(s->fds[k], SHUT_RD);
}

static void log_worker(enum log_level lvl, unsigned i, const char *what, int status)
{
	struct logline l;
	ll_begin(&l, lvl, "worker");
	ll_int(&l, "worker", i);
	ll_int(&l, "pid", slots[i].pid);
	ll_str(&l, "state", what);
	if (status >= 0 && WIFEXITED(status))
		ll_int(&l, "exit", WEXITSTATUS(status));
	else if (status >= 0 && WIFSIGNALED(status))
		ll_int(&l, "signal", WTERMSIG(status));
	ll_emit(&l);
}

/* Every way a start can fail ends here: a shortage (descriptors,
 * processes) passes, and a slot left empty would stay empty for good. */
static void spawn_failed(struct slot *s, const char *why)
{
	log_msg(LOG_LVL_ERROR, "worker", why);
	struct timeval tv = { RESTART_DELAY_CRASHY, 0 };
	evtimer_add(s->restart, &tv);
}

static void spawn(unsigned i)
{
	struct slot *s = &slots[i];
	int sv[2] = { -1, -1 }, ch[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ch) < 0) {
		spawn_failed(s, "socketpair failed; retrying");
		return;
	}
	if (memory_store && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		close(ch[0]);
		close(ch[1]);
		spawn_failed(s, "socketpair failed; retrying");
		return;
	}
	char spec[256];
	int n = snprintf(spec, sizeof spec, "%u,%u,%d,%d,%d,%d", i, nslots, sv[1], metrics_fd,
			 bundle_fd, ch[1]);
	for (size_t k = 0; k < s->nfds && n > 0 && (size_t)n < sizeof spec; k++)
		n += snprintf(spec + n, sizeof spec - (size_t)n, ",%d", s->fds[k]);

	/* Signals stay blocked from here into the new worker, which unblocks
	 * them once its own handlers are in place. */
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid_t pid = fork();
	if (pid == 0) {
		static const int sigs[] = { SIGHUP, SIGTERM, SIGINT, SIGCHLD, SIGPIPE };
		for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++)
			signal(sigs[k], SIG_DFL);
		for (size_t k = 0; k < s->nfds; k++)
			fcntl(s->fds[k], F_SETFD, 0);
		if (sv[1] >= 0)
			fcntl(sv[1], F_SETFD, 0);
		fcntl(metrics_fd, F_SETFD, 0);
		fcntl(bundle_fd, F_SETFD, 0);
		fcntl(ch[1], F_SETFD, 0);
		execl(self_exe, self_exe, "-c", srv.cfg->file, "-W", spec, (char *)NULL);
		_exit(127);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (sv[1] >= 0)
		close(sv[1]);
	close(ch[1]);
	if (pid < 0) {
		if (sv[0] >= 0)
			close(sv[0]);
		close(ch[0]);
		spawn_failed(s, "fork failed; retrying");
		return;
	}
	s->chan_fd = ch[0];
	s->pid = pid;
	s->started = time(NULL);
	s->store_fd = sv[0];
	if (sv[0] >= 0)
		s->store_ev = store_remote_serve(srv.base, sv[0]);
	log_worker(LOG_LVL_INFO, i, "started", -1);
}

static void on_restart(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	if (!srv.draining)
		spawn((unsigned)(uintptr_t)arg);
}

static bool all_gone(void)
{
	for (unsigned i = 0; i < nslots; i++)
		if (slots[i].pid > 0)
			return false;
	return true;
}

/* Each worker is waited for by its own pid: the embedded store's save
 * child is waited for by the store, which wants its status. */
static void reap(void)
{
	for (unsigned i = 0; i < nslots; i++) {
		struct slot *s = &slots[i];
		int status;
		if (s->pid > 0 && waitpid(s->pid, &status, WNOHANG) == s->pid) {
			bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
			slot_pause(s);
			log_worker(srv.draining && clean ? LOG_LVL_INFO : LOG_LVL_ERROR, i,
				   srv.draining ? "exited" : "died; restarting", status);
			s->pid = 0;
			metrics_slot_gone(i);
			if (s->chan_fd >= 0) {
				close(s->chan_fd);
				s->chan_fd = -1;
			}
			if (s->store_ev) {
				event_free(s->store_ev);
				s->store_ev = NULL;
			}
			if (s->store_fd >= 0) {
				close(s->store_fd);
				s->store_fd = -1;
			}
			if (!srv.draining) {
				bool crashy = time(NULL) - s->started < RESTART_DELAY_CRASHY;
				struct timeval tv = { crashy ? RESTART_DELAY_CRASHY : RESTART_DELAY, 0 };
				evtimer_add(s->restart, &tv);
			}
		}
	}
	if (srv.draining && all_gone())
		event_base_loopexit(srv.base, NULL);
}

static void signal_all(int sig)
{
	for (unsigned i = 0; i < nslots; i++)
		if (slots[i].pid > 0)
			kill(slots[i].pid, sig);
}

static void on_kill_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_msg(LOG_LVL_ERROR, "shutdown", "workers still running past the grace period; killing them");
	signal_all(SIGKILL);
}

/* Our copies of the listen sockets would keep the port accepting into a
 * backlog that no worker reads once the workers have closed theirs: the
 * client would get a handshake and then silence instead of a refusal. */
static void close_listen_sockets(void)
{
	for (unsigned i = 0; i < nslots; i++) {
		for (size_t k = 0; k < slots[i].nfds; k++)
			close(slots[i].fds[k]);
		slots[i].nfds = 0;
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (sig == SIGCHLD) {
		reap();
	} else if (sig == SIGHUP) {
		server_reload_request(-1);
	} else if (!srv.draining) {
		srv.draining = true;
		close_listen_sockets();
		log_msg(LOG_LVL_INFO, "shutdown", "signal; telling the workers to finish");
		signal_all(SIGTERM);
		struct timeval tv = { srv.cfg->shutdown_grace + KILL_AFTER_GRACE, 0 };
		kill_timer = evtimer_new(srv.base, on_kill_timer, NULL);
		evtimer_add(kill_timer, &tv);
		if (all_gone())
			event_base_loopexit(srv.base, NULL);
	}
}

static bool stage_bundle(const struct gg_config *c, char *err, size_t errlen)
{
	staged_fd = bundle_make(c, err, errlen);
	return staged_fd >= 0;
}

/* The workers load the new configuration from its bundle, as a worker
 * started from now on will; one that misses it keeps the old one. */
static void send_bundle(void)
{
	close(bundle_fd);
	bundle_fd = staged_fd;
	staged_fd = -1;
	for (unsigned i = 0; i < nslots; i++) {
		struct slot *s = &slots[i];
		if (s->pid <= 0 || s->chan_fd < 0)
			continue;
		char byte = 'B';
		struct iovec iov = { &byte, 1 };
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int))];
		} ctl;
		memset(&ctl, 0, sizeof ctl);
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
				    .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &bundle_fd, sizeof bundle_fd);
		if (sendmsg(s->chan_fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			struct logline l;
			ll_begin(&l, LOG_LVL_ERROR, "reload");
			ll_int(&l, "worker", i);
			ll_int(&l, "pid", s->pid);
			ll_str(&l, "result", "not sent");
			ll_str(&l, "reason", strerror(errno));
			ll_str(&l, "action", "the worker keeps the previous configuration");
			ll_emit(&l);
		}
	}
}

/* What this process set up from the old configuration: explain's
 * resolver and SPF limits; then the workers'. */
static void applied(void)
{
	resolver_reload(srv.cfg);
	spf_limits_of(srv.cfg);
	send_bundle();
}

static const struct reload_hooks hooks = {
	.check_restart = true, .prepare = stage_bundle, .applied = applied,
};

int supervisor_run(const char *argv0)
{
	ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
	if (n > 0)
		self_exe[n] = 0;
	else
		snprintf(self_exe, sizeof self_exe, "%s", argv0);
	srv.base = event_base_new();
	if (!srv.base)
		return 1;
	nslots = (unsigned)srv.cfg->workers;
	srv.nworkers = nslots;
	memory_store = store_type(srv.cfg->store.kind)->flags & STORE_EMBEDDED;
	/* Another greygate here: our shared sockets would bind beside it. */
	if (listener_probe(srv.cfg) < 0 || control_probe(srv.cfg) < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	struct event *sigs[4];
	const int signums[4] = { SIGHUP, SIGTERM, SIGINT, SIGCHLD };
	for (int i = 0; i < 4; i++) {
		sigs[i] = evsignal_new(srv.base, signums[i], on_signal, NULL);
		evsignal_add(sigs[i], NULL);
	}
	slots = calloc(nslots, sizeof *slots);
	if (!slots)
		return 1;
	for (unsigned i = 0; i < nslots; i++)
		slots[i].store_fd = slots[i].chan_fd = -1;
	int status = 0;
	char err[256];
	bundle_fd = bundle_make(srv.cfg, err, sizeof err);
	if (bundle_fd < 0) {
		log_msg(LOG_LVL_ERROR, "fatal", err);
		status = 1;
	}
	server_reload_setup(&hooks);
	for (unsigned i = 0; i < nslots && status == 0; i++) {
		slots[i].restart = evtimer_new(srv.base, on_restart, (void *)(uintptr_t)i);
		bool policy = srv.cfg->policy.listen[0];
		for (size_t k = 0; k < srv.cfg->nlisten + policy && status == 0; k++) {
			int fd = listener_bind(k < srv.cfg->nlisten ? srv.cfg->listen[k]
							     : srv.cfg->policy.listen);
			if (fd < 0)
				status = 1;
			else
				slots[i].fds[slots[i].nfds++] = fd;
		}
		/* until its worker is ready */
		slot_pause(&slots[i]);
	}
	if (status == 0 && memory_store && store_open(srv.base, srv.cfg) < 0)
		status = 1;
	/* The control socket: the embedded store's commands, and for any
	 * store the facts greygate-ctl explain shows (the client's class
	 * needs DNS and SPF, done here as in a worker, on this loop). */
	if (status == 0 && (resolver_open(srv.base, srv.cfg) < 0 || spf_open(srv.base) < 0))
		status = 1;
	if (status == 0) {
		spf_limits_of(srv.cfg);
		control_open(srv.base, srv.cfg);
	}
	if (status == 0) {
		metrics_fd = metrics_shared_create(nslots);
		if (metrics_fd < 0) {
			log_msg(LOG_LVL_ERROR, "fatal", "cannot create the shared metrics block");
			status = 1;
		} else {
			fcntl(metrics_fd, F_SETFD, FD_CLOEXEC);
			if (admin_open(srv.base, srv.cfg) < 0)
				status = 1;
		}
	}
	/* Everything privileged is open: the workers are started as the
	 * unprivileged user and inherit what they need. */
	if (status == 0 && privs_settle(srv.cfg) < 0)
		status = 1;
	if (status == 0) {
		char me[24];
		snprintf(me, sizeof me, "%ld", (long)getpid());
		if (setenv(SUPERVISOR_ENV, me, 1) < 0)
			status = 1;
	}
	if (status == 0) {
		for (unsigned i = 0; i < nslots; i++)
			spawn(i);
		struct logline l;
		ll_begin(&l, LOG_LVL_INFO, "supervisor");
		ll_str(&l, "version", GREYGATE_VERSION);
		ll_int(&l, "workers", nslots);
		ll_str(&l, "store", srv.cfg->store.type);
		ll_emit(&l);
		event_base_dispatch(srv.base);
	}
	server_hold_signals();

	close_listen_sockets();
	server_reload_stop();
	if (bundle_fd >= 0)
		close(bundle_fd);
	for (unsigned i = 0; i < nslots; i++) {
		if (slots[i].chan_fd >= 0)
			close(slots[i].chan_fd);
		if (slots[i].store_ev)
			event_free(slots[i].store_ev);
		if (slots[i].store_fd >= 0)
			close(slots[i].store_fd);
		if (slots[i].restart)
			event_free(slots[i].restart);
	}
	free(slots);
	for (int i = 0; i < 4; i++)
		event_free(sigs[i]);
	if (kill_timer)
		event_free(kill_timer);
	admin_close();
	privs_cleanup(srv.cfg);
	if (metrics_fd >= 0)
		close(metrics_fd);
	control_close();
	if (memory_store && store())
		store_close();      /* saves the embedded store */
	spf_close();
	resolver_close();
	gg_config_unref(srv.cfg);
	event_base_free(srv.base);
	log_msg(LOG_LVL_INFO, "exit", "supervisor done");
	return status;
}
