/*
 * smtp_cmd: parsing of SMTP command lines and of the MAIL/RCPT arguments.
 *
 * Promises: pure functions over bounded input, no allocation, no I/O.
 * The caller hands a line without its line terminator; every pointer the
 * parser returns points into that line (or into the caller's output
 * struct), so nothing outlives the caller's buffer by surprise.
 */
#ifndef GG_SMTP_CMD_H
#define GG_SMTP_CMD_H

#include <stdbool.h>
#include <stddef.h>

/* RFC 5321 4.5.3.1.3: a path is at most 256 octets including the brackets. */
#define SMTP_PATH_MAX 254

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_HELP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_ETRN,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_BDAT,
	SMTP_VERB_XCLIENT,
};

struct smtp_cmd {
	enum smtp_verb verb;
	const char *name;  /* the verb as the client typed it */
	size_t name_len;
	const char *arg;   /* after the verb and its separating blanks; trailing blanks removed */
	size_t arg_len;
};

/*
 * Splits LINE (LEN bytes, no CR/LF) into verb and argument. The verb is
 * matched case-insensitively. Always succeeds; an unknown or empty verb gives
 * SMTP_VERB_UNKNOWN.
 */
void smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out);

/* Canonical upper-case name of a verb, for logs ("UNKNOWN" for unknown). */
const char *smtp_verb_name(enum smtp_verb verb);

enum smtp_path_status {
	SMTP_PATH_OK = 0,
	SMTP_PATH_NO_KEYWORD,  /* argument does not start with FROM: / TO: */
	SMTP_PATH_SYNTAX,      /* unbalanced brackets, bad quoting, bad route, blanks inside */
	SMTP_PATH_TOO_LONG,    /* address longer than SMTP_PATH_MAX */
	SMTP_PATH_BAD_PARAM,   /* an ESMTP parameter is not keyword[=value] */
};

struct smtp_path {
	/* Mailbox without brackets and without source route, as the client spelt
	 * it (quoted local parts keep their quotes). Empty for the null path <>. */
	char addr[SMTP_PATH_MAX + 1];
	size_t addr_len;
	bool is_null;
	/* Offset of the '@' that separates local part and domain in addr, or
	 * addr_len when there is none (e.g. "postmaster"). */
	size_t at;
	/* ESMTP parameters after the path, verbatim, blanks trimmed at both
	 * ends; points into the caller's line. */
	const char *params;
	size_t params_len;
};

/*
 * Parses the argument of MAIL ("FROM:...") or RCPT ("TO:..."): KEYWORD is
 * "FROM:" or "TO:", matched case-insensitively; blanks after the colon are
 * allowed, brackets are optional (as Postfix without
 * strict_rfc821_envelopes), "<>" is the null path (only meaningful for
 * MAIL; the caller refuses it for RCPT). A source route "<@a,@b:u@d>" is
 * dropped.
 */
enum smtp_path_status smtp_path_parse(const char *arg, size_t len,
				      const char *keyword, struct smtp_path *out);

/*
 * Finds ESMTP parameter NAME (case-insensitive) in PARAMS. Returns true and
 * sets *val and *val_len (value after '=', empty when the parameter has no
 * value) when found.
 */
bool smtp_param_find(const char *params, size_t len, const char *name,
		     const char **val, size_t *val_len);

/* Domain part of a parsed path (after the '@'), empty when there is none. */
static inline const char *smtp_path_domain(const struct smtp_path *p, size_t *len)
{
	if (p->at >= p->addr_len) {
		*len = 0;
		return p->addr + p->addr_len;
	}
	*len = p->addr_len - p->at - 1;
	return p->addr + p->at + 1;
}

#endif
