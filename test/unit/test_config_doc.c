/* man/greygate.conf.5 against the settings table: every setting has its
 * ".It Cm PATH" entry, and the line under it says the row's type, range,
 * default and reload behaviour (lib/config_doc.h); every entry of the
 * page names a setting. A row added, dropped or changed without the page
 * fails here with the line the page should have. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_doc.h"

#define PAGE "man/greygate.conf.5"
#define PAGE_LINES 4096
#define LINE_MAX_LEN 512

static char lines[PAGE_LINES][LINE_MAX_LEN];
static size_t nlines;

static int read_page(void **state)
{
	(void)state;
	FILE *f = fopen(PAGE, "r");
	if (!f)
		return -1;
	nlines = 0;
	while (nlines < PAGE_LINES && fgets(lines[nlines], LINE_MAX_LEN, f)) {
		lines[nlines][strcspn(lines[nlines], "\n")] = 0;
		nlines++;
	}
	fclose(f);
	return 0;
}

/* The index of the line ".It Cm PATH", or nlines; fails on a second one. */
static size_t entry_of(const char *path)
{
	char want[LINE_MAX_LEN];
	snprintf(want, sizeof want, ".It Cm %s", path);
	size_t at = nlines;
	for (size_t i = 0; i < nlines; i++)
		if (strcmp(lines[i], want) == 0) {
			if (at != nlines)
				fail_msg(PAGE ":%zu: %s has a second entry (first at line %zu)",
					 i + 1, path, at + 1);
			at = i;
		}
	return at;
}

static void test_every_setting_documented(void **state)
{
	(void)state;
	char want[LINE_MAX_LEN];
	for (size_t i = 0; i < cfg_nsettings; i++) {
		const struct cfg_setting *r = &cfg_settings[i];
		if (!cfg_doc_line(r, want, sizeof want))
			continue;
		size_t at = entry_of(r->path);
		if (at == nlines)
			fail_msg(PAGE " has no entry for %s; add:\n.It Cm %s\n%s", r->path,
				 r->path, want);
		if (at + 1 >= nlines || strcmp(lines[at + 1], want) != 0)
			fail_msg(PAGE ":%zu: %s: expected\n%s\ngot\n%s", at + 2, r->path, want,
				 at + 1 < nlines ? lines[at + 1] : "(end of file)");
	}
}

static void test_every_entry_a_setting(void **state)
{
	(void)state;
	size_t entries = 0;
	for (size_t i = 0; i < nlines; i++) {
		if (strncmp(lines[i], ".It Cm ", 7) != 0)
			continue;
		const struct cfg_setting *r = cfg_setting_find(lines[i] + 7);
		if (!r || r->kind == CK_GROUP)
			fail_msg(PAGE ":%zu: '%s' is no setting", i + 1, lines[i] + 7);
		entries++;
	}
	assert_true(entries > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_setting_documented),
		cmocka_unit_test(test_every_entry_a_setting),
	};
	return cmocka_run_group_tests(tests, read_page, NULL);
}
