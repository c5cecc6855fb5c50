/*
 * The RCPT rule table (proxy/rcpt_rules.c) with fakes for DNS, MX sets,
 * FCrDNS, the store and the clock: every rule, every temporary failure and
 * the deferral semantics, without a network or an event loop. A lookup's
 * answer is held until the test "runs the loop" (deliver), as the real
 * ones come later from the loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rcpt_rules.h"
#include "tmpdir.h"

/* ---- the fake world ---- */

enum op_kind { OP_DNS, OP_MX, OP_FCRDNS, OP_STORE, OP_SCORE, OP_SPF };

struct op {
	enum op_kind kind;
	bool live;
	void *fn, *arg;
	char name[DNS_NAME_MAX];
	uint16_t type;
};

#define OPS_MAX 64
static struct op ops[OPS_MAX];
static size_t nops;

/* DNS: (name, type) -> status; anything else NXDOMAIN. */
static struct zone_row {
	const char *name;
	uint16_t type;
	enum dns_status status;
	bool null_mx;
} zone[16];
static size_t nzone;

static struct {
	const char *domain;
	struct mxset set;
} mxsets[4];
static size_t nmx;

static enum fcrdns_result fcrdns_answer;
static const char *fcrdns_name;
static struct store_result store_answer;
static unsigned asked[6];                /* lookups by kind */
static bool woken;
static double clock_now;

/* The connection's score: known once its lookups answered (OP_SCORE,
 * one per connection as the name's). */
static struct score conn_score;
static bool score_known;
static struct client_facts_wait *score_waiter;
static const char *query_helo = "h.example";

static struct op *new_op(enum op_kind kind, void *fn, void *arg, const char *name, uint16_t type)
{
	assert_true(nops < OPS_MAX);
	struct op *o = &ops[nops++];
	*o = (struct op){ .kind = kind, .live = true, .fn = fn, .arg = arg, .type = type };
	snprintf(o->name, sizeof o->name, "%s", name ? name : "");
	asked[kind]++;
	return o;
}

static void cancel_op(void *q)
{
	if (q)
		((struct op *)q)->live = false;
}

static struct dns_query *fake_lookup(const char *name, uint16_t type, dns_done_fn done, void *arg)
{
	return (struct dns_query *)new_op(OP_DNS, (void *)done, arg, name, type);
}

static struct mxset_req *fake_mx(const char *domain, mxset_fn done, void *arg)
{
	return (struct mxset_req *)new_op(OP_MX, (void *)done, arg, domain, 0);
}

/* The connection's facts: the name is looked up once, by the first check
 * that asks (OP_FCRDNS), and known to every later one. */
static struct client_facts facts;
static char listed_name[DNS_NAME_MAX];   /* facts.listed points here */
static struct client_facts_wait *facts_waiter;

static bool fake_client_name(struct client_facts *f, struct client_facts_wait *w,
			     void (*fn)(void *arg), void *arg)
{
	assert_ptr_equal(f, &facts);
	if (f->state == CN_KNOWN)
		return true;
	assert_null(facts_waiter);
	w->fn = fn;
	w->arg = arg;
	facts_waiter = w;
	new_op(OP_FCRDNS, NULL, NULL, NULL, 0);
	return false;
}

static void fake_client_name_unwait(struct client_facts_wait *w)
{
	if (facts_waiter == w)
		facts_waiter = NULL;
	if (score_waiter == w)
		score_waiter = NULL;
}


static const struct score *fake_client_score(struct client_facts *f, struct client_facts_wait *w,
					     void (*fn)(void *arg), void *arg)
{
	assert_ptr_equal(f, &facts);
	if (score_known)
		return &conn_score;
	assert_null(score_waiter);
	w->fn = fn;
	w->arg = arg;
	w->node.next = &w->node;   /* linked: unwait takes it back */
	score_waiter = w;
	new_op(OP_SCORE, NULL, NULL, NULL, 0);
	return NULL;
}

/* The transaction's SPF check: known (or never started) at once, or
 * ASKING until the loop runs (OP_SPF), which makes it SPF_OUTCOME for
 * SPF_DOMAIN. */
static struct spf_txn spf;
static struct spf_txn_wait *spf_waiter;
static enum spf_result spf_outcome;
static bool spf_narrow;

static bool fake_spf_known(struct spf_txn *t, struct spf_txn_wait *w, void (*fn)(void *arg),
			   void *arg)
{
	assert_ptr_equal(t, &spf);
	if (t->state != SPF_TXN_ASKING)
		return true;
	assert_null(spf_waiter);
	w->fn = fn;
	w->arg = arg;
	spf_waiter = w;
	new_op(OP_SPF, NULL, NULL, NULL, 0);
	return false;
}

static void fake_spf_unwait(struct spf_txn_wait *w)
{
	if (spf_waiter == w)
		spf_waiter = NULL;
}

/* The check under way, for SENDER_DOMAIN: RESULT once the loop runs. */
static char spf_domain[DNS_NAME_MAX];

static void spf_asking(const char *domain, enum spf_result result, bool narrow)
{
	snprintf(spf_domain, sizeof spf_domain, "%s", domain);
	spf = (struct spf_txn){ .state = SPF_TXN_ASKING, .domain = spf_domain };
	spf_outcome = result;
	spf_narrow = narrow;
}

static struct triplet last_triplet;
static struct gl_params last_params;

static struct store_call *fake_store(const struct gl_params *p, const struct triplet *t,
				     store_done_fn done, void *arg)
{
	last_params = *p;
	last_triplet = *t;
	return (struct store_call *)new_op(OP_STORE, (void *)done, arg, NULL, 0);
}

/* Traps set (client_score_trap: it makes the connection's score
 * trapped), the trap time the store would give, the primary's state. */
static int traps_set;
static int64_t trap_time;
static bool primary_answers;

static void fake_trap(struct gg_config *c, struct client_facts *f)
{
	(void)c;
	assert_ptr_equal(f, &facts);
	traps_set++;
	score_add(&conn_score, SIG_SPAMTRAP, NULL, 0);
}

static int64_t fake_trapped_at(struct client_facts *f)
{
	assert_ptr_equal(f, &facts);
	return trap_time;
}

