/*
 * greygate: command line, configuration check, and the choice between
 * one serving process and a supervisor with workers.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "regdomain.h"
#include "server.h"
#include "supervisor.h"
#include "worker.h"

static void usage(void)
{
	fprintf(stderr, "usage: greygate -c FILE      run in the foreground\n"
			"       greygate -t -c FILE   check FILE and exit\n"
			"       greygate -V           print the version\n");
	exit(2);
}

/* "-W slot,workers,store_fd,metrics_fd,bundle_fd,chan_fd,fd[,fd...]": how
 * the supervisor starts a worker. */
static bool parse_worker(const char *spec, struct worker_args *w)
{
	char *end;
	long v[6 + WORKER_FDS_MAX];
	size_t n = 0;
	const char *p = spec;
	while (n < sizeof v / sizeof v[0]) {
		v[n++] = strtol(p, &end, 10);
		if (end == p || (*end && *end != ','))
			return false;
		if (!*end)
			break;
		p = end + 1;
	}
	if (n < 7 || *end)
		return false;
	w->slot = (int)v[0];
	w->nworkers = (unsigned)v[1];
	w->store_fd = (int)v[2];
	w->metrics_fd = (int)v[3];
	w->bundle_fd = (int)v[4];
	w->chan_fd = (int)v[5];
	w->nfds = n - 6;
	for (size_t i = 0; i < w->nfds; i++)
		w->fds[i] = (int)v[6 + i];
	return w->slot >= 0 && w->nworkers >= 1;
}

int main(int argc, char **argv)
{
	const char *file = NULL;
	bool check_only = false;
	struct worker_args w = { .nworkers = 1, .store_fd = -1, .metrics_fd = -1,
				 .bundle_fd = -1, .chan_fd = -1 };
	bool is_worker = false;
	int opt;
	while ((opt = getopt(argc, argv, "c:tVW:h")) != -1) {
		switch (opt) {
		case 'c':
			file = optarg;
			break;
		case 't':
			check_only = true;
			break;
		case 'V':
			printf("greygate %s (libevent %s)\n", GREYGATE_VERSION, event_get_version());
			return 0;
		case 'W':
			if (!parse_worker(optarg, &w))
				usage();
			is_worker = true;
			break;
		default:
			usage();
		}
	}
	if (!file || optind != argc)
		usage();

	char err[1024];
	/* Under a supervisor the configuration is the one it holds in force,
	 * whatever the file says now (an edit it refused, say). */
	if (w.bundle_fd >= 0)
		srv.cfg = server_load_bundle(w.bundle_fd, err, sizeof err);
	else
		srv.cfg = gg_config_load(file, err, sizeof err);
	if (!srv.cfg) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (check_only) {
		gg_config_unref(srv.cfg);
		return 0;
	}
	log_setup(srv.cfg->log.target, srv.cfg->log.level);
	/* the Public Suffix List is read now, never on the loop */
	regdomain_init();
	if (!is_worker && srv.cfg->workers > 1)
		return supervisor_run(argv[0]);
	return worker_run(&w);
}
