#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "netaddr.h"
#include "proxyproto.h"

/*
 * Every input goes through an exactly sized heap copy so that AddressSanitizer
 * reports any read past the length the parser was given.
 */
static enum proxyproto_status pp(const void *data, size_t n,
				 struct proxyproto_result *r)
{
	unsigned char *b = malloc(n ? n : 1);
	enum proxyproto_status st;

	assert_non_null(b);
	if (n)
		memcpy(b, data, n);
	st = proxyproto_parse(b, n, r);
	free(b);
	return st;
}

static enum proxyproto_status pps(const char *s, struct proxyproto_result *r)
{
	return pp(s, strlen(s), r);
}

static const char *str(const struct ipaddr *a)
{
	static char buf[2][64];
	static int which;

	which ^= 1;
	return ipaddr_str(a, buf[which], sizeof buf[which]);
}

/* The full header parses with length N; every proper prefix asks for more;
 * bytes after it (the client's own, or a second header) are left alone. */
static void check_prefixes(const void *data, size_t n)
{
	struct proxyproto_result r;
	unsigned char *ext = malloc(n * 2 + 16);

	assert_non_null(ext);
	for (size_t k = 0; k < n; k++) {
		enum proxyproto_status st = pp(data, k, &r);
		if (st != PP_NEED_MORE)
			fail_msg("prefix %zu of %zu: status %d", k, n, (int)st);
	}
	assert_int_equal(pp(data, n, &r), PP_OK);
	assert_int_equal(r.len, n);

	memcpy(ext, data, n);
	memcpy(ext + n, "EHLO x\r\n", 8);
	assert_int_equal(pp(ext, n + 8, &r), PP_OK);
	assert_int_equal(r.len, n);

	memcpy(ext + n, data, n);
	assert_int_equal(pp(ext, n * 2, &r), PP_OK);
	assert_int_equal(r.len, n);
	free(ext);
}

/* The longest line the spec shows: exactly PROXYPROTO_V1_MAX bytes. */
#define UNKNOWN_107                                                        \
	"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "           \
	"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
/* With the longest IPv6 text there is (45 characters). */
#define TCP6_LONGEST                                                       \
	"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 :: 1 2\r\n"

/* ---- v2 builders ---- */

static const unsigned char sig[12] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
};

/* Header with an explicit declared length (which may disagree with BLEN). */
static size_t v2_raw(unsigned char *out, unsigned vc, unsigned fam,
		     unsigned declared, const unsigned char *blk, size_t blen)
{
	memcpy(out, sig, 12);
	out[12] = (unsigned char)vc;
	out[13] = (unsigned char)fam;
	out[14] = (unsigned char)(declared >> 8);
	out[15] = (unsigned char)(declared & 0xff);
	if (blen)
		memcpy(out + 16, blk, blen);
	return 16 + blen;
}

static size_t v2(unsigned char *out, unsigned vc, unsigned fam,
		 const unsigned char *blk, size_t blen)
{
	return v2_raw(out, vc, fam, (unsigned)blen, blk, blen);
}

/* 192.0.2.1:56324 -> 198.51.100.2:25 */
static const unsigned char blk4[12] = {
	192, 0, 2, 1, 198, 51, 100, 2, 0xDC, 0x04, 0x00, 25,
};

/* 2001:db8::1:443 -> ::ffff:192.0.2.9:587 */
static const unsigned char blk6[36] = {
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 9,
	0x01, 0xBB, 0x02, 0x4B,
};

/* ---- v1 valid ---- */

static void test_v1_tcp4(void **state)
{
	(void)state;
	struct proxyproto_result r;
	const char *h = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n";

	assert_int_equal(pps(h, &r), PP_OK);
	assert_int_equal(r.len, strlen(h));
	assert_int_equal(r.version, 1);
	assert_int_equal(r.local, 0);
	assert_int_equal(r.src.family, AF_INET);
	assert_int_equal(r.dst.family, AF_INET);
	assert_string_equal(str(&r.src), "192.0.2.1");
	assert_string_equal(str(&r.dst), "198.51.100.2");
	assert_int_equal(r.src_port, 56324);
	assert_int_equal(r.dst_port, 25);

	assert_int_equal(pps("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
			     &r),
			 PP_OK);
	assert_string_equal(str(&r.src), "0.0.0.0");
	assert_string_equal(str(&r.dst), "255.255.255.255");
	assert_int_equal(r.src_port, 0);
	assert_int_equal(r.dst_port, 65535);
}

