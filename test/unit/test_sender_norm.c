#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sender_norm.h"

#define CANARY 0x5a
#define SLACK 16

/* Normalises IN with O into a buffer of exactly strlen(IN) + 3 bytes (the
 * least the contract allows) followed by a canary, and fails the test if
 * anything past that was written or the result is inconsistent. */
static const char *norm_with(const char *in, const struct sender_norm_opts *o)
{
	static char buf[1024];
	size_t len = strlen(in);
	size_t outlen = len + 3;
	if (outlen + SLACK > sizeof buf)
		fail_msg("test input too long");
	memset(buf, CANARY, sizeof buf);
	size_t n = sender_normalise(in, len, o, buf, outlen);
	for (size_t i = outlen; i < outlen + SLACK; i++)
		if ((unsigned char)buf[i] != CANARY)
			fail_msg("wrote past outlen for \"%s\"", in);
	if (n >= outlen || buf[n] != 0 || strlen(buf) != n)
		fail_msg("bad length %zu for \"%s\"", n, in);
	if (len > 0 && n > len)
		fail_msg("output longer than input for \"%s\"", in);
	return buf;
}

static const char *norm(const char *in)
{
	return norm_with(in, &sender_norm_all);
}

struct shape {
	const char *in, *want;
};

/* Envelope senders as they are seen in the wild (ids made up, shapes kept). */
static const struct shape shapes[] = {
	/* Amazon SES: 16 hex, a UUID, a 6-digit counter. */
	{ "0100018c4b1f2a3b-5d6e7f80-1a2b-4c3d-9e8f-0a1b2c3d4e5f-000000@amazonses.com",
	  "#-#-#@amazonses.com" },
	{ "010f018c4b1f2a3b-1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b-000000@eu-west-1.amazonses.com",
	  "#-#-#@eu-west-1.amazonses.com" },
	/* Mailchimp and Mandrill. */
	{ "bounce-mc.us5_1234567.8901234-abcdef1234@mail123.atl11.mcsv.net",
	  "bounce-mc.us#_#.#-#@mail123.atl11.mcsv.net" },
	{ "bounce-md_30850198.5f2a1b3c.v1-9a8b7c6d5e4f@mandrillapp.com",
	  "bounce-md_#.#.v#-#@mandrillapp.com" },
	/* Salesforce Marketing Cloud (ExactTarget). */
	{ "bounce-123_HTML-4567890-12345-1234567-12@bounce.s7.exacttarget.com",
	  "bounce-#_html-#-#-#-#@bounce.s7.exacttarget.com" },
	/* SRS, with the separator variants. */
	{ "SRS0=AbCd=2K=Example.ORG=John.Doe@fwd.example.net",
	  "srs0=example.org=john.doe@fwd.example.net" },
	{ "SRS0+x7Yq=ZZ=example.com=alice@forward.example", "srs0=example.com=alice@forward.example" },
	{ "srs0-x7/q=ab=example.com=alice@forward.example", "srs0=example.com=alice@forward.example" },
	{ "SRS0=AbCd=2K=example.org=bounce-4711@fwd.example.net",
	  "srs0=example.org=bounce-#@fwd.example.net" },
	{ "SRS1=XyZ1=fwd1.example==AbCd=2K=example.org=john@fwd2.example",
	  "srs1=fwd#.example==example.org=john@fwd2.example" },
	{ "SRS1+XyZ1=fwd1.example=+AbCd=2K=example.org=john@fwd2.example",
	  "srs1=fwd#.example==example.org=john@fwd2.example" },
	/* Not SRS after all (no timestamp): left alone, but for the generic
	 * steps, which keep the marker. */
	{ "SRS0=bad-42@fwd.example", "srs0=bad-#@fwd.example" },
	{ "srs0=example.org=john@fwd.example", "srs0=example.org=john@fwd.example" },
	{ "SRS0+garbage+ext@fwd.example", "srs0+garbage@fwd.example" },
	/* BATV. */
	{ "prvs=4068eb2540=simexpand@ldap.example.com", "simexpand@ldap.example.com" },
	{ "PRVS=1940025ABC=Tester@Internal.com", "tester@internal.com" },
	{ "prvs=simexpand=4068eb2540@ldap.example.com", "simexpand@ldap.example.com" },
	{ "btv1==068a4973b3a==Ryan.Carmichael@dynetics.example", "ryan.carmichael@dynetics.example" },
	{ "prvs=4068eb2540=list-bounces+user=example.org@lists.example.net",
	  "list-bounces@lists.example.net" },
	{ "prvs=123=user@example.com", "prvs=#=user@example.com" },   /* tag too short */
	/* +extensions. */
	{ "john.doe+newsletter@example.com", "john.doe@example.com" },
	{ "+1234@example.com", "+#@example.com" },
	/* Quoted local parts: opaque apart from case. */
	{ "\"John.Doe+x\"@Example.org", "\"john.doe+x\"@example.org" },
	{ "\"bounce 12345\"@example.org", "\"bounce 12345\"@example.org" },
	{ "\"a@b\"@Example.org", "\"a@b\"@example.org" },
	/* VERP list bounces. */
	{ "list-bounces+user=example.org@lists.example.net", "list-bounces@lists.example.net" },
	{ "owner-list-12345@lists.example.net", "owner-list-#@lists.example.net" },
	{ "linux-kernel-owner@vger.kernel.org", "linux-kernel-owner@vger.kernel.org" },
	/* Notification senders. */
	{ "bounces+848413-2e9c-user=example.org@sgmail.github.com", "bounces@sgmail.github.com" },
	{ "noreply@github.com", "noreply@github.com" },
	{ "notification+kjdmd5yt1hc3@facebookmail.com", "notification@facebookmail.com" },
	{ "messages-noreply@LinkedIn.com", "messages-noreply@linkedin.com" },
	{ "bounces-a1b2c3d4-e5f6-7a8b-9c0d-e1f2a3b4c5d6@example.com", "bounces-#@example.com" },
	{ "msg-1a2b3c4d5e6f7a8b@bounces.example.com", "msg-#@bounces.example.com" },
	/* Plain addresses: only the case changes. */
	{ "John.Smith@Example.COM", "john.smith@example.com" },
	{ "info@example.org", "info@example.org" },
	{ "deadbeef-cafe@example.com", "deadbeef-cafe@example.com" },  /* hex words, no digit */
	{ "Jörg@Example.de", "jörg@example.de" },                      /* ASCII case only */
	/* Digits and hex, and what they never touch. */
	{ "xyz123uvw@example.com", "xyz#uvw@example.com" },
	{ "abc123def@example.com", "#@example.com" },      /* a 9-character hex token */
	{ "1234567890@example.com", "#@example.com" },
	{ "user@[192.0.2.1]", "user@[192.0.2.1]" },         /* the domain is never rewritten */
	{ "postmaster", "postmaster" },                     /* no domain: all local part */
	{ "", "<>" },
};

