#include "rcpt_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sender_norm.h"
#include "store.h"
#include "triplet.h"

struct rcpt_check {
	rcpt_done_fn done;
	void *arg;
	struct gg_config *cfg;
	struct store_req *req;
	struct triplet t;
	char client[48];
	char helo[256];
	char rcpt[SMTP_PATH_MAX + 1];
	char sender[SMTP_PATH_MAX + 1];
};

/*
 * Relay authorisation (SPEC 4, step 4), as far as it needs no DNS: the
 * domains this host serves. Returns false with the refusal in V.
 */
static bool relay_authorised(const struct rcpt_query *q, struct rcpt_verdict *v)
{
	size_t dlen;
	const char *domain = smtp_path_domain(q->rcpt, &dlen);
	if (dlen > 0 && domainlist_match(&q->cfg->local_domains, domain, dlen)) {
		v->rule = "local_domains";
		return true;
	}
	if (dlen > 0 && domainlist_match(&q->cfg->relay_domains, domain, dlen)) {
		v->rule = "relay_domains";
		return true;
	}
	v->action = RCPT_REJECT;
	v->rule = "relay_denied";
	snprintf(v->reply, sizeof v->reply, "554 5.7.1 <%.*s>: Relay access denied",
		 (int)q->rcpt->addr_len, q->rcpt->addr);
	return false;
}

/* Which greylisting exemption applies (SPEC 4, step 5), or NULL. */
static const char *exemption(const struct rcpt_query *q)
{
	const struct gg_config *c = q->cfg;
	if (!c->greylist.enabled)
		return "disabled";
	if (netlist_match(&c->whitelist.clients, q->client))
		return "whitelist-client";
	if (addrlist_match(&c->whitelist.senders, q->sender, strlen(q->sender)))
		return "whitelist-sender";
	if (addrlist_match(&c->whitelist.recipients, q->rcpt->addr, q->rcpt->addr_len))
		return "whitelist-recipient";
	return NULL;
}

static void log_decision(const char *client, const char *helo, const char *net,
			 const char *sender, const char *rcpt, const char *action,
			 const char *reason, const struct gl_decision *d, const char *error)
{
	struct logline l;
	ll_begin(&l, LOG_LVL_INFO, "decision");
	ll_str(&l, "action", action);
	ll_str(&l, "reason", reason);
	ll_str(&l, "client", client);
	if (net)
		ll_str(&l, "net", net);
	ll_str(&l, "helo", helo);
	ll_str(&l, "sender", sender[0] ? sender : "<>");
	ll_str(&l, "rcpt", rcpt);
	if (d && d->action == GL_GREYLIST)
		ll_int(&l, "delay_left", d->delay_left);
	if (d && d->action == GL_PASS && d->reason == GL_REASON_TRIPLET)
		ll_int(&l, "waited", d->waited);
	if (d && d->capped)
		ll_str(&l, "stored", "no-capped");
	if (error)
		ll_str(&l, "error", error);
	ll_emit(&l);
}

/* "450 4.2.0 <rcpt>: Recipient address rejected: " + the configured text
 * with its one "%s" replaced by the seconds left. The text comes from the
 * configuration, so it is never used as a format string. */
static void greylist_reply(const struct gg_config *cfg, const char *rcpt, long long left,
			   char *out, size_t outlen)
{
	const char *m = cfg->greylist.message;
	const char *pct = strstr(m, "%s");
	char secs[24];
	snprintf(secs, sizeof secs, "%lld", left);
	snprintf(out, outlen, "450 4.2.0 <%s>: Recipient address rejected: %.*s%s%s", rcpt,
		 pct ? (int)(pct - m) : (int)strlen(m), m, pct ? secs : "", pct ? pct + 2 : "");
}

