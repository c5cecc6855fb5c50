/*
 * fuzz_redis_slots: the Redis Cluster reply readers (lib/redis_slots.h).
 *
 * Input layout: up to the first NUL byte, a text read as a MOVED/ASK error
 * reply and as a key; the rest, RESP bytes that hiredis's reader turns into
 * a reply (as from a hostile node), read as a CLUSTER SLOTS answer.
 * Checked:
 *  - a slot map read without complaint names at most SLOTS_MAX_NODES
 *    primaries, each numeric with a port in 1..65535, no two alike, and
 *    every slot's owner is one of them or SLOT_NOBODY;
 *  - a redirect read without complaint has a slot under 16384 and a
 *    numeric address;
 *  - a key's slot is under 16384 and, when the key has a non-empty hash
 *    tag, equals the tag's own slot.
 * RESP that announces an array or string of 10000 or more is skipped:
 * hiredis 0.14 allocates what is announced, which the daemon bounds in
 * proxy/redis_bound.c, not here.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "fuzz_check.h"
#include "redis_slots.h"

static struct slot_map map;

static void check_map(void)
{
	CHECK(map.nnodes <= SLOTS_MAX_NODES);
	for (size_t i = 0; i < map.nnodes; i++) {
		CHECK(sentinel_addr_ok(map.node[i].host, map.node[i].port));
		for (size_t j = 0; j < i; j++)
			CHECK(map.node[i].port != map.node[j].port ||
			      strcmp(map.node[i].host, map.node[j].host) != 0);
	}
	for (size_t s = 0; s < REDIS_SLOTS; s++)
		CHECK(map.owner[s] == SLOT_NOBODY || map.owner[s] < map.nnodes);
}

/* A '*' or '$' followed by five digits or more. */
static bool announces_much(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '*' && p[i] != '$')
			continue;
		size_t d = 0;
		while (i + 1 + d < n && p[i + 1 + d] >= '0' && p[i + 1 + d] <= '9')
			d++;
		if (d >= 5)
			return true;
	}
	return false;
}

static void check_key(const char *key, size_t len)
{
	unsigned slot = redis_key_slot(key, len);
	CHECK(slot < REDIS_SLOTS);
	const char *open = memchr(key, '{', len);
	if (!open)
		return;
	size_t from = (size_t)(open - key) + 1;
	const char *close = memchr(key + from, '}', len - from);
	if (close && close > key + from)
		CHECK(slot == redis_key_slot(key + from, (size_t)(close - (key + from))));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	const char *nul = memchr(in, 0, size);
	size_t tlen = nul ? (size_t)(nul - in) : size;
	char text[512];
	if (tlen < sizeof text) {
		memcpy(text, in, tlen);
		text[tlen] = 0;
		struct redirect d;
		if (redirect_parse(text, "127.0.0.1", &d)) {
			CHECK(d.slot < REDIS_SLOTS);
			CHECK(sentinel_addr_ok(d.to.host, d.to.port));
		}
	}
	check_key(in, tlen);
	if (!nul || announces_much(nul + 1, size - tlen - 1))
		return 0;

	redisReader *rd = redisReaderCreate();
	if (!rd)
		return 0;
	void *reply = NULL;
	if (redisReaderFeed(rd, nul + 1, size - tlen - 1) == REDIS_OK &&
	    redisReaderGetReply(rd, &reply) == REDIS_OK && reply) {
		if (!slot_map_read(reply, "127.0.0.1", &map))
			check_map();
		freeReplyObject(reply);
	}
	redisReaderFree(rd);
	return 0;
}
