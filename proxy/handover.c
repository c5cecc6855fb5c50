#include "handover.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "mxset.h"

#define PROBES_MAX 64              /* per round */
#define TRACKED_MAX 256            /* (domain, primary) pairs remembered */

/* P_SELF: this host is among the domain's best-preference MX hosts (not
 * probed: a primary, not a backup). */
enum pstate { P_UNKNOWN, P_DOWN, P_UP, P_SELF };

/* What we last saw of one primary of one domain. */
struct tracked {
	char domain[DNS_NAME_MAX];
	char host[DNS_NAME_MAX];
	enum pstate state;
};

struct probe {
	struct list_node link;       /* on probes */
	struct bufferevent *bev;
	size_t tracked;
	bool up;
};

struct round_req {
	struct list_node link;       /* on rounds */
	struct mxset_req *mxr;
	size_t domain;
};

static struct event_base *base;
static struct gg_config *cfg;
static struct event *timer;
static bool hands_over;            /* this process logs and sends the ETRN */
static struct tracked tracked[TRACKED_MAX];
static size_t ntracked;
static struct list_node probes = { &probes, &probes };
static struct list_node rounds = { &rounds, &rounds };
static int probes_running;

static size_t track(const char *domain, const char *host)
{
	for (size_t i = 0; i < ntracked; i++)
		if (strcmp(tracked[i].domain, domain) == 0 && strcmp(tracked[i].host, host) == 0)
			return i;
	if (ntracked == TRACKED_MAX)
		return TRACKED_MAX;
	struct tracked *t = &tracked[ntracked];
	memcpy(t->domain, domain, strnlen(domain, DNS_NAME_MAX - 1) + 1);
	t->domain[DNS_NAME_MAX - 1] = 0;
	memcpy(t->host, host, strnlen(host, DNS_NAME_MAX - 1) + 1);
	t->host[DNS_NAME_MAX - 1] = 0;
	t->state = P_UNKNOWN;
	return ntracked++;
}

/* ---- the ETRN to our backend ---- */

struct flush {
	struct backend *be;
	size_t tracked;
};

static void log_handover(size_t i, const char *result, const char *detail)
{
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "handover");
	ll_str(&l, "domain", tracked[i].domain);
	ll_str(&l, "primary", tracked[i].host);
	ll_str(&l, "result", result);
	if (detail)
		ll_str(&l, "reply", detail);
	ll_emit(&l);
}

static void flush_replied(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	struct flush *f = arg;
	if (st != BE_OK) {
		log_handover(f->tracked, "backend-unavailable", NULL);
		metrics_add(M_HANDOVER_FAILURES, 1);
	} else {
		char text[256];
		size_t n = r->len < sizeof text - 1 ? r->len : sizeof text - 1;
		memcpy(text, r->text, n);
		while (n > 0 && (text[n - 1] == '\r' || text[n - 1] == '\n'))
			n--;
		text[n] = 0;
		log_handover(f->tracked, r->code / 100 == 2 ? "flushed" : "refused", text);
		metrics_add(M_HANDOVERS, 1);
		if (r->code / 100 != 2)
			metrics_add(M_HANDOVER_FAILURES, 1);
	}
	backend_free(f->be);
	free(f);
}

static void flush_opened(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	struct flush *f = arg;
	if (st != BE_OK) {
		flush_replied(f, st, r);
		return;
	}
	char line[DNS_NAME_MAX + 8];
	snprintf(line, sizeof line, "ETRN %s", tracked[f->tracked].domain);
	backend_command(f->be, line, strlen(line), flush_replied, f);
}

static void flush_domain(size_t i)
{
	struct flush *f = calloc(1, sizeof *f);
	if (!f || !(f->be = backend_new(base, cfg, 0))) {
		free(f);
		log_handover(i, "failed", "out of memory");
		metrics_add(M_HANDOVER_FAILURES, 1);
		return;
	}
	f->tracked = i;
	backend_open(f->be, NULL, flush_opened, f);
}

/* ---- probes ---- */

/* The one place a probe leaves the list, so that probes_running always
 * counts what the list holds (a drifting count stops probing for good). */
static void probe_release(struct probe *p)
{
	list_del(&p->link);
	probes_running--;
	bufferevent_free(p->bev);
}

static void probe_done(struct probe *p)
{
	probe_release(p);
	struct tracked *t = &tracked[p->tracked];
	enum pstate was = t->state;
	t->state = p->up ? P_UP : P_DOWN;
	free(p);
	if (!hands_over || was == t->state)
		return;
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "probe");
	ll_str(&l, "domain", t->domain);
	ll_str(&l, "primary", t->host);
	ll_str(&l, "state", t->state == P_UP ? "up" : "down");
	ll_emit(&l);
	/* Only a primary seen down and now up: at start-up Postfix's queue
	 * runs on its own schedule anyway. */
	if (was == P_DOWN && t->state == P_UP)
		flush_domain((size_t)(t - tracked));
}

