#include "sender_norm.h"

#include <stdbool.h>
#include <string.h>

/*
 * Every step rewrites the local part in place in OUT and can only shorten
 * it, which is what keeps the output within the input's length. The domain
 * (after the last '@') is moved along but never changed, apart from
 * lower-casing: it names the sending system, and all the per-message noise
 * lives in the local part.
 *
 * Character classes are plain ASCII on purpose, never <ctype.h>: the result
 * becomes a key shared by every MX host, so it must not depend on a locale.
 */

const struct sender_norm_opts sender_norm_all = {
	.lower = true, .batv = true, .srs = true, .ext = true, .digits = true, .hex = true,
};

/* The address being rewritten: S[0..len) with the local part S[0..local).
 * The first KEEP bytes are a marker a step wrote ("srs0"), which the token
 * steps must not take for data: "srs#" would lose what kind of address it
 * was. */
struct addr {
	char *s;
	size_t len, local, keep;
};

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_alnum(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Bytes of UTF-8 sequences (SMTPUTF8) count as word characters: a hex run
 * glued to a non-ASCII letter is part of a word, not a token of its own. */
static bool is_word(unsigned char c)
{
	return is_alnum(c) || c >= 0x80;
}

/* The SRS timestamp: two characters of base32 (RFC 4648 alphabet). */
static bool is_base32(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7');
}

/* The SRS hash: base64 (libsrs2, postsrsd, Exim); '+' and '/' included. */
static bool is_base64(unsigned char c)
{
	return is_alnum(c) || c == '+' || c == '/';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool prefix_ci(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);
	if (len < n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower(s[i]) != prefix[i])
			return false;
	return true;
}

static bool all_of(const char *s, size_t from, size_t to, bool (*cls)(unsigned char))
{
	for (size_t i = from; i < to; i++)
		if (!cls((unsigned char)s[i]))
			return false;
	return true;
}

/* Index of the first C in S[from..to), or TO. */
static size_t find(const char *s, size_t from, size_t to, char c)
{
	while (from < to && s[from] != c)
		from++;
	return from;
}

/* Removes S[from..to) of the local part; the domain moves along. */
static void cut(struct addr *a, size_t from, size_t to)
{
	memmove(a->s + from, a->s + to, a->len - to);
	a->len -= to - from;
	a->local -= to - from;
}

/* After a pass that compacted the local part to S[0..w): closes the gap. */
static void compact(struct addr *a, size_t w)
{
	cut(a, w, a->local);
}

/*
 * BATV. The prvs tag is K DDD SSSSSS (key number, day, hash); it is matched
 * as any ten hex digits, because "prvs=" is distinctive enough and some
 * implementations do not keep to the decimal K DDD. The standard order
 * (prvs=TAG=user) is tried first; when it does not fit, the legacy order
 * (prvs=user=TAG, tag after the last '='). Barracuda's btv1==TAG==user uses
 * its own tag form (eleven hex digits in practice), so any run of letters
 * and digits is taken. The user part must not be empty in any form.
 */
#define PRVS_TAG_LEN 10

static void strip_batv(struct addr *a)
{
	const char *s = a->s;
	size_t l = a->local;
	if (prefix_ci(s, l, "prvs=")) {
		size_t tag = 5;
		if (l > tag + PRVS_TAG_LEN + 1 && s[tag + PRVS_TAG_LEN] == '=' &&
		    all_of(s, tag, tag + PRVS_TAG_LEN, is_hex)) {
			cut(a, 0, tag + PRVS_TAG_LEN + 1);
			return;
		}
		size_t eq = l;
		while (eq > tag && s[eq - 1] != '=')
			eq--;
		/* eq is just past the last '='; the user is s[5..eq-1). */
		if (eq > tag + 1 && l - eq == PRVS_TAG_LEN && all_of(s, eq, l, is_hex)) {
			cut(a, eq - 1, l);
			cut(a, 0, tag);
		}
		return;
	}
	if (prefix_ci(s, l, "btv1==")) {
		size_t tag = 6, end = tag;
		while (end < l && is_alnum((unsigned char)s[end]))
			end++;
		if (end > tag && end + 2 < l && s[end] == '=' && s[end + 1] == '=')
			cut(a, 0, end + 2);
	}
}

/*
 * SRS (libsrs2's format, also postsrsd's and Exim's):
 *
 *   SRS0=HHHH=TT=orig.domain=orig-local@forwarder
 *        -> srs0=orig.domain=orig-local@forwarder
 *   SRS1=HHHH=first.forwarder==HHHH=TT=orig.domain=orig-local@second
 *        -> srs1=first.forwarder==orig.domain=orig-local@second
 *
 * HHHH (base64, any length) and TT (two base32 characters) change with the
 * day and the message; the domains and the original local part identify
 * the mailing, so they stay. For SRS1 the first forwarder's hash goes and so
 * do the hash and timestamp of the SRS0 address it wraps; the "==" marker
 * stays so that an SRS1 key never equals an SRS0 key. The separator after
 * "SRS0"/"SRS1" may be '=', '+' or '-' (implementations differ), and so may
 * the one of the wrapped SRS0 part; the output always uses '=' and a
 * lower-case "srs0"/"srs1", even with lower-casing off, so that the
 * variants share one key. Anything that does not fit the whole pattern is
 * left alone. Either way the digits and hex steps leave the "srs0"/"srs1"
 * marker as it is.
 */
static bool is_srs_sep(char c)
{
	return c == '=' || c == '+' || c == '-';
}

/* Parses "HASH=TT=domain=local" at S[at..l): sets *DOM to where the domain
 * starts. The local part must not be empty. */
static bool srs0_tail(const char *s, size_t at, size_t l, size_t *dom)
{
	size_t h = find(s, at, l, '=');
	if (h == at || h == l || !all_of(s, at, h, is_base64))
		return false;
	size_t tt = h + 1;
	if (tt + 3 > l || !all_of(s, tt, tt + 2, is_base32) || s[tt + 2] != '=')
		return false;
	size_t d = tt + 3;
	size_t e = find(s, d, l, '=');
	if (e == d || e + 1 >= l)
		return false;
	*dom = d;
	return true;
}

static void strip_srs(struct addr *a)
{
	char *s = a->s;
	size_t l = a->local;
	if (l < 5 || !is_srs_sep(s[4]))
		return;
	bool srs0 = prefix_ci(s, l, "srs0");
	if (!srs0 && !prefix_ci(s, l, "srs1"))
		return;
	/* Also when the rest does not parse: an address normalised once
	 * already ("srs0=example.org=john") then comes out the same again. */
	a->keep = 4;
	size_t dom;
	if (srs0) {
		if (!srs0_tail(s, 5, l, &dom))
			return;
		cut(a, 5, dom);
		memcpy(s, "srs0=", 5);
		return;
	}
	size_t h = find(s, 5, l, '=');
	if (h == 5 || h == l || !all_of(s, 5, h, is_base64))
		return;
	size_t fwd = h + 1;
	size_t fend = find(s, fwd, l, '=');
	if (fend == fwd || fend + 1 >= l || !is_srs_sep(s[fend + 1]))
		return;
	if (!srs0_tail(s, fend + 2, l, &dom))
		return;
	/* srs1= fwd = = dom... : the wrapped part's separator becomes '=' and
	 * its hash and timestamp go. */
	s[fend + 1] = '=';
	cut(a, fend + 2, dom);
	cut(a, 5, fwd);
	memcpy(s, "srs1=", 5);
}

/* user+ext -> user; a local part that starts with '+' has no "user". The
 * '+' of an "SRS0+" marker is a separator, not an extension. */
static void strip_ext(struct addr *a)
{
	if (a->local == 0 || a->s[0] == '+')
		return;
	size_t from = a->keep > 0 ? a->keep + 1 : 0;
	size_t plus = find(a->s, from, a->local, '+');
	cut(a, plus, a->local);
}

/* 8-4-4-4-12 hex digits from S[at], within S[0..l). */
static bool uuid_at(const char *s, size_t at, size_t l)
{
	static const size_t groups[] = { 8, 4, 4, 4, 12 };
	size_t p = at;
	for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
		if (g > 0) {
			if (p >= l || s[p] != '-')
				return false;
			p++;
		}
		if (p + groups[g] > l || !all_of(s, p, p + groups[g], is_hex))
			return false;
		p += groups[g];
	}
	return p == l || !is_word((unsigned char)s[p]);
}

