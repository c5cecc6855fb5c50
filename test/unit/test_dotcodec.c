#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "dotcodec.h"

#define S(lit) lit, sizeof lit - 1

struct vec {
	const char *name;
	const char *in;
	size_t in_len;
	const char *out;
	size_t out_len;
	size_t consumed;
	bool done;
};

/* consumed == ALL means the whole input. */
#define ALL SIZE_MAX

static const struct vec vectors[] = {
	{ "empty body", S(".\r\n"), S(".\r\n"), ALL, true },
	{ "plain message", S("Subject: x\r\n\r\nbody\r\n.\r\n"),
	  S("Subject: x\r\n\r\nbody\r\n.\r\n"), ALL, true },
	{ "empty lines only", S("\r\n\r\n.\r\n"), S("\r\n\r\n.\r\n"), ALL, true },
	{ "leading dot removed", S(".foo\r\n.\r\n"), S("foo\r\n.\r\n"), ALL, true },
	{ "dot-stuffed line kept stuffed", S("a\r\n..foo\r\n.\r\n"),
	  S("a\r\n..foo\r\n.\r\n"), ALL, true },
	{ "stuffed lone dot", S("..\r\n.\r\n"), S("..\r\n.\r\n"), ALL, true },
	{ "triple dot", S("...\r\n.\r\n"), S("...\r\n.\r\n"), ALL, true },
	{ "dot mid-line untouched", S("a.b\r\n.\r\n"), S("a.b\r\n.\r\n"), ALL, true },
	{ "bare LF", S("a\nb\r\n.\r\n"), S("a\r\nb\r\n.\r\n"), ALL, true },
	{ "bare CR", S("a\rb\r\n.\r\n"), S("a\r\nb\r\n.\r\n"), ALL, true },
	{ "CR CR LF", S("a\r\r\n.\r\n"), S("a\r\n\r\n.\r\n"), ALL, true },
	{ "LF LF", S("a\n\n.\r\n"), S("a\r\n\r\n..\r\n"), ALL, false },
	{ "<LF>.<LF>", S("a\n.\nb\r\n.\r\n"), S("a\r\n..\r\nb\r\n.\r\n"), ALL, true },
	{ "<LF>.<CR><LF> does not end", S("a\n.\r\nMAIL FROM:<x>\r\n.\r\n"),
	  S("a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n"), ALL, true },
	{ "<LF>.<CR><LF> at start does not end", S("\n.\r\n"), S("\r\n..\r\n"),
	  ALL, false },
	{ "<CR><LF>.<LF> does not end", S("a\r\n.\nb\r\n.\r\n"),
	  S("a\r\n\r\nb\r\n.\r\n"), ALL, true },
	{ "<CR><LF>.<LF><LF> does not end", S("a\r\n.\n\nb\r\n.\r\n"),
	  S("a\r\n\r\n\r\nb\r\n.\r\n"), ALL, true },
	{ ".<LF> at start does not end", S(".\n.\r\n"), S("\r\n..\r\n"), ALL, false },
	{ "<CR>.<CR> does not end", S("a\r.\rb\r\n.\r\n"),
	  S("a\r\n..\r\nb\r\n.\r\n"), ALL, true },
	{ "<CR>.<CR><LF> does not end", S("a\r.\r\nb\r\n.\r\n"),
	  S("a\r\n..\r\nb\r\n.\r\n"), ALL, true },
	{ "<CR><LF>.<CR>x does not end", S("a\r\n.\rb\r\n.\r\n"),
	  S("a\r\n\r\nb\r\n.\r\n"), ALL, true },
	{ ".<CR>.<CR><LF> at start", S(".\r.\r\n.\r\n"), S("\r\n..\r\n.\r\n"),
	  ALL, true },
	{ "<CR><LF>.<CR><CR><LF>", S("a\r\n.\r\r\n.\r\n"),
	  S("a\r\n\r\n\r\n.\r\n"), ALL, true },
	{ "NUL bytes", S("a\0b\r\n\0\r\n\0.\r\n.\r\n"),
	  S("a\0b\r\n\0\r\n\0.\r\n.\r\n"), ALL, true },
	{ "8-bit bytes", S("\xc3\xa9t\xc3\xa9\xff\r\n.\r\n"),
	  S("\xc3\xa9t\xc3\xa9\xff\r\n.\r\n"), ALL, true },
	{ "pipelined commands left unconsumed", S("a\r\n.\r\nQUIT\r\n"),
	  S("a\r\n.\r\n"), 6, true },
	{ "empty body then pipelined", S(".\r\nRSET\r\n"), S(".\r\n"), 3, true },
	{ "unterminated", S("abc"), S("abc"), ALL, false },
	{ "unterminated after CR", S("abc\r"), S("abc\r"), ALL, false },
	{ "end marker without final LF", S("a\r\n.\r"), S("a\r\n"), ALL, false },
	{ "no input", S(""), S(""), ALL, false },
};

