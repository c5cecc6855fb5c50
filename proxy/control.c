#include "control.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctl_cmd.h"
#include "log.h"
#include "memstore.h"
#include "server.h"
#include "store.h"

#define CONTROL_LINE_MAX 4096
#define CONTROL_ARGS_MAX 16
#define CONTROL_TIMEOUT 10

static struct evconnlistener *listener;
static char path[sizeof ((struct sockaddr_un *)0)->sun_path];

/* ---- the embedded store as greygate-ctl sees it ---- */

struct mem_list {
	bool (*fn)(void *arg, const struct ctl_entry *e);
	void *arg;
	int64_t now;
};

static bool mem_list_one(void *arg, const struct memstore_view *v)
{
	struct mem_list *l = arg;
	struct ctl_entry e = { v->hex, v->net, v->sender, v->rcpt, v->t.passed,
			       v->t.first_seen, v->t.expires - l->now };
	return l->fn(l->arg, &e);
}

static int mem_list(void *ctx, bool (*fn)(void *arg, const struct ctl_entry *e), void *arg)
{
	struct mem_list l = { fn, arg, time(NULL) };
	memstore_foreach(ctx, l.now, mem_list_one, &l);
	return 0;
}

static int mem_get(void *ctx, const struct triplet *t, struct ctl_entry *e)
{
	int64_t now = time(NULL);
	struct gl_triplet st = memstore_get(ctx, t);
	if (!st.exists || st.expires <= now)
		return 0;
	*e = (struct ctl_entry){ t->hex, t->net, t->sender, t->rcpt, st.passed, st.first_seen,
				 st.expires - now };
	return 1;
}

static int mem_explain(void *ctx, const struct gl_params *p, const struct triplet *t,
		       struct gl_decision *d)
{
	*d = memstore_decide(ctx, p, time(NULL), t, true);
	return 0;
}

static int mem_pass(void *ctx, const struct triplet *t, int64_t lifetime)
{
	return memstore_pass(ctx, t, time(NULL), lifetime);
}

static int mem_del(void *ctx, const char *hex)
{
	return memstore_delete(ctx, hex);
}

static int mem_whitelist(void *ctx, const char *net, int threshold, int64_t ttl)
{
	int64_t now = time(NULL);
	/* the parser bounds TTL; saturate anyway rather than wrap */
	int64_t expires = ttl > INT64_MAX - now ? INT64_MAX : now + ttl;
	return memstore_whitelist(ctx, net, threshold, expires);
}

static int mem_stats(void *ctx, FILE *out)
{
	struct memstore_stats s = memstore_stats(ctx);
	fprintf(out, "store=memory triplets=%zu networks=%zu evicted=%llu expired=%llu\n",
		s.triplets, s.networks, s.evicted, s.expired);
	return 0;
}

static const char *mem_error(void *ctx)
{
	(void)ctx;
	return "out of memory or malformed key";
}

static const struct ctl_store mem_ops = {
	mem_list, mem_get, mem_explain, mem_pass, mem_del, mem_whitelist, mem_stats, mem_error,
};

/* ---- the socket ---- */

static void run(struct bufferevent *bev, char *line)
{
	char *argv[CONTROL_ARGS_MAX];
	int argc = 0;
	char *save = NULL;
	for (char *tok = strtok_r(line, " \t", &save); tok && argc < CONTROL_ARGS_MAX;
	     tok = strtok_r(NULL, " \t", &save))
		argv[argc++] = tok;

	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (!out)
		return;
	int status;
	struct memstore *m = store_memory_get();
	if (!m) {
		fprintf(out, "error: this daemon keeps its greylisting state in %s; greygate-ctl "
			     "talks to it directly\n", store()->name);
		status = 2;
	} else {
		status = ctl_execute(srv.cfg, &mem_ops, m, argc, argv, out);
	}
	fprintf(out, "status=%d\n", status);
	fclose(out);
	bufferevent_write(bev, text, len);
	free(text);

	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "control");
	ll_str(&l, "command", argc ? argv[0] : "");
	ll_int(&l, "status", status);
	ll_emit(&l);
}

static void on_flushed(struct bufferevent *bev, void *arg)
{
	(void)arg;
	bufferevent_free(bev);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	(void)arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
	if (!line) {
		if (evbuffer_get_length(in) > CONTROL_LINE_MAX)
			bufferevent_free(bev);
		return;
	}
	bufferevent_disable(bev, EV_READ);
	if (n <= CONTROL_LINE_MAX)
		run(bev, line);
	free(line);
	bufferevent_setcb(bev, NULL, on_flushed, NULL, NULL);
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_free(bev);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)what;
	(void)arg;
	bufferevent_free(bev);
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	(void)sa;
	(void)salen;
	(void)arg;
	struct bufferevent *bev = bufferevent_socket_new(evconnlistener_get_base(lev), fd,
							 BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		close(fd);
		return;
	}
	struct timeval tv = { CONTROL_TIMEOUT, 0 };
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_setcb(bev, on_read, NULL, on_event, NULL);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* Whether a daemon listens on the socket at P: a refused connect, or none
 * at all, means a stale file (or nothing) that may be replaced. */
static bool answers(const char *p)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", p);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	/* a full backlog (EAGAIN) is somebody listening too */
	bool yes = connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0 || errno == EAGAIN;
	close(fd);
	return yes;
}

int control_probe(const struct gg_config *cfg)
{
	if (!cfg->control_socket[0] || !answers(cfg->control_socket))
		return 0;
	struct logline l;
	ll_begin(&l, LOG_LVL_ERROR, "control");
	ll_str(&l, "socket", cfg->control_socket);
	ll_str(&l, "result", "failed");
	ll_str(&l, "reason", "another process answers on the control socket");
	ll_str(&l, "action", "exiting; is greygate running already?");
	ll_emit(&l);
	return -1;
}

/* The socket we made, so that we never unlink one that replaced it. */
static dev_t made_dev;
static ino_t made_ino;

void control_open(struct event_base *base, const struct gg_config *cfg)
{
	if (!cfg->control_socket[0])
		return;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", cfg->control_socket);
	snprintf(path, sizeof path, "%s", cfg->control_socket);
	const char *why = NULL;
	struct stat st;
	/* control_probe checked at start-up; this is whoever came since */
	if (answers(path)) {
		why = "another process answers on it";
	} else {
		unlink(path);
		/* Only root and our own user may change greylisting state. */
		mode_t old = umask(0077);
		listener = evconnlistener_new_bind(base, on_accept, NULL,
						   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
						   (struct sockaddr *)&sun, sizeof sun);
		umask(old);
		if (!listener)
			why = strerror(errno);
		else if (stat(path, &st) == 0) {
			made_dev = st.st_dev;
			made_ino = st.st_ino;
		}
	}
	struct logline l;
	ll_begin(&l, listener ? LOG_LVL_INFO : LOG_LVL_WARNING, "control");
	ll_str(&l, "socket", path);
	if (!listener) {
		ll_str(&l, "result", "failed");
		ll_str(&l, "reason", why);
		ll_str(&l, "action", "running without the control socket; greygate-ctl cannot reach the embedded store");
		path[0] = 0;
	} else {
		ll_str(&l, "result", "listening");
	}
	ll_emit(&l);
}

void control_close(void)
{
	if (listener) {
		evconnlistener_free(listener);
		listener = NULL;
	}
	struct stat st;
	if (path[0] && made_ino && stat(path, &st) == 0 && st.st_dev == made_dev &&
	    st.st_ino == made_ino)
		unlink(path);
	path[0] = 0;
}
