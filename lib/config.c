/*
 * Loading walks a schema table: every setting in the file must be known
 * (a typo such as "mynetwork" would otherwise silently leave a host open),
 * of the right type and within range; the first violation is reported with
 * the line libconfig recorded for that setting.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostport.h"
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "config_schema.h"
#include "log.h"

#define CONFIG_FILE_MAX (1 << 20)
#define LIST_FILE_MAX (16 << 20)
#define DOMAIN_MAX 253

struct list_job;

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

static bool vfail_at(struct loader *ld, const char *file, int line, const char *fmt, va_list ap)
{
	if (ld->failed)
		return false;
	ld->failed = true;
	int n = snprintf(ld->err, ld->errlen, "%s:%d: ", file, line);
	if (n >= 0 && (size_t)n < ld->errlen)
		vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
	return false;
}

/* "FILE:LINE: reason" for a line of FILE (not the main file). */
static bool fail_at(struct loader *ld, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static bool fail_at(struct loader *ld, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail_at(ld, file, line, fmt, ap);
	va_end(ap);
	return false;
}

static bool fail(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool fail(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
	/* a setting from an @include names its own file (the main file's
	 * text is parsed from memory: no name there) */
	bool lined = s && !ld->from_bundle;
	const char *file = lined && config_setting_source_file(s) ? config_setting_source_file(s)
								   : ld->file;
	va_list ap;
	va_start(ap, fmt);
	vfail_at(ld, file, lined ? config_setting_source_line(s) : 0, fmt, ap);
	va_end(ap);
	return false;
}

static bool check_kind(struct loader *ld, const config_setting_t *s,
		       const struct cfg_setting *k, const char *path)
{
	int t = config_setting_type(s);
	switch (k->kind) {
	case CK_LATER:
		return true;
	case CK_GROUP:
		return t == CONFIG_TYPE_GROUP || fail(ld, s, "%s must be a group { ... }", path);
	case CK_STR:
		return t == CONFIG_TYPE_STRING || fail(ld, s, "%s must be a string", path);
	case CK_BOOL:
		return t == CONFIG_TYPE_BOOL || fail(ld, s, "%s must be true or false", path);
	case CK_INT: {
		if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
			return fail(ld, s, "%s must be an integer", path);
		long long v = config_setting_get_int64(s);
		if (v < k->min || v > k->max)
			return fail(ld, s, "%s = %lld is out of range %ld..%ld", path, v,
				    k->min, k->max);
		return true;
	}
	case CK_INT_OR_AUTO:
		if (t == CONFIG_TYPE_STRING && strcmp(config_setting_get_string(s), "auto") == 0)
			return true;
		if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
			return fail(ld, s, "%s must be a number or \"auto\"", path);
		if (config_setting_get_int64(s) < k->min || config_setting_get_int64(s) > k->max)
			return fail(ld, s, "%s = %lld is out of range %ld..%ld", path,
				    config_setting_get_int64(s), k->min, k->max);
		return true;
	case CK_STRLIST:
	case CK_NETS:
	case CK_DOMAINS:
	case CK_ADDRS:
		if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
			return fail(ld, s, "%s must be a list of strings [ \"...\" ]", path);
		for (int i = 0; i < config_setting_length(s); i++) {
			const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
			if (config_setting_type(e) != CONFIG_TYPE_STRING)
				return fail(ld, e, "%s must be a list of strings", path);
		}
		return true;
	}
	return false;
}

/* Recursively checks that every setting below S is in the schema. */
static bool check_schema(struct loader *ld, const config_setting_t *s, const char *prefix)
{
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
		const char *name = config_setting_name(m);
		char path[128];
		snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", name ? name : "?");
		const struct cfg_setting *k = cfg_setting_find(path);
		if (!k)
			return fail(ld, m, "unknown setting '%s'", path);
		if (!check_kind(ld, m, k, path))
			return false;
		if (k->kind == CK_LATER) {
			struct logline l;
			ll_begin(&l, LOG_LVL_WARNING, "config");
			ll_str(&l, "setting", path);
			ll_str(&l, "reason", "not implemented in this version; ignored");
			ll_emit(&l);
		}
		if (k->kind == CK_GROUP && !check_schema(ld, m, path))
			return false;
	}
	return true;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d) {
		log_msg(LOG_LVL_ERROR, "fatal", "out of memory loading configuration");
		abort();
	}
	return d;
}

static void get_bool(const config_t *cf, const char *path, bool def, bool *out)
{
	int v;
	*out = config_lookup_bool(cf, path, &v) == CONFIG_TRUE ? v != 0 : def;
}

/* "auto": one per core, as many as the row's range allows */
static int per_core(const struct cfg_setting *r)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < r->min ? (int)r->min : n > r->max ? (int)r->max : (int)n;
}

/* Every scalar that has a field: the file's value (checked against its
 * row by check_schema) or the row's default. Cannot fail. */
static void load_scalars(const config_t *cf, struct gg_config *c)
{
	for (size_t i = 0; i < cfg_nsettings; i++) {
		const struct cfg_setting *r = &cfg_settings[i];
		if (r->off == CFG_NOWHERE)
			continue;
		void *f = cfg_field(c, r);
		const char *sv;
		int iv;
		switch (r->kind) {
		case CK_STR:
			if (config_lookup_string(cf, r->path, &sv) == CONFIG_TRUE)
				*(char **)f = xstrdup(sv);
			else if (r->defp)
				*(char **)f = xstrdup(r->defp);
			break;
		case CK_INT_OR_AUTO:
			if (config_lookup_string(cf, r->path, &sv) == CONFIG_TRUE) {
				*(int *)f = per_core(r);
				break;
			}
			/* fall through */
		case CK_INT:
			*(int *)f = config_lookup_int(cf, r->path, &iv) == CONFIG_TRUE ? iv : (int)r->def;
			break;
		case CK_BOOL:
			get_bool(cf, r->path, r->def != 0, f);
			break;
		default:
			break;
		}
	}
}