static void test_v1_tcp6(void **state)
{
	(void)state;
	struct proxyproto_result r;
	const char *h = "PROXY TCP6 2001:DB8::1 2001:db8:0:0:0:0:0:2 65535 0\r\n";

	assert_int_equal(pps(h, &r), PP_OK);
	assert_int_equal(r.len, strlen(h));
	assert_int_equal(r.version, 1);
	assert_int_equal(r.local, 0);
	assert_int_equal(r.src.family, AF_INET6);
	assert_string_equal(str(&r.src), "2001:db8::1");
	assert_string_equal(str(&r.dst), "2001:db8::2");
	assert_int_equal(r.src_port, 65535);
	assert_int_equal(r.dst_port, 0);

	/* the longest IPv6 text there is still fits */
	assert_int_equal(
		pps(TCP6_LONGEST, &r),
		PP_OK);
	assert_string_equal(str(&r.dst), "::");
}

static void test_v1_tcp6_v4mapped_folds(void **state)
{
	(void)state;
	struct proxyproto_result r;

	assert_int_equal(
		pps("PROXY TCP6 ::ffff:192.0.2.7 ::FFFF:c633:6402 1 2\r\n", &r),
		PP_OK);
	assert_int_equal(r.src.family, AF_INET);
	assert_int_equal(r.dst.family, AF_INET);
	assert_string_equal(str(&r.src), "192.0.2.7");
	assert_string_equal(str(&r.dst), "198.51.100.2");
}

static void test_v1_unknown(void **state)
{
	(void)state;
	struct proxyproto_result r;

	assert_int_equal(pps("PROXY UNKNOWN\r\n", &r), PP_OK);
	assert_int_equal(r.len, 15);
	assert_int_equal(r.version, 1);
	assert_int_equal(r.local, 1);

	/* the worst case from the spec: exactly 107 bytes */
	const char *h = UNKNOWN_107;
	assert_int_equal(strlen(h), PROXYPROTO_V1_MAX);
	assert_int_equal(pps(h, &r), PP_OK);
	assert_int_equal(r.len, PROXYPROTO_V1_MAX);
	assert_int_equal(r.local, 1);

	assert_int_equal(pps("PROXY UNKNOWN whatever\r\n", &r), PP_OK);
}

static void test_v1_length_limit(void **state)
{
	(void)state;
	struct proxyproto_result r;
	char line[300];

	memcpy(line, "PROXY UNKNOWN ", 14);
	memset(line + 14, 'x', sizeof line - 14);

	/* 105 bytes + CRLF = 107: fine */
	memcpy(line + 105, "\r\n", 2);
	assert_int_equal(pp(line, 107, &r), PP_OK);
	assert_int_equal(r.len, 107);
	assert_int_equal(pp(line, 106, &r), PP_NEED_MORE);

	/* 106 bytes without CR can only end at 108 */
	line[105] = 'x';
	line[106] = '\r';
	line[107] = '\n';
	assert_int_equal(pp(line, 105, &r), PP_NEED_MORE);
	assert_int_equal(pp(line, 106, &r), PP_INVALID);
	assert_int_equal(pp(line, 108, &r), PP_INVALID);

	/* a long stream without CRLF is refused, however much arrives */
	memset(line + 14, 'x', sizeof line - 14);
	assert_int_equal(pp(line, sizeof line, &r), PP_INVALID);

	/* TCP6 with two of the longest addresses would take 116 bytes */
	const char *h = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
			"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
			"65535 65535\r\n";
	assert_int_equal(strlen(h), 116);
	assert_int_equal(pps(h, &r), PP_INVALID);
	/* ...and is refused as soon as it cannot fit any more */
	assert_int_equal(pp(h, 57, &r), PP_NEED_MORE);
	assert_int_equal(pp(h, 101, &r), PP_NEED_MORE); /* "...255.25" */
	assert_int_equal(pp(h, 102, &r), PP_INVALID);   /* "...255.255" */

	/* while the same with one digit less is exactly 107 */
	h = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
	    "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.25 1 2\r\n";
	assert_int_equal(strlen(h), PROXYPROTO_V1_MAX);
	assert_int_equal(pps(h, &r), PP_OK);
	check_prefixes(h, strlen(h));
}

/* ---- v2 valid ---- */

static void test_v2_proxy_v4(void **state)
{
	(void)state;
	struct proxyproto_result r;
	unsigned char h[64];
	size_t n = v2(h, 0x21, 0x11, blk4, sizeof blk4);

	assert_int_equal(pp(h, n, &r), PP_OK);
	assert_int_equal(r.len, 28);
	assert_int_equal(r.version, 2);
	assert_int_equal(r.local, 0);
	assert_int_equal(r.src.family, AF_INET);
	assert_string_equal(str(&r.src), "192.0.2.1");
	assert_string_equal(str(&r.dst), "198.51.100.2");
	assert_int_equal(r.src_port, 56324);
	assert_int_equal(r.dst_port, 25);
}

