#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_cmd.h"

#define S(lit) lit, sizeof lit - 1

static void assert_span(const char *p, size_t len, const char *want)
{
	assert_int_equal(len, strlen(want));
	if (len)
		assert_memory_equal(p, want, len);
}

/* Parses a copy placed at the very end of a heap block, so that ASan catches
 * any read past LEN (the parser gets no NUL terminator to stop at). */
static char *tight_copy(const char *s, size_t len)
{
	char *p = malloc(len ? len : 1);
	assert_non_null(p);
	memcpy(p, s, len);
	return p;
}

static struct smtp_cmd cmd(const char *line, char **owned)
{
	struct smtp_cmd c;
	size_t len = strlen(line);

	*owned = tight_copy(line, len);
	memset(&c, 0xa5, sizeof c);
	smtp_cmd_parse(*owned, len, &c);
	return c;
}

static void test_cmd_verbs_case_insensitive(void **state)
{
	(void)state;
	static const struct {
		const char *line;
		enum smtp_verb verb;
	} t[] = {
		{ "HELO a.example", SMTP_VERB_HELO },
		{ "ehlo a.example", SMTP_VERB_EHLO },
		{ "MaIl FROM:<>", SMTP_VERB_MAIL },
		{ "rcpt TO:<a@b>", SMTP_VERB_RCPT },
		{ "DATA", SMTP_VERB_DATA },
		{ "rset", SMTP_VERB_RSET },
		{ "NOOP", SMTP_VERB_NOOP },
		{ "help", SMTP_VERB_HELP },
		{ "QUIT", SMTP_VERB_QUIT },
		{ "VRFY postmaster", SMTP_VERB_VRFY },
		{ "EXPN list", SMTP_VERB_EXPN },
		{ "ETRN example.org", SMTP_VERB_ETRN },
		{ "StartTLS", SMTP_VERB_STARTTLS },
		{ "AUTH PLAIN", SMTP_VERB_AUTH },
		{ "BDAT 10 LAST", SMTP_VERB_BDAT },
		{ "XCLIENT ADDR=1.2.3.4", SMTP_VERB_XCLIENT },
		{ "DATAX", SMTP_VERB_UNKNOWN },
		{ "DAT", SMTP_VERB_UNKNOWN },
		{ "MAIL:FROM:<>", SMTP_VERB_UNKNOWN },
		{ "GET / HTTP/1.0", SMTP_VERB_UNKNOWN },
		{ " DATA", SMTP_VERB_UNKNOWN },
		{ "", SMTP_VERB_UNKNOWN },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char *own;
		struct smtp_cmd c = cmd(t[i].line, &own);
		if (c.verb != t[i].verb)
			fail_msg("\"%s\": verb %d, want %d", t[i].line, c.verb, t[i].verb);
		free(own);
	}
}

static void test_cmd_name_and_arg(void **state)
{
	(void)state;
	char *own;
	struct smtp_cmd c = cmd("mail FROM:<a@b> SIZE=10", &own);

	assert_int_equal(c.verb, SMTP_VERB_MAIL);
	assert_ptr_equal(c.name, own);
	assert_span(c.name, c.name_len, "mail");
	assert_span(c.arg, c.arg_len, "FROM:<a@b> SIZE=10");
	free(own);
}

static void test_cmd_blanks(void **state)
{
	(void)state;
	char *own;
	struct smtp_cmd c = cmd("EHLO \t  client.example \t ", &own);

	assert_int_equal(c.verb, SMTP_VERB_EHLO);
	assert_span(c.name, c.name_len, "EHLO");
	assert_span(c.arg, c.arg_len, "client.example");
	free(own);

	c = cmd("QUIT   ", &own);
	assert_int_equal(c.verb, SMTP_VERB_QUIT);
	assert_span(c.arg, c.arg_len, "");
	free(own);

	c = cmd("NOOP\tx", &own);
	assert_int_equal(c.verb, SMTP_VERB_NOOP);
	assert_span(c.arg, c.arg_len, "x");
	free(own);

	/* Inner blanks of the argument are the client's business. */
	c = cmd("HELP  a  b", &own);
	assert_span(c.arg, c.arg_len, "a  b");
	free(own);
}

static void test_cmd_leading_blank_is_empty_verb(void **state)
{
	(void)state;
	char *own;
	struct smtp_cmd c = cmd("  DATA", &own);

	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_int_equal(c.name_len, 0);
	assert_span(c.arg, c.arg_len, "DATA");
	free(own);
}

