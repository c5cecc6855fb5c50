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

#include <stdbool.h>

#include "config.h"

struct event_base;

/* Whether this host is a backup MX of DOMAIN (one of handover.domains,
 * this host not among its best-preference MX hosts) and one of those
 * primaries answered the last probe. False when not known: probing off
 * (handover.probe_interval 0), not yet done, or done by another worker
 * (only the first worker probes). */
bool handover_primary_up(const char *domain);

void handover_start(struct event_base *base, struct gg_config *cfg);
void handover_stop(void);

#endif
