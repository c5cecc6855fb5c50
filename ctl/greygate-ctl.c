/*
 * greygate-ctl: list, explain, pass, delete and whitelist greylisting state
 * (README.md, "Running it"). The commands are lib/ctl_cmd.c's; the store's
 * row in lib/store_type.c says how to reach it: a shared store (Redis)
 * directly, by the row's ctl_open, so that it works from any host that
 * reaches the store and while greygate is stopped; an embedded store's
 * state lives inside the daemon, so the command goes through the daemon's
 * control socket.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client_name.h"
#include "config.h"
#include "ctl_cmd.h"
#include "hostname.h"
#include "log.h"
#include "pool_key.h"
#include "regdomain.h"

static void usage(void)
{
	fprintf(stderr,
		"usage: greygate-ctl [-c FILE] [--json] COMMAND [ARGS]\n"
		"  list [net=NET] [sender=S] [rcpt=R] [state=passed|pending] [limit=N]\n"
		"  explain CLIENT SENDER RCPT [NAME]\n"
		"  pass CLIENT SENDER RCPT\n"
		"  del KEY | del CLIENT SENDER RCPT\n"
		"  whitelist NET [TTL]\n"
		"  stats\n"
		"--json: list, explain and stats print JSON (README.md)\n");
	exit(2);
}

/* ---- embedded store: through the daemon ---- */

static int via_daemon(const struct gg_config *cfg, int argc, char **argv)
{
	char line[4096];
	size_t n = 0;
	for (int i = 0; i < argc; i++) {
		if (strpbrk(argv[i], " \t\r\n")) {
			fprintf(stderr, "greygate-ctl: arguments with blanks cannot be sent to the daemon\n");
			return 2;
		}
		int w = snprintf(line + n, sizeof line - n, "%s%s", i ? " " : "", argv[i]);
		if (w < 0 || (size_t)w >= sizeof line - n - 1) {
			fprintf(stderr, "greygate-ctl: command too long\n");
			return 2;
		}
		n += (size_t)w;
	}
	line[n++] = '\n';
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", cfg->control_socket);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		fprintf(stderr, "greygate-ctl: cannot reach greygate at %s: %s (is it running?)\n",
			cfg->control_socket, strerror(errno));
		return 1;
	}
	if (write(fd, line, n) != (ssize_t)n) {
		fprintf(stderr, "greygate-ctl: cannot send to greygate: %s\n", strerror(errno));
		close(fd);
		return 1;
	}
	/* The daemon ends its answer with "status=N" and closes. */
	FILE *in = fdopen(fd, "r");
	int status = 1;
	char buf[4096];
	while (in && fgets(buf, sizeof buf, in)) {
		if (strncmp(buf, "status=", 7) == 0)
			status = atoi(buf + 7);
		else
			fputs(buf, stdout);
	}
	if (in)
		fclose(in);
	return status;
}

/* ---- a store greygate-ctl reaches by itself (its row's ctl_open) ---- */

static int direct(const struct store_type *row, const struct gg_config *cfg, int argc,
		  char **argv)
{
	void *ctx;
	const struct ctl_store *ops = row->ctl_open(cfg, &ctx, stderr);
	if (!ops)
		return 1;
	int status = ctl_execute(cfg, ops, ctx, argc, argv, stdout);
	row->ctl_close(ctx);
	return status;
}

int main(int argc, char **argv)
{
	const char *file = "/etc/greygate/greygate.conf";
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false;
	int opt;
	while ((opt = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
		if (opt == 'c')
			file = optarg;
		else if (opt == 'j')
			json = true;
		else
			usage();
	}
	if (optind >= argc)
		usage();
	/* The command line as ctl_execute (here or in the daemon) reads it:
	 * options, then the command. argv[optind - 1] is ours to reuse: it
	 * held an option. */
	if (json)
		argv[--optind] = "--json";
	/* Configuration warnings are the daemon's business, not ours. */
	log_setup("stderr", "error");
	char err[1024];
	struct gg_config *cfg = gg_config_load(file, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "greygate-ctl: %s\n", err);
		return 2;
	}
	regdomain_init();
	/* explain CLIENT SENDER RCPT: with ptr keys on, the client's name is
	 * looked up here, so that the key is the one a session would make
	 * (the daemon's control socket never waits for DNS) */
	int nargs = argc - optind, first;
	char **args = argv + optind;
	char name[HOSTNAME_MAX + 1];
	char *with_name[6];
	ctl_format_of(nargs, args, &first);
	if (nargs - first == 4 && nargs < (int)(sizeof with_name / sizeof *with_name) &&
	    strcmp(args[first], "explain") == 0 &&
	    pool_kinds_have(cfg->greylist.pool_keys, cfg->greylist.npool_keys, POOL_PTR) &&
	    client_name_confirmed(cfg, args[first + 1], name, sizeof name)) {
		memcpy(with_name, args, (size_t)nargs * sizeof *args);
		with_name[nargs++] = name;
		args = with_name;
	}
	const struct store_type *row = store_type(cfg->store.kind);
	int status = row->ctl_open ? direct(row, cfg, nargs, args) : via_daemon(cfg, nargs, args);
	gg_config_unref(cfg);
	return status;
}
