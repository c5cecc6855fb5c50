/*
 * regdomain: a host name's registrable domain ("example.co.uk" for
 * "mx1.mail.example.co.uk"), by the Public Suffix List through libpsl:
 * the part of a name one organisation holds, so that its mail servers,
 * whatever networks they sit in, can be told apart from other
 * organisations' (pool keys, pool_key.h).
 *
 * Promises: regdomain never does I/O: before regdomain_init, or when
 * loading failed, it uses libpsl's built-in list. regdomain_init (once,
 * before the event loop; later calls do nothing) takes the newer of the
 * built-in list and the system's list (/usr/share/publicsuffix, Debian's
 * publicsuffix package) when that is installed. A name under a top-level
 * domain the list does not know has the list's default rule: its last
 * two labels.
 */
#ifndef GG_REGDOMAIN_H
#define GG_REGDOMAIN_H

#include <stdbool.h>
#include <stddef.h>

void regdomain_init(void);

/* NAME's registrable domain, lower case, into OUT; false (OUT "") when
 * NAME is not a valid host name (hostname.h; one trailing dot allowed),
 * is itself a public suffix ("co.uk", "com"), the answer is no valid
 * host name itself (all digits: "801.88") or does not fit in OUTLEN. */
bool regdomain(const char *name, char *out, size_t outlen);

#endif
