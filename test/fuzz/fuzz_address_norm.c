/*
 * fuzz_address_norm: the MAIL FROM address as the greylisting key sees it:
 * smtp_path_parse (lib/smtp_cmd.h), sender_normalise (lib/sender_norm.h)
 * and triplet_make (lib/triplet.h).
 *
 * The first input byte selects the normalisation steps (bit 0 lower,
 * 1 batv, 2 srs, 3 ext, 4 digits, 5 hex; bits 6 and 7 are ignored), so
 * every combination gets fuzzed. The rest is normalised twice: as it is
 * (sender_normalise takes any bytes) and as the mailbox that
 * smtp_path_parse finds in "FROM:" followed by it, which is what greygate
 * really hands over.
 *
 * Asserted is what sender_norm.h promises: output bounded (at most the
 * input's length, "<>" for the null sender, so <= len + 2, and < outlen,
 * NUL-terminated, nothing written past outlen), pure (the same input gives
 * the same output), each step can be switched off (all off is a plain
 * copy). The header does not promise idempotence, so it is not asserted;
 * build with -DFUZZ_IDEMPOTENCE to look for inputs that are not (the unit
 * test checks it for a list of real senders with every step on).
 * triplet_make must then accept the result (when shorter than
 * TRIPLET_PART_MAX), keep the parts as given (the recipient lower-cased),
 * and give different keys to different splits of the same bytes.
 * triplet_network, on an address and prefixes taken from the first bytes
 * after the option byte, must give a network text that parses back
 * (cidr_parse, no host bits) and contains the address.
 * A buffer shorter than the contract's LEN + 3 must still never be
 * overrun (sender_norm.c: "a short buffer truncates rather than
 * overflows"); only memory safety is checked there.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "fuzz_check.h"
#include "sender_norm.h"
#include "smtp_cmd.h"
#include "triplet.h"

/* The client network of the triplet: "192.0.2.0/24" unless the input
 * gives an address (see LLVMFuzzerTestOneInput). */
static char net[NET_TEXT_MAX] = "192.0.2.0/24";

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static void check_triplet(const char *sender, size_t slen, const char *rcpt, size_t rlen)
{
	struct triplet t, u;

	/* the callers hand over C strings: no NUL inside */
	if (memchr(sender, 0, slen) || memchr(rcpt, 0, rlen))
		return;
	int rc = triplet_make(&t, net, sender, slen, rcpt, rlen);
	if (slen >= TRIPLET_PART_MAX || rlen >= TRIPLET_PART_MAX) {
		CHECK(rc == -1);
		return;
	}
	CHECK(rc == 0);
	CHECK(strcmp(t.net, net) == 0);
	CHECK(memcmp(t.sender, sender, slen) == 0 && t.sender[slen] == 0);
	for (size_t i = 0; i < rlen; i++)
		CHECK(t.rcpt[i] == ascii_lower(rcpt[i]));
	CHECK(t.rcpt[rlen] == 0);
	CHECK(strlen(t.hex) == TRIPLET_HEX_LEN);
	for (size_t i = 0; i < TRIPLET_KEY_LEN; i++) {
		static const char hex[] = "0123456789abcdef";
		CHECK(t.hex[2 * i] == hex[t.key[i] >> 4]);
		CHECK(t.hex[2 * i + 1] == hex[t.key[i] & 15]);
	}
	/* the same parts, the same key */
	CHECK(triplet_make(&u, net, sender, slen, rcpt, rlen) == 0);
	CHECK(memcmp(t.key, u.key, TRIPLET_KEY_LEN) == 0);

	/* the length prefixes: moving the border between sender and
	 * recipient by one byte must change the key */
	if (rlen > 0 && slen + 1 < TRIPLET_PART_MAX) {
		char s2[TRIPLET_PART_MAX + 1];
		memcpy(s2, sender, slen);
		s2[slen] = rcpt[0];
		CHECK(triplet_make(&u, net, s2, slen + 1, rcpt + 1, rlen - 1) == 0);
		CHECK(memcmp(t.key, u.key, TRIPLET_KEY_LEN) != 0);
	}
}

/* Normalises IN[0..LEN) with O into a buffer of exactly LEN + 3 bytes (the
 * least the contract allows; ASan catches a write past it) and checks the
 * promises. Returns the malloc'ed result; *OUTN is its length. */
static char *normalise(const char *in, size_t len, const struct sender_norm_opts *o,
		       size_t *outn)
{
	size_t outlen = len + 3;
	char *out = malloc(outlen);
	CHECK(out != NULL);
	memset(out, 0x5a, outlen);
	size_t n = sender_normalise(in, len, o, out, outlen);
	CHECK(n < outlen);
	CHECK(n <= len + 2);
	CHECK(out[n] == '\0');
	if (len == 0)
		CHECK(n == 2 && memcmp(out, "<>", 2) == 0);
	else
		CHECK(n <= len);
	*outn = n;
	return out;
}