/* Lower-cases and checks a domain, drops a trailing dot. A leading dot
 * (".example": every subdomain) is kept. */
static bool domain_normalise(const char *in, char *out, size_t outlen)
{
	size_t n = strlen(in);
	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n == 0 || n > DOMAIN_MAX || n >= outlen)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		if (!isalnum(c) && c != '-' && c != '.' && c != '_')
			return false;
		out[i] = (char)tolower(c);
	}
	out[n] = 0;
	return strstr(out, "..") == NULL;
}

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

static bool wf_open(struct whole_file *f, const char *path, size_t max, char *why, size_t n)
{
	*f = (struct whole_file){ .path = path, .fd = -1, .max = max };
	/* stat before open: opening a FIFO or a device can block or have
	 * effects of its own; O_NONBLOCK covers a swap in between */
	if (stat(path, &f->st) < 0) {
		snprintf(why, n, "%s", strerror(errno));
		return false;
	}
	if (S_ISREG(f->st.st_mode)) {
		f->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		if (f->fd < 0) {
			snprintf(why, n, "%s", strerror(errno));
			return false;
		}
		if (fstat(f->fd, &f->st) == 0 && S_ISREG(f->st.st_mode))
			return true;
		close(f->fd);
		f->fd = -1;
	}
	snprintf(why, n, "not a regular file");
	return false;
}

static void wf_close(struct whole_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

static bool wf_unchanged(const struct whole_file *f)
{
	struct stat now, named;
	return fstat(f->fd, &now) == 0 && stat(f->path, &named) == 0 &&
	       now.st_ino == f->st.st_ino && now.st_dev == f->st.st_dev &&
	       now.st_size == f->st.st_size &&
	       now.st_mtim.tv_sec == f->st.st_mtim.tv_sec &&
	       now.st_mtim.tv_nsec == f->st.st_mtim.tv_nsec &&
	       (off_t)f->len == f->st.st_size &&
	       named.st_ino == f->st.st_ino && named.st_dev == f->st.st_dev;
}

/* Reads at most *BUDGET bytes (each read counts at least one), taking them
 * off *BUDGET: 1 when the whole file is in (and the descriptor closed), 0
 * when more remains, -1 with WHY filled. */
static int wf_read(struct whole_file *f, size_t *budget, char *why, size_t n)
{
	while (*budget > 0) {
		if (f->len == f->cap) {
			size_t want = f->cap ? f->cap * 2 : (size_t)f->st.st_size + 1;
			if (want > f->max + 1)
				want = f->max + 1;
			if (want <= f->len) {
				snprintf(why, n, "larger than %zu bytes", f->max);
				return -1;
			}
			char *nb = realloc(f->buf, want);
			if (!nb) {
				snprintf(why, n, "out of memory");
				return -1;
			}
			f->buf = nb;
			f->cap = want;
		}
		size_t chunk = f->cap - f->len;
		if (chunk > *budget)
			chunk = *budget;
		ssize_t r = read(f->fd, f->buf + f->len, chunk);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(why, n, "%s", strerror(errno));
			return -1;
		}
		*budget -= r > 0 ? (size_t)r : 1;
		f->len += (size_t)r;
		if (r > 0)
			continue;
		if (!wf_unchanged(f)) {
			snprintf(why, n, "changed while being read; write a new file and rename it into place");
			return -1;
		}
		if (f->len == f->cap) {
			char *nb = realloc(f->buf, f->len + 1);
			if (!nb) {
				snprintf(why, n, "out of memory");
				return -1;
			}
			f->buf = nb;
			f->cap = f->len + 1;
		}
		f->buf[f->len] = 0;
		wf_close(f);
		return 1;
	}
	return 0;
}

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

#define LIST_LINE_MAX 510

/* One entry a line, '#' starts a comment, blank lines ignored. Parses
 * whole lines while *BUDGET lasts (at least one line a call). */
static int list_parse(struct loader *ld, struct list_job *j, size_t *budget)
{
	const char *file = j->f.path;
	while (j->pos < j->f.len) {
		if (*budget == 0)
			return 0;
		const char *start = j->f.buf + j->pos;
		size_t rest = j->f.len - j->pos;
		const char *nl = memchr(start, '\n', rest);
		size_t n = nl ? (size_t)(nl - start) : rest;
		j->pos += n + (nl != NULL);
		*budget -= n + 1 < *budget ? n + 1 : *budget;
		j->lineno++;
		if (n > LIST_LINE_MAX) {
			fail(ld, j->s, "%s:%u: line too long", file, j->lineno);
			return -1;
		}
		if (memchr(start, 0, n)) {
			fail(ld, j->s, "%s:%u: NUL byte", file, j->lineno);
			return -1;
		}
		char line[LIST_LINE_MAX + 1];
		memcpy(line, start, n);
		line[n] = 0;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *p = line;
		while (isspace((unsigned char)*p))
			p++;
		char *end = p + strlen(p);
		while (end > p && isspace((unsigned char)end[-1]))
			*--end = 0;
		if (!*p)
			continue;
		char where[300];
		snprintf(where, sizeof where, "%s:%u", file, j->lineno);
		if (!j->fn(ld, j->s, where, p, j->dst))
			return -1;
	}
	return 1;
}

/* A step's worth of one list file: 1 when it is loaded, 0 when more
 * remains, -1 on failure. */
