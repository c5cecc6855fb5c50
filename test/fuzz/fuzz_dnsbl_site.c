/*
 * fuzz_dnsbl_site: the DNSBL site parser (lib/dnsbl_site.h).
 *
 * The input is one site as written in scoring.dnsbl, parsed from an
 * exactly sized NUL-terminated heap copy. Checked:
 *  - a parsed site has a valid lower-case domain of at most
 *    DNSBL_DOMAIN_MAX bytes and a weight within +-DNSBL_WEIGHT_MAX;
 *  - without a filter it matches 127.x and nothing else; every answer is
 *    matched or not without reading past the site;
 *  - the query name for an IPv6 client fits, or is refused, never cut.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dnsbl_site.h"
#include "fuzz_check.h"
#include "hostname.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	char *t = malloc(n + 1);
	CHECK(t != NULL);
	memcpy(t, data, n);
	t[n] = 0;
	struct dnsbl_site s;
	if (dnsbl_site_parse(t, &s)) {
		size_t dl = strlen(s.domain);
		CHECK(dl > 0 && dl <= DNSBL_DOMAIN_MAX && hostname_valid(s.domain, dl));
		for (size_t i = 0; i < dl; i++)
			CHECK(!isupper((unsigned char)s.domain[i]));
		CHECK(s.weight >= -DNSBL_WEIGHT_MAX && s.weight <= DNSBL_WEIGHT_MAX);
		struct ipaddr a = { .family = AF_INET };
		for (unsigned v = 0; v < 256; v++) {
			a.b[0] = 127;
			a.b[3] = (uint8_t)v;
			bool m = dnsbl_site_match(&s, &a);
			a.b[0] = (uint8_t)v;
			if (!s.filtered)
				CHECK(m && dnsbl_site_match(&s, &a) == (v == 127));
		}
		struct ipaddr six = { .family = AF_INET6 };
		char q[HOSTNAME_MAX + 1];
		if (dnsbl_query_name(&six, s.domain, q, sizeof q))
			CHECK(strlen(q) == 64 + dl);
	}
	free(t);
	return 0;
}
