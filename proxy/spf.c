/*
 * The evaluator runs until it wants a lookup; the resolver's answer runs
 * it on. A check answered without a lookup (from the cache, or refused on
 * its input) completes from the kick event, so that no caller sees its
 * DONE inside spf_check.
 */
#include "spf.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "config.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "resolver.h"
#include "spf_cache.h"
#include "xalloc.h"

/* Outcomes are kept a few minutes: a sender's burst of messages is
 * checked once, and a changed record is noticed soon. Slots: about
 * 1.5 KB each. */
#define CACHE_TTL 300
#define CACHE_SLOTS 1024
/* Checks under way at once (about 20 KB each while they last); past it a
 * check is temperror at once rather than memory without bound for
 * clients that send MAIL FROM domains whose DNS does not answer. */
#define INFLIGHT_MAX 1024

struct spf_req {
	/* The evaluator (about 20 KB), only for a check the cache does not
	 * answer: a sender's repeated MAIL FROMs cost no more than a lookup
	 * in the cache. */
	struct spf_eval *e;
	struct spf_outcome hit;       /* the cache's answer, when e is NULL */
	struct dns_query *q;          /* the lookup under way, if any */
	struct list_node link;        /* on readyq: done without a lookup */
	bool cached;
	spf_done_fn done;
	void *arg;
	struct spf_cache_key key;
	char domain[DNS_NAME_MAX], local[SPF_LOCAL_MAX + 1], helo[DNS_NAME_MAX];
};

static struct event *kick;        /* completes what readyq holds */
static struct list_node readyq = { &readyq, &readyq };
static struct spf_cache *cache;
static unsigned max4 = 16, max6 = 32;
static unsigned inflight;

static void new_cache(void)
{
	uint8_t key[SIPHASH_KEY_LEN];
	for (size_t got = 0; got < sizeof key;) {
		ssize_t n = getrandom(key + got, sizeof key - got, 0);
		if (n < 0 && errno != EINTR) {
			log_msg(LOG_LVL_WARNING, "spf", "no random key: SPF outcomes are not cached");
			return;
		}
		if (n > 0)
			got += (size_t)n;
	}
	cache = spf_cache_new(CACHE_SLOTS, CACHE_TTL, key);
}

static void on_kick(evutil_socket_t fd, short what, void *arg);

int spf_open(struct event_base *base)
{
	kick = event_new(base, -1, 0, on_kick, NULL);
	if (!kick)
		return -1;
	new_cache();
	return 0;
}

static void forget(void)
{
	spf_cache_free(cache);
	cache = NULL;
}

void spf_close(void)
{
	/* checks not answered yet end unanswered, as the resolver's do */
	struct list_node *n;
	while ((n = list_first(&readyq)))
		spf_cancel(LIST_ELEM(n, struct spf_req, link));
	if (kick)
		event_free(kick);
	kick = NULL;
	forget();
}

void spf_limits_of(const struct gg_config *cfg)
{
	unsigned prefix4 = (unsigned)cfg->greylist.spf_max_prefix4;
	unsigned prefix6 = (unsigned)cfg->greylist.spf_max_prefix6;
	if (prefix4 == max4 && prefix6 == max6)
		return;
	max4 = prefix4;
	max6 = prefix6;
	forget();
	new_cache();
}

static const struct spf_outcome *outcome(const struct spf_req *r)
{
	return r->e ? &r->e->out : &r->hit;
}

static void log_outcome(const struct spf_req *r)
{
	const struct spf_outcome *o = outcome(r);
	char ip[64];
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "spf");
	ll_str(&l, "domain", r->domain);
	ll_str(&l, "client", ipaddr_str(&r->key.ip, ip, sizeof ip));
	ll_str(&l, "result", spf_result_name(o->r));
	if (o->r == SPF_PASS) {
		ll_str(&l, "mechanism", o->mechanism);
		ll_str(&l, "record", o->domain);
		ll_str(&l, "narrow", o->narrow_pass ? "yes" : "no");
	}
	if (o->why)
		ll_str(&l, "why", o->why);
	ll_int(&l, "lookups", r->cached ? 0 : o->lookups);
	ll_str(&l, "cached", r->cached ? "yes" : "no");
	ll_emit(&l);
}

