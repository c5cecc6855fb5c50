#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pool_key.h"
#include "regdomain.h"
#include "triplet.h"

static const char *const words[] = { "dyn", "dhcp", "pool", "ppp", "dsl", "cable" };
static const enum pool_kind spf_ptr[] = { POOL_SPF, POOL_PTR };

static struct ipaddr addr(const char *s)
{
	struct ipaddr a;
	if (!ipaddr_parse(s, &a))
		fail_msg("bad test address %s", s);
	return a;
}

static enum pool_kind key(const char *client, const char *spf, const char *name,
			  const enum pool_kind *order, size_t norder, char out[POOL_TEXT_MAX])
{
	struct ipaddr a = addr(client);
	struct pool_facts f = { .client = &a, .spf_pass_domain = spf, .client_name = name,
				.words = words, .nwords = sizeof words / sizeof words[0],
				.order = order, .norder = norder };
	return pool_key(&f, out);
}

static void test_kinds(void **state)
{
	(void)state;
	char out[POOL_TEXT_MAX];
	/* spf first, as configured by default */
	assert_int_equal(key("203.0.113.7", "AmazonSES.com", "mx.example.com", spf_ptr, 2, out),
			 POOL_SPF);
	assert_string_equal(out, "spf:amazonses.com");
	/* no SPF pass: the confirmed name's registrable domain */
	assert_int_equal(key("203.0.113.7", NULL, "Out-7.Mail.Example.COM", spf_ptr, 2, out),
			 POOL_PTR);
	assert_string_equal(out, "ptr:example.com");
	assert_int_equal(key("2001:db8::25", NULL, "mx.example.co.uk.", spf_ptr, 2, out), POOL_PTR);
	assert_string_equal(out, "ptr:example.co.uk");
	/* generic names and no name: the network */
	assert_int_equal(key("203.0.113.7", NULL, "203-0-113-7.dyn.example.net", spf_ptr, 2, out),
			 POOL_NET);
	assert_string_equal(out, "");
	assert_int_equal(key("203.0.113.7", NULL, "dsl7.example.net", spf_ptr, 2, out), POOL_NET);
	assert_int_equal(key("203.0.113.7", NULL, NULL, spf_ptr, 2, out), POOL_NET);
	/* a name that is a public suffix has no registrable domain */
	assert_int_equal(key("203.0.113.7", NULL, "co.uk", spf_ptr, 2, out), POOL_NET);
	/* a bad SPF domain gives no spf key: the next kind */
	assert_int_equal(key("203.0.113.7", "bad domain", "mx.example.com", spf_ptr, 2, out),
			 POOL_PTR);
	assert_string_equal(out, "ptr:example.com");
}

static void test_order(void **state)
{
	(void)state;
	char out[POOL_TEXT_MAX];
	static const enum pool_kind ptr_spf[] = { POOL_PTR, POOL_SPF };
	static const enum pool_kind spf_only[] = { POOL_SPF };
	assert_int_equal(key("203.0.113.7", "ses.example", "mx.example.com", ptr_spf, 2, out),
			 POOL_PTR);
	assert_string_equal(out, "ptr:example.com");
	assert_int_equal(key("203.0.113.7", NULL, "mx.example.com", spf_only, 1, out), POOL_NET);
	assert_int_equal(key("203.0.113.7", "ses.example", "mx.example.com", NULL, 0, out), POOL_NET);
	assert_string_equal(out, "");
}

static void test_names(void **state)
{
	(void)state;
	enum pool_kind k;
	assert_true(pool_kind_parse("spf", &k));
	assert_int_equal(k, POOL_SPF);
	assert_true(pool_kind_parse("ptr", &k));
	assert_int_equal(k, POOL_PTR);
	assert_true(pool_kind_parse("net", &k));
	assert_false(pool_kind_parse("dkim", &k));
	assert_string_equal(pool_kind_name(POOL_PTR), "ptr");
	assert_int_equal(pool_kind_of("spf:example.com"), POOL_SPF);
	assert_int_equal(pool_kind_of("ptr:example.com"), POOL_PTR);
	assert_int_equal(pool_kind_of("203.0.113.0/24"), POOL_NET);
	assert_int_equal(pool_kind_of("2001:db8::/64"), POOL_NET);
}

