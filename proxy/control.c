#include "control.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <poll.h>
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
#include "explain.h"
#include "list.h"
#include "log.h"
#include "server.h"
#include "store.h"

#define CONTROL_LINE_MAX 4096
#define CONTROL_ARGS_MAX 16
#define CONTROL_TIMEOUT 10

static struct evconnlistener *listener;
static char path[sizeof ((struct sockaddr_un *)0)->sun_path];

/* ---- the socket ---- */

/* A list walks this many buckets and entries a loop turn (a couple of
 * milliseconds), and goes on once the client has read the answer down to
 * LIST_LOW_WATER bytes: neither the loop (the workers' decisions wait on
 * it) nor memory is held by a large store or a slow reader. */
#define LIST_SLICE 2048
#define LIST_LOW_WATER (64 * 1024)

/* One client. Answers go through OUT straight into the output buffer. */
struct conn {
	struct list_node link;          /* on conns */
	struct bufferevent *bev;
	FILE *out;
	struct ctl_list *list;          /* the list being served, or NULL */
	uint64_t cursor;                /* where the list's walk stands */
	struct event *next;             /* the next slice, when the client keeps up */
	long long slices;
	/* explain and facts wait for the client's facts (explain.h); the
	 * command line lives here meanwhile */
	struct explain_req *facts;
	char line[CONTROL_LINE_MAX + 1];
	char *argv[CONTROL_ARGS_MAX];
	int argc;
};

/* Every open connection, so that control_close frees those still open. */
static struct list_node conns = { &conns, &conns };

static ssize_t out_write(void *cookie, const char *buf, size_t size)
{
	struct conn *c = cookie;
	/* 0 is fopencookie's "error" */
	return evbuffer_add(bufferevent_get_output(c->bev), buf, size) == 0 ? (ssize_t)size : 0;
}

static void conn_free(struct conn *c)
{
	list_del(&c->link);
	if (c->out)
		fclose(c->out);
	if (c->next)
		event_free(c->next);
	explain_cancel(c->facts);
	ctl_list_free(c->list);
	bufferevent_free(c->bev);
	free(c);
}

/* CUT: why a list was stopped before its end, or NULL. */
static void log_command(const char *cmd, int status, const struct conn *c, const char *cut)
{
	struct logline l;
	ll_begin(&l, cut ? LOG_LVL_WARNING : LOG_LVL_INFO, "control");
	ll_str(&l, "command", cmd);
	if (cut) {
		ll_str(&l, "result", "stopped");
		ll_str(&l, "reason", cut);
	} else {
		ll_int(&l, "status", status);
	}
	if (c->slices)
		ll_int(&l, "slices", c->slices);
	ll_emit(&l);
}

