#include "strset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "siphash.h"

/* Longer than any domain (253) or address pattern (320) the lists accept. */
#define KEY_MAX 512

/* The members are lower case; a key is hashed and compared in lower case. */
static void lower(char *out, const char *key, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];
		out[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
	}
}

static size_t home(const struct strset *s, const char *low, size_t len)
{
	return (size_t)siphash24(s->hkey, low, len) & (s->nslot - 1);
}

/* The slot that holds LOW, or the empty slot where it would go. */
static size_t find(const struct strset *s, const char *low, size_t len)
{
	size_t i = home(s, low, len);
	while (s->slot[i]) {
		const char *m = s->v[s->slot[i] - 1];
		/* LOW has no NUL, so a shorter member differs before its end */
		if (strncmp(m, low, len) == 0 && m[len] == '\0')
			break;
		i = (i + 1) & (s->nslot - 1);
	}
	return i;
}

static int draw_key(uint8_t key[SIPHASH_KEY_LEN])
{
	for (size_t got = 0; got < SIPHASH_KEY_LEN;) {
		ssize_t n = getrandom(key + got, SIPHASH_KEY_LEN - got, 0);
		if (n < 0 && errno != EINTR)
			return -1;
		if (n > 0)
			got += (size_t)n;
	}
	return 0;
}

/* Twice the slots (at most half of them used), and room in v for as many
 * members as the slots may hold. */
static int grow(struct strset *s)
{
	size_t nslot = s->nslot ? s->nslot * 2 : 16;
	if (nslot / 2 > UINT32_MAX || nslot > SIZE_MAX / sizeof *s->slot) {
		errno = ENOMEM;
		return -1;
	}
	if (!s->nslot && draw_key(s->hkey) < 0)
		return -1;
	char **v = realloc(s->v, nslot / 2 * sizeof *v);
	if (!v)
		return -1;
	s->v = v;
	uint32_t *slot = calloc(nslot, sizeof *slot);
	if (!slot)
		return -1;
	free(s->slot);
	s->slot = slot;
	s->nslot = nslot;
	for (size_t k = 0; k < s->n; k++)
		s->slot[find(s, s->v[k], strlen(s->v[k]))] = (uint32_t)(k + 1);
	return 0;
}

int strset_add(struct strset *s, const char *key, size_t len)
{
	char low[KEY_MAX];
	if (len > KEY_MAX || memchr(key, '\0', len)) {
		errno = EINVAL;
		return -1;
	}
	lower(low, key, len);
	if (s->nslot && s->slot[find(s, low, len)])
		return 0;
	if ((s->n + 1) * 2 > s->nslot && grow(s) < 0)
		return -1;
	char *m = malloc(len + 1);
	if (!m)
		return -1;
	memcpy(m, low, len);
	m[len] = '\0';
	s->slot[find(s, low, len)] = (uint32_t)(s->n + 1);
	s->v[s->n++] = m;
	if (len > s->maxlen)
		s->maxlen = len;
	return 1;
}

bool strset_has(const struct strset *s, const char *key, size_t len)
{
	char low[KEY_MAX];
	if (s->n == 0 || len > s->maxlen || memchr(key, '\0', len))
		return false;
	lower(low, key, len);
	return s->slot[find(s, low, len)] != 0;
}

void strset_free(struct strset *s)
{
	for (size_t k = 0; k < s->n; k++)
		free(s->v[k]);
	free(s->v);
	free(s->slot);
	memset(s, 0, sizeof *s);
}
