/* session_proxy: the load balancer's PROXY header at the start of a
 * session from proxy_protocol_networks. */

#include "session_priv.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <string.h>

#include "connlimit.h"
#include "listener.h"
#include "log.h"
#include "proxyproto.h"

static void refuse_proxy(struct session *s, const char *why)
{
	log_reject(s, "PROXY", why, WHY_PROXY_PROTOCOL);
	replyf(s, "421 4.7.0 %s Error: %s", s->cfg->myhostname, why);
	close_after_flush(s);
}

/* A connection from proxy_protocol_networks starts with the load
 * balancer's header: the real client comes from it, and nothing else is
 * accepted from those networks. Returns true once the session may go on. */
bool read_proxy_header(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t have = evbuffer_get_length(in);
	if (have == 0)
		return false;
	size_t n = have < PROXYPROTO_V2_MAX ? have : PROXYPROTO_V2_MAX;
	const unsigned char *p = evbuffer_pullup(in, (ssize_t)n);
	struct proxyproto_result r;
	enum proxyproto_status st = proxyproto_parse(p, n, &r);
	if (st == PP_NEED_MORE && n < PROXYPROTO_V2_MAX)
		return false;
	if (st != PP_OK) {
		refuse_proxy(s, "PROXY protocol header required");
		return false;
	}
	evbuffer_drain(in, r.len);
	char proxy[48];
	memcpy(proxy, s->client_str, sizeof proxy);
	if (r.local) {
		/* not counted in connlimit either: the balancer is no client */
		s->client_unknown = true;
		s->client_port = 0;
		snprintf(s->client_str, sizeof s->client_str, "unknown");
	} else {
		if (!connlimit_acquire(&r.src, (int)listener_share(s->cfg->limits.max_per_client))) {
			refuse_proxy(s, "too many connections from your address");
			return false;
		}
		s->client = r.src;
		s->counted = true;
		s->client_port = r.src_port;
		ipaddr_str(&r.src, s->client_str, sizeof s->client_str);
	}
	struct logline l;
	begin_line(&l, s, "proxy");
	ll_int(&l, "port", s->client_port);
	ll_str(&l, "proxy", proxy);
	ll_int(&l, "version", r.version);
	if (r.local)
		ll_str(&l, "local", "yes");
	ll_emit(&l);
	s->state = SS_CMD;
	greet(s);
	return true;
}
