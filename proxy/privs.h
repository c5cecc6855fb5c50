/*
 * privs: who greygate runs as. Port 25 needs root to bind; nothing after
 * that does, so once the sockets are open greygate becomes `user`/`group`.
 * Running on as root is refused unless `run_as_root = true` says so (a
 * test box, a container whose root is not the host's).
 */
#ifndef GG_PRIVS_H
#define GG_PRIVS_H

#include "config.h"

/* Writes pid_file (if set), then drops to user/group. Returns 0, or -1
 * after logging why (the caller exits). */
int privs_settle(const struct gg_config *cfg);
/* Removes the pid file at exit (best effort). */
void privs_cleanup(const struct gg_config *cfg);

#endif
