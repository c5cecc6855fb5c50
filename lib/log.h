/*
 * log: one line per event, key=value, greppable.
 *
 * Promises: a line never exceeds LOG_LINE_MAX bytes (long values are cut
 * and marked with "..."), values that came from the network are escaped so
 * that a client cannot forge a key or a second line, and a line is written
 * with a single write(2) so that worker processes do not interleave.
 */
#ifndef GG_LOG_H
#define GG_LOG_H

#include <stdbool.h>
#include <stddef.h>

#define LOG_LINE_MAX 4096

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARNING, LOG_LVL_ERROR };

/* TARGET "stderr" or "syslog"; LEVEL "debug", "info", "warning", "error". */
void log_setup(const char *target, const char *level);
bool log_enabled(enum log_level lvl);

struct logline {
	enum log_level lvl;
	size_t len;
	bool truncated;
	bool off;            /* below the level: nothing is built */
	char buf[LOG_LINE_MAX];
};

/* Starts a line "level=... event=EVENT". */
void ll_begin(struct logline *l, enum log_level lvl, const char *event);
void ll_str(struct logline *l, const char *key, const char *val);
void ll_strn(struct logline *l, const char *key, const char *val, size_t len);
void ll_int(struct logline *l, const char *key, long long val);
void ll_emit(struct logline *l);

/* A line with just an event and a free-text reason, for start-up and errors. */
void log_msg(enum log_level lvl, const char *event, const char *reason);

#endif
