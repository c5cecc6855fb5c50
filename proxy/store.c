#include "store.h"

#include <string.h>

#include "log.h"

static const struct store_ops *current;

int store_open(struct event_base *base, struct gg_config *cfg)
{
	if (strcmp(cfg->store.type, "redis") == 0)
		current = store_redis_open(base, cfg);
	else
		current = store_memory_open(base, cfg);
	return current ? 0 : -1;
}

void store_use(const struct store_ops *ops)
{
	current = ops;
}

const struct store_ops *store(void)
{
	return current;
}

struct gl_params store_params(const struct gg_config *cfg)
{
	return (struct gl_params){
		.delay = cfg->greylist.delay,
		.retry_window = cfg->greylist.retry_window,
		.pass_lifetime = cfg->greylist.pass_lifetime,
		.awl_threshold = cfg->greylist.awl_threshold,
		.max_new_per_client = cfg->greylist.max_new_per_client,
	};
}
