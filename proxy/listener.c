#include "listener.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "accept_pause.h"
#include "connlimit.h"
#include "hostport.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "session.h"

static struct evconnlistener *listeners[GG_MAX_LISTEN];
static size_t nlisteners;

/* One write on a fresh socket, whose buffer is empty, so it cannot block
 * or be short in practice; then the socket is closed. */
static void say_421(evutil_socket_t fd, const char *enhanced, const char *why)
{
	char msg[512];
	metrics_add(M_CONNECTIONS_REFUSED, 1);
	int n = snprintf(msg, sizeof msg, "421 %s %s Error: %s\r\n", enhanced,
			 srv.cfg->myhostname, why);
	if (n > 0 && send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* the client is gone already; nothing to tell */
	}
	evutil_closesocket(fd);
}

/* Refuses before a session exists. */
static void refuse(evutil_socket_t fd, const struct ipaddr *a, const char *why)
{
	char addr[48];
	say_421(fd, "4.7.0", why);
	struct logline l;
	ll_begin(&l, LOG_LVL_WARNING, "refuse");
	ll_str(&l, "client", ipaddr_str(a, addr, sizeof addr));
	ll_str(&l, "reason", why);
	ll_emit(&l);
}

/* ---- accepts that fail ----
 * A shortage of descriptors or memory leaves the connection pending, so the
 * socket stays readable and the next accept fails at once: without a pause
 * the loop spins and logs without end, and nobody is answered. At EMFILE a
 * spare descriptor, given up for a moment, answers the pending client 421
 * instead; without one, every listener of the process rests PAUSE_MS (or
 * until a session ends). Failures are logged once per LOG_EVERY seconds,
 * with their count. */

#define PAUSE_MS 200
#define LOG_EVERY 5           /* seconds */

static struct {
	struct accept_pause pause;
	int spare;                /* /dev/null, or -1 */
	unsigned long failed;     /* failures not logged yet */
	unsigned long shed;       /* of those, clients answered 421 */
	int err;                  /* the last failure's errno */
	time_t logged;            /* monotonic seconds of the last line; 0 none */
} acc = { .spare = -1 };

static time_t mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void log_failures(enum log_level lvl, const char *result, const char *action)
{
	struct logline l;
	ll_begin(&l, lvl, "listen");
	ll_str(&l, "result", result);
	ll_str(&l, "reason", strerror(acc.err));
	ll_int(&l, "failures", (long long)acc.failed);
	if (acc.shed)
		ll_int(&l, "refused", (long long)acc.shed);
	ll_str(&l, "action", action);
	ll_emit(&l);
	acc.failed = acc.shed = 0;
	acc.logged = mono_now();
}

