#include "privs.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static int fail(const char *what, const char *detail)
{
	struct logline l;
	ll_begin(&l, LOG_LVL_ERROR, "privileges");
	ll_str(&l, "result", "failed");
	ll_str(&l, "step", what);
	ll_str(&l, "reason", detail);
	ll_str(&l, "action", "exiting");
	ll_emit(&l);
	return -1;
}

/* Only a pid file this process wrote is removed at exit: a second
 * instance refused at start-up must not take the first one's. */
static bool wrote_pid_file;

static int write_pid_file(const char *file)
{
	char tmp[4096], text[32];
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", file) >= sizeof tmp)
		return fail("pid_file", "path too long");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int n = snprintf(text, sizeof text, "%ld\n", (long)getpid());
	if (fd < 0 || write(fd, text, (size_t)n) != n || close(fd) < 0 || rename(tmp, file) < 0)
		return fail("pid_file", strerror(errno));
	wrote_pid_file = true;
	return 0;
}

int privs_settle(const struct gg_config *cfg)
{
	if (cfg->pid_file[0] && write_pid_file(cfg->pid_file) < 0)
		return -1;
	if (!cfg->user[0]) {
		if (geteuid() == 0 && !cfg->run_as_root)
			return fail("user", "running as root: set user (and group) to an unprivileged "
					    "account, or run_as_root = true");
		return 0;
	}
	/* start-up, before the loop runs: a blocking NSS lookup is fine here */
	struct passwd *pw = getpwnam(cfg->user);
	if (!pw)
		return fail("user", "no such user");
	gid_t gid = pw->pw_gid;
	if (cfg->group[0]) {
		struct group *gr = getgrnam(cfg->group);
		if (!gr)
			return fail("group", "no such group");
		gid = gr->gr_gid;
	}
	if (geteuid() == 0 && setgroups(1, &gid) < 0)
		return fail("setgroups", strerror(errno));
	if (setgid(gid) < 0 || setuid(pw->pw_uid) < 0)
		return fail("setuid", strerror(errno));
	/* no way back */
	if (pw->pw_uid != 0 && setuid(0) == 0)
		return fail("setuid", "root could be regained after dropping it");
	/* Reloads and worker start-ups read the file as this user: find out
	 * now, not at the first SIGHUP. */
	if (access(cfg->file, R_OK) < 0)
		return fail("config", "the configuration file is not readable by user; "
				      "workers and reloads need to read it");
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "privileges");
	ll_str(&l, "user", cfg->user);
	ll_int(&l, "uid", (long long)pw->pw_uid);
	ll_int(&l, "gid", (long long)gid);
	ll_emit(&l);
	return 0;
}

void privs_cleanup(const struct gg_config *cfg)
{
	/* after the drop the directory may not be ours any more; fine */
	if (wrote_pid_file && cfg->pid_file[0])
		unlink(cfg->pid_file);
}
