#include "spf_eval.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "spf_macro.h"

/* What the evaluation waits for. */
enum { W_NONE, W_RECORD, W_A, W_EXISTS, W_MX, W_MX_ADDR, W_PTR, W_PTR_ADDR, W_EXP,
       W_P_PTR, W_P_ADDR };

/* What to go on with once %{p} is known. */
enum { P_THEN_TERM, P_THEN_EXPLAIN, P_THEN_EXP_TEXT };

/* A macro expansion may be longer than a name: it is cut down from the
 * left to 253 bytes afterwards (RFC 7208 section 7.3). */
#define EXPAND_MAX 1024

static struct spf_frame *top(struct spf_eval *e)
{
	return &e->frame[e->depth];
}

static void copy(char *dst, size_t cap, const char *src, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* A name we may ask for: 1..253 bytes of labels of 1..63 bytes. */
static bool name_ok(const char *s)
{
	size_t len = strlen(s), label = 0;
	if (len == 0 || len > DNS_NAME_MAX - 1)
		return false;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == '.') {
			if (label == 0 || label > 63)
				return false;
			label = 0;
		} else {
			label++;
		}
	}
	return true;
}

static void env_of(struct spf_eval *e, const char *domain, struct spf_macro_env *env)
{
	memset(env, 0, sizeof *env);
	env->local = e->local;
	env->sender_domain = e->sender_domain;
	env->domain = domain;
	env->ip = &e->in.ip;
	env->helo = e->helo;
	env->receiver = e->receiver[0] ? e->receiver : NULL;
	env->ptr_name = e->ptr_name[0] ? e->ptr_name : NULL;
	env->now = e->in.now;
}

static void ask(struct spf_eval *e, const char *name, uint16_t type, int wait);
static bool expand_name(struct spf_eval *e, const char *spec, size_t len, char *out);
static void frame_done(struct spf_eval *e, enum spf_result r, const char *why);

static bool narrow(const struct spf_eval *e)
{
	const struct spf_outcome *o = &e->out;
	bool v4 = e->in.ip.family == AF_INET;
	switch (o->kind) {
	case SPF_IP4: case SPF_IP6: case SPF_A: case SPF_MX:
		return o->prefix >= (v4 ? e->in.max_prefix4 : e->in.max_prefix6);
	case SPF_PTR:
		return true;
	case SPF_EXISTS:
		/* only a name made of the address answers for one address */
		return strstr(o->mechanism, "%{i") || strstr(o->mechanism, "%{I");
	default:
		return false;
	}
}

static void finish(struct spf_eval *e)
{
	e->done = true;
	e->wait = W_NONE;
	e->out.narrow_pass = e->out.r == SPF_PASS && narrow(e);
}

/* Whether S uses %{p}, which needs lookups of its own first. */
static bool uses_p(const char *s, size_t len)
{
	for (size_t i = 0; i + 2 < len; i++)
		if (s[i] == '%' && s[i + 1] == '{' && (s[i + 2] == 'p' || s[i + 2] == 'P'))
			return true;
	return false;
}

static void start_p(struct spf_eval *e, int then);

/* For a fail, the explanation (RFC 7208 section 6.2), if any. */
static void explain(struct spf_eval *e)
{
	struct spf_frame *f = top(e);
	if (e->out.r != SPF_FAIL || !f->exp.spec) {
		finish(e);
		return;
	}
	if (!e->p_done && uses_p(f->exp.spec, f->exp.spec_len)) {
		start_p(e, P_THEN_EXPLAIN);
		return;
	}
	if (expand_name(e, f->exp.spec, f->exp.spec_len, e->target) && name_ok(e->target))
		ask(e, e->target, DNS_T_TXT, W_EXP);
	else
		finish(e);
}

/* The explanation's text, fetched, expanded. */
static void explain_text(struct spf_eval *e)
{
	struct spf_macro_env env;
	env_of(e, top(e)->domain, &env);
	if (!spf_macro_expand(e->exp_text, e->exp_len, true, &env, e->out.explanation,
			      sizeof e->out.explanation))
		e->out.explanation[0] = '\0';
	finish(e);
}

