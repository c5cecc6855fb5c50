/*
 * hostport: "192.0.2.1:25", "[2001:db8::1]:25", "localhost:25" into a
 * socket address, for the listen and backend settings.
 *
 * Promises: numeric addresses only, except the name "localhost" (no DNS at
 * start-up or reload: a name that needs a resolver would block the loop).
 */
#ifndef GG_HOSTPORT_H
#define GG_HOSTPORT_H

#include <stdbool.h>
#include <sys/socket.h>

bool hostport_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len);

#endif