static void test_cmd_empty_and_blank_lines(void **state)
{
	(void)state;
	struct smtp_cmd c;
	char *own;

	smtp_cmd_parse("", 0, &c);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_int_equal(c.name_len, 0);
	assert_int_equal(c.arg_len, 0);

	c = cmd(" \t ", &own);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_int_equal(c.name_len, 0);
	assert_int_equal(c.arg_len, 0);
	free(own);
}

static void test_cmd_stops_at_len(void **state)
{
	(void)state;
	struct smtp_cmd c;

	/* Only the first four bytes are the line. */
	smtp_cmd_parse("QUITTER now", 4, &c);
	assert_int_equal(c.verb, SMTP_VERB_QUIT);
	assert_int_equal(c.arg_len, 0);

	smtp_cmd_parse("RSET x", 6 - 2, &c);
	assert_int_equal(c.verb, SMTP_VERB_RSET);
	assert_int_equal(c.arg_len, 0);
}

static void test_cmd_nul_in_verb(void **state)
{
	(void)state;
	struct smtp_cmd c;

	smtp_cmd_parse(S("DA\0A"), &c);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_int_equal(c.name_len, 4);
	smtp_cmd_parse(S("DATA\0"), &c);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
}

static void test_cmd_long_line(void **state)
{
	(void)state;
	size_t len = 100000;
	char *line = malloc(len);
	struct smtp_cmd c;

	assert_non_null(line);
	memcpy(line, "HELO ", 5);
	memset(line + 5, 'h', len - 5);
	smtp_cmd_parse(line, len, &c);
	assert_int_equal(c.verb, SMTP_VERB_HELO);
	assert_ptr_equal(c.arg, line + 5);
	assert_int_equal(c.arg_len, len - 5);

	memset(line, 'X', len);
	smtp_cmd_parse(line, len, &c);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_int_equal(c.name_len, len);
	assert_int_equal(c.arg_len, 0);
	free(line);
}

static void test_verb_names(void **state)
{
	(void)state;
	assert_string_equal(smtp_verb_name(SMTP_VERB_MAIL), "MAIL");
	assert_string_equal(smtp_verb_name(SMTP_VERB_STARTTLS), "STARTTLS");
	assert_string_equal(smtp_verb_name(SMTP_VERB_XCLIENT), "XCLIENT");
	assert_string_equal(smtp_verb_name(SMTP_VERB_UNKNOWN), "UNKNOWN");
	assert_string_equal(smtp_verb_name((enum smtp_verb)999), "UNKNOWN");

	/* Every verb's name parses back to the verb. */
	for (int v = SMTP_VERB_HELO; v <= SMTP_VERB_XCLIENT; v++) {
		const char *name = smtp_verb_name((enum smtp_verb)v);
		struct smtp_cmd c;
		smtp_cmd_parse(name, strlen(name), &c);
		assert_int_equal(c.verb, v);
	}
}

/* Parses ARG from a tight heap copy; the copy lives in *OWNED because
 * params point into it. */
static enum smtp_path_status path(const char *arg, size_t len, const char *kw,
				  struct smtp_path *p, char **owned)
{
	*owned = tight_copy(arg, len);
	memset(p, 0xa5, sizeof *p);
	return smtp_path_parse(*owned, len, kw, p);
}

struct path_case {
	const char *arg;
	const char *kw;
	enum smtp_path_status st;
	const char *addr;   /* when OK */
	const char *domain; /* when OK */
	const char *params; /* when OK */
};

