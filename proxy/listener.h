/*
 * listener: the listening sockets and admission (SPEC 3 limits): total
 * connections and connections per client address, refused with 421 before
 * any session state is spent on them.
 */
#ifndef GG_LISTENER_H
#define GG_LISTENER_H

#include "config.h"

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

#endif
