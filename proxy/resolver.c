/*
 * c-ares tells us which sockets to watch (ARES_OPT_SOCK_STATE_CB); we keep
 * one libevent event per socket and one timer for c-ares's own timeouts,
 * and hand readiness back with ares_process_fd. Queries cannot be
 * cancelled one by one in c-ares, so a cancelled query only forgets its
 * caller and its answer is dropped when it comes.
 *
 * resolver_lookup only queues the query and wakes the loop (event_active);
 * everything that can answer (the cache, a refused name, a full table,
 * c-ares itself, which may complete inside ares_query) runs later from
 * that event, so no answer ever reaches a caller inside resolver_lookup.
 *
 * A TXT answer (SPF records) is cached as the text it holds, in an
 * allocation of its own sized to it.
 */
#include "resolver.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hostname.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "xalloc.h"

#define CACHE_MAX_TTL 3600        /* seconds: a bound on what an answer may claim */
#define CACHE_BUCKETS 4096
/* A server that fails (times out, SERVFAIL, refuses) fails again for
 * every decision that asks the same name; remembering it briefly makes an
 * outage cost one timeout per name every few seconds instead of one per
 * decision, and is short enough that nobody waits for a server that is
 * back. */
#define TEMPFAIL_TTL 5
/* Lookups in c-ares at once; past it a lookup fails as temporary instead
 * of queueing without bound behind a server that does not answer. */
#define INFLIGHT_MAX 4096

struct dns_query {
	struct list_node link;        /* on the start queue; then among followers */
	struct dns_query *hnext;      /* in flight: hash chain */
	struct list_node followers;   /* lookups of the same name waiting on this one */
	struct chan *chan;            /* NULL until handed to c-ares */
	double started;
	dns_done_fn done;             /* NULL when cancelled */
	dns_txt_fn txt_done;          /* instead of DONE for TXT lookups */
	void *arg;
	uint16_t type;
	char name[DNS_NAME_MAX + 16];
};

struct sockwatch {
	struct list_node link;         /* on its channel's watches */
	ares_socket_t fd;
	struct event *ev;
};

/* A cached answer: the header of dns_answer and only the records it has. */
struct centry {
	struct centry *hnext;                 /* hash chain */
	struct list_node lru;
	time_t expires;
	uint16_t type;
	enum dns_status status;
	size_t n;
	struct dns_txt *txt;                  /* TXT: the answer up to its text's end */
	char name[DNS_NAME_MAX + 16];
	struct dns_rr rr[];
};

/* One c-ares channel with what drives it. A reload that changes the DNS
 * settings makes a new one; the old one retires once its queries are
 * answered, so no session waits for an answer that will never come. */
struct chan {
	struct list_node link;         /* on retiring, once retired */
	ares_channel ch;
	struct event *timer;
	struct list_node watches;
	unsigned pending;
	char servers[1024];
	int timeout_ms, tries;
};

static struct event_base *base;
static struct event *kick;        /* starts what resolver_lookup queued */
static struct list_node startq = { &startq, &startq };
static unsigned inflight;
/* The queries in c-ares on the current channel, by name and type: a
 * lookup of a name already asked for waits for that answer instead of
 * asking again (during an outage, one timeout per name, not per caller). */
static struct dns_query *flight[CACHE_BUCKETS];
static struct chan *cur;
static struct list_node retiring = { &retiring, &retiring };
static struct centry *buckets[CACHE_BUCKETS];
static struct list_node cache_lru = { &cache_lru, &cache_lru };   /* first: most recently used */
static size_t cache_n, cache_max;

/* ---- cache ---- */

static size_t chash(const char *name, uint16_t type)
{
	size_t h = 1469598103934665603ULL ^ type;
	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ULL;
	return h % CACHE_BUCKETS;
}

static struct centry **cfind(const char *name, uint16_t type)
{
	struct centry **pp = &buckets[chash(name, type)];
	while (*pp && ((*pp)->type != type || strcmp((*pp)->name, name) != 0))
		pp = &(*pp)->hnext;
	return pp;
}

/* N's entry, or NULL. */
static struct centry *centry_of(struct list_node *n)
{
	return n ? LIST_ELEM(n, struct centry, lru) : NULL;
}

static void cremove(struct centry **pp)
{
	struct centry *e = *pp;
	*pp = e->hnext;
	list_del(&e->lru);
	free(e->txt);
	free(e);
	cache_n--;
}