static const struct path_case path_cases[] = {
	{ "FROM:<a@example.org>", "FROM:", SMTP_PATH_OK, "a@example.org",
	  "example.org", "" },
	{ "from:<a@example.org>", "FROM:", SMTP_PATH_OK, "a@example.org",
	  "example.org", "" },
	{ "To:<B@Example.ORG>", "TO:", SMTP_PATH_OK, "B@Example.ORG", "Example.ORG",
	  "" },
	{ "FROM:<>", "FROM:", SMTP_PATH_OK, "", "", "" },
	{ "FROM: <>", "FROM:", SMTP_PATH_OK, "", "", "" },
	{ "FROM:<> BODY=8BITMIME", "FROM:", SMTP_PATH_OK, "", "", "BODY=8BITMIME" },
	{ "FROM: \t <a@b.example>", "FROM:", SMTP_PATH_OK, "a@b.example",
	  "b.example", "" },
	{ "FROM:a@b.example", "FROM:", SMTP_PATH_OK, "a@b.example", "b.example", "" },
	{ "FROM: a@b.example SIZE=5", "FROM:", SMTP_PATH_OK, "a@b.example",
	  "b.example", "SIZE=5" },
	{ "TO:postmaster", "TO:", SMTP_PATH_OK, "postmaster", "", "" },
	{ "TO:<Postmaster>", "TO:", SMTP_PATH_OK, "Postmaster", "", "" },
	{ "FROM:<\"john doe\"@example.org>", "FROM:", SMTP_PATH_OK,
	  "\"john doe\"@example.org", "example.org", "" },
	{ "FROM:\"john doe\"@example.org SIZE=1", "FROM:", SMTP_PATH_OK,
	  "\"john doe\"@example.org", "example.org", "SIZE=1" },
	{ "FROM:<\"a@b\"@c.example>", "FROM:", SMTP_PATH_OK, "\"a@b\"@c.example",
	  "c.example", "" },
	{ "FROM:<\"a\\\"b>\"@c.example>", "FROM:", SMTP_PATH_OK,
	  "\"a\\\"b>\"@c.example", "c.example", "" },
	{ "FROM:<\"@\">", "FROM:", SMTP_PATH_OK, "\"@\"", "", "" },
	{ "TO:<@a.example,@b.example:user@c.example>", "TO:", SMTP_PATH_OK,
	  "user@c.example", "c.example", "" },
	{ "TO:<@a.example:user@c.example> NOTIFY=NEVER", "TO:", SMTP_PATH_OK,
	  "user@c.example", "c.example", "NOTIFY=NEVER" },
	{ "TO:<@[192.0.2.1],@[IPv6:2001:db8::1]:u@c.example>", "TO:", SMTP_PATH_OK,
	  "u@c.example", "c.example", "" },
	{ "TO:<user@[192.0.2.1]>", "TO:", SMTP_PATH_OK, "user@[192.0.2.1]",
	  "[192.0.2.1]", "" },
	{ "TO:<user@[IPv6:2001:db8::1]>", "TO:", SMTP_PATH_OK,
	  "user@[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]", "" },
	{ "TO:<j\xc3\xb6rg@b\xc3\xbc" "cher.example>", "TO:", SMTP_PATH_OK,
	  "j\xc3\xb6rg@b\xc3\xbc" "cher.example", "b\xc3\xbc" "cher.example", "" },
	{ "FROM:<a@b.example>  SIZE=1000   BODY=8BITMIME  ", "FROM:", SMTP_PATH_OK,
	  "a@b.example", "b.example", "SIZE=1000   BODY=8BITMIME" },
	{ "FROM:<a@b.example> SMTPUTF8 ENVID=x+2Bq RET=HDRS", "FROM:", SMTP_PATH_OK,
	  "a@b.example", "b.example", "SMTPUTF8 ENVID=x+2Bq RET=HDRS" },
	{ "TO:<a@b.example> ORCPT=rfc822;a@b.example", "TO:", SMTP_PATH_OK,
	  "a@b.example", "b.example", "ORCPT=rfc822;a@b.example" },
	{ "TO:<a@b.example> ORCPT=utf-8;j\xc3\xb6rg@b.example", "TO:", SMTP_PATH_OK,
	  "a@b.example", "b.example", "ORCPT=utf-8;j\xc3\xb6rg@b.example" },
	{ "FROM:<a@b.example> X-1=y", "FROM:", SMTP_PATH_OK, "a@b.example",
	  "b.example", "X-1=y" },
	{ "FROM:<a@b@c.example>", "FROM:", SMTP_PATH_OK, "a@b@c.example",
	  "c.example", "" },
	{ "FROM:<a@>", "FROM:", SMTP_PATH_OK, "a@", "", "" },

	{ "", "FROM:", SMTP_PATH_NO_KEYWORD, NULL, NULL, NULL },
	{ "<a@b.example>", "FROM:", SMTP_PATH_NO_KEYWORD, NULL, NULL, NULL },
	{ "FROM<a@b.example>", "FROM:", SMTP_PATH_NO_KEYWORD, NULL, NULL, NULL },
	{ "FROM :<a@b.example>", "FROM:", SMTP_PATH_NO_KEYWORD, NULL, NULL, NULL },
	{ " FROM:<a@b.example>", "FROM:", SMTP_PATH_NO_KEYWORD, NULL, NULL, NULL },
	{ "TO:<a@b.example>", "FROM:", SMTP_PATH_NO_KEYWORD, NULL, NULL, NULL },
	{ "FROM:<a@b.example>", "TO:", SMTP_PATH_NO_KEYWORD, NULL, NULL, NULL },
	{ "FRO", "FROM:", SMTP_PATH_NO_KEYWORD, NULL, NULL, NULL },

	{ "FROM:", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:   ", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:<", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:<a@b.example", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:<a@b.example SIZE=1", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:a@b.example>", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:<<a@b.example>>", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:<a b@c.example>", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:< a@b.example>", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:<a@b.example >", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:< >", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:<\"john doe@example.org>", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:\"john doe@example.org", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:<\"a\\", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:<a@b.example>SIZE=1", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:<a(comment)@b.example>", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:<a@b.example,c@d.example>", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:<a\\@b.example>", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "FROM:<a;b@c.example>", "FROM:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "TO:<@a.example>", "TO:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "TO:<@a.example:>", "TO:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "TO:<@:u@c.example>", "TO:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "TO:<@a.example,:u@c.example>", "TO:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "TO:<@a.example;@b:u@c.example>", "TO:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "TO:<@a example:u@c.example>", "TO:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "TO:<@[1.2.3.4:u@c.example>", "TO:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "TO:<@[a>b]:u@c.example>", "TO:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },
	{ "TO:<@a.example:u@c.example", "TO:", SMTP_PATH_SYNTAX, NULL, NULL, NULL },

	{ "FROM:<a@b.example> SIZE=", "FROM:", SMTP_PATH_BAD_PARAM, NULL, NULL, NULL },
	{ "FROM:<a@b.example> =1", "FROM:", SMTP_PATH_BAD_PARAM, NULL, NULL, NULL },
	{ "FROM:<a@b.example> -X=1", "FROM:", SMTP_PATH_BAD_PARAM, NULL, NULL, NULL },
	{ "FROM:<a@b.example> SI_ZE=1", "FROM:", SMTP_PATH_BAD_PARAM, NULL, NULL, NULL },
	{ "FROM:<a@b.example> SIZE=1=2", "FROM:", SMTP_PATH_BAD_PARAM, NULL, NULL, NULL },
	{ "FROM:<a@b.example> SIZE=1 <c@d.example>", "FROM:", SMTP_PATH_BAD_PARAM, NULL, NULL, NULL },
	{ "FROM:<a@b.example> BODY=8BITMIME X=\x7f", "FROM:", SMTP_PATH_BAD_PARAM, NULL, NULL, NULL },
	{ "FROM:<a@b.example> X=\x01", "FROM:", SMTP_PATH_BAD_PARAM, NULL, NULL, NULL },
	{ "FROM:<a@b.example> X=\"y", "FROM:", SMTP_PATH_OK, "a@b.example",
	  "b.example", "X=\"y" },
};

static void test_path_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof path_cases / sizeof path_cases[0]; i++) {
		const struct path_case *t = &path_cases[i];
		struct smtp_path p;
		char *own;
		enum smtp_path_status st = path(t->arg, strlen(t->arg), t->kw, &p, &own);

		if (st != t->st)
			fail_msg("\"%s\": status %d, want %d", t->arg, st, t->st);
		if (st == SMTP_PATH_OK) {
			size_t dlen;
			const char *d = smtp_path_domain(&p, &dlen);
			if (p.addr_len != strlen(t->addr) ||
			    memcmp(p.addr, t->addr, p.addr_len) != 0)
				fail_msg("\"%s\": addr \"%.*s\", want \"%s\"", t->arg,
					 (int)p.addr_len, p.addr, t->addr);
			assert_int_equal(p.addr[p.addr_len], '\0');
			assert_int_equal(p.is_null, t->addr[0] == '\0');
			if (dlen != strlen(t->domain) || memcmp(d, t->domain, dlen) != 0)
				fail_msg("\"%s\": domain \"%.*s\", want \"%s\"", t->arg,
					 (int)dlen, d, t->domain);
			if (p.params_len != strlen(t->params) ||
			    memcmp(p.params, t->params, p.params_len) != 0)
				fail_msg("\"%s\": params \"%.*s\", want \"%s\"", t->arg,
					 (int)p.params_len, p.params, t->params);
			assert_true(p.params >= own &&
				    p.params + p.params_len <= own + strlen(t->arg));
		}
		free(own);
	}
}

