#include "spf_record.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "spf_macro.h"

#define VERSION "v=spf1"
#define VERSION_LEN 6

const char *spf_result_name(enum spf_result r)
{
	switch (r) {
	case SPF_NONE: return "none";
	case SPF_NEUTRAL: return "neutral";
	case SPF_PASS: return "pass";
	case SPF_FAIL: return "fail";
	case SPF_SOFTFAIL: return "softfail";
	case SPF_TEMPERROR: return "temperror";
	case SPF_PERMERROR: return "permerror";
	}
	return "unknown";
}

bool spf_is_record(const char *txt, size_t len)
{
	return len >= VERSION_LEN && strncasecmp(txt, VERSION, VERSION_LEN) == 0 &&
	       (len == VERSION_LEN || txt[VERSION_LEN] == ' ');
}

static bool alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool same(const char *s, size_t len, const char *word)
{
	return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

/* toplabel (RFC 7208 section 7.1): alphanumerics with at least one letter,
 * or alphanumerics and hyphens neither first nor last. */
static bool toplabel(const char *s, size_t len)
{
	bool letter = false, hyphen = false;
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '-')
			hyphen = true;
		else if (alpha(s[i]))
			letter = true;
		else if (!digit(s[i]))
			return false;
	}
	if (hyphen)
		return s[0] != '-' && s[len - 1] != '-';
	return letter;
}

/* domain-spec = macro-string domain-end;
 * domain-end = ( "." toplabel [ "." ] ) / macro-expand */
static bool domain_spec(const char *s, size_t len)
{
	bool macro_end;
	if (len == 0 || !spf_macro_check(s, len, false, &macro_end))
		return false;
	if (macro_end)
		return true;
	if (s[len - 1] == '.')
		len--;
	size_t dot = len;
	while (dot > 0 && s[dot - 1] != '.')
		dot--;
	return dot > 0 && toplabel(s + dot, len - dot);
}

/* "/" 1..3 digits without a leading zero, at most MAX: the length of the
 * suffix of S (LEN bytes) that is one, 0 when none is. */
static size_t cidr_suffix(const char *s, size_t len, unsigned max, unsigned *value)
{
	size_t d = len;
	while (d > 0 && digit(s[d - 1]) && len - d < 4)
		d--;
	if (d == len || d == 0 || s[d - 1] != '/' || len - d > 3)
		return 0;
	if (s[d] == '0' && len - d > 1)
		return 0;
	unsigned v = 0;
	for (size_t i = d; i < len; i++)
		v = v * 10 + (unsigned)(s[i] - '0');
	if (v > max)
		return 0;
	*value = v;
	return len - d + 1;
}

/* a and mx: [ ":" domain-spec ] [ ip4-cidr-length ] [ "/" ip6-cidr-length ] */
static bool dual_cidr(const char *s, size_t len, struct spf_term *t)
{
	size_t n;
	if ((n = cidr_suffix(s, len, 128, &t->cidr6)) && len - n > 0 && s[len - n - 1] == '/')
		len -= n + 1;
	else
		t->cidr6 = 128;
	if ((n = cidr_suffix(s, len, 32, &t->cidr4)))
		len -= n;
	if (len == 0)
		return true;
	if (s[0] != ':')
		return false;
	t->spec = s + 1;
	t->spec_len = len - 1;
	return domain_spec(t->spec, t->spec_len);
}

static bool ip_network(const char *s, size_t len, int family, struct spf_term *t)
{
	unsigned max = family == AF_INET ? 32 : 128;
	unsigned *cidr = family == AF_INET ? &t->cidr4 : &t->cidr6;
	char buf[64];
	if (len == 0 || s[0] != ':')
		return false;
	s++;
	len--;
	size_t n = cidr_suffix(s, len, max, cidr);
	len -= n;
	if (n == 0 && memchr(s, '/', len))
		return false;
	if (len == 0 || len >= sizeof buf)
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(&t->net, 0, sizeof t->net);
	t->net.family = family;
	if (inet_pton(family, buf, t->net.b) != 1)
		return false;
	ipaddr_mask(&t->net, *cidr);
	return true;
}

