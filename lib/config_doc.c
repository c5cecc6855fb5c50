/*
 * One sentence per row, with semicolons between its parts: mandoc asks
 * for a new line after each full stop.
 */
#include "config_doc.h"

#include <stdarg.h>
#include <stdio.h>

struct out {
	char *buf;
	size_t len, n;
	bool ok;
};

static void put(struct out *o, const char *fmt, ...)
{
	if (!o->ok)
		return;
	va_list ap;
	va_start(ap, fmt);
	int w = vsnprintf(o->buf + o->n, o->len - o->n, fmt, ap);
	va_end(ap);
	if (w < 0 || (size_t)w >= o->len - o->n)
		o->ok = false;
	else
		o->n += (size_t)w;
}

static const char *kind_name(enum cfg_kind k)
{
	switch (k) {
	case CK_STR: return "String";
	case CK_INT: return "Integer";
	case CK_INT_OR_AUTO: return "Integer";
	case CK_BOOL: return "Boolean";
	case CK_STRLIST: return "List of strings";
	case CK_NETS: return "List of networks";
	case CK_DOMAINS: return "List of domains";
	case CK_ADDRS: return "List of address patterns";
	case CK_LATER: return "Accepted and ignored";
	case CK_GROUP: break;
	}
	return NULL;
}

/* The row's default, when the row itself holds it. */
static void put_default(struct out *o, const struct cfg_setting *r)
{
	if (r->off == CFG_NOWHERE)
		return;
	switch (r->kind) {
	case CK_INT:
	case CK_INT_OR_AUTO:
		put(o, "; default %ld", r->def);
		break;
	case CK_BOOL:
		put(o, "; default %s", r->def ? "true" : "false");
		break;
	case CK_STR:
		if (r->defp)
			put(o, "; default \"%s\"", (const char *)r->defp);
		break;
	case CK_NETS:
	case CK_DOMAINS:
	case CK_ADDRS:
		for (const char *const *d = r->defp; d && *d; d++)
			put(o, "%s\"%s\"", d == r->defp ? "; default " : ", ", *d);
		break;
	default:
		break;
	}
}

bool cfg_doc_line(const struct cfg_setting *r, char *buf, size_t len)
{
	const char *kind = kind_name(r->kind);
	if (!kind || len == 0)
		return false;
	struct out o = { .buf = buf, .len = len, .ok = true };
	put(&o, "%s", kind);
	if (r->kind == CK_INT || r->kind == CK_INT_OR_AUTO)
		put(&o, ", %ld to %ld%s", r->min, r->max,
		    r->kind == CK_INT_OR_AUTO ? " or \"auto\" (one per core)" : "");
	put_default(&o, r);
	put(&o, "; %s.", r->restart ? "a change takes a restart" : "SIGHUP reloads it");
	return o.ok;
}