static void test_path_at_offset(void **state)
{
	(void)state;
	struct smtp_path p;
	char *own;

	assert_int_equal(path(S("FROM:<\"x@y\"@d.example>"), "FROM:", &p, &own),
			 SMTP_PATH_OK);
	assert_int_equal(p.at, 5);
	free(own);

	assert_int_equal(path(S("TO:<@r.example:u@d.example>"), "TO:", &p, &own),
			 SMTP_PATH_OK);
	assert_int_equal(p.at, 1);
	free(own);

	assert_int_equal(path(S("TO:<@r.example:postmaster>"), "TO:", &p, &own),
			 SMTP_PATH_OK);
	assert_int_equal(p.at, p.addr_len);
	assert_string_equal(p.addr, "postmaster");
	free(own);

	assert_int_equal(path(S("FROM:<>"), "FROM:", &p, &own), SMTP_PATH_OK);
	assert_true(p.is_null);
	assert_int_equal(p.addr_len, 0);
	assert_int_equal(p.at, 0);
	free(own);
}

/* PREFIX, then a mailbox of LOCAL 'l's, '@' and DOMAIN 'd's, then SUFFIX. */
static size_t make_path(char *buf, size_t size, const char *prefix, size_t local,
			size_t domain, const char *suffix)
{
	size_t pl = strlen(prefix), sl = strlen(suffix);
	size_t n = pl + local + 1 + domain + sl;

	assert_true(n <= size);
	memcpy(buf, prefix, pl);
	memset(buf + pl, 'l', local);
	buf[pl + local] = '@';
	memset(buf + pl + local + 1, 'd', domain);
	memcpy(buf + pl + local + 1 + domain, suffix, sl);
	return n;
}

