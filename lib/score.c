#include "score.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const signal_names[SIG_COUNT] = {
#define SIGNAL_NAME(id, name, weighted) [SIG_##id] = name,
	SCORE_SIGNALS(SIGNAL_NAME)
#undef SIGNAL_NAME
};

static const bool signal_weights[SIG_COUNT] = {
#define SIGNAL_WEIGHTED(id, name, weighted) [SIG_##id] = weighted,
	SCORE_SIGNALS(SIGNAL_WEIGHTED)
#undef SIGNAL_WEIGHTED
};

static const char *const class_names[CLASS_COUNT] = { "trusted", "normal", "suspicious", "hostile" };

const char *signal_name(enum signal s)
{
	return (unsigned)s < SIG_COUNT ? signal_names[s] : "?";
}

bool signal_weighted(enum signal s)
{
	return (unsigned)s < SIG_COUNT && signal_weights[s];
}

const char *score_class_name(enum score_class c)
{
	return (unsigned)c < CLASS_COUNT ? class_names[c] : "?";
}

void score_add(struct score *s, enum signal sig, const char *site, int points)
{
	if (sig == SIG_SPAMTRAP) {
		if (s->trapped)
			return;        /* named once, however often it is found */
		s->trapped = true;
	} else if (points == 0) {
		return;
	}
	s->total += points;
	if (s->n < SCORE_PARTS_MAX)
		s->part[s->n++] = (struct score_part){ sig, site, points };
}

enum score_class score_classify(const struct score_classes *t, int total)
{
	if (total >= t->hostile)
		return CLASS_HOSTILE;
	if (total >= t->suspicious)
		return CLASS_SUSPICIOUS;
	return total <= t->trusted ? CLASS_TRUSTED : CLASS_NORMAL;
}

enum score_class score_class_of(const struct score_classes *t, const struct score *s)
{
	return s->trapped ? CLASS_HOSTILE : score_classify(t, s->total);
}

void score_parts_text(const struct score *s, char *out, size_t len)
{
	size_t used = 0;
	if (len)
		out[0] = 0;
	for (size_t i = 0; i < s->n && used < len; i++) {
		const struct score_part *p = &s->part[i];
		int n = snprintf(out + used, len - used, "%s%s%s%s:%d", i ? "," : "",
				 signal_name(p->sig), p->site ? ":" : "", p->site ? p->site : "",
				 p->points);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

bool helo_is_bad(const char *helo, const char *myhostname, const struct netlist *mine)
{
	struct ipaddr a;
	size_t n = strlen(helo);
	if (helo[0] == '[' && n > 2 && helo[n - 1] == ']') {
		char lit[64];
		const char *p = helo + 1;
		if (strncasecmp(p, "IPv6:", 5) == 0)
			p += 5;
		size_t l = n - 1 - (size_t)(p - helo);
		if (l >= sizeof lit)
			return false;
		memcpy(lit, p, l);
		lit[l] = 0;
		return ipaddr_parse(lit, &a) && netlist_match(mine, &a);
	}
	if (ipaddr_parse(helo, &a))
		return true;
	/* fully qualified: a dot inside the name (a trailing one is the root) */
	size_t inner = n && helo[n - 1] == '.' ? n - 1 : n;
	const char *dot = memchr(helo, '.', inner);
	if (!dot || dot == helo || dot == helo + inner - 1)
		return true;
	return strcasecmp(helo, myhostname) == 0;
}