static void test_v2_proxy_v6(void **state)
{
	(void)state;
	struct proxyproto_result r;
	unsigned char h[64];
	size_t n = v2(h, 0x21, 0x21, blk6, sizeof blk6);

	assert_int_equal(pp(h, n, &r), PP_OK);
	assert_int_equal(r.len, 52);
	assert_int_equal(r.version, 2);
	assert_int_equal(r.local, 0);
	assert_int_equal(r.src.family, AF_INET6);
	assert_string_equal(str(&r.src), "2001:db8::1");
	/* v4-mapped is folded, as for a socket address */
	assert_int_equal(r.dst.family, AF_INET);
	assert_string_equal(str(&r.dst), "192.0.2.9");
	assert_int_equal(r.src_port, 443);
	assert_int_equal(r.dst_port, 587);
}

static void test_v2_local(void **state)
{
	(void)state;
	struct proxyproto_result r;
	unsigned char h[64];
	size_t n;

	n = v2(h, 0x20, 0x00, NULL, 0);
	assert_int_equal(pp(h, n, &r), PP_OK);
	assert_int_equal(r.len, 16);
	assert_int_equal(r.version, 2);
	assert_int_equal(r.local, 1);

	/* LOCAL ignores whatever addresses come with it */
	n = v2(h, 0x20, 0x11, blk4, sizeof blk4);
	assert_int_equal(pp(h, n, &r), PP_OK);
	assert_int_equal(r.len, 28);
	assert_int_equal(r.local, 1);
	assert_int_equal(r.src_port, 0);

	/* ...even a block too short for them */
	n = v2(h, 0x20, 0x21, blk4, 4);
	assert_int_equal(pp(h, n, &r), PP_OK);
	assert_int_equal(r.len, 20);
	assert_int_equal(r.local, 1);

	/* PROXY with UNSPEC: the proxy does not know the client */
	n = v2(h, 0x21, 0x00, blk4, 5);
	assert_int_equal(pp(h, n, &r), PP_OK);
	assert_int_equal(r.len, 21);
	assert_int_equal(r.local, 1);
}

static void test_v2_tlvs(void **state)
{
	(void)state;
	struct proxyproto_result r;
	unsigned char blk[64], h[128];
	size_t bl = 0, n;

	memcpy(blk, blk4, 12);
	bl = 12;
	memcpy(blk + bl, "\x01\x00\x02h2", 5); /* ALPN */
	bl += 5;
	memcpy(blk + bl, "\x04\x00\x00", 3); /* NOOP, empty */
	bl += 3;
	memcpy(blk + bl, "\x20\x00\x05\x01\x00\x00\x00\x00", 8); /* SSL */
	bl += 8;
	n = v2(h, 0x21, 0x11, blk, bl);
	assert_int_equal(pp(h, n, &r), PP_OK);
	assert_int_equal(r.len, 16 + bl);
	assert_string_equal(str(&r.src), "192.0.2.1");
	assert_int_equal(r.dst_port, 25);
	check_prefixes(h, n);

	/* the largest block we take: 536 bytes, a NOOP TLV as padding */
	unsigned char big[PROXYPROTO_V2_MAX];
	unsigned char bb[536];
	memcpy(bb, blk4, 12);
	bb[12] = 0x04;
	bb[13] = (unsigned char)((536 - 15) >> 8);
	bb[14] = (unsigned char)((536 - 15) & 0xff);
	memset(bb + 15, 0xAA, 536 - 15);
	n = v2(big, 0x21, 0x11, bb, sizeof bb);
	assert_int_equal(n, PROXYPROTO_V2_MAX);
	assert_int_equal(pp(big, n, &r), PP_OK);
	assert_int_equal(r.len, PROXYPROTO_V2_MAX);

	/* a TLV running past the declared length */
	memcpy(blk + 12, "\x01\x00\x03h2", 5);
	n = v2(h, 0x21, 0x11, blk, 17);
	assert_int_equal(pp(h, n, &r), PP_INVALID);
	/* refused once its header is in, without waiting for the rest */
	assert_int_equal(pp(h, 16 + 12 + 3, &r), PP_INVALID);
	assert_int_equal(pp(h, 16 + 12 + 2, &r), PP_NEED_MORE);

	/* one or two stray bytes cannot hold a TLV */
	memcpy(blk + 12, "\x04\x00", 2);
	n = v2(h, 0x21, 0x11, blk, 13);
	assert_int_equal(pp(h, n, &r), PP_INVALID);
	n = v2(h, 0x21, 0x11, blk, 14);
	assert_int_equal(pp(h, n, &r), PP_INVALID);
	/* known from the declared length alone */
	assert_int_equal(pp(h, 16, &r), PP_INVALID);
}