static void test_path_length_limit(void **state)
{
	(void)state;
	char arg[600];
	struct smtp_path p;
	char *own;
	size_t n;

	n = make_path(arg, sizeof arg, "FROM:<", 64, SMTP_PATH_MAX - 65, ">");
	assert_int_equal(path(arg, n, "FROM:", &p, &own), SMTP_PATH_OK);
	assert_int_equal(p.addr_len, SMTP_PATH_MAX);
	assert_int_equal(p.at, 64);
	assert_int_equal(p.addr[SMTP_PATH_MAX], '\0');
	free(own);

	n = make_path(arg, sizeof arg, "FROM:<", 64, SMTP_PATH_MAX - 64, ">");
	assert_int_equal(path(arg, n, "FROM:", &p, &own), SMTP_PATH_TOO_LONG);
	free(own);

	n = make_path(arg, sizeof arg, "FROM:", 64, SMTP_PATH_MAX - 65, " SIZE=1");
	assert_int_equal(path(arg, n, "FROM:", &p, &own), SMTP_PATH_OK);
	assert_int_equal(p.addr_len, SMTP_PATH_MAX);
	free(own);

	n = make_path(arg, sizeof arg, "FROM:", 64, SMTP_PATH_MAX - 64, " SIZE=1");
	assert_int_equal(path(arg, n, "FROM:", &p, &own), SMTP_PATH_TOO_LONG);
	free(own);

	/* Only the mailbox counts, not a source route in front of it. */
	n = make_path(arg, sizeof arg, "TO:<@rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr.example:",
		      64, SMTP_PATH_MAX - 65, ">");
	assert_int_equal(path(arg, n, "TO:", &p, &own), SMTP_PATH_OK);
	assert_int_equal(p.addr_len, SMTP_PATH_MAX);
	assert_int_equal(p.at, 64);
	free(own);
}

static void test_path_huge_argument(void **state)
{
	(void)state;
	size_t len = 200000;
	char *arg = malloc(len);
	struct smtp_path p;
	char *own;

	assert_non_null(arg);
	memcpy(arg, "FROM:<", 6);
	memset(arg + 6, 'a', len - 6);
	assert_int_equal(path(arg, len, "FROM:", &p, &own), SMTP_PATH_SYNTAX);
	free(own);
	arg[len - 1] = '>';
	assert_int_equal(path(arg, len, "FROM:", &p, &own), SMTP_PATH_TOO_LONG);
	free(own);
	free(arg);
}

static void test_path_respects_len(void **state)
{
	(void)state;
	struct smtp_path p;
	const char *arg = "FROM:<a@b.example> SIZE=1 junk=";

	/* The bytes after LEN are not part of the argument. */
	assert_int_equal(smtp_path_parse(arg, 25, "FROM:", &p), SMTP_PATH_OK);
	assert_int_equal(p.params_len, 6);
	assert_memory_equal(p.params, "SIZE=1", 6);
	assert_int_equal(smtp_path_parse(arg, 17, "FROM:", &p), SMTP_PATH_SYNTAX);
	assert_int_equal(smtp_path_parse(arg, 3, "FROM:", &p), SMTP_PATH_NO_KEYWORD);
}