static struct evbuffer *new_buf(void)
{
	struct evbuffer *b = evbuffer_new();
	assert_non_null(b);
	return b;
}

/* Copies B's contents into a NUL-terminated heap string for comparisons. */
static char *drain(struct evbuffer *b, size_t *len)
{
	*len = evbuffer_get_length(b);
	char *s = malloc(*len + 1);
	assert_non_null(s);
	assert_int_equal(evbuffer_remove(b, s, *len), (int)*len);
	s[*len] = '\0';
	return s;
}

static void assert_bytes(const char *got, size_t got_len, const char *want,
			 size_t want_len)
{
	assert_int_equal(got_len, want_len);
	if (want_len)
		assert_memory_equal(got, want, want_len);
}

/* Feeds IN in pieces at the offsets CUTS (ascending, within LEN). */
static size_t feed_cut(struct dotcodec *c, const char *in, size_t len,
		       const size_t *cuts, size_t ncuts, struct evbuffer *out,
		       bool *done)
{
	size_t pos = 0;

	*done = false;
	for (size_t k = 0; k <= ncuts && !*done; k++) {
		size_t end = k < ncuts ? cuts[k] : len;
		size_t n = dotcodec_feed(c, in + pos, end - pos, out, done);
		assert_int_not_equal(n, (size_t)-1);
		assert_true(n <= end - pos);
		if (!*done)
			assert_int_equal(n, end - pos);
		pos += n;
	}
	return pos;
}

/* Fails naming the vector, since one loop runs every vector and split. */
static void check_result(const struct vec *v, struct dotcodec *c, size_t consumed,
			 bool done, struct evbuffer *out)
{
	size_t want_consumed = v->consumed == ALL ? v->in_len : v->consumed;
	size_t len;
	char *got = drain(out, &len);
	bool same = len == v->out_len && memcmp(got, v->out, len) == 0;

	if (!same || consumed != want_consumed || done != v->done ||
	    c->in_bytes != want_consumed || c->out_bytes != v->out_len)
		fail_msg("%s: consumed %zu (want %zu), done %d (want %d), "
			 "output %s (%zu bytes, want %zu), counters %llu/%llu",
			 v->name, consumed, want_consumed, done, v->done,
			 same ? "same" : "differs", len, v->out_len,
			 c->in_bytes, c->out_bytes);
	free(got);
}

static void test_vectors_whole(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		const struct vec *v = &vectors[i];
		struct evbuffer *out = new_buf();
		struct dotcodec c;
		bool done;

		dotcodec_init(&c);
		size_t n = feed_cut(&c, v->in, v->in_len, NULL, 0, out, &done);
		check_result(v, &c, n, done, out);
		evbuffer_free(out);
	}
}

static void test_vectors_split_everywhere(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		const struct vec *v = &vectors[i];
		for (size_t a = 0; a <= v->in_len; a++) {
			for (size_t b = a; b <= v->in_len; b++) {
				size_t cuts[2] = { a, b };
				struct evbuffer *out = new_buf();
				struct dotcodec c;
				bool done;

				dotcodec_init(&c);
				size_t n = feed_cut(&c, v->in, v->in_len, cuts, 2,
						    out, &done);
				check_result(v, &c, n, done, out);
				evbuffer_free(out);
			}
		}
	}
}

