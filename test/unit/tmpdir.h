/* A scratch directory for unit tests that write files: setup_dir and
 * teardown_dir are a cmocka group's setup and teardown, path() names a file
 * in it. Each test binary includes this once, after <cmocka.h>. */
#ifndef GG_TEST_TMPDIR_H
#define GG_TEST_TMPDIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/gg-unit-XXXXXX";

static int setup_dir(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	(void)state;
	DIR *d = opendir(tmpdir);
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char file[512];
		snprintf(file, sizeof file, "%s/%s", tmpdir, e->d_name);
		unlink(file);
	}
	closedir(d);
	return rmdir(tmpdir);
}

/* The returned name lives until the next call. */
static const char *path(const char *name)
{
	static char buf[256];
	snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
	return buf;
}

static void write_file(const char *file, const void *data, size_t len)
{
	FILE *f = fopen(file, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

#endif