static bool fake_primary_up(const char *domain)
{
	(void)domain;
	return primary_answers;
}

static void fake_dns_cancel(struct dns_query *q) { cancel_op(q); }
static void fake_mx_cancel(struct mxset_req *r) { cancel_op(r); }
static void fake_store_cancel(struct store_call *c) { cancel_op(c); }

static double fake_now(void)
{
	return clock_now += 0.001;
}

static void fake_wake(void *owner)
{
	(void)owner;
	woken = true;
}

static const struct rcpt_env env = {
	.lookup = fake_lookup,
	.lookup_cancel = fake_dns_cancel,
	.mx = fake_mx,
	.mx_cancel = fake_mx_cancel,
	.client_name = fake_client_name,
	.client_name_unwait = fake_client_name_unwait,
	.spf_known = fake_spf_known,
	.spf_unwait = fake_spf_unwait,
	.client_score = fake_client_score,
	.store = fake_store,
	.store_cancel = fake_store_cancel,
	.trap = fake_trap,
	.trapped_at = fake_trapped_at,
	.primary_up = fake_primary_up,
	.now = fake_now,
	.wake = fake_wake,
};

/* A name that never answers (a server that times out and a check that
 * is cancelled first) stays pending; everything else answers. */
static const char *silent_name;

static void answer(struct op *o)
{
	o->live = false;
	switch (o->kind) {
	case OP_DNS: {
		struct dns_answer a = { .status = DNS_NXDOMAIN, .type = o->type };
		for (size_t i = 0; i < nzone; i++)
			if (strcmp(zone[i].name, o->name) == 0 && zone[i].type == o->type) {
				a.status = zone[i].status;
				if (zone[i].null_mx) {
					a.n = 1;
					a.rr[0].pref = 0;
				}
			}
		((dns_done_fn)o->fn)(o->arg, &a);
		break;
	}
	case OP_MX: {
		struct mxset m = { .status = DNS_NXDOMAIN };
		for (size_t i = 0; i < nmx; i++)
			if (strcmp(mxsets[i].domain, o->name) == 0)
				m = mxsets[i].set;
		((mxset_fn)o->fn)(o->arg, &m);
		break;
	}
	case OP_FCRDNS: {
		facts.state = CN_KNOWN;
		facts.result = fcrdns_answer;
		snprintf(listed_name, sizeof listed_name, "%s", fcrdns_name);
		facts.listed = fcrdns_answer == FCRDNS_MATCH ? listed_name : NULL;
		/* the confirmed name too: these tests look at what rules do with
		 * it, whatever matched which pattern */
		facts.name = facts.listed;
		struct client_facts_wait *w = facts_waiter;
		facts_waiter = NULL;
		if (w)
			w->fn(w->arg);
		break;
	}
	case OP_STORE:
		((store_done_fn)o->fn)(o->arg, &store_answer);
		break;
	case OP_SCORE: {
		score_known = true;
		struct client_facts_wait *w = score_waiter;
		score_waiter = NULL;
		if (w)
			w->fn(w->arg);
		break;
	}
	case OP_SPF: {
		spf.state = SPF_TXN_KNOWN;
		spf.result = spf_outcome;
		spf.narrow_pass = spf_outcome == SPF_PASS && spf_narrow;
		struct spf_txn_wait *w = spf_waiter;
		spf_waiter = NULL;
		if (w)
			w->fn(w->arg);
		break;
	}
	}
}

/* Answers every live lookup (but the silent ones); false when none was. */
static bool deliver(void)
{
	bool any = false;
	size_t n = nops;   /* answers may start new lookups: those wait a turn */
	for (size_t i = 0; i < n; i++) {
		struct op *o = &ops[i];
		if (!o->live || (silent_name && o->kind == OP_DNS && strcmp(o->name, silent_name) == 0))
			continue;
		answer(o);
		any = true;
	}
	return any;
}

/* ---- the configuration and one decision ---- */

static struct gg_config *cfg;

/* The settings every test shares, then EXTRA (which may give its own
 * local_domains or store). */
static void configure(const char *extra)
{
	char text[4096];
	snprintf(text, sizeof text,
		 "myhostname = \"gw.example\";\n"
		 "listen = [ \"127.0.0.1:2525\" ];\n"
		 "mynetworks = [ \"10.9.0.0/16\" ];\n"
		 "my_addresses = [ \"192.0.2.20\" ];\n"
		 "%s%s%s\n",
		 strstr(extra, "local_domains") ? "" : "local_domains = [ \"local.example\" ];\n",
		 strstr(extra, "store =") ? "" : "store = { type = \"memory\"; file = \"\"; };\n",
		 extra);
	const char *file = path("gg.conf");
	write_file(file, text, strlen(text));
	char err[512];
	gg_config_unref(cfg);
	cfg = gg_config_load(file, err, sizeof err);
	if (!cfg)
		fail_msg("config: %s", err);
}

/* The policy service asks (struct rcpt_query.policy). */
static bool as_policy;

static void world_reset(void)
{
	as_policy = false;
	nops = nzone = nmx = 0;
	memset(asked, 0, sizeof asked);
	silent_name = NULL;
	fcrdns_answer = FCRDNS_NO_MATCH;
	facts = (struct client_facts){ .state = CN_UNASKED };
	facts_waiter = NULL;
	fcrdns_name = "";
	store_answer = (struct store_result){
		.ok = true, .d = { .action = GL_GREYLIST, .reason = GL_REASON_NEW, .delay_left = 300 } };
	memset(&last_triplet, 0, sizeof last_triplet);
	memset(&last_params, 0, sizeof last_params);
	conn_score = (struct score){ 0 };
	score_known = false;
	score_waiter = NULL;
	query_helo = "h.example";
	spf = (struct spf_txn){ .state = SPF_TXN_NONE };
	spf_waiter = NULL;
	traps_set = 0;
	trap_time = 0;
	primary_answers = false;
}

/* SPF passed narrowly for DOMAIN, known before the RCPT. */
static void spf_passed(const char *domain)
{
	spf_asking(domain, SPF_PASS, true);
	spf.state = SPF_TXN_KNOWN;
	spf.narrow_pass = true;
}

static void dns(const char *name, uint16_t type, enum dns_status st)
{
	zone[nzone++] = (struct zone_row){ name, type, st, false };
}

