/*
 * fuzz_dnsmsg: the DNS response reader (lib/dnsmsg.h).
 *
 * The input is a response message; it is parsed as the answer to an MX,
 * an A, an AAAA and a PTR query. Checked: the status is one of the four,
 * n <= DNS_MAX_RR and n > 0 exactly for DNS_OK, "truncated" only with
 * DNS_MAX_RR records, the TTL within the one-day cap; every name returned
 * is NUL-terminated within DNS_NAME_MAX and either the root or a valid
 * host name in lower case (as the header promises for names handed out),
 * and a bad name is returned as "" (never as a PTR name); A records are IPv4, AAAA records
 * IPv6 (or IPv4 for a v4-mapped one); parsing twice gives the same answer.
 * A type the reader does not support is always DNS_TEMPFAIL. Read as a
 * TXT answer (dnsmsg_parse_txt): records only with DNS_OK, at most
 * DNS_TXT_MAX_RR, each inside the buffer and at most DNS_TXT_REC_MAX
 * bytes, in order without overlap, and the same answer twice.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dnsmsg.h"
#include "fuzz_check.h"
#include "hostname.h"

static void check_name(const char *name)
{
	const char *nul = memchr(name, '\0', DNS_NAME_MAX);
	CHECK(nul != NULL);
	size_t n = (size_t)(nul - name);
	CHECK(n <= DNS_NAME_MAX - 1);
	if (n == 0)
		return; /* the root */
	CHECK(hostname_valid(name, n));
	for (size_t i = 0; i < n; i++)
		CHECK(!(name[i] >= 'A' && name[i] <= 'Z'));
}

static void check_type(const uint8_t *msg, size_t len, uint16_t type)
{
	struct dns_answer a, b;

	memset(&a, 0xa5, sizeof a);
	dnsmsg_parse(msg, len, type, &a);
	CHECK(a.type == type);
	CHECK(a.status == DNS_OK || a.status == DNS_NXDOMAIN || a.status == DNS_NODATA ||
	      a.status == DNS_TEMPFAIL);
	CHECK(strcmp(dns_status_name(a.status), "unknown") != 0);
	CHECK(a.n <= DNS_MAX_RR);
	CHECK((a.status == DNS_OK) == (a.n > 0));
	if (a.truncated)
		CHECK(a.status == DNS_OK && a.n == DNS_MAX_RR);
	CHECK(a.ttl <= 86400);
	if (a.status == DNS_TEMPFAIL)
		CHECK(a.ttl == 0);

	for (size_t i = 0; i < a.n; i++) {
		const struct dns_rr *rr = &a.rr[i];
		check_name(rr->name);
		if (rr->bad_name)
			CHECK(rr->name[0] == '\0');
		if (type == DNS_T_PTR)
			CHECK(rr->bad_name == (rr->name[0] == '\0'));
		else if (type != DNS_T_MX)
			CHECK(!rr->bad_name);
		switch (type) {
		case DNS_T_A:
			CHECK(rr->addr.family == AF_INET && rr->name[0] == '\0');
			break;
		case DNS_T_AAAA:
			CHECK(rr->addr.family == AF_INET6 || rr->addr.family == AF_INET);
			CHECK(rr->name[0] == '\0');
			break;
		case DNS_T_MX:
		case DNS_T_PTR:
			CHECK(rr->addr.family == 0);
			break;
		}
		if (type != DNS_T_MX)
			CHECK(rr->pref == 0);
	}

	/* pure: the same answer again */
	dnsmsg_parse(msg, len, type, &b);
	CHECK(a.status == b.status && a.n == b.n && a.ttl == b.ttl &&
	      a.truncated == b.truncated);
	for (size_t i = 0; i < a.n; i++)
		CHECK(a.rr[i].pref == b.rr[i].pref && a.rr[i].bad_name == b.rr[i].bad_name &&
		      strcmp(a.rr[i].name, b.rr[i].name) == 0 &&
		      a.rr[i].addr.family == b.rr[i].addr.family &&
		      memcmp(a.rr[i].addr.b, b.rr[i].addr.b, sizeof a.rr[i].addr.b) == 0);
}

static void check_txt(const uint8_t *msg, size_t len)
{
	static struct dns_txt t, u;
	dnsmsg_parse_txt(msg, len, &t);
	CHECK(t.status == DNS_OK || t.status == DNS_NXDOMAIN || t.status == DNS_NODATA ||
	      t.status == DNS_TEMPFAIL);
	CHECK(t.n <= DNS_TXT_MAX_RR);
	if (t.status != DNS_OK)
		CHECK(t.n == 0 && !t.truncated);
	CHECK(t.ttl <= 86400);
	size_t end = 0;
	for (size_t i = 0; i < t.n; i++) {
		CHECK(t.rr[i].off >= end && t.rr[i].len <= DNS_TXT_REC_MAX);
		CHECK(t.rr[i].off + t.rr[i].len <= DNS_TXT_BUF);
		end = t.rr[i].off + t.rr[i].len;
	}
	dnsmsg_parse_txt(msg, len, &u);
	CHECK(t.status == u.status && t.n == u.n && t.truncated == u.truncated && t.ttl == u.ttl);
	CHECK(memcmp(t.buf, u.buf, end) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_txt(data, size);
	static const uint16_t types[] = { DNS_T_MX, DNS_T_A, DNS_T_AAAA, DNS_T_PTR };

	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		check_type(data, size, types[i]);

	/* a type the reader does not know: never an answer */
	struct dns_answer a;
	dnsmsg_parse(data, size, 16 /* TXT */, &a);
	CHECK(a.status == DNS_TEMPFAIL && a.n == 0);
	return 0;
}
