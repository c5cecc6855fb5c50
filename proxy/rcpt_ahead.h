/*
 * rcpt_ahead: the checks of recipients that a client pipelined behind the
 * one being decided start at once, so that their store lookups and DNS
 * queries run together (hiredis sends the EVALSHAs of one loop pass in one
 * write): N pipelined recipients cost about one Redis round trip, not N.
 *
 * Promises: only the checks start early; the session still handles its
 * commands one at a time, so replies stay in command order. An entry is
 * taken only by the exact command line it was started for, strictly in the
 * order of starting; anything else (a line that does not match, the end of
 * the transaction) cancels what is left, and the caller checks that line
 * itself. Bounded: at most RCPT_AHEAD_MAX checks ahead.
 */
#ifndef GG_RCPT_AHEAD_H
#define GG_RCPT_AHEAD_H

#include <stdbool.h>
#include <stddef.h>

#include "rcpt_check.h"

#define RCPT_AHEAD_MAX 8
/* Longer recipient lines are simply not looked ahead. */
#define RCPT_AHEAD_LINE_MAX 600

struct rcpt_ahead;

/* NULL when out of memory (the caller then checks one at a time). */
struct rcpt_ahead *rcpt_ahead_new(void);
/* Cancels every check still running. Safe inside a DONE function. */
void rcpt_ahead_free(struct rcpt_ahead *a);

/* Checks started and not yet taken. */
size_t rcpt_ahead_count(const struct rcpt_ahead *a);
/* Whether another check may start. */
bool rcpt_ahead_room(const struct rcpt_ahead *a);

/* Starts the check of Q for command LINE (LEN bytes, without CRLF). */
bool rcpt_ahead_start(struct rcpt_ahead *a, const char *line, size_t len,
		      const struct rcpt_query *q);

/* When the oldest check was started for LINE: DONE(ARG, verdict) is called
 * once, possibly before this returns, and true is returned. Otherwise every
 * check ahead is cancelled and false is returned. */
bool rcpt_ahead_take(struct rcpt_ahead *a, const char *line, size_t len,
		     rcpt_done_fn done, void *arg);

#endif
