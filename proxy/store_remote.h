/*
 * store_remote: the embedded store when several workers share it. The
 * memory store has one owner, the supervisor; workers send each decision
 * over a SOCK_SEQPACKET socket pair (one message a request, one a reply)
 * and the supervisor answers in order.
 */
#ifndef GG_STORE_REMOTE_H
#define GG_STORE_REMOTE_H

#include <stdint.h>

struct event;

#include "greylist.h"
#include "store.h"
#include "triplet.h"

/* A decision, or (marks set) a network's marks: MARK says what to set,
 * NET (t.net) whose. */
struct remote_request {
	uint64_t id;
	struct gl_params params;
	uint8_t dry_run;
	uint8_t marks;
	struct gl_mark_set mark;
	struct triplet t;
};

struct remote_reply {
	uint64_t id;
	uint8_t ok;
	struct gl_decision d;
	struct gl_marks marks;
};

/* Worker side: decisions go over FD (the supervisor's end is the other). */
struct store *store_remote_open(struct event_base *base, struct gg_config *cfg, int fd);

/* Supervisor side: answers a worker's requests on FD from the embedded
 * store in use in this process (store()), until the worker goes. The caller frees the
 * event and closes FD when it reaps the worker. */
struct event *store_remote_serve(struct event_base *base, int fd);

#endif
