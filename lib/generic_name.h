/*
 * generic_name: whether a host name looks like an access provider's name
 * for one of its customers' addresses ("203-0-113-7.dyn.example.net",
 * "dhcp-7.pool.example", "cb007107.cust.example") rather than the name of
 * a mail server an organisation chose. Such a name, even when forward-
 * confirmed, says nothing about who sends: its domain is the provider's,
 * shared by every customer, so it must not group clients (pool keys) and
 * counts as a weak sign of a bot.
 *
 * Promises: pure, no allocation, reads at most HOSTNAME_MAX bytes of NAME
 * plus one trailing dot. True when any of:
 *   - one of WORDS (case-insensitive) is a whole label of NAME, or a whole
 *     run of letters inside a label ("dsl" in "dsl7-113", "dyn" in
 *     "ip-7-dyn"; not in "dynect": a word never matches part of a run);
 *   - for IPv4, the address's last three octets in decimal, in the
 *     address's order or reversed, as consecutive numbers of NAME whatever
 *     separates them ("203-0-113-7", "7.113.0.203", "c0-113-7x"); a run of
 *     digits whose length is a multiple of three (six or more) reads as
 *     zero-padded octets ("203000113007", "203.000.113.007");
 *   - for IPv4, the address in eight hex digits, in either byte order
 *     ("cb007107", case-insensitive);
 *   - for IPv6, the last 32 bits in eight hex digits ("12345678"), or its
 *     last two 16-bit groups as consecutive hex labels or label parts
 *     ("2001-db8-0-0-0-0-1234-5678"), or its last eight nibbles as
 *     reversed single-digit labels ("8.7.6.5.4.3.2.1.", ip6.arpa style);
 *   - NAME is NULL or not a valid host name (hostname.h): what cannot be
 *     read as a name never vouches for anybody.
 * ADDR may be NULL (then only the words count). WORDS entries may be NULL
 * or empty (never match). The cost is linear in the name's length times
 * NWORDS, which is meant to be a short list.
 */
#ifndef GG_GENERIC_NAME_H
#define GG_GENERIC_NAME_H

#include <stdbool.h>
#include <stddef.h>

#include "netaddr.h"

bool generic_name(const char *name, const struct ipaddr *addr,
		  const char *const *words, size_t nwords);

#endif
