/*
 * spf_eval: check_host() of RFC 7208 as a state machine that does no I/O.
 * The caller runs it, and each time it stops for a DNS lookup, does that
 * lookup however it likes (the daemon's asynchronous resolver, a test's
 * fake zone) and feeds the answer back:
 *
 *	spf_eval_init(e, &in);
 *	while (spf_eval_run(e) == SPF_STEP_LOOKUP)
 *		... look up e->q.name / e->q.type, then spf_eval_feed(e, &answer)
 *		    or spf_eval_feed_txt(e, &txt) ...
 *	e->out holds the outcome
 *
 * Promises: the limits of RFC 7208 section 4.6.4 (10 terms that cause
 * DNS lookups, 2 void lookups, 10 names per "mx" and per "ptr"), include
 * and redirect recursion bounded by them, "ptr" as section 5.5 says, "exp"
 * fetched for a fail (section 6.2) and not counted against the limit; on
 * top of those, at most in->budget lookups in all (a bound of our own:
 * past it the result is permerror). %{p} costs a PTR lookup and the
 * confirmation of up to 10 names, once per evaluation, not counted against
 * the limit of 10 (it is no mechanism).
 * No allocation; struct spf_eval is large (about 20 KB): allocate it.
 *
 * For a pass, out says which mechanism matched (the innermost one, inside
 * includes) and whether it is narrow enough to identify a sender: not
 * "all", an ip4 or a/mx IPv4 prefix of at least max_prefix4 bits, an ip6
 * or a/mx IPv6 prefix of at least max_prefix6, ptr, or an exists whose
 * name depends on the client address (%{i}); a pass through +all or ?all
 * counts as no pass (narrow_pass false).
 */
#ifndef GG_SPF_EVAL_H
#define GG_SPF_EVAL_H

#include <stdbool.h>
#include <stdint.h>

#include "dnsmsg.h"
#include "spf_record.h"

#define SPF_DNS_TERMS_MAX 10      /* RFC 7208 section 4.6.4 */
#define SPF_VOID_MAX 2
#define SPF_NAMES_MAX 10          /* per mx and per ptr */
#define SPF_DEPTH_MAX (SPF_DNS_TERMS_MAX + 1)
#define SPF_EXPLAIN_MAX 512
#define SPF_MECH_TEXT_MAX 64
#define SPF_LOCAL_MAX 64

struct spf_input {
	struct ipaddr ip;           /* the client */
	const char *domain;         /* MAIL FROM domain, or the HELO name for <> */
	const char *local;          /* MAIL FROM local part; NULL or "" for <> */
	const char *helo;
	const char *receiver;       /* %{r}; NULL: "unknown" */
	long long now;              /* %{t} */
	unsigned max_prefix4, max_prefix6;
	unsigned budget;            /* lookups at most; 0: SPF_BUDGET_DEFAULT */
};

/* Enough for every lookup the RFC's limits allow (10 terms of 1 + 10
 * lookups, the records, an explanation). */
#define SPF_BUDGET_DEFAULT 128

struct spf_outcome {
	enum spf_result r;
	bool narrow_pass;
	enum spf_kind kind;                    /* pass: the mechanism that matched */
	unsigned prefix;                       /* ... its prefix length for the client's family */
	char domain[DNS_NAME_MAX];             /* ... the domain whose record has it */
	char mechanism[SPF_MECH_TEXT_MAX];     /* ... as written (cut to fit) */
	char explanation[SPF_EXPLAIN_MAX];     /* fail: the exp text, "" when none */
	const char *why;                       /* errors: what went wrong, for logs */
	unsigned lookups;                      /* DNS lookups made */
};

enum spf_step { SPF_STEP_LOOKUP, SPF_STEP_DONE };

/* The records of the frames under evaluation (the outermost, the includes
 * it is inside of) lie one after another in one buffer. RFC 7208 section
 * 3.4 asks records to fit 450 bytes: the deepest chain the limits allow,
 * 11 such records, fits with room to spare; a chain that does not fit is
 * permerror. */
#define SPF_RECORDS_MAX 6144

struct spf_frame {
	char domain[DNS_NAME_MAX];
	const char *rec;            /* in records[] */
	size_t len, pos;
	bool redirected;            /* reached through redirect: "none" is permerror */
	struct spf_term cur, redirect, exp;
};

struct spf_eval {
	struct spf_input in;
	char local[SPF_LOCAL_MAX + 1];
	char sender_domain[DNS_NAME_MAX], helo[DNS_NAME_MAX], receiver[DNS_NAME_MAX];
	struct {
		char name[DNS_NAME_MAX];
		uint16_t type;
	} q;                        /* the lookup wanted, at SPF_STEP_LOOKUP */
	struct spf_outcome out;
	/* private */
	int wait, p_then;
	bool done, p_done;
	char ptr_name[DNS_NAME_MAX];            /* %{p}, once p_done; "" unknown */
	char exp_text[DNS_TXT_REC_MAX + 1];
	size_t exp_len;
	unsigned depth, dns_terms, voids;
	char target[DNS_NAME_MAX];
	char names[SPF_NAMES_MAX][DNS_NAME_MAX];
	unsigned nnames, iname;
	struct spf_frame frame[SPF_DEPTH_MAX];
	char records[SPF_RECORDS_MAX];
};

void spf_eval_init(struct spf_eval *e, const struct spf_input *in);
enum spf_step spf_eval_run(struct spf_eval *e);
/* The answer to e->q when it is not a TXT lookup. */
void spf_eval_feed(struct spf_eval *e, const struct dns_answer *a);
void spf_eval_feed_txt(struct spf_eval *e, const struct dns_txt *t);

#endif