static void reg(const char *name, const char *want)
{
	char out[254];
	bool ok = regdomain(name, out, sizeof out);
	if (want ? !ok || strcmp(out, want) != 0 : ok)
		fail_msg("regdomain(%s) = %s, want %s", name, ok ? out : "(none)",
			 want ? want : "(none)");
}

static void test_psl(void **state)
{
	(void)state;
	for (int pass = 0; pass < 2; pass++) {
		/* first with libpsl's built-in list, then with the newest one */
		if (pass == 1)
			regdomain_init();
		reg("mx1.mail.example.co.uk", "example.co.uk");
		reg("example.co.uk", "example.co.uk");
		reg("MX.Example.COM", "example.com");
		reg("a.b.c.example.org.", "example.org");
		reg("mail.example.zzunknowntld", "example.zzunknowntld");
		reg("mx.xn--bcher-kva.de", "xn--bcher-kva.de");
		reg("co.uk", NULL);
		reg("com", NULL);
		reg("localhost", NULL);
		reg("", NULL);
		reg("a..example.com", NULL);
		reg("b\xc3\xbc" "cher.de", NULL);      /* UTF-8: not a host name */
		reg("evil!name.example.com", NULL);
		reg("1.2.3.4", NULL);
		reg("mail.801.88", NULL);               /* a tail of digits is no name */
	}
	/* bounded: longer than a name may be */
	char big[600];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	for (size_t i = 50; i < sizeof big - 1; i += 51)
		big[i] = '.';
	reg(big, NULL);
	/* an answer that does not fit */
	char small[8];
	assert_false(regdomain("mx.example.com", small, sizeof small));
	assert_string_equal(small, "");
}

/* The network key hashes the network alone, as before pool keys: an
 * upgrade keeps every stored triplet. */
static void test_keys(void **state)
{
	(void)state;
	struct triplet a, b, c, d;
	assert_int_equal(triplet_make(&a, "203.0.113.0/24", "s@x.example", 11, "r@y.example", 11), 0);
	assert_int_equal(triplet_make_pool(&b, "203.0.113.0/24", "", "s@x.example", 11,
					   "r@y.example", 11), 0);
	assert_string_equal(a.hex, b.hex);
	/* the key of earlier versions, computed by hand: SHA-256 over
	 * length-prefixed parts, the first 16 bytes */
	assert_string_equal(a.hex, "4a75fc45dc9525581182ef721118eacb");
	assert_string_equal(triplet_keytext(&a), "203.0.113.0/24");

	assert_int_equal(triplet_make_pool(&c, "203.0.113.0/24", "ptr:example.com", "s@x.example", 11,
					   "r@y.example", 11), 0);
	assert_string_not_equal(a.hex, c.hex);
	assert_string_equal(triplet_keytext(&c), "ptr:example.com");
	assert_string_equal(c.net, "203.0.113.0/24");
	/* the pool key alone decides: another network, the same key */
	assert_int_equal(triplet_make_pool(&d, "198.51.100.0/24", "ptr:example.com", "s@x.example",
					   11, "r@y.example", 11), 0);
	assert_string_equal(c.hex, d.hex);
	/* rebuilt from the stored text */
	assert_int_equal(triplet_make_text(&d, "ptr:example.com", "s@x.example", 11, "r@y.example",
					   11), 0);
	assert_string_equal(c.hex, d.hex);
	assert_string_equal(d.net, "");
	assert_int_equal(triplet_make_text(&d, "203.0.113.0/24", "s@x.example", 11, "r@y.example",
					   11), 0);
	assert_string_equal(a.hex, d.hex);
	/* what is no pool key is refused as one */
	assert_int_equal(triplet_make_pool(&d, "203.0.113.0/24", "example.com", "s", 1, "r", 1), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kinds),
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_psl),
		cmocka_unit_test(test_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
