/*
 * domainlist: the domain lists (local_domains, relay_domains,
 * handover.domains, whitelist.client_names).
 *
 * Promises: an entry "example.org" matches that name only; an entry
 * ".example.org" matches every subdomain of example.org but not
 * example.org itself. Matching ignores case and one trailing dot of the
 * name asked about. Entries are added already normalised (lower case, no
 * trailing dot: config.c checks them).
 */
#ifndef GG_DOMAINLIST_H
#define GG_DOMAINLIST_H

#include <stdbool.h>
#include <stddef.h>

struct domainlist {
	char **v;          /* lower-case, no trailing dot */
	size_t n;
};

/* False when out of memory. */
bool domainlist_add(struct domainlist *l, const char *d);
bool domainlist_match(const struct domainlist *l, const char *domain, size_t len);
void domainlist_free(struct domainlist *l);

#endif
