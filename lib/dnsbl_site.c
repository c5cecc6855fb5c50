#include "dnsbl_site.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "hostname.h"

/* A decimal number of at most MAX at *P, advancing *P; -1 when none. */
static long number(const char **p, long max)
{
	const char *q = *p;
	long v = 0;
	if (!isdigit((unsigned char)*q))
		return -1;
	for (; isdigit((unsigned char)*q); q++) {
		v = v * 10 + (*q - '0');
		if (v > max)
			return -1;
	}
	*p = q;
	return v;
}

static void set_range(uint8_t *bits, long lo, long hi)
{
	for (long v = lo; v <= hi; v++)
		bits[v / 8] |= (uint8_t)(1u << (v % 8));
}

/* One octet of the filter at *P: "N" or "[N;N..M;...]". */
static bool octet(const char **p, uint8_t *bits)
{
	if (**p != '[') {
		long v = number(p, 255);
		if (v < 0)
			return false;
		set_range(bits, v, v);
		return true;
	}
	(*p)++;
	for (;;) {
		long lo = number(p, 255), hi = lo;
		if (lo < 0)
			return false;
		if ((*p)[0] == '.' && (*p)[1] == '.') {
			*p += 2;
			if ((hi = number(p, 255)) < lo)
				return false;
		}
		set_range(bits, lo, hi);
		if (**p == ']') {
			(*p)++;
			return true;
		}
		if (**p != ';')
			return false;
		(*p)++;
	}
}

bool dnsbl_site_parse(const char *text, struct dnsbl_site *s)
{
	memset(s, 0, sizeof *s);
	s->weight = 1;
	size_t dlen = strcspn(text, "=*");
	if (dlen == 0 || dlen > DNSBL_DOMAIN_MAX || !hostname_valid(text, dlen))
		return false;
	for (size_t i = 0; i < dlen; i++)
		s->domain[i] = (char)tolower((unsigned char)text[i]);
	const char *p = text + dlen;
	if (*p == '=') {
		p++;
		s->filtered = true;
		for (int i = 0; i < 4; i++) {
			if ((i > 0 && *p++ != '.') || !octet(&p, s->octet[i]))
				return false;
		}
	}
	if (*p == '*') {
		p++;
		bool neg = *p == '-';
		if (neg)
			p++;
		long w = number(&p, DNSBL_WEIGHT_MAX);
		if (w < 0)
			return false;
		s->weight = neg ? -(int)w : (int)w;
	}
	return *p == 0;
}

bool dnsbl_site_match(const struct dnsbl_site *s, const struct ipaddr *a)
{
	if (a->family != AF_INET)
		return false;
	if (!s->filtered)
		return a->b[0] == 127;
	for (int i = 0; i < 4; i++)
		if (!(s->octet[i][a->b[i] / 8] & (1u << (a->b[i] % 8))))
			return false;
	return true;
}

bool dnsbl_query_name(const struct ipaddr *client, const char *domain, char *out, size_t outlen)
{
	char rev[80];
	size_t n = 0;
	if (client->family == AF_INET) {
		n = (size_t)snprintf(rev, sizeof rev, "%u.%u.%u.%u", client->b[3], client->b[2],
				     client->b[1], client->b[0]);
	} else {
		static const char hex[] = "0123456789abcdef";
		for (int i = 15; i >= 0; i--) {
			rev[n++] = hex[client->b[i] & 15];
			rev[n++] = '.';
			rev[n++] = hex[client->b[i] >> 4];
			rev[n++] = i ? '.' : 0;
		}
	}
	int m = snprintf(out, outlen, "%s.%s", rev, domain);
	return m > 0 && (size_t)m < outlen && (size_t)m <= HOSTNAME_MAX;
}
