/*
 * dotcodec: the DATA phase decoder/encoder that makes smuggling impossible.
 *
 * Reads the client's DATA stream and writes the body for the backend in
 * canonical form:
 *  - only <CR><LF>.<CR><LF> ends the message (the <CR><LF> that ended the
 *    DATA command counts as the first one, so an empty body is ".\r\n");
 *  - a leading dot of a client line (a line that followed <CR><LF>) is
 *    removed (RFC 5321 4.5.2 transparency);
 *  - every bare CR and bare LF becomes a line break, and every line leaves
 *    ended by <CR><LF>;
 *  - every output line that begins with '.' gets one more '.' (stuffing
 *    redone), and the end is written as ".\r\n".
 * So whatever bytes the client sends, the backend sees exactly one message
 * that ends exactly where greygate thinks it ends. Other bytes (NUL,
 * 8-bit) pass unchanged.
 *
 * Streaming: state survives between calls, input may be split anywhere,
 * memory use is constant.
 */
#ifndef GG_DOTCODEC_H
#define GG_DOTCODEC_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;

struct dotcodec {
	int state;
	bool out_bol;        /* output is at the beginning of a line */
	unsigned long long in_bytes, out_bytes;
};

void dotcodec_init(struct dotcodec *c);

/*
 * Consumes up to LEN bytes of IN, appending the canonical body to OUT (may
 * be NULL to discard: a transaction whose backend failed still has to find
 * the end of the client's data). Returns the number of bytes consumed; stops
 * right after the end-of-data line and sets *done, leaving the rest of IN
 * (pipelined commands) unconsumed. Returns (size_t)-1 only if appending to
 * OUT fails (out of memory); the decoder state is then as before the call,
 * so the same bytes can be fed again in discard mode (OUT NULL) and the end
 * is still found where it is.
 */
size_t dotcodec_feed(struct dotcodec *c, const char *in, size_t len,
		     struct evbuffer *out, bool *done);

#endif