static void store_answered(void *arg, const struct store_result *r)
{
	struct rcpt_check *c = arg;
	struct rcpt_verdict v = { .action = RCPT_ACCEPT };
	if (!r->ok) {
		bool tempfail = c->cfg->store.tempfail;
		v.rule = "store-failure";
		log_decision(c->client, c->helo, c->t.net, c->sender, c->rcpt,
			     tempfail ? "tempfail" : "pass", "store-failure", NULL, r->error);
		if (tempfail) {
			v.action = RCPT_DEFER;
			snprintf(v.reply, sizeof v.reply,
				 "451 4.3.0 <%s>: Temporary lookup failure, try again later", c->rcpt);
		}
	} else if (r->d.action == GL_PASS) {
		v.rule = gl_reason_name(r->d.reason);
		log_decision(c->client, c->helo, c->t.net, c->sender, c->rcpt, "pass", v.rule,
			     &r->d, NULL);
	} else {
		v.action = RCPT_DEFER;
		v.rule = "greylist";
		log_decision(c->client, c->helo, c->t.net, c->sender, c->rcpt, "greylist",
			     gl_reason_name(r->d.reason), &r->d, NULL);
		greylist_reply(c->cfg, c->rcpt, r->d.delay_left, v.reply, sizeof v.reply);
	}
	rcpt_done_fn done = c->done;
	void *darg = c->arg;
	gg_config_unref(c->cfg);
	free(c);
	done(darg, &v);
}

static void copy(char *dst, size_t dstlen, const char *src)
{
	snprintf(dst, dstlen, "%s", src ? src : "");
}

struct rcpt_check *rcpt_check_start(const struct rcpt_query *q, rcpt_done_fn done, void *arg)
{
	struct rcpt_verdict v = { .action = RCPT_ACCEPT, .rule = "", .reply = "" };
	char rcpt[SMTP_PATH_MAX + 1];
	snprintf(rcpt, sizeof rcpt, "%.*s", (int)q->rcpt->addr_len, q->rcpt->addr);

	/* Trusted networks skip every check and may relay (permit_mynetworks). */
	if (netlist_match(&q->cfg->mynetworks, q->client)) {
		v.rule = "mynetworks";
		log_decision(q->client_str, q->helo, NULL, q->sender, rcpt, "pass", "mynetworks",
			     NULL, NULL);
		done(arg, &v);
		return NULL;
	}
	if (!relay_authorised(q, &v)) {
		done(arg, &v);
		return NULL;
	}
	const char *exempt = exemption(q);
	if (exempt) {
		if (q->cfg->greylist.enabled)
			log_decision(q->client_str, q->helo, NULL, q->sender, rcpt, "pass", exempt,
				     NULL, NULL);
		v.rule = exempt;
		done(arg, &v);
		return NULL;
	}

	struct rcpt_check *c = calloc(1, sizeof *c);
	if (!c) {
		v.action = RCPT_DEFER;
		v.rule = "out-of-memory";
		snprintf(v.reply, sizeof v.reply, "451 4.3.0 Error: out of memory, try again later");
		done(arg, &v);
		return NULL;
	}
	c->done = done;
	c->arg = arg;
	c->cfg = gg_config_ref(q->cfg);
	copy(c->client, sizeof c->client, q->client_str);
	copy(c->helo, sizeof c->helo, q->helo);
	copy(c->rcpt, sizeof c->rcpt, rcpt);
	copy(c->sender, sizeof c->sender, q->sender);
	char net[NET_TEXT_MAX];
	char sender[SMTP_PATH_MAX + 4];
	size_t slen = sender_normalise(q->sender, strlen(q->sender), &q->cfg->greylist.norm,
				       sender, sizeof sender);
	triplet_network(q->client, (unsigned)q->cfg->greylist.ipv4_prefix,
			(unsigned)q->cfg->greylist.ipv6_prefix, net, sizeof net);
	if (triplet_make(&c->t, net, sender, slen, rcpt, strlen(rcpt)) < 0) {
		/* Only hashing can fail here (paths are bounded): a store failure
		 * in effect, handled by the same policy. */
		struct store_result r = { .ok = false, .error = "cannot compute the triplet key" };
		store_answered(c, &r);
		return NULL;
	}
	/* May answer before it returns (the embedded store): C is gone then. */
	struct store_req *req = store()->decide(q->cfg, &c->t, false, store_answered, c);
	if (!req)
		return NULL;
	c->req = req;
	return c;
}

void rcpt_check_cancel(struct rcpt_check *c)
{
	if (!c)
		return;
	store()->cancel(c->req);
	gg_config_unref(c->cfg);
	free(c);
}
