/*
 * domainlist: the domain lists (local_domains, relay_domains,
 * handover.domains, whitelist.client_names).
 *
 * Promises: an entry "example.org" matches that name only; an entry
 * ".example.org" matches every subdomain of example.org but not
 * example.org itself. Matching ignores case and one trailing dot of the
 * name asked about. Entries are added already normalised (lower case, no
 * trailing dot: config.c checks them). A match costs one hash lookup per
 * label of the name, whatever the size of the list.
 */
#ifndef GG_DOMAINLIST_H
#define GG_DOMAINLIST_H

#include <stdbool.h>
#include <stddef.h>

#include "strset.h"

/* names.v[0..names.n): the entries, each once, in the order first added. */
struct domainlist {
	struct strset names;
};

/* False when out of memory. */
bool domainlist_add(struct domainlist *l, const char *d);
bool domainlist_match(const struct domainlist *l, const char *domain, size_t len);
void domainlist_free(struct domainlist *l);

#endif
