/*
 * Time of a configuration load with a large whitelist.clients_file, whole
 * (gg_config_load: start-up, greygate -t) and in steps (a reload on a
 * serving loop): the longest single step is what a session can be held up
 * by. Build and run (`make bench-config` does both):
 *
 *     bench/config_load [LINES [BUDGET]]     (defaults 1000000, 65536)
 *
 * It writes its files under /tmp and removes them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"

static double clock_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

int main(int argc, char **argv)
{
	long lines = argc > 1 ? atol(argv[1]) : 1000000;
	size_t budget = argc > 2 ? (size_t)atol(argv[2]) : 65536;
	char dir[] = "/tmp/gg-bench-config-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char list[128], conf[128], err[1024];
	snprintf(list, sizeof list, "%s/clients", dir);
	snprintf(conf, sizeof conf, "%s/greygate.conf", dir);
	FILE *f = fopen(list, "w");
	if (!f)
		return 1;
	/* a mix of IPv4 hosts, IPv4 networks and IPv6 networks, ~16 bytes a line */
	for (long i = 0; i < lines; i++) {
		unsigned v = (unsigned)i * 2654435761u;
		if (i % 4 == 3)
			fprintf(f, "2001:db8:%x::/48\n", v & 0xffff);
		else if (i % 2)
			fprintf(f, "%u.%u.%u.0/24\n", 1 + (v >> 24) % 223, (v >> 16) & 255, (v >> 8) & 255);
		else
			fprintf(f, "%u.%u.%u.%u\n", 1 + (v >> 24) % 223, (v >> 16) & 255, (v >> 8) & 255,
				v & 255);
	}
	fclose(f);
	f = fopen(conf, "w");
	if (!f)
		return 1;
	fprintf(f, "whitelist = { clients_file = \"%s\"; };\n", list);
	fclose(f);
	struct stat st;
	stat(list, &st);

	double t0 = now(), cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
	struct gg_config *c = gg_config_load(conf, err, sizeof err);
	double whole = now() - t0, whole_cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
	if (!c) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	size_t blen;
	gg_config_bundle(c, &blen);
	gg_config_unref(c);

	t0 = now();
	struct gg_config_load *ld = gg_config_load_begin(conf, err, sizeof err);
	/* CPU time too: on a busy machine the wall clock of a step includes
	 * the time other processes had the core */
	double begin = now() - t0, longest = 0, longest_cpu = 0, total = begin;
	long steps = 0, longest_at = 0;
	int r = ld ? 0 : -1;
	while (r == 0) {
		double s = now(), cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID);
		r = gg_config_load_step(ld, budget);
		double d = now() - s;
		cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu;
		longest_cpu = cpu > longest_cpu ? cpu : longest_cpu;
		total += d;
		if (d > longest) {
			longest = d;
			longest_at = steps;
		}
		steps++;
	}
	if (r < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	double fin = now();
	c = gg_config_load_end(ld);
	double end = now() - fin;
	gg_config_unref(c);
	printf("list file: %ld lines, %lld bytes; bundle %zu bytes\n", lines,
	       (long long)st.st_size, blen);
	printf("gg_config_load: %.3f s (CPU %.3f s)\n", whole, whole_cpu);
	printf("steps of %zu bytes: %ld steps, begin %.3f ms, longest step %.3f ms "
	       "(step %ld; CPU %.3f ms at most), end %.3f ms, all %.3f s\n", budget, steps, begin * 1e3, longest * 1e3,
	       longest_at + 1, longest_cpu * 1e3,
	       end * 1e3, total);
	unlink(list);
	unlink(conf);
	rmdir(dir);
	return 0;
}
