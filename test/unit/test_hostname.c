#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hostname.h"

static bool valid(const char *s)
{
	return hostname_valid(s, strlen(s));
}

static void test_good(void **state)
{
	(void)state;
	assert_true(valid("a"));
	assert_true(valid("mail.example.com"));
	assert_true(valid("MX-1.Example.COM"));
	assert_true(valid("host_1.example.net"));      /* as Postfix takes it */
	assert_true(valid("1.2.3.4.dynamic.example"));
	assert_true(valid("123abc"));
	assert_true(valid("x--y.example"));
	assert_true(valid("xn--bcher-kva.example"));
}

static void test_bad(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", ".", "a.", ".a", "a..b", "-a", "a-", "a.-b", "a-.b", "1.2.3.4", "42",
		"a b", "a\\.b", "a\\", "evil!name.example", "a/b.example", "a*.example",
		"a@b", "a:b", "a\tb", "a\nb", "\x7f", "caf\xc3\xa9.example", "[1.2.3.4]",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (valid(bad[i]))
			fail_msg("accepted: '%s'", bad[i]);
	}
	/* NUL inside: the length counts, not the terminator */
	assert_false(hostname_valid("a\0b.example", 11));
	assert_false(hostname_valid("ab", 3));
}

static void test_lengths(void **state)
{
	(void)state;
	char buf[300];

	memset(buf, 'a', 63);
	assert_true(hostname_valid(buf, 63));
	memset(buf, 'a', 64);
	assert_false(hostname_valid(buf, 64));
	/* 62 x 'a' and a backslash: once an escaped dot, a 64-byte label */
	memset(buf, 'a', 62);
	buf[62] = '\\';
	assert_false(hostname_valid(buf, 63));

	/* 63+1+63+1+63+1+61 = 253, then 254 */
	size_t n = 0;
	for (int i = 0; i < 4; i++) {
		size_t l = i == 3 ? 61 : 63;
		memset(buf + n, 'b', l);
		n += l;
		if (i < 3)
			buf[n++] = '.';
	}
	assert_int_equal(n, 253);
	assert_true(hostname_valid(buf, n));
	buf[n++] = 'b';
	assert_false(hostname_valid(buf, n));
	/* 127 one-byte labels: 253; 128: 255 */
	n = 0;
	for (int i = 0; i < 128; i++) {
		if (i)
			buf[n++] = '.';
		buf[n++] = 'c';
	}
	assert_false(hostname_valid(buf, n));
	assert_true(hostname_valid(buf, n - 2));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_lengths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
