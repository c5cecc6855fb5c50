#include "smtp_reply.h"

#include <string.h>

void smtp_reply_reset(struct smtp_reply *r)
{
	r->code = 0;
	r->nlines = 0;
	r->len = 0;
	r->text[0] = 0;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

enum smtp_reply_status smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len)
{
	if (len < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]))
		return SMTP_REPLY_BAD;
	if (line[0] < '2' || line[0] > '5')
		return SMTP_REPLY_BAD;
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->nlines > 0 && code != r->code)
		return SMTP_REPLY_BAD;
	bool last = len == 3 || line[3] == ' ';
	if (!last && line[3] != '-')
		return SMTP_REPLY_BAD;
	if (r->nlines >= SMTP_REPLY_LINES || r->len + len + 3 > sizeof r->text)
		return SMTP_REPLY_BAD;
	r->code = code;
	r->nlines++;
	memcpy(r->text + r->len, line, len);
	r->len += len;
	memcpy(r->text + r->len, "\r\n", 2);
	r->len += 2;
	r->text[r->len] = 0;
	return last ? SMTP_REPLY_DONE : SMTP_REPLY_MORE;
}

bool smtp_reply_next_line(const struct smtp_reply *r, size_t *pos,
			  const char **text, size_t *len)
{
	if (*pos >= r->len)
		return false;
	const char *start = r->text + *pos;
	const char *end = memchr(start, '\r', r->len - *pos);
	size_t linelen = end ? (size_t)(end - start) : r->len - *pos;
	*pos += linelen + 2;
	*text = linelen > 4 ? start + 4 : start + linelen;
	*len = linelen > 4 ? linelen - 4 : 0;
	return true;
}
