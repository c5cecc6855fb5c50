/*
 * server: the process-wide state every module shares: the event loop, the
 * configuration in force, the sessions alive, and the shutdown state.
 */
#ifndef GG_SERVER_H
#define GG_SERVER_H

#include <stdbool.h>
#include <stddef.h>

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

/* Once the loop is over: SIGHUP, SIGTERM and SIGINT stay pending until the
 * process exits. Freeing the loop's signal events puts back their default
 * action, which would end the process silently in the middle of its
 * clean-up (a worker's pdeath SIGTERM can come after it has seen its
 * supervisor's channel close and finished; the supervisor saves the
 * embedded store there). */
void server_hold_signals(void);

/*
 * Reload: a new configuration is loaded in steps on the loop (sessions go
 * on between two steps), then swapped in whole or not at all, logged when
 * it starts and when it ends (result, duration_ms). Sessions keep the
 * configuration they hold a reference to; only new ones see the new one.
 * Requests that arrive while a load runs are coalesced: at most one more
 * load follows it, of the newest bundle or of the file.
 */
struct reload_hooks {
	/* This process reads the file: a change that needs a restart
	 * (gg_config_restart_setting) is refused and logged. */
	bool check_restart;
	/* Before the swap; false refuses C with ERR as the reason. */
	bool (*prepare)(const struct gg_config *c, char *err, size_t errlen);
	/* After the swap: srv.cfg is the new configuration. */
	void (*applied)(void);
};
/* Expects srv.base; HOOKS must outlive the loop. */
void server_reload_setup(const struct reload_hooks *hooks);
/* Loads BUNDLE_FD (a gg_config_bundle in a file, taken over), or srv.cfg's
 * file when it is -1. */
void server_reload_request(int bundle_fd);
/* Abandons a load in progress and what was pending; frees the event. */
void server_reload_stop(void);

/* A whole load of the bundle FD (closed), for a worker's start; NULL with
 * ERR filled on failure. */
struct gg_config *server_load_bundle(int fd, char *err, size_t errlen);

#endif
