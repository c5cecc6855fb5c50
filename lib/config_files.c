/*
 * Files read whole and the bundle: the main file, its @includes and the
 * list files are read without blocking and without trusting them to stay
 * put; the list files are parsed a budget at a time; the bundle carries
 * every byte a configuration was made from to the workers.
 */
#include "config_priv.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

bool cfg_wf_open(struct whole_file *f, const char *path, size_t max, char *why, size_t n)
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

void cfg_wf_close(struct whole_file *f)
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
int cfg_wf_read(struct whole_file *f, size_t *budget, char *why, size_t n)
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
		cfg_wf_close(f);
		return 1;
	}
	return 0;
}

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
			cfg_fail(ld, j->s, "%s:%u: line too long", file, j->lineno);
			return -1;
		}
		if (memchr(start, 0, n)) {
			cfg_fail(ld, j->s, "%s:%u: NUL byte", file, j->lineno);
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
int cfg_list_step(struct loader *ld, struct list_job *j, size_t *budget)
{
	const char *name = config_setting_name(j->s);
	char why[160];
	if (!j->in && j->f.fd < 0) {
		const char *file = config_setting_get_string(j->s);
		if (!cfg_wf_open(&j->f, file, LIST_FILE_MAX, why, sizeof why)) {
			cfg_fail(ld, j->s, "%s '%s': %s", name, file, why);
			return -1;
		}
	}
	if (!j->in) {
		int r = cfg_wf_read(&j->f, budget, why, sizeof why);
		if (r < 0) {
			cfg_fail(ld, j->s, "%s '%s': %s", name, j->f.path, why);
			return -1;
		}
		if (r == 0)
			return 0;
		j->in = true;
	}
	return list_parse(ld, j, budget);
}

/* The steps load the file later; from a bundle, its bytes are the
 * bundle's record of the same name. */
bool cfg_queue_list_file(struct loader *ld, const config_setting_t *s, const char *path,
			    entry_fn fn, void *dst)
{
	if (ld->njobs == LIST_JOBS_MAX)
		return cfg_fail(ld, s, "too many list files");
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
	return cfg_fail(ld, s, "bundle: no record of %s", path);
}

/*
 * libconfig 1.5 opens an @include itself and has no hook for it: a FIFO
 * there would block the load. So the text is scanned first for the
 * directives libconfig's scanner acts on (a line that starts with blanks,
 * "@include", blanks and a quoted path, outside comments and strings), and
 * each target is read the careful way and scanned in turn. The path is
 * taken as written, as libconfig does without an include directory.
 * Returns the number of directives found, -1 after cfg_fail().
 */
#define INCLUDE_DEPTH_MAX 10   /* libconfig's own bound */

static int scan_includes(struct loader *ld, const char *name, const char *t, size_t len,
			 int depth, size_t *total);

static int scan_include(struct loader *ld, const char *name, unsigned line, const char *inc,
			int depth, size_t *total)
{
	char why[160];
	if (ld->from_bundle) {
		cfg_fail(ld, NULL, "bundle: @include '%s' in a bundle", inc);
		return -1;
	}
	if (depth >= INCLUDE_DEPTH_MAX) {
		snprintf(why, sizeof why, "nested more than %d deep", INCLUDE_DEPTH_MAX);
	} else {
		struct whole_file f;
		size_t budget = SIZE_MAX;
		if (cfg_wf_open(&f, inc, CONFIG_FILE_MAX - *total, why, sizeof why)) {
			int r = cfg_wf_read(&f, &budget, why, sizeof why);
			cfg_wf_close(&f);
			*total += f.len;
			int n = r == 1 ? scan_includes(ld, inc, f.buf, f.len, depth + 1, total) : -1;
			free(f.buf);
			if (r == 1)
				return n < 0 ? -1 : 1;
		}
	}
	cfg_fail_at(ld, name, (int)line, "@include '%s': %s", inc, why);
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
					cfg_fail_at(ld, name, (int)at, "@include path too long");
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
bool cfg_parse_text(struct loader *ld, const char *text, size_t len)
{
	size_t total = len;
	if (memchr(text, 0, len))
		return cfg_fail(ld, NULL, "%sNUL byte in the text", ld->from_bundle ? "bundle: " : "");
	if (scan_includes(ld, ld->file, text, len, 0, &total) < 0)
		return false;
	config_init(&ld->cf);
	ld->cf_live = true;
	if (config_read_string(&ld->cf, text) == CONFIG_TRUE)
		return true;
	if (ld->from_bundle)
		return cfg_fail(ld, NULL, "bundle: line %d: %s", config_error_line(&ld->cf),
			    config_error_text(&ld->cf));
	return cfg_fail_at(ld, config_error_file(&ld->cf) ? config_error_file(&ld->cf) : ld->file,
		       config_error_line(&ld->cf), "%s", config_error_text(&ld->cf));
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
bool cfg_bundle_begin(struct loader *ld)
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
		return cfg_fail(ld, NULL, "cannot make the bundle of the configuration (%zu bytes of "
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
bool cfg_bundle_fill(struct loader *ld, size_t *budget)
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
bool cfg_bundle_split(struct loader *ld, const unsigned char *b, size_t len)
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
