/*
 * xalloc: allocation for requests whose start function promises a valid
 * handle and a later callback. Such a function has no way to report
 * failure that keeps that promise, and a process that cannot get a few
 * hundred bytes cannot serve anyone anyway: it logs and aborts, and the
 * supervisor starts a new worker.
 */
#ifndef GG_XALLOC_H
#define GG_XALLOC_H

#include <stddef.h>

void *xcalloc(size_t n, size_t size);

#endif
