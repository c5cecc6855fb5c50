#include "metrics.h"

#include <stddef.h>
#include <stdio.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "version.h"

#define HEALTH_STALE 5            /* seconds without a report: not healthy */

static const char *const actions[DA_COUNT] = { "pass", "greylist", "tempfail", "reject",
						 "would-greylist", "would-reject" };
static const char *const store_errors[SE_COUNT] = {
	"oom", "noauth", "wrongpass", "noperm", "readonly", "masterdown", "loading",
	"busy", "noscript", "moved", "ask", "tryagain", "clusterdown", "unclassified",
};
/* upper bounds in seconds; the last bucket is +Inf */
static const double bounds[HIST_BUCKETS - 1] = {
	0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
};
static const char *const hist_names[H_COUNT] = {
	"greygate_decision_seconds", "greygate_store_seconds", "greygate_dns_seconds",
};
static const char *const hist_help[H_COUNT] = {
	"Time from RCPT to the policy decision.",
	"Time of one greylisting store request.",
	"Time of one DNS lookup that went to a server.",
};

struct slot {
	_Atomic int64_t m[M_COUNT];
	_Atomic uint64_t dec[DA_COUNT][WHY_COUNT];  /* by reason */
	_Atomic uint64_t ref[WHY_COUNT];            /* by rule */
	_Atomic uint64_t keys[POOL_KINDS][DA_COUNT]; /* store decisions by key kind */
	_Atomic uint64_t store_err[SE_COUNT];       /* by kind */
	_Atomic uint64_t spf[SPF_RESULTS];          /* SPF checks by result */
	_Atomic uint64_t classes[CLASS_COUNT];
	_Atomic uint64_t signals[SIG_COUNT];
	_Atomic uint64_t hist[H_COUNT][HIST_BUCKETS];
	_Atomic uint64_t hist_sum_us[H_COUNT];
	_Atomic int64_t health_time;
	_Atomic int backend_ok, store_ok, live;
};

static struct slot *slots;
static struct slot *mine;
/* Under a supervisor the block has one slot per worker, then the
 * supervisor's own (its reloads); only the workers' say whether we are
 * healthy. */
static unsigned nslots, nworkers;

double metrics_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int metrics_init_private(void)
{
	slots = calloc(1, sizeof *slots);
	if (!slots)
		return -1;
	nslots = nworkers = 1;
	mine = slots;
	atomic_store(&mine->live, 1);
	return 0;
}

int metrics_shared_create(unsigned n)
{
	int fd = memfd_create("greygate-metrics", 0);
	if (fd < 0 || ftruncate(fd, (off_t)((n + 1) * sizeof *slots)) < 0)
		return -1;
	void *p = mmap(NULL, (n + 1) * sizeof *slots, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -1;
	slots = p;
	nworkers = n;
	nslots = n + 1;
	mine = &slots[n];
	return fd;
}

int metrics_init_shared(int fd, unsigned slot, unsigned n)
{
	void *p = mmap(NULL, (n + 1) * sizeof *slots, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED || slot >= n)
		return -1;
	slots = p;
	nworkers = n;
	nslots = n + 1;
	mine = &slots[slot];
	/* a restarted worker starts its slot afresh; totals restart with it */
	memset(mine, 0, sizeof *mine);
	atomic_store(&mine->live, 1);
	return 0;
}

void metrics_slot_gone(unsigned slot)
{
	if (slots && slot < nworkers)
		atomic_store(&slots[slot].live, 0);
}

void metrics_add(enum metric m, int64_t v)
{
	if (mine)
		atomic_fetch_add_explicit(&mine->m[m], v, memory_order_relaxed);
}

const char *metrics_action_name(enum decision_action a)
{
	return actions[a];
}

void metrics_decision(enum decision_action a, enum why reason)
{
	if (mine && why_is(reason, WHY_REASON))
		atomic_fetch_add_explicit(&mine->dec[a][reason], 1, memory_order_relaxed);
}

void metrics_refusal(enum why rule)
{
	if (mine && why_is(rule, WHY_REFUSAL))
		atomic_fetch_add_explicit(&mine->ref[rule], 1, memory_order_relaxed);
}

void metrics_classified(enum score_class c, const struct score *s)
{
	if (!mine)
		return;
	if ((unsigned)c < CLASS_COUNT)
		atomic_fetch_add_explicit(&mine->classes[c], 1, memory_order_relaxed);
	/* every part, whoever added it: a new signal needs no code here */
	for (size_t i = 0; i < s->n; i++)
		if ((unsigned)s->part[i].sig < SIG_COUNT)
			atomic_fetch_add_explicit(&mine->signals[s->part[i].sig], 1,
						  memory_order_relaxed);
}

/* One labelled series per entry, zeros included (the sets are small and
 * fixed). */
static void labelled(FILE *out, const char *name, const char *help, const char *label,
		     const char *(*name_of)(int), size_t off, int n)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
	for (int k = 0; k < n; k++) {
		uint64_t v = 0;
		for (unsigned i = 0; i < nslots; i++)
			v += atomic_load_explicit((_Atomic uint64_t *)((char *)&slots[i] + off) + k,
						  memory_order_relaxed);
		fprintf(out, "%s{%s=\"%s\"} %llu\n", name, label, name_of(k), (unsigned long long)v);
	}
}

