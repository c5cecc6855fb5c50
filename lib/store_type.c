#include "store_type.h"

#include <stdio.h>
#include <string.h>

#include "redis_admin.h"

const struct store_type store_types[STORE_KINDS] = {
	[STORE_MEMORY] = { "memory", STORE_EMBEDDED },
	[STORE_REDIS] = { "redis", 0, redis_admin_open, redis_admin_close },
	[STORE_REDIS_CLUSTER] = { "redis-cluster", 0, redis_admin_open, redis_admin_close },
};

int store_type_find(const char *name, enum store_kind *kind)
{
	for (int k = 0; k < STORE_KINDS; k++) {
		if (strcmp(store_types[k].name, name) == 0) {
			*kind = (enum store_kind)k;
			return 0;
		}
	}
	return -1;
}

const char *store_type_names(void)
{
	static char buf[128];
	if (buf[0])
		return buf;
	size_t n = 0;
	for (int k = 0; k < STORE_KINDS && n < sizeof buf; k++) {
		int w = snprintf(buf + n, sizeof buf - n, "%s\"%s\"",
				 k == 0 ? "" : k == STORE_KINDS - 1 ? " or " : ", ", store_types[k].name);
		if (w < 0)
			break;
		n += (size_t)w;
	}
	return buf;
}
