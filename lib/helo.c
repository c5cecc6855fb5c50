#include "helo.h"

/* Length of the sequence that lead byte C starts, and the smallest and
 * largest value its second byte may take (which rules out overlong forms,
 * surrogates and values above U+10FFFF); 0 for a byte that cannot lead. */
static int utf8_lead(unsigned char c, unsigned char *lo, unsigned char *hi)
{
	*lo = 0x80;
	*hi = 0xBF;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		return 2;
	if (c >= 0xE0 && c <= 0xEF) {
		if (c == 0xE0)
			*lo = 0xA0;
		else if (c == 0xED)
			*hi = 0x9F;
		return 3;
	}
	if (c >= 0xF0 && c <= 0xF4) {
		if (c == 0xF0)
			*lo = 0x90;
		else if (c == 0xF4)
			*hi = 0x8F;
		return 4;
	}
	return 0;
}

bool utf8_valid(const char *p, size_t len)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t i = 0;
	while (i < len) {
		unsigned char lo, hi;
		int n = utf8_lead(u[i], &lo, &hi);
		if (n == 0 || (size_t)n > len - i)
			return false;
		for (int k = 1; k < n; k++) {
			unsigned char c = u[i + (size_t)k];
			if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF))
				return false;
		}
		i += (size_t)n;
	}
	return true;
}

enum helo_verdict helo_check(const char *arg, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)arg[i];
		if (c < 0x20 || c == 0x7F)
			return HELO_CONTROL;
	}
	return utf8_valid(arg, len) ? HELO_OK : HELO_BAD_UTF8;
}