static const char *class_label(int c)
{
	return score_class_name((enum score_class)c);
}

static const char *signal_label(int sig)
{
	return signal_name((enum signal)sig);
}

static const char *spf_label(int r)
{
	return spf_result_name((enum spf_result)r);
}

void metrics_decision_key(enum pool_kind k, enum decision_action a)
{
	if (mine && (unsigned)k < POOL_KINDS)
		atomic_fetch_add_explicit(&mine->keys[k][a], 1, memory_order_relaxed);
}

void metrics_spf_result(enum spf_result r)
{
	if (mine && (unsigned)r < SPF_RESULTS)
		atomic_fetch_add_explicit(&mine->spf[r], 1, memory_order_relaxed);
}

void metrics_store_error(enum store_error kind)
{
	if (mine)
		atomic_fetch_add_explicit(&mine->store_err[kind], 1, memory_order_relaxed);
}

void metrics_observe(enum histogram h, double seconds)
{
	if (!mine)
		return;
	size_t b = 0;
	while (b < HIST_BUCKETS - 1 && seconds > bounds[b])
		b++;
	atomic_fetch_add_explicit(&mine->hist[h][b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&mine->hist_sum_us[h], (uint64_t)(seconds * 1e6),
				  memory_order_relaxed);
}

void metrics_health(bool backend_ok, bool store_ok)
{
	if (!mine)
		return;
	atomic_store(&mine->backend_ok, backend_ok);
	atomic_store(&mine->store_ok, store_ok);
	atomic_store(&mine->health_time, (int64_t)metrics_now());
}

/* Each worker's slot speaks for its part of the port: one not running
 * (dead, waiting to be restarted, or starting) leaves connections that
 * part of the port would take unserved. */
bool metrics_healthy(char *reason, size_t len)
{
	int64_t now = (int64_t)metrics_now();
	for (unsigned i = 0; i < nworkers; i++) {
		struct slot *s = &slots[i];
		if (!atomic_load(&s->live)) {
			snprintf(reason, len, "worker %u not running", i);
			return false;
		}
		if (now - atomic_load(&s->health_time) > HEALTH_STALE) {
			snprintf(reason, len, "worker %u not responding", i);
			return false;
		}
		if (!atomic_load(&s->store_ok)) {
			snprintf(reason, len, "store unavailable");
			return false;
		}
		if (!atomic_load(&s->backend_ok)) {
			snprintf(reason, len, "backend unavailable");
			return false;
		}
	}
	snprintf(reason, len, "ok");
	return true;
}

static uint64_t sum_m(enum metric m)
{
	int64_t t = 0;
	for (unsigned i = 0; i < nslots; i++)
		t += atomic_load_explicit(&slots[i].m[m], memory_order_relaxed);
	return t < 0 ? 0 : (uint64_t)t;
}

static void counter(FILE *out, const char *name, const char *help, const char *type, uint64_t v)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
		(unsigned long long)v);
}

