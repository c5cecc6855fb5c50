/*
 * config_priv: what the parts of the configuration loader share, and no
 * one else includes. config.c runs a load (begin, steps, end) and owns the
 * errors; config_schema.c is the table of settings and the generic loader
 * that reads it; config_named.c the settings that need more than a row;
 * config_files.c reads files whole (the main file, @includes, list files)
 * and makes and splits the bundle.
 */
#ifndef GG_CONFIG_PRIV_H
#define GG_CONFIG_PRIV_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "config.h"
#include "config_schema.h"

#define CONFIG_FILE_MAX (1 << 20)
#define LIST_FILE_MAX (16 << 20)
#define DOMAIN_MAX 253

struct loader;

/* What one entry of a list means: the same check for an entry written in
 * the file and one in a list file. Returns false after calling fail(). */
typedef bool (*entry_fn)(struct loader *ld, const config_setting_t *s, const char *where,
			 const char *entry, void *dst);

/*
 * A file read whole, without blocking and without trusting it to stay put:
 * only a regular file is opened for reading (a FIFO or a device would
 * block the loop or never end), at most MAX bytes, and it must be the same
 * from open to end of file: same inode, size and mtime, and still the file
 * its path names. A list file being rewritten in place fails instead of
 * loading half its entries.
 */
struct whole_file {
	const char *path;
	int fd;
	struct stat st;            /* at open */
	char *buf;                 /* NUL-terminated once complete */
	size_t len, cap, max;
};

/* A list file queued by begin, loaded by the steps: read whole first (so
 * that the bytes parsed are the bytes a bundle hands on), then parsed. */
struct list_job {
	const config_setting_t *s;    /* the LIST_file setting */
	char setting[128];            /* its path, e.g. "whitelist.clients_file" */
	entry_fn fn;
	void *dst;
	struct whole_file f;          /* f.buf not owned when it comes from a bundle */
	bool in;                      /* every byte in memory */
	size_t pos;                   /* parsed up to here */
	unsigned lineno;
	size_t out_at, copied;        /* where its bytes go in the bundle, how many went */
};

/* One record of a bundle (gg_config_bundle): a name and bytes inside the
 * loader's copy of the bundle. */
struct brec {
	const char *name, *data;
	size_t nlen, len;
	bool used;
};

#define LIST_JOBS_MAX 16

/* The state of one load, from begin to end. */
struct loader {
	const char *file;          /* in every error: the configuration's own path */
	char *err;
	size_t errlen;
	bool failed;
	bool from_bundle;          /* its text's line numbers would mean nothing to a reader */
	config_t cf;               /* kept to the end: list files report their setting's line */
	bool cf_live;
	struct gg_config *c;
	struct list_job *jobs;     /* the list files, loaded in turn by the steps */
	size_t njobs, next;
	size_t fill;               /* the list file being copied into the bundle */
	bool lists_in;             /* every list file parsed; the bundle being filled */
	bool done;
	char *bundle;              /* from a bundle: a copy of it, which records point into */
	size_t bundle_len;
	struct brec recs[LIST_JOBS_MAX + 2];
	size_t nrecs;
};

/* The public name of a loader. */
struct gg_config_load {
	struct loader ld;
};

/* config.c: the first failure of a load, as "FILE:LINE: reason" in its
 * error buffer; later ones are dropped. Both return false. A setting S
 * names its own file and line; S NULL, line 0. */
bool cfg_fail(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* For a line of FILE (not the main file). */
bool cfg_fail_at(struct loader *ld, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* strdup, or abort: a configuration is never left half made. */
char *cfg_xstrdup(const char *s);

/* config_schema.c: every setting below S known and of its row's kind; the
 * scalars that have a field, from the file or the row's default; the lists
 * that have a field, their files queued. */
bool cfg_check_schema(struct loader *ld, const config_setting_t *s, const char *prefix);
void cfg_load_scalars(const config_t *cf, struct gg_config *c);
bool cfg_load_lists(struct loader *ld, const config_t *cf, struct gg_config *c);
/* BOOL from the file, or DEF. */
void cfg_get_bool(const config_t *cf, const char *path, bool def, bool *out);
/* Lower-cases and checks a domain, drops a trailing dot; a leading dot
 * (".example": every subdomain) is kept. */
bool cfg_domain_normalise(const char *in, char *out, size_t outlen);

/* config_named.c: the settings a row does not describe, in this order. */
bool cfg_load_listen(struct loader *ld, const config_t *cf, struct gg_config *c);
bool cfg_load_store(struct loader *ld, const config_t *cf, struct gg_config *c);
bool cfg_load_greylist(struct loader *ld, const config_t *cf, struct gg_config *c);
bool cfg_load_dns(struct loader *ld, const config_t *cf, struct gg_config *c);
bool cfg_load_tls(struct loader *ld, const config_t *cf, struct gg_config *c);
bool cfg_load_scoring(struct loader *ld, const config_t *cf, struct gg_config *c);
bool cfg_validate(struct loader *ld, const config_t *cf, struct gg_config *c);
/* What needs the list files' entries, once the last one is in. */
bool cfg_load_after_lists(struct loader *ld, const config_t *cf, struct gg_config *c);

/* config_files.c: a file read whole (see struct whole_file). */
bool cfg_wf_open(struct whole_file *f, const char *path, size_t max, char *why, size_t n);
int cfg_wf_read(struct whole_file *f, size_t *budget, char *why, size_t n);
void cfg_wf_close(struct whole_file *f);
/* List file jobs: queued by begin, loaded a step at a time. */
bool cfg_queue_list_file(struct loader *ld, const config_setting_t *s, const char *path,
			    entry_fn fn, void *dst);
int cfg_list_step(struct loader *ld, struct list_job *j, size_t *budget);
/* The main file's text (or a bundle's) through libconfig, its @includes
 * checked first. */
bool cfg_parse_text(struct loader *ld, const char *text, size_t len);
/* The bundle: laid out once the lists are in, filled step by step; and a
 * received one split into records. */
bool cfg_bundle_begin(struct loader *ld);
bool cfg_bundle_fill(struct loader *ld, size_t *budget);
bool cfg_bundle_split(struct loader *ld, const unsigned char *b, size_t len);

#endif
