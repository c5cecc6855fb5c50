/*
 * connlimit: connections per client address, for limits.max_per_client.
 *
 * Promises: O(1) on average, memory proportional to the number of distinct
 * client addresses connected now (an entry goes away with its last
 * connection).
 */
#ifndef GG_CONNLIMIT_H
#define GG_CONNLIMIT_H

#include <stdbool.h>

#include "netaddr.h"

/* Counts one more connection from A unless that would exceed MAX. */
bool connlimit_acquire(const struct ipaddr *a, int max);
void connlimit_release(const struct ipaddr *a);

#endif