static void cache_clear(void)
{
	for (struct centry *e; (e = centry_of(list_first(&cache_lru)));)
		cremove(cfind(e->name, e->type));
}

/* The bytes of T that hold something: its header and its records' text. */
static size_t txt_size(const struct dns_txt *t)
{
	return offsetof(struct dns_txt, buf) + (t->n ? t->rr[t->n - 1].off + t->rr[t->n - 1].len : 0);
}

/* A's status and TTL; for a TXT lookup, T holds the answer. */
static void cache_put(const char *name, uint16_t type, const struct dns_answer *a,
		      const struct dns_txt *t)
{
	uint32_t ttl = a->status == DNS_TEMPFAIL ? TEMPFAIL_TTL : a->ttl;
	if (ttl == 0 || cache_max == 0)
		return;
	struct centry **pp = cfind(name, type);
	if (*pp)
		cremove(pp);
	struct centry *oldest;
	while (cache_n >= cache_max && (oldest = centry_of(list_last(&cache_lru))))
		cremove(cfind(oldest->name, oldest->type));
	struct centry *e = malloc(sizeof *e + a->n * sizeof e->rr[0]);
	if (!e)
		return;
	e->txt = NULL;
	if (type == DNS_T_TXT && !(e->txt = malloc(txt_size(t)))) {
		free(e);
		return;
	}
	if (e->txt)
		memcpy(e->txt, t, txt_size(t));
	e->expires = time(NULL) + (ttl < CACHE_MAX_TTL ? ttl : CACHE_MAX_TTL);
	e->type = type;
	e->status = a->status;
	e->n = a->n;
	snprintf(e->name, sizeof e->name, "%s", name);
	memcpy(e->rr, a->rr, a->n * sizeof e->rr[0]);
	struct centry **bucket = &buckets[chash(name, type)];
	e->hnext = *bucket;
	*bucket = e;
	list_push_front(&cache_lru, &e->lru);
	cache_n++;
}

/* For a TXT lookup, T gets the answer too. */
static bool cache_get(const char *name, uint16_t type, struct dns_answer *a, struct dns_txt *t)
{
	struct centry **pp = cfind(name, type);
	if (!*pp)
		return false;
	struct centry *e = *pp;
	time_t now = time(NULL);
	if (e->expires <= now) {
		cremove(pp);
		return false;
	}
	list_del(&e->lru);
	list_push_front(&cache_lru, &e->lru);
	a->status = e->status;
	a->type = type;
	a->ttl = (uint32_t)(e->expires - now);
	a->n = e->n;
	a->truncated = false;
	memcpy(a->rr, e->rr, e->n * sizeof e->rr[0]);
	if (e->txt) {
		memcpy(t, e->txt, txt_size(e->txt));
		t->ttl = a->ttl;
	}
	return true;
}

/* ---- c-ares on the loop ---- */

/* When c-ares wants to be woken for its own retries and timeouts. */
static void rearm(struct chan *c)
{
	struct timeval tv, *t = ares_timeout(c->ch, NULL, &tv);
	if (t)
		evtimer_add(c->timer, t);
	else
		evtimer_del(c->timer);
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
	struct chan *c = arg;
	ares_process_fd(c->ch, what & EV_READ ? fd : ARES_SOCKET_BAD,
			what & EV_WRITE ? fd : ARES_SOCKET_BAD);
	rearm(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct chan *c = arg;
	ares_process_fd(c->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	rearm(c);
}

static struct sockwatch *watch_find(struct chan *c, ares_socket_t fd)
{
	struct list_node *n, *tmp;
	LIST_FOR_EACH_SAFE(n, tmp, &c->watches) {
		struct sockwatch *w = LIST_ELEM(n, struct sockwatch, link);
		if (w->fd == fd)
			return w;
	}
	return NULL;
}

static void watch_free(struct sockwatch *w)
{
	list_del(&w->link);
	event_free(w->ev);
	free(w);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct chan *c = data;
	struct sockwatch *w = watch_find(c, fd);
	if (!readable && !writable) {
		if (w)
			watch_free(w);
		return;
	}
	if (!w) {
		w = calloc(1, sizeof *w);
		if (!w)
			return; /* c-ares times the query out; it fails as temporary */
		w->fd = fd;
		list_push_front(&c->watches, &w->link);
	} else {
		event_free(w->ev);
	}
	w->ev = event_new(base, fd, (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0) | EV_PERSIST),
			  on_socket, c);
	if (w->ev)
		event_add(w->ev, NULL);
}

static void chan_free(struct chan *c)
{
	ares_destroy(c->ch);   /* pending queries answer ARES_EDESTRUCTION */
	struct list_node *n;
	while ((n = list_first(&c->watches)))
		watch_free(LIST_ELEM(n, struct sockwatch, link));
	if (c->timer)
		event_free(c->timer);
	free(c);
}

/* A retired channel is destroyed from the loop, never inside its own
 * callback. */
static void reap_retired(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	struct list_node *n, *tmp;
	LIST_FOR_EACH_SAFE(n, tmp, &retiring) {
		struct chan *c = LIST_ELEM(n, struct chan, link);
		if (c->pending == 0) {
			list_del(&c->link);
			chan_free(c);
		}
	}
}

/* A lookup that failed for now, whether the server or our own bounds
 * said so. */
static void log_tempfail(const struct dns_query *q, const char *detail)
{
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "dns");
	ll_str(&l, "name", q->name);
	ll_int(&l, "type", q->type);
	ll_str(&l, "result", "tempfail");
	ll_str(&l, "detail", detail);
	ll_emit(&l);
}

