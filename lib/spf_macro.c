#include "spf_macro.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The longest value a macro letter may stand for; longer ones cannot be
 * expanded (an SMTP local part is at most 64 bytes, a domain 253, an IPv6
 * address in nibbles 63). */
#define VALUE_MAX 512

struct out {
	char *p;
	size_t cap, n;
	bool ok;
};

static void put(struct out *o, const char *s, size_t len)
{
	if (!o->ok || len >= o->cap - o->n) {
		o->ok = false;
		return;
	}
	memcpy(o->p + o->n, s, len);
	o->n += len;
	o->p[o->n] = '\0';
}

static bool is_delim(char c)
{
	return c && strchr(".-+,/_=", c) != NULL;
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

/* The value of macro letter L (lower case) into V (VALUE_MAX + 1 bytes). */
static bool value_of(char l, const struct spf_macro_env *env, char *v)
{
	const char *s = NULL;
	char buf[VALUE_MAX + 1];
	int n = 0;
	switch (l) {
	case 's':
		n = snprintf(v, VALUE_MAX + 1, "%s@%s", env->local ? env->local : "postmaster",
			     env->sender_domain ? env->sender_domain : "unknown");
		return n >= 0 && n <= VALUE_MAX;
	case 'l': s = env->local ? env->local : "postmaster"; break;
	case 'o': s = env->sender_domain; break;
	case 'd': s = env->domain; break;
	case 'h': s = env->helo; break;
	case 'p': s = env->ptr_name; break;
	case 'r': s = env->receiver; break;
	case 'v':
		s = env->ip && env->ip->family == AF_INET6 ? "ip6" : "in-addr";
		break;
	case 'c':
		if (!env->ip)
			break;
		s = ipaddr_str(env->ip, buf, sizeof buf);
		break;
	case 't':
		n = snprintf(v, VALUE_MAX + 1, "%lld", env->now);
		return n >= 0 && n <= VALUE_MAX;
	case 'i':
		if (!env->ip)
			break;
		if (env->ip->family == AF_INET) {
			n = snprintf(v, VALUE_MAX + 1, "%u.%u.%u.%u", env->ip->b[0], env->ip->b[1],
				     env->ip->b[2], env->ip->b[3]);
			return n > 0;
		}
		/* IPv6: dot-separated nibbles, most significant first */
		for (int k = 0; k < 16; k++) {
			static const char hex[] = "0123456789abcdef";
			v[n++] = hex[env->ip->b[k] >> 4];
			v[n++] = '.';
			v[n++] = hex[env->ip->b[k] & 15];
			v[n++] = k < 15 ? '.' : '\0';
		}
		return true;
	default:
		return false;
	}
	if (!s)
		s = "unknown";
	if (strlen(s) > VALUE_MAX)
		return false;
	memcpy(v, s, strlen(s) + 1);
	return true;
}

/* One %{...} at S (after "%{", up to and including "}"); returns its length
 * from S, 0 when invalid. With O set, appends its expansion. */
static size_t macro(const char *s, size_t len, bool exp, const struct spf_macro_env *env,
		    struct out *o)
{
	size_t i = 0;
	if (i >= len)
		return 0;
	char letter = s[i++];
	char l = lower(letter);
	bool known = l && (strchr("slodiphv", l) || (exp && strchr("crt", l)));
	if (!known)
		return 0;
	unsigned keep = 0;   /* 0: all parts */
	bool digits = false;
	while (i < len && s[i] >= '0' && s[i] <= '9') {
		digits = true;
		if (keep < 1000)
			keep = keep * 10 + (unsigned)(s[i] - '0');
		i++;
	}
	if (digits && keep == 0)
		return 0;    /* RFC 7208 section 7.1: the number must be nonzero */
	bool reverse = false;
	if (i < len && (s[i] == 'r' || s[i] == 'R')) {
		reverse = true;
		i++;
	}
	size_t dstart = i;
	while (i < len && is_delim(s[i]))
		i++;
	size_t dend = i;
	if (i >= len || s[i] != '}')
		return 0;
	i++;
	if (!o)
		return i;

	char v[VALUE_MAX + 1];
	if (!value_of(l, env, v)) {
		o->ok = false;
		return i;
	}
	/* split on the delimiters (default '.') */
	/* at most one part per byte, and one more */
	size_t start[VALUE_MAX + 2], end[VALUE_MAX + 2], np = 0, vlen = strlen(v);
	size_t from = 0;
	for (size_t k = 0; k <= vlen; k++) {
		bool d = k == vlen || (dend > dstart ? memchr(s + dstart, v[k], dend - dstart) != NULL
						     : v[k] == '.');
		if (!d)
			continue;
		start[np] = from;
		end[np++] = k;
		from = k + 1;
	}
	char joined[VALUE_MAX + 1];
	size_t jn = 0;
	/* parts in order after the optional reversal, then the rightmost KEEP */
	size_t order[VALUE_MAX + 2];
	for (size_t k = 0; k < np; k++)
		order[k] = reverse ? np - 1 - k : k;
	size_t first = keep && keep < np ? np - keep : 0;
	for (size_t k = first; k < np; k++) {
		size_t p = order[k], pl = end[p] - start[p];
		if (k > first)
			joined[jn++] = '.';
		memcpy(joined + jn, v + start[p], pl);
		jn += pl;
	}
	joined[jn] = '\0';
	if (letter >= 'A' && letter <= 'Z') {
		for (size_t k = 0; k < jn; k++) {
			unsigned char c = (unsigned char)joined[k];
			char esc[4];
			if (unreserved(c)) {
				put(o, (const char *)&joined[k], 1);
			} else {
				snprintf(esc, sizeof esc, "%%%02X", c);
				put(o, esc, 3);
			}
		}
	} else {
		put(o, joined, jn);
	}
	return i;
}

/* Walks S; with O set, expands into it. */
static bool walk(const char *s, size_t len, bool exp, const struct spf_macro_env *env,
		 struct out *o, bool *ends_with_macro)
{
	bool last_macro = false;
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		if (c != '%') {
			/* macro-literal: visible ASCII but '%'; a space only in
			 * explanations */
			if (c < 0x21 || c > 0x7e) {
				if (!(exp && c == ' '))
					return false;
			}
			if (o)
				put(o, s + i, 1);
			i++;
			last_macro = false;
			continue;
		}
		if (i + 1 >= len)
			return false;
		char n = s[i + 1];
		last_macro = true;
		if (n == '%' || n == '_' || n == '-') {
			if (o)
				put(o, n == '%' ? "%" : n == '_' ? " " : "%20", n == '-' ? 3 : 1);
			i += 2;
			continue;
		}
		if (n != '{')
			return false;
		size_t used = macro(s + i + 2, len - i - 2, exp, env, o);
		if (!used)
			return false;
		i += 2 + used;
	}
	if (ends_with_macro)
		*ends_with_macro = last_macro;
	return !o || o->ok;
}

bool spf_macro_check(const char *s, size_t len, bool exp, bool *ends_with_macro)
{
	return walk(s, len, exp, NULL, NULL, ends_with_macro);
}

bool spf_macro_expand(const char *s, size_t len, bool exp, const struct spf_macro_env *env,
		      char *out, size_t cap)
{
	if (cap == 0)
		return false;
	struct out o = { out, cap, 0, true };
	out[0] = '\0';
	return walk(s, len, exp, env, &o, NULL);
}