static void test_path_control_chars(void **state)
{
	(void)state;
	struct smtp_path p;
	char *own;

	assert_int_equal(path(S("FROM:<a\0b@c.example>"), "FROM:", &p, &own),
			 SMTP_PATH_SYNTAX);
	free(own);
	assert_int_equal(path(S("FROM:<\"a\0b\"@c.example>"), "FROM:", &p, &own),
			 SMTP_PATH_SYNTAX);
	free(own);
	assert_int_equal(path(S("FROM:<a\rb@c.example>"), "FROM:", &p, &own),
			 SMTP_PATH_SYNTAX);
	free(own);
	assert_int_equal(path(S("FROM:<\"a\\\n\"@c.example>"), "FROM:", &p, &own),
			 SMTP_PATH_SYNTAX);
	free(own);
}

static void test_param_find(void **state)
{
	(void)state;
	const char *params = "SIZE=1000 body=8BITMIME  SMTPUTF8\tRET=HDRS";
	size_t len = strlen(params);
	const char *v;
	size_t vl;

	assert_true(smtp_param_find(params, len, "SIZE", &v, &vl));
	assert_span(v, vl, "1000");
	assert_true(smtp_param_find(params, len, "BODY", &v, &vl));
	assert_span(v, vl, "8BITMIME");
	assert_true(smtp_param_find(params, len, "smtputf8", &v, &vl));
	assert_int_equal(vl, 0);
	assert_true(smtp_param_find(params, len, "RET", &v, &vl));
	assert_span(v, vl, "HDRS");

	assert_false(smtp_param_find(params, len, "SIZ", &v, &vl));
	assert_false(smtp_param_find(params, len, "SIZE=1000", &v, &vl));
	assert_false(smtp_param_find(params, len, "ENVID", &v, &vl));
	assert_false(smtp_param_find(params, len, "8BITMIME", &v, &vl));
	assert_false(smtp_param_find(params, len, "", &v, &vl));
	assert_false(smtp_param_find("", 0, "SIZE", &v, &vl));

	/* bounded by len: RET lies beyond it */
	assert_false(smtp_param_find(params, 33, "RET", &v, &vl));
	assert_true(smtp_param_find(params, 7, "SIZE", &v, &vl));
	assert_span(v, vl, "10");

	/* first occurrence wins */
	assert_true(smtp_param_find(S("A=1 a=2"), "A", &v, &vl));
	assert_span(v, vl, "1");
}

static void test_param_find_on_parsed_path(void **state)
{
	(void)state;
	struct smtp_path p;
	const char *v;
	size_t vl;
	char *own;

	assert_int_equal(path(S("TO:<a@b.example> NOTIFY=SUCCESS,FAILURE "
				"ORCPT=rfc822;a@b.example"),
			      "TO:", &p, &own),
			 SMTP_PATH_OK);
	assert_true(smtp_param_find(p.params, p.params_len, "notify", &v, &vl));
	assert_span(v, vl, "SUCCESS,FAILURE");
	assert_true(smtp_param_find(p.params, p.params_len, "ORCPT", &v, &vl));
	assert_span(v, vl, "rfc822;a@b.example");
	free(own);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cmd_verbs_case_insensitive),
		cmocka_unit_test(test_cmd_name_and_arg),
		cmocka_unit_test(test_cmd_blanks),
		cmocka_unit_test(test_cmd_leading_blank_is_empty_verb),
		cmocka_unit_test(test_cmd_empty_and_blank_lines),
		cmocka_unit_test(test_cmd_stops_at_len),
		cmocka_unit_test(test_cmd_nul_in_verb),
		cmocka_unit_test(test_cmd_long_line),
		cmocka_unit_test(test_verb_names),
		cmocka_unit_test(test_path_table),
		cmocka_unit_test(test_path_at_offset),
		cmocka_unit_test(test_path_length_limit),
		cmocka_unit_test(test_path_huge_argument),
		cmocka_unit_test(test_path_respects_len),
		cmocka_unit_test(test_path_control_chars),
		cmocka_unit_test(test_param_find),
		cmocka_unit_test(test_param_find_on_parsed_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