static struct mxset *mx(const char *domain)
{
	mxsets[nmx].domain = domain;
	mxsets[nmx].set = (struct mxset){ .status = DNS_OK };
	return &mxsets[nmx++].set;
}

static void mx_host(struct mxset *m, uint16_t pref, const char *addr)
{
	struct mx_host *h = &m->host[m->n++];
	h->pref = pref;
	snprintf(h->name, sizeof h->name, "mx%zu.example", m->n);
	h->naddr = 1;
	assert_true(ipaddr_parse(addr, &h->addr[0]));
}

/* Runs the table for one RCPT to the end, answering lookups as the loop
 * would; returns the verdict. */
static struct rcpt_verdict decide_for(const char *client, const char *sender, const char *rcpt)
{
	struct ipaddr a;
	assert_true(ipaddr_parse(client, &a));
	struct smtp_path p;
	char arg[600];
	snprintf(arg, sizeof arg, "TO:<%s>", rcpt);
	assert_int_equal(smtp_path_parse(arg, strlen(arg), "TO:", &p), SMTP_PATH_OK);
	struct rcpt_query q = { .cfg = cfg, .facts = &facts, .client = &a, .client_str = client, .helo = query_helo,
				.sender = sender, .rcpt = &p, .tls = NULL,
				.spf = &spf, .policy = as_policy };
	struct rcpt_rules *r = rcpt_rules_new(&env, NULL, &q);
	struct rcpt_verdict v;
	for (int turns = 0; !rcpt_rules_run(r, &v); turns++) {
		woken = false;
		if (!deliver())
			fail_msg("the rules wait for a lookup that never answers");
		assert_true(woken);
		assert_true(turns < 20);
	}
	rcpt_rules_free(r);
	return v;
}

#define CLIENT "192.0.2.1"

static void expect(struct rcpt_verdict v, enum rcpt_action action, enum why rule, const char *reply)
{
	assert_int_equal(v.action, action);
	if (v.rule != rule)
		fail_msg("rule %s, expected %s", why_name(v.rule) ? why_name(v.rule) : "(none)",
			 why_name(rule) ? why_name(rule) : "(none)");
	if (reply && strncmp(v.reply, reply, strlen(reply)) != 0)
		fail_msg("reply \"%s\", expected \"%s...\"", v.reply, reply);
}

/* ---- the table ---- */

static void test_table_names(void **state)
{
	(void)state;
	size_t n = 0;
	for (; rcpt_rules_row(n) != WHY_NONE; n++) {
		assert_non_null(why_name(rcpt_rules_row(n)));
		for (size_t k = 0; k < n; k++)
			assert_int_not_equal(rcpt_rules_row(k), rcpt_rules_row(n));
	}
	assert_int_equal(n, 12);
	assert_int_equal(rcpt_rules_row(0), WHY_MYNETWORKS);
	assert_int_equal(rcpt_rules_row(n - 3), WHY_SPAMTRAP);
	assert_int_equal(rcpt_rules_row(n - 2), WHY_HOSTILE);
	assert_int_equal(rcpt_rules_row(n - 1), WHY_GREYLIST);
}

/* ---- each rule ---- */

static void test_mynetworks(void **state)
{
	(void)state;
	world_reset();
	configure("reject_non_fqdn_sender = true;");
	/* trusted: even a non-FQDN sender and a foreign domain pass, unasked */
	expect(decide_for("10.9.1.2", "s", "r@foreign.example"), RCPT_ACCEPT, WHY_MYNETWORKS, NULL);
	assert_int_equal(nops, 0);
}

static void test_non_fqdn_sender(void **state)
{
	(void)state;
	world_reset();
	configure("reject_non_fqdn_sender = true; reject_unknown_sender_domain = false;"
		  "whitelist = { clients = [ \"192.0.2.9/32\" ]; };");
	expect(decide_for(CLIENT, "s@localhost", "r@local.example"), RCPT_REJECT,
	       WHY_REJECT_NON_FQDN_SENDER, "504 5.5.2 <s@localhost>: Sender address rejected");
	expect(decide_for(CLIENT, "s", "r@local.example"), RCPT_REJECT, WHY_REJECT_NON_FQDN_SENDER,
	       "504 5.5.2");
	/* the null sender and a whitelisted client are not checked */
	expect(decide_for(CLIENT, "", "r@local.example"), RCPT_DEFER, WHY_GREYLIST, "450 4.2.0");
	expect(decide_for("192.0.2.9", "s", "r@local.example"), RCPT_ACCEPT, WHY_WHITELIST_CLIENT,
	       NULL);
}

static void test_unknown_sender(void **state)
{
	(void)state;
	world_reset();
	configure("greylist = { enabled = false; };");
	dns("mx.example", DNS_T_MX, DNS_OK);
	dns("nodata.example", DNS_T_MX, DNS_NODATA);
	dns("aonly.example", DNS_T_MX, DNS_NODATA);
	dns("aonly.example", DNS_T_A, DNS_OK);
	dns("tf.example", DNS_T_MX, DNS_TEMPFAIL);
	dns("tfa.example", DNS_T_MX, DNS_NODATA);
	dns("tfa.example", DNS_T_A, DNS_TEMPFAIL);
	zone[nzone++] = (struct zone_row){ "nullmx.example", DNS_T_MX, DNS_OK, true };
	expect(decide_for(CLIENT, "s@mx.example", "r@local.example"), RCPT_ACCEPT,
	       WHY_GREYLIST_DISABLED, NULL);
	expect(decide_for(CLIENT, "s@aonly.example", "r@local.example"), RCPT_ACCEPT,
	       WHY_GREYLIST_DISABLED, NULL);
	expect(decide_for(CLIENT, "s@nx.example", "r@local.example"), RCPT_REJECT,
	       WHY_REJECT_UNKNOWN_SENDER_DOMAIN, "550 5.1.8 <s@nx.example>: Sender address rejected: Domain not found");
	expect(decide_for(CLIENT, "s@nodata.example", "r@local.example"), RCPT_REJECT,
	       WHY_REJECT_UNKNOWN_SENDER_DOMAIN, "550 5.1.8");
	expect(decide_for(CLIENT, "s@nullmx.example", "r@local.example"), RCPT_REJECT,
	       WHY_REJECT_UNKNOWN_SENDER_DOMAIN, "550 5.7.27");
	expect(decide_for(CLIENT, "s@tf.example", "r@local.example"), RCPT_DEFER,
	       WHY_REJECT_UNKNOWN_SENDER_DOMAIN,
	       "450 4.1.8 <s@tf.example>: Sender address rejected: Domain not found (temporary DNS failure)");
	expect(decide_for(CLIENT, "s@tfa.example", "r@local.example"), RCPT_DEFER,
	       WHY_REJECT_UNKNOWN_SENDER_DOMAIN, "450 4.1.8");
	/* an address literal is not looked up */
	unsigned before = asked[OP_DNS];
	expect(decide_for(CLIENT, "s@[192.0.2.5]", "r@local.example"), RCPT_ACCEPT,
	       WHY_GREYLIST_DISABLED, NULL);
	assert_int_equal(asked[OP_DNS], before);
}

