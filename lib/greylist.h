/*
 * greylist: the greylisting decision (docs/design.md, "Greylisting") as a
 * pure function of the stored state and the time, so that the embedded
 * store uses it as is and the Redis script (proxy/store_redis.lua) can mirror it line by line.
 *
 * State per triplet: when it was first seen, whether it has passed, and
 * whether it was first seen on a backup MX while the primary was up (the
 * backup_first flag, README.md "Spamtraps and backup_first").
 * State per client network: the auto-whitelist count (at most one count an
 * hour) and the number of new triplets created in the current hour.
 *
 * Order of the rules:
 *  0. a pending triplet with the backup_first flag (rules 2 to 5 below
 *     only: past the retry window it starts over as any other) is decided
 *     with the flagged parameters, those of the class its score has with
 *     the backup_first weight added: refused when that class is hostile
 *     (GL_REFUSE, nothing updated), else rules 2 to 5 with its delay and
 *     auto-whitelist rule;
 *  1. a passed triplet passes (reason triplet) and its lifetime is renewed;
 *  2. a network on the auto-whitelist passes (reason awl), lifetime renewed;
 *  3. a known triplet younger than `delay` is greylisted (early);
 *  4. a known triplet older than `retry_window` starts over (greylisted,
 *     reason retry-window-expired);
 *  5. a known triplet between the two passes (reason triplet, waited N);
 *  6. an unknown triplet is greylisted (new) and stored, unless its network
 *     created max_new_per_client triplets this hour already: then it is
 *     greylisted without being stored (capped).
 * A triplet stored as new (rules 4 and 6) gets the backup_first flag when
 * set_backup_first asks for it.
 * Every pass counts towards the network's auto-whitelist, at most once an
 * hour. A pending triplet first seen before void_before is treated as
 * unknown (rule 6).
 */
#ifndef GG_GREYLIST_H
#define GG_GREYLIST_H

#include <stdbool.h>
#include <stdint.h>

struct gl_params {
	int64_t delay, retry_window, pass_lifetime;
	int awl_threshold;               /* 0: no auto-whitelist */
	int max_new_per_client;
	/* A pending triplet (not passed) first seen before this time counts
	 * as unknown, so it starts over as new: its client network was caught
	 * at a spamtrap then (the trap's time, on the store's clock). 0: none. */
	int64_t void_before;
	/* backup_first: flag a triplet stored as new now (this host is a
	 * backup MX of the recipient's domain and its primary is up), and
	 * what a flagged pending triplet is decided with: the delay and
	 * auto-whitelist threshold of the class its score has with the
	 * backup_first weight added, or refused when that class is hostile.
	 * gg_config_gl_params sets the flagged fields to the unflagged ones:
	 * a flag without effect. */
	bool set_backup_first;
	int64_t flagged_delay;
	int flagged_awl_threshold;
	bool flagged_refuse;
};

struct gl_triplet {
	bool exists;
	bool passed;
	bool backup_first;               /* first seen on a backup MX, primary up */
	int64_t first_seen;
	int64_t expires;                 /* absolute time */
};

struct gl_network {
	int awl_count;
	int64_t awl_last;                /* when the count last went up */
	int64_t awl_expires;
	int new_count;                   /* new triplets in the current hour */
	int64_t new_window_end;
};

/* GL_REFUSE: a flagged pending triplet whose flagged class is hostile
 * (rule 0); refused as hostile clients are, nothing stored. */
enum gl_action { GL_PASS, GL_GREYLIST, GL_REFUSE };

enum gl_reason {
	GL_REASON_NEW,
	GL_REASON_EARLY,
	GL_REASON_RETRY_WINDOW_EXPIRED,
	GL_REASON_TRIPLET,
	GL_REASON_AWL,
};
#define GL_REASONS (GL_REASON_AWL + 1)

struct gl_decision {
	enum gl_action action;
	enum gl_reason reason;
	int64_t delay_left;              /* greylisted: seconds until a retry passes */
	int64_t waited;                  /* triplet pass: seconds since first seen */
	bool capped;                     /* new but not stored (max_new_per_client) */
	bool first_pass;                 /* the triplet pass that ended its greylisting (rule 5) */
	bool backup_first;               /* decided as a flagged triplet (rule 0) */
};

/* A client network's marks, shared by every MX host through the store
 * (README.md, "Spamtraps and backup_first"): caught at a spamtrap (until
 * when, and when: void_before of its later decisions). Times on the
 * store's clock; 0: no mark. */
struct gl_marks {
	int64_t now;                     /* the store's clock when read */
	int64_t trapped_until, trapped_at;
};

/* What a marks request sets before it reads (GL_MARK_NONE: only reads).
 * TRAP: trapped_until = now + lifetime, trapped_at = now. The network's
 * record then lives at least TTL seconds more (until its pending
 * triplets are gone). */
enum gl_mark { GL_MARK_NONE, GL_MARK_TRAP };
struct gl_mark_set {
	enum gl_mark kind;
	int64_t lifetime, ttl;
};

/* Applies SET to M at NOW (M->now becomes NOW) and returns until when
 * M's record must be kept (the later of its current end and now + TTL;
 * KEEP_UNTIL is the current end, 0 when none). */
int64_t gl_mark_apply(struct gl_marks *m, const struct gl_mark_set *set, int64_t now,
		      int64_t keep_until);

/* Time windows that are not parameters. */
#define GL_AWL_COUNT_INTERVAL 3600
#define GL_NEW_WINDOW 3600
/* Kept this long past the retry window so that a late retry is told apart
 * (retry-window-expired) from a triplet never seen. */
#define GL_EXPIRED_GRACE 3600

/*
 * Decides for one triplet at NOW and updates T and N as the store must keep
 * them (when DRY_RUN is set nothing is updated: "explain"). Expired state
 * (expires <= NOW) counts as absent.
 */
struct gl_decision gl_decide(const struct gl_params *p, int64_t now,
			     struct gl_triplet *t, struct gl_network *n, bool dry_run);

/* The reason as logged and as the Redis script returns it ("unknown" for a
 * value out of range); the names live in why.h. */
const char *gl_reason_name(enum gl_reason r);
/* The reason called NAME; false when there is none. */
bool gl_reason_parse(const char *name, enum gl_reason *r);

#endif