#define UUID_LEN 36
#define HEX_TOKEN_MIN 8

/*
 * Per-message ids: a UUID, or a whole word (a run of word characters between
 * non-word characters or the ends) of 8 or more hex digits with at least
 * one decimal digit, becomes '#'. The digit requirement spares ordinary
 * words made of the letters a-f ("deadbeef", "acceded"). Hex is matched in
 * either case so that this step does not depend on lower-casing.
 */
static void mask_hex(struct addr *a)
{
	char *s = a->s;
	size_t l = a->local, r = a->keep, w = a->keep;
	while (r < l) {
		if (!is_word((unsigned char)s[r])) {
			s[w++] = s[r++];
			continue;
		}
		/* r starts a word: the loop always consumes whole words. */
		if (uuid_at(s, r, l)) {
			s[w++] = '#';
			r += UUID_LEN;
			continue;
		}
		size_t end = r;
		bool hex = true, digit = false;
		while (end < l && is_word((unsigned char)s[end])) {
			hex = hex && is_hex((unsigned char)s[end]);
			digit = digit || is_digit((unsigned char)s[end]);
			end++;
		}
		if (hex && digit && end - r >= HEX_TOKEN_MIN) {
			s[w++] = '#';
		} else {
			memmove(s + w, s + r, end - r);
			w += end - r;
		}
		r = end;
	}
	compact(a, w);
}

