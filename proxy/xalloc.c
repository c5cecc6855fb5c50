#include "xalloc.h"

#include <stdlib.h>

#include "log.h"

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (!p) {
		log_msg(LOG_LVL_ERROR, "fatal", "out of memory");
		abort();
	}
	return p;
}
