/*
 * strset: a set of strings that ignores ASCII case, for the domain and
 * address lists: a lookup costs one hash of the key, whatever the size.
 *
 * Promises: members are kept lower-cased, in the order they were first
 * added (v[0..n), for callers that walk them); adding a member again
 * changes nothing. Keys are (pointer, length); one holding a NUL is never
 * a member. The hash is keyed per set (siphash), so a list file cannot be
 * made to fill one chain.
 */
#ifndef GG_STRSET_H
#define GG_STRSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "siphash.h"

struct strset {
	char **v;          /* members, lower case, NUL-terminated */
	size_t n;
	uint32_t *slot;    /* open addressing: index into v + 1, 0 empty */
	size_t nslot;      /* 0 or a power of two, more than 2 n */
	size_t maxlen;     /* the longest member: longer keys are not looked up */
	uint8_t hkey[SIPHASH_KEY_LEN];  /* drawn at the first add */
};

/* 1 added, 0 already a member, -1 with errno: ENOMEM, or EINVAL for a key
 * longer than 512 bytes or holding a NUL. */
int strset_add(struct strset *s, const char *key, size_t len);
bool strset_has(const struct strset *s, const char *key, size_t len);
void strset_free(struct strset *s);

#endif
