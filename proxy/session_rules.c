/*
 * The session rules and their driver (session_rules.h). Unlike the RCPT
 * rules nothing here waits for a lookup or defers: each row answers at
 * once, and the first refusal is the answer.
 */
#include "session_rules.h"

#include <stdio.h>
#include <string.h>

#include "domainlist.h"

enum sess_result {
	SR_NEXT,      /* no objection: the next row */
	SR_REJECT,    /* v holds the refusal */
};

struct sess_rule {
	enum why name;
	unsigned points;             /* enum sess_point bits */
	enum sess_result (*check)(const struct sess_query *q, struct sess_verdict *v);
};

static enum sess_result refuse(struct sess_verdict *v, enum why rule, bool counted, const char *text)
{
	v->rule = rule;
	v->counted = counted;
	snprintf(v->reply, sizeof v->reply, "%s", text);
	return SR_REJECT;
}

/* helo_required: no transaction or ETRN from a client that did not say
 * who it is. */
static enum sess_result rule_helo_required(const struct sess_query *q, struct sess_verdict *v)
{
	if (q->helo_seen || !q->cfg->helo_required)
		return SR_NEXT;
	return refuse(v, WHY_HELO_REQUIRED, true, "503 5.5.1 Error: send HELO/EHLO first");
}

/* Temporary: a balancer that lost its clients' addresses is a fault its
 * admin fixes, and mail sent meanwhile should wait in senders' queues. */
static enum sess_result rule_client_unknown(const struct sess_query *q, struct sess_verdict *v)
{
	if (!q->client_unknown)
		return SR_NEXT;
	return refuse(v, WHY_PROXY_PROTOCOL, true,
		      "451 4.7.1 Error: client address unknown, try again later");
}

/* The backend's own limit, refused before the body is sent. */
static enum sess_result rule_message_size(const struct sess_query *q, struct sess_verdict *v)
{
	if (!q->size_limit || q->size <= q->size_limit)
		return SR_NEXT;
	return refuse(v, WHY_MESSAGE_SIZE_LIMIT, true, "552 5.3.4 Message size exceeds fixed limit");
}

/* Not an error: a client with many recipients sends the rest in the next
 * transaction (RFC 5321 4.5.3.1.8). */
static enum sess_result rule_max_recipients(const struct sess_query *q, struct sess_verdict *v)
{
	if (q->rcpt_ok < q->cfg->limits.max_recipients)
		return SR_NEXT;
	return refuse(v, WHY_MAX_RECIPIENTS, false, "452 4.5.3 Error: too many recipients");
}

/* ETRN is off unless etrn_networks lists someone. */
static enum sess_result rule_etrn_networks(const struct sess_query *q, struct sess_verdict *v)
{
	if (q->cfg->etrn_networks.n)
		return SR_NEXT;
	return refuse(v, WHY_ETRN_NETWORKS, true, "502 5.5.1 Error: ETRN not permitted");
}

/* A client in etrn_networks, for a domain this host backs up. "@domain"
 * (and its subdomains) and "#queue" are forms Postfix knows; the domain
 * itself must be one we serve either way. */
static enum sess_result rule_etrn(const struct sess_query *q, struct sess_verdict *v)
{
	const struct gg_config *cfg = q->cfg;
	const char *d = q->etrn_arg;
	size_t dlen = q->etrn_len;
	if (dlen && (d[0] == '@' || d[0] == '#')) {
		d++;
		dlen--;
	}
	if (netlist_match(&cfg->etrn_networks, q->client) &&
	    (domainlist_match(&cfg->relay_domains, d, dlen) ||
	     domainlist_match(&cfg->handover.domains, d, dlen)))
		return SR_NEXT;
	v->rule = WHY_ETRN;
	v->counted = true;
	snprintf(v->reply, sizeof v->reply, "459 4.7.1 <%.*s>: ETRN not permitted", (int)q->etrn_len,
		 q->etrn_arg);
	return SR_REJECT;
}

/* The policy, in order within each point. */
static const struct sess_rule rules[] = {
	{ WHY_HELO_REQUIRED, SP_MAIL | SP_ETRN, rule_helo_required },
	{ WHY_PROXY_PROTOCOL, SP_MAIL | SP_ETRN, rule_client_unknown },
	{ WHY_MESSAGE_SIZE_LIMIT, SP_MAIL_PARAMS, rule_message_size },
	{ WHY_MAX_RECIPIENTS, SP_RCPT, rule_max_recipients },
	{ WHY_ETRN_NETWORKS, SP_ETRN_DOMAIN, rule_etrn_networks },
	{ WHY_ETRN, SP_ETRN_DOMAIN, rule_etrn },
};
#define NRULES (sizeof rules / sizeof rules[0])

enum why session_rules_row(size_t i, unsigned *points)
{
	if (i >= NRULES)
		return WHY_NONE;
	*points = rules[i].points;
	return rules[i].name;
}

bool session_rules_check(enum sess_point at, const struct sess_query *q, struct sess_verdict *v)
{
	for (size_t i = 0; i < NRULES; i++)
		if ((rules[i].points & at) && rules[i].check(q, v) == SR_REJECT)
			return true;
	return false;
}
