/*
 * control: the daemon's control socket, through which greygate-ctl runs
 * its commands against the embedded store that lives in this process, and
 * asks, whatever the store, for what explain shows of a client that needs
 * DNS (its class and score: "facts"). One command line per connection,
 * the answer, then the daemon closes. Served by the one process, or by
 * the supervisor when there are workers.
 */
#ifndef GG_CONTROL_H
#define GG_CONTROL_H

#include "config.h"

struct event_base;

/* Before anything is opened: -1, logged, when a process answers on
 * CFG->control_socket (another greygate: its socket is left alone); else 0. */
int control_probe(const struct gg_config *cfg);
/* Listens on CFG->control_socket (best effort: a failure is logged and the
 * daemon runs without it). The process has the resolver and the SPF
 * checker open: explain's facts (explain.h) are found on its loop. */
void control_open(struct event_base *base, const struct gg_config *cfg);
/* Closes the connections still open, unanswered; removes the socket only
 * if it is still the one we made. */
void control_close(void);

#endif
