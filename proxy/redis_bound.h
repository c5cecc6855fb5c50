/*
 * redis_bound: attaches a hiredis async context to the libevent loop (in
 * place of hiredis's own libevent adapter) so that no single reply can take
 * more than REDIS_REPLY_MAX bytes: greygate's replies are tiny, and a hostile
 * or broken server announcing a huge bulk string or array would otherwise
 * make hiredis buffer or allocate whatever it announces.
 *
 * A reply over the bound fails the context like a protocol error: hiredis
 * answers the pending callbacks with a NULL reply and calls the disconnect
 * callback with REDIS_ERR; redis_bound_refusal() then says why.
 */
#ifndef GG_REDIS_BOUND_H
#define GG_REDIS_BOUND_H

#include <event2/event.h>
#include <hiredis/async.h>

#define REDIS_REPLY_MAX (64 * 1024)

/* 0, or -1 when out of memory (AC is then unusable and must be freed). */
int redis_bound_attach(redisAsyncContext *ac, struct event_base *base);

/* Inside AC's disconnect callback: the text of the refusal that ended AC
 * ("reply too large ..."), or NULL when AC ended for another reason. */
const char *redis_bound_refusal(const redisAsyncContext *ac);

#endif
