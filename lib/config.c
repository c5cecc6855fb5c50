/*
 * A load from begin to end: the file (or a bundle) parsed, every setting
 * read by the table's generic loader and the named functions, the list
 * files loaded a step at a time, then the bundle made; and the life of the
 * configuration that comes out (restart settings, references). The first
 * violation is reported with the line libconfig recorded for the setting.
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

#include <openssl/ssl.h>

#include "log.h"

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

bool cfg_fail_at(struct loader *ld, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail_at(ld, file, line, fmt, ap);
	va_end(ap);
	return false;
}

bool cfg_fail(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
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

char *cfg_xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d) {
		log_msg(LOG_LVL_ERROR, "fatal", "out of memory loading configuration");
		abort();
	}
	return d;
}

static bool load(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	if (!cfg_check_schema(ld, config_root_setting(cf), ""))
		return false;
	cfg_load_scalars(cf, c);
	if (!c->myhostname) {
		char host[256] = "localhost";
		gethostname(host, sizeof host - 1);
		host[sizeof host - 1] = 0;
		c->myhostname = cfg_xstrdup(host);
	}
	if (!c->banner) {
		char banner[300];
		snprintf(banner, sizeof banner, "%s ESMTP", c->myhostname);
		c->banner = cfg_xstrdup(banner);
	}
	return cfg_load_listen(ld, cf, c) && cfg_load_lists(ld, cf, c) &&
	       cfg_load_store(ld, cf, c) && cfg_load_greylist(ld, cf, c) && cfg_load_dns(ld, cf, c) &&
	       cfg_load_tls(ld, cf, c) && cfg_load_scoring(ld, cf, c) &&
	       cfg_validate(ld, cf, c);
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
	c->file = cfg_xstrdup(file);
	g->ld = (struct loader){ .file = c->file, .err = err, .errlen = errlen, .c = c,
				 .jobs = jobs };
	return g;
}

/* Settings and inline lists now; list files queued for the steps. */
static struct gg_config_load *begin(struct gg_config_load *g, const char *text, size_t len)
{
	struct loader *ld = &g->ld;
	if (!cfg_parse_text(ld, text, len) || !load(ld, &ld->cf, ld->c)) {
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
	if (!cfg_wf_open(&f, file, CONFIG_FILE_MAX, why, sizeof why) ||
	    cfg_wf_read(&f, &budget, why, sizeof why) < 0) {
		snprintf(err, errlen, "%s:0: %s", file, why);
		cfg_wf_close(&f);
		free(f.buf);
		gg_config_load_abort(g);
		return NULL;
	}
	g = begin(g, f.buf, f.len);
	free(f.buf);
	return g;
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
	if (!cfg_bundle_split(ld, (const unsigned char *)ld->bundle, len)) {
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
			cfg_fail(ld, NULL, "bundle: record '%.*s' names no list file",
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
		int r = cfg_list_step(ld, &ld->jobs[ld->next], &budget);
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		ld->next++;
		if (budget == 0)
			return 0;
	}
	if (!ld->lists_in) {
		if (!cfg_load_after_lists(ld, &ld->cf, ld->c) ||
		    (!ld->from_bundle && !cfg_bundle_begin(ld)))
			return -1;
		ld->lists_in = true;
	}
	if (!ld->from_bundle && !cfg_bundle_fill(ld, &budget))
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
		cfg_wf_close(&ld->jobs[i].f);
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

struct gl_params gg_config_gl_params(const struct gg_config *c)
{
	return (struct gl_params){
		.delay = c->greylist.delay,
		.retry_window = c->greylist.retry_window,
		.pass_lifetime = c->greylist.pass_lifetime,
		.awl_threshold = c->greylist.awl_threshold,
		.max_new_per_client = c->greylist.max_new_per_client,
		/* a backup_first flag without effect (gg_config_gl_params_flagged
		 * gives it one) */
		.flagged_delay = c->greylist.delay,
		.flagged_awl_threshold = c->greylist.awl_threshold,
	};
}

struct gl_params gg_config_gl_params_class(const struct gg_config *c, enum score_class k)
{
	struct gl_params p = gg_config_gl_params(c);
	if (k == CLASS_SUSPICIOUS) {
		p.delay = p.flagged_delay = c->scoring.suspicious_delay;
		p.awl_threshold = p.flagged_awl_threshold = 0;
	}
	return p;
}

struct gl_params gg_config_gl_params_flagged(const struct gg_config *c, enum score_class k,
					     enum score_class flagged)
{
	struct gl_params p = gg_config_gl_params_class(c, k);
	struct gl_params f = gg_config_gl_params_class(c, flagged);
	p.flagged_delay = f.delay;
	p.flagged_awl_threshold = f.awl_threshold;
	p.flagged_refuse = flagged == CLASS_HOSTILE;
	return p;
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
	for (size_t i = 0; i < c->greylist.ngeneric_name_words; i++)
		free(c->greylist.generic_name_words[i]);
	free(c->greylist.generic_name_words);
	for (size_t i = 0; i < c->store.redis.ncluster; i++)
		free(c->store.redis.cluster[i]);
	free(c->store.redis.cluster);
	free(c->dns.servers);
	free(c->scoring.sites);
	SSL_CTX_free(c->tls_ctx);
	free(c);
}

