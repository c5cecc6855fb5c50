#include "mxset.h"

#include <stdlib.h>
#include <string.h>

#include "resolver.h"
#include "xalloc.h"

/* Names one address lookup: which host, which family. */
struct hostref {
	struct mxset_req *r;
	size_t host;
	int which;                     /* 0 A, 1 AAAA */
};

struct mxset_req {
	mxset_fn done;
	void *arg;
	struct mxset m;
	struct dns_query *mxq;
	struct dns_query *q[MX_HOSTS_MAX][2];
	struct hostref ref[MX_HOSTS_MAX][2];
	int pending;                   /* answers still to come */
};

/* Answers come only from the loop, so R is never on the stack of a call
 * that started one of its lookups when it ends here. */
static void finish_if_done(struct mxset_req *r)
{
	if (r->pending > 0)
		return;
	mxset_fn done = r->done;
	void *arg = r->arg;
	struct mxset m = r->m;
	free(r);
	done(arg, &m);
}

static void on_addr(void *arg, const struct dns_answer *a)
{
	struct hostref *ref = arg;
	struct mxset_req *r = ref->r;
	struct mx_host *h = &r->m.host[ref->host];
	r->q[ref->host][ref->which] = NULL;
	if (a->status == DNS_TEMPFAIL)
		r->m.tempfail = true;
	for (size_t k = 0; a->status == DNS_OK && k < a->n && h->naddr < MX_ADDRS_MAX; k++)
		h->addr[h->naddr++] = a->rr[k].addr;
	r->pending--;
	finish_if_done(r);
}

static int by_pref(const void *x, const void *y)
{
	const struct dns_rr *a = x, *b = y;
	return (int)a->pref - (int)b->pref;
}

static void on_mx(void *arg, const struct dns_answer *a)
{
	static const uint16_t types[2] = { DNS_T_A, DNS_T_AAAA };
	struct mxset_req *r = arg;
	r->mxq = NULL;
	r->m.status = a->status;
	if (a->status == DNS_TEMPFAIL)
		r->m.tempfail = true;
	if (a->status == DNS_OK) {
		struct dns_rr rr[DNS_MAX_RR];
		size_t n = a->n;
		memcpy(rr, a->rr, n * sizeof rr[0]);
		qsort(rr, n, sizeof rr[0], by_pref);
		r->m.null_mx = dns_null_mx(a);
		/* An exchange that is no host name stays, with no address: its
		 * preference still says who the primaries are. */
		for (size_t i = 0; i < n && r->m.n < MX_HOSTS_MAX && !r->m.null_mx; i++) {
			if (!rr[i].name[0] && !rr[i].bad_name)
				continue;
			struct mx_host *h = &r->m.host[r->m.n++];
			h->pref = rr[i].pref;
			memcpy(h->name, rr[i].name, sizeof h->name);
		}
		for (size_t i = 0; i < r->m.n; i++)
			for (int w = 0; w < 2 && r->m.host[i].name[0]; w++) {
				r->ref[i][w] = (struct hostref){ r, i, w };
				r->pending++;
				r->q[i][w] = resolver_lookup(r->m.host[i].name, types[w], on_addr,
							     &r->ref[i][w]);
			}
	}
	r->pending--;
	finish_if_done(r);
}

struct mxset_req *mxset_resolve(const char *domain, mxset_fn done, void *arg)
{
	struct mxset_req *r = xcalloc(1, sizeof *r);
	r->done = done;
	r->arg = arg;
	r->pending = 1;
	r->mxq = resolver_lookup(domain, DNS_T_MX, on_mx, r);
	return r;
}

void mxset_cancel(struct mxset_req *r)
{
	if (!r)
		return;
	resolver_cancel(r->mxq);
	for (size_t i = 0; i < MX_HOSTS_MAX; i++)
		for (int w = 0; w < 2; w++)
			resolver_cancel(r->q[i][w]);
	free(r);
}