static void test_non_fqdn_rcpt(void **state)
{
	(void)state;
	world_reset();
	configure("reject_non_fqdn_recipient = true; reject_unknown_sender_domain = false;");
	expect(decide_for(CLIENT, "s@x.example", "u@localhost"), RCPT_REJECT,
	       WHY_REJECT_NON_FQDN_RECIPIENT,
	       "504 5.5.2 <u@localhost>: Recipient address rejected: need fully-qualified address");
}

static void test_relay(void **state)
{
	(void)state;
	world_reset();
	configure("reject_unknown_sender_domain = false; relay_domains = [ \"relay.example\" ];"
		  "permit_mx_backup = true; greylist = { enabled = false; };");
	struct mxset *b = mx("backup.example");
	mx_host(b, 10, "198.51.100.1");
	mx_host(b, 20, "192.0.2.20");
	struct mxset *p = mx("primary.example");
	mx_host(p, 10, "192.0.2.20");
	struct mxset *t = mx("tf.example");
	mx_host(t, 10, "198.51.100.1");
	t->tempfail = true;
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_ACCEPT,
	       WHY_GREYLIST_DISABLED, NULL);
	expect(decide_for(CLIENT, "s@x.example", "r@relay.example"), RCPT_ACCEPT,
	       WHY_GREYLIST_DISABLED, NULL);
	assert_int_equal(asked[OP_MX], 0);
	expect(decide_for(CLIENT, "s@x.example", "r@backup.example"), RCPT_ACCEPT,
	       WHY_GREYLIST_DISABLED, NULL);
	expect(decide_for(CLIENT, "s@x.example", "r@primary.example"), RCPT_REJECT, WHY_RELAY_DENIED,
	       "554 5.7.1 <r@primary.example>: Relay access denied");
	expect(decide_for(CLIENT, "s@x.example", "r@nomx.example"), RCPT_REJECT, WHY_RELAY_DENIED,
	       "554 5.7.1");
	expect(decide_for(CLIENT, "s@x.example", "r@tf.example"), RCPT_DEFER, WHY_PERMIT_MX_BACKUP,
	       "450 4.4.4 <r@tf.example>: Recipient address rejected: temporary DNS failure");
	configure("reject_unknown_sender_domain = false;");
	expect(decide_for(CLIENT, "s@x.example", "r@backup.example"), RCPT_REJECT, WHY_RELAY_DENIED,
	       "554 5.7.1");
}

static void test_exemptions(void **state)
{
	(void)state;
	world_reset();
	configure("reject_unknown_sender_domain = false;"
		  "whitelist = { clients = [ \"192.0.2.9/32\" ]; client_names = [ \".good.example\" ];"
		  " senders = [ \"ok@s.example\" ]; recipients = [ \"ok@local.example\" ]; };");
	expect(decide_for("192.0.2.9", "s@x.example", "r@local.example"), RCPT_ACCEPT,
	       WHY_WHITELIST_CLIENT, NULL);
	assert_int_equal(asked[OP_FCRDNS], 0);
	fcrdns_answer = FCRDNS_MATCH;
	fcrdns_name = "a.good.example";
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_ACCEPT,
	       WHY_WHITELIST_CLIENT_NAME, NULL);
	/* the name is a fact of the connection: asked once for all its RCPTs */
	expect(decide_for(CLIENT, "s@x.example", "r2@local.example"), RCPT_ACCEPT,
	       WHY_WHITELIST_CLIENT_NAME, NULL);
	assert_int_equal(asked[OP_FCRDNS], 1);
	facts = (struct client_facts){ .state = CN_UNASKED };   /* a new connection */
	fcrdns_answer = FCRDNS_TEMPFAIL;
	expect(decide_for(CLIENT, "ok@s.example", "r@local.example"), RCPT_ACCEPT,
	       WHY_WHITELIST_SENDER, NULL);
	expect(decide_for(CLIENT, "s@x.example", "ok@local.example"), RCPT_ACCEPT,
	       WHY_WHITELIST_RECIPIENT, NULL);
	assert_int_equal(asked[OP_STORE], 0);
	/* whitelisted clients still may not relay */
	expect(decide_for("192.0.2.9", "s@x.example", "r@foreign.example"), RCPT_REJECT,
	       WHY_RELAY_DENIED, NULL);
}

static void test_greylist(void **state)
{
	(void)state;
	world_reset();
	configure("reject_unknown_sender_domain = false; local_domains = [ \"local.example\", \"m.example\" ];");
	struct mxset *m = mx("m.example");
	mx_host(m, 10, CLIENT);
	expect(decide_for(CLIENT, "S@X.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST,
	       "450 4.2.0 <r@local.example>: Recipient address rejected: Greylisted, retry in 300 seconds");
	assert_string_equal(last_triplet.net, "192.0.2.0/24");
	assert_int_equal(asked[OP_MX], 1);   /* a refusal: is the client an MX host? */
	store_answer.d = (struct gl_decision){ .action = GL_GREYLIST, .reason = GL_REASON_EARLY,
					       .delay_left = 1 };
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST,
	       "450 4.2.0 <r@local.example>: Recipient address rejected: Greylisted, retry in 1 second");
	expect(decide_for(CLIENT, "s@x.example", "r@m.example"), RCPT_ACCEPT, WHY_MX_HOST, NULL);
	store_answer.d = (struct gl_decision){ .action = GL_PASS, .reason = GL_REASON_TRIPLET };
	unsigned mx_before = asked[OP_MX];
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_ACCEPT, WHY_TRIPLET, NULL);
	assert_int_equal(asked[OP_MX], mx_before);   /* a pass never waits for DNS */
	store_answer = (struct store_result){ .ok = false, .error = "down" };
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_ACCEPT, WHY_STORE_FAILURE,
	       NULL);
	configure("reject_unknown_sender_domain = false; store = { type = \"memory\"; file = \"\"; failure = \"tempfail\"; };");
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_STORE_FAILURE,
	       "451 4.3.0 <r@local.example>: Temporary lookup failure, try again later");
}