static void test_vectors_byte_by_byte(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		const struct vec *v = &vectors[i];
		size_t cuts[64];
		struct evbuffer *out = new_buf();
		struct dotcodec c;
		bool done;

		assert_true(v->in_len <= sizeof cuts / sizeof cuts[0]);
		for (size_t k = 0; k < v->in_len; k++)
			cuts[k] = k + 1;
		dotcodec_init(&c);
		size_t n = feed_cut(&c, v->in, v->in_len, cuts, v->in_len, out, &done);
		check_result(v, &c, n, done, out);
		evbuffer_free(out);
	}
}

static void test_discard_mode_finds_same_end(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		const struct vec *v = &vectors[i];
		size_t want = v->consumed == ALL ? v->in_len : v->consumed;
		for (size_t a = 0; a <= v->in_len; a++) {
			size_t cuts[1] = { a };
			struct dotcodec c;
			bool done;

			dotcodec_init(&c);
			size_t n = feed_cut(&c, v->in, v->in_len, cuts, 1, NULL, &done);
			assert_int_equal(n, want);
			assert_int_equal(done, v->done);
			assert_int_equal(c.in_bytes, want);
			assert_int_equal(c.out_bytes, 0);
		}
	}
}

static void test_feed_after_done_consumes_nothing(void **state)
{
	(void)state;
	struct evbuffer *out = new_buf();
	struct dotcodec c;
	bool done = false;

	dotcodec_init(&c);
	assert_int_equal(dotcodec_feed(&c, S(".\r\n"), out, &done), 3);
	assert_true(done);
	done = false;
	assert_int_equal(dotcodec_feed(&c, S("MAIL FROM:<>\r\n"), out, &done), 0);
	assert_true(done);
	assert_int_equal(evbuffer_get_length(out), 3);
	evbuffer_free(out);
}

static void test_reinit_starts_new_message(void **state)
{
	(void)state;
	struct evbuffer *out = new_buf();
	struct dotcodec c;
	bool done;
	size_t len;

	dotcodec_init(&c);
	assert_int_equal(dotcodec_feed(&c, S("x\n"), out, &done), 2);
	dotcodec_init(&c);
	evbuffer_drain(out, evbuffer_get_length(out));
	assert_int_equal(dotcodec_feed(&c, S(".\r\n"), out, &done), 3);
	assert_true(done);
	char *got = drain(out, &len);
	assert_bytes(got, len, S(".\r\n"));
	free(got);
	evbuffer_free(out);
}

#define MB (1024 * 1024)

static void test_one_megabyte_line(void **state)
{
	(void)state;
	size_t len = MB + 5;
	char *in = malloc(len);
	struct evbuffer *out = new_buf();
	struct dotcodec c;
	bool done;

	assert_non_null(in);
	memset(in, 'x', MB);
	memcpy(in + MB, "\r\n.\r\n", 5);
	static const size_t chunks[] = { 4096, 65536 + 7, MB + 5 };
	for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
		size_t pos = 0;
		dotcodec_init(&c);
		done = false;
		while (!done) {
			size_t n = len - pos < chunks[k] ? len - pos : chunks[k];
			assert_int_equal(dotcodec_feed(&c, in + pos, n, out, &done), n);
			pos += n;
		}
		assert_int_equal(pos, len);
		size_t got_len;
		char *got = drain(out, &got_len);
		assert_bytes(got, got_len, in, len);
		free(got);
	}
	free(in);
	evbuffer_free(out);
}

/* Lines ended by bare CR only and no LF anywhere: the output must still come
 * out right, and in linear time (a rescan per line would take minutes). */
static void test_megabyte_of_bare_cr_lines(void **state)
{
	(void)state;
	size_t lines = MB / 2, len = lines * 2;
	char *in = malloc(len);
	struct evbuffer *out = new_buf();
	struct dotcodec c;
	bool done;

	assert_non_null(in);
	for (size_t i = 0; i < lines; i++)
		memcpy(in + 2 * i, "x\r", 2);
	dotcodec_init(&c);
	assert_int_equal(dotcodec_feed(&c, in, len, out, &done), len);
	assert_false(done);
	assert_int_equal(evbuffer_get_length(out), lines * 3 - 1);
	size_t got_len;
	char *got = drain(out, &got_len);
	for (size_t i = 0; i + 1 < lines; i++)
		assert_memory_equal(got + 3 * i, "x\r\n", 3);
	free(got);
	free(in);
	evbuffer_free(out);
}

