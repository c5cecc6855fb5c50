#include "ctl_cmd.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pool_key.h"
#include "sender_norm.h"

/* Triplets a walk looks at per call when nothing else waits (greygate-ctl). */
#define CTL_WALK_SLICE 500

int ctl_triplet(const struct gg_config *cfg, const char *client, const char *name,
		const char *spf_domain, const char *sender, const char *rcpt, struct triplet *t,
		char *err, size_t errlen)
{
	struct ipaddr a;
	if (!ipaddr_parse(client, &a)) {
		snprintf(err, errlen, "'%s' is not an IP address", client);
		return -1;
	}
	if (strcmp(sender, "<>") == 0)
		sender = "";
	size_t slen = strlen(sender), rlen = strlen(rcpt);
	if (slen >= TRIPLET_PART_MAX || rlen >= TRIPLET_PART_MAX || rlen == 0) {
		snprintf(err, errlen, "sender or recipient empty or too long");
		return -1;
	}
	char net[NET_TEXT_MAX], norm[TRIPLET_PART_MAX + 4];
	triplet_network(&a, (unsigned)cfg->greylist.ipv4_prefix, (unsigned)cfg->greylist.ipv6_prefix,
			net, sizeof net);
	size_t nlen = sender_normalise(sender, slen, &cfg->greylist.norm, norm, sizeof norm);
	char pool[POOL_TEXT_MAX];
	struct pool_facts pf = {
		.client = &a,
		.spf_pass_domain = spf_domain,
		.client_name = name,
		.words = (const char *const *)cfg->greylist.generic_name_words,
		.nwords = cfg->greylist.ngeneric_name_words,
		.order = cfg->greylist.pool_keys,
		.norder = cfg->greylist.npool_keys,
	};
	pool_key(&pf, pool);
	if (triplet_make_pool(t, net, pool, norm, nlen, rcpt, rlen) < 0) {
		snprintf(err, errlen, "cannot compute the key");
		return -1;
	}
	return 0;
}

enum ctl_format ctl_format_of(int argc, char **argv, int *first)
{
	enum ctl_format fmt = CTL_TEXT;
	int i = 0;
	for (; i < argc && strcmp(argv[i], "--json") == 0; i++)
		fmt = CTL_JSON;
	*first = i;
	return fmt;
}

void ctl_stat_str(struct ctl_stats *s, const char *name, const char *v)
{
	if (s->n < CTL_STATS_MAX) {
		s->f[s->n].name = name;
		s->f[s->n].str = v;
		s->n++;
	}
}

void ctl_stat_num(struct ctl_stats *s, const char *name, long long v)
{
	if (s->n < CTL_STATS_MAX) {
		s->f[s->n].name = name;
		s->f[s->n].str = NULL;
		s->f[s->n].num = v;
		s->n++;
	}
}

/* ---- facts ---- */

static const char *const scoring_names[] = {
	[CTL_SCORING_UNKNOWN] = "unknown", [CTL_SCORING_OFF] = "off", [CTL_SCORING_ON] = "on",
};

void ctl_facts_write(FILE *out, const struct ctl_facts *f)
{
	fprintf(out, "facts scoring=%s class=%s score=%d parts=%s name=%s spf=%s spf_domain=%s\n",
		scoring_names[f->scoring], score_class_name(f->cls), f->score, f->parts, f->name,
		f->spf, f->spf_domain);
}

/* VALUE into BUF (SIZE with its NUL); false when it does not fit. */
static bool fact_copy(char *buf, size_t size, const char *value)
{
	size_t n = strlen(value);
	if (n >= size)
		return false;
	memcpy(buf, value, n + 1);
	return true;
}