static void test_shapes(void **state)
{
	(void)state;
	size_t n = sizeof shapes / sizeof shapes[0];
	assert_true(n >= 25);
	for (size_t i = 0; i < n; i++) {
		const char *got = norm(shapes[i].in);
		if (strcmp(got, shapes[i].want) != 0)
			fail_msg("\"%s\" -> \"%s\", want \"%s\"", shapes[i].in, got, shapes[i].want);
	}
}

/* A normalised sender may be fed back (greygate-ctl): it must stay put. */
static void test_idempotent(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
		if (shapes[i].in[0] == 0)
			continue;
		char once[512];
		snprintf(once, sizeof once, "%s", norm(shapes[i].in));
		const char *twice = norm(once);
		if (strcmp(once, twice) != 0)
			fail_msg("\"%s\" -> \"%s\" -> \"%s\"", shapes[i].in, once, twice);
	}
}

static void test_null_sender(void **state)
{
	(void)state;
	char out[3];
	struct sender_norm_opts none = { 0 };
	assert_int_equal(sender_normalise("", 0, &sender_norm_all, out, sizeof out), 2);
	assert_string_equal(out, "<>");
	assert_int_equal(sender_normalise("", 0, &none, out, sizeof out), 2);
	assert_string_equal(out, "<>");
}

/* The length is what counts, not a terminator: the proxy passes pieces. */
static void test_uses_len_not_nul(void **state)
{
	(void)state;
	const char *in = "John+x@Example.com TRAILING";
	char out[64];
	size_t n = sender_normalise(in, 18, &sender_norm_all, out, 18 + 3);
	assert_int_equal(n, strlen("john@example.com"));
	assert_string_equal(out, "john@example.com");
}

