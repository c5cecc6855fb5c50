/*
 * config_schema: every setting of greygate.conf as one row of a table: its
 * path, kind, bounds, default and the field of struct gg_config it lands
 * in. The loader checks a file against the table, fills every field that
 * has a row from the row alone, and gg_config_unref frees every such field
 * by walking it. A setting that needs more than that (listen,
 * store.failure, the sentinels, the normalisation switches, dns.servers,
 * tls.cert/key) has a row without a field (CFG_NOWHERE) and a named
 * function in config_named.c; myhostname and banner have rows whose
 * default (NULL) config.c computes. A row marked RESTART takes a restart
 * to change (gg_config_restart_setting compares those rows).
 *
 * Adding a plain setting: a row in config_schema.c, its field in config.h,
 * a line in conf/greygate.conf (test_config_schema checks that the table
 * and the file agree), its entry in man/greygate.conf.5 (test_config_doc
 * prints the line the entry needs when it is missing or wrong).
 */
#ifndef GG_CONFIG_SCHEMA_H
#define GG_CONFIG_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

enum cfg_kind {
	CK_GROUP,        /* a group { ... } */
	CK_STR,          /* char *; default: a string, or NULL when a named function makes it */
	CK_INT,          /* int within min..max */
	CK_BOOL,         /* bool */
	CK_INT_OR_AUTO,  /* int within min..max, or "auto": one per core within the range */
	CK_STRLIST,      /* a list of strings a named function reads */
	CK_NETS,         /* struct netlist; entries and a LIST_file companion */
	CK_DOMAINS,      /* struct domainlist; the same */
	CK_ADDRS,        /* struct addrlist; the same */
	CK_LATER,        /* a later version's setting: accepted with a warning */
};

#define CFG_NOWHERE ((size_t)-1)

struct cfg_setting {
	const char *path;
	enum cfg_kind kind;
	long min, max;             /* CK_INT, CK_INT_OR_AUTO */
	size_t off;                /* offsetof in struct gg_config, or CFG_NOWHERE */
	long def;                  /* CK_INT, CK_INT_OR_AUTO, CK_BOOL */
	const void *defp;          /* CK_STR: const char *; lists: NULL-ended const char *[] */
	bool restart;              /* a change takes a restart (gg_config_restart_setting) */
	/* for a restart row without a field: whether OLD and NEW agree on it */
	bool (*same)(const struct gg_config *old, const struct gg_config *new);
};

extern const struct cfg_setting cfg_settings[];
extern const size_t cfg_nsettings;

/* The row of PATH ("store.redis.port"), or NULL. */
const struct cfg_setting *cfg_setting_find(const char *path);

/* Where row R lands in C. */
static inline void *cfg_field(struct gg_config *c, const struct cfg_setting *r)
{
	return (char *)c + r->off;
}

/* True for the kinds that are lists of strings in the file. */
bool cfg_kind_is_list(enum cfg_kind k);

/* Frees every field that has a row (strings and lists); not C itself. */
void cfg_settings_free(struct gg_config *c);

#endif
