/*
 * handover: on a backup MX, hands queued mail back to the primary as soon
 * as it is reachable again, without waiting for an ETRN from it (README.md,
 * "Deployment: a primary and a backup MX").
 *
 * Every probe_interval seconds the primary MX hosts (best preference,
 * other than this host) of each handover domain are probed: connect to
 * probe_port, read the 220 banner, QUIT. When a primary goes from down to
 * up, greygate sends "ETRN domain" to its own backend at once, so Postfix
 * flushes the domain's queue now instead of at its next retry. Probes are
 * non-blocking and bounded in number per round.
 */
#ifndef GG_HANDOVER_H
#define GG_HANDOVER_H

#include "config.h"

struct event_base;

void handover_start(struct event_base *base, struct gg_config *cfg);
void handover_stop(void);

#endif