static int list_step(struct loader *ld, struct list_job *j, size_t *budget)
{
	const char *name = config_setting_name(j->s);
	char why[160];
	if (!j->in && j->f.fd < 0) {
		const char *file = config_setting_get_string(j->s);
		if (!wf_open(&j->f, file, LIST_FILE_MAX, why, sizeof why)) {
			fail(ld, j->s, "%s '%s': %s", name, file, why);
			return -1;
		}
	}
	if (!j->in) {
		int r = wf_read(&j->f, budget, why, sizeof why);
		if (r < 0) {
			fail(ld, j->s, "%s '%s': %s", name, j->f.path, why);
			return -1;
		}
		if (r == 0)
			return 0;
		j->in = true;
	}
	return list_parse(ld, j, budget);
}

static bool domain_entry(struct loader *ld, const config_setting_t *s, const char *where,
			 const char *entry, void *dst)
{
	char d[DOMAIN_MAX + 2];
	if (!domain_normalise(entry, d, sizeof d))
		return fail(ld, s, "%s: '%s' is not a domain name", where, entry);
	if (!domainlist_add(dst, d))
		return fail(ld, s, "out of memory");
	return true;
}

static bool network_entry(struct loader *ld, const config_setting_t *s, const char *where,
			  const char *entry, void *dst)
{
	struct cidr c;
	bool host_bits;
	if (!cidr_parse(entry, &c, &host_bits))
		return fail(ld, s, "%s: '%s' is not an address or network", where, entry);
	if (host_bits) {
		struct logline l;
		ll_begin(&l, LOG_LVL_WARNING, "config");
		ll_str(&l, "setting", where);
		ll_str(&l, "value", entry);
		ll_str(&l, "reason", "host bits set beyond the prefix; they are ignored");
		ll_emit(&l);
	}
	if (netlist_add(dst, &c) < 0)
		return fail(ld, s, "out of memory");
	return true;
}

static bool address_entry(struct loader *ld, const config_setting_t *s, const char *where,
			  const char *entry, void *dst)
{
	if (!addrlist_valid(entry))
		return fail(ld, s, "%s: '%s' is not user@domain, user@, @domain, .domain or <>",
			    where, entry);
	if (addrlist_add(dst, entry) < 0)
		return fail(ld, s, "out of memory");
	return true;
}

/* The steps load the file later; from a bundle, its bytes are the
 * bundle's record of the same name. */
static bool queue_list_file(struct loader *ld, const config_setting_t *s, const char *path,
			    entry_fn fn, void *dst)
{
	if (ld->njobs == LIST_JOBS_MAX)
		return fail(ld, s, "too many list files");
	struct list_job *j = &ld->jobs[ld->njobs++];
	*j = (struct list_job){ .s = s, .fn = fn, .dst = dst, .f = { .fd = -1 } };
	snprintf(j->setting, sizeof j->setting, "%s", path);
	j->f.path = config_setting_get_string(s);
	if (!ld->from_bundle)
		return true;
	for (size_t i = 2; i < ld->nrecs; i++) {
		struct brec *r = &ld->recs[i];
		if (r->nlen == strlen(j->setting) && memcmp(r->name, j->setting, r->nlen) == 0) {
			r->used = true;
			j->f.buf = (char *)r->data;
			j->f.len = r->len;
			j->in = true;
			return true;
		}
	}
	return fail(ld, s, "bundle: no record of %s", path);
}

/* A list setting PATH (or DEFAULTS when it is absent) and its companion
 * file setting PATH_file, each entry through FN; the file is queued for
 * the steps. */
static bool load_list(struct loader *ld, const config_t *cf, const char *path,
		      const char *const *defaults, entry_fn fn, void *dst)
{
	const config_setting_t *s = config_lookup(cf, path);
	if (s) {
		for (int i = 0; i < config_setting_length(s); i++) {
			const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
			if (!fn(ld, e, path, config_setting_get_string(e), dst))
				return false;
		}
	} else {
		for (size_t i = 0; defaults && defaults[i]; i++)
			if (!fn(ld, NULL, path, defaults[i], dst))
				return false;
	}
	char file_path[128];
	snprintf(file_path, sizeof file_path, "%s_file", path);
	const config_setting_t *f = config_lookup(cf, file_path);
	return !f || queue_list_file(ld, f, file_path, fn, dst);
}

/* Every list that has a field, in table order, with its file queued. */
static bool load_lists(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	for (size_t i = 0; i < cfg_nsettings; i++) {
		const struct cfg_setting *r = &cfg_settings[i];
		entry_fn fn = r->kind == CK_NETS ? network_entry :
			      r->kind == CK_DOMAINS ? domain_entry :
			      r->kind == CK_ADDRS ? address_entry : NULL;
		if (fn && r->off != CFG_NOWHERE &&
		    !load_list(ld, cf, r->path, r->defp, fn, cfg_field(c, r)))
			return false;
	}
	return true;
}

static bool load_listen(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	const config_setting_t *s = config_lookup(cf, "listen");
	if (!s) {
		c->listen[c->nlisten++] = xstrdup("127.0.0.1:2525");
		return true;
	}
	if (config_setting_length(s) == 0)
		return fail(ld, s, "listen: at least one address is needed");
	if (config_setting_length(s) > GG_MAX_LISTEN)
		return fail(ld, s, "listen: at most %d addresses", GG_MAX_LISTEN);
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		struct sockaddr_storage ss;
		socklen_t len;
		if (!hostport_parse(config_setting_get_string(e), &ss, &len))
			return fail(ld, e, "listen: '%s' is not ADDRESS:PORT ([v6]:port for IPv6)",
				    config_setting_get_string(e));
		c->listen[c->nlisten++] = xstrdup(config_setting_get_string(e));
	}
	return true;
}