bool ctl_facts_read(const char *line, struct ctl_facts *f)
{
	char copy[1024];
	if (strncmp(line, "facts ", 6) != 0 || !fact_copy(copy, sizeof copy, line + 6))
		return false;
	*f = (struct ctl_facts){ .scoring = CTL_SCORING_UNKNOWN, .cls = CLASS_NORMAL };
	bool scoring = false;
	char *save = NULL;
	for (char *tok = strtok_r(copy, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		char *v = strchr(tok, '=');
		if (!v)
			return false;
		*v++ = 0;
		bool ok = true;
		if (strcmp(tok, "scoring") == 0) {
			scoring = true;
			if (strcmp(v, "on") == 0)
				f->scoring = CTL_SCORING_ON;
			else if (strcmp(v, "off") == 0)
				f->scoring = CTL_SCORING_OFF;
			else
				ok = false;
		} else if (strcmp(tok, "class") == 0) {
			int k = 0;
			while (k < CLASS_COUNT && strcmp(v, score_class_name((enum score_class)k)) != 0)
				k++;
			ok = k < CLASS_COUNT;
			f->cls = (enum score_class)k;
		} else if (strcmp(tok, "score") == 0) {
			char *end;
			long n = strtol(v, &end, 10);
			ok = *v && !*end && n > -100000 && n < 100000;
			f->score = (int)n;
		} else if (strcmp(tok, "parts") == 0) {
			ok = fact_copy(f->parts, sizeof f->parts, v);
		} else if (strcmp(tok, "name") == 0) {
			ok = fact_copy(f->name, sizeof f->name, v);
		} else if (strcmp(tok, "spf") == 0) {
			ok = fact_copy(f->spf, sizeof f->spf, v);
		} else if (strcmp(tok, "spf_domain") == 0) {
			ok = fact_copy(f->spf_domain, sizeof f->spf_domain, v);
		}
		/* an unknown key: a newer daemon's, ignored */
		if (!ok)
			return false;
	}
	return scoring;
}

/* ---- JSON ---- */

/* The length of the well-formed UTF-8 sequence at P (RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *p)
{
	unsigned char c = p[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xBF;     /* the bounds of the second byte */
	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
	else if (c >= 0xF0 && c <= 0xF4)
		n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
	else
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;               /* the terminating NUL stops here too */
	return n;
}

/* S as a JSON string. What the stores hold came from SMTP clients and
 * need not be UTF-8: a byte that is not part of a well-formed sequence
 * is written as U+FFFD, so the output is always valid JSON. */
static void json_str(FILE *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	fputc('"', out);
	while (*p) {
		size_t n;
		if (*p == '"' || *p == '\\') {
			fprintf(out, "\\%c", *p++);
		} else if (*p < 0x20 || *p == 0x7F) {
			fprintf(out, "\\u%04x", *p++);
		} else if (*p < 0x80) {
			fputc(*p++, out);
		} else if ((n = utf8_len(p)) > 0) {
			fwrite(p, 1, n, out);
			p += n;
		} else {
			fputs("\\ufffd", out);
			p++;
		}
	}
	fputc('"', out);
}

/* ,"NAME":"V" (or without the comma, first); null when V is NULL */
static void json_field(FILE *out, bool first, const char *name, const char *v)
{
	fprintf(out, "%s\"%s\":", first ? "" : ",", name);
	if (v)
		json_str(out, v);
	else
		fputs("null", out);
}

/* Opens an object with a triplet's key and parts, as list and explain
 * both begin theirs. NET or POOL NULL: not known, or no pool key. */
static void json_triplet(FILE *out, const char *hex, const char *net, const char *pool,
			 const char *sender, const char *rcpt)
{
	fputc('{', out);
	json_field(out, true, "key", hex);
	json_field(out, false, "net", net);
	json_field(out, false, "pool", pool);
	json_field(out, false, "sender", sender);
	json_field(out, false, "rcpt", rcpt);
}

/* ---- entries ---- */

static void iso_time(int64_t when, char *buf, size_t len)
{
	time_t tt = (time_t)when;
	struct tm tm;
	/* a store's value out of gmtime's range: no date to show */
	if (!gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "?");
}

static void print_entry(FILE *out, enum ctl_format fmt, const struct ctl_entry *e)
{
	char first[32];
	iso_time(e->first_seen, first, sizeof first);
	const char *sender = e->sender[0] ? e->sender : "<>";
	const char *state = e->passed ? "passed" : "pending";
	/* the store keeps the key text alone: a pool key or the network */
	bool pool = pool_kind_of(e->net) != POOL_NET;
	/* the backup_first flag only when set: the rare case */
	if (fmt == CTL_TEXT) {
		fprintf(out, "key=%s %s=%s sender=%s rcpt=%s state=%s first_seen=%s ttl=%lld%s\n",
			e->hex, pool ? "pool" : "net", e->net, sender, e->rcpt, state, first,
			(long long)e->ttl, e->backup_first ? " backup_first=yes" : "");
		return;
	}
	json_triplet(out, e->hex, pool ? NULL : e->net, pool ? e->net : NULL, sender, e->rcpt);
	json_field(out, false, "state", state);
	json_field(out, false, "first_seen", first);
	fprintf(out, ",\"ttl\":%lld%s}", (long long)e->ttl,
		e->backup_first ? ",\"backup_first\":true" : "");
}

