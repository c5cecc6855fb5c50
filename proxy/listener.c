#include "listener.h"

#include <errno.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connlimit.h"
#include "hostport.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "session.h"

static struct evconnlistener *listeners[GG_MAX_LISTEN];
static size_t nlisteners;

/* Refuses before a session exists: one write on a fresh socket, whose
 * buffer is empty, so it cannot block or be short in practice. */
static void refuse(evutil_socket_t fd, const struct ipaddr *a, const char *why)
{
	char msg[512], addr[48];
	metrics_add(M_CONNECTIONS_REFUSED, 1);
	int n = snprintf(msg, sizeof msg, "421 4.7.0 %s Error: %s\r\n", srv.cfg->myhostname, why);
	if (n > 0 && send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* the client is gone already; nothing to tell */
	}
	evutil_closesocket(fd);
	struct logline l;
	ll_begin(&l, LOG_LVL_WARNING, "refuse");
	ll_str(&l, "client", ipaddr_str(a, addr, sizeof addr));
	ll_str(&l, "reason", why);
	ll_emit(&l);
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

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
	(void)lev;
	(void)arg;
	/* EMFILE and friends: log and go on; the listener retries by itself. */
	char why[128];
	snprintf(why, sizeof why, "accept failed: %s; retrying", strerror(errno));
	log_msg(LOG_LVL_ERROR, "listen", why);
}

int listener_bind(const char *spec)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char why[256];
	if (!hostport_parse(spec, &ss, &len))
		return -1; /* the configuration was validated; cannot happen */
	evutil_socket_t fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int on = 1;
	if (fd < 0)
		goto fail;
	/* "[::]:25" next to "0.0.0.0:25" must not collide: v6 sockets are v6 only. */
	if (ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) < 0)
		goto fail;
	/* SO_REUSEPORT: one socket per worker, and the kernel spreads the
	 * connections between them. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0)
		goto fail;
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
		goto fail;
	return fd;
fail:
	snprintf(why, sizeof why, "cannot listen on %s: %s", spec, strerror(errno));
	log_msg(LOG_LVL_ERROR, "listen", why);
	if (fd >= 0)
		close(fd);
	return -1;
}

int listener_adopt(int fd, const char *spec)
{
	struct evconnlistener *lev = evconnlistener_new(srv.base, on_accept, NULL,
							LEV_OPT_CLOSE_ON_FREE, -1, fd);
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
}