static bool validate(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (!hostport_parse(c->backend.address, &ss, &len))
		return fail(ld, config_lookup(cf, "backend.address"),
			    "backend.address: '%s' is not ADDRESS:PORT", c->backend.address);
	if (strcmp(c->log.target, "stderr") != 0 && strcmp(c->log.target, "syslog") != 0)
		return fail(ld, config_lookup(cf, "log.target"),
			    "log.target must be \"stderr\" or \"syslog\"");
	static const char *const levels[] = { "debug", "info", "warning", "error" };
	bool level_ok = false;
	for (size_t i = 0; i < 4; i++)
		level_ok |= strcmp(c->log.level, levels[i]) == 0;
	if (!level_ok)
		return fail(ld, config_lookup(cf, "log.level"),
			    "log.level must be debug, info, warning or error");
	char d[DOMAIN_MAX + 2];
	if (!domain_normalise(c->myhostname, d, sizeof d) || d[0] == '.')
		return fail(ld, config_lookup(cf, "myhostname"),
			    "myhostname '%s' is not a host name", c->myhostname);
	for (const char *p = c->banner; *p; p++)
		if ((unsigned char)*p < ' ')
			return fail(ld, config_lookup(cf, "banner"),
				    "banner must not contain control characters");
	return true;
}

static bool load_store(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	const char *failure = "accept";
	config_lookup_string(cf, "store.failure", &failure);
	bool failure_ok = strcmp(failure, "accept") == 0 || strcmp(failure, "tempfail") == 0;
	c->store.tempfail = strcmp(failure, "tempfail") == 0;
	const config_setting_t *sl = config_lookup(cf, "store.redis.sentinels");
	for (int i = 0; sl && i < config_setting_length(sl); i++) {
		const config_setting_t *e = config_setting_get_elem(sl, (unsigned)i);
		const char *v = config_setting_get_string(e);
		struct sockaddr_storage ss;
		socklen_t len;
		if (!hostport_parse(v, &ss, &len))
			return fail(ld, e, "store.redis.sentinels: '%s' is not ADDRESS:PORT "
					   "([v6]:port for IPv6)", v);
		char **nv = realloc(c->store.redis.sentinels,
				    (c->store.redis.nsentinels + 1) * sizeof *nv);
		if (!nv)
			return fail(ld, e, "out of memory");
		c->store.redis.sentinels = nv;
		nv[c->store.redis.nsentinels++] = xstrdup(v);
	}
	if (c->store.redis.nsentinels) {
		const char *mn = c->store.redis.master_name;
		bool mn_ok = mn[0] && strlen(mn) <= 128;
		for (const char *p = mn; *p; p++)
			mn_ok &= (unsigned char)*p > ' ' && (unsigned char)*p < 127;
		const config_setting_t *mns = config_lookup(cf, "store.redis.master_name");
		if (!mn_ok)
			return fail(ld, mns ? mns : sl,
				    "store.redis.master_name must name the master (1..128 printable "
				    "characters, no blanks) when store.redis.sentinels is set");
	}
	struct sockaddr_storage ass;
	socklen_t alen;
	if (c->admin_listen[0] && !hostport_parse(c->admin_listen, &ass, &alen))
		return fail(ld, config_lookup(cf, "admin.listen"),
			    "admin.listen: '%s' is not ADDRESS:PORT (\"\" switches it off)",
			    c->admin_listen);
	if (store_type_find(c->store.type, &c->store.kind) < 0)
		return fail(ld, config_lookup(cf, "store.type"), "store.type must be %s",
			    store_type_names());
	if (!failure_ok)
		return fail(ld, config_lookup(cf, "store.failure"),
			    "store.failure must be \"accept\" or \"tempfail\"");
	if (strlen(c->store.redis.prefix) > 64)
		return fail(ld, config_lookup(cf, "store.redis.prefix"),
			    "store.redis.prefix is longer than 64 bytes");
	if (strlen(c->control_socket) >= 108)
		return fail(ld, config_lookup(cf, "control_socket"),
			    "control_socket path is longer than a socket path may be");
	return true;
}

static bool load_greylist(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	bool on;
	get_bool(cf, "greylist.normalize_sender", true, &on);
	struct sender_norm_opts *n = &c->greylist.norm;
	get_bool(cf, "greylist.normalize.lower", on, &n->lower);
	get_bool(cf, "greylist.normalize.batv", on, &n->batv);
	get_bool(cf, "greylist.normalize.srs", on, &n->srs);
	get_bool(cf, "greylist.normalize.extension", on, &n->ext);
	get_bool(cf, "greylist.normalize.digits", on, &n->digits);
	get_bool(cf, "greylist.normalize.hex", on, &n->hex);
	if (c->greylist.retry_window <= c->greylist.delay)
		return fail(ld, config_lookup(cf, "greylist.retry_window"),
			    "greylist.retry_window must be longer than greylist.delay");
	const char *m = c->greylist.message;
	const char *pct = strchr(m, '%');
	if (strlen(m) > 200 || (pct && (pct[1] != 's' || strchr(pct + 1, '%'))))
		return fail(ld, config_lookup(cf, "greylist.message"),
			    "greylist.message: at most 200 bytes and one %%s (the seconds left)");
	for (; *m; m++)
		if ((unsigned char)*m < ' ')
			return fail(ld, config_lookup(cf, "greylist.message"),
				    "greylist.message must not contain control characters");
	return true;
}

