/*
 * greygate: start-up, signals (reload, drain) and the event loop.
 */
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "config.h"
#include "control.h"
#include "handover.h"
#include "listener.h"
#include "resolver.h"
#include "log.h"
#include "server.h"
#include "session.h"
#include "store.h"

#define GREYGATE_VERSION "0.1.0"

struct server srv;

static struct event *grace_timer;

static void usage(void)
{
	fprintf(stderr, "usage: greygate -c FILE      run in the foreground\n"
			"       greygate -t -c FILE   check FILE and exit\n"
			"       greygate -V           print the version\n");
	exit(2);
}

void server_session_gone(void)
{
	if (srv.draining && srv.active == 0)
		event_base_loopexit(srv.base, NULL);
}

static bool same_listen(const struct gg_config *a, const struct gg_config *b)
{
	if (a->nlisten != b->nlisten)
		return false;
	for (size_t i = 0; i < a->nlisten; i++)
		if (strcmp(a->listen[i], b->listen[i]) != 0)
			return false;
	return true;
}

/* What the running store and control socket were opened with; changing
 * it takes a restart (the state would otherwise be left behind). */
static bool same_store(const struct gg_config *a, const struct gg_config *b)
{
	return strcmp(a->store.type, b->store.type) == 0 &&
	       strcmp(a->store.file, b->store.file) == 0 &&
	       a->store.max_entries == b->store.max_entries &&
	       a->store.save_interval == b->store.save_interval &&
	       strcmp(a->store.redis.host, b->store.redis.host) == 0 &&
	       a->store.redis.port == b->store.redis.port &&
	       strcmp(a->store.redis.password, b->store.redis.password) == 0 &&
	       a->store.redis.db == b->store.redis.db &&
	       a->store.redis.connect_timeout_ms == b->store.redis.connect_timeout_ms &&
	       strcmp(a->store.redis.prefix, b->store.redis.prefix) == 0 &&
	       strcmp(a->control_socket, b->control_socket) == 0;
}

/* SIGHUP: all or nothing. Sessions keep the configuration they hold a
 * reference to; only new ones see the new file. */
static void reload(void)
{
	char err[1024];
	struct gg_config *c = gg_config_load(srv.cfg->file, err, sizeof err);
	struct logline l;
	if (!c) {
		ll_begin(&l, LOG_LVL_ERROR, "reload");
		ll_str(&l, "result", "failed");
		ll_str(&l, "reason", err);
		ll_str(&l, "action", "keeping the configuration in force");
		ll_emit(&l);
		return;
	}
	if (!same_listen(c, srv.cfg))
		log_msg(LOG_LVL_WARNING, "reload",
			"listen addresses changed; they take effect at the next restart");
	if (!same_store(c, srv.cfg))
		log_msg(LOG_LVL_WARNING, "reload",
			"store or control_socket settings changed; they take effect at the next restart");
	log_setup(c->log.target, c->log.level);
	gg_config_unref(srv.cfg);
	srv.cfg = c;
	ll_begin(&l, LOG_LVL_INFO, "reload");
	ll_str(&l, "result", "ok");
	ll_str(&l, "file", c->file);
	ll_emit(&l);
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

static void drain(void)
{
	if (srv.draining)
		return;
	srv.draining = true;
	listener_close();
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "shutdown");
	ll_str(&l, "reason", "signal; no new connections, finishing sessions");
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

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (sig == SIGHUP)
		reload();
	else
		drain();
}

int main(int argc, char **argv)
{
	const char *file = NULL;
	bool check_only = false;
	int opt;
	while ((opt = getopt(argc, argv, "c:tVh")) != -1) {
		switch (opt) {
		case 'c':
			file = optarg;
			break;
		case 't':
			check_only = true;
			break;
		case 'V':
			printf("greygate %s (libevent %s)\n", GREYGATE_VERSION, event_get_version());
			return 0;
		default:
			usage();
		}
	}
	if (!file || optind != argc)
		usage();

	char err[1024];
	srv.cfg = gg_config_load(file, err, sizeof err);
	if (!srv.cfg) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (check_only) {
		gg_config_unref(srv.cfg);
		return 0;
	}
	log_setup(srv.cfg->log.target, srv.cfg->log.level);
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
	if (store_open(srv.base, srv.cfg) < 0 || resolver_open(srv.base, srv.cfg) < 0 ||
	    listener_open(srv.cfg) < 0)
		return 1;
	control_open(srv.base, srv.cfg);
	handover_start(srv.base, srv.cfg);
	backend_probe(srv.base, srv.cfg);

	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "ready");
	ll_str(&l, "version", GREYGATE_VERSION);
	ll_str(&l, "config", file);
	ll_str(&l, "backend", srv.cfg->backend.address);
	ll_emit(&l);

	event_base_dispatch(srv.base);

	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	if (grace_timer)
		event_free(grace_timer);
	listener_close();
	handover_stop();
	session_shutdown();
	control_close();
	store()->close();
	resolver_close();
	backend_shutdown();
	gg_config_unref(srv.cfg);
	event_base_free(srv.base);
	log_msg(LOG_LVL_INFO, "exit", "shutdown complete");
	return 0;
}
