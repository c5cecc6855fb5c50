/* The settings table and the generic loader that reads it: every row's
 * default lands in its field, every integer row takes its bounds and
 * refuses one past them with the file's line, every row refuses a value of
 * the wrong type, and conf/greygate.conf documents every row and nothing
 * else. A load with every list set is freed by the generic free (the asan
 * build would report what it missed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_schema.h"
#include "tmpdir.h"

static char err[1024];
static char text[4096];

static struct gg_config *load_text(const char *t)
{
	char file[256];
	snprintf(file, sizeof file, "%s", path("gg.conf"));
	write_file(file, t, strlen(t));
	err[0] = 0;
	return gg_config_load(file, err, sizeof err);
}

/* "a.b.c" = VALUE as libconfig text: "a = { b = { c = VALUE; }; };" */
static const char *setting_text(const char *p, const char *value)
{
	char head[512] = "", tail[128] = "";
	size_t hn = 0, tn = 0;
	const char *dot;
	while ((dot = strchr(p, '.'))) {
		hn += (size_t)snprintf(head + hn, sizeof head - hn, "%.*s = { ", (int)(dot - p), p);
		tn += (size_t)snprintf(tail + tn, sizeof tail - tn, " };");
		p = dot + 1;
	}
	/* a host name of our own: the machine's may not be one */
	const char *first = strcmp(p, "myhostname") == 0 ? "# line 2 next\n"
							  : "myhostname = \"mx.example.org\";\n";
	snprintf(text, sizeof text, "%s%s%s = %s;%s\n", first, head, p, value, tail);
	return text;
}

static void assert_error(const char *what)
{
	char prefix[300];
	snprintf(prefix, sizeof prefix, "%s:2: ", path("gg.conf"));
	if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, what))
		fail_msg("expected '%s...%s', got '%s'", prefix, what, err);
}

static bool has_field(const struct cfg_setting *r)
{
	return r->off != CFG_NOWHERE;
}

static void test_defaults(void **state)
{
	(void)state;
	struct gg_config *c = load_text("myhostname = \"mx.example.org\";\n");
	assert_non_null(c);
	for (size_t i = 0; i < cfg_nsettings; i++) {
		const struct cfg_setting *r = &cfg_settings[i];
		if (!has_field(r))
			continue;
		void *f = cfg_field(c, r);
		switch (r->kind) {
		case CK_INT:
		case CK_INT_OR_AUTO:
			if (*(int *)f != r->def)
				fail_msg("%s = %d, default %ld", r->path, *(int *)f, r->def);
			assert_true(r->def >= r->min && r->def <= r->max);
			break;
		case CK_BOOL:
			if (*(bool *)f != (r->def != 0))
				fail_msg("%s: not its default", r->path);
			break;
		case CK_STR:
			if (r->defp && strcmp(*(char **)f, r->defp) != 0)
				fail_msg("%s = '%s', default '%s'", r->path, *(char **)f,
					 (const char *)r->defp);
			break;
		default:
			break;
		}
	}
	gg_config_unref(c);
}

static void test_int_bounds(void **state)
{
	(void)state;
	for (size_t i = 0; i < cfg_nsettings; i++) {
		const struct cfg_setting *r = &cfg_settings[i];
		if (r->kind != CK_INT && r->kind != CK_INT_OR_AUTO)
			continue;
		/* the one cross-setting check a bound can trip */
		bool window = strcmp(r->path, "greylist.retry_window") == 0;
		const long ok[] = { r->min, r->max }, bad[] = { r->min - 1, r->max + 1 };
		for (size_t k = 0; k < 2; k++) {
			char v[64];
			snprintf(v, sizeof v, "%ld", ok[k]);
			setting_text(r->path, v);
			if (window)
				snprintf(text, sizeof text, "myhostname = \"m.example\";\n"
					 "greylist = { delay = 0; retry_window = %ld; };\n", ok[k]);
			struct gg_config *c = load_text(text);
			if (!c)
				fail_msg("%s = %ld refused: %s", r->path, ok[k], err);
			if (has_field(r))
				assert_int_equal(*(int *)cfg_field(c, r), ok[k]);
			gg_config_unref(c);

			snprintf(v, sizeof v, "%ld", bad[k]);
			assert_null(load_text(setting_text(r->path, v)));
			char what[200];
			snprintf(what, sizeof what, "%s = %ld is out of range %ld..%ld", r->path,
				 bad[k], r->min, r->max);
			assert_error(what);
		}
	}
}

static void test_wrong_type(void **state)
{
	(void)state;
	for (size_t i = 0; i < cfg_nsettings; i++) {
		const struct cfg_setting *r = &cfg_settings[i];
		const char *value = "\"x\"", *what = NULL;
		switch (r->kind) {
		case CK_GROUP: value = "1"; what = "must be a group { ... }"; break;
		case CK_STR: value = "1"; what = "must be a string"; break;
		case CK_INT: what = "must be an integer"; break;
		case CK_INT_OR_AUTO: what = "must be a number or \"auto\""; break;
		case CK_BOOL: value = "1"; what = "must be true or false"; break;
		case CK_LATER: continue;
		default: value = "1"; what = "must be a list of strings [ \"...\" ]"; break;
		}
		assert_null(load_text(setting_text(r->path, value)));
		char full[200];
		snprintf(full, sizeof full, "%s %s", r->path, what);
		assert_error(full);
	}
}