static bool load_dns(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	/* c-ares takes the servers as one list; each is checked here so that a
	 * typo is refused with its line instead of at the first lookup. */
	const config_setting_t *s = config_lookup(cf, "dns.servers");
	char csv[1024] = "";
	size_t used = 0;
	for (int i = 0; s && i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v = config_setting_get_string(e);
		struct sockaddr_storage ss;
		socklen_t len;
		struct ipaddr a;
		if (!hostport_parse(v, &ss, &len) && !ipaddr_parse(v, &a))
			return fail(ld, e, "dns.servers: '%s' is not ADDRESS or ADDRESS:PORT", v);
		int n = snprintf(csv + used, sizeof csv - used, "%s%s", used ? "," : "", v);
		if (n < 0 || (size_t)n >= sizeof csv - used)
			return fail(ld, e, "dns.servers: too many servers");
		used += (size_t)n;
	}
	c->dns.servers = xstrdup(csv);
	/* "This host" for permit_mx_backup: my_addresses plus every concrete
	 * listen address (a wildcard says nothing about our MX names). */
	for (size_t i = 0; i < c->nlisten; i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		struct cidr host = { .prefix = 0 };
		if (!hostport_parse(c->listen[i], &ss, &len) ||
		    !ipaddr_from_sockaddr((struct sockaddr *)&ss, &host.net))
			continue;
		static const uint8_t zero[16];
		if (memcmp(host.net.b, zero, host.net.family == AF_INET ? 4 : 16) == 0)
			continue;
		host.prefix = host.net.family == AF_INET ? 32 : 128;
		if (netlist_add(&c->my_addresses, &host) < 0)
			return fail(ld, NULL, "out of memory");
	}
	return true;
}

/* What needs the list files' entries, once the last one is in. */
static bool load_after_lists(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	if (c->permit_mx_backup && c->permit_mx_backup_networks.n == 0) {
		struct logline l;
		ll_begin(&l, LOG_LVL_WARNING, "config");
		ll_str(&l, "setting", "permit_mx_backup");
		ll_str(&l, "reason", "without permit_mx_backup_networks anybody can make this host "
				     "relay for a domain by pointing a low-preference MX record at it");
		ll_emit(&l);
	}
	/* The handover watches the relay domains unless told otherwise. */
	if (!config_lookup(cf, "handover.domains"))
		for (size_t i = 0; i < c->relay_domains.names.n; i++)
			if (!domainlist_add(&c->handover.domains, c->relay_domains.names.v[i]))
				return fail(ld, NULL, "out of memory");
	return true;
}

/* The certificate and key are read here, so that -t and a reload refuse a
 * file that names a missing or mismatched pair, with its line. */