struct ctl_list {
	FILE *out;
	enum ctl_format fmt;
	char *net, *sender, *rcpt;      /* NULL: any */
	int state;                      /* -1 any, 0 pending, 1 passed */
	long limit, shown;
};

bool ctl_list_show(void *list, const struct ctl_entry *e)
{
	struct ctl_list *f = list;
	if ((f->net && strcmp(f->net, e->net) != 0) ||
	    (f->sender && !strcasestr(e->sender, f->sender)) ||
	    (f->rcpt && !strcasestr(e->rcpt, f->rcpt)) ||
	    (f->state >= 0 && f->state != (e->passed ? 1 : 0)))
		return true;
	print_entry(f->out, f->fmt, e);
	if (f->fmt == CTL_JSON)
		fputc('\n', f->out);
	return ++f->shown < f->limit;
}

void ctl_list_free(struct ctl_list *l)
{
	if (!l)
		return;
	free(l->net);
	free(l->sender);
	free(l->rcpt);
	free(l);
}

/* A copy: the daemon's command line is gone before the list ends. */
static bool set_filter(char **field, const char *v)
{
	free(*field);
	*field = strdup(v);
	return *field != NULL;
}

struct ctl_list *ctl_list_new(int argc, char **argv, enum ctl_format fmt, FILE *out,
			      int *status)
{
	struct ctl_list *f = calloc(1, sizeof *f);
	if (!f)
		goto nomem;
	*f = (struct ctl_list){ .out = out, .fmt = fmt, .state = -1, .limit = 1000 };
	for (int i = 1; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq)
			goto usage;
		*eq = 0;
		const char *v = eq + 1;
		bool ok = true;
		if (strcmp(argv[i], "net") == 0)
			ok = set_filter(&f->net, v);
		else if (strcmp(argv[i], "sender") == 0)
			ok = set_filter(&f->sender, v);
		else if (strcmp(argv[i], "rcpt") == 0)
			ok = set_filter(&f->rcpt, v);
		else if (strcmp(argv[i], "state") == 0 && strcmp(v, "passed") == 0)
			f->state = 1;
		else if (strcmp(argv[i], "state") == 0 && strcmp(v, "pending") == 0)
			f->state = 0;
		else if (!(strcmp(argv[i], "limit") == 0 && (f->limit = strtol(v, NULL, 10)) > 0))
			goto usage;
		if (!ok)
			goto nomem;
	}
	return f;
usage:
	fprintf(out, "usage: list [net=NET|ptr:DOMAIN|spf:DOMAIN] [sender=S] [rcpt=R] "
		     "[state=passed|pending] [limit=N]\n");
	ctl_list_free(f);
	*status = 2;
	return NULL;
nomem:
	fprintf(out, "error: list: out of memory\n");
	ctl_list_free(f);
	*status = 1;
	return NULL;
}

int ctl_list_end(struct ctl_list *l)
{
	if (l->fmt == CTL_TEXT)
		fprintf(l->out, "shown=%ld%s\n", l->shown,
			l->shown >= l->limit ? " (limit reached)" : "");
	ctl_list_free(l);
	return 0;
}

static int failed(const struct ctl_store *st, void *ctx, FILE *out, const char *what)
{
	fprintf(out, "error: %s: %s\n", what, st->error(ctx));
	return 1;
}

static int cmd_list(const struct ctl_store *st, void *ctx, int argc, char **argv,
		    enum ctl_format fmt, FILE *out)
{
	int status;
	struct ctl_list *l = ctl_list_new(argc, argv, fmt, out, &status);
	if (!l)
		return status;
	uint64_t cursor = 0;
	int more;
	while ((more = st->walk(ctx, &cursor, CTL_WALK_SLICE, ctl_list_show, l)) > 0)
		;
	if (more < 0) {
		ctl_list_free(l);
		return failed(st, ctx, out, "list");
	}
	return ctl_list_end(l);
}

static const char *const explain_why[] = {
	[GL_REASON_NEW] = "never seen (or forgotten): the first attempt is deferred",
	[GL_REASON_EARLY] = "seen, but the delay has not passed yet",
	[GL_REASON_RETRY_WINDOW_EXPIRED] = "seen, but not retried within retry_window: starts over",
	[GL_REASON_TRIPLET] = "retried after the delay (or passed before): let through",
	[GL_REASON_AWL] = "the client network (or pool key) is on the auto-whitelist",
};

