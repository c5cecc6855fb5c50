#include "smtp_cmd.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

static const char *const verb_names[] = {
	[SMTP_VERB_UNKNOWN] = "UNKNOWN",
	[SMTP_VERB_HELO] = "HELO",
	[SMTP_VERB_EHLO] = "EHLO",
	[SMTP_VERB_MAIL] = "MAIL",
	[SMTP_VERB_RCPT] = "RCPT",
	[SMTP_VERB_DATA] = "DATA",
	[SMTP_VERB_RSET] = "RSET",
	[SMTP_VERB_NOOP] = "NOOP",
	[SMTP_VERB_HELP] = "HELP",
	[SMTP_VERB_QUIT] = "QUIT",
	[SMTP_VERB_VRFY] = "VRFY",
	[SMTP_VERB_EXPN] = "EXPN",
	[SMTP_VERB_ETRN] = "ETRN",
	[SMTP_VERB_STARTTLS] = "STARTTLS",
	[SMTP_VERB_AUTH] = "AUTH",
	[SMTP_VERB_BDAT] = "BDAT",
	[SMTP_VERB_XCLIENT] = "XCLIENT",
};

#define NVERBS (sizeof verb_names / sizeof verb_names[0])

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* Control characters never belong in an address: a NUL or a line break
 * there would mean something different to every program downstream. */
static bool is_ctl(char ch)
{
	unsigned char u = (unsigned char)ch;
	return u < 0x20 || u == 0x7f;
}

static bool is_alnum(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9');
}

/* Case-insensitive comparison of a counted string with a C string; the
 * counted one is not NUL-terminated, so strncasecmp alone would not do. */
static bool eq_nocase(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && strncasecmp(s, lit, len) == 0;
}

static size_t skip_blanks(const char *s, size_t i, size_t len)
{
	while (i < len && is_blank(s[i]))
		i++;
	return i;
}

static size_t trim_trailing_blanks(const char *s, size_t start, size_t len)
{
	while (len > start && is_blank(s[len - 1]))
		len--;
	return len;
}

static enum smtp_verb verb_lookup(const char *name, size_t len)
{
	for (size_t v = 1; v < NVERBS; v++)
		if (eq_nocase(name, len, verb_names[v]))
			return (enum smtp_verb)v;
	return SMTP_VERB_UNKNOWN;
}

/* The verb starts in the first column (RFC 5321 grammar): a line with leading
 * blanks has an empty verb, so nothing downstream ever has to guess what a
 * backend would make of it. */
void smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out)
{
	size_t i = 0;

	while (i < len && !is_blank(line[i]))
		i++;
	out->name = line;
	out->name_len = i;
	out->verb = verb_lookup(line, i);

	size_t a = skip_blanks(line, i, len);
	out->arg = line + a;
	out->arg_len = trim_trailing_blanks(line, a, len) - a;
}

const char *smtp_verb_name(enum smtp_verb verb)
{
	if ((size_t)verb >= NVERBS)
		return verb_names[SMTP_VERB_UNKNOWN];
	return verb_names[verb];
}

/* Characters that RFC 5322 gives a meaning in addresses (comments, lists,
 * brackets, escapes) and that RFC 5321 never allows unquoted in a mailbox.
 * Refusing them keeps greygate and the backend agreeing on what the address
 * is. ':' and '[' ']' stay allowed for address literals. */
static bool is_special(char ch)
{
	switch (ch) {
	case '(': case ')': case '<': case '>': case ',': case ';': case '\\':
		return true;
	default:
		return false;
	}
}

/* A domain in a source route: a dotted name or an address literal. The route
 * is discarded, so this only has to be strict enough that its end (',' or
 * ':') is unambiguous. */
static bool route_domain(const char *s, size_t *i, size_t len)
{
	size_t start = *i;

	if (*i < len && s[*i] == '[') {
		while (++*i < len && s[*i] != ']')
			if (is_blank(s[*i]) || is_ctl(s[*i]) || s[*i] == '[' ||
			    is_special(s[*i]))
				return false;
		if (*i == len)
			return false;
		++*i;
		return true;
	}
	while (*i < len && (is_alnum(s[*i]) || s[*i] == '-' || s[*i] == '.' ||
			    (unsigned char)s[*i] >= 0x80))
		++*i;
	return *i > start;
}

/* "@a,@b:" before the mailbox; on success *i is just after the ':'. */
static bool skip_route(const char *s, size_t *i, size_t len)
{
	for (;;) {
		if (*i >= len || s[*i] != '@')
			return false;
		++*i;
		if (!route_domain(s, i, len) || *i >= len)
			return false;
		if (s[*i] == ':') {
			++*i;
			return true;
		}
		if (s[*i] != ',')
			return false;
		++*i;
	}
}

/* Inside a quoted string: returns false on a control character or a
 * backslash with nothing (printable) after it. */
static bool quoted_char(const char *s, size_t *i, size_t len)
{
	if (is_ctl(s[*i]))
		return false;
	if (s[*i] == '\\') {
		if (*i + 1 >= len || is_ctl(s[*i + 1]))
			return false;
		++*i;
	}
	return true;
}

struct mailbox_scan {
	size_t end; /* where the mailbox ends: '>' when bracketed, else blank or len */
	size_t at;  /* last '@' outside quotes, or SIZE_MAX */
};

