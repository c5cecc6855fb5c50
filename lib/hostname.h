/*
 * hostname: whether a name from outside (DNS, a client) is a usable host
 * name before it is handed on, e.g. as XCLIENT NAME, which Postfix refuses
 * for the whole connection when it is not one.
 *
 * Promises: the rules of Postfix's valid_hostname(): labels of letters,
 * digits, '-' and '_' that neither start nor end with '-', 1 to 63 octets
 * each, 253 octets in all, no empty label (hence no trailing dot), and not
 * all digits and dots (that is an address). Pure; no allocation.
 */
#ifndef GG_HOSTNAME_H
#define GG_HOSTNAME_H

#include <stdbool.h>
#include <stddef.h>

#define HOSTNAME_MAX 253
#define HOSTNAME_LABEL_MAX 63

bool hostname_valid(const char *name, size_t len);

#endif