/* What the next decision would be: the store's dry run, unless the
 * client's class F decides before the store is asked (as the RCPT class
 * row does); a triplet flagged backup_first may be refused by the store
 * itself. */
struct explained {
	const char *action, *reason, *why;
	const struct gl_decision *d;    /* NULL: the class decided */
};

static struct explained next_of(const struct gg_config *cfg, const struct ctl_facts *f,
				const struct gl_decision *d)
{
	bool shadow = cfg->greylist.shadow;
	if (f && f->scoring == CTL_SCORING_ON && f->cls == CLASS_TRUSTED)
		return (struct explained){ "pass", "trusted", "the client is classed trusted: "
					   "not greylisted", NULL };
	bool refused = d->action == GL_REFUSE;
	if (refused || (f && f->scoring == CTL_SCORING_ON && f->cls == CLASS_HOSTILE))
		return (struct explained){
			shadow ? "would-reject" : cfg->scoring.hostile_tempfail ? "tempfail" : "reject",
			"hostile", refused ? "the triplet was first seen on a backup MX (backup_first): "
					     "with its points the client is classed hostile: refused, "
					     "the triplet left as it was"
					   : "the client is classed hostile: refused, never stored",
			NULL };
	const char *action = d->action == GL_PASS ? "pass" : shadow ? "would-greylist" : "greylist";
	return (struct explained){ action, gl_reason_name(d->reason), explain_why[d->reason], d };
}

/* The class line (text) or fields (JSON). */
static void print_class(FILE *out, enum ctl_format fmt, const struct ctl_facts *f)
{
	enum ctl_scoring sc = f ? f->scoring : CTL_SCORING_UNKNOWN;
	const char *why = f && f->why[0] ? f->why : "not asked";
	if (fmt == CTL_TEXT) {
		if (sc == CTL_SCORING_ON)
			fprintf(out, "score: class=%s score=%d parts=%s\n", score_class_name(f->cls),
				f->score, f->parts);
		else if (sc == CTL_SCORING_OFF)
			fprintf(out, "score: class=normal scoring=off\n");
		else
			fprintf(out, "score: class=unknown (%s)\n", why);
		return;
	}
	json_field(out, false, "scoring", scoring_names[sc]);
	if (sc == CTL_SCORING_UNKNOWN) {
		fputs(",\"class\":null,\"score\":null,\"parts\":null", out);
		json_field(out, false, "scoring_why", why);
		return;
	}
	json_field(out, false, "class", score_class_name(sc == CTL_SCORING_ON ? f->cls : CLASS_NORMAL));
	fprintf(out, ",\"score\":%d", sc == CTL_SCORING_ON ? f->score : 0);
	json_field(out, false, "parts", sc == CTL_SCORING_ON ? f->parts : "");
}

/* Text: the triplet, what is stored, "score:", "next:" and "why:" lines.
 * JSON: one object with the same, "stored" null when nothing is. */
static void print_explained(FILE *out, enum ctl_format fmt, const struct triplet *t,
			    const struct ctl_entry *e, const struct explained *x,
			    const struct ctl_facts *f)
{
	const char *sender = t->sender[0] ? t->sender : "<>";
	const struct gl_decision *d = x->d;
	if (fmt == CTL_TEXT) {
		fprintf(out, "net=%s%s%s sender=%s rcpt=%s key=%s kind=%s\n", t->net,
			t->pool[0] ? " pool=" : "", t->pool, sender, t->rcpt, t->hex,
			pool_kind_name(pool_kind_of(triplet_keytext(t))));
		if (e)
			print_entry(out, fmt, e);
		else
			fprintf(out, "stored: nothing\n");
		print_class(out, fmt, f);
		fprintf(out, "next: action=%s reason=%s", x->action, x->reason);
		if (d && d->action == GL_GREYLIST)
			fprintf(out, " delay_left=%lld", (long long)d->delay_left);
		if (d && d->capped)
			fprintf(out, " stored=no-capped");
		fprintf(out, "\nwhy: %s\n", x->why);
		return;
	}
	json_triplet(out, t->hex, t->net, t->pool[0] ? t->pool : NULL, sender, t->rcpt);
	fputs(",\"stored\":", out);
	if (e)
		print_entry(out, fmt, e);
	else
		fputs("null", out);
	print_class(out, fmt, f);
	fputs(",\"next\":{", out);
	json_field(out, true, "action", x->action);
	json_field(out, false, "reason", x->reason);
	if (d && d->action == GL_GREYLIST)
		fprintf(out, ",\"delay_left\":%lld", (long long)d->delay_left);
	fprintf(out, ",\"capped\":%s}", d && d->capped ? "true" : "false");
	json_field(out, false, "why", x->why);
	fputs("}\n", out);
}

