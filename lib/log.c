#include "log.h"

#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_LVL_INFO;
static bool use_syslog;

static const char *const level_names[] = { "debug", "info", "warning", "error" };

void log_setup(const char *target, const char *level)
{
	for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++)
		if (level && strcmp(level, level_names[i]) == 0)
			min_level = (enum log_level)i;
	bool want_syslog = target && strcmp(target, "syslog") == 0;
	if (want_syslog && !use_syslog)
		openlog("greygate", LOG_PID | LOG_NDELAY, LOG_MAIL);
	else if (!want_syslog && use_syslog)
		closelog();
	use_syslog = want_syslog;
}

bool log_enabled(enum log_level lvl)
{
	return lvl >= min_level;
}

static void put(struct logline *l, const char *s, size_t n)
{
	/* Keep room for the "..." marker and the newline. */
	size_t room = sizeof l->buf - 5 - l->len;
	if (n > room) {
		n = room;
		l->truncated = true;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

void ll_begin(struct logline *l, enum log_level lvl, const char *event)
{
	l->lvl = lvl;
	l->len = 0;
	l->truncated = false;
	/* A line below the level is not built at all: the busiest lines
	 * (connect, decision, disconnect) are mostly such lines. */
	l->off = !log_enabled(lvl);
	if (l->off)
		return;
	if (!use_syslog) {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		char stamp[40];
		size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
		n += (size_t)snprintf(stamp + n, sizeof stamp - n, ".%03ldZ",
				      ts.tv_nsec / 1000000);
		put(l, stamp, n);
	}
	ll_str(l, "level", level_names[lvl]);
	ll_str(l, "event", event);
}

/* Bare when it is safe to read back unquoted; otherwise quoted with C-like
 * escapes, so that CR, LF, quotes and spaces from a client stay inside one
 * value of one line. */
static bool needs_quotes(const char *v, size_t n)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == '=')
			return true;
	}
	return false;
}

void ll_strn(struct logline *l, const char *key, const char *val, size_t n)
{
	if (l->off)
		return;
	if (l->len > 0)
		put(l, " ", 1);
	put(l, key, strlen(key));
	put(l, "=", 1);
	if (!val) {
		put(l, "-", 1);
		return;
	}
	if (!needs_quotes(val, n)) {
		put(l, val, n);
		return;
	}
	put(l, "\"", 1);
	for (size_t i = 0; i < n && !l->truncated; i++) {
		unsigned char c = (unsigned char)val[i];
		char esc[5];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(l, esc, 2);
		} else if (c < ' ' || c == 0x7f) {
			snprintf(esc, sizeof esc, "\\x%02x", c);
			put(l, esc, 4);
		} else {
			put(l, (const char *)&val[i], 1);
		}
	}
	put(l, "\"", 1);
}

void ll_str(struct logline *l, const char *key, const char *val)
{
	ll_strn(l, key, val, val ? strlen(val) : 0);
}

void ll_int(struct logline *l, const char *key, long long val)
{
	if (l->off)
		return;
	char num[24];
	int n = snprintf(num, sizeof num, "%lld", val);
	ll_strn(l, key, num, (size_t)n);
}

void ll_emit(struct logline *l)
{
	if (l->off)
		return;
	if (l->truncated) {
		memcpy(l->buf + l->len, "...", 3);
		l->len += 3;
	}
	if (use_syslog) {
		static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
		syslog(prio[l->lvl], "%.*s", (int)l->len, l->buf);
		return;
	}
	l->buf[l->len++] = '\n';
	/* A short write to stderr leaves nothing useful to do: logging must not
	 * take the daemon down. */
	ssize_t w = write(STDERR_FILENO, l->buf, l->len);
	(void)w;
}

void log_msg(enum log_level lvl, const char *event, const char *reason)
{
	struct logline l;
	ll_begin(&l, lvl, event);
	if (reason)
		ll_str(&l, "reason", reason);
	ll_emit(&l);
}