static void mask_digits(struct addr *a)
{
	char *s = a->s;
	size_t l = a->local, r = a->keep, w = a->keep;
	while (r < l) {
		if (!is_digit((unsigned char)s[r])) {
			s[w++] = s[r++];
			continue;
		}
		/* Skip the run before writing: W may equal R. */
		while (r < l && is_digit((unsigned char)s[r]))
			r++;
		s[w++] = '#';
	}
	compact(a, w);
}

size_t sender_normalise(const char *addr, size_t len, const struct sender_norm_opts *o,
			char *out, size_t outlen)
{
	if (outlen == 0)
		return 0;
	if (len == 0) {
		/* outlen >= 3 by contract; stay bounded even if it is not. */
		size_t n = outlen - 1 < 2 ? outlen - 1 : 2;
		memcpy(out, "<>", n);
		out[n] = 0;
		return n;
	}
	/* The contract (outlen >= len + 3) makes this a plain copy; a short
	 * buffer truncates rather than overflows. */
	struct addr a = { .s = out, .len = len < outlen - 1 ? len : outlen - 1 };
	memcpy(out, addr, a.len);

	if (o->lower)
		for (size_t i = 0; i < a.len; i++)
			out[i] = lower(out[i]);

	/* The last '@': a quoted local part may contain '@', a domain cannot.
	 * Without any '@' the whole address is a local part. */
	a.local = a.len;
	while (a.local > 0 && out[a.local - 1] != '@')
		a.local--;
	a.local = a.local > 0 ? a.local - 1 : a.len;

	/* A quoted local part is whatever the sender's system made of it:
	 * taking it apart would mean guessing at a syntax nobody uses for
	 * tracking, so it is kept as it is (lower-casing aside). */
	if (a.local == 0 || out[0] != '"') {
		if (o->batv)
			strip_batv(&a);
		if (o->srs)
			strip_srs(&a);
		if (o->ext)
			strip_ext(&a);
		if (o->hex)
			mask_hex(&a);
		if (o->digits)
			mask_digits(&a);
	}
	out[a.len] = 0;
	return a.len;
}
