/*
 * fuzz_proxyproto: the PROXY protocol header parser (lib/proxyproto.h).
 *
 * The input is the start of a connection's byte stream. It is parsed in
 * full and as every prefix of it (each an exactly sized heap copy, so that
 * ASan sees a read past the length given). Checked:
 *  - PP_OK: the header length is at most the input's; a v2 header is the
 *    signature, 16 bytes at least, 16 + its length field, at most
 *    PROXYPROTO_V2_MAX; a v1 header is one "PROXY " line ended by its only
 *    CRLF, at most PROXYPROTO_V1_MAX bytes, whose addresses and ports are
 *    what inet_pton and a strict decimal reading make of its fields;
 *  - PP_NEED_MORE only for inputs shorter than the longest header
 *    (PROXYPROTO_V1_MAX for a v1 start, PROXYPROTO_V2_MAX otherwise);
 *  - prefixes agree: while a prefix is shorter than the header length L of
 *    a longer one that is OK, it needs more; from L on every prefix gives
 *    the same result; a prefix that is invalid stays invalid when longer.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "netaddr.h"
#include "proxyproto.h"

static const unsigned char v2_sig[12] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
};

static enum proxyproto_status parse_copy(const uint8_t *data, size_t n,
					 struct proxyproto_result *r)
{
	unsigned char *b = malloc(n ? n : 1);
	CHECK(b != NULL);
	if (n)
		memcpy(b, data, n);
	memset(r, 0xa5, sizeof *r);
	enum proxyproto_status st = proxyproto_parse(b, n, r);
	free(b);
	return st;
}

static bool same_addr(const struct ipaddr *a, const struct ipaddr *b)
{
	return a->family == b->family && memcmp(a->b, b->b, sizeof a->b) == 0;
}

static bool same_result(const struct proxyproto_result *a, const struct proxyproto_result *b)
{
	if (a->len != b->len || a->version != b->version || a->local != b->local)
		return false;
	if (a->local)
		return true;
	return same_addr(&a->src, &b->src) && same_addr(&a->dst, &b->dst) &&
	       a->src_port == b->src_port && a->dst_port == b->dst_port;
}

/* A port field: 1 to 5 digits, no leading zero but "0", at most 65535. */
static bool port_ok(const char *s, size_t n, uint16_t *port)
{
	unsigned long v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

static void check_v1(const uint8_t *d, const struct proxyproto_result *r)
{
	CHECK(r->len >= 15 && r->len <= PROXYPROTO_V1_MAX); /* "PROXY UNKNOWN\r\n" */
	CHECK(memcmp(d, "PROXY ", 6) == 0);
	CHECK(d[r->len - 2] == '\r' && d[r->len - 1] == '\n');
	for (size_t i = 0; i + 2 < r->len; i++) {
		CHECK(d[i] != '\r' && d[i] != '\n');
		CHECK(d[i] >= 0x20 && d[i] < 0x7f);
	}
	if (r->local) {
		CHECK(memcmp(d + 6, "UNKNOWN", 7) == 0);
		CHECK(r->len == 15 || d[13] == ' ');
		return;
	}
	/* PROXY TCPx src dst sport dport */
	char line[PROXYPROTO_V1_MAX + 1];
	memcpy(line, d, r->len - 2);
	line[r->len - 2] = '\0';
	const char *f[6];
	size_t fl[6], nf = 0;
	for (char *p = line; nf < 6;) {
		char *sp = strchr(p, ' ');
		f[nf] = p;
		fl[nf] = sp ? (size_t)(sp - p) : strlen(p);
		nf++;
		if (!sp)
			break;
		p = sp + 1;
	}
	CHECK(nf == 6 && f[5] + fl[5] == line + r->len - 2); /* single blanks, 6 fields */
	bool v4 = fl[1] == 4 && memcmp(f[1], "TCP4", 4) == 0;
	CHECK(v4 || (fl[1] == 4 && memcmp(f[1], "TCP6", 4) == 0));
	const struct ipaddr *want[2] = { &r->src, &r->dst };
	for (int i = 0; i < 2; i++) {
		char text[64];
		unsigned char bin[16];
		CHECK(fl[2 + i] > 0 && fl[2 + i] < sizeof text);
		memcpy(text, f[2 + i], fl[2 + i]);
		text[fl[2 + i]] = '\0';
		CHECK(inet_pton(v4 ? AF_INET : AF_INET6, text, bin) == 1);
		struct ipaddr a;
		CHECK(ipaddr_parse(text, &a));
		CHECK(same_addr(&a, want[i]));
	}
	uint16_t sp, dp;
	CHECK(port_ok(f[4], fl[4], &sp) && sp == r->src_port);
	CHECK(port_ok(f[5], fl[5], &dp) && dp == r->dst_port);
}

static void check_ok(const uint8_t *d, size_t n, const struct proxyproto_result *r)
{
	CHECK(r->len > 0 && r->len <= n);
	CHECK(r->local == 0 || r->local == 1);
	if (r->version == 2) {
		CHECK(r->len >= 16 && r->len <= PROXYPROTO_V2_MAX);
		CHECK(memcmp(d, v2_sig, sizeof v2_sig) == 0);
		CHECK(r->len == 16 + ((size_t)d[14] << 8 | d[15]));
		CHECK((d[12] >> 4) == 2);
		return;
	}
	CHECK(r->version == 1);
	check_v1(d, r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxyproto_result full, r;
	enum proxyproto_status st = parse_copy(data, size, &full);

	CHECK(st == PP_OK || st == PP_NEED_MORE || st == PP_INVALID);
	if (st == PP_OK)
		check_ok(data, size, &full);
	if (st == PP_NEED_MORE) {
		CHECK(size < PROXYPROTO_V2_MAX);
		if (size > 0 && data[0] == 'P')
			CHECK(size < PROXYPROTO_V1_MAX);
	}

	/* every prefix, shortest first */
	enum proxyproto_status prev = PP_NEED_MORE;
	struct proxyproto_result first;
	for (size_t n = 0; n < size; n++) {
		enum proxyproto_status s = parse_copy(data, n, &r);
		if (st == PP_OK) {
			if (n < full.len)
				CHECK(s == PP_NEED_MORE);
			else
				CHECK(s == PP_OK && same_result(&r, &full));
		}
		if (prev == PP_INVALID)
			CHECK(s == PP_INVALID);
		if (prev == PP_OK)
			CHECK(s == PP_OK && same_result(&r, &first));
		if (s == PP_OK && prev != PP_OK)
			first = r;
		if (s == PP_OK)
			check_ok(data, n, &r);
		prev = s;
	}
	/* the full input ends the sequence the same way */
	if (prev == PP_INVALID)
		CHECK(st == PP_INVALID);
	if (prev == PP_OK)
		CHECK(st == PP_OK && same_result(&full, &first));
	return 0;
}