/* The directive or modifier in TERM (LEN bytes, no spaces). */
static bool term(const char *s, size_t len, struct spf_term *t)
{
	memset(t, 0, sizeof *t);
	t->text = s;
	t->text_len = len;
	t->cidr4 = 32;
	t->cidr6 = 128;
	t->qual = SPF_PASS;
	size_t i = 0;
	bool qualified = true;
	switch (s[0]) {
	case '+': t->qual = SPF_PASS; break;
	case '-': t->qual = SPF_FAIL; break;
	case '~': t->qual = SPF_SOFTFAIL; break;
	case '?': t->qual = SPF_NEUTRAL; break;
	default: qualified = false;
	}
	i = qualified;
	size_t name = i;
	if (i >= len || !alpha(s[i]))
		return false;
	while (i < len && (alpha(s[i]) || digit(s[i]) || s[i] == '-' || s[i] == '_' || s[i] == '.'))
		i++;
	const char *nm = s + name, *rest = s + i;
	size_t nlen = i - name, rlen = len - i;

	if (rlen > 0 && rest[0] == '=') {
		if (qualified)
			return false;
		t->spec = rest + 1;
		t->spec_len = rlen - 1;
		if (same(nm, nlen, "redirect")) {
			t->kind = SPF_REDIRECT;
			return domain_spec(t->spec, t->spec_len);
		}
		if (same(nm, nlen, "exp")) {
			t->kind = SPF_EXP;
			return domain_spec(t->spec, t->spec_len);
		}
		t->kind = SPF_UNKNOWN_MOD;
		return spf_macro_check(t->spec, t->spec_len, false, NULL);
	}
	if (same(nm, nlen, "all")) {
		t->kind = SPF_ALL;
		return rlen == 0;
	}
	if (same(nm, nlen, "include") || same(nm, nlen, "exists")) {
		t->kind = same(nm, nlen, "include") ? SPF_INCLUDE : SPF_EXISTS;
		if (rlen < 2 || rest[0] != ':')
			return false;
		t->spec = rest + 1;
		t->spec_len = rlen - 1;
		return domain_spec(t->spec, t->spec_len);
	}
	if (same(nm, nlen, "a") || same(nm, nlen, "mx")) {
		t->kind = same(nm, nlen, "a") ? SPF_A : SPF_MX;
		return dual_cidr(rest, rlen, t);
	}
	if (same(nm, nlen, "ptr")) {
		t->kind = SPF_PTR;
		if (rlen == 0)
			return true;
		if (rest[0] != ':')
			return false;
		t->spec = rest + 1;
		t->spec_len = rlen - 1;
		return domain_spec(t->spec, t->spec_len);
	}
	if (same(nm, nlen, "ip4")) {
		t->kind = SPF_IP4;
		return ip_network(rest, rlen, AF_INET, t);
	}
	if (same(nm, nlen, "ip6")) {
		t->kind = SPF_IP6;
		return ip_network(rest, rlen, AF_INET6, t);
	}
	return false;
}

int spf_term_next(const char *rec, size_t len, size_t *pos, struct spf_term *t)
{
	size_t i = *pos;
	if (i == 0) {
		if (!spf_is_record(rec, len))
			return -1;
		i = VERSION_LEN;
	}
	if (i >= len)
		return 0;
	if (rec[i] != ' ')
		return -1;
	while (i < len && rec[i] == ' ')
		i++;
	if (i >= len) {
		*pos = i;
		return 0;
	}
	size_t start = i;
	while (i < len && rec[i] != ' ') {
		unsigned char c = (unsigned char)rec[i];
		if (c < 0x21 || c > 0x7e)
			return -1;
		i++;
	}
	*pos = i;
	return term(rec + start, i - start, t) ? 1 : -1;
}

bool spf_record_check(const char *rec, size_t len, struct spf_term *redirect, struct spf_term *exp)
{
	struct spf_term t;
	size_t pos = 0;
	int rc;
	memset(redirect, 0, sizeof *redirect);
	memset(exp, 0, sizeof *exp);
	redirect->kind = exp->kind = SPF_UNKNOWN_MOD;
	while ((rc = spf_term_next(rec, len, &pos, &t)) > 0) {
		struct spf_term *m = t.kind == SPF_REDIRECT ? redirect : t.kind == SPF_EXP ? exp : NULL;
		if (!m)
			continue;
		if (m->spec)
			return false;   /* RFC 7208 section 6: at most once each */
		*m = t;
	}
	return rc == 0;
}