static bool load_tls(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	const config_setting_t *cert = config_lookup(cf, "tls.cert");
	const config_setting_t *key = config_lookup(cf, "tls.key");
	if (!cert && !key)
		return true;
	if (!cert || !key)
		return fail(ld, cert ? cert : key, "tls needs both cert and key");
	/* OpenSSL opens them blocking: a FIFO would hang the load */
	const config_setting_t *both[] = { cert, key };
	for (size_t i = 0; i < 2; i++) {
		struct stat st;
		const char *f = config_setting_get_string(both[i]);
		if (stat(f, &st) == 0 && !S_ISREG(st.st_mode))
			return fail(ld, both[i], "%s '%s': not a regular file",
				    i == 0 ? "tls.cert" : "tls.key", f);
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return fail(ld, cert, "cannot create a TLS context");
	c->tls_ctx = ctx;
	/* RFC 8996: nothing older than TLS 1.2 */
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* An SMTP session is idle most of its life: its ~34 KiB of record
	 * buffers are freed while empty instead of kept for the next record. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	char why[256];
	if (SSL_CTX_use_certificate_chain_file(ctx, config_setting_get_string(cert)) != 1) {
		ERR_error_string_n(ERR_get_error(), why, sizeof why);
		return fail(ld, cert, "tls.cert '%s': %s", config_setting_get_string(cert), why);
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, config_setting_get_string(key), SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ERR_error_string_n(ERR_get_error(), why, sizeof why);
		return fail(ld, key, "tls.key '%s': %s", config_setting_get_string(key), why);
	}
	return true;
}

static bool load(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	if (!check_schema(ld, config_root_setting(cf), ""))
		return false;
	load_scalars(cf, c);
	if (!c->myhostname) {
		char host[256] = "localhost";
		gethostname(host, sizeof host - 1);
		host[sizeof host - 1] = 0;
		c->myhostname = xstrdup(host);
	}
	if (!c->banner) {
		char banner[300];
		snprintf(banner, sizeof banner, "%s ESMTP", c->myhostname);
		c->banner = xstrdup(banner);
	}
	return load_listen(ld, cf, c) && load_lists(ld, cf, c) &&
	       load_store(ld, cf, c) && load_greylist(ld, cf, c) && load_dns(ld, cf, c) &&
	       load_tls(ld, cf, c) &&
	       validate(ld, cf, c);
}

/*
 * libconfig 1.5 opens an @include itself and has no hook for it: a FIFO
 * there would block the load. So the text is scanned first for the
 * directives libconfig's scanner acts on (a line that starts with blanks,
 * "@include", blanks and a quoted path, outside comments and strings), and
 * each target is read the careful way and scanned in turn. The path is
 * taken as written, as libconfig does without an include directory.
 * Returns the number of directives found, -1 after fail().
 */
#define INCLUDE_DEPTH_MAX 10   /* libconfig's own bound */

static int scan_includes(struct loader *ld, const char *name, const char *t, size_t len,
			 int depth, size_t *total);

static int scan_include(struct loader *ld, const char *name, unsigned line, const char *inc,
			int depth, size_t *total)
{
	char why[160];
	if (ld->from_bundle) {
		fail(ld, NULL, "bundle: @include '%s' in a bundle", inc);
		return -1;
	}
	if (depth >= INCLUDE_DEPTH_MAX) {
		snprintf(why, sizeof why, "nested more than %d deep", INCLUDE_DEPTH_MAX);
	} else {
		struct whole_file f;
		size_t budget = SIZE_MAX;
		if (wf_open(&f, inc, CONFIG_FILE_MAX - *total, why, sizeof why)) {
			int r = wf_read(&f, &budget, why, sizeof why);
			wf_close(&f);
			*total += f.len;
			int n = r == 1 ? scan_includes(ld, inc, f.buf, f.len, depth + 1, total) : -1;
			free(f.buf);
			if (r == 1)
				return n < 0 ? -1 : 1;
		}
	}
	fail_at(ld, name, (int)line, "@include '%s': %s", inc, why);
	return -1;
}

static int scan_includes(struct loader *ld, const char *name, const char *t, size_t len,
			 int depth, size_t *total)
{
	unsigned line = 1;
	int found = 0;
	bool line_start = true;
	for (size_t i = 0; i < len;) {
		char ch = t[i];
		if (ch == '\n') {
			line++;
			line_start = true;
			i++;
		} else if (line_start && (ch == ' ' || ch == '\t')) {
			i++;
		} else if (line_start && len - i > 8 && memcmp(t + i, "@include", 8) == 0 &&
			   (t[i + 8] == ' ' || t[i + 8] == '\t')) {
			size_t k = i + 8;
			while (k < len && (t[k] == ' ' || t[k] == '\t'))
				k++;
			line_start = false;
			if (k == len || t[k] != '"') {
				i = k;
				continue;
			}
			char inc[4096];
			size_t n = 0;
			unsigned at = line;
			for (k++; k < len && t[k] != '"'; k++) {
				if (t[k] == '\\' && k + 1 < len && (t[k + 1] == '\\' || t[k + 1] == '"'))
					k++;
				if (t[k] == '\n')
					line++;
				if (n == sizeof inc - 1) {
					fail_at(ld, name, (int)at, "@include path too long");
					return -1;
				}
				inc[n++] = t[k];
			}
			inc[n] = 0;
			i = k + 1;
			if (scan_include(ld, name, at, inc, depth, total) < 0)
				return -1;
			found++;
		} else if (ch == '#' || (ch == '/' && i + 1 < len && t[i + 1] == '/')) {
			while (i < len && t[i] != '\n')
				i++;
		} else if (ch == '/' && i + 1 < len && t[i + 1] == '*') {
			for (i += 2; i < len && !(t[i] == '*' && i + 1 < len && t[i + 1] == '/'); i++)
				line += t[i] == '\n';
			i += 2;
			line_start = false;
		} else if (ch == '"') {
			for (i++; i < len && t[i] != '"'; i++) {
				if (t[i] == '\\' && i + 1 < len)
					i++;
				line += t[i] == '\n';
			}
			i++;
			line_start = false;
		} else {
			line_start = false;
			i++;
		}
	}
	return found;
}

/* Parses TEXT (the main file's, or a bundle's) with libconfig. */
static bool parse_text(struct loader *ld, const char *text, size_t len)
{
	size_t total = len;
	if (memchr(text, 0, len))
		return fail(ld, NULL, "%sNUL byte in the text", ld->from_bundle ? "bundle: " : "");
	if (scan_includes(ld, ld->file, text, len, 0, &total) < 0)
		return false;
	config_init(&ld->cf);
	ld->cf_live = true;
	if (config_read_string(&ld->cf, text) == CONFIG_TRUE)
		return true;
	if (ld->from_bundle)
		return fail(ld, NULL, "bundle: line %d: %s", config_error_line(&ld->cf),
			    config_error_text(&ld->cf));
	return fail_at(ld, config_error_file(&ld->cf) ? config_error_file(&ld->cf) : ld->file,
		       config_error_line(&ld->cf), "%s", config_error_text(&ld->cf));
}

static struct gg_config_load *loader_new(const char *file, char *err, size_t errlen)
{
	struct gg_config_load *g = calloc(1, sizeof *g);
	struct gg_config *c = calloc(1, sizeof *c);
	struct list_job *jobs = calloc(LIST_JOBS_MAX, sizeof *jobs);
	if (!g || !c || !jobs) {
		snprintf(err, errlen, "%s:0: out of memory", file);
		free(g);
		free(c);
		free(jobs);
		return NULL;
	}
	c->refs = 1;
	c->file = xstrdup(file);
	g->ld = (struct loader){ .file = c->file, .err = err, .errlen = errlen, .c = c,
				 .jobs = jobs };
	return g;
}

/* Settings and inline lists now; list files queued for the steps. */
static struct gg_config_load *begin(struct gg_config_load *g, const char *text, size_t len)
{
	struct loader *ld = &g->ld;
	if (!parse_text(ld, text, len) || !load(ld, &ld->cf, ld->c)) {
		gg_config_load_abort(g);
		return NULL;
	}
	return g;
}

struct gg_config_load *gg_config_load_begin(const char *file, char *err, size_t errlen)
{
	struct gg_config_load *g = loader_new(file, err, errlen);
	if (!g)
		return NULL;
	struct whole_file f;
	size_t budget = SIZE_MAX;
	char why[160];
	if (!wf_open(&f, file, CONFIG_FILE_MAX, why, sizeof why) ||
	    wf_read(&f, &budget, why, sizeof why) < 0) {
		snprintf(err, errlen, "%s:0: %s", file, why);
		wf_close(&f);
		free(f.buf);
		gg_config_load_abort(g);
		return NULL;
	}
	g = begin(g, f.buf, f.len);
	free(f.buf);
	return g;
}

/*
 * The bundle: "GGCONF1\n", then records, each a 4-byte big-endian name
 * length, the name, a 4-byte big-endian data length and the data: first
 * "file" (the configuration's path, for logs and errors), then "config"
 * (libconfig's own rendering of the parsed tree, includes expanded), then
 * one per list file, named by its setting ("relay_domains_file"), holding
 * the file's bytes.
 */
#define BUNDLE_MAGIC "GGCONF1\n"
#define BUNDLE_TEXT_MAX (4 * CONFIG_FILE_MAX)

/* A record's header at OUT: the name and the data length. */
static size_t put_header(char *out, const char *name, size_t len)
{
	size_t nlen = strlen(name);
	unsigned char *p = (unsigned char *)out;
	p[0] = (unsigned char)(nlen >> 24), p[1] = (unsigned char)(nlen >> 16);
	p[2] = (unsigned char)(nlen >> 8), p[3] = (unsigned char)nlen;
	memcpy(out + 4, name, nlen);
	p += 4 + nlen;
	p[0] = (unsigned char)(len >> 24), p[1] = (unsigned char)(len >> 16);
	p[2] = (unsigned char)(len >> 8), p[3] = (unsigned char)len;
	return 8 + nlen;
}

/* Lays out the bundle and writes all but the list files' bytes, which
 * bundle_fill copies step by step (16 MB at once would be a stall). */
static bool bundle_begin(struct loader *ld)
{
	char *text = NULL;
	size_t tlen = 0;
	FILE *t = open_memstream(&text, &tlen);
	if (t) {
		config_write(&ld->cf, t);
		if (fclose(t) != 0)
			tlen = SIZE_MAX;
	}
	size_t total = 8 + 8 + 4 + strlen(ld->file) + 8 + 6 + tlen;
	for (size_t i = 0; i < ld->njobs; i++)
		total += 8 + strlen(ld->jobs[i].setting) + ld->jobs[i].f.len;
	char *out = text && tlen <= BUNDLE_TEXT_MAX ? malloc(total) : NULL;
	if (!out) {
		free(text);
		return fail(ld, NULL, "cannot make the bundle of the configuration (%zu bytes of "
				      "text, at most %d)", tlen, BUNDLE_TEXT_MAX);
	}
	size_t at = 8;
	memcpy(out, BUNDLE_MAGIC, 8);
	at += put_header(out + at, "file", strlen(ld->file));
	memcpy(out + at, ld->file, strlen(ld->file));
	at += strlen(ld->file);
	at += put_header(out + at, "config", tlen);
	memcpy(out + at, text, tlen);
	at += tlen;
	free(text);
	for (size_t i = 0; i < ld->njobs; i++) {
		at += put_header(out + at, ld->jobs[i].setting, ld->jobs[i].f.len);
		ld->jobs[i].out_at = at;
		at += ld->jobs[i].f.len;
	}
	ld->c->bundle = out;
	ld->c->bundle_len = total;
	return true;
}

/* Copies at most *BUDGET bytes of list files into the bundle, freeing each
 * file's buffer once copied: true when all are in. */
static bool bundle_fill(struct loader *ld, size_t *budget)
{
	for (; ld->fill < ld->njobs; ld->fill++) {
		struct list_job *j = &ld->jobs[ld->fill];
		size_t n = j->f.len - j->copied;
		if (n > *budget)
			n = *budget;
		memcpy(ld->c->bundle + j->out_at + j->copied, j->f.buf + j->copied, n);
		j->copied += n;
		*budget -= n;
		if (j->copied < j->f.len)
			return false;
		free(j->f.buf);
		j->f.buf = NULL;
	}
	return true;
}

/* Splits BUF into records, every length checked against what is left. */
static bool bundle_split(struct loader *ld, const unsigned char *b, size_t len)
{
	if (len < 8 || memcmp(b, BUNDLE_MAGIC, 8) != 0)
		return false;
	size_t at = 8;
	while (at < len) {
		if (ld->nrecs == sizeof ld->recs / sizeof ld->recs[0] || len - at < 4)
			return false;
		struct brec *r = &ld->recs[ld->nrecs++];
		r->nlen = (size_t)b[at] << 24 | (size_t)b[at + 1] << 16 | (size_t)b[at + 2] << 8 | b[at + 3];
		at += 4;
		if (r->nlen == 0 || r->nlen > 64 || len - at < r->nlen + 4)
			return false;
		r->name = (const char *)b + at;
		at += r->nlen;
		r->len = (size_t)b[at] << 24 | (size_t)b[at + 1] << 16 | (size_t)b[at + 2] << 8 | b[at + 3];
		at += 4;
		if (len - at < r->len)
			return false;
		if (ld->nrecs > 2 && r->len > LIST_FILE_MAX)
			return false;
		r->data = (const char *)b + at;
		at += r->len;
		for (size_t i = 0; i + 1 < ld->nrecs; i++)
			if (ld->recs[i].nlen == r->nlen && memcmp(ld->recs[i].name, r->name, r->nlen) == 0)
				return false;
	}
	const struct brec *f = &ld->recs[0], *t = &ld->recs[1];
	return ld->nrecs >= 2 && f->nlen == 4 && memcmp(f->name, "file", 4) == 0 &&
	       f->len > 0 && f->len < 4096 && !memchr(f->data, 0, f->len) &&
	       t->nlen == 6 && memcmp(t->name, "config", 6) == 0 && t->len <= BUNDLE_TEXT_MAX;
}

struct gg_config_load *gg_config_load_begin_bundle(const void *buf, size_t len,
						   char *err, size_t errlen)
{
	struct gg_config_load *g = loader_new("bundle", err, errlen);
	if (!g)
		return NULL;
	struct loader *ld = &g->ld;
	ld->from_bundle = true;
	ld->bundle = malloc(len ? len : 1);
	if (!ld->bundle) {
		snprintf(err, errlen, "bundle:0: out of memory");
		gg_config_load_abort(g);
		return NULL;
	}
	memcpy(ld->bundle, buf, len);
	ld->bundle_len = len;
	if (!bundle_split(ld, (const unsigned char *)ld->bundle, len)) {
		snprintf(err, errlen, "bundle:0: malformed bundle (%zu bytes)", len);
		gg_config_load_abort(g);
		return NULL;
	}
	char *file = strndup(ld->recs[0].data, ld->recs[0].len);
	char *text = strndup(ld->recs[1].data, ld->recs[1].len);
	if (!file || !text) {
		free(file);
		free(text);
		snprintf(err, errlen, "bundle:0: out of memory");
		gg_config_load_abort(g);
		return NULL;
	}
	free(ld->c->file);
	ld->c->file = file;
	ld->file = file;
	g = begin(g, text, ld->recs[1].len);
	free(text);
	for (size_t i = 2; g && i < ld->nrecs; i++)
		if (!ld->recs[i].used) {
			fail(ld, NULL, "bundle: record '%.*s' names no list file",
			     (int)ld->recs[i].nlen, ld->recs[i].name);
			gg_config_load_abort(g);
			return NULL;
		}
	return g;
}

int gg_config_load_step(struct gg_config_load *g, size_t budget)
{
	struct loader *ld = &g->ld;
	if (ld->failed)
		return -1;
	if (ld->done)
		return 1;
	if (budget == 0)
		budget = 1;
	while (ld->next < ld->njobs) {
		int r = list_step(ld, &ld->jobs[ld->next], &budget);
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		ld->next++;
		if (budget == 0)
			return 0;
	}
	if (!ld->lists_in) {
		if (!load_after_lists(ld, &ld->cf, ld->c) ||
		    (!ld->from_bundle && !bundle_begin(ld)))
			return -1;
		ld->lists_in = true;
	}
	if (!ld->from_bundle && !bundle_fill(ld, &budget))
		return 0;
	if (ld->from_bundle) {
		ld->c->bundle = ld->bundle;
		ld->c->bundle_len = ld->bundle_len;
		ld->bundle = NULL;
	}
	ld->done = true;
	return 1;
}

struct gg_config *gg_config_load_end(struct gg_config_load *g)
{
	struct gg_config *c = NULL;
	if (g->ld.done && !g->ld.failed) {
		c = g->ld.c;
		g->ld.c = NULL;
	}
	gg_config_load_abort(g);
	return c;
}

void gg_config_load_abort(struct gg_config_load *g)
{
	struct loader *ld = &g->ld;
	for (size_t i = 0; i < ld->njobs; i++) {
		wf_close(&ld->jobs[i].f);
		if (!ld->from_bundle)
			free(ld->jobs[i].f.buf);
	}
	free(ld->jobs);
	if (ld->cf_live)
		config_destroy(&ld->cf);
	gg_config_unref(ld->c);
	free(ld->bundle);
	free(g);
}

struct gg_config *gg_config_load(const char *file, char *err, size_t errlen)
{
	struct gg_config_load *g = gg_config_load_begin(file, err, errlen);
	if (!g)
		return NULL;
	while (gg_config_load_step(g, SIZE_MAX) == 0)
		;
	return gg_config_load_end(g);
}

const void *gg_config_bundle(const struct gg_config *c, size_t *len)
{
	*len = c->bundle_len;
	return c->bundle;
}

static bool strv_equal(char *const *a, size_t na, char *const *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

#define RS(name, kind, field) { name, kind, offsetof(struct gg_config, field) }

const char *gg_config_restart_setting(const struct gg_config *old, const struct gg_config *new)
{
	/* What the processes, sockets and the store were set up with at start. */
	enum { R_STR, R_INT, R_BOOL, R_SENTINELS, R_LISTEN };
	static const struct {
		const char *name;
		int kind;
		size_t off;
	} keys[] = {
		RS("store.type", R_STR, store.type),
		RS("store.file", R_STR, store.file),
		RS("store.failure", R_BOOL, store.tempfail),
		RS("store.max_entries", R_INT, store.max_entries),
		RS("store.save_interval", R_INT, store.save_interval),
		RS("store.redis.host", R_STR, store.redis.host),
		RS("store.redis.port", R_INT, store.redis.port),
		RS("store.redis.password", R_STR, store.redis.password),
		RS("store.redis.db", R_INT, store.redis.db),
		RS("store.redis.timeout_ms", R_INT, store.redis.timeout_ms),
		RS("store.redis.connect_timeout_ms", R_INT, store.redis.connect_timeout_ms),
		RS("store.redis.prefix", R_STR, store.redis.prefix),
		RS("store.redis.sentinels", R_SENTINELS, store.redis.sentinels),
		RS("store.redis.master_name", R_STR, store.redis.master_name),
		RS("control_socket", R_STR, control_socket),
		RS("listen", R_LISTEN, listen),
		RS("workers", R_INT, workers),
		RS("admin.listen", R_STR, admin_listen),
		RS("user", R_STR, user),
		RS("group", R_STR, group),
		RS("run_as_root", R_BOOL, run_as_root),
		RS("pid_file", R_STR, pid_file),
	};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		const char *a = (const char *)old + keys[i].off, *b = (const char *)new + keys[i].off;
		bool same = true;
		switch (keys[i].kind) {
		case R_STR:
			same = strcmp(*(char *const *)a, *(char *const *)b) == 0;
			break;
		case R_INT:
			same = *(const int *)a == *(const int *)b;
			break;
		case R_BOOL:
			same = *(const bool *)a == *(const bool *)b;
			break;
		case R_SENTINELS:
			same = strv_equal(old->store.redis.sentinels, old->store.redis.nsentinels,
					  new->store.redis.sentinels, new->store.redis.nsentinels);
			break;
		case R_LISTEN:
			same = strv_equal(old->listen, old->nlisten, new->listen, new->nlisten);
			break;
		}
		if (!same)
			return keys[i].name;
	}
	return NULL;
}

struct gg_config *gg_config_ref(struct gg_config *c)
{
	c->refs++;
	return c;
}

void gg_config_unref(struct gg_config *c)
{
	if (!c || --c->refs > 0)
		return;
	cfg_settings_free(c);
	/* the fields without a row of their own */
	free(c->file);
	free(c->bundle);
	for (size_t i = 0; i < c->nlisten; i++)
		free(c->listen[i]);
	for (size_t i = 0; i < c->store.redis.nsentinels; i++)
		free(c->store.redis.sentinels[i]);
	free(c->store.redis.sentinels);
	free(c->dns.servers);
	SSL_CTX_free(c->tls_ctx);
	free(c);
}