/* ---- prefixes of every valid header ---- */

static void test_prefixes(void **state)
{
	(void)state;
	static const char *const v1[] = {
		"PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n",
		"PROXY TCP4 0.0.0.0 10.0.0.10 0 65535\r\n",
		"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n",
		"PROXY TCP6 :: ::1 1 2\r\n",
		"PROXY TCP6 1:2:3:4:5:6:7:8 1:2:3:4:5:6:7:: 10 20\r\n",
		"PROXY TCP6 ::ffff:192.0.2.7 1:2:3:4:5:6:1.2.3.4 3 4\r\n",
		TCP6_LONGEST,
		"PROXY UNKNOWN\r\n",
		UNKNOWN_107,
	};
	unsigned char h[128];

	for (size_t i = 0; i < sizeof v1 / sizeof v1[0]; i++)
		check_prefixes(v1[i], strlen(v1[i]));

	check_prefixes(h, v2(h, 0x21, 0x11, blk4, sizeof blk4));
	check_prefixes(h, v2(h, 0x21, 0x21, blk6, sizeof blk6));
	check_prefixes(h, v2(h, 0x20, 0x00, NULL, 0));
	check_prefixes(h, v2(h, 0x20, 0x11, blk4, sizeof blk4));
	check_prefixes(h, v2(h, 0x21, 0x00, blk4, 3));
}

/* ---- invalid v2 ---- */

static void test_v2_bad_signature(void **state)
{
	(void)state;
	struct proxyproto_result r;
	unsigned char h[64];
	size_t n = v2(h, 0x21, 0x11, blk4, sizeof blk4);

	for (size_t i = 0; i < 12; i++) {
		h[i] ^= 0x20;
		assert_int_equal(pp(h, n, &r), PP_INVALID);
		/* known as soon as the wrong byte arrives */
		assert_int_equal(pp(h, i + 1, &r), PP_INVALID);
		h[i] ^= 0x20;
	}
	assert_int_equal(pp(h, n, &r), PP_OK);
}

static void test_v2_bad_version_command(void **state)
{
	(void)state;
	struct proxyproto_result r;
	unsigned char h[64];
	static const unsigned bad[] = {
		0x01, 0x11, 0x31, 0xF1, 0x10, 0x30, /* version */
		0x22, 0x23, 0x2A, 0x2F,             /* command */
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t n = v2(h, bad[i], 0x11, blk4, sizeof blk4);
		assert_int_equal(pp(h, n, &r), PP_INVALID);
		assert_int_equal(pp(h, 13, &r), PP_INVALID);
	}
}

static void test_v2_bad_family(void **state)
{
	(void)state;
	struct proxyproto_result r;
	unsigned char h[64];
	static const unsigned bad[] = {
		0x12, 0x22,       /* UDP */
		0x31, 0x32, 0x30, /* UNIX */
		0x01, 0x02, 0x10, 0x20, 0x13, 0x41, 0xFF,
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t n = v2(h, 0x21, bad[i], blk6, sizeof blk6);
		assert_int_equal(pp(h, n, &r), PP_INVALID);
		assert_int_equal(pp(h, 14, &r), PP_INVALID);
		/* LOCAL does not make them acceptable */
		n = v2(h, 0x20, bad[i], blk6, sizeof blk6);
		assert_int_equal(pp(h, n, &r), PP_INVALID);
	}
}

static void test_v2_bad_length(void **state)
{
	(void)state;
	struct proxyproto_result r;
	unsigned char h[PROXYPROTO_V2_MAX + 64];
	unsigned char blk[600];
	size_t n;

	memset(blk, 0, sizeof blk);
	memcpy(blk, blk6, sizeof blk6);

	/* too short for the family */
	n = v2(h, 0x21, 0x11, blk4, 11);
	assert_int_equal(pp(h, n, &r), PP_INVALID);
	assert_int_equal(pp(h, 16, &r), PP_INVALID);
	n = v2(h, 0x21, 0x21, blk6, 35);
	assert_int_equal(pp(h, n, &r), PP_INVALID);
	n = v2(h, 0x21, 0x21, blk4, 12);
	assert_int_equal(pp(h, n, &r), PP_INVALID);
	n = v2(h, 0x21, 0x11, NULL, 0);
	assert_int_equal(pp(h, n, &r), PP_INVALID);

	/* over the maximum: refused from the length field, not after it */
	n = v2_raw(h, 0x21, 0x21, 537, blk, 537);
	assert_int_equal(pp(h, n, &r), PP_INVALID);
	assert_int_equal(pp(h, 16, &r), PP_INVALID);
	n = v2_raw(h, 0x21, 0x21, 0xFFFF, blk, 40);
	assert_int_equal(pp(h, n, &r), PP_INVALID);
	assert_int_equal(pp(h, 15, &r), PP_INVALID); /* 0xFF00 at least */
	v2_raw(h, 0x21, 0x21, 0x0300, blk, 0);
	assert_int_equal(pp(h, 15, &r), PP_INVALID); /* 768 at least */
	v2_raw(h, 0x21, 0x21, 0x0218, blk, 0);       /* 536 */
	assert_int_equal(pp(h, 15, &r), PP_NEED_MORE);
	assert_int_equal(pp(h, 16, &r), PP_NEED_MORE);
	v2_raw(h, 0x21, 0x21, 0x0219, blk, 0);       /* 537 */
	assert_int_equal(pp(h, 15, &r), PP_NEED_MORE);
	assert_int_equal(pp(h, 16, &r), PP_INVALID);

	/* declared longer than what has come: wait */
	n = v2_raw(h, 0x21, 0x11, 40, blk4, 12);
	assert_int_equal(pp(h, n, &r), PP_NEED_MORE);
}

