/* backend_probe: learns the backend's extensions and whether it is
 * reachable, with a throw-away connection. */

#include "backend.h"
#include "backend_priv.h"

#include "config.h"
#include "log.h"

/* One probe at a time: a backend that does not answer must not collect a
 * probe a second until connect_timeout. */
static bool probing;

/* What the last probe logged, so that a probe every few seconds logs a
 * line only when its result changes (at debug otherwise). */
static struct probe_seen {
	bool logged;
	enum backend_status st;
	struct backend_caps caps;
} probe_seen;

static void probe_done(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	(void)r;
	struct backend *b = arg;
	probing = false;
	const struct backend_caps *c = backend_caps(), *o = &probe_seen.caps;
	bool changed = !probe_seen.logged || probe_seen.st != st ||
		       (st == BE_OK && (c->size != o->size || c->size_limit != o->size_limit ||
					c->eightbitmime != o->eightbitmime ||
					c->smtputf8 != o->smtputf8 || c->dsn != o->dsn ||
					c->xclient != o->xclient || c->pipelining != o->pipelining ||
					c->enhancedstatuscodes != o->enhancedstatuscodes));
	probe_seen = (struct probe_seen){ .logged = true, .st = st, .caps = *c };
	struct logline l;
	ll_begin(&l, !changed ? LOG_LVL_DEBUG : st == BE_OK ? LOG_LVL_INFO : LOG_LVL_WARNING,
		 "backend_probe");
	ll_str(&l, "backend", b->cfg->backend.address);
	ll_str(&l, "result", st == BE_OK ? "ok" : "unavailable");
	if (st == BE_OK) {
		ll_int(&l, "size", (long long)c->size_limit);
		ll_int(&l, "xclient", c->xclient);
		ll_int(&l, "smtputf8", c->smtputf8);
		ll_int(&l, "dsn", c->dsn);
	}
	ll_emit(&l);
	backend_free(b);
}

void backend_probe(struct event_base *base, struct gg_config *cfg)
{
	if (probing)
		return;
	struct backend *b = backend_new(base, cfg, 0);
	if (!b)
		return;
	probing = true;
	b->probe = true;
	backend_open(b, NULL, probe_done, b);
}
