/*
 * fuzz_check.h: the one assertion macro the fuzz targets share. Unlike
 * assert() it cannot be compiled out by NDEBUG, and it names the invariant
 * that broke before aborting, which libFuzzer then reports as a crash and
 * saves the input for.
 */
#ifndef GG_FUZZ_CHECK_H
#define GG_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                         \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: invariant failed: %s\n",    \
				__FILE__, __LINE__, #cond);                 \
			abort();                                            \
		}                                                           \
	} while (0)

/* P[0..N) lies inside BASE[0..LEN). */
#define INSIDE(p, n, base, len)                                             \
	((const char *)(p) >= (const char *)(base) &&                       \
	 (size_t)((const char *)(p) - (const char *)(base)) <= (len) &&     \
	 (n) <= (len) - (size_t)((const char *)(p) - (const char *)(base)))

#endif
