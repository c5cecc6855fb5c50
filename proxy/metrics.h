/*
 * metrics: counters, gauges and latency histograms for /metrics and the
 * health of /healthz (proxy/admin.c).
 *
 * Promises: recording is a relaxed atomic add into this process's own slot
 * (no lock, no allocation, nothing that can fail); with workers the slots
 * live in one shared memory block that the supervisor created, so the
 * supervisor's /metrics adds all workers up without asking them.
 */
#ifndef GG_METRICS_H
#define GG_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "score.h"
#include "pool_key.h"
#include "spf_record.h"
#include "why.h"

enum metric {
	M_CONNECTIONS,            /* accepted */
	M_CONNECTIONS_REFUSED,    /* refused by a limit */
	M_CONNECTIONS_ACTIVE,     /* gauge */
	M_MESSAGES_ACCEPTED,
	M_MESSAGES_REJECTED,
	M_BYTES_RELAYED,
	M_BACKEND_ERRORS,
	M_BACKEND_CONNECTS,       /* new connections opened */
	M_BACKEND_REUSED,         /* idle connections taken by a new client */
	M_STORE_ERRORS,
	M_DNS_ERRORS,
	M_HANDOVERS,
	M_HANDOVER_FAILURES,      /* an ETRN the backend refused or never got */
	M_RELOADS_OK,
	M_RELOADS_FAILED,
	M_POLICY_REQUESTS,        /* policy service requests answered */
	M_POLICY_ERRORS,          /* policy connections closed for a protocol error */
	M_COUNT
};

/* Decisions by action and reason, refusals by rule: the label sets are
 * the entries of why.h. */
enum decision_action {
	DA_PASS, DA_GREYLIST, DA_TEMPFAIL,
	DA_REJECT,                /* a hostile client refused */
	DA_WOULD_GREYLIST, DA_WOULD_REJECT,   /* greylist.mode = "shadow" */
	DA_COUNT
};

/* Error replies from Redis by kind, the first word of the reply
 * (redis_conn.c classifies them). */
enum store_error {
	SE_OOM, SE_NOAUTH, SE_WRONGPASS, SE_NOPERM, SE_READONLY, SE_MASTERDOWN, SE_LOADING,
	SE_BUSY, SE_NOSCRIPT,
	SE_MOVED, SE_ASK, SE_TRYAGAIN, SE_CLUSTERDOWN,   /* a Redis Cluster's */
	SE_UNCLASSIFIED, SE_COUNT
};

enum histogram { H_DECISION, H_STORE, H_DNS, H_COUNT };
#define HIST_BUCKETS 13           /* the last one is +Inf */

void metrics_add(enum metric m, int64_t v);
/* The action as logged and labelled: "pass", "greylist", "tempfail",
 * "reject", "would-greylist", "would-reject". */
const char *metrics_action_name(enum decision_action a);
/* Counted only when why.h says REASON is a decision reason, RULE a refusal
 * rule. */
void metrics_decision(enum decision_action a, enum why reason);
void metrics_refusal(enum why rule);
/* Selective greylisting: one RCPT decision that classed its client: its
 * class, and every part of its score S by signal, so that signals and
 * classes count the same decisions. */
void metrics_classified(enum score_class c, const struct score *s);
/* A store decision (pass, greylist or, in shadow mode, would-greylist) by
 * the kind of its key (pool_key.h). */
void metrics_decision_key(enum pool_kind k, enum decision_action a);
void metrics_store_error(enum store_error kind);
/* A finished SPF check by its result. */
void metrics_spf_result(enum spf_result r);
void metrics_observe(enum histogram h, double seconds);

/* Health as this process sees it, for /healthz. */
void metrics_health(bool backend_ok, bool store_ok);

/* Monotonic seconds, for latencies. */
double metrics_now(void);

/* Set up: alone (private memory), or as worker SLOT of a shared block FD
 * (from metrics_shared_create in the supervisor). */
int metrics_init_private(void);
int metrics_init_shared(int fd, unsigned slot, unsigned nslots);
/* Supervisor: a block for NSLOTS workers; returns its fd (inherited). */
int metrics_shared_create(unsigned nslots);
/* Supervisor: worker SLOT died; its numbers stop counting for health. */
void metrics_slot_gone(unsigned slot);

/* Prometheus text of all slots added up. */
void metrics_write(FILE *out);
/* Healthy when every live slot says so and has spoken in the last few
 * seconds; REASON says what is not. */
bool metrics_healthy(char *reason, size_t len);

#endif
