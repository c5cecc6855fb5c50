#include "pool_key.h"

#include <stdio.h>
#include <string.h>

#include "generic_name.h"
#include "hostname.h"
#include "regdomain.h"

static const char *const kind_names[POOL_KINDS] = {
	[POOL_NET] = "net", [POOL_SPF] = "spf", [POOL_PTR] = "ptr",
};

const char *pool_kind_name(enum pool_kind k)
{
	return (unsigned)k < POOL_KINDS ? kind_names[k] : "net";
}

bool pool_kind_parse(const char *name, enum pool_kind *k)
{
	for (int i = 0; i < POOL_KINDS; i++) {
		if (strcmp(name, kind_names[i]) == 0) {
			*k = (enum pool_kind)i;
			return true;
		}
	}
	return false;
}

bool pool_kinds_have(const enum pool_kind *order, size_t n, enum pool_kind k)
{
	for (size_t i = 0; i < n; i++)
		if (order[i] == k)
			return true;
	return false;
}

enum pool_kind pool_kind_of(const char *keytext)
{
	if (strncmp(keytext, "spf:", 4) == 0)
		return POOL_SPF;
	if (strncmp(keytext, "ptr:", 4) == 0)
		return POOL_PTR;
	return POOL_NET;
}

/* "KIND:" and DOMAIN in lower case; false if DOMAIN is no host name. */
static bool put(char out[POOL_TEXT_MAX], enum pool_kind k, const char *domain)
{
	size_t len = strnlen(domain, HOSTNAME_MAX + 2);
	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (!hostname_valid(domain, len))
		return false;
	int n = snprintf(out, POOL_TEXT_MAX, "%s:", kind_names[k]);
	for (size_t i = 0; i < len; i++) {
		char c = domain[i];
		out[(size_t)n + i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	out[(size_t)n + len] = '\0';
	return true;
}

static bool ptr_key(const struct pool_facts *f, char out[POOL_TEXT_MAX])
{
	char reg[HOSTNAME_MAX + 1];
	return f->client_name &&
	       !generic_name(f->client_name, f->client, f->words, f->nwords) &&
	       regdomain(f->client_name, reg, sizeof reg) && put(out, POOL_PTR, reg);
}

enum pool_kind pool_key(const struct pool_facts *f, char out[POOL_TEXT_MAX])
{
	for (size_t i = 0; i < f->norder; i++) {
		out[0] = '\0';
		if (f->order[i] == POOL_SPF && f->spf_pass_domain &&
		    put(out, POOL_SPF, f->spf_pass_domain))
			return POOL_SPF;
		if (f->order[i] == POOL_PTR && ptr_key(f, out))
			return POOL_PTR;
	}
	out[0] = '\0';
	return POOL_NET;
}
