#include "connlimit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Open addressing with tombstone-free backward-shift deletion. */
struct slot {
	struct ipaddr a;
	int count;          /* 0: empty */
};

static struct slot *tab;
static size_t cap, used;

static uint64_t hash(const struct ipaddr *a)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)a->family;
	size_t n = a->family == AF_INET ? 4 : 16;
	for (size_t i = 0; i < n; i++)
		h = (h ^ a->b[i]) * 1099511628211ULL;
	return h;
}

static bool same(const struct ipaddr *x, const struct ipaddr *y)
{
	return x->family == y->family &&
	       memcmp(x->b, y->b, x->family == AF_INET ? 4 : 16) == 0;
}

static struct slot *find(const struct ipaddr *a)
{
	for (size_t i = hash(a) & (cap - 1);; i = (i + 1) & (cap - 1))
		if (tab[i].count == 0 || same(&tab[i].a, a))
			return &tab[i];
}

static bool grow(void)
{
	size_t ncap = cap ? cap * 2 : 64;
	struct slot *old = tab;
	size_t ocap = cap;
	tab = calloc(ncap, sizeof *tab);
	if (!tab) {
		tab = old;
		return false;
	}
	cap = ncap;
	for (size_t i = 0; i < ocap; i++)
		if (old[i].count)
			*find(&old[i].a) = old[i];
	free(old);
	return true;
}

bool connlimit_acquire(const struct ipaddr *a, int max)
{
	if ((used + 1) * 2 > cap && !grow())
		return false;
	struct slot *s = find(a);
	if (s->count >= max)
		return false;
	if (s->count == 0) {
		s->a = *a;
		used++;
	}
	s->count++;
	return true;
}

void connlimit_release(const struct ipaddr *a)
{
	if (!cap)
		return;
	struct slot *s = find(a);
	if (s->count == 0 || --s->count > 0)
		return;
	used--;
	/* Backward-shift: move later members of the probe run into the hole so
	 * that lookups never stop early at it. */
	size_t hole = (size_t)(s - tab);
	for (size_t i = (hole + 1) & (cap - 1); tab[i].count; i = (i + 1) & (cap - 1)) {
		size_t home = hash(&tab[i].a) & (cap - 1);
		bool movable = hole <= i ? (home <= hole || home > i) : (home <= hole && home > i);
		if (movable) {
			tab[hole] = tab[i];
			tab[i].count = 0;
			hole = i;
		}
	}
}