static void test_all_off_is_identity(void **state)
{
	(void)state;
	struct sender_norm_opts none = { 0 };
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
		const char *want = shapes[i].in[0] ? shapes[i].in : "<>";
		assert_string_equal(norm_with(shapes[i].in, &none), want);
	}
}

struct off_case {
	const char *in;
	const char *want_all;   /* every step on */
	const char *want_off;   /* every step but the one under test */
};

static void check_off(const struct off_case *c, size_t n, struct sender_norm_opts o)
{
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(norm(c[i].in), c[i].want_all);
		const char *got = norm_with(c[i].in, &o);
		if (strcmp(got, c[i].want_off) != 0)
			fail_msg("\"%s\" -> \"%s\", want \"%s\"", c[i].in, got, c[i].want_off);
	}
}

static void test_off_lower(void **state)
{
	(void)state;
	static const struct off_case c[] = {
		{ "John.Smith@Example.COM", "john.smith@example.com", "John.Smith@Example.COM" },
		{ "PRVS=1940025ABC=Tester@Internal.com", "tester@internal.com", "Tester@Internal.com" },
		/* The SRS marker is canonical whatever the case setting. */
		{ "SRS0=AbCd=2K=Example.ORG=John@Fwd.example", "srs0=example.org=john@fwd.example",
		  "srs0=Example.ORG=John@Fwd.example" },
		{ "Bounce-0A1B2C3D4E@X.example", "bounce-#@x.example", "Bounce-#@X.example" },
	};
	struct sender_norm_opts o = sender_norm_all;
	o.lower = false;
	check_off(c, sizeof c / sizeof c[0], o);
}

static void test_off_batv(void **state)
{
	(void)state;
	static const struct off_case c[] = {
		{ "prvs=4068eb2540=simexpand@x.example", "simexpand@x.example",
		  "prvs=#=simexpand@x.example" },
		{ "prvs=simexpand=4068eb2540@x.example", "simexpand@x.example",
		  "prvs=simexpand=#@x.example" },
		{ "btv1==068a4973b3a==user@x.example", "user@x.example", "btv#==#==user@x.example" },
	};
	struct sender_norm_opts o = sender_norm_all;
	o.batv = false;
	check_off(c, sizeof c / sizeof c[0], o);
}

static void test_off_srs(void **state)
{
	(void)state;
	static const struct off_case c[] = {
		{ "SRS0=AbCd=2K=example.org=john@fwd.example", "srs0=example.org=john@fwd.example",
		  "srs#=abcd=#k=example.org=john@fwd.example" },
		{ "SRS1=XyZw=fwd.example==AbCd=2K=example.org=john@fwd2.example",
		  "srs1=fwd.example==example.org=john@fwd2.example",
		  "srs#=xyzw=fwd.example==abcd=#k=example.org=john@fwd2.example" },
	};
	struct sender_norm_opts o = sender_norm_all;
	o.srs = false;
	check_off(c, sizeof c / sizeof c[0], o);
}

static void test_off_ext(void **state)
{
	(void)state;
	static const struct off_case c[] = {
		{ "john.doe+newsletter@example.com", "john.doe@example.com",
		  "john.doe+newsletter@example.com" },
		{ "list-bounces+user=example.org@lists.example.net", "list-bounces@lists.example.net",
		  "list-bounces+user=example.org@lists.example.net" },
	};
	struct sender_norm_opts o = sender_norm_all;
	o.ext = false;
	check_off(c, sizeof c / sizeof c[0], o);
}

static void test_off_digits(void **state)
{
	(void)state;
	static const struct off_case c[] = {
		{ "owner-list-12345@lists.example.net", "owner-list-#@lists.example.net",
		  "owner-list-12345@lists.example.net" },
		{ "xyz123uvw@example.com", "xyz#uvw@example.com", "xyz123uvw@example.com" },
		{ "bounce-mc.us5_1234567.8901234-abcdef1234@mail123.atl11.mcsv.net",
		  "bounce-mc.us#_#.#-#@mail123.atl11.mcsv.net",
		  "bounce-mc.us5_1234567.8901234-#@mail123.atl11.mcsv.net" },
	};
	struct sender_norm_opts o = sender_norm_all;
	o.digits = false;
	check_off(c, sizeof c / sizeof c[0], o);
}