static void on_flushed(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_free(arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct conn *c = arg;
	if (c->list)
		log_command("list", 0, c, what & BEV_EVENT_TIMEOUT ? "the client stopped reading"
								    : "the client went away");
	conn_free(c);
}

/* The answer is complete: close once the client has it. */
static void finish(struct conn *c, const char *cmd, int status)
{
	fprintf(c->out, "status=%d\n", status);
	fflush(c->out);
	log_command(cmd, status, c, NULL);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	bufferevent_setcb(c->bev, NULL, on_flushed, on_event, c);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_free(c);
}

/* Whether the client has closed its end, reading side too (half-closed, it
 * still wants the answer). Asked every slice, as a slice may write nothing
 * for a write error to show (a filter that matches little). */
static bool client_gone(const struct conn *c)
{
	struct pollfd p = { bufferevent_getfd(c->bev), POLLOUT, 0 };
	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

static void list_slice(struct conn *c)
{
	if (client_gone(c)) {
		on_event(c->bev, BEV_EVENT_EOF, c);
		return;
	}
	c->slices++;
	struct store *s = store();
	int more = s->ops->admin->walk(s, &c->cursor, LIST_SLICE, ctl_list_show, c->list);
	fflush(c->out);
	if (more < 0) {
		ctl_list_free(c->list);
		c->list = NULL;
		fprintf(c->out, "error: list: %s\n", s->ops->admin->error(s));
		finish(c, "list", 1);
	} else if (!more) {
		int status = ctl_list_end(c->list);
		c->list = NULL;
		finish(c, "list", status);
	} else if (evbuffer_get_length(bufferevent_get_output(c->bev)) <= LIST_LOW_WATER) {
		/* a timer, not event_active: the loop polls before it runs */
		static const struct timeval at_once = { 0, 0 };
		event_add(c->next, &at_once);
	}
	/* else on_drained goes on */
}

static void on_next(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	list_slice(arg);
}

static void on_drained(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct conn *c = arg;
	if (!evtimer_pending(c->next, NULL))
		list_slice(c);
}

/* A list goes on from the loop, a slice at a time. */
static int serve_list(struct conn *c, int argc, char **argv, enum ctl_format fmt)
{
	int status;
	c->next = evtimer_new(bufferevent_get_base(c->bev), on_next, c);
	if (!c->next) {
		fprintf(c->out, "error: list: out of memory\n");
		return 1;
	}
	c->list = ctl_list_new(argc, argv, fmt, c->out, &status);
	if (!c->list)
		return status;
	bufferevent_setwatermark(c->bev, EV_WRITE, LIST_LOW_WATER, 0);
	bufferevent_setcb(c->bev, NULL, on_drained, on_event, c);
	list_slice(c);
	return -1;
}

/* ---- explain and facts: the client's facts first ---- */

static void on_facts(void *arg, const struct ctl_facts *f)
{
	struct conn *c = arg;
	c->facts = NULL;
	int first;
	ctl_format_of(c->argc, c->argv, &first);
	if (strcmp(c->argv[first], "facts") == 0) {
		ctl_facts_write(c->out, f);
		finish(c, "facts", 0);
		return;
	}
	struct store *s = store();        /* the embedded one: explain came only then */
	finish(c, "explain", ctl_execute(srv.cfg, s->ops->admin, s, c->argc, c->argv, c->out, f));
}

/*
 * "explain CLIENT SENDER RCPT [NAME] [helo=HELO]" (the embedded store)
 * and "facts CLIENT SENDER [NAME] [helo=HELO]" (any store: greygate-ctl
 * asks it when it reaches the store itself): the client's facts are
 * found first, without holding up the loop; helo= is taken out of the
 * command line. False when the command is neither, or its client is no
 * address (ctl_execute says so).
 */
static bool start_facts(struct conn *c, int first)
{
	const char *cmd = c->argv[first];
	int nfixed = strcmp(cmd, "facts") == 0 ? 3 : strcmp(cmd, "explain") == 0 ? 4 : 0;
	const char *helo = NULL;
	if (!nfixed)
		return false;
	if (c->argc > first + nfixed && strncmp(c->argv[c->argc - 1], "helo=", 5) == 0)
		helo = c->argv[--c->argc] + 5;
	int n = c->argc - first;
	struct ipaddr a;
	if ((n != nfixed && n != nfixed + 1) || !ipaddr_parse(c->argv[first + 1], &a))
		return false;
	const char *name = n > nfixed ? c->argv[first + nfixed] : NULL;
	c->facts = explain_start(srv.cfg, &a, strcmp(c->argv[first + 2], "<>") == 0 ? ""
					      : c->argv[first + 2], name, helo, on_facts, c);
	return true;
}

static void run(struct conn *c, const char *line)
{
	snprintf(c->line, sizeof c->line, "%s", line);
	char **argv = c->argv;
	int argc = 0;
	char *save = NULL;
	for (char *tok = strtok_r(c->line, " \t", &save); tok && argc < CONTROL_ARGS_MAX;
	     tok = strtok_r(NULL, " \t", &save))
		argv[argc++] = tok;
	c->argc = argc;

	int status, first;
	enum ctl_format fmt = ctl_format_of(argc, argv, &first);
	const char *cmd = first < argc ? argv[first] : "";
	/* none in a supervisor whose workers reach a shared store */
	struct store *s = store();
	const struct ctl_store *admin = s ? s->ops->admin : NULL;
	if (strcmp(cmd, "facts") == 0 || (admin && strcmp(cmd, "explain") == 0)) {
		if (start_facts(c, first))
			return;          /* under way, or answered */
		argc = c->argc;
	}
	if (strcmp(cmd, "facts") == 0) {
		fprintf(c->out, "usage: facts CLIENT SENDER [NAME] [helo=HELO]\n");
		status = 2;
	} else if (!admin) {
		fprintf(c->out, "error: this daemon keeps its greylisting state in %s; greygate-ctl "
				"talks to it directly\n", store_type(srv.cfg->store.kind)->name);
		status = 2;
	} else if (strcmp(cmd, "list") == 0) {
		status = serve_list(c, argc - first, argv + first, fmt);
		if (status < 0)
			return;          /* under way; list_slice finishes it */
	} else {
		status = ctl_execute(srv.cfg, admin, s, argc, argv, c->out, NULL);
	}
	finish(c, cmd, status);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
	if (!line) {
		if (evbuffer_get_length(in) > CONTROL_LINE_MAX)
			conn_free(c);
		return;
	}
	bufferevent_disable(bev, EV_READ);
	if (n <= CONTROL_LINE_MAX)
		run(c, line);
	else
		conn_free(c);
	free(line);
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	(void)sa;
	(void)salen;
	(void)arg;
	struct conn *c = calloc(1, sizeof *c);
	if (!c || !(c->bev = bufferevent_socket_new(evconnlistener_get_base(lev), fd,
						   BEV_OPT_CLOSE_ON_FREE))) {
		free(c);
		close(fd);
		return;
	}
	list_push_back(&conns, &c->link);
	c->out = fopencookie(c, "w", (cookie_io_functions_t){ .write = out_write });
	if (!c->out) {
		conn_free(c);
		return;
	}
	struct timeval tv = { CONTROL_TIMEOUT, 0 };
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
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
	/* the ones still under way end unanswered, as at any other exit */
	struct list_node *n, *tmp;
	LIST_FOR_EACH_SAFE(n, tmp, &conns)
		conn_free(LIST_ELEM(n, struct conn, link));
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
