/*
 * fuzz_smtp_cmd: the SMTP command line parser (lib/smtp_cmd.h).
 *
 * The input is one command line (without its terminator, although nothing
 * stops the fuzzer from putting CR, LF or NUL anywhere). It goes through
 * smtp_cmd_parse, its argument through smtp_path_parse with "FROM:" and
 * with "TO:", and the ESMTP parameters found through smtp_param_find.
 * Checked: every pointer handed back lies inside the caller's line, the
 * lengths add up, addr_len <= SMTP_PATH_MAX, at <= addr_len, and the
 * parsed mailbox is a verbatim piece of the argument with no control
 * characters in it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "fuzz_check.h"
#include "smtp_cmd.h"

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

static void check_find(const char *params, size_t len, const char *name)
{
	const char *val = NULL;
	size_t vlen = (size_t)-1;

	if (!smtp_param_find(params, len, name, &val, &vlen))
		return;
	CHECK(INSIDE(val, vlen, params, len));
	size_t nlen = strlen(name);
	size_t off = (size_t)(val - params);
	/* "NAME" at the end of a word, or "NAME=" before the value */
	if (vlen == 0 && (off < nlen + 1 || val[-1] != '=')) {
		CHECK(off >= nlen);
		CHECK(strncasecmp(val - nlen, name, nlen) == 0);
	} else {
		CHECK(off >= nlen + 1 && val[-1] == '=');
		CHECK(strncasecmp(val - 1 - nlen, name, nlen) == 0);
	}
	for (size_t i = 0; i < vlen; i++)
		CHECK(!blank(val[i]));
	/* the NULL out-parameters are optional */
	CHECK(smtp_param_find(params, len, name, NULL, NULL));
}

static void check_path(const char *arg, size_t len, const char *keyword)
{
	struct smtp_path p;
	/* garbage first, so that a field the parser forgets shows */
	memset(&p, 0xa5, sizeof p);

	enum smtp_path_status st = smtp_path_parse(arg, len, keyword, &p);
	CHECK(st >= SMTP_PATH_OK && st <= SMTP_PATH_BAD_PARAM);
	CHECK(p.addr_len <= SMTP_PATH_MAX);
	CHECK(p.addr[p.addr_len] == '\0');
	CHECK(p.at <= p.addr_len);
	CHECK(p.at == p.addr_len || p.addr[p.at] == '@');
	CHECK(INSIDE(p.params, p.params_len, arg, len));

	size_t klen = strlen(keyword);
	bool kw = len >= klen && strncasecmp(arg, keyword, klen) == 0;
	CHECK((st == SMTP_PATH_NO_KEYWORD) == !kw);

	if (st != SMTP_PATH_OK) {
		CHECK(p.addr_len == 0 && !p.is_null && p.params_len == 0);
		return;
	}
	CHECK(p.is_null == (p.addr_len == 0));
	/* the mailbox as the client spelt it: a piece of the argument */
	CHECK(p.addr_len == 0 || memmem(arg, len, p.addr, p.addr_len) != NULL);
	for (size_t i = 0; i < p.addr_len; i++) {
		unsigned char c = (unsigned char)p.addr[i];
		CHECK(c >= 0x20 && c != 0x7f);
	}
	size_t dlen;
	const char *dom = smtp_path_domain(&p, &dlen);
	CHECK(INSIDE(dom, dlen, p.addr, p.addr_len));
	/* parameters: trimmed, after the path */
	if (p.params_len > 0) {
		CHECK(!blank(p.params[0]) && !blank(p.params[p.params_len - 1]));
		CHECK(p.params >= arg + klen);
	}

	static const char *const names[] = {
		"SIZE", "BODY", "SMTPUTF8", "AUTH", "RET", "ENVID", "NOTIFY", "ORCPT", "X",
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		check_find(p.params, p.params_len, names[i]);

	/* the keyword of every parameter word must be found again */
	const char *s = p.params;
	size_t i = 0, n = p.params_len;
	while (i < n) {
		while (i < n && blank(s[i]))
			i++;
		size_t w = i;
		while (i < n && !blank(s[i]) && s[i] != '=')
			i++;
		if (i > w && i - w < 64) {
			char name[64];
			memcpy(name, s + w, i - w);
			name[i - w] = '\0';
			if (!memchr(name, '\0', i - w)) {
				const char *val;
				size_t vlen;
				CHECK(smtp_param_find(s, n, name, &val, &vlen));
				check_find(s, n, name);
			}
		}
		while (i < n && !blank(s[i]))
			i++;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct smtp_cmd cmd;

	memset(&cmd, 0xa5, sizeof cmd);
	smtp_cmd_parse(line, size, &cmd);
	CHECK(cmd.name == line);
	CHECK(cmd.name_len <= size);
	CHECK(INSIDE(cmd.arg, cmd.arg_len, line, size));
	CHECK(cmd.arg >= line + cmd.name_len);
	for (size_t i = 0; i < cmd.name_len; i++)
		CHECK(!blank(line[i]));
	CHECK(cmd.name_len == size || blank(line[cmd.name_len]));
	if (cmd.arg_len > 0)
		CHECK(!blank(cmd.arg[0]) && !blank(cmd.arg[cmd.arg_len - 1]));

	const char *vn = smtp_verb_name(cmd.verb);
	CHECK(vn != NULL);
	if (cmd.verb != SMTP_VERB_UNKNOWN)
		CHECK(strlen(vn) == cmd.name_len &&
		      strncasecmp(vn, cmd.name, cmd.name_len) == 0);

	check_path(cmd.arg, cmd.arg_len, "FROM:");
	check_path(cmd.arg, cmd.arg_len, "TO:");
	/* the raw line too: the parsers take any bytes */
	check_path(line, size, "FROM:");
	check_find(line, size, "SIZE");
	return 0;
}