static void finish(struct spf_req *r)
{
	const struct spf_outcome *o = outcome(r);
	struct spf_verdict v;
	memset(&v, 0, sizeof v);
	v.r = o->r;
	v.narrow_pass = o->narrow_pass;
	v.prefix = o->prefix;
	memcpy(v.domain, o->domain, sizeof v.domain);
	memcpy(v.mechanism, o->mechanism, sizeof v.mechanism);
	/* (an answer without lookups costs nothing to find again) */
	if (!r->cached && cache && o->lookups)
		spf_cache_put(cache, &r->key, time(NULL), o);
	log_outcome(r);
	metrics_spf_result(o->r);
	spf_done_fn done = r->done;
	void *arg = r->arg;
	spf_cancel(r);
	done(arg, &v);
}

static void run(struct spf_req *r);

static void on_dns(void *arg, const struct dns_answer *a)
{
	struct spf_req *r = arg;
	r->q = NULL;
	spf_eval_feed(r->e, a);
	run(r);
}

static void on_txt(void *arg, const struct dns_txt *t)
{
	struct spf_req *r = arg;
	r->q = NULL;
	spf_eval_feed_txt(r->e, t);
	run(r);
}

/* On until the next lookup or the end; called from the loop only. */
static void run(struct spf_req *r)
{
	if (spf_eval_run(r->e) == SPF_STEP_DONE) {
		finish(r);
		return;
	}
	if (r->e->q.type == DNS_T_TXT)
		r->q = resolver_lookup_txt(r->e->q.name, on_txt, r);
	else
		r->q = resolver_lookup(r->e->q.name, r->e->q.type, on_dns, r);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	/* those DONE queues meanwhile wait for the next kick */
	struct list_node batch = { &batch, &batch };
	list_splice_back(&batch, &readyq);
	struct list_node *n;
	while ((n = list_first(&batch))) {
		list_del(n);
		finish(LIST_ELEM(n, struct spf_req, link));
	}
}

/* SRC into DST (CAP bytes): false when it was cut. A cut one is never
 * looked up in the cache (it could name another entry), and the evaluator
 * refuses it (spf_eval_init), so it never becomes a cache key either. */
static bool bounded(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strlen(src) : 0;
	bool fits = n < cap;
	if (!fits)
		n = cap - 1;
	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
	return fits;
}

/* R, answered without a lookup, completes from the loop all the same. */
static struct spf_req *answered(struct spf_req *r)
{
	list_push_back(&readyq, &r->link);
	event_active(kick, EV_TIMEOUT, 0);
	return r;
}

struct spf_req *spf_check(const struct ipaddr *client, const char *domain, const char *local,
			  const char *helo, spf_done_fn done, void *arg)
{
	struct spf_req *r = xcalloc(1, sizeof *r);
	list_init(&r->link);
	r->done = done;
	r->arg = arg;
	bool fits = bounded(r->domain, sizeof r->domain, domain);
	fits = bounded(r->local, sizeof r->local, local) && fits;
	fits = bounded(r->helo, sizeof r->helo, helo) && fits;
	r->key.domain = r->domain;
	r->key.local = r->local;
	r->key.helo = r->helo;
	r->key.ip = *client;
	inflight++;
	if (fits && cache && spf_cache_get(cache, &r->key, time(NULL), &r->hit)) {
		r->cached = true;
		return answered(r);
	}

	struct spf_input in = {
		.ip = *client,
		.domain = domain,
		.local = local,
		.helo = helo,
		.now = (long long)time(NULL),
		.max_prefix4 = max4,
		.max_prefix6 = max6,
	};
	r->e = xcalloc(1, sizeof *r->e);
	spf_eval_init(r->e, &in);
	if (!r->e->done && inflight > INFLIGHT_MAX) {
		r->e->done = true;
		r->e->out.r = SPF_TEMPERROR;
		r->e->out.why = "too many SPF checks under way";
	}
	if (r->e->done)
		return answered(r);
	run(r);   /* asks the resolver, which answers from the loop */
	return r;
}

void spf_cancel(struct spf_req *r)
{
	if (!r)
		return;
	resolver_cancel(r->q);
	list_del(&r->link);
	inflight--;
	free(r->e);
	free(r);
}