void metrics_write(FILE *out)
{
	static const struct { enum metric m; const char *name, *help, *type; } plain[] = {
		{ M_CONNECTIONS, "greygate_connections_total", "Connections accepted.", "counter" },
		{ M_CONNECTIONS_REFUSED, "greygate_connections_refused_total",
		  "Connections refused by a connection limit.", "counter" },
		{ M_CONNECTIONS_ACTIVE, "greygate_connections_active", "Sessions open now.", "gauge" },
		{ M_MESSAGES_ACCEPTED, "greygate_messages_accepted_total",
		  "Messages the backend accepted.", "counter" },
		{ M_MESSAGES_REJECTED, "greygate_messages_rejected_total",
		  "Messages refused or not accepted at end of data.", "counter" },
		{ M_BYTES_RELAYED, "greygate_bytes_relayed_total", "Message bytes sent to the backend.",
		  "counter" },
		{ M_BACKEND_ERRORS, "greygate_backend_errors_total",
		  "Backend connections that failed or died.", "counter" },
		{ M_BACKEND_CONNECTS, "greygate_backend_connects_total",
		  "Backend connections opened.", "counter" },
		{ M_BACKEND_REUSED, "greygate_backend_reused_total",
		  "Idle backend connections taken over by a new client.", "counter" },
		{ M_STORE_ERRORS, "greygate_store_errors_total",
		  "Greylisting store requests that failed.", "counter" },
		{ M_DNS_ERRORS, "greygate_dns_errors_total", "DNS lookups that failed temporarily.",
		  "counter" },
		{ M_HANDOVERS, "greygate_handovers_total", "ETRNs sent after a primary came back.",
		  "counter" },
		{ M_HANDOVER_FAILURES, "greygate_handover_failures_total",
		  "Hand-overs whose ETRN the backend refused or never got.", "counter" },
		{ M_RELOADS_OK, "greygate_config_reloads_ok_total", "Configuration reloads done.",
		  "counter" },
		{ M_RELOADS_FAILED, "greygate_config_reloads_failed_total",
		  "Configuration reloads refused.", "counter" },
		{ M_POLICY_REQUESTS, "greygate_policy_requests_total",
		  "Postfix policy service requests answered.", "counter" },
		{ M_POLICY_ERRORS, "greygate_policy_protocol_errors_total",
		  "Postfix policy connections closed for a protocol error.", "counter" },
	};
	for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
		counter(out, plain[i].name, plain[i].help, plain[i].type, sum_m(plain[i].m));
	/* /healthz's two dependencies as gauges, so that an alert can tell a
	 * store outage from a backend one without a second scraper */
	bool store_up = true, backend_up = true;
	for (unsigned i = 0; i < nworkers; i++) {
		if (!atomic_load(&slots[i].live))
			continue;
		store_up = store_up && atomic_load(&slots[i].store_ok);
		backend_up = backend_up && atomic_load(&slots[i].backend_ok);
	}
	counter(out, "greygate_store_up", "1 when every worker reaches the greylisting store.",
		"gauge", store_up);
	counter(out, "greygate_backend_up", "1 when every worker reaches the backend.", "gauge",
		backend_up);

	fprintf(out, "# HELP greygate_decisions_total RCPT decisions by action and reason.\n"
		     "# TYPE greygate_decisions_total counter\n");
	for (int a = 0; a < DA_COUNT; a++)
		for (enum why r = 0; r < WHY_COUNT; r++) {
			if (!why_is(r, WHY_REASON))
				continue;
			uint64_t v = 0;
			for (unsigned i = 0; i < nslots; i++)
				v += atomic_load_explicit(&slots[i].dec[a][r], memory_order_relaxed);
			if (v)
				fprintf(out, "greygate_decisions_total{action=\"%s\",reason=\"%s\"} %llu\n",
					actions[a], why_name(r), (unsigned long long)v);
		}
	fprintf(out, "# HELP greygate_refusals_total Refused commands by rule.\n"
		     "# TYPE greygate_refusals_total counter\n");
	for (enum why r = 0; r < WHY_COUNT; r++) {
		if (!why_is(r, WHY_REFUSAL))
			continue;
		uint64_t v = 0;
		for (unsigned i = 0; i < nslots; i++)
			v += atomic_load_explicit(&slots[i].ref[r], memory_order_relaxed);
		if (v)
			fprintf(out, "greygate_refusals_total{rule=\"%s\"} %llu\n", why_name(r),
				(unsigned long long)v);
	}
	/* zeros included, as below: the kinds are few and fixed */
	fprintf(out, "# HELP greygate_decision_keys_total Greylisting store decisions by the "
		     "kind of key (spf, ptr: a pool; net: the client network) and action.\n"
		     "# TYPE greygate_decision_keys_total counter\n");
	/* a store decision passes or greylists; in shadow mode the latter
	 * is would-greylist */
	static const enum decision_action key_actions[] = { DA_PASS, DA_GREYLIST,
							    DA_WOULD_GREYLIST };
	for (int k = 0; k < POOL_KINDS; k++)
		for (size_t j = 0; j < sizeof key_actions / sizeof *key_actions; j++) {
			enum decision_action a = key_actions[j];
			uint64_t v = 0;
			for (unsigned i = 0; i < nslots; i++)
				v += atomic_load_explicit(&slots[i].keys[k][a], memory_order_relaxed);
			fprintf(out, "greygate_decision_keys_total{key=\"%s\",action=\"%s\"} %llu\n",
				pool_kind_name((enum pool_kind)k), actions[a], (unsigned long long)v);
		}
	/* every kind, zeros included: the set is small and fixed, and a rate
	 * alert needs the series before the first error */
	fprintf(out, "# HELP greygate_store_error_replies_total Error replies from Redis by kind "
		     "(the reply's first word).\n"
		     "# TYPE greygate_store_error_replies_total counter\n");
	for (int k = 0; k < SE_COUNT; k++) {
		uint64_t v = 0;
		for (unsigned i = 0; i < nslots; i++)
			v += atomic_load_explicit(&slots[i].store_err[k], memory_order_relaxed);
		fprintf(out, "greygate_store_error_replies_total{kind=\"%s\"} %llu\n", store_errors[k],
			(unsigned long long)v);
	}
	labelled(out, "greygate_spf_results_total", "Finished SPF checks (RFC 7208) by result.",
		 "result", spf_label, offsetof(struct slot, spf), SPF_RESULTS);
	labelled(out, "greygate_classes_total", "RCPT decisions by the client's score class.", "class",
		 class_label, offsetof(struct slot, classes), CLASS_COUNT);
	labelled(out, "greygate_signals_total",
		 "Score signals in the RCPT decisions that classed a client (as classes_total).",
		 "signal", signal_label, offsetof(struct slot, signals), SIG_COUNT);
	for (int h = 0; h < H_COUNT; h++) {
		fprintf(out, "# HELP %s %s\n# TYPE %s histogram\n", hist_names[h], hist_help[h],
			hist_names[h]);
		uint64_t cum = 0, sum_us = 0;
		for (unsigned i = 0; i < nslots; i++)
			sum_us += atomic_load_explicit(&slots[i].hist_sum_us[h], memory_order_relaxed);
		for (int b = 0; b < HIST_BUCKETS; b++) {
			for (unsigned i = 0; i < nslots; i++)
				cum += atomic_load_explicit(&slots[i].hist[h][b], memory_order_relaxed);
			if (b < HIST_BUCKETS - 1)
				fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", hist_names[h], bounds[b],
					(unsigned long long)cum);
			else
				fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n", hist_names[h],
					(unsigned long long)cum);
		}
		fprintf(out, "%s_sum %.6f\n%s_count %llu\n", hist_names[h], (double)sum_us / 1e6,
			hist_names[h], (unsigned long long)cum);
	}
	fprintf(out, "# HELP greygate_build_info Version.\n# TYPE greygate_build_info gauge\n"
		     "greygate_build_info{version=\"" GREYGATE_VERSION "\"} 1\n");
}
