/*
 * hostname: whether a name is a usable host name. Every name greygate
 * takes from a DNS answer (PTR targets, MX exchanges) and every name it
 * asks the resolver for passes here first, so a name that would need
 * escaping anywhere (a log line, a pattern match, a c-ares query, an
 * XCLIENT attribute) never gets past the parser.
 *
 * Promises: true only for 1..253 bytes of labels separated by single dots,
 * no trailing dot; each label 1..63 bytes of letters, digits, '-' and '_',
 * '-' neither first nor last; not made of digits and dots only. That is
 * what Postfix's valid_hostname() accepts (underscores included, which
 * real PTR records carry), so a name that passes is one Postfix takes in
 * XCLIENT NAME or HELO, minus the names longer than 253 bytes that it
 * would still take.
 */
#ifndef GG_HOSTNAME_H
#define GG_HOSTNAME_H

#include <stdbool.h>
#include <stddef.h>

#define HOSTNAME_MAX 253
#define HOSTNAME_LABEL_MAX 63

bool hostname_valid(const char *name, size_t len);

#endif
