/*
 * client_name: a client's forward-confirmed reverse DNS name, looked up by
 * greygate-ctl itself for `explain CLIENT SENDER RCPT` when ptr: pool keys
 * are on, so that explain shows the key a session would use. The daemon's
 * control socket never waits for DNS: the command does, with blocking
 * c-ares queries through dns.servers and the daemon's dns timeouts.
 *
 * Here and not in lib/: lib/ is linked whole into the session fuzz target,
 * whose c-ares is a fake with only the calls proxy/resolver.c makes.
 */
#ifndef GG_CTL_CLIENT_NAME_H
#define GG_CTL_CLIENT_NAME_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* CLIENT's confirmed name into OUT: the first of its PTR names (valid host
 * names only, at most four looked at) whose addresses include CLIENT.
 * False when CLIENT is no address, it has no such name, or DNS fails. */
bool client_name_confirmed(const struct gg_config *cfg, const char *client, char *out,
			   size_t outlen);

#endif