/* ---- invalid v1 ---- */

static void expect_invalid(const char *const *v, size_t count)
{
	struct proxyproto_result r;

	for (size_t i = 0; i < count; i++)
		if (pps(v[i], &r) != PP_INVALID)
			fail_msg("accepted or waiting: \"%s\"", v[i]);
}

static void test_v1_not_proxy(void **state)
{
	(void)state;
	static const char *const v[] = {
		"EHLO mail.example\r\n",
		"E",
		"\r\nX",
		"\r\r",
		"\n",
		"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY\r\n",
		"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4\r\n",
		"PROXY TCP4 \r\n",
		"PROXY UNKNOWNX\r\n",
		"PROXY UNKNOWN\tx\r\n",
		"PROXY UNKNOWN x\x01y\r\n",
		"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
	};
	expect_invalid(v, sizeof v / sizeof v[0]);
}

static void test_v1_bad_address(void **state)
{
	(void)state;
	static const char *const v[] = {
		"PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
		"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.00 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1..2.3 5.6.7.8 1 2\r\n",
		"PROXY TCP4 .1.2.3 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n",
		"PROXY TCP4 0x1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4/24 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.1000 1 2\r\n",
		"PROXY TCP4 16909060 5.6.7.8 1 2\r\n",
		"PROXY TCP6 2001:db8::1::2 ::1 1 2\r\n",
		"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",
		"PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n",
		"PROXY TCP6 1:2:3:4:5:6:7:8:: ::1 1 2\r\n",
		"PROXY TCP6 :1:: ::1 1 2\r\n",
		"PROXY TCP6 1::: ::1 1 2\r\n",
		"PROXY TCP6 1: ::1 1 2\r\n",
		"PROXY TCP6 12345:: ::1 1 2\r\n",
		"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
		"PROXY TCP6 [::1] ::1 1 2\r\n",
		"PROXY TCP6 ::1.2.3.256 ::1 1 2\r\n",
		"PROXY TCP6 ::1.2.3 ::1 1 2\r\n",
		"PROXY TCP6 ::01.2.3.4 ::1 1 2\r\n",
		"PROXY TCP6 1:2:3:4:5:1.2.3.4 ::1 1 2\r\n",
		"PROXY TCP6 1::2:3:4:5:6:1.2.3.4 ::1 1 2\r\n",
		"PROXY TCP6 ::1.2.3.4:5 ::1 1 2\r\n",
		"PROXY TCP6 g::1 ::1 1 2\r\n",
		"PROXY TCP6 : ::1 1 2\r\n",
	};
	expect_invalid(v, sizeof v / sizeof v[0]);
}

static void test_v1_bad_port(void **state)
{
	(void)state;
	static const char *const v[] = {
		"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 025\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 0x19 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2a\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
	};
	expect_invalid(v, sizeof v / sizeof v[0]);
}

static void test_v1_bad_spacing_and_eol(void **state)
{
	(void)state;
	static const char *const v[] = {
		"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
		"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1\r2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8\r\n",
		"PROXY UNKNOWN\n",
		"PROXY UNKNOWN x\n",
		"PROXY UNKNOWN\rX",
		"PROXY UNKNOWN x\ry\r\n",
	};
	expect_invalid(v, sizeof v / sizeof v[0]);
}

static void test_v1_family_mismatch(void **state)
{
	(void)state;
	static const char *const v[] = {
		"PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n",
		"PROXY TCP4 1.2.3.4 2001:db8::2 1 2\r\n",
		"PROXY TCP4 ::ffff:1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP6 192.0.2.1 198.51.100.2 1 2\r\n",
		"PROXY TCP6 2001:db8::1 192.0.2.1 1 2\r\n",
	};
	expect_invalid(v, sizeof v / sizeof v[0]);
}

