#include "dotcodec.h"

#include <event2/buffer.h>
#include <string.h>

/*
 * Client-side states. Only ST_BOL is "after <CR><LF>": a bare CR or LF breaks
 * the output line but never starts a client line, so neither can begin the
 * end-of-data line nor lose a leading dot.
 */
enum {
	ST_BOL,    /* after <CR><LF>, or at the start of the data */
	ST_DOT,    /* ST_BOL then '.'; the dot has been dropped */
	ST_DOT_CR, /* ST_DOT then <CR>; the <CR> is held back, it may end the data */
	ST_MID,    /* inside a line (also right after a bare CR or LF) */
	ST_CR,     /* after a <CR> not yet known to be bare; it has been written */
	ST_DONE,
};

/*
 * One call's view of the input. Output is mostly the input unchanged, so
 * in[run..i) is kept as a pending verbatim run and written with a single
 * evbuffer_add when the output has to differ (a byte dropped or added).
 */
struct feed {
	struct dotcodec *c;
	struct evbuffer *out;
	const char *in;
	size_t len, i, run;
	size_t lf; /* offset of the next LF at or after i, or len */
};

static int put(struct feed *f, const char *s, size_t n)
{
	if (!f->out)
		return 0;
	if (evbuffer_add(f->out, s, n) != 0)
		return -1;
	f->c->out_bytes += n;
	return 0;
}

static int flush(struct feed *f)
{
	size_t start = f->run;

	if (start == f->i)
		return 0;
	f->run = f->i;
	return put(f, f->in + start, f->i - start);
}

/* Writes S before the current byte. */
static int insert(struct feed *f, const char *s, size_t n)
{
	if (flush(f) != 0)
		return -1;
	return put(f, s, n);
}

/* Consumes the current byte without writing it. */
static int drop(struct feed *f)
{
	if (flush(f) != 0)
		return -1;
	f->run = ++f->i;
	return 0;
}

/* Consumes the current byte and writes it as it is. */
static void keep(struct feed *f)
{
	f->i++;
}

/*
 * The LF position is cached so that a buffer of lines ended by bare CRs, or
 * one without any LF, is still scanned once rather than once per line.
 */
static void find_lf(struct feed *f)
{
	const char *lf =
		f->i < f->len ? memchr(f->in + f->i, '\n', f->len - f->i) : NULL;
	f->lf = lf ? (size_t)(lf - f->in) : f->len;
}

/* End of the run of ordinary bytes starting at i: the next CR or LF, or len. */
static size_t span_end(struct feed *f)
{
	if (f->lf < f->i)
		find_lf(f);
	const char *cr = memchr(f->in + f->i, '\r', f->lf - f->i);
	return cr ? (size_t)(cr - f->in) : f->lf;
}

static int step_mid(struct feed *f)
{
	struct dotcodec *c = f->c;

	switch (f->in[f->i]) {
	case '\r':
		keep(f);
		c->out_bol = false;
		c->state = ST_CR;
		return 0;
	case '\n':
		if (insert(f, "\r", 1) != 0)
			return -1;
		keep(f);
		c->out_bol = true;
		c->state = ST_MID;
		return 0;
	}
	if (c->out_bol && f->in[f->i] == '.' && insert(f, ".", 1) != 0)
		return -1;
	f->i = span_end(f);
	c->out_bol = false;
	c->state = ST_MID;
	return 0;
}

static int step_bol(struct feed *f)
{
	if (f->in[f->i] != '.')
		return step_mid(f);
	f->c->state = ST_DOT;
	return drop(f);
}

static int step_dot(struct feed *f)
{
	if (f->in[f->i] != '\r')
		return step_mid(f);
	f->c->state = ST_DOT_CR;
	return drop(f);
}

static int step_dot_cr(struct feed *f)
{
	if (f->in[f->i] == '\n') {
		f->c->state = ST_DONE;
		if (drop(f) != 0)
			return -1;
		return put(f, ".\r\n", 3);
	}
	/* The held <CR> was bare: it ends an (empty, dot removed) output line. */
	if (insert(f, "\r\n", 2) != 0)
		return -1;
	f->c->out_bol = true;
	return step_mid(f);
}

static int step_cr(struct feed *f)
{
	if (f->in[f->i] == '\n') {
		keep(f);
		f->c->out_bol = true;
		f->c->state = ST_BOL;
		return 0;
	}
	/* Bare CR: the <CR> is already out, complete it to <CR><LF>. */
	if (insert(f, "\n", 1) != 0)
		return -1;
	f->c->out_bol = true;
	return step_mid(f);
}

static int step(struct feed *f)
{
	switch (f->c->state) {
	case ST_BOL:
		return step_bol(f);
	case ST_DOT:
		return step_dot(f);
	case ST_DOT_CR:
		return step_dot_cr(f);
	case ST_CR:
		return step_cr(f);
	default:
		return step_mid(f);
	}
}

void dotcodec_init(struct dotcodec *c)
{
	c->state = ST_BOL;
	c->out_bol = true;
	c->in_bytes = 0;
	c->out_bytes = 0;
}

size_t dotcodec_feed(struct dotcodec *c, const char *in, size_t len,
		     struct evbuffer *out, bool *done)
{
	struct feed f = { .c = c, .out = out, .in = in, .len = len };
	int err = 0;
	/* A failed call leaves the codec as it was, so that the caller can feed
	 * the same bytes again in discard mode and still find the right end;
	 * a half-advanced state would misplace it. */
	const struct dotcodec saved = *c;

	find_lf(&f);
	while (!err && f.i < len && c->state != ST_DONE)
		err = step(&f);
	if (err || flush(&f) != 0) {
		*c = saved;
		return (size_t)-1;
	}
	c->in_bytes += f.i;
	*done = c->state == ST_DONE;
	return f.i;
}
