/*
 * The policy protocol's bytes (policy_proto.h). The parser starts from the
 * beginning of the request every time: a request is at most
 * POLICY_REQUEST_MAX bytes, and the caller calls again only when more has
 * arrived, so keeping state between calls would save little and add a way
 * to get it wrong.
 */
#include "policy_proto.h"

#include <stdio.h>
#include <string.h>

static const char *const names[PA_COUNT] = {
	[PA_REQUEST] = "request",
	[PA_PROTOCOL_STATE] = "protocol_state",
	[PA_CLIENT_ADDRESS] = "client_address",
	[PA_CLIENT_NAME] = "client_name",
	[PA_REVERSE_CLIENT_NAME] = "reverse_client_name",
	[PA_HELO_NAME] = "helo_name",
	[PA_SENDER] = "sender",
	[PA_RECIPIENT] = "recipient",
	[PA_ENCRYPTION_PROTOCOL] = "encryption_protocol",
	[PA_INSTANCE] = "instance",
};

const char *policy_attr_name(enum policy_attr a)
{
	return (unsigned)a < PA_COUNT ? names[a] : NULL;
}

static bool name_char(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
}

static enum policy_status bad(const char **why, const char *what)
{
	if (why)
		*why = what;
	return POLICY_BAD;
}

/* One attribute line P[0..n), its newline and any CR before it removed. */
static enum policy_status attribute(const char *p, size_t n, struct policy_request *r,
				    const char **why)
{
	const char *eq = memchr(p, '=', n);
	if (!eq || eq == p)
		return bad(why, "a line is not name=value");
	size_t nlen = (size_t)(eq - p);
	for (size_t i = 0; i < nlen; i++)
		if (!name_char((unsigned char)p[i]))
			return bad(why, "an attribute name is not [a-z0-9_]");
	const char *v = eq + 1;
	size_t vlen = n - nlen - 1;
	for (size_t i = 0; i < vlen; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return bad(why, "a control byte in a value");
	for (int a = 0; a < PA_COUNT; a++) {
		if (strlen(names[a]) != nlen || memcmp(names[a], p, nlen) != 0)
			continue;
		if (r->v[a].p)
			return bad(why, "an attribute given twice");
		r->v[a].p = v;
		r->v[a].len = vlen;
		break;
	}
	return POLICY_OK;
}

enum policy_status policy_parse(const char *buf, size_t len, struct policy_request *r,
				const char **why)
{
	memset(r, 0, sizeof *r);
	if (len > POLICY_REQUEST_MAX)
		len = POLICY_REQUEST_MAX;
	size_t off = 0;
	for (;;) {
		size_t room = len - off;
		const char *nl = memchr(buf + off, '\n', room < POLICY_LINE_MAX ? room : POLICY_LINE_MAX);
		if (!nl) {
			if (room >= POLICY_LINE_MAX)
				return bad(why, "a line is too long");
			if (len == POLICY_REQUEST_MAX)
				return bad(why, "the request is too long");
			return POLICY_MORE;
		}
		size_t n = (size_t)(nl - (buf + off));
		size_t next = off + n + 1;
		if (n > 0 && buf[off + n - 1] == '\r')
			n--;
		if (n == 0) {
			r->len = next;
			return POLICY_OK;
		}
		if (++r->nattrs > POLICY_ATTRS_MAX)
			return bad(why, "too many attributes");
		if (attribute(buf + off, n, r, why) != POLICY_OK)
			return POLICY_BAD;
		off = next;
	}
}

bool policy_value_is(const struct policy_request *r, enum policy_attr a, const char *s)
{
	const struct policy_value *v = &r->v[a];
	return v->p && v->len == strlen(s) && memcmp(v->p, s, v->len) == 0;
}

/* Whether P starts with an enhanced status code "d.d{1,3}.d{1,3} ";
 * returns its length without the blank, or 0. */
static size_t enhanced_code(const char *p)
{
	if (!(p[0] >= '2' && p[0] <= '5') || p[1] != '.')
		return 0;
	size_t i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;
		while (p[i] >= '0' && p[i] <= '9' && i - start < 3)
			i++;
		if (i == start || p[i] != (part == 0 ? '.' : ' '))
			return 0;
		i++;
	}
	return i - 1;
}

static const char *skip_prefix(const char *p, const char *prefix)
{
	size_t n = strlen(prefix);
	return strncmp(p, prefix, n) == 0 ? p + n : p;
}

const char *policy_reply_text(const char *reply, const char *rcpt, char *buf, size_t buflen)
{
	if (!(reply[0] >= '2' && reply[0] <= '5' && reply[1] >= '0' && reply[1] <= '9' &&
	      reply[2] >= '0' && reply[2] <= '9' && reply[3] == ' ')) {
		snprintf(buf, buflen, "%s", reply);
		return buf;
	}
	const char *p = reply + 4;
	size_t clen = enhanced_code(p);
	const char *rest = clen ? p + clen + 1 : p;
	char who[300];
	snprintf(who, sizeof who, "<%s>: ", rcpt);
	if (strncmp(rest, who, strlen(who)) == 0)
		rest = skip_prefix(rest + strlen(who), "Recipient address rejected: ");
	if (clen)
		snprintf(buf, buflen, "%.*s %s", (int)clen, p, rest);
	else
		snprintf(buf, buflen, "%s", rest);
	return buf;
}

size_t policy_answer(char *out, size_t outlen, const char *action, const char *text)
{
	/* room for "\n\n" and the terminating NUL */
	if (outlen < 3)
		return 0;
	int n = snprintf(out, outlen - 2, "action=%s%s%s", action, text && text[0] ? " " : "",
			 text ? text : "");
	size_t len = n < 0 ? 0 : (size_t)n >= outlen - 2 ? outlen - 3 : (size_t)n;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			out[i] = ' ';
	memcpy(out + len, "\n\n", 3);
	return len + 2;
}