static void test_append_failure_reported(void **state)
{
	(void)state;
	struct evbuffer *out = new_buf();
	struct dotcodec c;
	bool done;

	assert_int_equal(evbuffer_freeze(out, 0), 0);
	dotcodec_init(&c);
	assert_int_equal(dotcodec_feed(&c, S("hello\r\n.\r\n"), out, &done),
			 (size_t)-1);
	evbuffer_free(out);
}

static void assert_same_codec(const struct dotcodec *a, const struct dotcodec *b)
{
	assert_int_equal(a->state, b->state);
	assert_int_equal(a->out_bol, b->out_bol);
	assert_int_equal(a->in_bytes, b->in_bytes);
	assert_int_equal(a->out_bytes, b->out_bytes);
}

static void freeze_at_limit(struct evbuffer *b, const struct evbuffer_cb_info *info,
			    void *arg)
{
	const size_t *limit = arg;

	(void)info;
	if (evbuffer_get_length(b) >= *limit)
		assert_int_equal(evbuffer_freeze(b, 0), 0);
}

/*
 * What the proxy does when the backend buffer fails: feed the same bytes
 * again with OUT = NULL. A failed call must leave the codec untouched, or the
 * second pass would find a different end (e.g. "abc" then "\r\n.x": failing
 * at the dot must not leave the codec believing it is after "\r\n.").
 */
static void test_failure_then_discard_refeed(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		const struct vec *v = &vectors[i];
		size_t want = v->consumed == ALL ? v->in_len : v->consumed;
		for (size_t a = 0; a <= v->in_len; a++) {
			for (size_t limit = 1; limit <= v->out_len + 1; limit++) {
				struct evbuffer *buf = new_buf();
				struct evbuffer *out = buf;
				struct dotcodec c, before;
				size_t ends[2] = { a, v->in_len }, pos = 0;
				bool done = false;

				assert_non_null(evbuffer_add_cb(buf, freeze_at_limit, &limit));
				dotcodec_init(&c);
				for (size_t k = 0; k < 2 && !done; k++) {
					before = c;
					size_t n = dotcodec_feed(&c, v->in + pos,
								 ends[k] - pos, out, &done);
					if (n == (size_t)-1) {
						assert_same_codec(&c, &before);
						out = NULL;
						n = dotcodec_feed(&c, v->in + pos,
								  ends[k] - pos, out, &done);
					}
					assert_int_not_equal(n, (size_t)-1);
					pos += n;
				}
				if (pos != want || done != v->done)
					fail_msg("%s: cut %zu, limit %zu: consumed %zu "
						 "(want %zu), done %d", v->name, a, limit,
						 pos, want, done);
				evbuffer_free(buf);
			}
		}
	}
}

static void test_failure_keeps_state_after_crlf(void **state)
{
	(void)state;
	struct evbuffer *out = new_buf();
	struct dotcodec c, before;
	bool done;
	static const char rest[] = "\r\n.x\r\nMAIL FROM:<a@b>\r\n.\r\n";

	dotcodec_init(&c);
	assert_int_equal(dotcodec_feed(&c, S("abc"), out, &done), 3);
	assert_int_equal(evbuffer_freeze(out, 0), 0);
	before = c;
	assert_int_equal(dotcodec_feed(&c, S(rest), out, &done), (size_t)-1);
	assert_same_codec(&c, &before);
	assert_int_equal(dotcodec_feed(&c, S(rest), NULL, &done), sizeof rest - 1);
	assert_true(done);
	evbuffer_free(out);
}

/*
 * Reference model, written line-wise rather than as a state machine: find
 * the first ".\r\n" that follows "\r\n" (or the start), cut the body into
 * client lines at "\r\n", drop one leading dot per client line, cut again at
 * every remaining CR and LF, stuff and terminate each output line.
 */
struct ref {
	char *out;
	size_t len, cap;
};

static void ref_put(struct ref *r, const char *s, size_t n)
{
	if (n == 0)
		return;
	if (r->len + n > r->cap) {
		r->cap = (r->len + n) * 2;
		r->out = realloc(r->out, r->cap);
		assert_non_null(r->out);
	}
	memcpy(r->out + r->len, s, n);
	r->len += n;
}

