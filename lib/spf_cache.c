#include "spf_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* domain, local part, HELO and the address's 17 bytes, with separators */
#define KEY_MAX (2 * DNS_NAME_MAX + SPF_LOCAL_MAX + 1 + 20)

struct slot {
	time_t expires;            /* 0: empty */
	size_t klen;
	char key[KEY_MAX];
	struct spf_outcome out;
};

struct spf_cache {
	unsigned n, ttl;
	uint8_t hkey[SIPHASH_KEY_LEN];
	struct slot slot[];
};

struct spf_cache *spf_cache_new(unsigned slots, unsigned ttl, const uint8_t key[SIPHASH_KEY_LEN])
{
	if (slots == 0)
		slots = 1;
	struct spf_cache *c = calloc(1, sizeof *c + slots * sizeof c->slot[0]);
	if (!c)
		return NULL;
	c->n = slots;
	c->ttl = ttl;
	memcpy(c->hkey, key, SIPHASH_KEY_LEN);
	return c;
}

void spf_cache_free(struct spf_cache *c)
{
	free(c);
}

/* K as bytes into BUF; 0 when a part is too long to be a key (then it is
 * not cached). Domain and HELO compare without regard to case. */
static size_t flatten(const struct spf_cache_key *k, char *buf)
{
	const char *parts[3] = { k->domain, k->local ? k->local : "", k->helo ? k->helo : "" };
	size_t n = 0;
	for (int i = 0; i < 3; i++) {
		size_t l = strlen(parts[i]);
		if (l > (i == 1 ? SPF_LOCAL_MAX : DNS_NAME_MAX - 1))
			return 0;
		for (size_t j = 0; j < l; j++) {
			char ch = parts[i][j];
			buf[n++] = i != 1 && ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
		}
		buf[n++] = '\0';
	}
	buf[n++] = (char)k->ip.family;
	memcpy(buf + n, k->ip.b, sizeof k->ip.b);
	return n + sizeof k->ip.b;
}

static struct slot *slot_of(struct spf_cache *c, const char *key, size_t len)
{
	return &c->slot[siphash24(c->hkey, key, len) % c->n];
}

bool spf_cache_get(struct spf_cache *c, const struct spf_cache_key *k, time_t now,
		   struct spf_outcome *out)
{
	char key[KEY_MAX];
	size_t len = flatten(k, key);
	if (!len)
		return false;
	struct slot *s = slot_of(c, key, len);
	if (s->expires <= now || s->klen != len || memcmp(s->key, key, len) != 0)
		return false;
	*out = s->out;
	return true;
}

void spf_cache_put(struct spf_cache *c, const struct spf_cache_key *k, time_t now,
		   const struct spf_outcome *out)
{
	char key[KEY_MAX];
	size_t len = flatten(k, key);
	if (!len || out->r == SPF_TEMPERROR || c->ttl == 0)
		return;
	struct slot *s = slot_of(c, key, len);
	s->expires = now + (time_t)c->ttl;
	s->klen = len;
	memcpy(s->key, key, len);
	s->out = *out;
}
