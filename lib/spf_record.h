/*
 * spf_record: the syntax of an SPF record (RFC 7208 sections 4.5, 4.6,
 * 5, 6, 12): "v=spf1" and its terms, the mechanisms all, include, a, mx,
 * ptr, ip4, ip6, exists with their qualifiers, domain-specs and CIDR
 * lengths, and the modifiers redirect, exp and unknown ones.
 *
 * Promises: pure (no I/O, no allocation). A term is returned with pointers
 * into the record text, which the caller keeps. spf_record_check accepts
 * exactly the records whose every term spf_term_next accepts, with at
 * most one redirect and one exp: anything else is a syntax error, which
 * the evaluator turns into "permerror" before evaluating any term (RFC
 * 7208 section 4.6). Only visible ASCII and spaces are accepted.
 */
#ifndef GG_SPF_RECORD_H
#define GG_SPF_RECORD_H

#include <stdbool.h>
#include <stddef.h>

#include "netaddr.h"

/* The longest record evaluated (TXT character-strings concatenated). A
 * record must fit a DNS answer and real ones are a few hundred bytes. */
#define SPF_RECORD_MAX 2048

enum spf_result {
	SPF_NONE,
	SPF_NEUTRAL,
	SPF_PASS,
	SPF_FAIL,
	SPF_SOFTFAIL,
	SPF_TEMPERROR,
	SPF_PERMERROR,
};
#define SPF_RESULTS (SPF_PERMERROR + 1)

/* "none", "neutral", "pass", ... as RFC 7208 names them. */
const char *spf_result_name(enum spf_result r);

enum spf_kind {
	SPF_ALL,
	SPF_INCLUDE,
	SPF_A,
	SPF_MX,
	SPF_PTR,
	SPF_IP4,
	SPF_IP6,
	SPF_EXISTS,
	SPF_REDIRECT,      /* modifiers from here */
	SPF_EXP,
	SPF_UNKNOWN_MOD,
};

struct spf_term {
	enum spf_kind kind;
	enum spf_result qual;      /* mechanisms: PASS, FAIL, SOFTFAIL or NEUTRAL */
	const char *spec;          /* domain-spec (modifiers: the value); NULL when none */
	size_t spec_len;
	unsigned cidr4, cidr6;     /* a, mx, ip4, ip6: 32 and 128 when not given */
	struct ipaddr net;         /* ip4, ip6: the network, host bits cleared */
	const char *text;          /* the whole term, for logs */
	size_t text_len;
};

/* Whether TXT (LEN bytes) is an SPF record: "v=spf1" (any case) alone or
 * followed by a space. */
bool spf_is_record(const char *txt, size_t len);

/* The term at *POS of REC (a record: *POS starts at 0, just before the
 * version is skipped); 1 with *T filled and *POS moved past it, 0 at the
 * end, -1 on a syntax error. */
int spf_term_next(const char *rec, size_t len, size_t *pos, struct spf_term *t);

/* Whether REC (an SPF record) is valid as a whole. REDIRECT and EXP get the
 * modifiers (kind SPF_UNKNOWN_MOD with spec NULL when absent). */
bool spf_record_check(const char *rec, size_t len, struct spf_term *redirect, struct spf_term *exp);

#endif
