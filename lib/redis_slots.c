#include "redis_slots.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bitwise: 16384 slots are computed per decision, not per byte of mail,
 * and a table would be 512 bytes of constants to get right. */
uint16_t redis_crc16(const char *buf, size_t len)
{
	uint16_t crc = 0;
	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)((unsigned char)buf[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = crc & 0x8000 ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

unsigned redis_key_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);
	if (open) {
		size_t from = (size_t)(open - key) + 1;
		const char *close = memchr(key + from, '}', len - from);
		if (close && close > key + from) {
			key += from;
			len = (size_t)(close - key);
		}
	}
	return redis_crc16(key, len) & (REDIS_SLOTS - 1);
}

/* A number that fits in [LO, HI]. */
static bool int_in(const redisReply *r, long long lo, long long hi, long long *v)
{
	if (r->type != REDIS_REPLY_INTEGER || r->integer < lo || r->integer > hi)
		return false;
	*v = r->integer;
	return true;
}

/* The index of the primary HOST PORT in M, added when new: -1 when M is
 * full. */
static int node_index(struct slot_map *m, const char *host, int port)
{
	for (size_t i = 0; i < m->nnodes; i++)
		if (m->node[i].port == port && strcmp(m->node[i].host, host) == 0)
			return (int)i;
	if (m->nnodes == SLOTS_MAX_NODES)
		return -1;
	snprintf(m->node[m->nnodes].host, sizeof m->node[0].host, "%s", host);
	m->node[m->nnodes].port = port;
	return (int)m->nnodes++;
}

const char *slot_map_read(const redisReply *r, const char *asked, struct slot_map *m)
{
	memset(m->owner, SLOT_NOBODY, sizeof m->owner);
	m->nnodes = 0;
	if (r->type == REDIS_REPLY_ERROR)
		return "error reply to CLUSTER SLOTS";
	if (r->type != REDIS_REPLY_ARRAY)
		return "CLUSTER SLOTS reply is not an array";
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		long long lo, hi, port;
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    !int_in(e->element[0], 0, REDIS_SLOTS - 1, &lo) ||
		    !int_in(e->element[1], lo, REDIS_SLOTS - 1, &hi))
			return "CLUSTER SLOTS entry without a valid slot range";
		const redisReply *n = e->element[2];
		if (n->type != REDIS_REPLY_ARRAY || n->elements < 2 ||
		    n->element[0]->type != REDIS_REPLY_STRING || !int_in(n->element[1], 1, 65535, &port))
			return "CLUSTER SLOTS entry without a primary ADDRESS PORT";
		const char *host = n->element[0]->len ? n->element[0]->str : asked;
		if (strcmp(host, "?") == 0)
			continue;     /* the primary's address is not known yet: nobody */
		if (strlen(host) != (n->element[0]->len ? n->element[0]->len : strlen(asked)) ||
		    !sentinel_addr_ok(host, port))
			return "CLUSTER SLOTS primary address is not numeric";
		int k = node_index(m, host, (int)port);
		if (k < 0)
			return "CLUSTER SLOTS names too many primaries";
		memset(m->owner + lo, k, (size_t)(hi - lo + 1));
	}
	return NULL;
}

bool redirect_parse(const char *err, const char *from, struct redirect *d)
{
	size_t w = strcspn(err, " ");
	if (w == 5 && strncmp(err, "MOVED", 5) == 0)
		d->kind = REDIRECT_MOVED;
	else if (w == 3 && strncmp(err, "ASK", 3) == 0)
		d->kind = REDIRECT_ASK;
	else
		return false;
	const char *p = err + w;
	if (*p++ != ' ' || *p < '0' || *p > '9')
		return false;
	char *end;
	unsigned long slot = strtoul(p, &end, 10);
	if (*end != ' ' || end - p > 5 || slot >= REDIS_SLOTS)
		return false;
	const char *addr = end + 1;
	const char *colon = strrchr(addr, ':');
	if (!colon || colon - addr >= (long)sizeof d->to.host || colon[1] < '0' || colon[1] > '9')
		return false;
	long port = strtol(colon + 1, &end, 10);
	if (*end || end - (colon + 1) > 5)
		return false;
	char host[sizeof d->to.host];
	snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
	if (!host[0])
		snprintf(host, sizeof host, "%s", from);
	if (!sentinel_addr_ok(host, port))
		return false;
	d->slot = (unsigned)slot;
	snprintf(d->to.host, sizeof d->to.host, "%s", host);
	d->to.port = (int)port;
	return true;
}