/* Out of contract: OUTLEN < LEN + 3. Must still stay inside OUT. */
static void check_short(const char *in, size_t len, const struct sender_norm_opts *o,
			size_t outlen)
{
	char *out = malloc(outlen ? outlen : 1);
	CHECK(out != NULL);
	size_t n = sender_normalise(in, len, o, out, outlen);
	if (outlen == 0) {
		CHECK(n == 0);
	} else {
		CHECK(n < outlen);
		CHECK(out[n] == '\0');
	}
	free(out);
}

static void check_network(const uint8_t *b, size_t len)
{
	struct ipaddr a;

	if (len < 18)
		return;
	/* through a socket address, as greygate gets them: v4-mapped folded */
	if (b[0] & 1) {
		struct sockaddr_in6 sin6;
		memset(&sin6, 0, sizeof sin6);
		sin6.sin6_family = AF_INET6;
		memcpy(&sin6.sin6_addr, b + 1, 16);
		CHECK(ipaddr_from_sockaddr((const struct sockaddr *)&sin6, &a));
	} else {
		struct sockaddr_in sin;
		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		memcpy(&sin.sin_addr, b + 1, 4);
		CHECK(ipaddr_from_sockaddr((const struct sockaddr *)&sin, &a));
	}
	unsigned v4 = b[17] % 40, v6 = b[17] % 136; /* some out of range */
	char text[NET_TEXT_MAX];
	memset(text, 0x5a, sizeof text);
	triplet_network(&a, v4, v6, text, sizeof text);
	size_t tl = strnlen(text, sizeof text);
	CHECK(tl < sizeof text);
	/* the configuration refuses prefixes out of range; in range, the text
	 * must read back as the network holding the address */
	if (a.family == AF_INET ? v4 <= 32 : v6 <= 128) {
		struct cidr c;
		bool host_bits = true;
		CHECK(cidr_parse(text, &c, &host_bits));
		CHECK(!host_bits);
		CHECK(cidr_match(&c, &a));
	}
	memcpy(net, text, tl + 1);
}

static void check_one(const char *in, size_t len, const struct sender_norm_opts *o,
		      const char *rcpt, size_t rlen)
{
	size_t n, n2;
	char *out = normalise(in, len, o, &n);

	/* pure: the same again */
	char *again = normalise(in, len, o, &n2);
	CHECK(n2 == n && memcmp(out, again, n) == 0);
	free(again);

	/* every step off: a plain copy */
	static const struct sender_norm_opts none;
	if (len > 0) {
		char *copy = normalise(in, len, &none, &n2);
		CHECK(n2 == len && memcmp(copy, in, len) == 0);
		free(copy);
	}

#ifdef FUZZ_IDEMPOTENCE
	if (len > 0) {
		char *twice = normalise(out, n, o, &n2);
		CHECK(n2 == n && memcmp(twice, out, n) == 0);
		free(twice);
	}
#endif

	check_triplet(out, n, rcpt, rlen);
	free(out);

	/* out of contract, short buffers */
	check_short(in, len, o, 0);
	check_short(in, len, o, 1);
	check_short(in, len, o, 2);
	check_short(in, len, o, len / 2 + 1);
	check_short(in, len, o, len + 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	struct sender_norm_opts o = {
		.lower = data[0] & 1, .batv = data[0] & 2, .srs = data[0] & 4,
		.ext = data[0] & 8, .digits = data[0] & 16, .hex = data[0] & 32,
	};
	const char *rest = (const char *)data + 1;
	size_t len = size - 1;

	strcpy(net, "192.0.2.0/24");
	check_network(data + 1, len);

	/* As it is; the recipient is the same bytes. */
	check_one(rest, len, &o, rest, len);

	/* As the mailbox of "MAIL FROM:" + rest. */
	char *arg = malloc(5 + len);
	CHECK(arg != NULL);
	memcpy(arg, "FROM:", 5);
	memcpy(arg + 5, rest, len);
	struct smtp_path p;
	if (smtp_path_parse(arg, 5 + len, "FROM:", &p) == SMTP_PATH_OK) {
		CHECK(p.addr_len <= SMTP_PATH_MAX && p.at <= p.addr_len);
		/* exactly sized, so that ASan sees any read past the mailbox */
		char *addr = malloc(p.addr_len + 1);
		CHECK(addr != NULL);
		memcpy(addr, p.addr, p.addr_len + 1);
		check_one(addr, p.addr_len, &o, addr, p.addr_len);
		free(addr);
	}
	free(arg);
	return 0;
}