static void probe_read(struct bufferevent *bev, void *arg)
{
	struct probe *p = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
	if (!line) {
		if (evbuffer_get_length(in) > 1024)
			probe_done(p);
		return;
	}
	/* The first line of the banner is enough to know it is up. */
	p->up = n >= 3 && strncmp(line, "220", 3) == 0;
	free(line);
	/* A polite QUIT on a socket whose buffer is empty: one small send that
	 * cannot block; the connection closes right after. */
	if (send(bufferevent_getfd(bev), "QUIT\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* the primary closed first; nothing to tell it */
	}
	probe_done(p);
}

static void probe_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & BEV_EVENT_CONNECTED)
		return;
	probe_done(arg);
}

static void probe_start(size_t i, const struct ipaddr *a)
{
	if (probes_running >= PROBES_MAX)
		return;
	struct probe *p = calloc(1, sizeof *p);
	if (!p)
		return;
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	if (a->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)cfg->handover.probe_port);
		memcpy(&sin->sin_addr, a->b, 4);
		len = sizeof *sin;
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)cfg->handover.probe_port);
		memcpy(&sin6->sin6_addr, a->b, 16);
		len = sizeof *sin6;
	}
	p->tracked = i;
	p->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!p->bev) {
		free(p);
		return;
	}
	list_push_front(&probes, &p->link);
	probes_running++;
	struct timeval tv = { cfg->handover.probe_timeout, 0 };
	bufferevent_set_timeouts(p->bev, &tv, &tv);
	bufferevent_setcb(p->bev, probe_read, NULL, probe_event, p);
	bufferevent_enable(p->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(p->bev, (struct sockaddr *)&ss, (int)len) < 0)
		probe_done(p);
}

static void on_mx(void *arg, const struct mxset *m)
{
	struct round_req *r = arg;
	list_del(&r->link);
	const char *domain = cfg->handover.domains.names.v[r->domain];
	free(r);
	if (m->status != DNS_OK || m->n == 0)
		return;
	uint16_t best = m->host[0].pref;
	for (size_t i = 0; i < m->n && m->host[i].pref == best; i++) {
		const struct mx_host *h = &m->host[i];
		bool me = false;
		for (size_t k = 0; k < h->naddr; k++)
			me |= netlist_match(&cfg->my_addresses, &h->addr[k]);
		if (me) {
			size_t t = track(domain, h->name);
			if (t < TRACKED_MAX)
				tracked[t].state = P_SELF;
			continue;
		}
		if (h->naddr == 0)
			continue;
		size_t t = track(domain, h->name);
		if (t < TRACKED_MAX)
			probe_start(t, &h->addr[0]);
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (!list_empty(&rounds) || !list_empty(&probes))
		return; /* the last round is still going: a slow network, skip one */
	for (size_t i = 0; i < cfg->handover.domains.names.n; i++) {
		struct round_req *r = calloc(1, sizeof *r);
		if (!r)
			return;
		r->domain = i;
		list_push_front(&rounds, &r->link);
		r->mxr = mxset_resolve(cfg->handover.domains.names.v[i], on_mx, r);
	}
}

bool handover_primary_up(const char *domain)
{
	bool up = false;
	for (size_t i = 0; i < ntracked; i++) {
		if (strcasecmp(tracked[i].domain, domain) != 0)
			continue;
		if (tracked[i].state == P_SELF)
			return false;
		up |= tracked[i].state == P_UP;
	}
	return up;
}

void handover_start(struct event_base *b, struct gg_config *c, bool hand_over)
{
	if (c->handover.probe_interval == 0 || c->handover.domains.names.n == 0)
		return;
	base = b;
	cfg = gg_config_ref(c);
	hands_over = hand_over;
	timer = event_new(base, -1, EV_PERSIST, on_timer, NULL);
	struct timeval tv = { c->handover.probe_interval, 0 };
	event_add(timer, &tv);
	if (!hands_over) {
		on_timer(-1, 0, NULL);
		return;
	}
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "handover");
	ll_str(&l, "result", "watching");
	ll_int(&l, "domains", (long long)c->handover.domains.names.n);
	ll_int(&l, "interval", c->handover.probe_interval);
	ll_emit(&l);
	on_timer(-1, 0, NULL);
}

void handover_stop(void)
{
	if (!timer)
		return;
	event_free(timer);
	timer = NULL;
	struct list_node *n, *tmp;
	LIST_FOR_EACH_SAFE(n, tmp, &rounds) {
		struct round_req *r = LIST_ELEM(n, struct round_req, link);
		list_del(&r->link);
		mxset_cancel(r->mxr);
		free(r);
	}
	LIST_FOR_EACH_SAFE(n, tmp, &probes) {
		struct probe *p = LIST_ELEM(n, struct probe, link);
		probe_release(p);
		free(p);
	}
	gg_config_unref(cfg);
}
