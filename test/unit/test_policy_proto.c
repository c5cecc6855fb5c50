/* The policy protocol's parser and answers (lib/policy_proto.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy_proto.h"

/* An exactly sized heap copy: ASan reports a read past the length given.
 * The copy lives until the next call, so values can be checked. */
static char *copy;

static enum policy_status parse(const char *s, size_t n, struct policy_request *r,
				const char **why)
{
	free(copy);
	copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, s, n);
	return policy_parse(copy, n, r, why);
}

static enum policy_status parse_str(const char *s, struct policy_request *r, const char **why)
{
	return parse(s, strlen(s), r, why);
}

static void assert_value(const struct policy_request *r, enum policy_attr a, const char *want)
{
	assert_non_null(r->v[a].p);
	assert_int_equal(r->v[a].len, strlen(want));
	assert_memory_equal(r->v[a].p, want, strlen(want));
}

static const char typical[] =
	"request=smtpd_access_policy\n"
	"protocol_state=RCPT\n"
	"protocol_name=ESMTP\n"
	"client_address=192.0.2.7\n"
	"client_name=mail.sender.example\n"
	"reverse_client_name=mail.sender.example\n"
	"helo_name=mail.sender.example\n"
	"sender=alice@sender.example\n"
	"recipient=bob@test.example\n"
	"recipient_count=0\n"
	"queue_id=\n"
	"instance=123.456.7\n"
	"size=0\n"
	"encryption_protocol=TLSv1.3\n"
	"ccert_subject=\n"
	"\n";

static void test_typical(void **state)
{
	(void)state;
	struct policy_request r;
	assert_int_equal(parse_str(typical, &r, NULL), POLICY_OK);
	assert_int_equal(r.len, strlen(typical));
	assert_int_equal(r.nattrs, 15);
	assert_true(policy_value_is(&r, PA_REQUEST, "smtpd_access_policy"));
	assert_true(policy_value_is(&r, PA_PROTOCOL_STATE, "RCPT"));
	assert_false(policy_value_is(&r, PA_PROTOCOL_STATE, "RCP"));
	assert_value(&r, PA_CLIENT_ADDRESS, "192.0.2.7");
	assert_value(&r, PA_CLIENT_NAME, "mail.sender.example");
	assert_value(&r, PA_REVERSE_CLIENT_NAME, "mail.sender.example");
	assert_value(&r, PA_HELO_NAME, "mail.sender.example");
	assert_value(&r, PA_SENDER, "alice@sender.example");
	assert_value(&r, PA_RECIPIENT, "bob@test.example");
	assert_value(&r, PA_ENCRYPTION_PROTOCOL, "TLSv1.3");
	assert_value(&r, PA_INSTANCE, "123.456.7");
}

/* Every proper prefix needs more; the request does not read past its
 * empty line (the next request's bytes are left alone). */
static void test_prefixes_and_pipelining(void **state)
{
	(void)state;
	struct policy_request r;
	size_t n = strlen(typical);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(parse(typical, i, &r, NULL), POLICY_MORE);
	char two[2 * sizeof typical];
	snprintf(two, sizeof two, "%s%s", typical, typical);
	assert_int_equal(parse_str(two, &r, NULL), POLICY_OK);
	assert_int_equal(r.len, n);
	assert_int_equal(parse(two + n, n, &r, NULL), POLICY_OK);
	/* a value sent empty is there, and empty */
	assert_int_equal(parse_str("sender=\n\n", &r, NULL), POLICY_OK);
	assert_non_null(r.v[PA_SENDER].p);
	assert_int_equal(r.v[PA_SENDER].len, 0);
	assert_null(r.v[PA_RECIPIENT].p);
	/* the empty request, and CRLF line ends */
	assert_int_equal(parse_str("\n", &r, NULL), POLICY_OK);
	assert_int_equal(r.nattrs, 0);
	assert_int_equal(parse_str("sender=a@b.example\r\n\r\n", &r, NULL), POLICY_OK);
	assert_value(&r, PA_SENDER, "a@b.example");
	assert_int_equal(r.len, strlen("sender=a@b.example\r\n\r\n"));
}

static void test_garbage(void **state)
{
	(void)state;
	struct policy_request r;
	const char *why = NULL;
	static const char *const bad[] = {
		"GET / HTTP/1.0\n",           /* no '=' */
		"=value\n",                   /* no name */
		"Sender=a@b\n",               /* names are lower case */
		"send er=a@b\n",
		"sender=a\001b\n",            /* control byte */
		"sender=a\rb\n",
		"recipient=a\n\x00\n",        /* a NUL line */
		"sender=a@b\nsender=c@d\n\n", /* a known attribute twice */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why = NULL;
		size_t n = strlen(bad[i]) + (i == 6 ? 2 : 0);
		assert_int_equal(parse(bad[i], n, &r, &why), POLICY_BAD);
		assert_non_null(why);
	}
	/* unknown attributes may repeat; bytes above 127 are values */
	assert_int_equal(parse_str("x=1\nx=2\nsender=j\xc3\xa9@b.example\n\n", &r, NULL), POLICY_OK);
}