static int cmd_explain(const struct gg_config *cfg, const struct ctl_store *st, void *ctx,
		       const struct triplet *t, enum ctl_format fmt, FILE *out,
		       const struct ctl_facts *f)
{
	/* the dry run first: get's strings last only until the store's next
	 * call, and nothing is stored by it. The class as the RCPT decision
	 * has it, and the one a triplet flagged backup_first would have. */
	bool scored = f && f->scoring == CTL_SCORING_ON;
	int flag_points = cfg->scoring.weights[SIG_BACKUP_FIRST];
	enum score_class k = scored ? f->cls : CLASS_NORMAL, flagged = k;
	if (scored && k != CLASS_HOSTILE)
		flagged = score_classify(&cfg->scoring.classes, f->score + flag_points);
	struct gl_params p = gg_config_gl_params_flagged(cfg, k, flagged);
	struct gl_decision d;
	if (st->explain(ctx, &p, t, &d) < 0)
		return failed(st, ctx, out, "explain");
	struct ctl_entry e;
	int found = st->get(ctx, t, &e);
	if (found < 0)
		return failed(st, ctx, out, "explain");
	struct explained x = next_of(cfg, f, &d);
	/* the class and parts a flagged triplet's decision line shows */
	struct ctl_facts shown;
	if (scored && d.backup_first && flag_points != 0) {
		shown = *f;
		shown.cls = flagged;
		shown.score += flag_points;
		/* (cut at its size, as score_parts_text cuts the line's) */
		size_t used = strlen(shown.parts);
		snprintf(shown.parts + used, sizeof shown.parts - used, "%s%s:%d", used ? "," : "",
			 signal_name(SIG_BACKUP_FIRST), flag_points);
		f = &shown;
	}
	print_explained(out, fmt, t, found ? &e : NULL, &x, f);
	return 0;
}

/* Text: NAME=VALUE ... on one line; JSON: one object. */
static int cmd_stats(const struct ctl_store *st, void *ctx, enum ctl_format fmt, FILE *out)
{
	struct ctl_stats s = { 0 };
	if (st->stats(ctx, &s) < 0)
		return failed(st, ctx, out, "stats");
	for (size_t i = 0; i < s.n; i++) {
		const char *sep = i == 0 ? (fmt == CTL_JSON ? "{" : "") : (fmt == CTL_JSON ? "," : " ");
		if (fmt == CTL_JSON)
			fprintf(out, "%s\"%s\":", sep, s.f[i].name);
		else
			fprintf(out, "%s%s=", sep, s.f[i].name);
		if (!s.f[i].str)
			fprintf(out, "%lld", s.f[i].num);
		else if (fmt == CTL_JSON)
			json_str(out, s.f[i].str);
		else
			fputs(s.f[i].str, out);
	}
	fputs(fmt == CTL_JSON ? (s.n ? "}\n" : "{}\n") : "\n", out);
	return 0;
}

/* A client network as the auto-whitelist keys it: an address is masked to
 * the configured prefix; a network must already be of that size. */
int ctl_parse_ttl(const char *text, int64_t *ttl)
{
	int64_t v = 0;
	if (!*text)
		return -1;
	for (const char *p = text; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
		if (v > CTL_TTL_MAX)
			return -1;           /* before the next digit could overflow */
	}
	if (v == 0)
		return -1;
	*ttl = v;
	return 0;
}

static int awl_net(const struct gg_config *cfg, const char *arg, char *net, size_t len, FILE *out)
{
	struct cidr c;
	if (!cidr_parse(arg, &c, NULL)) {
		fprintf(out, "error: '%s' is not an address or network\n", arg);
		return -1;
	}
	unsigned want = (unsigned)(c.net.family == AF_INET ? cfg->greylist.ipv4_prefix
							   : cfg->greylist.ipv6_prefix);
	bool plain = strchr(arg, '/') == NULL;
	if (!plain && c.prefix != want) {
		fprintf(out, "error: the auto-whitelist is kept per /%u; for other networks use "
			     "whitelist.clients in the configuration\n", want);
		return -1;
	}
	triplet_network(&c.net, (unsigned)cfg->greylist.ipv4_prefix,
			(unsigned)cfg->greylist.ipv6_prefix, net, len);
	return 0;
}

