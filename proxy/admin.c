#include "admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostport.h"
#include "log.h"
#include "metrics.h"
#include "server.h"

static struct evhttp *http;

static void send_text(struct evhttp_request *req, int code, const char *reason,
		      const char *ctype, const char *text, size_t len)
{
	struct evbuffer *body = evbuffer_new();
	if (!body) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add(body, text, len);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
	evhttp_send_reply(req, code, reason, body);
	evbuffer_free(body);
}

static void on_healthz(struct evhttp_request *req, void *arg)
{
	(void)arg;
	char reason[128], text[160];
	/* a balancer should move new clients elsewhere before the port closes */
	bool ok = !srv.draining && metrics_healthy(reason, sizeof reason);
	if (srv.draining)
		snprintf(reason, sizeof reason, "shutting down");
	int n = snprintf(text, sizeof text, "%s\n", reason);
	send_text(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "text/plain",
		  text, (size_t)n);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
	(void)arg;
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (!out) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	metrics_write(out);
	fclose(out);
	send_text(req, 200, "OK", "text/plain; version=0.0.4", text, len);
	free(text);
}

void admin_open(struct event_base *base, const struct gg_config *cfg)
{
	if (!cfg->admin_listen[0])
		return;
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "admin");
	ll_str(&l, "listen", cfg->admin_listen);
	char host[64];
	const char *colon = strrchr(cfg->admin_listen, ':');
	size_t hlen = colon ? (size_t)(colon - cfg->admin_listen) : 0;
	if (hlen >= sizeof host)
		hlen = 0;
	memcpy(host, cfg->admin_listen, hlen);
	host[hlen] = 0;
	/* evhttp wants a bare IPv6 address, without the brackets */
	char *h = host;
	if (h[0] == '[' && hlen > 1 && h[hlen - 1] == ']') {
		h[hlen - 1] = 0;
		h++;
	}
	http = evhttp_new(base);
	if (!http || !colon ||
	    evhttp_bind_socket(http, h, (ev_uint16_t)atoi(colon + 1)) != 0) {
		l.lvl = LOG_LVL_WARNING;
		ll_str(&l, "result", "failed");
		ll_str(&l, "reason", strerror(errno));
		ll_str(&l, "action", "running without /healthz and /metrics");
		ll_emit(&l);
		if (http)
			evhttp_free(http);
		http = NULL;
		return;
	}
	/* bounded: a health checker and a scraper, not the internet */
	evhttp_set_max_headers_size(http, 8192);
	evhttp_set_max_body_size(http, 0);
	evhttp_set_timeout(http, 10);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_cb(http, "/healthz", on_healthz, NULL);
	evhttp_set_cb(http, "/metrics", on_metrics, NULL);
	ll_str(&l, "result", "listening");
	ll_emit(&l);
}

void admin_close(void)
{
	if (http)
		evhttp_free(http);
	http = NULL;
}