/* As a pause ends: a spare that could not be had back may be had now. */
static void resumed(void *arg)
{
	(void)arg;
	if (acc.spare < 0)
		acc.spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void listener_resume(void)
{
	accept_pause_end(&acc.pause);
}

/* The spare descriptor makes room to accept one pending client, answer it
 * and close it again; then it is taken back. False when it cannot. */
static bool shed_one(struct evconnlistener *lev)
{
	if (acc.spare < 0)
		return false;
	close(acc.spare);
	int fd = accept4(evconnlistener_get_fd(lev), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	/* The kernel finds no descriptor before it looks for a client: none
	 * may be pending, and then the socket is not readable either. */
	bool done = fd >= 0 || errno == EAGAIN || errno == EWOULDBLOCK;
	if (fd >= 0) {
		say_421(fd, "4.3.2", "too many connections; try again later");
		acc.shed++;
	}
	acc.spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return done;
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
	(void)arg;
	int err = EVUTIL_SOCKET_ERROR();
	const char *action = "going on";
	acc.err = err;
	acc.failed++;
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		if ((err == EMFILE || err == ENFILE) && shed_one(lev)) {
			action = "answering new clients 421 until descriptors are free";
		} else {
			accept_pause_start(&acc.pause, listeners, nlisteners, PAUSE_MS);
			action = "pausing new connections";
		}
	}
	if (!acc.logged || mono_now() - acc.logged >= LOG_EVERY)
		log_failures(LOG_LVL_ERROR, "accept failed", action);
}

/* With several workers each keeps its share of a limit: the kernel spreads
 * connections evenly, so the shares add up to the limit. */
unsigned listener_share(int limit)
{
	unsigned n = srv.nworkers ? srv.nworkers : 1;
	return ((unsigned)limit + n - 1) / n;
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd,
		      struct sockaddr *sa, int salen, void *arg)
{
	(void)lev;
	(void)salen;
	(void)arg;
	if (acc.failed)
		log_failures(LOG_LVL_WARNING, "accepting again", "serving");
	struct ipaddr a;
	if (!ipaddr_from_sockaddr(sa, &a)) {
		evutil_closesocket(fd);
		return;
	}
	const struct gg_config *cfg = srv.cfg;
	if (srv.draining) {
		refuse(fd, &a, "service shutting down");
		return;
	}
	if (srv.active >= listener_share(cfg->limits.max_connections)) {
		refuse(fd, &a, "too many connections");
		return;
	}
	/* Behind a load balancer the client is known only from the PROXY
	 * header; the session counts it then. */
	bool via_proxy = netlist_match(&cfg->proxy_protocol_networks, &a);
	if (!via_proxy &&
	    !connlimit_acquire(&a, (int)listener_share(cfg->limits.max_per_client))) {
		refuse(fd, &a, "too many connections from your address");
		return;
	}
	metrics_add(M_CONNECTIONS, 1);
	session_start(fd, sa, &a, via_proxy);
}

/* A socket bound to SPEC, not listening yet, or -1 with errno set. SHARED:
 * with SO_REUSEPORT, one socket per worker, and the kernel spreads the
 * connections between them. */
static int bound_socket(const char *spec, bool shared)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (!hostport_parse(spec, &ss, &len)) {
		errno = EINVAL; /* the configuration was validated; cannot happen */
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int on = 1;
	/* "[::]:25" next to "0.0.0.0:25" must not collide: v6 sockets are v6
	 * only. SO_REUSEADDR: a restart must not wait for old connections in
	 * TIME_WAIT. */
	if ((ss.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) < 0) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0 ||
	    (shared && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0) ||
	    bind(fd, (struct sockaddr *)&ss, len) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* SO_REUSEPORT would let us bind beside another greygate (or anything that
 * set it) and take half its connections; a socket without it cannot be
 * bound while anybody listens on the address. */
int listener_probe(const struct gg_config *cfg)
{
	bool policy = cfg->policy.listen[0];
	for (size_t i = 0; i < cfg->nlisten + policy; i++) {
		const char *spec = i < cfg->nlisten ? cfg->listen[i] : cfg->policy.listen;
		int fd = bound_socket(spec, false);
		if (fd >= 0) {
			close(fd);
			continue;
		}
		if (errno != EADDRINUSE)
			continue;   /* listener_bind tells what is wrong */
		char why[300];
		snprintf(why, sizeof why, "another process is listening on %s", spec);
		struct logline l;
		ll_begin(&l, LOG_LVL_ERROR, "listen");
		ll_str(&l, "result", "failed");
		ll_str(&l, "reason", why);
		ll_str(&l, "action", "exiting; is greygate running already?");
		ll_emit(&l);
		return -1;
	}
	return 0;
}

int listener_bind(const char *spec)
{
	int fd = bound_socket(spec, true);
	if (fd >= 0 && listen(fd, LISTEN_BACKLOG) == 0)
		return fd;
	char why[300];
	snprintf(why, sizeof why, "cannot listen on %s: %s", spec, strerror(errno));
	log_msg(LOG_LVL_ERROR, "listen", why);
	if (fd >= 0)
		close(fd);
	return -1;
}

int listener_adopt(int fd, const char *spec)
{
	if (!acc.pause.timer && accept_pause_init(&acc.pause, srv.base, resumed, NULL) == 0)
		acc.spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	struct evconnlistener *lev = acc.pause.timer ? evconnlistener_new(srv.base, on_accept, NULL,
								     LEV_OPT_CLOSE_ON_FREE, -1, fd)
						: NULL;
	if (!lev) {
		log_msg(LOG_LVL_ERROR, "listen", "out of memory adopting a listen socket");
		close(fd);
		return -1;
	}
	evconnlistener_set_error_cb(lev, on_accept_error);
	listeners[nlisteners++] = lev;
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "listen");
	ll_str(&l, "address", spec);
	ll_emit(&l);
	return 0;
}

int listener_open(const struct gg_config *cfg)
{
	for (size_t i = 0; i < cfg->nlisten; i++) {
		int fd = listener_bind(cfg->listen[i]);
		if (fd < 0 || listener_adopt(fd, cfg->listen[i]) < 0)
			return -1;
	}
	return 0;
}

void listener_close(void)
{
	for (size_t i = 0; i < nlisteners; i++)
		evconnlistener_free(listeners[i]);
	nlisteners = 0;
	accept_pause_free(&acc.pause);
	if (acc.spare >= 0)
		close(acc.spare);
	acc.spare = -1;
}
