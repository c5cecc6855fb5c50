/*
 * session: one client connection on the front side (docs/design.md "The
 * session" and README.md "Hostile input" say what it does).
 *
 * Promises: greygate speaks the envelope itself and opens the backend only
 * for a recipient that passed every check; commands are handled strictly
 * one after the other, so replies leave in command order however the
 * client pipelines, whether greygate or the backend answers; every input is
 * bounded (line length, buffered input, buffered replies, recipients,
 * errors, time); a message is never acknowledged unless the backend
 * acknowledged it.
 */
#ifndef GG_SESSION_H
#define GG_SESSION_H

#include <event2/util.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "netaddr.h"

/* Takes over FD. CLIENT was already counted by connlimit, unless VIA_PROXY:
 * then the session waits for the PROXY header, takes the client from it
 * and counts that one. */
void session_start(evutil_socket_t fd, const struct sockaddr *sa, const struct ipaddr *client,
		   bool via_proxy);

/* Shutdown grace is over: tell every client 421 and close. */
void session_close_all(void);

/* At exit, after the loop: frees whatever sessions are left. */
void session_shutdown(void);

#endif