/* The result of the outermost record. */
static void final(struct spf_eval *e, enum spf_result r, const char *why)
{
	e->out.r = r;
	e->out.why = why;
	explain(e);
}

static void ask(struct spf_eval *e, const char *name, uint16_t type, int wait)
{
	unsigned budget = e->in.budget ? e->in.budget : SPF_BUDGET_DEFAULT;
	if (e->out.lookups >= budget) {
		/* after the result, only the explanation is lost */
		if (wait == W_EXP || ((wait == W_P_PTR || wait == W_P_ADDR) && e->p_then != P_THEN_TERM))
			finish(e);
		else
			frame_done(e, SPF_PERMERROR, "lookup budget spent");
		return;
	}
	e->out.lookups++;
	copy(e->q.name, sizeof e->q.name, name, strlen(name));
	e->q.type = type;
	e->wait = wait;
}

/* Starts the evaluation of DOMAIN's record in the top frame. */
static void start_frame(struct spf_eval *e, const char *domain, bool redirected)
{
	struct spf_frame *f = top(e);
	copy(f->domain, sizeof f->domain, domain, strlen(domain));
	f->redirected = redirected;
	f->rec = e->records;
	f->len = f->pos = 0;
	memset(&f->exp, 0, sizeof f->exp);
	memset(&f->redirect, 0, sizeof f->redirect);
	/* RFC 7208 section 4.3: a malformed or single-label domain has no
	 * record */
	if (!name_ok(domain) || !strchr(domain, '.')) {
		frame_done(e, SPF_NONE, "malformed domain");
		return;
	}
	ask(e, domain, DNS_T_TXT, W_RECORD);
}

static void matched(struct spf_eval *e, const struct spf_term *t, unsigned prefix)
{
	struct spf_frame *f = top(e);
	if (t->kind != SPF_INCLUDE) {
		e->out.kind = t->kind;
		e->out.prefix = prefix;
		copy(e->out.domain, sizeof e->out.domain, f->domain, strlen(f->domain));
		copy(e->out.mechanism, sizeof e->out.mechanism, t->text, t->text_len);
	}
	frame_done(e, t->qual, NULL);
}

/* The result R of the top frame: the answer, or what its include gives. */
static void frame_done(struct spf_eval *e, enum spf_result r, const char *why)
{
	e->wait = W_NONE;
	if (r == SPF_NONE && top(e)->redirected) {
		r = SPF_PERMERROR;
		why = "redirect to a domain without SPF record";
	}
	if (e->depth == 0) {
		final(e, r, why);
		return;
	}
	e->depth--;
	struct spf_frame *f = top(e);
	switch (r) {
	case SPF_PASS:
		matched(e, &f->cur, 0);
		return;
	case SPF_FAIL: case SPF_SOFTFAIL: case SPF_NEUTRAL:
		return;   /* no match: on with the next term */
	case SPF_TEMPERROR:
		frame_done(e, r, why);
		return;
	case SPF_NONE:
		why = "include of a domain without SPF record";
		/* fall through */
	case SPF_PERMERROR:
		frame_done(e, SPF_PERMERROR, why);
		return;
	}
}

static bool count_dns_term(struct spf_eval *e)
{
	if (++e->dns_terms <= SPF_DNS_TERMS_MAX)
		return true;
	frame_done(e, SPF_PERMERROR, "more than 10 DNS lookups");
	return false;
}

/* A lookup that found nothing: past two, permerror. */
static bool count_void(struct spf_eval *e)
{
	if (++e->voids <= SPF_VOID_MAX)
		return true;
	frame_done(e, SPF_PERMERROR, "more than 2 void lookups");
	return false;
}

/* SPEC expanded as a name into OUT (DNS_NAME_MAX bytes): without a
 * trailing dot, cut from the left to 253 bytes (RFC 7208 section 7.3). */
