/*
 * fuzz_dotcodec: the DATA phase decoder/encoder (lib/dotcodec.h).
 *
 * Input layout: byte 0 gives K = (byte 0 & 7) + 1, the next K bytes are
 * chunk sizes (0..255, used in turn, 0 being an empty feed), the rest is
 * the client's DATA stream. The stream is fed in those chunks into an
 * evbuffer; if it holds no end-of-data line, "\r\n.\r\n" is fed after it,
 * which ends the data whatever state the codec is in. Checked:
 *  - a call consumes at most what it was given, all of it unless it
 *    reports done, done is reported by one call only, and a call after
 *    that consumes and writes nothing;
 *  - the output is canonical: every CR is followed by LF and every LF
 *    preceded by CR, it ends with ".\r\n", no line before that one is
 *    exactly ".", and every other line that starts with '.' starts with
 *    "..";
 *  - the same stream fed in one piece, and fed in discard mode (OUT NULL),
 *    ends at the same byte, and in one piece gives the same output;
 *  - in_bytes/out_bytes count what was consumed/written;
 *  - the output equals that of a plain reference model written from the
 *    header's description (find the first CRLF.CRLF, drop one leading dot
 *    per client line, split at bare CR/LF, stuff, terminate).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "dotcodec.h"
#include "fuzz_check.h"

static const char term[] = "\r\n.\r\n";
#define TERM_LEN 5

struct run {
	size_t consumed;     /* bytes of stream + terminator consumed */
	bool done_in_stream; /* the stream held the end itself */
	unsigned long long out_bytes;
};

/* Feeds IN[0..LEN) in chunks of SIZES[0..K) (in turn) to C; returns the
 * bytes consumed, with *DONE set when the end was found. */
static size_t feed_chunks(struct dotcodec *c, const char *in, size_t len,
			  const uint8_t *sizes, size_t k, struct evbuffer *out, bool *done)
{
	size_t pos = 0, j = 0;
	size_t before = out ? evbuffer_get_length(out) : 0;

	*done = false;
	for (;;) {
		size_t want = sizes[j++ % k];
		size_t chunk = want < len - pos ? want : len - pos;
		bool d = true; /* must be overwritten */
		size_t r = dotcodec_feed(c, in + pos, chunk, out, &d);

		CHECK(r != (size_t)-1);
		CHECK(r <= chunk);
		if (out) {
			size_t now = evbuffer_get_length(out);
			CHECK(now >= before);
			before = now;
		}
		pos += r;
		if (d) {
			*done = true;
			break;
		}
		CHECK(r == chunk); /* not done: everything consumed */
		if (pos == len)
			break;
	}
	if (*done) {
		/* done is reported once: a call after it takes nothing */
		bool d = false;
		size_t olen = out ? evbuffer_get_length(out) : 0;
		CHECK(dotcodec_feed(c, in + pos, len - pos, out, &d) == 0);
		CHECK(d);
		if (out)
			CHECK(evbuffer_get_length(out) == olen);
	}
	return pos;
}

/* The whole run: the stream, then the terminator if the stream did not end
 * the data. */
static struct run run_all(const char *in, size_t len, const uint8_t *sizes, size_t k,
			  struct evbuffer *out)
{
	struct dotcodec c;
	struct run r = { 0, false, 0 };
	bool done;

	dotcodec_init(&c);
	r.consumed = feed_chunks(&c, in, len, sizes, k, out, &done);
	r.done_in_stream = done;
	if (!done) {
		CHECK(r.consumed == len);
		r.consumed += feed_chunks(&c, term, TERM_LEN, sizes, k, out, &done);
		CHECK(done);
	}
	CHECK(c.in_bytes == r.consumed);
	if (out)
		CHECK(c.out_bytes == evbuffer_get_length(out));
	else
		CHECK(c.out_bytes == 0);
	r.out_bytes = c.out_bytes;
	return r;
}

