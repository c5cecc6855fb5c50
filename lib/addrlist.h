/*
 * addrlist: address patterns for the sender and recipient whitelists.
 *
 * Patterns (case-insensitive):
 *   user@domain   that address
 *   user@         that local part at any domain ("postmaster@")
 *   @domain       any address at exactly that domain
 *   .domain       any address at a subdomain of domain (not domain itself)
 * The null sender matches only the pattern "<>".
 * A match costs a few hash lookups (one per label of the domain for the
 * .domain patterns), whatever the number of patterns.
 */
#ifndef GG_ADDRLIST_H
#define GG_ADDRLIST_H

#include <stdbool.h>
#include <stddef.h>

#include "strset.h"

struct addrlist {
	struct strset addresses;   /* user@domain, and "<>" */
	struct strset locals;      /* user@, without the '@' */
	struct strset domains;     /* @domain, without the '@' */
	struct strset subdomains;  /* .domain, with its dot */
	size_t n;                  /* patterns added */
};

/* Checks PATTERN's form; false for anything not one of the forms above. */
bool addrlist_valid(const char *pattern);
int addrlist_add(struct addrlist *l, const char *pattern);   /* 0 or -1 */
bool addrlist_match(const struct addrlist *l, const char *addr, size_t len);
void addrlist_free(struct addrlist *l);

#endif
