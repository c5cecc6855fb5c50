/*
 * dnsmsg: reading a DNS response (RFC 1035) as c-ares hands it over, for
 * the records greygate's policy needs: MX, A, AAAA, PTR, and TXT for SPF
 * (dnsmsg_parse_txt; CNAME chains are
 * followed by the resolver; the answer's records for the final name are
 * what counts here).
 *
 * Promises: every length and pointer in the message is checked against the
 * message size; compression pointers may only point backwards and are
 * followed a bounded number of times; at most DNS_MAX_RR records are
 * returned (the rest is ignored and says so); names are returned in lower
 * case without the trailing dot. An MX exchange or PTR target that is not
 * a valid host name (hostname.h: escapes, NUL, controls, a dot inside a
 * label, more than 253 bytes, a PTR to the root) is returned as "" with
 * bad_name set, never as text and never as a malformed message: the sender
 * chose those bytes, they are no fault of the resolver. Any other name
 * longer than 253 bytes makes the message malformed. A negative answer carries the TTL to cache it
 * for (the SOA minimum, RFC 2308), a positive one the smallest TTL of the
 * records returned.
 */
#ifndef GG_DNSMSG_H
#define GG_DNSMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

#define DNS_MAX_RR 32
#define DNS_NAME_MAX 254          /* 253 + NUL */

#define DNS_T_A 1
#define DNS_T_CNAME 5
#define DNS_T_SOA 6
#define DNS_T_PTR 12
#define DNS_T_MX 15
#define DNS_T_AAAA 28
#define DNS_T_TXT 16

enum dns_status {
	DNS_OK,          /* records of the asked type are in the answer */
	DNS_NXDOMAIN,    /* the name does not exist */
	DNS_NODATA,      /* the name exists, no record of that type */
	DNS_TEMPFAIL,    /* SERVFAIL, timeout, refused, malformed: try later */
};

struct dns_rr {
	uint16_t pref;                 /* MX */
	bool bad_name;                 /* NAME was no host name; NAME is "" */
	char name[DNS_NAME_MAX];       /* MX exchange, PTR target */
	struct ipaddr addr;            /* A, AAAA */
};

struct dns_answer {
	enum dns_status status;
	uint16_t type;
	uint32_t ttl;
	size_t n;
	bool truncated;                /* more records than DNS_MAX_RR */
	struct dns_rr rr[DNS_MAX_RR];
};

/* TXT answers (SPF records) hold text, not names or addresses: each
 * record's character-strings concatenated (RFC 7208 section 3.3), at most
 * DNS_TXT_REC_MAX bytes of it; a longer record keeps its first bytes and
 * says too_long. All records share one bounded buffer; what does not fit
 * sets truncated. The text may hold any byte, NUL included: use len. */
#define DNS_TXT_MAX_RR 32
#define DNS_TXT_REC_MAX 2048
#define DNS_TXT_BUF 8192

struct dns_txt {
	enum dns_status status;
	uint32_t ttl;
	size_t n;
	bool truncated;
	struct {
		size_t off, len;           /* in buf */
		bool too_long;
	} rr[DNS_TXT_MAX_RR];
	char buf[DNS_TXT_BUF];
};

/* dnsmsg_parse for the response to a TXT query. */
void dnsmsg_parse_txt(const unsigned char *msg, size_t len, struct dns_txt *t);

/*
 * Parses MSG (LEN bytes), the response to a query for TYPE. Sets A; never
 * fails: a message that cannot be read is DNS_TEMPFAIL (a broken or
 * spoofed answer must not turn into a permanent "does not exist").
 */
void dnsmsg_parse(const unsigned char *msg, size_t len, uint16_t type, struct dns_answer *a);

const char *dns_status_name(enum dns_status s);

/* Whether A, an MX answer, is the null MX of RFC 7505 (the domain accepts
 * no mail): one record whose exchange is the root. */
bool dns_null_mx(const struct dns_answer *a);

#endif