static struct dns_query **flight_find(const char *name, uint16_t type)
{
	struct dns_query **pp = &flight[chash(name, type)];
	while (*pp && ((*pp)->type != type || strcmp((*pp)->name, name) != 0))
		pp = &(*pp)->hnext;
	return pp;
}

static void flight_remove(struct dns_query *q)
{
	struct dns_query **pp = &flight[chash(q->name, q->type)];
	while (*pp && *pp != q)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = q->hnext;
}

static bool live(const struct dns_query *q)
{
	return q->done || q->txt_done;
}

/* Q's answer to its caller, unless cancelled: T for a TXT lookup, else A. */
static void deliver(struct dns_query *q, const struct dns_answer *a, const struct dns_txt *t)
{
	if (q->txt_done)
		q->txt_done(q->arg, t);
	else if (q->done)
		q->done(q->arg, a);
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	struct dns_query *q = arg;
	struct dns_answer a;
	struct dns_txt txt;
	bool parse = abuf && alen > 0 &&
		     (status == ARES_SUCCESS || status == ARES_ENODATA || status == ARES_ENOTFOUND);
	if (parse && q->type == DNS_T_TXT) {
		dnsmsg_parse_txt(abuf, (size_t)alen, &txt);
		memset(&a, 0, offsetof(struct dns_answer, rr));
		a.status = txt.status;
		a.ttl = txt.ttl;
		a.type = q->type;
	} else if (parse) {
		dnsmsg_parse(abuf, (size_t)alen, q->type, &a);
	} else {
		memset(&a, 0, offsetof(struct dns_answer, rr));
		a.status = status == ARES_ENOTFOUND ? DNS_NXDOMAIN
			   : status == ARES_ENODATA ? DNS_NODATA : DNS_TEMPFAIL;
		a.type = q->type;
		memset(&txt, 0, offsetof(struct dns_txt, buf));
		txt.status = a.status;
	}
	metrics_observe(H_DNS, metrics_now() - q->started);
	if (a.status == DNS_TEMPFAIL)
		metrics_add(M_DNS_ERRORS, 1);
	/* Names that were no host names are told once per answer (then it is
	 * cached): why a client has no name, or an MX host no address. */
	long long bad = 0;
	for (size_t i = 0; i < a.n; i++)
		bad += a.rr[i].bad_name;
	if (a.status == DNS_TEMPFAIL) {
		log_tempfail(q, ares_strerror(status));
	} else if (bad && log_enabled(LOG_LVL_INFO)) {
		struct logline l;
		ll_begin(&l, LOG_LVL_INFO, "dns");
		ll_str(&l, "name", q->name);
		ll_int(&l, "type", q->type);
		ll_str(&l, "result", "bad-names");
		ll_int(&l, "ignored", bad);
		ll_emit(&l);
	}
	/* (not when the channel goes away: that is no answer from DNS) */
	if (status != ARES_EDESTRUCTION)
		cache_put(q->name, q->type, &a, &txt);
	struct chan *c = q->chan;
	inflight--;
	flight_remove(q);
	/* Q first, then the followers in the order they came; a callback may
	 * cancel a follower (it only loses its DONE), never free it. */
	struct list_node followers = { &followers, &followers };
	list_splice_back(&followers, &q->followers);
	if (status != ARES_EDESTRUCTION)
		deliver(q, &a, &txt);
	free(q);
	struct list_node *n;
	while ((n = list_first(&followers))) {
		list_del(n);
		struct dns_query *f = LIST_ELEM(n, struct dns_query, link);
		if (status != ARES_EDESTRUCTION)
			deliver(f, &a, &txt);
		free(f);
	}
	if (--c->pending == 0 && c != cur && status != ARES_EDESTRUCTION) {
		struct timeval now = { 0, 0 };
		event_base_once(base, -1, EV_TIMEOUT, reap_retired, NULL, &now);
	}
}

