/* The SPF record parser (lib/spf_record.h) and macro expander
 * (lib/spf_macro.h): RFC 7208's own examples and the edges of its grammar. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "spf_macro.h"
#include "spf_record.h"

static bool check(const char *rec)
{
	struct spf_term r, e;
	return spf_record_check(rec, strlen(rec), &r, &e);
}

/* The Nth term of REC (which must parse). */
static struct spf_term nth(const char *rec, int n)
{
	struct spf_term t;
	size_t pos = 0;
	for (int i = 0; i <= n; i++)
		assert_int_equal(spf_term_next(rec, strlen(rec), &pos, &t), 1);
	return t;
}

static void test_is_record(void **state)
{
	(void)state;
	assert_true(spf_is_record("v=spf1", 6));
	assert_true(spf_is_record("V=SPF1 -all", 11));
	assert_false(spf_is_record("v=spf10 -all", 12));
	assert_false(spf_is_record("v=spf1-all", 10));
	assert_false(spf_is_record("v=spf", 5));
	assert_false(spf_is_record(" v=spf1", 7));
}

static void test_terms(void **state)
{
	(void)state;
	const char *rec = "v=spf1 ip4:192.0.2.1/24 -IP6:2001:DB8::/32 ~a:mail.%{d}/28//64 "
			  "?mx/20 ptr:example.org. exists:%{ir}.bl.example include:_spf.example.com "
			  "redirect=other.example exp=why.%{d} x-note=%{l} -all";
	assert_true(check(rec));
	struct spf_term t = nth(rec, 0);
	assert_int_equal(t.kind, SPF_IP4);
	assert_int_equal(t.qual, SPF_PASS);
	assert_int_equal(t.cidr4, 24);
	assert_int_equal(t.net.b[3], 0);     /* host bits cleared */
	t = nth(rec, 1);
	assert_int_equal(t.kind, SPF_IP6);
	assert_int_equal(t.qual, SPF_FAIL);
	assert_int_equal(t.cidr6, 32);
	t = nth(rec, 2);
	assert_int_equal(t.kind, SPF_A);
	assert_int_equal(t.qual, SPF_SOFTFAIL);
	assert_int_equal(t.cidr4, 28);
	assert_int_equal(t.cidr6, 64);
	assert_int_equal(t.spec_len, strlen("mail.%{d}"));
	assert_memory_equal(t.spec, "mail.%{d}", t.spec_len);
	t = nth(rec, 3);
	assert_int_equal(t.kind, SPF_MX);
	assert_int_equal(t.qual, SPF_NEUTRAL);
	assert_null(t.spec);
	assert_int_equal(t.cidr4, 20);
	assert_int_equal(t.cidr6, 128);
	assert_int_equal(nth(rec, 4).kind, SPF_PTR);
	assert_int_equal(nth(rec, 5).kind, SPF_EXISTS);
	assert_int_equal(nth(rec, 6).kind, SPF_INCLUDE);
	assert_int_equal(nth(rec, 7).kind, SPF_REDIRECT);
	assert_int_equal(nth(rec, 8).kind, SPF_EXP);
	assert_int_equal(nth(rec, 9).kind, SPF_UNKNOWN_MOD);
	t = nth(rec, 10);
	assert_int_equal(t.kind, SPF_ALL);
	assert_int_equal(t.text_len, 4);

	/* a//64 and trailing spaces; the version alone */
	assert_int_equal(nth("v=spf1 a//64  ", 0).cidr6, 64);
	assert_true(check("v=spf1"));
	assert_true(check("v=spf1   "));
	assert_true(check("v=spf1 ip4:0.0.0.0/0 ip6:::/0"));
}

static void test_syntax_errors(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"v=spf1 a:foo.example.com/024",    /* leading zero */
		"v=spf1 ip4:1.2.3.4/33",
		"v=spf1 ip4:1.2.3.04",
		"v=spf1 ip4:1.2.3",
		"v=spf1 ip6:::1/129",
		"v=spf1 ip6:::1//64",
		"v=spf1 a//129",
		"v=spf1 a/33",
		"v=spf1 include:",
		"v=spf1 include",
		"v=spf1 exists",
		"v=spf1 a:1.2.3.4",                /* numeric top label */
		"v=spf1 a:example.-com",
		"v=spf1 a:example.com-",
		"v=spf1 +redirect=x.example",      /* a modifier has no qualifier */
		"v=spf1 redirect=a.example redirect=b.example",
		"v=spf1 exp=a.example exp=b.example",
		"v=spf1 exp=",
		"v=spf1 redirect=",
		"v=spf1 foo",                      /* unknown mechanism */
		"v=spf1 allx",
		"v=spf1 all:x",
		"v=spf1 -",
		"v=spf1 9x=y",                     /* a name starts with a letter */
		"v=spf1 x=%{",                     /* broken macro in a modifier */
		"v=spf1 a:%{x}.example.com",       /* unknown macro letter */
		"v=spf1 a:%{c}.example.com",       /* c only in explanations */
		"v=spf1 a:%{d0}.example.com",      /* zero parts */
		"v=spf1 a:%.example.com",
		"v=spf1 a:example.com\r -all",
		"v=spf1 \xc2\x96" "all",           /* not ASCII */
		"v=spf1-all",
		"spf1 -all",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (check(bad[i]))
			fail_msg("accepted: '%s'", bad[i]);
	/* a domain-spec may end with a macro or a trailing dot */
	assert_true(check("v=spf1 a:%{d} exists:%{i}.%{v}.x.example. mx:%{o}%% -all"));
	assert_true(check("v=spf1 a:mx-1.x-y"));
	assert_false(check("v=spf1 a:mx.123"));
}

