#include "domainlist.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool domainlist_add(struct domainlist *l, const char *d)
{
	char **v = realloc(l->v, (l->n + 1) * sizeof *v);
	if (!v)
		return false;
	l->v = v;
	char *copy = strdup(d);
	if (!copy)
		return false;
	l->v[l->n++] = copy;
	return true;
}

bool domainlist_match(const struct domainlist *list, const char *domain, size_t len)
{
	if (len > 0 && domain[len - 1] == '.')
		len--;
	for (size_t i = 0; i < list->n; i++) {
		const char *e = list->v[i];
		size_t elen = strlen(e);
		if (e[0] == '.') {
			/* ".example" matches "a.example", not "example" itself */
			if (len > elen && strncasecmp(domain + len - elen, e, elen) == 0)
				return true;
		} else if (len == elen && strncasecmp(domain, e, len) == 0) {
			return true;
		}
	}
	return false;
}

void domainlist_free(struct domainlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}
