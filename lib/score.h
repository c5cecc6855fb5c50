/*
 * score: what a client's signals add up to, and the class that total
 * falls in (README.md, "Selective greylisting").
 *
 * A signal is a row of SCORE_SIGNALS: its name (the log's parts= and the
 * metrics label greygate_signals_total{signal}) and whether its weight is
 * a setting, scoring.weights.<name>. Adding a signal is a row here, its
 * weight row in lib/config_schema.c, and the code that notices it. DNSBL
 * and DNSWL listings take their weight from the site instead
 * (lib/dnsbl_site.h).
 *
 * Promises: pure functions, no allocation; a score holds at most
 * SCORE_PARTS_MAX parts (more are added to the total but not named).
 */
#ifndef GG_SCORE_H
#define GG_SCORE_H

#include <stdbool.h>
#include <stddef.h>

#include "netaddr.h"

/* X(identifier, name, weight is a setting) */
#define SCORE_SIGNALS(X) \
	X(DNSBL,           "dnsbl",           false) \
	X(DNSWL,           "dnswl",           false) \
	X(NO_PTR,          "no_ptr",          true)  \
	X(UNCONFIRMED_PTR, "unconfirmed_ptr", true)  \
	X(GENERIC_PTR,     "generic_ptr",     true)  \
	X(BAD_HELO,        "bad_helo",        true)  \
	X(SPF_FAIL,        "spf_fail",        true)  \
	X(SPF_SOFTFAIL,    "spf_softfail",    true)  \
	X(PREGREET,        "pregreet",        true)  \
	X(BACKUP_FIRST,    "backup_first",    true)  \
	X(SPAMTRAP,        "spamtrap",        false)

enum signal {
#define SIGNAL_ENUM(id, name, weighted) SIG_##id,
	SCORE_SIGNALS(SIGNAL_ENUM)
#undef SIGNAL_ENUM
	SIG_COUNT
};

/* The classes, lowest score first. */
enum score_class { CLASS_TRUSTED, CLASS_NORMAL, CLASS_SUSPICIOUS, CLASS_HOSTILE, CLASS_COUNT };

#define SCORE_PARTS_MAX 16

struct score_part {
	enum signal sig;
	const char *site;            /* DNSBL/DNSWL: the site's domain (not owned); else NULL */
	int points;
};

struct score {
	int total;
	bool trapped;                /* a SPAMTRAP part: hostile whatever the total */
	size_t n;
	struct score_part part[SCORE_PARTS_MAX];
};

/* Thresholds: trusted at or below TRUSTED, suspicious from SUSPICIOUS,
 * hostile from HOSTILE (TRUSTED < SUSPICIOUS < HOSTILE). */
struct score_classes {
	int trusted, suspicious, hostile;
};

const char *signal_name(enum signal s);
/* Whether S's weight is the setting scoring.weights.<name>. */
bool signal_weighted(enum signal s);
const char *score_class_name(enum score_class c);

/* Adds POINTS for SIG (SITE for a listing); a part of 0 points is left
 * out, except SPAMTRAP's, which has no weight (0 points) and marks S
 * trapped. */
void score_add(struct score *s, enum signal sig, const char *site, int points);
enum score_class score_classify(const struct score_classes *t, int total);
/* S's class: hostile when trapped, else by its total (score_classify). */
enum score_class score_class_of(const struct score_classes *t, const struct score *s);

/* "dnsbl:zen.example:3,no_ptr:2" ("" when no parts) into OUT, cut short
 * rather than overflowing. */
void score_parts_text(const struct score *s, char *out, size_t len);

/* A HELO name that says nothing good of its client: a bare address
 * ("192.0.2.1", not an [address literal]), an address literal of one of
 * MINE, a name that is not fully qualified, or MYHOSTNAME itself. */
bool helo_is_bad(const char *helo, const char *myhostname, const struct netlist *mine);

#endif