static void test_off_hex(void **state)
{
	(void)state;
	static const struct off_case c[] = {
		/* The digits rule on its own, as documented: abc123def -> abc#def. */
		{ "abc123def@example.com", "#@example.com", "abc#def@example.com" },
		{ "bounces-a1b2c3d4-e5f6-7a8b-9c0d-e1f2a3b4c5d6@example.com", "bounces-#@example.com",
		  "bounces-a#b#c#d#-e#f#-#a#b-#c#d-e#f#a#b#c#d#@example.com" },
		{ "msg-1a2b3c4d5e6f7a8b@bounces.example.com", "msg-#@bounces.example.com",
		  "msg-#a#b#c#d#e#f#a#b@bounces.example.com" },
	};
	struct sender_norm_opts o = sender_norm_all;
	o.hex = false;
	check_off(c, sizeof c / sizeof c[0], o);
}

/* Each step alone does its own work and nothing else. */
static void test_each_step_alone(void **state)
{
	(void)state;
	const char *in = "PRVS=4068eb2540=Bounce-12345+Tag@Example.COM";
	struct sender_norm_opts o = { 0 };
	o.lower = true;
	assert_string_equal(norm_with(in, &o), "prvs=4068eb2540=bounce-12345+tag@example.com");
	o = (struct sender_norm_opts){ .batv = true };
	assert_string_equal(norm_with(in, &o), "Bounce-12345+Tag@Example.COM");
	o = (struct sender_norm_opts){ .ext = true };
	assert_string_equal(norm_with(in, &o), "PRVS=4068eb2540=Bounce-12345@Example.COM");
	o = (struct sender_norm_opts){ .digits = true };
	assert_string_equal(norm_with(in, &o), "PRVS=#eb#=Bounce-#+Tag@Example.COM");
	o = (struct sender_norm_opts){ .hex = true };
	assert_string_equal(norm_with(in, &o), "PRVS=#=Bounce-12345+Tag@Example.COM");
	o = (struct sender_norm_opts){ .srs = true };
	assert_string_equal(norm_with("SRS0=AbCd=2K=Example.ORG=John@Fwd.example", &o),
			    "srs0=Example.ORG=John@Fwd.example");
	assert_string_equal(norm_with(in, &o), in);
}

static void expect_same(const char *a, const char *b)
{
	char na[512];
	snprintf(na, sizeof na, "%s", norm(a));
	const char *nb = norm(b);
	if (strcmp(na, nb) != 0)
		fail_msg("same mailing, different keys: \"%s\" -> \"%s\", \"%s\" -> \"%s\"", a, na, b,
			 nb);
}

static void expect_different(const char *a, const char *b)
{
	char na[512];
	snprintf(na, sizeof na, "%s", norm(a));
	const char *nb = norm(b);
	if (strcmp(na, nb) == 0)
		fail_msg("different senders, one key: \"%s\", \"%s\" -> \"%s\"", a, b, na);
}

static void test_same_mailing_same_key(void **state)
{
	(void)state;
	expect_same("0100018c4b1f2a3b-5d6e7f80-1a2b-4c3d-9e8f-0a1b2c3d4e5f-000000@amazonses.com",
		    "0100018c4b20c4d5-8899aabb-ccdd-4eef-8011-223344556677-000001@amazonses.com");
	expect_same("bounce-mc.us5_1234567.8901234-abcdef1234@mail123.atl11.mcsv.net",
		    "bounce-mc.us5_1234567.8905678-0123456789@mail123.atl11.mcsv.net");
	expect_same("bounce-md_30850198.5f2a1b3c.v1-9a8b7c6d5e4f@mandrillapp.com",
		    "bounce-md_30850198.60a2b3c4.v1-0f1e2d3c4b5a@mandrillapp.com");
	expect_same("list-bounces+alice=example.org@lists.example.net",
		    "list-bounces+bob=example.com@lists.example.net");
	expect_same("owner-list-12345@lists.example.net", "owner-list-67890@lists.example.net");
	expect_same("SRS0=AbCd=2K=example.org=john@fwd.example",
		    "SRS0=q9Zz=2L=example.org=john@fwd.example");
	expect_same("SRS0=AbCd=2K=example.org=john@fwd.example",
		    "SRS0+AbCd=2K=example.org=john@fwd.example");
	expect_same("SRS1=XyZw=fwd1.example==AbCd=2K=example.org=john@fwd2.example",
		    "SRS1=Pq8r=fwd1.example==Zz99=3M=example.org=john@fwd2.example");
	expect_same("prvs=4068eb2540=news@example.com", "prvs=4069ab1234=news@example.com");
	expect_same("prvs=4068eb2540=news@example.com", "news@example.com");
	expect_same("btv1==068a4973b3a==news@example.com", "btv1==1086afe1179==news@example.com");
	expect_same("bounces+848413-2e9c-alice=example.org@sgmail.github.com",
		    "bounces+848413-77ab-bob=example.org@sgmail.github.com");
	expect_same("notification+kjdmd5yt1hc3@facebookmail.com",
		    "notification+zrw2e8qa3k0p@facebookmail.com");
	expect_same("News@Example.com", "news@example.com");
}

