#include "redis_bound.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

/* Rough cost of one reply object beyond its payload, so that a reply of many
 * empty elements is bounded too. */
#define OBJ_COST 32

struct rb_conn {
	redisAsyncContext *ac;
	struct event *rev, *wev;
	size_t used;                     /* cost of the reply being read */
};

/* hiredis's own reply builders, which ours wrap (the same for every reader). */
static redisReplyObjectFunctions *base_fn;

/* The last refusal: read by the disconnect callback of the context it ended,
 * which hiredis runs before it frees the context. */
static const redisAsyncContext *refused_ac;
static char refused_why[128];

static void refuse(struct rb_conn *c, const char *detail)
{
	redisReader *r = c->ac->c.reader;
	snprintf(refused_why, sizeof refused_why,
		 "reply over %d bytes (%s); dropping the connection, reconnecting",
		 REDIS_REPLY_MAX, detail);
	refused_ac = c->ac;
	/* hiredis fails the context at its next read once the reader is in
	 * error (a builder below returning NULL does the same at once). */
	r->err = REDIS_ERR_PROTOCOL;
	snprintf(r->errstr, sizeof r->errstr, "%s", refused_why);
}

/* Charges COST to the reply TASK belongs to; false when over the bound. */
static bool charge(const redisReadTask *task, size_t cost)
{
	struct rb_conn *c = task->privdata;
	if (!task->parent)
		c->used = 0;             /* a new reply starts */
	if (cost > REDIS_REPLY_MAX - c->used) {
		refuse(c, "too many or too large elements");
		return false;
	}
	c->used += cost;
	return true;
}

static void *mk_string(const redisReadTask *task, char *s, size_t len)
{
	if (!charge(task, OBJ_COST + len))
		return NULL;
	return base_fn->createString(task, s, len);
}

static void *mk_array(const redisReadTask *task, int n)
{
	/* a nil array is built by mk_nil: N is a count here, at most INT_MAX,
	 * so the product cannot wrap a size_t */
	if (n < 0 || !charge(task, OBJ_COST + (size_t)n * sizeof(void *)))
		return NULL;
	return base_fn->createArray(task, n);
}

static void *mk_integer(const redisReadTask *task, long long v)
{
	if (!charge(task, OBJ_COST))
		return NULL;
	return base_fn->createInteger(task, v);
}

static void *mk_nil(const redisReadTask *task)
{
	if (!charge(task, OBJ_COST))
		return NULL;
	return base_fn->createNil(task);
}

static void free_obj(void *obj)
{
	base_fn->freeObject(obj);
}

static redisReplyObjectFunctions bounded_fn = {
	mk_string, mk_array, mk_integer, mk_nil, free_obj,
};

/* What waits in R's buffer: a bulk string's announced length (the reader has
 * taken its '$' and waits for all of it), else the start of the line. */
static const char *pending_head(const redisReader *r)
{
	char head[25];
	size_t n = 0;
	for (size_t i = r->pos; i < r->len && n < sizeof head - 1; i++) {
		unsigned char ch = (unsigned char)r->buf[i];
		if (ch == '\r' || ch == '\n')
			break;
		head[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	head[n] = '\0';
	static char detail[64];
	if (r->ridx >= 0 && r->rstack[r->ridx].type == REDIS_REPLY_STRING)
		snprintf(detail, sizeof detail, "bulk string announced as %s bytes", head);
	else
		snprintf(detail, sizeof detail, "unfinished item '%s'", head);
	return detail;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct rb_conn *c = arg;
	redisReader *r = c->ac->c.reader;
	/* A bulk string is buffered whole before it is built: bound what waits
	 * in the buffer (at most one read, 16 KiB, beyond the bound). */
	if (!r->err && r->len - r->pos > REDIS_REPLY_MAX)
		refuse(c, pending_head(r));
	redisAsyncHandleRead(c->ac);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct rb_conn *c = arg;
	redisAsyncHandleWrite(c->ac);
}

static void add_read(void *p) { event_add(((struct rb_conn *)p)->rev, NULL); }
static void del_read(void *p) { event_del(((struct rb_conn *)p)->rev); }
static void add_write(void *p) { event_add(((struct rb_conn *)p)->wev, NULL); }
static void del_write(void *p) { event_del(((struct rb_conn *)p)->wev); }

static void cleanup(void *p)
{
	struct rb_conn *c = p;
	event_free(c->rev);
	event_free(c->wev);
	free(c);
}

int redis_bound_attach(redisAsyncContext *ac, struct event_base *base)
{
	redisReader *r = ac->c.reader;
	struct rb_conn *c = calloc(1, sizeof *c);
	if (!c)
		return -1;
	c->ac = ac;
	c->rev = event_new(base, ac->c.fd, EV_READ, on_read, c);
	c->wev = event_new(base, ac->c.fd, EV_WRITE, on_write, c);
	if (!c->rev || !c->wev) {
		if (c->rev)
			event_free(c->rev);
		if (c->wev)
			event_free(c->wev);
		free(c);
		return -1;
	}
	if (!base_fn)
		base_fn = r->fn;
	if (refused_ac == ac)
		refused_ac = NULL;       /* a new context where a refused one was */
	r->fn = &bounded_fn;
	r->privdata = c;
	ac->ev.addRead = add_read;
	ac->ev.delRead = del_read;
	ac->ev.addWrite = add_write;
	ac->ev.delWrite = del_write;
	ac->ev.cleanup = cleanup;
	ac->ev.data = c;
	event_add(c->rev, NULL);
	event_add(c->wev, NULL);
	return 0;
}

const char *redis_bound_refusal(const redisAsyncContext *ac)
{
	return ac == refused_ac ? refused_why : NULL;
}