int ctl_execute(const struct gg_config *cfg, const struct ctl_store *st, void *ctx,
		int argc, char **argv, FILE *out, const struct ctl_facts *facts)
{
	int first;
	enum ctl_format fmt = ctl_format_of(argc, argv, &first);
	argc -= first;
	argv += first;
	if (argc < 1)
		goto usage;
	const char *cmd = argv[0];
	struct triplet t;
	char err[200];
	if (strcmp(cmd, "list") == 0)
		return cmd_list(st, ctx, argc, argv, fmt, out);
	if (strcmp(cmd, "stats") == 0 && argc == 1)
		return cmd_stats(st, ctx, fmt, out);
	if ((strcmp(cmd, "explain") == 0 || strcmp(cmd, "pass") == 0 || strcmp(cmd, "del") == 0) &&
	    (argc == 4 || (argc == 5 && cmd[0] == 'e'))) {
		/* explain: the facts a session would have; pass and del take
		 * the network key, as before */
		const struct ctl_facts *f = cmd[0] == 'e' ? facts : NULL;
		const char *name = argc == 5 ? argv[4] : f && f->name[0] ? f->name : NULL;
		const char *spf_domain = f && f->spf_domain[0] ? f->spf_domain : NULL;
		if (ctl_triplet(cfg, argv[1], name, spf_domain, argv[2], argv[3], &t, err,
				sizeof err) < 0) {
			fprintf(out, "error: %s\n", err);
			return 2;
		}
		if (cmd[0] == 'e')
			return cmd_explain(cfg, st, ctx, &t, fmt, out, facts);
		if (cmd[0] == 'p') {
			if (st->pass(ctx, &t, cfg->greylist.pass_lifetime) < 0)
				return failed(st, ctx, out, "pass");
			fprintf(out, "passed key=%s net=%s sender=%s rcpt=%s\n", t.hex, t.net,
				t.sender[0] ? t.sender : "<>", t.rcpt);
			return 0;
		}
		argv[1] = t.hex;
		argc = 2;
	}
	if (strcmp(cmd, "del") == 0 && argc == 2) {
		if (strlen(argv[1]) != TRIPLET_HEX_LEN ||
		    strspn(argv[1], "0123456789abcdef") != TRIPLET_HEX_LEN) {
			fprintf(out, "error: '%s' is not a key (32 hex digits, as list shows)\n", argv[1]);
			return 2;
		}
		int r = st->del(ctx, argv[1]);
		if (r < 0)
			return failed(st, ctx, out, "del");
		fprintf(out, "%s key=%s\n", r ? "deleted" : "absent", argv[1]);
		return 0;
	}
	if (strcmp(cmd, "whitelist") == 0 && (argc == 2 || argc == 3)) {
		char net[NET_TEXT_MAX];
		if (awl_net(cfg, argv[1], net, sizeof net, out) < 0)
			return 2;
		int64_t ttl = cfg->greylist.pass_lifetime;
		if (argc == 3 && ctl_parse_ttl(argv[2], &ttl) < 0) {
			fprintf(out, "error: TTL '%s' is not a number of seconds from 1 to %lld "
				     "(10 years)\n", argv[2], CTL_TTL_MAX);
			return 2;
		}
		if (cfg->greylist.awl_threshold == 0) {
			/* the decision ignores the auto-whitelist then: an entry would
			 * be stored and never used */
			fprintf(out, "error: the auto-whitelist is off (greylist.awl_threshold = 0); "
				     "use whitelist.clients in the configuration\n");
			return 2;
		}
		if (st->whitelist(ctx, net, cfg->greylist.awl_threshold, ttl) < 0)
			return failed(st, ctx, out, "whitelist");
		fprintf(out, "whitelisted net=%s ttl=%lld\n", net, (long long)ttl);
		return 0;
	}
usage:
	fprintf(out, "usage: list [filters] | explain CLIENT SENDER RCPT [NAME] | pass CLIENT SENDER RCPT |\n"
		     "       del KEY | del CLIENT SENDER RCPT | whitelist NET [TTL] | stats\n");
	return 2;
}
