/*
 * The RFC 7208 conformance suite (test/data/spf/, the openspf.org suite as
 * published with pyspf) run through the SPF evaluator: each scenario's
 * zone is served by a fake lookup function, every test's result (and
 * explanation, where the suite gives one) is compared. The YAML is turned
 * into test/data/spf/rfc7208-tests.txt by tools/spf_suite_convert.py.
 *
 * Known deviations are listed below with their reason; the test fails on
 * any other difference, and on a listed one that no longer differs (the
 * list stays true). It prints "SPF suite: P passed / T total".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "spf_eval.h"

#define SUITE "test/data/spf/rfc7208-tests.txt"
#define MAX_FIELDS 16
#define MAX_ZONE 256
#define FIELD_MAX 1024

static const struct {
	const char *test, *reason;
} deviations[] = {
	{ "v-macro-ip6", "the suite wants %{ir} of an IPv6 address in upper-case hex "
	  "nibbles; RFC 7208 section 7.3's own example writes them in lower case, as we do" },
	{ NULL, NULL },
};

struct rr {
	char name[DNS_NAME_MAX];
	char type[8];
	size_t nf;
	char f[4][FIELD_MAX];
	size_t flen[4];
};

static struct rr zone[MAX_ZONE];
static size_t nzone;

/* Undoes the converter's \xHH escapes in place; returns the length. */
static size_t unescape(char *s)
{
	size_t o = 0;
	for (size_t i = 0; s[i];) {
		if (s[i] == '\\' && s[i + 1] == 'x' && s[i + 2] && s[i + 3]) {
			char hex[3] = { s[i + 2], s[i + 3], 0 };
			s[o++] = (char)strtol(hex, NULL, 16);
			i += 4;
		} else {
			s[o++] = s[i++];
		}
	}
	s[o] = '\0';
	return o;
}

static size_t split(char *line, char **f)
{
	size_t n = 0;
	char *t;
	while (n < MAX_FIELDS && (t = strsep(&line, "\t")))
		f[n++] = t;
	return n == 1 && !f[0][0] ? 0 : n;
}