static bool expand_name(struct spf_eval *e, const char *spec, size_t len, char *out)
{
	char buf[EXPAND_MAX];
	struct spf_macro_env env;
	env_of(e, top(e)->domain, &env);
	if (!spf_macro_expand(spec, len, false, &env, buf, sizeof buf))
		return false;
	size_t n = strlen(buf);
	if (n > 0 && buf[n - 1] == '.')
		buf[--n] = '\0';
	const char *s = buf;
	while (n > DNS_NAME_MAX - 1) {
		const char *dot = strchr(s, '.');
		if (!dot)
			break;
		n -= (size_t)(dot + 1 - s);
		s = dot + 1;
	}
	copy(out, DNS_NAME_MAX, s, n);
	return true;
}

/* A term's target name into e->target: its domain-spec expanded, or the
 * current domain. */
static bool target(struct spf_eval *e, const char *spec, size_t len)
{
	struct spf_frame *f = top(e);
	if (!spec) {
		copy(e->target, sizeof e->target, f->domain, strlen(f->domain));
		return true;
	}
	if (expand_name(e, spec, len, e->target))
		return true;
	frame_done(e, SPF_PERMERROR, "macro expansion failed");
	return false;
}

static uint16_t addr_type(const struct spf_eval *e)
{
	return e->in.ip.family == AF_INET ? DNS_T_A : DNS_T_AAAA;
}

static unsigned cidr_of(const struct spf_eval *e, const struct spf_term *t)
{
	return e->in.ip.family == AF_INET ? t->cidr4 : t->cidr6;
}

static bool in_net(const struct ipaddr *ip, const struct ipaddr *net, unsigned prefix)
{
	if (ip->family != net->family)
		return false;
	struct ipaddr a = *ip, b = *net;
	ipaddr_mask(&a, prefix);
	ipaddr_mask(&b, prefix);
	return memcmp(a.b, b.b, sizeof a.b) == 0;
}

/* Looks NAME up, or answers "no such name" for one no server can have. */
static void lookup(struct spf_eval *e, const char *name, uint16_t type, int wait)
{
	if (name_ok(name)) {
		ask(e, name, type, wait);
		return;
	}
	struct dns_answer a;
	memset(&a, 0, offsetof(struct dns_answer, rr));
	a.status = DNS_NXDOMAIN;
	a.type = type;
	e->wait = wait;
	spf_eval_feed(e, &a);
}

static void ptr_query(const struct ipaddr *ip, char *name, size_t cap);
static void p_answer(struct spf_eval *e, int wait, const struct dns_answer *a);
static bool has_addr(const struct spf_eval *e, const struct dns_answer *a, unsigned prefix);

