#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "helo.h"

#define S(lit) lit, sizeof(lit) - 1

static void test_helo_ok(void **state)
{
	(void)state;
	assert_int_equal(helo_check(S("mail.example.com")), HELO_OK);
	assert_int_equal(helo_check(S("[192.0.2.1]")), HELO_OK);
	/* Postfix takes anything printable, and UTF-8 */
	assert_int_equal(helo_check(S("#$%! a b")), HELO_OK);
	assert_int_equal(helo_check(S("h\xc3\xa9llo.example")), HELO_OK);
	assert_int_equal(helo_check(S("\xf0\x9f\x93\xa7.example")), HELO_OK);
}

static void test_helo_bad_utf8(void **state)
{
	(void)state;
	assert_int_equal(helo_check(S("bad\xffname")), HELO_BAD_UTF8);
	assert_int_equal(helo_check(S("h\xc3")), HELO_BAD_UTF8);          /* cut short */
	assert_int_equal(helo_check(S("\xc0\xae")), HELO_BAD_UTF8);       /* overlong '.' */
	assert_int_equal(helo_check(S("\xe0\x80\xae")), HELO_BAD_UTF8);   /* overlong */
	assert_int_equal(helo_check(S("\xed\xa0\x80")), HELO_BAD_UTF8);   /* surrogate */
	assert_int_equal(helo_check(S("\xf4\x90\x80\x80")), HELO_BAD_UTF8); /* > U+10FFFF */
	assert_int_equal(helo_check(S("\x80x")), HELO_BAD_UTF8);
	assert_int_equal(helo_check(S("\xe2\x82x")), HELO_BAD_UTF8);
}

static void test_helo_controls(void **state)
{
	(void)state;
	assert_int_equal(helo_check(S("a\x01" "b")), HELO_CONTROL);
	assert_int_equal(helo_check(S("a\rb")), HELO_CONTROL);
	assert_int_equal(helo_check(S("a\tb")), HELO_CONTROL);
	assert_int_equal(helo_check(S("a\x7f")), HELO_CONTROL);
	assert_int_equal(helo_check("x\0y", 3), HELO_CONTROL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_helo_ok),
		cmocka_unit_test(test_helo_bad_utf8),
		cmocka_unit_test(test_helo_controls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
