/*
 * greygate-ctl: list, explain, pass, delete and whitelist greylisting state
 * (README.md, "Running it"). The commands are lib/ctl_cmd.c's; the store's
 * row in lib/store_type.c says how to reach it: a shared store (Redis)
 * directly, by the row's ctl_open, so that it works from any host that
 * reaches the store and while greygate is stopped; an embedded store's
 * state lives inside the daemon, so the command goes through the daemon's
 * control socket.
 *
 * explain's class and score need DNS a session does (the client's
 * listings and name, the sender's SPF), which the daemon does without
 * blocking: through the daemon it is part of the answer; with a shared
 * store greygate-ctl asks the daemon for these facts ("facts" on the
 * control socket) and, when it cannot be reached, shows the store's part
 * and says the class is unknown.
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
#include "log.h"
#include "pool_key.h"
#include "regdomain.h"

static void usage(void)
{
	fprintf(stderr,
		"usage: greygate-ctl [-c FILE] [--json] [--helo NAME] COMMAND [ARGS]\n"
		"  list [net=NET] [sender=S] [rcpt=R] [state=passed|pending] [limit=N]\n"
		"  explain CLIENT SENDER RCPT [NAME]   (--helo: the session's HELO)\n"
		"  pass CLIENT SENDER RCPT\n"
		"  del KEY | del CLIENT SENDER RCPT\n"
		"  whitelist NET [TTL]\n"
		"  stats\n"
		"--json: list, explain and stats print JSON (README.md)\n");
	exit(2);
}

/* ---- through the daemon ---- */

/* Sends ARGV as one command line (with "helo=HELO" last unless HELO is
 * NULL) and passes each line of the answer to LINE_FN; the status the
 * daemon ends with, 2 for a command that cannot be sent, or -1 (and WHY)
 * when the daemon cannot be reached. */
static int daemon_talk(const struct gg_config *cfg, int argc, char **argv, const char *helo,
		       void (*line_fn)(const char *line, void *arg), void *arg, char *why,
		       size_t whylen)
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
	if (helo) {
		int w = snprintf(line + n, sizeof line - n, " helo=%s", helo);
		if (w < 0 || (size_t)w >= sizeof line - n - 1 || strpbrk(helo, " \t\r\n")) {
			fprintf(stderr, "greygate-ctl: --helo: too long, or with blanks\n");
			return 2;
		}
		n += (size_t)w;
	}
	line[n++] = '\n';
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", cfg->control_socket);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		snprintf(why, whylen, "cannot reach greygate at %s: %s (is it running?)",
			 cfg->control_socket, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (write(fd, line, n) != (ssize_t)n) {
		snprintf(why, whylen, "cannot send to greygate: %s", strerror(errno));
		close(fd);
		return -1;
	}
	/* The daemon ends its answer with "status=N" and closes. */
	FILE *in = fdopen(fd, "r");
	int status = 1;
	char buf[4096];
	while (in && fgets(buf, sizeof buf, in)) {
		if (strncmp(buf, "status=", 7) == 0)
			status = atoi(buf + 7);
		else
			line_fn(buf, arg);
	}
	if (in)
		fclose(in);
	else
		close(fd);
	return status;
}

static void print_line(const char *line, void *arg)
{
	(void)arg;
	fputs(line, stdout);
}

/* An embedded store: the whole command runs in the daemon. */
static int via_daemon(const struct gg_config *cfg, int argc, char **argv, const char *helo)
{
	char why[300];
	int status = daemon_talk(cfg, argc, argv, helo, print_line, NULL, why, sizeof why);
	if (status < 0)
		fprintf(stderr, "greygate-ctl: %s\n", why);
	return status < 0 ? 1 : status;
}

struct facts_answer {
	struct ctl_facts *f;
	bool read;
	char error[200];                 /* the daemon's error line, if any */
};

static void facts_line(const char *line, void *arg)
{
	struct facts_answer *a = arg;
	if (ctl_facts_read(line, a->f))
		a->read = true;
	else if (!a->error[0])
		snprintf(a->error, sizeof a->error, "%.*s", (int)strcspn(line, "\n"), line);
}

/* explain's facts for a store greygate-ctl reaches itself: from the
 * daemon; when it cannot answer, unknown (F->why says why), and the
 * client's name looked up here for its ptr: key. */
static void facts_from_daemon(const struct gg_config *cfg, char **args, const char *helo,
			      struct ctl_facts *f)
{
	/* facts CLIENT SENDER [NAME] */
	char *line[4] = { "facts", args[1], args[2], args[4] };
	struct facts_answer a = { .f = f };
	char why[300] = "";
	int status = daemon_talk(cfg, args[4] ? 4 : 3, line, helo, facts_line, &a, why, sizeof why);
	if (status == 0 && a.read)
		return;
	*f = (struct ctl_facts){ .scoring = CTL_SCORING_UNKNOWN };
	snprintf(f->why, sizeof f->why, "%s",
		 a.error[0] ? a.error : why[0] ? why : "greygate gave no answer");
	if (!args[4] && pool_kinds_have(cfg->greylist.pool_keys, cfg->greylist.npool_keys, POOL_PTR))
		client_name_confirmed(cfg, args[1], f->name, sizeof f->name);
}

/* ---- a store greygate-ctl reaches by itself (its row's ctl_open) ---- */

static int direct(const struct store_type *row, const struct gg_config *cfg, int argc,
		  char **argv, const struct ctl_facts *facts)
{
	void *ctx;
	const struct ctl_store *ops = row->ctl_open(cfg, &ctx, stderr);
	if (!ops)
		return 1;
	int status = ctl_execute(cfg, ops, ctx, argc, argv, stdout, facts);
	row->ctl_close(ctx);
	return status;
}

int main(int argc, char **argv)
{
	const char *file = "/etc/greygate/greygate.conf";
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "helo", required_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false;
	const char *helo = NULL;
	int opt;
	while ((opt = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
		if (opt == 'c')
			file = optarg;
		else if (opt == 'j')
			json = true;
		else if (opt == 'H')
			helo = optarg;
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
	int nargs = argc - optind, first;
	char **args = argv + optind;
	ctl_format_of(nargs, args, &first);
	bool explain = nargs - first >= 4 && strcmp(args[first], "explain") == 0;
	if (helo && !explain)
		usage();
	const struct store_type *row = store_type(cfg->store.kind);
	int status;
	if (!row->ctl_open) {
		status = via_daemon(cfg, nargs, args, helo);
	} else if (explain && nargs - first <= 5) {
		/* explain CLIENT SENDER RCPT [NAME]: the facts first */
		char *e[5] = { NULL };
		memcpy(e, args + first, (size_t)(nargs - first) * sizeof *args);
		struct ctl_facts f;
		facts_from_daemon(cfg, e, helo, &f);
		status = direct(row, cfg, nargs, args, &f);
	} else {
		status = direct(row, cfg, nargs, args, NULL);
	}
	gg_config_unref(cfg);
	return status;
}