/* Behind Postfix the syntax, sender domain and relay rows are Postfix's:
 * what they would refuse is greylisted; the whitelists and mynetworks
 * still pass; a triplet's pass says how long it waited. */
static void test_policy_rows(void **state)
{
	(void)state;
	world_reset();
	as_policy = true;
	configure("reject_non_fqdn_recipient = true;"
		  "whitelist = { senders = [ \"ok@s.example\" ]; };");
	dns("tf.example", DNS_T_MX, DNS_TEMPFAIL);
	expect(decide_for(CLIENT, "s@tf.example", "r@foreign.example"), RCPT_DEFER, WHY_GREYLIST,
	       "450 4.2.0 <r@foreign.example>: Recipient address rejected: Greylisted");
	expect(decide_for(CLIENT, "s@nofqdn", "r@localhost"), RCPT_DEFER, WHY_GREYLIST, NULL);
	assert_int_equal(asked[OP_DNS], 0);
	expect(decide_for("10.9.1.1", "s@x.example", "r@foreign.example"), RCPT_ACCEPT,
	       WHY_MYNETWORKS, NULL);
	expect(decide_for(CLIENT, "ok@s.example", "r@foreign.example"), RCPT_ACCEPT,
	       WHY_WHITELIST_SENDER, NULL);
	store_answer.d = (struct gl_decision){ .action = GL_PASS, .reason = GL_REASON_TRIPLET,
					       .waited = 321, .first_pass = true };
	struct rcpt_verdict v = decide_for(CLIENT, "s@x.example", "r@foreign.example");
	expect(v, RCPT_ACCEPT, WHY_TRIPLET, NULL);
	assert_true(v.first_pass);
	assert_int_equal(v.waited, 321);
	/* a triplet that passed before, and the auto-whitelist: no wait to tell */
	store_answer.d = (struct gl_decision){ .action = GL_PASS, .reason = GL_REASON_TRIPLET,
					       .waited = 86400 };
	v = decide_for(CLIENT, "s@x.example", "r@foreign.example");
	assert_false(v.first_pass);
	assert_int_equal(v.waited, 0);
	store_answer.d = (struct gl_decision){ .action = GL_PASS, .reason = GL_REASON_AWL };
	assert_false(decide_for(CLIENT, "s@x.example", "r@foreign.example").first_pass);
	size_t rows = 0;
	for (size_t i = 0; rcpt_rules_row(i) != WHY_NONE; i++)
		rows += rcpt_rules_row_in_policy(i);
	assert_int_equal(rows, 7);
	assert_false(rcpt_rules_row_in_policy(4));   /* relay_denied */
	for (size_t i = 0; rcpt_rules_row(i) != WHY_NONE; i++)
		if (rcpt_rules_row(i) == WHY_HOSTILE)
			assert_true(rcpt_rules_row_in_policy(i));   /* the class row */
}

/* ---- the deferral semantics ---- */

/* The key's kind: spf: when SPF passed narrowly, ptr: for a confirmed
 * name that is not generic, else the network, whose text alone is hashed
 * as before. */
static void test_pool_keys(void **state)
{
	(void)state;
	world_reset();
	configure("reject_unknown_sender_domain = false;");
	fcrdns_answer = FCRDNS_MATCH;
	fcrdns_name = "mx7.out.Example.COM";
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST, NULL);
	assert_int_equal(asked[OP_FCRDNS], 1);
	assert_string_equal(last_triplet.pool, "ptr:example.com");
	assert_string_equal(last_triplet.net, "192.0.2.0/24");

	spf_passed("Bounce.Example.ORG");
	expect(decide_for(CLIENT, "s@bounce.example.org", "r@local.example"), RCPT_DEFER,
	       WHY_GREYLIST, NULL);
	assert_string_equal(last_triplet.pool, "spf:bounce.example.org");
	assert_int_equal(asked[OP_FCRDNS], 1);   /* the name is the connection's */

	/* a generic name: the network */
	world_reset();
	fcrdns_answer = FCRDNS_MATCH;
	fcrdns_name = "192-0-2-1.dyn.example.net";
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST, NULL);
	assert_string_equal(last_triplet.pool, "");
	struct triplet before;
	assert_int_equal(triplet_make(&before, "192.0.2.0/24", "s@x.example", 11, "r@local.example",
				      15), 0);
	assert_string_equal(last_triplet.hex, before.hex);

	/* pool keys off: no name is looked up for them */
	world_reset();
	configure("reject_unknown_sender_domain = false; greylist = { pool_keys = [ ]; };");
	fcrdns_answer = FCRDNS_MATCH;
	fcrdns_name = "mx7.out.example.com";
	spf_passed("bounce.example.org");
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST, NULL);
	assert_int_equal(asked[OP_FCRDNS], 0);
	assert_string_equal(last_triplet.pool, "");
}

/* The SPF check started at MAIL FROM: the greylisting row waits for it,
 * and a narrow pass is the key; every other outcome falls through to the
 * next kind (ptr, then the network). */