/* What can no longer become a header is refused at once; what still can,
 * waits. */
static void test_v1_early_answer(void **state)
{
	(void)state;
	struct proxyproto_result r;
	static const char *const bad[] = {
		"PROXY TCP4 1.2.3.4.",
		"PROXY TCP4 256",
		"PROXY TCP4 01",
		"PROXY TCP4 1.2.3.4 5.6.7.8 65536",
		"PROXY TCP4 1.2.3.4 5.6.7.8 00",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
		"PROXY TCP4 1:",
		"PROXY TCP6 1:2:3:4:5:6:7:8:",
		"PROXY TCP6 :1",
		"PROXY TCP6 1::2::",
		"PROXY TCP6 1:2:3:4:5:1.",
		"PROXY TCP6 1::2:3:4:5:6:1.",
		"PROXY TCP6 ::1.2.3.4.",
		"PROXY TCP6 1.",
		"PROXY TCP ",
		"PROXY X",
		"PROXY UNKNOWN\n",
		"PROXY U\r",
		"PRX",
	};
	static const char *const wait[] = {
		"",
		"P",
		"PROXY",
		"PROXY ",
		"PROXY TCP",
		"PROXY UNK",
		"PROXY UNKNOWN",
		"PROXY UNKNOWN\r",
		"PROXY UNKNOWN x",
		"PROXY TCP4 1.2.3.",
		"PROXY TCP4 1.2.3.4",
		"PROXY TCP4 1.2.3.4 5.6.7.8 6553",
		"PROXY TCP4 1.2.3.4 5.6.7.8 0",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r",
		"PROXY TCP6 ::ffff:1.2.3",
		"PROXY TCP6 1:2:3:4:5:6:7",
		"PROXY TCP6 1:2:3:4:5:6:7:",
		"PROXY TCP6 1:2:3:4:5:6:7::",
		"PROXY TCP6 1:2:3:4:5:6:1.2.3.4",
		"PROXY TCP6 1::2:3:4:5:1.2",
		"PROXY TCP6 :",
		"PROXY TCP6 12",
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (pps(bad[i], &r) != PP_INVALID)
			fail_msg("not refused early: \"%s\"", bad[i]);
	for (size_t i = 0; i < sizeof wait / sizeof wait[0]; i++)
		if (pps(wait[i], &r) != PP_NEED_MORE)
			fail_msg("refused a valid prefix: \"%s\"", wait[i]);
}

/* ---- cross-check of the v1 address syntax against inet_pton ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint32_t rnd(void)
{
	/* xorshift64*: fixed seed, so a failure reproduces */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545F4914F6CDD1Du) >> 32);
}

static unsigned rn(unsigned n)
{
	return rnd() % n;
}

static size_t gen_octet(char *o)
{
	switch (rn(8)) {
	case 0:
		return (size_t)snprintf(o, 5, "0%u", rn(100)); /* leading 0 */
	case 1:
		return (size_t)snprintf(o, 5, "%u", 250 + rn(10));
	default:
		return (size_t)snprintf(o, 5, "%u", rn(256));
	}
}

static size_t gen_v4(char *o, size_t cap)
{
	size_t n = 0;
	unsigned parts = rn(10) == 0 ? 3 + rn(3) : 4;

	for (unsigned i = 0; i < parts && n + 5 < cap; i++) {
		if (i)
			o[n++] = '.';
		n += gen_octet(o + n);
	}
	o[n] = '\0';
	return n;
}

static size_t gen_v6(char *o, size_t cap)
{
	static const char hex[] = "0123456789abcdefABCDEF";
	unsigned groups = rn(10);          /* 0..9, to hit too many */
	int dc = rn(3) ? (int)rn(groups + 1) : -1; /* "::" before group dc */
	bool tail = rn(4) == 0;
	size_t n = 0;

	for (unsigned g = 0; g < groups && n + 8 < cap; g++) {
		if ((int)g == dc)
			o[n++] = ':', o[n++] = ':';
		else if (g)
			o[n++] = ':';
		unsigned len = rn(12) == 0 ? 5 : 1 + rn(4);
		for (unsigned k = 0; k < len; k++)
			o[n++] = hex[rn(sizeof hex - 1)];
	}
	if (dc == (int)groups && n + 2 < cap)
		o[n++] = ':', o[n++] = ':';
	if (tail && n + 20 < cap) {
		if (n && o[n - 1] != ':')
			o[n++] = ':';
		n += gen_v4(o + n, cap - n);
	}
	o[n] = '\0';
	return n;
}

