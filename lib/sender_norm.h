/*
 * sender_norm: the sender part of the greylisting triplet (the
 * greylist.normalize_sender setting of conf/greygate.conf).
 *
 * Mailing lists and bounce-tracking systems give every message its own
 * envelope sender (VERP, BATV, SRS, per-message ids). Greylisting by the
 * literal sender would greylist every one of them as new; normalising maps
 * the senders of one mailing to one key.
 *
 * Promises: pure, bounded (output never longer than the input, plus the
 * terminator), each step can be switched off. The null sender stays "<>".
 */
#ifndef GG_SENDER_NORM_H
#define GG_SENDER_NORM_H

#include <stdbool.h>
#include <stddef.h>

struct sender_norm_opts {
	bool lower;     /* lower-case the whole address */
	bool batv;      /* prvs=TAG=user, prvs=user=TAG (legacy order), btv1==TAG==user -> user */
	bool srs;       /* SRS0=HASH=TT=dom=user@fwd -> srs0=dom=user@fwd; SRS1 likewise */
	bool ext;       /* user+ext -> user */
	bool digits;    /* runs of digits in the local part -> '#' */
	bool hex;       /* hex tokens of 8+ characters with a digit, and UUIDs, in the local part -> '#' */
};

extern const struct sender_norm_opts sender_norm_all;   /* every step on */

/*
 * Normalises ADDR (LEN bytes, the MAIL FROM mailbox without brackets; empty
 * for the null sender) into OUT (OUTLEN >= LEN + 3). Returns the length
 * written (without the terminator).
 */
size_t sender_normalise(const char *addr, size_t len, const struct sender_norm_opts *o,
			char *out, size_t outlen);

#endif
