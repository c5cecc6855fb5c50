/*
 * listener: the listening sockets and admission (the limits.* settings): total
 * connections and connections per client address, refused with 421 before
 * any session state is spent on them. When accepting fails for want of
 * descriptors or memory, new clients are answered 421 or made to wait a
 * moment; the loop never spins on it, and the failures are logged once
 * per few seconds with their count.
 */
#ifndef GG_LISTENER_H
#define GG_LISTENER_H

#include "config.h"

/* Before anything binds: -1, logged, when another process listens on one
 * of CFG->listen or on policy.listen (the sockets bound later share their port, so they would
 * not notice); else 0. */
int listener_probe(const struct gg_config *cfg);

/* The backlog of every listen socket (and of one re-armed after a pause). */
#define LISTEN_BACKLOG 511

/* Binds every address of CFG->listen; returns 0, or -1 after logging which
 * address failed and why. */
int listener_open(const struct gg_config *cfg);
/* The parts of listener_open, for a supervisor that binds for its workers:
 * a bound, listening socket (or -1, logged), and taking one over. */
int listener_bind(const char *spec);
int listener_adopt(int fd, const char *spec);
/* This process's share of a connection limit (limits are split between
 * workers). */
unsigned listener_share(int limit);
void listener_close(void);
/* A descriptor was freed: listeners paused for want of one try again now
 * rather than at the end of the pause. */
void listener_resume(void);

#endif
