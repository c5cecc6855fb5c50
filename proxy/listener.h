/*
 * listener: the listening sockets and admission (SPEC 3 limits): total
 * connections and connections per client address, refused with 421 before
 * any session state is spent on them.
 */
#ifndef GG_LISTENER_H
#define GG_LISTENER_H

#include "config.h"

/* Binds every address of CFG->listen; returns 0, or -1 after logging which
 * address failed and why. */
int listener_open(const struct gg_config *cfg);
void listener_close(void);

#endif
