#include "domainlist.h"

#include <string.h>

bool domainlist_add(struct domainlist *l, const char *d)
{
	return strset_add(&l->names, d, strlen(d)) >= 0;
}

/* "a.b.example" is looked up whole (unless it starts with a dot: an exact
 * entry never does, and a ".x" entry wants more in front of it), then as
 * ".b.example" and ".example", the suffix entries it may fall under. */
bool domainlist_match(const struct domainlist *l, const char *domain, size_t len)
{
	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (len > 0 && domain[0] != '.' && strset_has(&l->names, domain, len))
		return true;
	for (size_t i = 1; i < len; i++)
		if (domain[i] == '.' && strset_has(&l->names, domain + i, len - i))
			return true;
	return false;
}

void domainlist_free(struct domainlist *l)
{
	strset_free(&l->names);
}