static void mutate_text(char *s, size_t *n, size_t cap)
{
	static const char alpha[] = "0123456789abcdefAF:.:.g%";
	size_t at = *n ? rn((unsigned)*n) : 0;

	switch (rn(3)) {
	case 0:
		if (*n)
			s[at] = alpha[rn(sizeof alpha - 1)];
		break;
	case 1:
		if (*n + 1 < cap) {
			memmove(s + at + 1, s + at, *n - at);
			s[at] = alpha[rn(sizeof alpha - 1)];
			(*n)++;
		}
		break;
	default:
		if (*n) {
			memmove(s + at, s + at + 1, *n - at - 1);
			(*n)--;
		}
		break;
	}
	s[*n] = '\0';
}

static void cross_check(int family, const char *a, bool as_src, int *oks)
{
	struct proxyproto_result r;
	unsigned char bin[16];
	char line[160];
	bool want = inet_pton(family, a, bin) == 1;
	const char *proto = family == AF_INET ? "TCP4" : "TCP6";
	const char *other = family == AF_INET ? "10.0.0.1" : "::1";
	int n = as_src ? snprintf(line, sizeof line, "PROXY %s %s %s 1 2\r\n",
				  proto, a, other)
		       : snprintf(line, sizeof line, "PROXY %s %s %s 1 2\r\n",
				  proto, other, a);

	assert_true(n > 0 && (size_t)n < sizeof line);
	enum proxyproto_status st = pp(line, (size_t)n, &r);
	if (want != (st == PP_OK))
		fail_msg("%s \"%s\": inet_pton %d, parse %d", proto, a,
			 (int)want, (int)st);
	if (!want) {
		assert_int_equal(st, PP_INVALID);
		return;
	}
	(*oks)++;
	check_prefixes(line, (size_t)n);

	struct ipaddr expect, *got = as_src ? &r.src : &r.dst;
	if (family == AF_INET) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		memcpy(&sin.sin_addr, bin, 4);
		assert_true(ipaddr_from_sockaddr((struct sockaddr *)&sin,
						 &expect));
	} else {
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
		memcpy(&sin6.sin6_addr, bin, 16);
		assert_true(ipaddr_from_sockaddr((struct sockaddr *)&sin6,
						 &expect));
	}
	assert_int_equal(got->family, expect.family);
	assert_memory_equal(got->b, expect.b, 16);
}

static void test_v1_address_syntax_matches_inet_pton(void **state)
{
	(void)state;
	char a[80];
	int ok4 = 0, ok6 = 0;

	for (int i = 0; i < 20000; i++) {
		size_t n = gen_v6(a, 60);
		unsigned muts = rn(3) ? 0 : 1 + rn(2);
		for (unsigned m = 0; m < muts; m++)
			mutate_text(a, &n, 60);
		cross_check(AF_INET6, a, i & 1, &ok6);

		n = gen_v4(a, 40);
		muts = rn(3) ? 0 : 1 + rn(2);
		for (unsigned m = 0; m < muts; m++)
			mutate_text(a, &n, 40);
		cross_check(AF_INET, a, i & 1, &ok4);
	}
	/* the generators must produce plenty of both kinds */
	assert_true(ok6 > 2000);
	assert_true(ok4 > 2000);
	assert_true(ok6 < 18000);
	assert_true(ok4 < 18000);
}

/* ---- fuzz ---- */

/*
 * Random mutations of valid headers. Besides not crashing, the answers must
 * be consistent with "a prefix of the stream": a longer input never turns an
 * INVALID into anything else, and a header found in a prefix is the same
 * header in the whole.
 */
