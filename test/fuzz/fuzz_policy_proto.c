/*
 * fuzz_policy_proto: the policy protocol parser and answer writer
 * (lib/policy_proto.h).
 *
 * The input is the start of a policy connection's byte stream. It is
 * parsed in full and as every prefix of it (each an exactly sized heap
 * copy, so that ASan sees a read past the length given). Checked:
 *  - OK: the request length is at most the input's and POLICY_REQUEST_MAX,
 *    ends in an empty line ("\n" or "\r\n", at the start or after a line),
 *    every value lies inside it with no control byte, the attribute count
 *    is at most POLICY_ATTRS_MAX;
 *  - MORE only for inputs shorter than POLICY_REQUEST_MAX;
 *  - prefixes agree: a prefix shorter than a request's length L needs more
 *    or is bad; from L on every prefix gives the same length; a bad prefix
 *    stays bad when longer;
 *  - the answer for the first line as text is one line plus the empty one.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "policy_proto.h"

static enum policy_status parse_copy(const uint8_t *data, size_t n, struct policy_request *r)
{
	char *b = malloc(n ? n : 1);
	CHECK(b != NULL);
	if (n)
		memcpy(b, data, n);
	enum policy_status st = policy_parse(b, n, r, NULL);
	if (st == POLICY_OK) {
		CHECK(r->len <= n && r->len <= POLICY_REQUEST_MAX);
		CHECK(b[r->len - 1] == '\n');
		/* the empty line: "\n" or "\r\n", at the start or after a line */
		size_t k = r->len - 1;
		if (k > 0 && b[k - 1] == '\r')
			k--;
		CHECK(k == 0 || b[k - 1] == '\n');
		CHECK(r->nattrs <= POLICY_ATTRS_MAX);
		for (int a = 0; a < PA_COUNT; a++) {
			const struct policy_value *v = &r->v[a];
			if (!v->p)
				continue;
			CHECK(INSIDE(v->p, v->len, b, r->len));
			for (size_t i = 0; i < v->len; i++)
				CHECK((unsigned char)v->p[i] >= 0x20 && v->p[i] != 0x7f);
		}
	}
	free(b);
	return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy_request full, r;
	enum policy_status st = parse_copy(data, size, &full);
	if (st == POLICY_MORE)
		CHECK(size < POLICY_REQUEST_MAX);
	bool was_bad = false;
	for (size_t i = 0; i <= size; i++) {
		enum policy_status p = parse_copy(data, i, &r);
		if (was_bad)
			CHECK(p == POLICY_BAD);
		was_bad = p == POLICY_BAD;
		if (st == POLICY_OK) {
			if (i < full.len)
				CHECK(p != POLICY_OK);
			else
				CHECK(p == POLICY_OK && r.len == full.len);
		}
	}
	/* the answer: whatever the text, one line and the empty one */
	char text[256], out[POLICY_ANSWER_MAX];
	size_t tl = size < sizeof text - 1 ? size : sizeof text - 1;
	memcpy(text, data, tl);
	text[tl] = 0;
	size_t n = policy_answer(out, sizeof out, "DEFER_IF_PERMIT", text);
	CHECK(n >= 2 && n < sizeof out && out[n] == 0);
	CHECK(out[n - 1] == '\n' && out[n - 2] == '\n' && memchr(out, '\n', n) == out + n - 2);
	return 0;
}
