#include "triplet.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "pool_key.h"

void triplet_network(const struct ipaddr *client, unsigned v4_prefix, unsigned v6_prefix,
		     char *out, size_t outlen)
{
	struct ipaddr a = *client;
	unsigned prefix = a.family == AF_INET ? v4_prefix : v6_prefix;
	ipaddr_mask(&a, prefix);
	char text[48];
	snprintf(out, outlen, "%s/%u", ipaddr_str(&a, text, sizeof text), prefix);
}

/* ASCII only, not tolower(): under a locale other than "C" tolower() may
 * fold bytes of UTF-8 addresses, and hosts with different locales would
 * then build different keys for one triplet. */
static void copy_part(char *dst, const char *src, size_t len, bool lower)
{
	for (size_t i = 0; i < len; i++) {
		char c = src[i];
		dst[i] = lower && c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	dst[len] = 0;
}

static int add_part(EVP_MD_CTX *ctx, const char *s)
{
	size_t len = strlen(s);
	unsigned char prefix[4] = { (unsigned char)(len >> 24), (unsigned char)(len >> 16),
				    (unsigned char)(len >> 8), (unsigned char)len };
	return EVP_DigestUpdate(ctx, prefix, sizeof prefix) == 1 &&
	       EVP_DigestUpdate(ctx, s, len) == 1;
}

const char *triplet_keytext(const struct triplet *t)
{
	return t->pool[0] ? t->pool : t->net;
}

int triplet_make(struct triplet *t, const char *net, const char *sender, size_t sender_len,
		 const char *rcpt, size_t rcpt_len)
{
	return triplet_make_pool(t, net, NULL, sender, sender_len, rcpt, rcpt_len);
}

int triplet_make_text(struct triplet *t, const char *keytext, const char *sender,
		      size_t sender_len, const char *rcpt, size_t rcpt_len)
{
	bool pool = pool_kind_of(keytext) != POOL_NET;
	return triplet_make_pool(t, pool ? "" : keytext, pool ? keytext : NULL, sender, sender_len,
				 rcpt, rcpt_len);
}

int triplet_make_pool(struct triplet *t, const char *net, const char *pool, const char *sender,
		      size_t sender_len, const char *rcpt, size_t rcpt_len)
{
	if (!pool)
		pool = "";
	if (sender_len >= TRIPLET_PART_MAX || rcpt_len >= TRIPLET_PART_MAX ||
	    strlen(net) >= sizeof t->net || strlen(pool) >= sizeof t->pool ||
	    (pool[0] && pool_kind_of(pool) == POOL_NET))
		return -1;
	memcpy(t->net, net, strlen(net) + 1);
	memcpy(t->pool, pool, strlen(pool) + 1);
	copy_part(t->sender, sender, sender_len, false);
	copy_part(t->rcpt, rcpt, rcpt_len, true);

	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
		  add_part(ctx, triplet_keytext(t)) && add_part(ctx, t->sender) && add_part(ctx, t->rcpt) &&
		  EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen >= TRIPLET_KEY_LEN;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	memcpy(t->key, md, TRIPLET_KEY_LEN);
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < TRIPLET_KEY_LEN; i++) {
		t->hex[2 * i] = hex[md[i] >> 4];
		t->hex[2 * i + 1] = hex[md[i] & 15];
	}
	t->hex[TRIPLET_HEX_LEN] = 0;
	return 0;
}
