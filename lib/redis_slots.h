/*
 * redis_slots: the pure part of talking to a Redis Cluster. Which of the
 * 16384 hash slots a key is in (CRC16 of the key, or of its hash tag: the
 * part between the first '{' and the next '}', when not empty), which
 * primary serves each slot (read from a CLUSTER SLOTS reply), and what a
 * MOVED or ASK error reply redirects to.
 *
 * Promises: every reply is read as hostile. A slot map holds at most
 * SLOTS_MAX_NODES primaries, each with a numeric address (a host name would
 * need a blocking lookup) and a port in 1..65535; a range outside 0..16383,
 * reversed, or a node entry of the wrong shape refuses the whole reply,
 * so a half-read reply never routes anything. Slots no
 * entry covers are SLOT_NOBODY. Nothing here allocates.
 */
#ifndef GG_REDIS_SLOTS_H
#define GG_REDIS_SLOTS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sentinel.h"

#define REDIS_SLOTS 16384
#define SLOTS_MAX_NODES 64
#define SLOT_NOBODY 0xff

/* CRC16/XMODEM of BUF, as Redis Cluster computes key slots. */
uint16_t redis_crc16(const char *buf, size_t len);

/* The slot of KEY (LEN bytes), hash tags honoured. */
unsigned redis_key_slot(const char *key, size_t len);

struct slot_map {
	struct sentinel_addr node[SLOTS_MAX_NODES];   /* the primaries */
	size_t nnodes;
	uint8_t owner[REDIS_SLOTS];  /* index into node, or SLOT_NOBODY */
};

/* Reads R, the reply to CLUSTER SLOTS asked of ASKED (a node's empty
 * address means "the one you asked"), into *M: NULL, or why R was refused
 * (*M is then undefined). Replicas are ignored: decisions go to primaries. */
const char *slot_map_read(const redisReply *r, const char *asked, struct slot_map *m);

enum redirect_kind { REDIRECT_MOVED, REDIRECT_ASK };

struct redirect {
	enum redirect_kind kind;
	unsigned slot;
	struct sentinel_addr to;
};

/* An error reply ERR "MOVED|ASK SLOT HOST:PORT" (HOST empty: the node
 * FROM, which sent it): true and *D filled, or false when ERR is anything
 * else or malformed. */
bool redirect_parse(const char *err, const char *from, struct redirect *d);

#endif
