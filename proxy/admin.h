/*
 * admin: the small HTTP endpoint on admin.listen (loopback by default):
 * /healthz (200 "ok", or 503 with the reason: no worker, a worker not
 * responding, store or backend unavailable; Docker's HEALTHCHECK uses it)
 * and /metrics (Prometheus text). Served by the process that sees all the
 * numbers: the supervisor with workers, else the one process.
 */
#ifndef GG_ADMIN_H
#define GG_ADMIN_H

#include "config.h"

struct event_base;

/*
 * -1 (logged) when admin.listen cannot be bound: the operator asked for a
 * health endpoint, and a balancer would take the host for dead without it.
 * At most 32 connections, each closed 10 s after it was accepted; requests
 * beyond 50 a second (after a burst of 100) wait for their turn. Out of
 * descriptors, accepting pauses for a second at a time.
 */
int admin_open(struct event_base *base, const struct gg_config *cfg);
void admin_close(void);

#endif