static void next_term(struct spf_eval *e)
{
	struct spf_frame *f = top(e);
	struct spf_term *t = &f->cur;
	int rc = spf_term_next(f->rec, f->len, &f->pos, t);
	if (rc < 0) {
		frame_done(e, SPF_PERMERROR, "syntax error");
		return;
	}
	if (rc == 0) {
		if (!f->redirect.spec) {
			frame_done(e, SPF_NEUTRAL, NULL);
			return;
		}
		if (!e->p_done && uses_p(f->redirect.spec, f->redirect.spec_len)) {
			start_p(e, P_THEN_TERM);   /* then here again */
			return;
		}
		if (count_dns_term(e) && target(e, f->redirect.spec, f->redirect.spec_len))
			start_frame(e, e->target, true);
		return;
	}
	switch (t->kind) {
	case SPF_ALL:
		matched(e, t, 0);
		return;
	case SPF_IP4: case SPF_IP6:
		if (in_net(&e->in.ip, &t->net, t->kind == SPF_IP4 ? t->cidr4 : t->cidr6))
			matched(e, t, t->kind == SPF_IP4 ? t->cidr4 : t->cidr6);
		return;
	case SPF_INCLUDE:
	case SPF_A: case SPF_MX: case SPF_PTR: case SPF_EXISTS:
		break;
	default:
		return;    /* modifiers: redirect comes last, exp at a fail */
	}
	if (t->spec && !e->p_done && uses_p(t->spec, t->spec_len)) {
		/* back before this term, to take it again once %{p} is known */
		f->pos = (size_t)(t->text - f->rec) - 1;
		start_p(e, P_THEN_TERM);
		return;
	}
	if (!count_dns_term(e) || !target(e, t->spec, t->spec_len))
		return;
	switch (t->kind) {
	case SPF_INCLUDE:
		if (e->depth + 1 >= SPF_DEPTH_MAX) {
			frame_done(e, SPF_PERMERROR, "includes nested too deep");
			return;
		}
		e->depth++;
		start_frame(e, e->target, false);
		return;
	case SPF_A:
		lookup(e, e->target, addr_type(e), W_A);
		return;
	case SPF_MX:
		lookup(e, e->target, DNS_T_MX, W_MX);
		return;
	case SPF_EXISTS:
		lookup(e, e->target, DNS_T_A, W_EXISTS);
		return;
	default: {
		/* ptr: the client's names first */
		char name[80];
		ptr_query(&e->in.ip, name, sizeof name);
		ask(e, name, DNS_T_PTR, W_PTR);
		return;
	}
	}
}

static void next_mx_addr(struct spf_eval *e)
{
	e->wait = W_NONE;
	if (e->iname < e->nnames)
		lookup(e, e->names[e->iname++], addr_type(e), W_MX_ADDR);
}

static void next_ptr_addr(struct spf_eval *e)
{
	e->wait = W_NONE;
	if (e->iname < e->nnames)
		lookup(e, e->names[e->iname++], addr_type(e), W_PTR_ADDR);
}

/* Whether NAME is TARGET or a name under it. */
static bool under(const char *name, const char *tgt)
{
	size_t n = strlen(name), t = strlen(tgt);
	if (n < t || strcasecmp(name + n - t, tgt) != 0)
		return false;
	return n == t || name[n - t - 1] == '.';
}

static bool has_addr(const struct spf_eval *e, const struct dns_answer *a, unsigned prefix)
{
	for (size_t i = 0; i < a->n; i++)
		if (in_net(&e->in.ip, &a->rr[i].addr, prefix))
			return true;
	return false;
}

/* ---- %{p}: the validated name of the client (RFC 7208 section 7.3) ---- */

