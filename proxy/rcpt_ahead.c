#include "rcpt_ahead.h"

#include <stdlib.h>
#include <string.h>

struct entry {
	struct rcpt_ahead *owner;
	struct rcpt_check *check;   /* running */
	bool decided;
	struct rcpt_verdict v;      /* when decided before it was taken */
	rcpt_done_fn done;          /* when taken before it was decided */
	void *arg;
	size_t len;
	char line[RCPT_AHEAD_LINE_MAX];
};

struct rcpt_ahead {
	struct entry e[RCPT_AHEAD_MAX];
	unsigned head, n;           /* ring of the started, not yet taken */
	struct entry *waiting;      /* taken, its check still running */
};

struct rcpt_ahead *rcpt_ahead_new(void)
{
	struct rcpt_ahead *a = calloc(1, sizeof *a);
	if (!a)
		return NULL;
	for (unsigned i = 0; i < RCPT_AHEAD_MAX; i++)
		a->e[i].owner = a;
	return a;
}

static void cancel(struct entry *e)
{
	if (e->check)
		rcpt_check_cancel(e->check);
	e->check = NULL;
	e->decided = false;
	e->done = NULL;
}

static void cancel_ring(struct rcpt_ahead *a)
{
	for (unsigned i = 0; i < a->n; i++)
		cancel(&a->e[(a->head + i) % RCPT_AHEAD_MAX]);
	a->head = a->n = 0;
}

void rcpt_ahead_free(struct rcpt_ahead *a)
{
	if (!a)
		return;
	cancel_ring(a);
	if (a->waiting)
		cancel(a->waiting);
	free(a);
}

size_t rcpt_ahead_count(const struct rcpt_ahead *a)
{
	return a->n;
}

bool rcpt_ahead_room(const struct rcpt_ahead *a)
{
	/* the slot of a taken entry that still waits is not free yet */
	return a->n + (a->waiting ? 1 : 0) < RCPT_AHEAD_MAX;
}

static void ahead_done(void *arg, const struct rcpt_verdict *v)
{
	struct entry *e = arg;
	e->check = NULL;
	if (!e->done) {
		e->v = *v;
		e->decided = true;
		return;
	}
	/* the session waits for this one; it may free everything inside */
	rcpt_done_fn fn = e->done;
	void *fn_arg = e->arg;
	e->done = NULL;
	e->owner->waiting = NULL;
	fn(fn_arg, v);
}

bool rcpt_ahead_start(struct rcpt_ahead *a, const char *line, size_t len,
		      const struct rcpt_query *q)
{
	if (!rcpt_ahead_room(a) || len > sizeof a->e[0].line)
		return false;
	struct entry *e = &a->e[(a->head + a->n) % RCPT_AHEAD_MAX];
	memcpy(e->line, line, len);
	e->len = len;
	e->decided = false;
	e->done = NULL;
	e->check = NULL;
	a->n++;
	e->check = rcpt_check_start(q, ahead_done, e);
	return true;
}

bool rcpt_ahead_take(struct rcpt_ahead *a, const char *line, size_t len,
		     rcpt_done_fn done, void *arg)
{
	struct entry *e = &a->e[a->head];
	if (a->n == 0 || a->waiting || e->len != len || memcmp(e->line, line, len) != 0) {
		cancel_ring(a);
		return false;
	}
	a->head = (a->head + 1) % RCPT_AHEAD_MAX;
	a->n--;
	if (e->decided) {
		/* a copy: DONE may start new checks, which may reuse the slot */
		struct rcpt_verdict v = e->v;
		e->decided = false;
		done(arg, &v);
		return true;
	}
	e->done = done;
	e->arg = arg;
	a->waiting = e;
	return true;
}
