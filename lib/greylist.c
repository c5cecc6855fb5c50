#include "greylist.h"

#include <string.h>

#include "why.h"

static void awl_count(const struct gl_params *p, int64_t now, struct gl_network *n)
{
	if (n->awl_expires <= now) {
		n->awl_count = 0;
		n->awl_last = 0;
	}
	if (n->awl_count > 0 && now - n->awl_last < GL_AWL_COUNT_INTERVAL) {
		n->awl_expires = now + p->pass_lifetime;
		return;
	}
	n->awl_count++;
	n->awl_last = now;
	n->awl_expires = now + p->pass_lifetime;
}

static void store_new(const struct gl_params *p, int64_t now, struct gl_triplet *t)
{
	t->exists = true;
	t->passed = false;
	t->first_seen = now;
	t->expires = now + p->retry_window + GL_EXPIRED_GRACE;
	t->backup_first = p->set_backup_first;
}

struct gl_decision gl_decide(const struct gl_params *p, int64_t now,
			     struct gl_triplet *t, struct gl_network *n, bool dry_run)
{
	struct gl_decision d = { .action = GL_GREYLIST, .reason = GL_REASON_NEW,
				 .delay_left = p->delay };
	struct gl_triplet tt = *t;
	struct gl_network nn = *n;
	if (tt.exists && tt.expires <= now)
		tt.exists = false;
	/* pending from before a spamtrap hit of its network: dropped */
	if (tt.exists && !tt.passed && tt.first_seen < p->void_before)
		tt.exists = false;
	/* rule 0: a flagged pending triplet, its retry window not over */
	int64_t delay = p->delay;
	int awl_threshold = p->awl_threshold;
	if (tt.exists && !tt.passed && tt.backup_first && now - tt.first_seen <= p->retry_window) {
		d.backup_first = true;
		if (p->flagged_refuse) {
			d.action = GL_REFUSE;
			d.reason = GL_REASON_TRIPLET;
			d.delay_left = 0;
			d.waited = now - tt.first_seen;
			return d;
		}
		delay = p->flagged_delay;
		awl_threshold = p->flagged_awl_threshold;
	}

	if (tt.exists && tt.passed) {
		d.action = GL_PASS;
		d.reason = GL_REASON_TRIPLET;
		d.waited = now - tt.first_seen;
		d.delay_left = 0;
		tt.expires = now + p->pass_lifetime;
		awl_count(p, now, &nn);
	} else if (awl_threshold > 0 && nn.awl_expires > now && nn.awl_count >= awl_threshold) {
		d.action = GL_PASS;
		d.reason = GL_REASON_AWL;
		d.delay_left = 0;
		nn.awl_expires = now + p->pass_lifetime;
	} else if (tt.exists && now - tt.first_seen < delay) {
		d.reason = GL_REASON_EARLY;
		d.delay_left = delay - (now - tt.first_seen);
		d.waited = now - tt.first_seen;
	} else if (tt.exists && now - tt.first_seen > p->retry_window) {
		d.reason = GL_REASON_RETRY_WINDOW_EXPIRED;
		store_new(p, now, &tt);
	} else if (tt.exists) {
		d.action = GL_PASS;
		d.reason = GL_REASON_TRIPLET;
		d.waited = now - tt.first_seen;
		d.delay_left = 0;
		d.first_pass = true;
		tt.passed = true;
		tt.expires = now + p->pass_lifetime;
		awl_count(p, now, &nn);
	} else {
		if (nn.new_window_end <= now) {
			nn.new_count = 0;
			nn.new_window_end = now + GL_NEW_WINDOW;
		}
		if (nn.new_count >= p->max_new_per_client) {
			d.capped = true;
		} else {
			nn.new_count++;
			store_new(p, now, &tt);
		}
	}
	if (!dry_run) {
		*t = tt;
		*n = nn;
	}
	return d;
}

int64_t gl_mark_apply(struct gl_marks *m, const struct gl_mark_set *set, int64_t now,
		      int64_t keep_until)
{
	m->now = now;
	if (set->kind == GL_MARK_NONE)
		return keep_until;
	m->trapped_until = now + set->lifetime;
	m->trapped_at = now;
	return keep_until > now + set->ttl ? keep_until : now + set->ttl;
}

const char *gl_reason_name(enum gl_reason r)
{
	const char *name = why_name(why_of_gl(r));
	return name ? name : "unknown";
}

bool gl_reason_parse(const char *name, enum gl_reason *r)
{
	for (int i = 0; i < GL_REASONS; i++)
		if (strcmp(name, gl_reason_name((enum gl_reason)i)) == 0) {
			*r = (enum gl_reason)i;
			return true;
		}
	return false;
}
