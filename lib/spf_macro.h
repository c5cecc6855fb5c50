/*
 * spf_macro: the macro language of SPF records (RFC 7208 section 7):
 * %{s l o d i p v h} in domain-specs, plus %{c r t} in explanations, with
 * the digit and "r" transformers, delimiters, and URL escaping for upper
 * case letters; "%%", "%_" and "%-" are a percent, a space and "%20".
 *
 * Promises: pure (no I/O, no allocation); every output is bounded by the
 * caller's buffer and NUL-terminated; a result that would not fit is a
 * failure, never a truncation (a shortened name would be a different
 * name). Syntax is judged exactly as spf_macro_expand judges it, so a
 * string that passes spf_macro_check never fails expansion for syntax.
 */
#ifndef GG_SPF_MACRO_H
#define GG_SPF_MACRO_H

#include <stdbool.h>
#include <stddef.h>

#include "netaddr.h"

/* What the macros stand for. NULL strings expand as "unknown" (RFC 7208
 * section 7.3 for %{p} and %{r}). */
struct spf_macro_env {
	const char *local;          /* %{l}: the sender's local part ("postmaster" for <>) */
	const char *sender_domain;  /* %{o}; %{s} is local@sender_domain */
	const char *domain;         /* %{d}: the domain being checked now */
	const struct ipaddr *ip;    /* %{i} %{c} %{v} */
	const char *helo;           /* %{h} */
	const char *ptr_name;       /* %{p}: a validated name of the client */
	const char *receiver;       /* %{r}: our own name (explanations only) */
	long long now;              /* %{t}: seconds since the epoch (explanations only) */
};

/* Whether S (LEN bytes) is a valid macro-string; EXP allows %{c r t}.
 * *ENDS_WITH_MACRO (may be NULL) tells whether it ends with a
 * macro-expand, which a domain-spec may end with instead of a top label. */
bool spf_macro_check(const char *s, size_t len, bool exp, bool *ends_with_macro);

/* Expands S into OUT (CAP bytes, NUL included). False when S is no valid
 * macro-string or the result does not fit. */
bool spf_macro_expand(const char *s, size_t len, bool exp, const struct spf_macro_env *env,
		      char *out, size_t cap);

#endif
