/*
 * control: the daemon's control socket, through which greygate-ctl runs
 * its commands against the embedded store that lives in this process. One
 * command line per connection, the answer, then the daemon closes.
 */
#ifndef GG_CONTROL_H
#define GG_CONTROL_H

#include "config.h"

struct event_base;

/* Before anything is opened: -1, logged, when a process answers on
 * CFG->control_socket (another greygate: its socket is left alone); else 0. */
int control_probe(const struct gg_config *cfg);
/* Listens on CFG->control_socket (best effort: a failure is logged and the
 * daemon runs without it). */
void control_open(struct event_base *base, const struct gg_config *cfg);
/* Closes the connections still open, unanswered; removes the socket only
 * if it is still the one we made. */
void control_close(void);

#endif