/* ---- starting queries, from the loop ---- */

static void answer_now(struct dns_query *q, enum dns_status status)
{
	if (q->type == DNS_T_TXT) {
		struct dns_txt t;
		memset(&t, 0, offsetof(struct dns_txt, buf));
		t.status = status;
		q->txt_done(q->arg, &t);
		return;
	}
	struct dns_answer a;
	memset(&a, 0, offsetof(struct dns_answer, rr));
	a.type = q->type;
	a.status = status;
	q->done(q->arg, &a);
}

static void start(struct dns_query *q)
{
	struct dns_answer a;
	struct dns_txt txt;
	struct dns_query **leader = NULL;
	if (!live(q)) {
		/* cancelled while queued */
	} else if (!hostname_valid(q->name, strlen(q->name))) {
		/* No such host can exist; c-ares would refuse it or send
		 * something other than what was asked. */
		answer_now(q, DNS_NXDOMAIN);
	} else if (cache_get(q->name, q->type, &a, &txt)) {
		deliver(q, &a, &txt);
	} else if (*(leader = flight_find(q->name, q->type))) {
		/* the followers keep their order: appended at the end */
		list_push_back(&(*leader)->followers, &q->link);
		return;
	} else if (!cur || inflight >= INFLIGHT_MAX) {
		metrics_add(M_DNS_ERRORS, 1);
		log_tempfail(q, cur ? "too many lookups under way" : "no resolver");
		answer_now(q, DNS_TEMPFAIL);
	} else {
		q->chan = cur;
		q->started = metrics_now();
		cur->pending++;
		inflight++;
		q->hnext = NULL;
		*leader = q;
		/* may answer before it returns (on_answer frees Q): we are on
		 * the loop here, not inside the caller's resolver_lookup */
		ares_query(cur->ch, q->name, ns_c_in, q->type, on_answer, q);
		rearm(cur);
		return;
	}
	free(q);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	/* Callbacks run below may queue more; those wait for the next kick. */
	struct list_node batch = { &batch, &batch };
	list_splice_back(&batch, &startq);
	struct list_node *n;
	while ((n = list_first(&batch))) {
		list_del(n);
		start(LIST_ELEM(n, struct dns_query, link));
	}
}

/* ---- interface ---- */

/* A new query, queued to start from the loop. */
static struct dns_query *query_new(const char *name, uint16_t type, void *arg)
{
	struct dns_query *q = xcalloc(1, sizeof *q);
	size_t n = strlen(name);
	if (n > 0 && name[n - 1] == '.')
		n--;
	/* too long to be a name: left "" for start() to refuse */
	if (n < sizeof q->name)
		for (size_t i = 0; i < n; i++)
			q->name[i] = (char)tolower((unsigned char)name[i]);
	q->arg = arg;
	q->type = type;
	list_init(&q->followers);
	list_push_back(&startq, &q->link);
	event_active(kick, EV_TIMEOUT, 0);
	return q;
}

struct dns_query *resolver_lookup(const char *name, uint16_t type, dns_done_fn done, void *arg)
{
	struct dns_query *q = query_new(name, type, arg);
	q->done = done;
	return q;
}

struct dns_query *resolver_lookup_txt(const char *name, dns_txt_fn done, void *arg)
{
	struct dns_query *q = query_new(name, DNS_T_TXT, arg);
	q->txt_done = done;
	return q;
}

