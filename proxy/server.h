/*
 * server: the process-wide state every module shares: the event loop, the
 * configuration in force, the sessions alive, and the shutdown state.
 */
#ifndef GG_SERVER_H
#define GG_SERVER_H

#include <stdbool.h>

#include "config.h"

struct event_base;
struct session;

struct server {
	struct event_base *base;
	struct gg_config *cfg;         /* the one new sessions get */
	struct session *sessions;      /* all live sessions, for shutdown */
	unsigned active;
	bool draining;                 /* SIGTERM received */
	unsigned long long next_id;
	unsigned nworkers;             /* processes sharing the port (limits are split) */
	int slot;                      /* this worker's number, 0 when alone */
};

extern struct server srv;

/* A session ended: the listener may exit when draining and none are left. */
void server_session_gone(void);

/* SIGHUP: loads srv.cfg's file again, all or nothing (logged either way).
 * Sessions keep the configuration they hold a reference to. */
bool server_reload(void);

#endif
