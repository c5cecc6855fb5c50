/*
 * dnsbl_site: one DNSBL or DNSWL site written as Postfix's postscreen
 * writes them (postscreen_dnsbl_sites), and whether an A answer from that
 * site counts: "site=filter*weight".
 *
 *   zen.example=127.0.0.[2..11]*3          listed when the answer is one
 *                                          of 127.0.0.2 .. 127.0.0.11
 *   list.example=127.0.[0..255].[1..3]*-5  an allowlist (negative weight)
 *   bl.example                             any 127.x.x.x answer, weight 1
 *
 * A filter is four octets; each is a number or a bracketed list of
 * numbers and ranges separated by ';' ("[1;3..5]"). The weight is an
 * integer, -1000..1000, 1 when absent; a negative weight allowlists.
 *
 * Promises: pure functions of their input, no allocation; what they
 * refuse leaves nothing half-set that could be used.
 */
#ifndef GG_DNSBL_SITE_H
#define GG_DNSBL_SITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

/* Room for the reversed IPv6 address (64 bytes of nibbles and dots) in
 * a 253-byte query name. */
#define DNSBL_DOMAIN_MAX 180
#define DNSBL_WEIGHT_MAX 1000

struct dnsbl_site {
	char domain[DNSBL_DOMAIN_MAX + 1];   /* lower case, no trailing dot */
	int weight;
	bool filtered;                       /* false: any 127.x.x.x answer */
	uint8_t octet[4][32];                /* the values each octet may take, a bit each */
};

/* Parses TEXT into *S; false (and *S unusable) when TEXT is not a site. */
bool dnsbl_site_parse(const char *text, struct dnsbl_site *s);

/* Whether the answer A (an A record) lists the client on S. */
bool dnsbl_site_match(const struct dnsbl_site *s, const struct ipaddr *a);

/* The name to ask for CLIENT on DOMAIN: the IPv4 octets reversed
 * ("2.0.0.127.zen.example") or the IPv6 nibbles reversed. False when it
 * does not fit in OUT. */
bool dnsbl_query_name(const struct ipaddr *client, const char *domain, char *out, size_t outlen);

#endif