static const struct ipaddr v4 = { AF_INET, { 192, 0, 2, 3 } };

static struct spf_macro_env env4(void)
{
	struct spf_macro_env e = {
		.local = "strong-bad", .sender_domain = "email.example.com",
		.domain = "email.example.com", .ip = &v4, .helo = "mx.example.org",
		.now = 1234567890,
	};
	return e;
}

static void expand_is(const char *s, bool exp, const struct spf_macro_env *e, const char *want)
{
	char out[512];
	if (!spf_macro_expand(s, strlen(s), exp, e, out, sizeof out))
		fail_msg("'%s' did not expand", s);
	if (strcmp(out, want) != 0)
		fail_msg("'%s' gave '%s', not '%s'", s, out, want);
	assert_true(spf_macro_check(s, strlen(s), exp, NULL));
}

/* RFC 7208 section 7.4, word for word */
static void test_rfc_examples(void **state)
{
	(void)state;
	struct spf_macro_env e = env4();
	expand_is("%{s}", false, &e, "strong-bad@email.example.com");
	expand_is("%{o}", false, &e, "email.example.com");
	expand_is("%{d}", false, &e, "email.example.com");
	expand_is("%{d4}", false, &e, "email.example.com");
	expand_is("%{d3}", false, &e, "email.example.com");
	expand_is("%{d2}", false, &e, "example.com");
	expand_is("%{d1}", false, &e, "com");
	expand_is("%{dr}", false, &e, "com.example.email");
	expand_is("%{d2r}", false, &e, "example.email");
	expand_is("%{l}", false, &e, "strong-bad");
	expand_is("%{l-}", false, &e, "strong.bad");
	expand_is("%{lr}", false, &e, "strong-bad");
	expand_is("%{lr-}", false, &e, "bad.strong");
	expand_is("%{l1r-}", false, &e, "strong");
	expand_is("%{ir}.%{v}._spf.%{d2}", false, &e, "3.2.0.192.in-addr._spf.example.com");
	expand_is("%{lr-}.lp._spf.%{d2}", false, &e, "bad.strong.lp._spf.example.com");
	expand_is("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", false, &e,
		  "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
	expand_is("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", false, &e,
		  "3.2.0.192.in-addr.strong.lp._spf.example.com");
	expand_is("%{d2}.trusted-domains.example.net", false, &e,
		  "example.com.trusted-domains.example.net");
	struct ipaddr v6;
	assert_true(ipaddr_parse("2001:db8::cb01", &v6));
	e.ip = &v6;
	expand_is("%{ir}.%{v}._spf.%{d2}", false, &e,
		  "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com");
}

static void test_macro_edges(void **state)
{
	(void)state;
	struct spf_macro_env e = env4();
	e.local = "a b+c";
	/* upper case: URL-escaped after expansion */
	expand_is("%{L}", false, &e, "a%20b%2Bc");
	expand_is("%{S}", false, &e, "a%20b%2Bc%40email.example.com");
	expand_is("%%|%-|%_", false, &e, "%|%20| ");
	/* several delimiters, large digit counts, reversal of one part */
	e.local = "a.b-c+d";
	expand_is("%{l.-+}", false, &e, "a.b.c.d");
	expand_is("%{l2.-+}", false, &e, "c.d");
	expand_is("%{l99999999999r+}", false, &e, "d.a.b-c");
	expand_is("%{h1r}", false, &e, "mx");
	/* a value of delimiters only: as many empty parts */
	static char dots[65];
	memset(dots, '.', 64);
	e.local = dots;
	expand_is("%{l}", false, &e, dots);
	expand_is("%{l1}", false, &e, "");
	expand_is("%{l2-}", false, &e, dots);
	/* no sender local part: postmaster; no PTR name: unknown */
	e.local = NULL;
	expand_is("%{l}|%{p}", false, &e, "postmaster|unknown");
	/* explanations only */
	expand_is("%{c} at %{t} by %{r}", true, &e, "192.0.2.3 at 1234567890 by unknown");
	char out[64];
	assert_false(spf_macro_expand("%{c}", 4, false, &e, out, sizeof out));
	assert_false(spf_macro_expand("a b", 3, false, &e, out, sizeof out));
	assert_true(spf_macro_expand("a b", 3, true, &e, out, sizeof out));
	/* bad syntax */
	static const char *const bad[] = { "%", "%{", "%{d", "%{d}}x%", "%{d0}", "%{q}", "%a",
					   "%{d2x}", "%{dr2}", "%{}" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (spf_macro_check(bad[i], strlen(bad[i]), true, NULL))
			fail_msg("accepted: '%s'", bad[i]);
		assert_false(spf_macro_expand(bad[i], strlen(bad[i]), true, &e, out, sizeof out));
	}
	/* bounded: a result that does not fit fails, never cut */
	char small[8];
	assert_false(spf_macro_expand("%{d}", 4, false, &e, small, sizeof small));
	assert_true(spf_macro_expand("%{d1}", 5, false, &e, small, sizeof small));
	assert_string_equal(small, "com");
	/* where a domain-spec may end */
	bool end;
	assert_true(spf_macro_check("x.%{d}", 6, false, &end));
	assert_true(end);
	assert_true(spf_macro_check("%{d}.x", 6, false, &end));
	assert_false(end);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_is_record),
		cmocka_unit_test(test_terms),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_rfc_examples),
		cmocka_unit_test(test_macro_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
