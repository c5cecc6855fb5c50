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
 * (handover.probe_interval 0), or not yet done. */
bool handover_primary_up(const char *domain);

/* Every worker probes, so that each knows the primaries' state for
 * handover_primary_up (the backup_first signal); only the one started
 * with HAND_OVER logs what it sees and sends the ETRN, once per host. */
void handover_start(struct event_base *base, struct gg_config *cfg, bool hand_over);
void handover_stop(void);

#endif
