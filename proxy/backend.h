/*
 * backend: one SMTP client connection from greygate to the local MTA.
 *
 * Promises: the connection is opened only on request (lazily, at the first
 * recipient that passed every check); the hand-shake (greeting, EHLO,
 * XCLIENT with the real client's attributes, the new greeting, EHLO/HELO
 * with the client's HELO name) is done here, and what the backend
 * advertised is remembered process-wide so that the front side offers no
 * extension the backend lacks. One command is outstanding at a time; every
 * outcome, including a dead or silent backend, ends in exactly one call of
 * the caller's function, and that call always comes from the event loop:
 * never inside backend_open/backend_command/backend_pipeline/the body
 * functions that started it, and never with a frame of this module on the
 * stack, so the caller may free the backend there. Nothing blocks:
 * connect, reads and writes are on the event loop with timeouts.
 *
 * "Unreachable" (backend_reachable) means the backend cannot be connected
 * to, does not greet with 220, or refuses greygate's own EHLO or XCLIENT
 * for everyone; a refusal of one client's attributes is BE_REFUSED and
 * leaves it alone.
 */
#ifndef GG_BACKEND_H
#define GG_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "smtp_reply.h"

struct event_base;
struct evbuffer;
struct backend;

enum backend_status {
	BE_OK,           /* R is the backend's reply */
	BE_UNAVAILABLE,  /* could not connect, or the hand-shake was refused */
	BE_LOST,         /* the connection died or timed out mid-command */
	BE_REFUSED,      /* the backend refused this client's XCLIENT or HELO:
			    this session's failure, not the backend's */
};

typedef void (*backend_reply_fn)(void *arg, enum backend_status st, const struct smtp_reply *r);

/* The client's attributes for XCLIENT; NULL fields are sent as [UNAVAILABLE]. */
struct backend_client {
	const char *addr;    /* numeric address text */
	bool ipv6;
	unsigned port;
	const char *name;    /* verified host name */
	const char *helo;
	bool esmtp;
};

/* What the backend advertised in its last EHLO reply. */
struct backend_caps {
	bool known;
	bool size, eightbitmime, smtputf8, dsn, xclient, enhancedstatuscodes, pipelining;
	unsigned long size_limit;   /* 0: no limit announced */
};

const struct backend_caps *backend_caps(void);
/* Whether the last connection attempt (or probe) got through the
 * hand-shake. */
bool backend_reachable(void);

/* ID is the front session's, for log lines. */
struct backend *backend_new(struct event_base *base, struct gg_config *cfg, unsigned long long id);

/* Connects and shakes hands; CI NULL means no XCLIENT (capability probe). */
void backend_open(struct backend *b, const struct backend_client *ci,
		  backend_reply_fn done, void *arg);

/* Sends one command LINE (without CRLF) and reports its reply. A backend
 * that is not usable reports BE_LOST (from the loop). */
void backend_command(struct backend *b, const char *line, size_t len,
		     backend_reply_fn done, void *arg);

/* With PIPELINING: sends FIRST and LINE in one write; FIRST_DONE gets the
 * first reply, then DONE the second. A failure is reported once, to
 * whichever is waiting; an owner that lets go of the connection in
 * FIRST_DONE hears nothing more. */
void backend_pipeline(struct backend *b, const char *first, size_t first_len,
		      backend_reply_fn first_done, const char *line, size_t len,
		      backend_reply_fn done, void *arg);

bool backend_usable(const struct backend *b);

/*
 * After the backend said 354: DONE gets the reply to end-of-data, or
 * BE_LOST as soon as the connection dies while the body is still being
 * written (the caller then discards the rest of the client's data).
 */
void backend_body_begin(struct backend *b, backend_reply_fn done, void *arg);
/* The body goes here between backend_body_begin and backend_body_end. */
struct evbuffer *backend_body(struct backend *b);
/* The end-of-data line has been written; now the reply is awaited. */
void backend_body_end(struct backend *b);

/* FN is called whenever the body buffer has drained below the low-water
 * mark, so that the front side can resume reading the client. */
void backend_on_drain(struct backend *b, void (*fn)(void *), void *arg);
bool backend_body_full(const struct backend *b);

/* Closes (QUIT when the connection is idle); a completion not yet
 * delivered is dropped. */
void backend_free(struct backend *b);

/* At exit: closes every connection left, telling a waiting owner BE_LOST. */
void backend_shutdown(void);

/* Learns the backend's extensions at start-up with a throw-away connection,
 * so that the first clients already get the right EHLO list. */
void backend_probe(struct event_base *base, struct gg_config *cfg);

#endif
