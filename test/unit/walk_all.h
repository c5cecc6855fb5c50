/* walk_all(): memstore_walk to the end in one go, for tests that look at
 * the whole store. Included after "memstore.h". */
#ifndef GG_TEST_WALK_ALL_H
#define GG_TEST_WALK_ALL_H

static void walk_all(struct memstore *m, int64_t now,
		     bool (*fn)(void *arg, const struct memstore_view *v), void *arg)
{
	struct memstore_walk w = { 0 };
	while (memstore_walk(m, &w, now, 64, fn, arg))
		;
}

#endif
