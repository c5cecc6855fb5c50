/*
 * ctl_cmd: greygate-ctl's commands (like OpenBSD's spamdb), written
 * once over a small store interface: greygate-ctl runs them against Redis
 * directly, and the daemon runs them against its embedded store when
 * greygate-ctl asks through the control socket. Both print alike.
 *
 *   list [net=NET] [sender=S] [rcpt=R] [state=passed|pending] [limit=N]
 *                                  (net= also takes a pool key: ptr:example.com)
 *   explain CLIENT SENDER RCPT [NAME]
 *                                  which key, what is stored, the client's
 *                                  class and score, what the next decision
 *                                  would be and why; changes nothing.
 *                                  NAME: the client's forward-confirmed name,
 *                                  for its ptr: key; the daemon looks it up
 *                                  when not given (struct ctl_facts)
 *   pass CLIENT SENDER RCPT        let the triplet through from now on
 *   del KEY | del CLIENT SENDER RCPT
 *   whitelist NET [TTL]            put a client network on the auto-whitelist
 *   stats
 * SENDER "<>" is the null sender. "--json" before the command makes list,
 * explain and stats print JSON (README.md, "greygate-ctl --json"): list one
 * object per line and entry, explain and stats one object.
 */
#ifndef GG_CTL_CMD_H
#define GG_CTL_CMD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "greylist.h"
#include "triplet.h"

/* One stored triplet as the stores report it. */
struct ctl_entry {
	const char *hex, *net, *sender, *rcpt;
	bool passed;
	int64_t first_seen;
	int64_t ttl;                    /* seconds left */
	bool backup_first;              /* the triplet's flag (greylist.h) */
};

/* What stats reports, in order: NAME and a string, or a number (STR NULL).
 * The strings stay valid until the store's next call. */
#define CTL_STATS_MAX 8
struct ctl_stats {
	size_t n;
	struct {
		const char *name, *str;
		long long num;
	} f[CTL_STATS_MAX];
};
/* Appends one (beyond CTL_STATS_MAX: dropped, a mistake of ours). */
void ctl_stat_str(struct ctl_stats *s, const char *name, const char *v);
void ctl_stat_num(struct ctl_stats *s, const char *name, long long v);

enum ctl_format { CTL_TEXT, CTL_JSON };

/* The options before the command (only "--json"): the format, and *FIRST
 * the index of the command word in ARGV. */
enum ctl_format ctl_format_of(int argc, char **argv, int *first);

struct ctl_store {
	/* Calls FN for the stored triplets from *CURSOR on (0: the start),
	 * about BUDGET of them, and moves *CURSOR on: 1 while there is more,
	 * 0 at the end or once FN returned false, -1 error. A walk in slices
	 * lets the daemon serve list without holding up its loop. */
	int (*walk)(void *ctx, uint64_t *cursor, size_t budget,
		    bool (*fn)(void *arg, const struct ctl_entry *e), void *arg);
	/* 1 found (E filled, strings valid until the next call), 0 absent, -1 error */
	int (*get)(void *ctx, const struct triplet *t, struct ctl_entry *e);
	int (*explain)(void *ctx, const struct gl_params *p, const struct triplet *t,
		       struct gl_decision *d);     /* a dry-run decision */
	int (*pass)(void *ctx, const struct triplet *t, int64_t lifetime);
	int (*del)(void *ctx, const char *hex);    /* 1 deleted, 0 absent, -1 error */
	int (*whitelist)(void *ctx, const char *net, int threshold, int64_t ttl);
	int (*stats)(void *ctx, struct ctl_stats *s);
	const char *(*error)(void *ctx);           /* text of the last failure */
};

/*
 * What explain needs that only a session learns by DNS: the client's
 * confirmed name, the sender's SPF outcome and the client's class and
 * score. The daemon finds them without blocking (proxy/explain.h), with
 * the same computation as the RCPT class row; greygate-ctl, when it talks
 * to the store itself, asks the daemon for them over the control socket
 * ("facts CLIENT SENDER [NAME] [helo=HELO]", answered by one line that
 * ctl_facts_write makes and ctl_facts_read reads).
 */
enum ctl_scoring {
	CTL_SCORING_UNKNOWN,          /* the daemon could not be asked: WHY */
	CTL_SCORING_OFF,              /* no scoring group: every client is normal */
	CTL_SCORING_ON,
};
#define CTL_FACT_MAX 256
struct ctl_facts {
	enum ctl_scoring scoring;
	char why[320];                 /* UNKNOWN: why, for the reader */
	char name[CTL_FACT_MAX];       /* the confirmed name, "" none */
	char spf[16];                  /* the SPF result, "" not checked */
	char spf_domain[CTL_FACT_MAX]; /* a narrow pass: its domain (the spf: key) */
	enum score_class cls;          /* ON */
	int score;
	char parts[300];               /* score_parts_text */
};
/* The "facts ..." line (with its newline). */
void ctl_facts_write(FILE *out, const struct ctl_facts *f);
/* LINE as ctl_facts_write made it; false (F unusable) when it is not. */
bool ctl_facts_read(const char *line, struct ctl_facts *f);

/* Runs ARGV[0..ARGC) (options first, then the command) and prints to OUT
 * (errors too, as text). FACTS: what explain shows of the client beyond
 * the store (NULL: unknown). Returns the exit status: 0 done, 1 the store
 * failed, 2 usage. */
int ctl_execute(const struct gg_config *cfg, const struct ctl_store *st, void *ctx,
		int argc, char **argv, FILE *out, const struct ctl_facts *facts);

/* list, for a caller that walks its store in slices itself (the daemon:
 * between slices its loop runs). */
struct ctl_list;
/* From "list [filters]" (ARGV[0] is "list"), printing to OUT as FMT says;
 * the filters are copied. NULL, with the usage or an error on OUT and
 * *STATUS set, when it cannot be. */
struct ctl_list *ctl_list_new(int argc, char **argv, enum ctl_format fmt, FILE *out,
			      int *status);
/* Prints E if it matches; false once the limit is reached. Fits
 * ctl_store.walk's FN. */
bool ctl_list_show(void *list, const struct ctl_entry *e);
/* Prints the closing line (text only: JSON is the entries alone), frees L
 * and returns the exit status. */
int ctl_list_end(struct ctl_list *l);
/* Frees L: the list was cut short (its client went away). */
void ctl_list_free(struct ctl_list *l);

/* The longest TTL `whitelist NET TTL` takes: ten years, far beyond any use,
 * and far from where expiry times would overflow. */
#define CTL_TTL_MAX (10LL * 365 * 86400)

/* TEXT as a TTL: decimal seconds, 1..CTL_TTL_MAX. 0 and *TTL set, or -1. */
int ctl_parse_ttl(const char *text, int64_t *ttl);

/* The triplet greygate would build for CLIENT SENDER RCPT under CFG, for
 * a client whose forward-confirmed name is NAME (NULL: none known), when
 * SPF passed narrowly for SPF_DOMAIN (NULL: it did not, or not known). */
int ctl_triplet(const struct gg_config *cfg, const char *client, const char *name,
		const char *spf_domain, const char *sender, const char *rcpt, struct triplet *t,
		char *err, size_t errlen);

#endif