static bool ref_find_end(const char *in, size_t len, size_t *end)
{
	for (size_t p = 0; p + 3 <= len; p++) {
		if (memcmp(in + p, ".\r\n", 3) != 0)
			continue;
		if (p == 0 || (p >= 2 && memcmp(in + p - 2, "\r\n", 2) == 0)) {
			*end = p;
			return true;
		}
	}
	return false;
}

static void ref_output_line(struct ref *r, const char *s, size_t n)
{
	if (n > 0 && s[0] == '.')
		ref_put(r, ".", 1);
	ref_put(r, s, n);
	ref_put(r, "\r\n", 2);
}

static void ref_client_line(struct ref *r, const char *s, size_t n)
{
	size_t start;

	if (n > 0 && s[0] == '.') {
		s++;
		n--;
	}
	start = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r' || s[i] == '\n') {
			ref_output_line(r, s + start, i - start);
			start = i + 1;
		}
	}
	ref_output_line(r, s + start, n - start);
}

static void ref_encode(const char *in, size_t body_len, struct ref *r)
{
	size_t start = 0;

	for (size_t i = 0; i + 1 < body_len; i++) {
		if (in[i] == '\r' && in[i + 1] == '\n') {
			ref_client_line(r, in + start, i - start);
			start = i + 2;
			i++;
		}
	}
	assert_int_equal(start, body_len);
	ref_put(r, ".\r\n", 3);
}

/* Output invariants that hold whatever the input: only CRLF line ends, and
 * the only line that is exactly "." is the last one. */
static void assert_canonical(const char *s, size_t len)
{
	size_t bol = 0;

	assert_true(len >= 3);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r') {
			assert_true(i + 1 < len && s[i + 1] == '\n');
		} else if (s[i] == '\n') {
			assert_true(i > 0 && s[i - 1] == '\r');
			bool lone_dot = i - bol == 2 && s[bol] == '.';
			assert_int_equal(lone_dot, i + 1 == len);
			bol = i + 1;
		}
	}
	assert_int_equal(bol, len);
}

static uint32_t rng_next(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static void test_random_against_reference(void **state)
{
	(void)state;
	static const char alphabet[] = { '\r', '\n', '.', 'a', '\0' };
	uint32_t seed = 0x9e3779b9u;
	char in[64];

	for (int iter = 0; iter < 50000; iter++) {
		size_t n = rng_next(&seed) % 40;
		for (size_t i = 0; i < n; i++)
			in[i] = alphabet[rng_next(&seed) % sizeof alphabet];
		memcpy(in + n, "\r\n.\r\nX", 6);
		size_t len = n + 6;

		size_t end = 0;
		assert_true(ref_find_end(in, len, &end));
		struct ref r = { 0 };
		ref_encode(in, end, &r);

		size_t cut = rng_next(&seed) % (len + 1);
		struct evbuffer *out = new_buf();
		struct dotcodec c;
		bool done;
		dotcodec_init(&c);
		size_t consumed = feed_cut(&c, in, len, &cut, 1, out, &done);
		size_t got_len;
		char *got = drain(out, &got_len);

		assert_true(done);
		assert_int_equal(consumed, end + 3);
		assert_bytes(got, got_len, r.out, r.len);
		assert_canonical(got, got_len);
		free(got);
		free(r.out);
		evbuffer_free(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors_whole),
		cmocka_unit_test(test_vectors_split_everywhere),
		cmocka_unit_test(test_vectors_byte_by_byte),
		cmocka_unit_test(test_discard_mode_finds_same_end),
		cmocka_unit_test(test_feed_after_done_consumes_nothing),
		cmocka_unit_test(test_reinit_starts_new_message),
		cmocka_unit_test(test_one_megabyte_line),
		cmocka_unit_test(test_megabyte_of_bare_cr_lines),
		cmocka_unit_test(test_append_failure_reported),
		cmocka_unit_test(test_failure_then_discard_refeed),
		cmocka_unit_test(test_failure_keeps_state_after_crlf),
		cmocka_unit_test(test_random_against_reference),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