static void check_canonical(const char *o, size_t n)
{
	CHECK(n >= 3 && memcmp(o + n - 3, ".\r\n", 3) == 0);
	for (size_t i = 0; i < n; i++) {
		if (o[i] == '\r')
			CHECK(i + 1 < n && o[i + 1] == '\n');
		if (o[i] == '\n')
			CHECK(i > 0 && o[i - 1] == '\r');
	}
	/* the lines before the final ".\r\n" (each ends in CRLF, as the
	 * checks above and start == body below make sure) */
	size_t body = n - 3, start = 0;
	for (size_t i = 0; i < body; i++) {
		if (o[i] != '\r')
			continue;
		size_t l = i - start;
		CHECK(!(l == 1 && o[start] == '.'));
		if (l > 0 && o[start] == '.')
			CHECK(l >= 2 && o[start + 1] == '.');
		start = i + 2;
	}
	CHECK(start == body);
}

/* Appends to a growing buffer. */
struct sbuf {
	char *p;
	size_t n, cap;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (n == 0)
		return; /* b->p may still be NULL */
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 16;
		b->p = realloc(b->p, b->cap);
		CHECK(b->p != NULL);
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
}

/* The reference: what the header says the codec does with STREAM followed
 * by the terminator. Returns the bytes consumed. */
static size_t reference(const char *in, size_t len, struct sbuf *o)
{
	/* P = "\r\n" + in + term: the CRLF that ended DATA counts */
	size_t plen = 2 + len + TERM_LEN;
	char *p = malloc(plen);
	CHECK(p != NULL);
	memcpy(p, "\r\n", 2);
	memcpy(p + 2, in, len);
	memcpy(p + 2 + len, term, TERM_LEN);
	size_t m = 0;
	while (memcmp(p + m, term, TERM_LEN) != 0)
		m++;
	/* the body: P[2 .. m+2), empty or ending in CRLF */
	const char *b = p + 2;
	size_t blen = m;
	size_t i = 0;
	while (i < blen) {
		/* a client line: up to the next CRLF */
		size_t e = i;
		while (!(b[e] == '\r' && b[e + 1] == '\n'))
			e++;
		if (b[i] == '.')
			i++;
		/* output lines: split at every (bare) CR or LF */
		for (;;) {
			size_t s = i;
			while (i < e && b[i] != '\r' && b[i] != '\n')
				i++;
			if (i > s && b[s] == '.')
				sb_add(o, ".", 1);
			sb_add(o, b + s, i - s);
			sb_add(o, "\r\n", 2);
			if (i == e)
				break;
			i++;
		}
		i = e + 2;
	}
	sb_add(o, ".\r\n", 3);
	free(p);
	return m + 3;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t k = (size_t)(data[0] & 7) + 1;
	if (size < 1 + k)
		return 0;
	uint8_t sizes[8];
	bool any = false;
	for (size_t i = 0; i < k; i++) {
		sizes[i] = data[1 + i];
		any = any || sizes[i] != 0;
	}
	if (!any)
		sizes[0] = 1; /* at least some progress per round */
	const char *in = (const char *)data + 1 + k;
	size_t len = size - 1 - k;

	/* in chunks */
	struct evbuffer *a = evbuffer_new();
	CHECK(a != NULL);
	struct run ra = run_all(in, len, sizes, k, a);
	size_t na = evbuffer_get_length(a);
	const char *oa = (const char *)evbuffer_pullup(a, -1);
	check_canonical(oa, na);

	/* in one piece (a feed of LEN bytes, then of the terminator) */
	struct evbuffer *b = evbuffer_new();
	CHECK(b != NULL);
	struct dotcodec c;
	bool done = false;
	dotcodec_init(&c);
	size_t rb = dotcodec_feed(&c, in, len, b, &done);
	CHECK(rb <= len);
	CHECK(done == ra.done_in_stream);
	if (!done) {
		size_t t = dotcodec_feed(&c, term, TERM_LEN, b, &done);
		CHECK(done && t <= TERM_LEN);
		rb += t;
	}
	CHECK(rb == ra.consumed);
	size_t nb = evbuffer_get_length(b);
	CHECK(nb == na && memcmp(evbuffer_pullup(b, -1), oa, na) == 0);

	/* discard mode */
	struct run rd = run_all(in, len, sizes, k, NULL);
	CHECK(rd.consumed == ra.consumed && rd.done_in_stream == ra.done_in_stream);

	/* the reference model */
	struct sbuf ref = { NULL, 0, 0 };
	size_t rc = reference(in, len, &ref);
	CHECK(rc == ra.consumed);
	CHECK(ref.n == na && memcmp(ref.p, oa, na) == 0);
	free(ref.p);

	evbuffer_free(a);
	evbuffer_free(b);
	return 0;
}