static void test_spf_key(void **state)
{
	(void)state;
	world_reset();
	configure("reject_unknown_sender_domain = false;");
	fcrdns_answer = FCRDNS_MATCH;
	fcrdns_name = "mx7.out.example.com";
	spf_asking("bounce.example.org", SPF_PASS, true);
	expect(decide_for(CLIENT, "s@bounce.example.org", "r@local.example"), RCPT_DEFER,
	       WHY_GREYLIST, "450 4.2.0");
	assert_int_equal(asked[OP_SPF], 1);
	assert_string_equal(last_triplet.pool, "spf:bounce.example.org");
	/* [spf, ptr]: SPF gave the key, the client's name is not waited for */
	assert_int_equal(asked[OP_FCRDNS], 0);

	/* fail, softfail, neutral, temperror, permerror, a wide pass: the next kind */
	const enum spf_result no_key[] = { SPF_FAIL, SPF_SOFTFAIL, SPF_NEUTRAL, SPF_TEMPERROR,
					   SPF_PERMERROR, SPF_NONE, SPF_PASS };
	for (size_t i = 0; i < sizeof no_key / sizeof no_key[0]; i++) {
		world_reset();
		fcrdns_answer = FCRDNS_MATCH;
		fcrdns_name = "mx7.out.example.com";
		spf_asking("bounce.example.org", no_key[i], false);
		expect(decide_for(CLIENT, "s@bounce.example.org", "r@local.example"), RCPT_DEFER,
		       WHY_GREYLIST, "450 4.2.0");
		assert_int_equal(asked[OP_SPF], 1);
		assert_int_equal(asked[OP_FCRDNS], 1);
		assert_string_equal(last_triplet.pool, "ptr:example.com");
	}
	/* ... and without a name, the network */
	world_reset();
	spf_asking("bounce.example.org", SPF_TEMPERROR, false);
	expect(decide_for(CLIENT, "s@bounce.example.org", "r@local.example"), RCPT_DEFER,
	       WHY_GREYLIST, "450 4.2.0");
	assert_string_equal(last_triplet.pool, "");
	assert_string_equal(last_triplet.net, "192.0.2.0/24");

	/* [ptr, spf] with a good name: the SPF outcome is not waited for */
	world_reset();
	configure("reject_unknown_sender_domain = false; greylist = { pool_keys = [ \"ptr\", \"spf\" ]; };");
	fcrdns_answer = FCRDNS_MATCH;
	fcrdns_name = "mx7.out.example.com";
	spf_asking("bounce.example.org", SPF_PASS, true);
	expect(decide_for(CLIENT, "s@bounce.example.org", "r@local.example"), RCPT_DEFER,
	       WHY_GREYLIST, "450 4.2.0");
	assert_int_equal(asked[OP_SPF], 0);
	assert_string_equal(last_triplet.pool, "ptr:example.com");
}

/* The greylisting row waits for SPF only when it runs: an earlier rule
 * that decides, or a deferral already remembered, never waits for it. */
static void test_spf_waited_for_only_when_needed(void **state)
{
	(void)state;
	world_reset();
	configure("whitelist = { senders = [ \"ok@bounce.example.org\" ]; };");
	dns("tf.example", DNS_T_MX, DNS_TEMPFAIL);
	dns("bounce.example.org", DNS_T_MX, DNS_OK);
	spf_asking("bounce.example.org", SPF_PASS, true);
	expect(decide_for("10.9.1.1", "s@bounce.example.org", "r@local.example"), RCPT_ACCEPT,
	       WHY_MYNETWORKS, NULL);
	expect(decide_for(CLIENT, "ok@bounce.example.org", "r@local.example"), RCPT_ACCEPT,
	       WHY_WHITELIST_SENDER, NULL);
	expect(decide_for(CLIENT, "s@tf.example", "r@local.example"), RCPT_DEFER,
	       WHY_REJECT_UNKNOWN_SENDER_DOMAIN, "450 4.1.8");
	assert_int_equal(asked[OP_SPF], 0);
	assert_int_equal(asked[OP_STORE], 0);
}

/* A check freed while it waits for SPF stops waiting. */
static void test_cancel_while_waiting_for_spf(void **state)
{
	(void)state;
	world_reset();
	configure("reject_unknown_sender_domain = false;");
	spf_asking("bounce.example.org", SPF_PASS, true);
	struct ipaddr a;
	assert_true(ipaddr_parse(CLIENT, &a));
	struct smtp_path p;
	assert_int_equal(smtp_path_parse("TO:<r@local.example>", 20, "TO:", &p), SMTP_PATH_OK);
	struct rcpt_query q = { .cfg = cfg, .facts = &facts, .client = &a, .client_str = CLIENT,
				.sender = "s@bounce.example.org", .rcpt = &p, .spf = &spf };
	struct rcpt_rules *r = rcpt_rules_new(&env, NULL, &q);
	struct rcpt_verdict v;
	assert_false(rcpt_rules_run(r, &v));
	assert_non_null(spf_waiter);
	rcpt_rules_free(r);
	assert_null(spf_waiter);
	assert_int_equal(asked[OP_STORE], 0);
}

static void test_later_reject_wins(void **state)
{
	(void)state;
	world_reset();
	configure("reject_non_fqdn_recipient = true;");
	dns("tf.example", DNS_T_MX, DNS_TEMPFAIL);
	expect(decide_for(CLIENT, "s@tf.example", "r@foreign.example"), RCPT_REJECT, WHY_RELAY_DENIED,
	       "554 5.7.1 <r@foreign.example>: Relay access denied");
	expect(decide_for(CLIENT, "s@tf.example", "r@localhost"), RCPT_REJECT,
	       WHY_REJECT_NON_FQDN_RECIPIENT, "504 5.5.2");
}

static void test_later_permit_keeps_deferral(void **state)
{
	(void)state;
	world_reset();
	configure("whitelist = { recipients = [ \"ok@local.example\" ]; };");
	dns("tf.example", DNS_T_MX, DNS_TEMPFAIL);
	expect(decide_for(CLIENT, "s@tf.example", "ok@local.example"), RCPT_DEFER,
	       WHY_REJECT_UNKNOWN_SENDER_DOMAIN, "450 4.1.8");
	/* greylisting would defer too, but is not asked: nothing is stored
	 * for a recipient that is deferred anyway */
	expect(decide_for(CLIENT, "s@tf.example", "r@local.example"), RCPT_DEFER,
	       WHY_REJECT_UNKNOWN_SENDER_DOMAIN, "450 4.1.8");
	assert_int_equal(asked[OP_STORE], 0);
}