static bool same_name(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la && a[la - 1] == '.')
		la--;
	if (lb && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

static bool has_type(const char *name, const char *type)
{
	for (size_t i = 0; i < nzone; i++)
		if (same_name(zone[i].name, name) && strcmp(zone[i].type, type) == 0)
			return true;
	return false;
}

/* NAME after the zone's CNAMEs (a bounded chain); NULL for a loop. */
static const char *resolve_cname(const char *name)
{
	for (int hops = 0; hops < 8; hops++) {
		size_t i;
		for (i = 0; i < nzone; i++)
			if (same_name(zone[i].name, name) && strcmp(zone[i].type, "CNAME") == 0)
				break;
		if (i == nzone)
			return name;
		name = zone[i].f[0];
	}
	return NULL;
}

/* Whether NAME exists, after its CNAMEs. TIMEOUT in the zone is a server
 * that answers for the types the name has records of and times out for
 * the others (what the suite's spftimeout scenario needs). */
static enum dns_status status_of(const char **name, const char *type)
{
	const char *n = resolve_cname(*name);
	if (!n)
		return DNS_TEMPFAIL;
	*name = n;
	if (has_type(n, "TIMEOUT") && !has_type(n, type))
		return DNS_TEMPFAIL;
	for (size_t i = 0; i < nzone; i++)
		if (same_name(zone[i].name, n))
			return DNS_NODATA;
	return DNS_NXDOMAIN;
}

static void answer(const char *name, uint16_t type, struct dns_answer *a)
{
	static const char *const names[] = { [DNS_T_A] = "A", [DNS_T_AAAA] = "AAAA",
					     [DNS_T_MX] = "MX", [DNS_T_PTR] = "PTR" };
	memset(a, 0, sizeof *a);
	a->type = type;
	a->status = status_of(&name, names[type]);
	if (a->status != DNS_NODATA)
		return;
	for (size_t i = 0; i < nzone; i++) {
		struct rr *r = &zone[i];
		if (!same_name(r->name, name) || strcmp(r->type, names[type]) != 0)
			continue;
		if (a->n == DNS_MAX_RR) {
			a->truncated = true;
			break;
		}
		struct dns_rr *o = &a->rr[a->n++];
		const char *target = type == DNS_T_MX ? r->f[1] : r->f[0];
		if (type == DNS_T_A || type == DNS_T_AAAA) {
			assert_true(ipaddr_parse(target, &o->addr));
		} else {
			size_t len = strlen(target);
			if (len && target[len - 1] == '.')
				len--;
			if (len >= sizeof o->name)
				len = sizeof o->name - 1;
			for (size_t k = 0; k < len; k++)
				o->name[k] = (char)(target[k] >= 'A' && target[k] <= 'Z' ? target[k] + 32 : target[k]);
			o->name[len] = '\0';
		}
	}
	if (a->n)
		a->status = DNS_OK;
}

static void answer_txt(const char *name, struct dns_txt *t)
{
	memset(t, 0, sizeof *t);
	t->status = status_of(&name, "TXT");
	if (t->status != DNS_NODATA)
		return;
	size_t used = 0;
	for (size_t i = 0; i < nzone; i++) {
		struct rr *r = &zone[i];
		if (!same_name(r->name, name) || strcmp(r->type, "TXT") != 0)
			continue;
		assert_true(t->n < DNS_TXT_MAX_RR);
		t->rr[t->n].off = used;
		for (size_t k = 0; k < r->nf; k++) {
			size_t len = r->flen[k];
			assert_true(used + len <= sizeof t->buf);
			memcpy(t->buf + used, r->f[k], len);
			used += len;
		}
		t->rr[t->n].len = used - t->rr[t->n].off;
		t->n++;
	}
	if (t->n)
		t->status = DNS_OK;
}

static int deviation(const char *test)
{
	for (size_t i = 0; deviations[i].test; i++)
		if (strcmp(deviations[i].test, test) == 0)
			return (int)i;
	return -1;
}

static bool run_case(char **f, size_t nf, char *why, size_t whylen)
{
	/* T name helo host mailfrom results explanation */
	assert_true(nf == 7);
	struct spf_input in;
	memset(&in, 0, sizeof in);
	assert_true(ipaddr_parse(f[3], &in.ip));
	char mailfrom[FIELD_MAX];
	snprintf(mailfrom, sizeof mailfrom, "%s", f[4]);
	char *at = strrchr(mailfrom, '@');
	in.helo = f[2];
	if (!mailfrom[0]) {
		in.domain = f[2];
	} else if (at) {
		*at = '\0';
		in.local = mailfrom;
		in.domain = at + 1;
	} else {
		in.domain = mailfrom;
	}
	in.receiver = "receiver.example";
	in.max_prefix4 = 16;
	in.max_prefix6 = 32;

	static struct spf_eval e;
	spf_eval_init(&e, &in);
	while (spf_eval_run(&e) == SPF_STEP_LOOKUP) {
		if (e.q.type == DNS_T_TXT) {
			static struct dns_txt t;
			answer_txt(e.q.name, &t);
			spf_eval_feed_txt(&e, &t);
		} else {
			static struct dns_answer a;
			answer(e.q.name, e.q.type, &a);
			spf_eval_feed(&e, &a);
		}
	}
	const char *got = spf_result_name(e.out.r);
	bool ok = false;
	char results[FIELD_MAX];
	snprintf(results, sizeof results, "%s", f[5]);
	char *save = NULL;
	for (char *r = strtok_r(results, ",", &save); r; r = strtok_r(NULL, ",", &save))
		ok |= strcmp(r, got) == 0;
	if (!ok) {
		snprintf(why, whylen, "result %s (%s), expected %s", got,
			 e.out.why ? e.out.why : "-", f[5]);
		return false;
	}
	const char *want = f[6];
	if (e.out.r == SPF_FAIL && strcmp(want, "-") != 0) {
		const char *w = strcmp(want, "DEFAULT") == 0 ? "" : want;
		if (strcmp(w, e.out.explanation) != 0) {
			snprintf(why, whylen, "explanation '%.200s', expected '%.200s'", e.out.explanation, want);
			return false;
		}
	}
	return true;
}

static void test_suite(void **state)
{
	(void)state;
	FILE *fp = fopen(SUITE, "r");
	assert_non_null(fp);
	static char line[8192];
	unsigned total = 0, passed = 0, unexpected = 0;
	bool seen[sizeof deviations / sizeof deviations[0]] = { false };
	while (fgets(line, sizeof line, fp)) {
		line[strcspn(line, "\n")] = '\0';
		char *f[MAX_FIELDS];
		size_t nf = split(line, f);
		if (nf == 0)
			continue;
		if (strcmp(f[0], "S") == 0) {
			nzone = 0;
			continue;
		}
		size_t len[MAX_FIELDS];
		for (size_t i = 1; i < nf; i++)
			len[i] = unescape(f[i]);
		if (strcmp(f[0], "Z") == 0) {
			assert_true(nzone < MAX_ZONE && nf >= 3 && nf <= 7);
			struct rr *r = &zone[nzone++];
			memset(r, 0, sizeof *r);
			snprintf(r->name, sizeof r->name, "%s", f[1]);
			snprintf(r->type, sizeof r->type, "%s", f[2]);
			r->nf = nf - 3;
			for (size_t i = 3; i < nf; i++) {
				assert_true(len[i] < sizeof r->f[0]);
				memcpy(r->f[i - 3], f[i], len[i] + 1);
				r->flen[i - 3] = len[i];
			}
			continue;
		}
		assert_string_equal(f[0], "T");
		char why[512];
		total++;
		bool ok = run_case(f, nf, why, sizeof why);
		int d = deviation(f[1]);
		if (d >= 0)
			seen[d] = true;
		if (ok)
			passed++;
		if (ok && d >= 0) {
			printf("listed deviation passes now: %s\n", f[1]);
			unexpected++;
		} else if (!ok && d >= 0) {
			printf("deviation: %s: %s (%s)\n", f[1], why, deviations[d].reason);
		} else if (!ok) {
			printf("FAILED: %s: %s\n", f[1], why);
			unexpected++;
		}
	}
	fclose(fp);
	for (size_t i = 0; deviations[i].test; i++)
		if (!seen[i] && (unexpected += 1))
			printf("listed deviation not in the suite: %s\n", deviations[i].test);
	printf("SPF suite: %u passed / %u total\n", passed, total);
	assert_true(total > 0);
	assert_int_equal(unexpected, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_suite),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
