/*
 * linger: the end of a client connection after its last reply.
 *
 * Closing a TCP socket whose input has not all been read makes the kernel
 * reset the connection, and the reset throws away the replies still
 * queued for the client (a pipelining client that ran into a limit would
 * lose the 421 that says why; any data that arrives after a plain close
 * resets it too). So the write side is shut at once (the client reads
 * every reply, then end of file) and what the client still sends is read
 * and dropped until it closes.
 *
 * Promises: the descriptor is closed within LINGER_SECONDS, after at most
 * LINGER_BYTES of input, and at once when LINGER_MAX connections linger
 * already; nothing else is kept.
 */
#ifndef GG_LINGER_H
#define GG_LINGER_H

#include <event2/event.h>

#define LINGER_SECONDS 2
#define LINGER_BYTES (64 * 1024)
#define LINGER_MAX 256

/* Takes FD (a connected stream socket) over and closes it as above. */
void linger_close(struct event_base *base, evutil_socket_t fd);
/* At exit: closes every connection still lingering. */
void linger_close_all(void);

#endif
