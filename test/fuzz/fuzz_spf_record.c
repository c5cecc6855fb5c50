/*
 * fuzz_spf_record: the SPF record parser, the macro expander and the
 * evaluator (lib/spf_record.h, spf_macro.h, spf_eval.h).
 *
 * The input is a flags byte (bit 0: macros in explanation mode, bit 1:
 * an IPv6 client, bit 2: every address lookup answers with the client)
 * and then a record. Checked: spf_record_check accepts exactly when every
 * term parses, and then each term lies inside the record, has a kind, a
 * mechanism's qualifier, CIDR lengths in range and a domain-spec that
 * passes spf_macro_check and expands NUL-terminated within its buffer or
 * fails; a string spf_macro_check refuses never expands. Then the record
 * is evaluated with every TXT lookup answering it (so include and
 * redirect recurse into it): the evaluation ends, within its lookup
 * budget and the RFC's limits, with one of the seven results.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "spf_eval.h"
#include "spf_macro.h"
#include "spf_record.h"

static void check_expand(const char *s, size_t len, bool exp, const struct spf_macro_env *env)
{
	char out[300];
	memset(out, 'x', sizeof out);
	bool valid = spf_macro_check(s, len, exp, NULL);
	bool ok = spf_macro_expand(s, len, exp, env, out, sizeof out);
	if (ok) {
		CHECK(valid);
		CHECK(memchr(out, '\0', sizeof out) != NULL);
	}
	if (!valid)
		CHECK(!ok);
}

static struct spf_eval ev;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > SPF_RECORD_MAX + 1)
		return 0;
	unsigned flags = data[0];
	const char *rec = (const char *)data + 1;
	size_t len = size - 1;
	bool exp = flags & 1;
	struct ipaddr ip = { AF_INET, { 192, 0, 2, 1 } };
	if (flags & 2)
		ip = (struct ipaddr){ AF_INET6, { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 } };
	struct spf_macro_env env = { .local = "a.b-c", .sender_domain = "example.com",
				     .domain = "example.com", .ip = &ip, .helo = "helo.example" };

	check_expand(rec, len, exp, &env);

	struct spf_term redirect, expm, t;
	bool valid = spf_record_check(rec, len, &redirect, &expm);
	size_t pos = 0;
	int rc;
	while ((rc = spf_term_next(rec, len, &pos, &t)) > 0) {
		CHECK(pos <= len);
		CHECK(t.text >= rec && t.text + t.text_len <= rec + len && t.text_len > 0);
		CHECK(t.kind <= SPF_UNKNOWN_MOD);
		if (t.kind < SPF_REDIRECT)
			CHECK(t.qual == SPF_PASS || t.qual == SPF_FAIL || t.qual == SPF_SOFTFAIL ||
			      t.qual == SPF_NEUTRAL);
		CHECK(t.cidr4 <= 32 && t.cidr6 <= 128);
		if (t.spec) {
			CHECK(t.spec >= rec && t.spec + t.spec_len <= rec + len);
			CHECK(spf_macro_check(t.spec, t.spec_len, false, NULL));
			check_expand(t.spec, t.spec_len, false, &env);
		}
	}
	if (valid)
		CHECK(rc == 0);
	if (rc < 0)
		CHECK(!valid);

	/* the evaluation on a zone where every TXT record is this one */
	struct spf_input in = { .ip = ip, .domain = "example.com", .local = "a.b-c",
				.helo = "helo.example", .max_prefix4 = 16, .max_prefix6 = 32 };
	spf_eval_init(&ev, &in);
	static struct dns_txt txt;
	static struct dns_answer ans;
	unsigned steps = 0;
	while (spf_eval_run(&ev) == SPF_STEP_LOOKUP) {
		CHECK(++steps <= SPF_BUDGET_DEFAULT);
		CHECK(memchr(ev.q.name, '\0', sizeof ev.q.name) != NULL);
		if (ev.q.type == DNS_T_TXT) {
			memset(&txt, 0, offsetof(struct dns_txt, buf));
			txt.status = DNS_OK;
			txt.n = 1;
			txt.rr[0].len = len;
			memcpy(txt.buf, rec, len);
			spf_eval_feed_txt(&ev, &txt);
			continue;
		}
		memset(&ans, 0, offsetof(struct dns_answer, rr));
		ans.type = ev.q.type;
		ans.status = DNS_NXDOMAIN;
		if (flags & 4) {
			ans.status = DNS_OK;
			ans.n = 1;
			memset(&ans.rr[0], 0, sizeof ans.rr[0]);
			ans.rr[0].addr = ip;
			memcpy(ans.rr[0].name, "mail.example.com", sizeof "mail.example.com");
		}
		spf_eval_feed(&ev, &ans);
	}
	CHECK(ev.out.r <= SPF_PERMERROR);
	CHECK(ev.out.lookups == steps);
	CHECK(memchr(ev.out.explanation, '\0', sizeof ev.out.explanation) != NULL);
	if (ev.out.narrow_pass)
		CHECK(ev.out.r == SPF_PASS && ev.out.kind != SPF_ALL);
	return 0;
}
