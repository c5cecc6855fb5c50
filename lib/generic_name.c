#include "generic_name.h"

#include <string.h>
#include <strings.h>

#include "hostname.h"

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_letter(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int hex_value(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool is_word(const char *s, size_t n, const char *const *words, size_t nwords)
{
	for (size_t w = 0; w < nwords; w++) {
		if (words[w] && strlen(words[w]) == n && strncasecmp(words[w], s, n) == 0)
			return true;
	}
	return false;
}

/* Each label whole (a configured word may hold '-' or digits), then each
 * run of letters in it. */
static bool has_word(const char *name, size_t len, const char *const *words, size_t nwords)
{
	size_t i = 0;
	while (i < len) {
		size_t label = i;
		while (i < len && name[i] != '.')
			i++;
		if (is_word(name + label, i - label, words, nwords))
			return true;
		for (size_t p = label; p < i;) {
			while (p < i && !is_letter((unsigned char)name[p]))
				p++;
			size_t run = p;
			while (p < i && is_letter((unsigned char)name[p]))
				p++;
			if (p > run && is_word(name + run, p - run, words, nwords))
				return true;
		}
		i++;
	}
	return false;
}

/* S[0..N) holds NEEDLE (lower-case hex) anywhere, case-insensitively. */
static bool has_text(const char *s, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	for (size_t i = 0; i + k <= n; i++) {
		if (strncasecmp(s + i, needle, k) == 0)
			return true;
	}
	return false;
}

static void hex_bytes(const uint8_t *b, size_t n, bool reversed, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		uint8_t v = b[reversed ? n - 1 - i : i];
		out[2 * i] = digits[v >> 4];
		out[2 * i + 1] = digits[v & 15];
	}
	out[2 * n] = '\0';
}

/* The window holds the last three numbers read, the newest last; -1 for a
 * number that is no octet. */
static bool push_octet(int win[3], int v, const uint8_t a[4])
{
	win[0] = win[1];
	win[1] = win[2];
	win[2] = v;
	return (win[0] == a[1] && win[1] == a[2] && win[2] == a[3]) ||
	       (win[0] == a[3] && win[1] == a[2] && win[2] == a[1]);
}

static int decimal(const char *s, size_t n)
{
	int v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

static bool padded_octets(const char *s, size_t n)
{
	if (n < 6 || n % 3 != 0)
		return false;
	for (size_t g = 0; g < n; g += 3) {
		if (decimal(s + g, 3) > 255)
			return false;
	}
	return true;
}

/* The last three octets are the ones that name one customer; the first
 * is often left out ("113-7.dsl...") or spelt as the provider's block.
 * Matching three, not four, finds both "a-b-c-d" and "d.c.b.a". */
static bool has_v4(const char *name, size_t len, const uint8_t a[4])
{
	char hex[9];
	hex_bytes(a, 4, false, hex);
	if (has_text(name, len, hex))
		return true;
	hex_bytes(a, 4, true, hex);
	if (has_text(name, len, hex))
		return true;

	int win[3] = { -1, -1, -1 };
	size_t i = 0;
	while (i < len) {
		if (!is_digit((unsigned char)name[i])) {
			i++;
			continue;
		}
		size_t run = i;
		while (i < len && is_digit((unsigned char)name[i]))
			i++;
		size_t n = i - run;
		if (padded_octets(name + run, n)) {
			for (size_t g = 0; g < n; g += 3) {
				if (push_octet(win, decimal(name + run + g, 3), a))
					return true;
			}
		} else if (push_octet(win, n <= 3 ? decimal(name + run, n) : -1, a)) {
			return true;
		}
	}
	return false;
}

/* IPv6 names spell groups in hex, so letters can be digits: parts are the
 * runs between '.', '-' and '_', and a part counts only if all hex. */
static bool has_v6(const char *name, size_t len, const uint8_t b[16])
{
	char hex[9];
	hex_bytes(b + 12, 4, false, hex);
	if (has_text(name, len, hex))
		return true;

	int g6 = b[12] << 8 | b[13], g7 = b[14] << 8 | b[15];
	int nibble[8];                    /* the address's last nibbles, lowest first */
	for (int k = 0; k < 8; k++)
		nibble[k] = k % 2 ? b[15 - k / 2] >> 4 : b[15 - k / 2] & 15;

	int grp[2] = { -1, -1 };          /* last two parts as 16-bit groups */
	int nib[8] = { -1, -1, -1, -1, -1, -1, -1, -1 };  /* last eight as nibbles */
	size_t i = 0;
	while (i < len) {
		unsigned char c = (unsigned char)name[i];
		if (c == '.' || c == '-' || c == '_') {
			i++;
			continue;
		}
		size_t run = i;
		int v = 0;
		while (i < len && name[i] != '.' && name[i] != '-' && name[i] != '_') {
			int h = hex_value((unsigned char)name[i]);
			v = h < 0 || v < 0 ? -1 : (v << 4 | h) & 0xfffff;
			i++;
		}
		size_t n = i - run;
		if (n > 4)
			v = -1;
		grp[0] = grp[1];
		grp[1] = v;
		if ((grp[0] == g6 && grp[1] == g7) || (grp[0] == g7 && grp[1] == g6))
			return true;
		memmove(nib, nib + 1, sizeof nib - sizeof nib[0]);
		nib[7] = n == 1 ? v : -1;
		if (memcmp(nib, nibble, sizeof nib) == 0)
			return true;
	}
	return false;
}

bool generic_name(const char *name, const struct ipaddr *addr,
		  const char *const *words, size_t nwords)
{
	if (!name)
		return true;
	size_t len = strnlen(name, HOSTNAME_MAX + 2);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (!hostname_valid(name, len))
		return true;
	if (has_word(name, len, words, nwords))
		return true;
	if (addr && addr->family == AF_INET)
		return has_v4(name, len, addr->b);
	if (addr && addr->family == AF_INET6)
		return has_v6(name, len, addr->b);
	return false;
}
