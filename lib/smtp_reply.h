/*
 * smtp_reply: reading a (multi-line) SMTP reply from a server, line by line.
 *
 * Promises: a reply is accepted only if every line is "DDD-text" or
 * "DDD text" with the same code, and it stays within SMTP_REPLY_MAX bytes
 * and SMTP_REPLY_LINES lines; anything else is a protocol error that the
 * caller treats as a broken backend. The stored text is the reply with
 * every line ended by CRLF, ready to be relayed, and NUL-terminated.
 */
#ifndef GG_SMTP_REPLY_H
#define GG_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_REPLY_MAX 8192
#define SMTP_REPLY_LINES 128

struct smtp_reply {
	int code;
	int nlines;
	size_t len;
	char text[SMTP_REPLY_MAX];
};

enum smtp_reply_status { SMTP_REPLY_MORE, SMTP_REPLY_DONE, SMTP_REPLY_BAD };

void smtp_reply_reset(struct smtp_reply *r);
/* LINE without its CRLF. */
enum smtp_reply_status smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len);

/*
 * Walks the lines of a complete reply: *pos starts at 0; each call yields
 * the text after "DDD-"/"DDD " of the next line. Returns false at the end.
 */
bool smtp_reply_next_line(const struct smtp_reply *r, size_t *pos,
			  const char **text, size_t *len);

#endif
