/*
 * siphash: SipHash-2-4, a keyed 64-bit hash for hash tables whose keys an
 * adversary chooses.
 *
 * Promises: without the 16-byte key, nobody can predict which inputs share
 * a bucket; the output for a given key and input is the reference SipHash-2-4
 * value (the test vectors of the SipHash paper), on every host.
 */
#ifndef GG_SIPHASH_H
#define GG_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define SIPHASH_KEY_LEN 16

uint64_t siphash24(const uint8_t key[SIPHASH_KEY_LEN], const void *data, size_t len);

#endif
