/*
 * helo: what greygate accepts as a HELO/EHLO argument, so that the backend,
 * which is handed the same argument after XCLIENT, never refuses it. A
 * refusal there would look like a backend failure and must not be caused
 * by one client's bytes.
 *
 * Promises: a pure function of its input; no allocation.
 */
#ifndef GG_HELO_H
#define GG_HELO_H

#include <stdbool.h>
#include <stddef.h>

enum helo_verdict {
	HELO_OK,
	HELO_BAD_UTF8,   /* Postfix (smtputf8_enable, the default) answers 500 5.5.2 */
	HELO_CONTROL,    /* NUL, other C0 controls or DEL: never part of a host name */
};

enum helo_verdict helo_check(const char *arg, size_t len);

/* Whether P[0..LEN) is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
bool utf8_valid(const char *p, size_t len);

#endif
