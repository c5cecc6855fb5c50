/*
 * fuzz_pool_key: the key kind chooser and what it reads a host name with
 * (lib/pool_key.h, lib/generic_name.h, lib/regdomain.h). A PTR name comes
 * from whoever runs the client's reverse zone.
 *
 * The input: one byte (bit 0: IPv6, bit 1: the text is an SPF domain too,
 * bit 2: order ptr before spf), 16 address bytes, then the name (a NUL
 * ends it early). Checked: generic_name and regdomain never read past the
 * name; regdomain's answer is a lower-case tail of the name that starts
 * at a label and is a valid host name; pool_key's text is "" for the
 * network, else "spf:" or "ptr:" and a lower-case valid host name that
 * fits POOL_TEXT_MAX; a ptr: key is never made of a generic name.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "fuzz_check.h"
#include "generic_name.h"
#include "hostname.h"
#include "pool_key.h"
#include "regdomain.h"

static const char *const words[] = { "dyn", "dhcp", "pool", "ppp", "dsl", "cable", "cust" };
#define NWORDS (sizeof words / sizeof words[0])

static bool lower_host(const char *s)
{
	for (const char *p = s; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			return false;
	return hostname_valid(s, strlen(s));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 17)
		return 0;
	uint8_t flags = data[0];
	struct ipaddr a = { .family = flags & 1 ? AF_INET6 : AF_INET };
	memcpy(a.b, data + 1, 16);
	/* a copy of exactly the name's bytes: ASan sees any read past it */
	size_t n = strnlen((const char *)data + 17, size - 17);
	char *name = malloc(n + 1);
	CHECK(name);
	memcpy(name, data + 17, n);
	name[n] = '\0';

	bool generic = generic_name(name, &a, words, NWORDS);

	char reg[HOSTNAME_MAX + 1];
	if (regdomain(name, reg, sizeof reg)) {
		CHECK(lower_host(reg));
		size_t rl = strlen(reg), nl = n && name[n - 1] == '.' ? n - 1 : n;
		CHECK(rl <= nl);
		CHECK(strncasecmp(name + nl - rl, reg, rl) == 0);
		CHECK(rl == nl || name[nl - rl - 1] == '.');
	} else {
		CHECK(reg[0] == '\0');
	}

	static const enum pool_kind spf_ptr[] = { POOL_SPF, POOL_PTR }, ptr_spf[] = { POOL_PTR, POOL_SPF };
	struct pool_facts f = {
		.client = &a,
		.spf_pass_domain = flags & 2 ? name : NULL,
		.client_name = name,
		.words = words,
		.nwords = NWORDS,
		.order = flags & 4 ? ptr_spf : spf_ptr,
		.norder = 2,
	};
	char key[POOL_TEXT_MAX];
	enum pool_kind k = pool_key(&f, key);
	CHECK(strlen(key) < POOL_TEXT_MAX);
	if (k == POOL_NET) {
		CHECK(key[0] == '\0');
	} else {
		CHECK(strncmp(key, k == POOL_SPF ? "spf:" : "ptr:", 4) == 0);
		CHECK(lower_host(key + 4));
		CHECK(pool_kind_of(key) == k);
	}
	if (k == POOL_PTR)
		CHECK(!generic && strcmp(key + 4, reg) == 0);
	free(name);
	return 0;
}
