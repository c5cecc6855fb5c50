#include "regdomain.h"

#include <libpsl.h>
#include <string.h>

#include "hostname.h"

static const psl_ctx_t *psl;

void regdomain_init(void)
{
	if (psl)
		return;
	/* psl_latest(NULL): the distribution's file or the built-in list,
	 * whichever is newer; NULL when neither can be had. */
	psl = psl_latest(NULL);
	if (!psl)
		psl = psl_builtin();
}

bool regdomain(const char *name, char *out, size_t outlen)
{
	if (outlen)
		out[0] = '\0';
	size_t len = strnlen(name, HOSTNAME_MAX + 2);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (!hostname_valid(name, len))
		return false;
	/* libpsl compares lower case: ASCII folding suffices for a valid
	 * host name (IDNs arrive in their xn-- form) */
	char lower[HOSTNAME_MAX + 1];
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		lower[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	lower[len] = '\0';
	const psl_ctx_t *ctx = psl ? psl : psl_builtin();
	const char *reg = ctx ? psl_registrable_domain(ctx, lower) : NULL;
	/* the tail of a valid name may still be no name: all digits
	 * ("801.88" of "mail.801.88") */
	if (!reg || strlen(reg) >= outlen || !hostname_valid(reg, strlen(reg)))
		return false;
	memcpy(out, reg, strlen(reg) + 1);
	return true;
}
