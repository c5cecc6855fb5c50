/*
 * server: the state every module of a serving process shares, and the
 * reload that a worker and the supervisor both do.
 */
#include "server.h"

#include <event2/event.h>
#include <string.h>

#include "listener.h"
#include "log.h"
#include "metrics.h"

struct server srv;

void server_session_gone(void)
{
	listener_resume();
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
bool server_reload(void)
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
		metrics_add(M_RELOADS_FAILED, 1);
		return false;
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
	metrics_add(M_RELOADS_OK, 1);
	return true;
}

