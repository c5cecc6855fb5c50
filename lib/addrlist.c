#include "addrlist.h"

#include <string.h>

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
	size_t n = strlen(pattern);
	int r;
	if (pattern[0] == '.')
		r = strset_add(&l->subdomains, pattern, n);
	else if (pattern[0] == '@')
		r = strset_add(&l->domains, pattern + 1, n - 1);
	else if (pattern[n - 1] == '@')
		r = strset_add(&l->locals, pattern, n - 1);
	else
		r = strset_add(&l->addresses, pattern, n);
	if (r < 0)
		return -1;
	l->n++;
	return 0;
}

/* ".domain" matches when the address's domain ends in it with something in
 * front: the lookups are the domain's tails that start at a dot. */
static bool in_subdomains(const struct strset *s, const char *domain, size_t dlen)
{
	for (size_t i = 1; i < dlen; i++)
		if (domain[i] == '.' && strset_has(s, domain + i, dlen - i))
			return true;
	return false;
}

bool addrlist_match(const struct addrlist *l, const char *addr, size_t len)
{
	if (len == 0)
		return strset_has(&l->addresses, "<>", 2);
	/* the separating '@' is the last one: quoted local parts may hold more;
	 * without one, the whole is the local part and there is no domain */
	size_t at = len;
	for (size_t i = len; i > 0; i--)
		if (addr[i - 1] == '@') {
			at = i - 1;
			break;
		}
	if (strset_has(&l->addresses, addr, len) || strset_has(&l->locals, addr, at))
		return true;
	if (at == len)
		return false;
	const char *domain = addr + at + 1;
	size_t dlen = len - at - 1;
	return strset_has(&l->domains, domain, dlen) || in_subdomains(&l->subdomains, domain, dlen);
}

void addrlist_free(struct addrlist *l)
{
	strset_free(&l->addresses);
	strset_free(&l->locals);
	strset_free(&l->domains);
	strset_free(&l->subdomains);
	l->n = 0;
}
