/*
 * policy_proto: Postfix's policy delegation protocol (README.md, "As a
 * Postfix policy service"), the pure part: reading one request from the
 * bytes a connection sent, and writing one answer.
 *
 * A request is lines "name=value\n" ended by an empty line; the answer is
 * "action=...\n\n". Postfix keeps the connection for further requests, and
 * may send the next one before the answer to the last (the caller answers
 * them in order).
 *
 * Promises: policy_parse reads at most POLICY_REQUEST_MAX bytes of BUF and
 * never writes it; it says MORE only while what it saw could still become
 * a request within the bounds below, so a caller that holds the input
 * until OK or BAD holds at most POLICY_REQUEST_MAX bytes. Anything else
 * (a line without '=', a name that is not [a-z0-9_], a NUL or control byte
 * in a value, a line, a request or an attribute count over its bound, an
 * attribute this module knows given twice) is BAD: the caller closes that
 * connection. The values point into BUF.
 */
#ifndef GG_POLICY_PROTO_H
#define GG_POLICY_PROTO_H

#include <stdbool.h>
#include <stddef.h>

/* One line, its newline included. Postfix's longest values (a client
 * certificate's subject, a long address) stay well below it. */
#define POLICY_LINE_MAX 2048
/* Lines of one request, the empty line not counted: Postfix 3.x sends
 * about 40 attributes. */
#define POLICY_ATTRS_MAX 128
/* One request, its empty line included. */
#define POLICY_REQUEST_MAX 16384
/* One answer, "action=" and both newlines included. */
#define POLICY_ANSWER_MAX 1024

/* The attributes the decision reads; others are skipped. */
enum policy_attr {
	PA_REQUEST,              /* "smtpd_access_policy" */
	PA_PROTOCOL_STATE,       /* "RCPT", "DATA", ... */
	PA_CLIENT_ADDRESS,
	PA_CLIENT_NAME,          /* forward-confirmed by Postfix, or "unknown" */
	PA_REVERSE_CLIENT_NAME,  /* the PTR name, unconfirmed */
	PA_HELO_NAME,
	PA_SENDER,               /* "" for the null sender */
	PA_RECIPIENT,
	PA_ENCRYPTION_PROTOCOL,  /* "TLSv1.3", "" for plaintext */
	PA_INSTANCE,             /* the same for every recipient of one message */
	PA_COUNT
};

struct policy_value {
	const char *p;           /* into the parsed buffer; NULL when not sent */
	size_t len;
};

struct policy_request {
	struct policy_value v[PA_COUNT];
	size_t nattrs;           /* attribute lines, known or not */
	size_t len;              /* bytes the request took, its empty line included */
};

enum policy_status {
	POLICY_MORE,             /* a valid start: read more */
	POLICY_OK,               /* a request: *R is set */
	POLICY_BAD,              /* not the protocol: close the connection */
};

/* Reads the request at the start of BUF (LEN bytes). With BAD, *WHY (if
 * WHY is not NULL) says what was wrong, for the log. */
enum policy_status policy_parse(const char *buf, size_t len, struct policy_request *r,
				const char **why);

/* The attribute's name as Postfix sends it. */
const char *policy_attr_name(enum policy_attr a);

/* Whether the value of A is S (NUL-terminated), exactly. */
bool policy_value_is(const struct policy_request *r, enum policy_attr a, const char *s);

/*
 * The text Postfix should say for an SMTP reply REPLY that greygate would
 * give at RCPT: the reply code goes (the action says it), the enhanced
 * status code stays (Postfix takes a leading one), and the "<RCPT>: " and
 * "Recipient address rejected: " that Postfix adds itself go too. A reply
 * not of the form "NNN text" gives all of REPLY.
 */
const char *policy_reply_text(const char *reply, const char *rcpt, char *buf, size_t buflen);

/*
 * Writes "action=ACTION[ TEXT]\n\n" into OUT (POLICY_ANSWER_MAX bytes at
 * least); TEXT may be NULL. A control byte in TEXT becomes a space (a
 * newline there would end the answer early), and TEXT is cut to fit.
 * Returns the length written.
 */
size_t policy_answer(char *out, size_t outlen, const char *action, const char *text);

#endif