static void test_bounds(void **state)
{
	(void)state;
	struct policy_request r;
	const char *why = NULL;
	/* a line at the bound is fine, one byte more is not, ended or not */
	char *line = malloc(POLICY_LINE_MAX + 2);
	assert_non_null(line);
	memset(line, 'a', POLICY_LINE_MAX + 1);
	memcpy(line, "x=", 2);
	line[POLICY_LINE_MAX - 1] = '\n';
	line[POLICY_LINE_MAX] = '\n';
	assert_int_equal(parse(line, POLICY_LINE_MAX + 1, &r, NULL), POLICY_OK);
	line[POLICY_LINE_MAX - 1] = 'a';
	assert_int_equal(parse(line, POLICY_LINE_MAX, &r, &why), POLICY_BAD);
	assert_string_equal(why, "a line is too long");
	assert_int_equal(parse(line, POLICY_LINE_MAX - 1, &r, NULL), POLICY_MORE);
	free(line);

	/* attributes: POLICY_ATTRS_MAX lines pass, one more does not */
	char many[POLICY_REQUEST_MAX];
	size_t n = 0;
	for (int i = 0; i < POLICY_ATTRS_MAX; i++)
		n += (size_t)snprintf(many + n, sizeof many - n, "a=%d\n", i);
	memcpy(many + n, "\n", 1);
	assert_int_equal(parse(many, n + 1, &r, NULL), POLICY_OK);
	memcpy(many + n, "a=x\n\n", 5);
	assert_int_equal(parse(many, n + 5, &r, &why), POLICY_BAD);
	assert_string_equal(why, "too many attributes");

	/* the whole request: long lines, few of them, never ended */
	char *big = malloc(POLICY_REQUEST_MAX + 1000);
	assert_non_null(big);
	size_t off = 0;
	while (off + 1000 <= POLICY_REQUEST_MAX + 1000) {
		memcpy(big + off, "x=", 2);
		memset(big + off + 2, 'v', 997);
		big[off + 999] = '\n';
		off += 1000;
	}
	assert_int_equal(parse(big, POLICY_REQUEST_MAX - 1, &r, NULL), POLICY_MORE);
	assert_int_equal(parse(big, off, &r, &why), POLICY_BAD);
	assert_string_equal(why, "the request is too long");
	free(big);
}

static void test_reply_text(void **state)
{
	(void)state;
	char buf[600];
	assert_string_equal(policy_reply_text("450 4.2.0 <bob@x.example>: Recipient address rejected: "
					      "Greylisted, retry in 300 seconds",
					      "bob@x.example", buf, sizeof buf),
			    "4.2.0 Greylisted, retry in 300 seconds");
	assert_string_equal(policy_reply_text("451 4.3.0 <bob@x.example>: Temporary lookup failure",
					      "bob@x.example", buf, sizeof buf),
			    "4.3.0 Temporary lookup failure");
	/* another recipient's name stays */
	assert_string_equal(policy_reply_text("554 5.7.1 <eve@x.example>: Relay access denied",
					      "bob@x.example", buf, sizeof buf),
			    "5.7.1 <eve@x.example>: Relay access denied");
	assert_string_equal(policy_reply_text("450 Greylisted", "b@x", buf, sizeof buf), "Greylisted");
	assert_string_equal(policy_reply_text("450 4.2 text", "b@x", buf, sizeof buf), "4.2 text");
	assert_string_equal(policy_reply_text("odd", "b@x", buf, sizeof buf), "odd");
}

static void test_answer(void **state)
{
	(void)state;
	char out[POLICY_ANSWER_MAX];
	size_t n = policy_answer(out, sizeof out, "DUNNO", NULL);
	assert_int_equal(n, strlen("action=DUNNO\n\n"));
	assert_string_equal(out, "action=DUNNO\n\n");
	policy_answer(out, sizeof out, "DEFER_IF_PERMIT", "4.2.0 a\nb\rc");
	assert_string_equal(out, "action=DEFER_IF_PERMIT 4.2.0 a b c\n\n");
	char big[3000];
	memset(big, 'z', sizeof big - 1);
	big[sizeof big - 1] = 0;
	n = policy_answer(out, sizeof out, "REJECT", big);
	assert_int_equal(n, sizeof out - 1);
	assert_int_equal(strlen(out), n);
	assert_memory_equal(out + n - 3, "z\n\n", 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_typical),
		cmocka_unit_test(test_prefixes_and_pipelining),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_reply_text),
		cmocka_unit_test(test_answer),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	free(copy);
	return rc;
}
