/*
 * worker: runs one serving process until it has drained (see worker.c).
 */
#ifndef GG_WORKER_H
#define GG_WORKER_H

#include <stddef.h>

#include "version.h"

#define WORKER_FDS_MAX 17          /* listen (16 at most), policy.listen */

/* The supervisor's pid, in the environment its workers inherit: a worker
 * stops when its parent is no longer that process. */
#define SUPERVISOR_ENV "GREYGATE_SUPERVISOR"

struct worker_args {
	int slot;                     /* 0 when alone */
	unsigned nworkers;            /* 1 when alone */
	int store_fd;                 /* the supervisor's embedded store, or -1 */
	int metrics_fd;               /* the supervisor's metrics block, or -1 */
	int bundle_fd;                /* the configuration in force (gg_config_bundle), or -1 */
	int chan_fd;                  /* the supervisor's channel: new bundles, or EOF when it is gone; or -1 */
	int fds[WORKER_FDS_MAX];      /* inherited listen sockets; none: bind */
	size_t nfds;
};

/* Expects srv.cfg loaded (from W->bundle_fd under a supervisor: a worker
 * never reads the file). Returns the exit status. */
int worker_run(const struct worker_args *w);

#endif
