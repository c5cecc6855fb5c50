#include "addrlist.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PATTERN_MAX 320

bool addrlist_valid(const char *p)
{
	size_t n = strlen(p);
	if (n == 0 || n >= PATTERN_MAX)
		return false;
	if (strcmp(p, "<>") == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] <= ' ' || p[i] == '<' || p[i] == '>')
			return false;
	const char *at = strrchr(p, '@');
	if (p[0] == '.')
		return !at && n > 1;
	/* "@domain", "user@", "user@domain": exactly one separating '@' and
	 * something on at least one side of it */
	return at && n > 1;
}

int addrlist_add(struct addrlist *l, const char *pattern)
{
	if (!addrlist_valid(pattern))
		return -1;
	char **v = realloc(l->v, (l->n + 1) * sizeof *v);
	if (!v)
		return -1;
	l->v = v;
	char *copy = strdup(pattern);
	if (!copy)
		return -1;
	for (char *c = copy; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	l->v[l->n++] = copy;
	return 0;
}

static bool match_one(const char *p, const char *addr, size_t len, size_t at)
{
	size_t plen = strlen(p);
	const char *domain = addr + at + 1;
	size_t dlen = at < len ? len - at - 1 : 0;
	if (p[0] == '.')
		return at < len && dlen > plen &&
		       strncasecmp(domain + dlen - plen, p, plen) == 0;
	if (p[0] == '@')
		return at < len && dlen == plen - 1 && strncasecmp(domain, p + 1, dlen) == 0;
	if (p[plen - 1] == '@')
		return at == plen - 1 && strncasecmp(addr, p, at) == 0;
	return len == plen && strncasecmp(addr, p, len) == 0;
}

bool addrlist_match(const struct addrlist *l, const char *addr, size_t len)
{
	/* the separating '@' is the last one: quoted local parts may hold more */
	size_t at = len;
	for (size_t i = len; i > 0; i--)
		if (addr[i - 1] == '@') {
			at = i - 1;
			break;
		}
	for (size_t i = 0; i < l->n; i++) {
		if (len == 0) {
			if (strcmp(l->v[i], "<>") == 0)
				return true;
			continue;
		}
		if (match_one(l->v[i], addr, len, at))
			return true;
	}
	return false;
}

void addrlist_free(struct addrlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}
