#include "fcrdns.h"

#include <stdlib.h>
#include <string.h>

#include "resolver.h"
#include "xalloc.h"

struct nameref {
	struct fcrdns_req *r;
	size_t i;
	int which;
};

struct fcrdns_req {
	fcrdns_fn done;
	void *arg;
	struct ipaddr client;
	const struct domainlist *patterns;
	bool any;
	struct dns_query *ptrq;
	struct dns_query *q[FCRDNS_NAMES_MAX][2];
	struct nameref ref[FCRDNS_NAMES_MAX][2];
	char name[FCRDNS_NAMES_MAX][DNS_NAME_MAX];
	size_t nnames;
	size_t nlistable;         /* name[0..nlistable) match the patterns */
	int pending;              /* answers still to come */
	bool tempfail;
	bool had_ptr;             /* a PTR that is a host name, looked up or not */
	int matched;              /* index of the first confirmed name, or -1 */
	int listed;               /* ... of the first confirmed name that matches, or -1 */
};

/* Answers come only from the loop, so R is never on the stack of a call
 * that started one of its lookups when it ends here. */
static void finish_if_done(struct fcrdns_req *r)
{
	/* Nothing left to learn: a listed name is confirmed, or a name is
	 * and none could be listed. */
	bool settled = r->listed >= 0 || (r->matched >= 0 && r->nlistable == 0);
	if (r->pending > 0 && !settled)
		return;
	/* Cancel what is still out. */
	for (size_t i = 0; i < FCRDNS_NAMES_MAX; i++)
		for (int w = 0; w < 2; w++)
			resolver_cancel(r->q[i][w]);
	char name[DNS_NAME_MAX] = "", listed[DNS_NAME_MAX] = "";
	enum fcrdns_result res = r->matched >= 0 ? FCRDNS_MATCH
				 : r->tempfail	 ? FCRDNS_TEMPFAIL
				 : r->had_ptr	 ? FCRDNS_NO_MATCH : FCRDNS_NO_PTR;
	if (r->matched >= 0)
		memcpy(name, r->name[r->matched], sizeof name);
	if (r->listed >= 0)
		memcpy(listed, r->name[r->listed], sizeof listed);
	fcrdns_fn done = r->done;
	void *arg = r->arg;
	free(r);
	done(arg, res, name, listed);
}

static void on_forward(void *arg, const struct dns_answer *a)
{
	struct nameref *ref = arg;
	struct fcrdns_req *r = ref->r;
	r->q[ref->i][ref->which] = NULL;
	r->pending--;
	if (a->status == DNS_TEMPFAIL)
		r->tempfail = true;
	for (size_t k = 0; a->status == DNS_OK && k < a->n; k++) {
		const struct ipaddr *x = &a->rr[k].addr;
		if (x->family == r->client.family &&
		    memcmp(x->b, r->client.b, x->family == AF_INET ? 4 : 16) == 0) {
			if (r->matched < 0)
				r->matched = (int)ref->i;
			if (ref->i < r->nlistable && r->listed < 0)
				r->listed = (int)ref->i;
			break;
		}
	}
	finish_if_done(r);
}

static void on_ptr(void *arg, const struct dns_answer *a)
{
	static const uint16_t types[2] = { DNS_T_A, DNS_T_AAAA };
	struct fcrdns_req *r = arg;
	r->ptrq = NULL;
	if (a->status == DNS_TEMPFAIL)
		r->tempfail = true;
	/* A PTR that is no host name is as good as none (dnsmsg left it ""). */
	for (int listable = 1; listable >= 0; listable--) {
		if (!listable && !r->any)
			break;
		for (size_t k = 0; a->status == DNS_OK && k < a->n && r->nnames < FCRDNS_NAMES_MAX; k++) {
			const char *n = a->rr[k].name;
			r->had_ptr |= n[0] != 0;
			bool match = r->patterns && domainlist_match(r->patterns, n, strlen(n));
			if (n[0] && match == (listable == 1))
				memcpy(r->name[r->nnames++], n, DNS_NAME_MAX);
		}
		if (listable)
			r->nlistable = r->nnames;
	}
	for (size_t i = 0; i < r->nnames; i++)
		for (int w = 0; w < 2; w++) {
			r->ref[i][w] = (struct nameref){ r, i, w };
			r->pending++;
			r->q[i][w] = resolver_lookup(r->name[i], types[w], on_forward, &r->ref[i][w]);
		}
	r->pending--;
	finish_if_done(r);
}

struct fcrdns_req *fcrdns_verify(const struct ipaddr *client, const struct domainlist *patterns,
				 bool any, fcrdns_fn done, void *arg)
{
	struct fcrdns_req *r = xcalloc(1, sizeof *r);
	r->done = done;
	r->arg = arg;
	r->client = *client;
	r->patterns = patterns;
	r->any = any;
	r->matched = -1;
	r->listed = -1;
	r->pending = 1;
	r->ptrq = resolver_lookup_ptr(client, on_ptr, r);
	return r;
}

void fcrdns_cancel(struct fcrdns_req *r)
{
	if (!r)
		return;
	resolver_cancel(r->ptrq);
	for (size_t i = 0; i < FCRDNS_NAMES_MAX; i++)
		for (int w = 0; w < 2; w++)
			resolver_cancel(r->q[i][w]);
	free(r);
}