struct dns_query *resolver_lookup_ptr(const struct ipaddr *addr, dns_done_fn done, void *arg)
{
	char name[80];
	size_t o = 0;
	static const char hex[] = "0123456789abcdef";
	if (addr->family == AF_INET) {
		snprintf(name, sizeof name, "%u.%u.%u.%u.in-addr.arpa", addr->b[3], addr->b[2],
			 addr->b[1], addr->b[0]);
	} else {
		for (int i = 15; i >= 0; i--) {
			name[o++] = hex[addr->b[i] & 15];
			name[o++] = '.';
			name[o++] = hex[addr->b[i] >> 4];
			name[o++] = '.';
		}
		snprintf(name + o, sizeof name - o, "ip6.arpa");
	}
	return resolver_lookup(name, DNS_T_PTR, done, arg);
}

void resolver_cancel(struct dns_query *q)
{
	if (q) {
		q->done = NULL;
		q->txt_done = NULL;
	}
}

static struct chan *chan_new(const struct gg_config *cfg)
{
	struct chan *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	list_init(&c->link);
	list_init(&c->watches);
	snprintf(c->servers, sizeof c->servers, "%s", cfg->dns.servers);
	c->timeout_ms = cfg->dns.timeout_ms;
	c->tries = cfg->dns.tries;
	struct ares_options o = {
		.timeout = cfg->dns.timeout_ms,
		.tries = cfg->dns.tries,
		.sock_state_cb = sock_state,
		.sock_state_cb_data = c,
	};
	int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
	int rc = ares_init_options(&c->ch, &o, mask);
	if (rc != ARES_SUCCESS) {
		log_msg(LOG_LVL_ERROR, "dns", ares_strerror(rc));
		free(c);
		return NULL;
	}
	if (cfg->dns.servers[0] && (rc = ares_set_servers_ports_csv(c->ch, cfg->dns.servers)) != ARES_SUCCESS) {
		log_msg(LOG_LVL_ERROR, "dns", ares_strerror(rc));
		ares_destroy(c->ch);
		free(c);
		return NULL;
	}
	c->timer = evtimer_new(base, on_timer, c);
	if (!c->timer) {
		ares_destroy(c->ch);
		free(c);
		return NULL;
	}
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "dns");
	ll_str(&l, "servers", cfg->dns.servers[0] ? cfg->dns.servers : "/etc/resolv.conf");
	ll_int(&l, "timeout_ms", cfg->dns.timeout_ms);
	ll_int(&l, "tries", cfg->dns.tries);
	ll_emit(&l);
	return c;
}

int resolver_open(struct event_base *b, const struct gg_config *cfg)
{
	base = b;
	kick = event_new(base, -1, 0, on_kick, NULL);
	if (!kick)
		return -1;
	cache_max = (size_t)cfg->dns.cache_size;
	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
		log_msg(LOG_LVL_ERROR, "dns", "c-ares initialisation failed");
		return -1;
	}
	cur = chan_new(cfg);
	return cur ? 0 : -1;
}

void resolver_reload(const struct gg_config *cfg)
{
	cache_max = (size_t)cfg->dns.cache_size;
	if (!cur || (strcmp(cur->servers, cfg->dns.servers) == 0 &&
		     cur->timeout_ms == cfg->dns.timeout_ms && cur->tries == cfg->dns.tries))
		return;
	struct chan *c = chan_new(cfg);
	if (!c) {
		log_msg(LOG_LVL_ERROR, "dns", "new DNS settings not applied; keeping the old ones");
		return;
	}
	struct chan *old = cur;
	cur = c;
	/* Answers learnt from other servers are not these servers' answers;
	 * lookups under way there are not joined any more (they still answer
	 * those waiting on them). */
	cache_clear();
	for (size_t i = 0; i < CACHE_BUCKETS; i++)
		while (flight[i]) {
			struct dns_query *q = flight[i];
			flight[i] = q->hnext;
			q->hnext = NULL;
		}
	list_push_front(&retiring, &old->link);
	reap_retired(-1, 0, NULL);
}

void resolver_close(void)
{
	/* Queued queries end unanswered, as c-ares's do below. */
	struct list_node *n;
	while ((n = list_first(&startq))) {
		list_del(n);
		free(LIST_ELEM(n, struct dns_query, link));
	}
	if (kick)
		event_free(kick);
	kick = NULL;
	if (!cur)
		return;
	chan_free(cur);
	cur = NULL;
	while ((n = list_first(&retiring))) {
		list_del(n);
		chan_free(LIST_ELEM(n, struct chan, link));
	}
	cache_clear();
	ares_library_cleanup();
}