static void test_bools_flip(void **state)
{
	(void)state;
	for (size_t i = 0; i < cfg_nsettings; i++) {
		const struct cfg_setting *r = &cfg_settings[i];
		if (r->kind != CK_BOOL || !has_field(r))
			continue;
		struct gg_config *c = load_text(setting_text(r->path, r->def ? "false" : "true"));
		if (!c)
			fail_msg("%s refused: %s", r->path, err);
		assert_true(*(bool *)cfg_field(c, r) == !r->def);
		gg_config_unref(c);
	}
}

static void test_workers_auto(void **state)
{
	(void)state;
	struct gg_config *c = load_text(setting_text("workers", "\"auto\""));
	assert_non_null(c);
	assert_true(c->workers >= 1 && c->workers <= 64);
	gg_config_unref(c);
}

/* Every list row with an entry and a file: the generic free must free them
 * all (the asan build's leak check). */
static void test_lists_freed(void **state)
{
	(void)state;
	char list[256];
	snprintf(list, sizeof list, "%s", path("list"));
	for (size_t i = 0; i < cfg_nsettings; i++) {
		const struct cfg_setting *r = &cfg_settings[i];
		const char *entry = r->kind == CK_NETS ? "192.0.2.0/24" :
				    r->kind == CK_DOMAINS ? "example.org" :
				    r->kind == CK_ADDRS ? "@example.org" : NULL;
		if (!entry || !has_field(r))
			continue;
		write_file(list, entry, strlen(entry));
		char v[64], file_path[128];
		snprintf(v, sizeof v, "[ \"%s\" ]", entry);
		setting_text(r->path, v);
		snprintf(file_path, sizeof file_path, "%s_file", r->path);
		if (cfg_setting_find(file_path)) {
			size_t n = strlen(text);
			const char *leaf = strrchr(file_path, '.');
			/* the companion goes right after its list, in the same group */
			char *semi = strstr(text + strlen("myhostname = \"mx.example.org\";\n"), ";");
			char rest[1024];
			snprintf(rest, sizeof rest, "%s", semi + 1);
			snprintf(semi + 1, sizeof text - (size_t)(semi + 1 - text), " %s = \"%s\";%s",
				 leaf ? leaf + 1 : file_path, list, rest);
			assert_true(strlen(text) > n);
		}
		struct gg_config *c = load_text(text);
		if (!c)
			fail_msg("%s refused: %s (%s)", r->path, err, text);
		gg_config_unref(c);
	}
}

/* The words of conf/greygate.conf that are "NAME =", in comments too. */
static bool documented(const char *doc, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = doc; (p = strstr(p, word)); p += n)
		if ((p == doc || !(isalnum((unsigned char)p[-1]) || p[-1] == '_')) &&
		    !(isalnum((unsigned char)p[n]) || p[n] == '_'))
			return true;
	return false;
}

static bool in_table(const char *word, size_t n)
{
	for (size_t i = 0; i < cfg_nsettings; i++) {
		const char *p = cfg_settings[i].path;
		for (const char *q = p;; q++)
			if (*q == '.' || !*q) {
				if ((size_t)(q - p) == n && memcmp(p, word, n) == 0)
					return true;
				if (!*q)
					break;
				p = q + 1;
			}
	}
	return false;
}

static void test_documented(void **state)
{
	(void)state;
	FILE *f = fopen("conf/greygate.conf", "r");
	assert_non_null(f);
	static char doc[65536];
	size_t len = fread(doc, 1, sizeof doc - 1, f);
	fclose(f);
	doc[len] = 0;
	for (size_t i = 0; i < cfg_nsettings; i++) {
		char part[128];
		snprintf(part, sizeof part, "%s", cfg_settings[i].path);
		for (char *save = NULL, *w = strtok_r(part, ".", &save); w;
		     w = strtok_r(NULL, ".", &save))
			if (!documented(doc, w))
				fail_msg("%s: '%s' is not in conf/greygate.conf", cfg_settings[i].path, w);
	}
	/* a Postfix main.cf setting the comments quote */
	static const char *const foreign[] = { "smtpd_authorized_xclient_hosts" };
	for (const char *p = doc; *p; p++) {
		/* a string's value is no setting ("zen.example=127.0.0.2") */
		if (*p == '"') {
			const char *end = strchr(p + 1, '"');
			if (end)
				p = end;
			continue;
		}
		if (!(islower((unsigned char)*p)) || (p > doc && (isalnum((unsigned char)p[-1]) ||
								 p[-1] == '_')))
			continue;
		size_t n = 0;
		while (islower((unsigned char)p[n]) || isdigit((unsigned char)p[n]) || p[n] == '_')
			n++;
		const char *q = p + n;
		while (*q == ' ')
			q++;
		if (*q == '=' && q[1] != '=' && !in_table(p, n) &&
		    !(n == strlen(foreign[0]) && memcmp(p, foreign[0], n) == 0))
			fail_msg("conf/greygate.conf sets '%.*s', which is no setting", (int)n, p);
		p += n - 1;
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_int_bounds),
		cmocka_unit_test(test_wrong_type),
		cmocka_unit_test(test_bools_flip),
		cmocka_unit_test(test_workers_auto),
		cmocka_unit_test(test_lists_freed),
		cmocka_unit_test(test_documented),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
