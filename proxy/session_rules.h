/*
 * session_rules: the session's policy as data, beside the RCPT table
 * (rcpt_rules.h). One table of rows (in session_rules.c), each a named
 * check tagged with the points of a command it applies to; the driver
 * walks the rows of one point in order and stops at the first refusal.
 * What is syntax (a malformed argument, a command out of sequence) stays
 * in the command's handler; a row refuses a well-formed command because
 * of who asks, what was (not) said before, or a limit.
 *
 * A point is where in a command the rows run: MAIL on arrival (before its
 * argument is parsed) and again with its parameters, ETRN on arrival and
 * again with its domain, RCPT once its address is parsed. Replies are
 * those the handlers gave before the table existed.
 *
 * Promises: pure. A row reads only the query (and the configuration it
 * points to), never the session, the network or the clock, so
 * test/unit/test_session_rules.c runs every row without a loop.
 */
#ifndef GG_SESSION_RULES_H
#define GG_SESSION_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "netaddr.h"
#include "why.h"

enum sess_point {
	SP_MAIL        = 1u << 0,   /* MAIL, before its argument */
	SP_MAIL_PARAMS = 1u << 1,   /* MAIL, its parameters parsed */
	SP_RCPT        = 1u << 2,   /* RCPT, its address parsed */
	SP_ETRN        = 1u << 3,   /* ETRN, before its argument */
	SP_ETRN_DOMAIN = 1u << 4,   /* ETRN, its domain well-formed */
};

struct sess_query {
	const struct gg_config *cfg;
	const struct ipaddr *client;
	bool helo_seen;
	bool client_unknown;        /* a PROXY header named no client */
	unsigned long long size;    /* SP_MAIL_PARAMS: SIZE=, 0 if none */
	unsigned long size_limit;   /* the backend's SIZE limit, 0 if none */
	int rcpt_ok;                /* SP_RCPT: recipients accepted so far */
	const char *etrn_arg;       /* SP_ETRN_DOMAIN: as sent ("@d", "#q", "d") */
	size_t etrn_len;
};

struct sess_verdict {
	enum why rule;              /* the refusing row: log rule= and metrics */
	bool counted;               /* counts towards limits.max_errors */
	char reply[600];
};

/* Walks the rows of AT; true when one refused (*V set), false when the
 * command may go on. */
bool session_rules_check(enum sess_point at, const struct sess_query *q, struct sess_verdict *v);

/* The table, for documentation and tests: row I's name and points;
 * WHY_NONE past the end. */
enum why session_rules_row(size_t i, unsigned *points);

#endif