static enum smtp_path_status scan_mailbox(const char *s, size_t i, size_t len,
					  bool bracketed, struct mailbox_scan *m)
{
	bool quoted = false;

	m->at = SIZE_MAX;
	for (; i < len; i++) {
		char ch = s[i];
		if (quoted) {
			if (ch == '"')
				quoted = false;
			else if (!quoted_char(s, &i, len))
				return SMTP_PATH_SYNTAX;
			continue;
		}
		if (ch == '"') {
			quoted = true;
		} else if (ch == '@') {
			m->at = i;
		} else if (is_blank(ch)) {
			if (bracketed)
				return SMTP_PATH_SYNTAX;
			break;
		} else if (bracketed && ch == '>') {
			break;
		} else if (is_special(ch) || is_ctl(ch)) {
			return SMTP_PATH_SYNTAX;
		}
	}
	if (quoted || (bracketed && i == len))
		return SMTP_PATH_SYNTAX;
	m->end = i;
	return SMTP_PATH_OK;
}

static bool param_keyword_char(char ch)
{
	return is_alnum(ch) || ch == '-';
}

/* esmtp-value: printable US-ASCII except '=' and SP, plus the 8-bit bytes
 * that SMTPUTF8 clients send. */
static bool param_value_char(char ch)
{
	unsigned char u = (unsigned char)ch;
	return (u >= 0x21 && u <= 0x7e && ch != '=') || u >= 0x80;
}

static bool param_valid(const char *p, size_t len)
{
	size_t i = 0;

	if (len == 0 || !is_alnum(p[0]))
		return false;
	while (i < len && param_keyword_char(p[i]))
		i++;
	if (i == len)
		return true;
	if (p[i] != '=' || ++i == len)
		return false;
	while (i < len && param_value_char(p[i]))
		i++;
	return i == len;
}

/* Steps through the blank-separated words of S: sets *W and *WLEN to the word
 * at or after *POS and moves *POS past it; false when none is left. */
static bool next_word(const char *s, size_t len, size_t *pos,
		      const char **w, size_t *wlen)
{
	size_t i = skip_blanks(s, *pos, len);
	size_t start = i;

	while (i < len && !is_blank(s[i]))
		i++;
	*pos = i;
	*w = s + start;
	*wlen = i - start;
	return i > start;
}

static enum smtp_path_status parse_params(const char *arg, size_t i, size_t len,
					  struct smtp_path *out)
{
	size_t start = skip_blanks(arg, i, len);
	size_t end = trim_trailing_blanks(arg, start, len);
	const char *w;
	size_t wlen, pos = 0;

	out->params = arg + start;
	out->params_len = end - start;
	while (next_word(out->params, out->params_len, &pos, &w, &wlen))
		if (!param_valid(w, wlen))
			return SMTP_PATH_BAD_PARAM;
	return SMTP_PATH_OK;
}

static void path_clear(struct smtp_path *out, const char *arg, size_t len)
{
	out->addr[0] = '\0';
	out->addr_len = 0;
	out->is_null = false;
	out->at = 0;
	out->params = arg + len;
	out->params_len = 0;
}

/* Everything from the path on: "<route:mailbox> params" or "mailbox params". */
static enum smtp_path_status parse_path(const char *arg, size_t i, size_t len,
					struct smtp_path *out)
{
	bool bracketed = i < len && arg[i] == '<';
	bool routed = false;
	struct mailbox_scan m;

	if (bracketed)
		i++;
	if (i < len && arg[i] == '@') {
		if (!skip_route(arg, &i, len))
			return SMTP_PATH_SYNTAX;
		routed = true;
	}
	size_t start = i;
	enum smtp_path_status st = scan_mailbox(arg, i, len, bracketed, &m);
	if (st != SMTP_PATH_OK)
		return st;

	size_t n = m.end - start;
	if (n == 0 && (!bracketed || routed))
		return SMTP_PATH_SYNTAX;
	if (n > SMTP_PATH_MAX)
		return SMTP_PATH_TOO_LONG;

	size_t after = m.end + (bracketed ? 1 : 0);
	if (after < len && !is_blank(arg[after]))
		return SMTP_PATH_SYNTAX;

	memcpy(out->addr, arg + start, n);
	out->addr[n] = '\0';
	out->addr_len = n;
	out->is_null = n == 0;
	out->at = m.at == SIZE_MAX ? n : m.at - start;
	return parse_params(arg, after, len, out);
}

enum smtp_path_status smtp_path_parse(const char *arg, size_t len,
				      const char *keyword, struct smtp_path *out)
{
	size_t klen = strlen(keyword);

	path_clear(out, arg, len);
	if (len < klen || strncasecmp(arg, keyword, klen) != 0)
		return SMTP_PATH_NO_KEYWORD;
	enum smtp_path_status st =
		parse_path(arg, skip_blanks(arg, klen, len), len, out);
	if (st != SMTP_PATH_OK)
		path_clear(out, arg, len);
	return st;
}

bool smtp_param_find(const char *params, size_t len, const char *name,
		     const char **val, size_t *val_len)
{
	size_t nlen = strlen(name);
	const char *w;
	size_t wlen, pos = 0;

	while (next_word(params, len, &pos, &w, &wlen)) {
		const char *eq = memchr(w, '=', wlen);
		size_t klen = eq ? (size_t)(eq - w) : wlen;
		if (klen != nlen || strncasecmp(w, name, nlen) != 0)
			continue;
		size_t v = eq ? klen + 1 : klen;
		if (val)
			*val = w + v;
		if (val_len)
			*val_len = wlen - v;
		return true;
	}
	return false;
}