static void test_first_deferral_is_kept(void **state)
{
	(void)state;
	world_reset();
	configure("permit_mx_backup = true;");
	dns("tf.example", DNS_T_MX, DNS_TEMPFAIL);
	struct mxset *t = mx("tfr.example");
	t->tempfail = true;
	expect(decide_for(CLIENT, "s@tf.example", "r@tfr.example"), RCPT_DEFER,
	       WHY_REJECT_UNKNOWN_SENDER_DOMAIN, "450 4.1.8");
}

/* A check freed while its lookups are out cancels them all. */
static void test_cancel_while_waiting(void **state)
{
	(void)state;
	world_reset();
	configure("");
	silent_name = "slow.example";
	struct ipaddr a;
	assert_true(ipaddr_parse(CLIENT, &a));
	struct smtp_path p;
	assert_int_equal(smtp_path_parse("TO:<r@local.example>", 20, "TO:", &p), SMTP_PATH_OK);
	struct rcpt_query q = { .cfg = cfg, .facts = &facts, .client = &a, .client_str = CLIENT,
				.sender = "s@slow.example", .rcpt = &p };
	struct rcpt_rules *r = rcpt_rules_new(&env, NULL, &q);
	struct rcpt_verdict v;
	assert_false(rcpt_rules_run(r, &v));
	assert_false(deliver());
	assert_true(ops[0].live);
	rcpt_rules_free(r);
	assert_false(ops[0].live);
}

/* ---- selective greylisting: the class row ---- */

static void set_score(int points)
{
	conn_score = (struct score){ 0 };
	score_add(&conn_score, points < 0 ? SIG_DNSWL : SIG_DNSBL, "l.example", points);
	score_known = false;
	facts = (struct client_facts){ .state = CN_UNASKED };   /* a new connection */
}

#define SCORING "reject_unknown_sender_domain = false; scoring = { suspicious = { delay = 900; }; };"

static void test_class_off(void **state)
{
	(void)state;
	world_reset();
	configure("reject_unknown_sender_domain = false;");
	set_score(20);
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST,
	       "450 4.2.0");
	assert_int_equal(asked[OP_SCORE], 0);   /* no scoring: not even asked */
	assert_int_equal(last_params.delay, 300);
}

static void test_class_trusted(void **state)
{
	(void)state;
	world_reset();
	configure(SCORING);
	set_score(-5);
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_ACCEPT, WHY_TRUSTED, NULL);
	assert_int_equal(asked[OP_STORE], 0);
	/* the score is the connection's: asked once for all its RCPTs */
	expect(decide_for(CLIENT, "s@x.example", "r2@local.example"), RCPT_ACCEPT, WHY_TRUSTED, NULL);
	assert_int_equal(asked[OP_SCORE], 1);
	/* the relay rules come first: trusted does not relay */
	expect(decide_for(CLIENT, "s@x.example", "r@foreign.example"), RCPT_REJECT, WHY_RELAY_DENIED,
	       "554 5.7.1");
}

static void test_class_hostile(void **state)
{
	(void)state;
	world_reset();
	configure(SCORING);
	set_score(9);
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_REJECT, WHY_HOSTILE,
	       "550 5.7.1 <r@local.example>: Recipient address rejected: client classed hostile (score 9)");
	assert_int_equal(asked[OP_STORE], 0);   /* never stored */
	configure("reject_unknown_sender_domain = false; scoring = { hostile = { action = \"tempfail\"; }; };");
	set_score(8);
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_HOSTILE,
	       "450 4.7.1 <r@local.example>: Recipient address rejected: client classed hostile");
	assert_int_equal(asked[OP_STORE], 0);
}

static void test_class_suspicious(void **state)
{
	(void)state;
	world_reset();
	configure(SCORING);
	set_score(1);
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST, NULL);
	assert_int_equal(last_params.delay, 300);          /* normal: greylist.delay, the AWL */
	assert_int_equal(last_params.awl_threshold, 5);
	set_score(3);
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST, NULL);
	assert_int_equal(last_params.delay, 900);          /* suspicious: longer, no AWL */
	assert_int_equal(last_params.awl_threshold, 0);
	/* this session's bad HELO adds to the connection's score */
	set_score(2);
	query_helo = "localhost";
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST, NULL);
	assert_int_equal(last_params.delay, 900);
}

/* The transaction's SPF fail (3) or softfail (1) adds to the score; the
 * class row waits for the outcome. */
static void test_class_spf_signals(void **state)
{
	(void)state;
	world_reset();
	configure(SCORING);
	set_score(0);
	spf_asking("x.example", SPF_FAIL, false);
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST, NULL);
	assert_int_equal(asked[OP_SPF], 1);
	assert_int_equal(last_params.delay, 900);          /* 3: suspicious */
	set_score(2);
	spf_asking("x.example", SPF_SOFTFAIL, false);
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST, NULL);
	assert_int_equal(last_params.delay, 900);          /* 2 + 1 */
	/* neither a pass, a neutral nor a temperror counts */
	const enum spf_result none[] = { SPF_PASS, SPF_NEUTRAL, SPF_TEMPERROR, SPF_PERMERROR };
	for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
		set_score(2);
		spf_asking("x.example", none[i], false);
		expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST,
		       NULL);
		assert_int_equal(last_params.delay, 300);
	}
	/* the weights are settings */
	configure("reject_unknown_sender_domain = false; scoring = { weights = { spf_fail = 8; }; };");
	set_score(0);
	spf_asking("x.example", SPF_FAIL, false);
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_REJECT, WHY_HOSTILE,
	       "550 5.7.1");
}

static void test_shadow(void **state)
{
	(void)state;
	world_reset();
	configure("reject_unknown_sender_domain = false; greylist = { mode = \"shadow\"; };"
		  "scoring = { };");
	set_score(0);
	/* would greylist: the store is asked, the mail passes */
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_ACCEPT, WHY_NEW, NULL);
	assert_int_equal(asked[OP_STORE], 1);
	set_score(9);
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_ACCEPT, WHY_HOSTILE, NULL);
	assert_int_equal(asked[OP_STORE], 1);              /* hostile is never stored */
	/* the rules that are no greylisting still refuse */
	expect(decide_for(CLIENT, "s@x.example", "r@foreign.example"), RCPT_REJECT, WHY_RELAY_DENIED,
	       NULL);
}