static void ptr_query(const struct ipaddr *ip, char *name, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *b = ip->b;
	if (ip->family == AF_INET) {
		snprintf(name, cap, "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]);
		return;
	}
	size_t o = 0;
	for (int i = 15; i >= 0; i--) {
		name[o++] = hex[b[i] & 15];
		name[o++] = '.';
		name[o++] = hex[b[i] >> 4];
		name[o++] = '.';
	}
	snprintf(name + o, cap - o, "ip6.arpa");
}

static void start_p(struct spf_eval *e, int then)
{
	char name[80];
	e->p_then = then;
	ptr_query(&e->in.ip, name, sizeof name);
	ask(e, name, DNS_T_PTR, W_P_PTR);
}

static void p_known(struct spf_eval *e)
{
	e->p_done = true;
	e->wait = W_NONE;
	if (e->p_then == P_THEN_EXPLAIN)
		explain(e);
	else if (e->p_then == P_THEN_EXP_TEXT)
		explain_text(e);
	/* P_THEN_TERM: the run loop takes the term again */
}

static void p_next(struct spf_eval *e)
{
	if (e->iname < e->nnames)
		lookup(e, e->names[e->iname++], addr_type(e), W_P_ADDR);
	else
		p_known(e);   /* none validated: "unknown" */
}

static bool under(const char *name, const char *tgt);

static void p_answer(struct spf_eval *e, int wait, const struct dns_answer *a)
{
	bool found = a->status == DNS_OK && a->n > 0;
	if (wait == W_P_ADDR) {
		if (found && has_addr(e, a, e->in.ip.family == AF_INET ? 32 : 128)) {
			const char *n = e->names[e->iname - 1];
			copy(e->ptr_name, sizeof e->ptr_name, n, strlen(n));
			p_known(e);
			return;
		}
		p_next(e);
		return;
	}
	/* the names to validate, best first: the domain itself, names
	 * under it, the others (at most 10 looked at, as for ptr) */
	const char *d = top(e)->domain;
	e->nnames = e->iname = 0;
	for (int pass = 0; pass < 3; pass++)
		for (size_t i = 0; found && i < a->n && i < SPF_NAMES_MAX; i++) {
			const char *n = a->rr[i].name;
			bool is = strcasecmp(n, d) == 0, sub = !is && under(n, d);
			if (n[0] && ((pass == 0 && is) || (pass == 1 && sub) || (pass == 2 && !is && !sub)))
				copy(e->names[e->nnames++], DNS_NAME_MAX, n, strlen(n));
		}
	p_next(e);
}

void spf_eval_feed(struct spf_eval *e, const struct dns_answer *a)
{
	struct spf_term *t = &top(e)->cur;
	int wait = e->wait;
	bool found = a->status == DNS_OK && a->n > 0;
	e->wait = W_NONE;
	if (wait == W_P_PTR || wait == W_P_ADDR) {
		p_answer(e, wait, a);
		return;
	}
	if (a->status == DNS_TEMPFAIL && wait != W_PTR && wait != W_PTR_ADDR) {
		frame_done(e, SPF_TEMPERROR, "DNS lookup failed");
		return;
	}
	if (!found && (wait == W_A || wait == W_EXISTS || wait == W_MX) && !count_void(e))
		return;
	switch (wait) {
	case W_A:
		if (found && has_addr(e, a, cidr_of(e, t)))
			matched(e, t, cidr_of(e, t));
		return;
	case W_EXISTS:
		if (found)
			matched(e, t, 0);
		return;
	case W_MX:
		if (!found)
			return;
		if (a->n > SPF_NAMES_MAX || a->truncated) {
			frame_done(e, SPF_PERMERROR, "more than 10 MX names");
			return;
		}
		e->nnames = e->iname = 0;
		for (size_t i = 0; i < a->n; i++)
			if (a->rr[i].name[0])
				copy(e->names[e->nnames++], DNS_NAME_MAX, a->rr[i].name, strlen(a->rr[i].name));
		next_mx_addr(e);
		return;
	case W_MX_ADDR:
		if (found && has_addr(e, a, cidr_of(e, t)))
			matched(e, t, cidr_of(e, t));
		else
			next_mx_addr(e);
		return;
	case W_PTR:
		/* RFC 7208 section 5.5: an error is no match; only the
		 * first 10 names count, and only those the target covers
		 * need their addresses */
		e->nnames = e->iname = 0;
		for (size_t i = 0; found && i < a->n && i < SPF_NAMES_MAX; i++)
			if (a->rr[i].name[0] && under(a->rr[i].name, e->target))
				copy(e->names[e->nnames++], DNS_NAME_MAX, a->rr[i].name, strlen(a->rr[i].name));
		next_ptr_addr(e);
		return;
	case W_PTR_ADDR:
		if (found && has_addr(e, a, e->in.ip.family == AF_INET ? 32 : 128))
			matched(e, t, 0);
		else
			next_ptr_addr(e);
		return;
	default:
		return;
	}
}

static void on_record(struct spf_eval *e, const struct dns_txt *t)
{
	struct spf_frame *f = top(e);
	if (t->status == DNS_TEMPFAIL) {
		frame_done(e, SPF_TEMPERROR, "DNS lookup of the record failed");
		return;
	}
	if (t->status != DNS_OK) {
		frame_done(e, SPF_NONE, NULL);
		return;
	}
	if (t->truncated) {
		frame_done(e, SPF_TEMPERROR, "too many TXT records to tell");
		return;
	}
	size_t found = 0, which = 0;
	for (size_t i = 0; i < t->n; i++)
		if (spf_is_record(t->buf + t->rr[i].off, t->rr[i].len)) {
			found++;
			which = i;
		}
	if (found == 0) {
		frame_done(e, SPF_NONE, NULL);
		return;
	}
	if (found > 1) {
		frame_done(e, SPF_PERMERROR, "more than one SPF record");
		return;
	}
	if (t->rr[which].too_long || t->rr[which].len > SPF_RECORD_MAX) {
		frame_done(e, SPF_PERMERROR, "SPF record too long");
		return;
	}
	/* after the records of the frames around this one */
	size_t at = e->depth ? (size_t)(e->frame[e->depth - 1].rec - e->records) +
				       e->frame[e->depth - 1].len : 0;
	if (t->rr[which].len > SPF_RECORDS_MAX - at) {
		frame_done(e, SPF_PERMERROR, "SPF records too long in all");
		return;
	}
	memcpy(e->records + at, t->buf + t->rr[which].off, t->rr[which].len);
	f->rec = e->records + at;
	f->len = t->rr[which].len;
	f->pos = 0;
	if (!spf_record_check(f->rec, f->len, &f->redirect, &f->exp)) {
		frame_done(e, SPF_PERMERROR, "syntax error");
		return;
	}
	/* RFC 7208 section 5.1: with "all" present, redirect is never used
	 * (evaluation stops at all before it) */
}

void spf_eval_feed_txt(struct spf_eval *e, const struct dns_txt *t)
{
	int wait = e->wait;
	e->wait = W_NONE;
	if (wait == W_RECORD) {
		on_record(e, t);
		return;
	}
	if (wait != W_EXP)
		return;
	/* RFC 7208 section 6.2: exactly one record, else no explanation */
	if (t->status != DNS_OK || t->n != 1 || t->truncated || t->rr[0].too_long ||
	    t->rr[0].len > DNS_TXT_REC_MAX) {
		finish(e);
		return;
	}
	memcpy(e->exp_text, t->buf + t->rr[0].off, t->rr[0].len);
	e->exp_len = t->rr[0].len;
	if (!e->p_done && uses_p(e->exp_text, e->exp_len))
		start_p(e, P_THEN_EXP_TEXT);
	else
		explain_text(e);
}

void spf_eval_init(struct spf_eval *e, const struct spf_input *in)
{
	memset(e, 0, offsetof(struct spf_eval, frame));
	e->in = *in;
	e->out.r = SPF_NONE;
	/* longer than any real one: nothing to check (and copying would
	 * check something else) */
	if (!in->domain || strlen(in->domain) >= DNS_NAME_MAX ||
	    (in->local && strlen(in->local) > SPF_LOCAL_MAX) ||
	    (in->helo && strlen(in->helo) >= DNS_NAME_MAX) ||
	    (in->receiver && strlen(in->receiver) >= DNS_NAME_MAX)) {
		e->out.why = "input too long";
		e->done = true;
		return;
	}
	const char *local = in->local && in->local[0] ? in->local : "postmaster";
	copy(e->local, sizeof e->local, local, strlen(local));
	copy(e->sender_domain, sizeof e->sender_domain, in->domain, strlen(in->domain));
	copy(e->helo, sizeof e->helo, in->helo ? in->helo : "", in->helo ? strlen(in->helo) : 0);
	if (in->receiver)
		copy(e->receiver, sizeof e->receiver, in->receiver, strlen(in->receiver));
	e->in.domain = e->in.local = e->in.helo = e->in.receiver = NULL;
	start_frame(e, e->sender_domain, false);
}

enum spf_step spf_eval_run(struct spf_eval *e)
{
	while (!e->done && e->wait == W_NONE)
		next_term(e);
	return e->done ? SPF_STEP_DONE : SPF_STEP_LOOKUP;
}