static void test_fuzz(void **state)
{
	(void)state;
	enum { CAP = PROXYPROTO_V2_MAX + 64 };
	static unsigned char seeds[12][CAP];
	size_t seedlen[12];
	size_t ns = 0;
	static const char *const v1[] = {
		"PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n",
		"PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 65535 0\r\n",
		"PROXY TCP6 1:2:3:4:5:6:7:8 1:2:3:4:5:6:7:: 10 20\r\n",
		"PROXY UNKNOWN\r\n",
		UNKNOWN_107,
	};
	static const unsigned char interesting[] = {
		0x00, 0x0D, 0x0A, ' ', ':', '.', '0', '9', 'f', 0xFF, 0x02,
		0x11, 0x21, 0x20, 0x21, 0x04, 'P',
	};
	unsigned char blk[64];
	unsigned char buf[CAP];
	int counts[3] = { 0, 0, 0 };

	for (size_t i = 0; i < sizeof v1 / sizeof v1[0]; i++) {
		seedlen[ns] = strlen(v1[i]);
		memcpy(seeds[ns++], v1[i], strlen(v1[i]));
	}
	seedlen[ns] = v2(seeds[ns], 0x21, 0x11, blk4, sizeof blk4), ns++;
	seedlen[ns] = v2(seeds[ns], 0x21, 0x21, blk6, sizeof blk6), ns++;
	seedlen[ns] = v2(seeds[ns], 0x20, 0x00, NULL, 0), ns++;
	memcpy(blk, blk4, 12);
	memcpy(blk + 12, "\x01\x00\x02h2\x04\x00\x00", 8);
	seedlen[ns] = v2(seeds[ns], 0x21, 0x11, blk, 20), ns++;

	for (long it = 0; it < 100000; it++) {
		size_t s = rn((unsigned)ns), n = seedlen[s];
		struct proxyproto_result r, r2;

		memcpy(buf, seeds[s], n);
		unsigned muts = 1 + rn(4);
		for (unsigned m = 0; m < muts; m++) {
			size_t at = n ? rn((unsigned)n) : 0;
			switch (rn(7)) {
			case 0:
				if (n)
					buf[at] ^= (unsigned char)(1u << rn(8));
				break;
			case 1:
				if (n)
					buf[at] = (unsigned char)rnd();
				break;
			case 2:
				if (n)
					buf[at] = interesting[rn(
						sizeof interesting)];
				break;
			case 3:
				if (n < CAP) {
					memmove(buf + at + 1, buf + at, n - at);
					buf[at] = interesting[rn(
						sizeof interesting)];
					n++;
				}
				break;
			case 4:
				if (n) {
					memmove(buf + at, buf + at + 1,
						n - at - 1);
					n--;
				}
				break;
			case 5:
				n = at; /* truncate */
				break;
			default: {
				size_t add = rn(80);
				if (add > CAP - n)
					add = CAP - n;
				for (size_t k = 0; k < add; k++)
					buf[n + k] = (unsigned char)rnd();
				n += add;
				break;
			}
			}
		}

		enum proxyproto_status st = pp(buf, n, &r);
		assert_true(st == PP_OK || st == PP_NEED_MORE ||
			    st == PP_INVALID);
		counts[st]++;
		if (st == PP_OK) {
			assert_true(r.len > 0 && r.len <= n);
			assert_true(r.version == 1 || r.version == 2);
			if (r.version == 1)
				assert_true(r.len <= PROXYPROTO_V1_MAX);
			else
				assert_true(r.len >= 16 &&
					    r.len <= PROXYPROTO_V2_MAX);
			assert_true(r.local == 0 || r.local == 1);
			if (!r.local) {
				assert_true(r.src.family == AF_INET ||
					    r.src.family == AF_INET6);
				assert_true(r.dst.family == AF_INET ||
					    r.dst.family == AF_INET6);
			}
		} else if (st == PP_NEED_MORE) {
			assert_true(n < PROXYPROTO_V2_MAX);
		}

		size_t m = rn((unsigned)n + 1);
		enum proxyproto_status sm = pp(buf, m, &r2);
		if (sm == PP_OK) {
			assert_int_equal(st, PP_OK);
			assert_int_equal(r2.len, r.len);
		}
		if (sm == PP_INVALID)
			assert_int_equal(st, PP_INVALID);
		if (st == PP_NEED_MORE)
			assert_int_equal(sm, PP_NEED_MORE);
		if (st == PP_OK && m < r.len)
			assert_int_equal(sm, PP_NEED_MORE);
	}
	/* the mutations must exercise all three answers */
	assert_true(counts[PP_OK] > 1000);
	assert_true(counts[PP_NEED_MORE] > 1000);
	assert_true(counts[PP_INVALID] > 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_tcp4),
		cmocka_unit_test(test_v1_tcp6),
		cmocka_unit_test(test_v1_tcp6_v4mapped_folds),
		cmocka_unit_test(test_v1_unknown),
		cmocka_unit_test(test_v1_length_limit),
		cmocka_unit_test(test_v2_proxy_v4),
		cmocka_unit_test(test_v2_proxy_v6),
		cmocka_unit_test(test_v2_local),
		cmocka_unit_test(test_v2_tlvs),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_v2_bad_signature),
		cmocka_unit_test(test_v2_bad_version_command),
		cmocka_unit_test(test_v2_bad_family),
		cmocka_unit_test(test_v2_bad_length),
		cmocka_unit_test(test_v1_not_proxy),
		cmocka_unit_test(test_v1_bad_address),
		cmocka_unit_test(test_v1_bad_port),
		cmocka_unit_test(test_v1_bad_spacing_and_eol),
		cmocka_unit_test(test_v1_family_mismatch),
		cmocka_unit_test(test_v1_early_answer),
		cmocka_unit_test(test_v1_address_syntax_matches_inet_pton),
		cmocka_unit_test(test_fuzz),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