/* A RCPT to a spamtrap marks the network trapped and is refused as
 * hostile, whatever the score; the connection's later recipients are
 * hostile too; a whitelisted client is spared; shadow mode would-reject. */
static void test_spamtrap(void **state)
{
	(void)state;
	world_reset();
	configure(SCORING "spamtraps = [ \"trap@local.example\" ];");
	set_score(-5);                                     /* even a trusted one */
	expect(decide_for(CLIENT, "s@x.example", "Trap@Local.Example"), RCPT_REJECT, WHY_SPAMTRAP,
	       "550 5.7.1 <Trap@Local.Example>: Recipient address rejected: spamtrap");
	assert_int_equal(traps_set, 1);
	assert_int_equal(asked[OP_STORE], 0);
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_REJECT, WHY_HOSTILE,
	       "550 5.7.1 <r@local.example>: Recipient address rejected: client caught at a spamtrap");
	assert_int_equal(asked[OP_STORE], 0);
	configure("reject_unknown_sender_domain = false; spamtraps = [ \"trap@local.example\" ];"
		  "scoring = { hostile = { action = \"tempfail\"; }; };");
	set_score(0);
	expect(decide_for(CLIENT, "s@x.example", "trap@local.example"), RCPT_DEFER, WHY_SPAMTRAP,
	       "450 4.7.1 <trap@local.example>: Recipient address rejected: spamtrap, try again later");
	world_reset();
	configure("reject_unknown_sender_domain = false; greylist = { mode = \"shadow\"; };"
		  "scoring = { }; spamtraps = [ \"trap@local.example\" ];");
	set_score(0);
	expect(decide_for(CLIENT, "s@x.example", "trap@local.example"), RCPT_ACCEPT, WHY_SPAMTRAP, NULL);
	assert_int_equal(traps_set, 1);
	/* without scoring a spamtrap is an address like any other */
	world_reset();
	configure("reject_unknown_sender_domain = false; spamtraps = [ \"trap@local.example\" ];");
	expect(decide_for(CLIENT, "s@x.example", "trap@local.example"), RCPT_DEFER, WHY_GREYLIST, NULL);
	assert_int_equal(traps_set, 0);
}

/* The network's trap time goes to the store as void_before. */
static void test_trap_voids_pending(void **state)
{
	(void)state;
	world_reset();
	configure(SCORING "spamtraps = [ \"trap@local.example\" ];");
	set_score(0);
	trap_time = 1700000000;
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST, NULL);
	assert_int_equal(last_params.void_before, 1700000000);
}

/* backup_first goes to the store in the parameters: flag a triplet
 * stored now when the primary answers, and the flagged class's delay, AWL
 * rule or refusal; a decision of a flagged triplet carries the part (the
 * class recomputed), a hostile one is refused as the class row refuses. */
static void test_backup_first(void **state)
{
	(void)state;
	world_reset();
	configure(SCORING);
	set_score(0);
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST, NULL);
	assert_false(last_params.set_backup_first);
	assert_int_equal(last_params.flagged_delay, 900);  /* 0 + 3: suspicious */
	assert_int_equal(last_params.flagged_awl_threshold, 0);
	assert_false(last_params.flagged_refuse);
	primary_answers = true;
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST, NULL);
	assert_true(last_params.set_backup_first);
	assert_int_equal(last_params.delay, 300);
	set_score(5);                                      /* 5 + 3: hostile */
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST, NULL);
	assert_int_equal(last_params.delay, 900);
	assert_true(last_params.flagged_refuse);
	/* the store refuses the flagged triplet: hostile, with the part */
	store_answer.d = (struct gl_decision){ .action = GL_REFUSE, .reason = GL_REASON_TRIPLET,
					       .backup_first = true };
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_REJECT, WHY_HOSTILE,
	       "550 5.7.1 <r@local.example>: Recipient address rejected: client classed hostile "
	       "(score 8)");
	/* a flagged triplet's early retry: the reply the store's delay */
	set_score(0);
	store_answer.d = (struct gl_decision){ .action = GL_GREYLIST, .reason = GL_REASON_EARLY,
					       .delay_left = 600, .backup_first = true };
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST, NULL);
	/* without a weight nothing is flagged and the flagged class is the class */
	configure("reject_unknown_sender_domain = false; scoring = { weights = { backup_first = 0; }; };");
	store_answer.d = (struct gl_decision){ .action = GL_GREYLIST, .reason = GL_REASON_NEW };
	expect(decide_for(CLIENT, "s@x.example", "r@local.example"), RCPT_DEFER, WHY_GREYLIST, NULL);
	assert_false(last_params.set_backup_first);
	assert_false(last_params.flagged_refuse);
	assert_int_equal(last_params.flagged_delay, last_params.delay);
}

static int teardown(void **state)
{
	gg_config_unref(cfg);
	cfg = NULL;
	return teardown_dir(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_names),
		cmocka_unit_test(test_mynetworks),
		cmocka_unit_test(test_non_fqdn_sender),
		cmocka_unit_test(test_unknown_sender),
		cmocka_unit_test(test_non_fqdn_rcpt),
		cmocka_unit_test(test_relay),
		cmocka_unit_test(test_exemptions),
		cmocka_unit_test(test_greylist),
		cmocka_unit_test(test_policy_rows),
		cmocka_unit_test(test_later_reject_wins),
		cmocka_unit_test(test_pool_keys),
		cmocka_unit_test(test_spf_key),
		cmocka_unit_test(test_spf_waited_for_only_when_needed),
		cmocka_unit_test(test_cancel_while_waiting_for_spf),
		cmocka_unit_test(test_later_permit_keeps_deferral),
		cmocka_unit_test(test_first_deferral_is_kept),
		cmocka_unit_test(test_cancel_while_waiting),
		cmocka_unit_test(test_class_off),
		cmocka_unit_test(test_class_trusted),
		cmocka_unit_test(test_class_hostile),
		cmocka_unit_test(test_class_suspicious),
		cmocka_unit_test(test_class_spf_signals),
		cmocka_unit_test(test_shadow),
		cmocka_unit_test(test_spamtrap),
		cmocka_unit_test(test_trap_voids_pending),
		cmocka_unit_test(test_backup_first),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown);
}
