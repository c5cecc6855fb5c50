#include "why.h"

#include <stddef.h>

static const struct {
	const char *name;
	unsigned kinds;
} table[WHY_COUNT] = {
#define WHY_ENTRY(id, n, k) [WHY_##id] = { n, k },
	WHY_LIST(WHY_ENTRY)
#undef WHY_ENTRY
};

/* Indexed by the store's reason, so that no second list of its names exists. */
static const enum why of_gl[GL_REASONS] = {
	[GL_REASON_NEW] = WHY_NEW,
	[GL_REASON_EARLY] = WHY_EARLY,
	[GL_REASON_RETRY_WINDOW_EXPIRED] = WHY_RETRY_WINDOW_EXPIRED,
	[GL_REASON_TRIPLET] = WHY_TRIPLET,
	[GL_REASON_AWL] = WHY_AWL,
};

const char *why_name(enum why w)
{
	return (unsigned)w < WHY_COUNT ? table[w].name : NULL;
}

bool why_is(enum why w, unsigned kind)
{
	return (unsigned)w < WHY_COUNT && (table[w].kinds & kind) != 0;
}

enum why why_of_gl(enum gl_reason r)
{
	return (unsigned)r < GL_REASONS ? of_gl[r] : WHY_NONE;
}