static void test_different_lists_differ(void **state)
{
	(void)state;
	expect_different("list-bounces+alice=example.org@lists.example.net",
			 "other-bounces+alice=example.org@lists.example.net");
	expect_different("owner-list-12345@lists.example.net", "owner-other-12345@lists.example.net");
	expect_different("0100018c4b1f2a3b-5d6e7f80-1a2b-4c3d-9e8f-0a1b2c3d4e5f-000000@amazonses.com",
			 "010f018c4b1f2a3b-5d6e7f80-1a2b-4c3d-9e8f-0a1b2c3d4e5f-000000@eu-west-1.amazonses.com");
	expect_different("SRS0=AbCd=2K=example.org=john@fwd.example",
			 "SRS0=AbCd=2K=example.org=mary@fwd.example");
	expect_different("SRS0=AbCd=2K=example.org=john@fwd.example",
			 "SRS0=AbCd=2K=example.net=john@fwd.example");
	expect_different("SRS1=XyZw=fwd1.example==AbCd=2K=example.org=john@fwd2.example",
			 "SRS0=AbCd=2K=example.org=john@fwd2.example");
	expect_different("prvs=4068eb2540=news@example.com", "prvs=4068eb2540=sales@example.com");
	expect_different("bounce-md_30850198.5f2a1b3c.v1-9a8b7c6d5e4f@mandrillapp.com",
			 "bounce-mc.us5_1234567.8901234-abcdef1234@mandrillapp.com");
	expect_different("alice@example.com", "bob@example.com");
	expect_different("news@example.com", "news@example.org");
	expect_different("\"john doe\"@example.org", "\"jane doe\"@example.org");
	expect_different("", "postmaster@example.org");
}

/* Random inputs made of the characters the rules look at: whatever the
 * options, the output stays within bounds (norm_with checks it). */
static void test_bounded_random(void **state)
{
	(void)state;
	static const char alphabet[] = "aZf09+=-@.\"_sSrRpPvV1b";
	uint32_t x = 12345;
	char in[80];
	for (int round = 0; round < 20000; round++) {
		x = x * 1103515245u + 12345u;
		size_t len = (x >> 16) % (sizeof in - 1);
		for (size_t i = 0; i < len; i++) {
			x = x * 1103515245u + 12345u;
			in[i] = alphabet[(x >> 16) % (sizeof alphabet - 1)];
		}
		in[len] = 0;
		unsigned bits = (unsigned)round & 63;
		struct sender_norm_opts o = {
			.lower = bits & 1, .batv = bits & 2, .srs = bits & 4,
			.ext = bits & 8, .digits = bits & 16, .hex = bits & 32,
		};
		norm_with(in, &o);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shapes),
		cmocka_unit_test(test_idempotent),
		cmocka_unit_test(test_null_sender),
		cmocka_unit_test(test_uses_len_not_nul),
		cmocka_unit_test(test_all_off_is_identity),
		cmocka_unit_test(test_off_lower),
		cmocka_unit_test(test_off_batv),
		cmocka_unit_test(test_off_srs),
		cmocka_unit_test(test_off_ext),
		cmocka_unit_test(test_off_digits),
		cmocka_unit_test(test_off_hex),
		cmocka_unit_test(test_each_step_alone),
		cmocka_unit_test(test_same_mailing_same_key),
		cmocka_unit_test(test_different_lists_differ),
		cmocka_unit_test(test_bounded_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
