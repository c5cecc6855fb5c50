/*
 * why: the names of every reason a RCPT decision gives and every rule that
 * refuses a command, as the logs (reason=..., rule=...) and the /metrics
 * labels print them. This is the only list of those names: code passes an
 * enum why and asks here for the text.
 *
 * Promises: one entry per name, the name being exactly what logs and
 * metrics show (dashboards and log searches match on it, so a name never
 * changes). An entry is a decision reason (greygate_decisions_total
 * {reason}), a refusal rule (greygate_refusals_total{rule}), both
 * (store-failure: the decision's reason, and the rule of the refusal it
 * causes when failures defer), or neither: "greylist" names the rule of a
 * deferral in the log, but a greylisted recipient is counted as a
 * decision, not as a refusal; "helo_required" and "message_size_limit"
 * name session rules (session_rules.h) whose refusals were never counted
 * under a label of their own, and still are not. The greylisting store's own reasons (enum
 * gl_reason) are entries here too, and gl_reason_name takes its names
 * from this table.
 */
#ifndef GG_WHY_H
#define GG_WHY_H

#include <stdbool.h>

#include "greylist.h"

/* What an entry is counted as. */
#define WHY_LOGGED  0u   /* logged only */
#define WHY_REASON  1u   /* a decision's reason */
#define WHY_REFUSAL 2u   /* a refusal's rule */

/* X(identifier, name as logged, kinds) */
#define WHY_LIST(X) \
	X(NEW,                          "new",                          WHY_REASON) \
	X(EARLY,                        "early",                        WHY_REASON) \
	X(RETRY_WINDOW_EXPIRED,         "retry-window-expired",         WHY_REASON) \
	X(TRIPLET,                      "triplet",                      WHY_REASON) \
	X(AWL,                          "awl",                          WHY_REASON) \
	X(WHITELIST_CLIENT,             "whitelist-client",             WHY_REASON) \
	X(WHITELIST_CLIENT_NAME,        "whitelist-client-name",        WHY_REASON) \
	X(WHITELIST_SENDER,             "whitelist-sender",             WHY_REASON) \
	X(WHITELIST_RECIPIENT,          "whitelist-recipient",          WHY_REASON) \
	X(MYNETWORKS,                   "mynetworks",                   WHY_REASON) \
	X(MX_HOST,                      "mx-host",                      WHY_REASON) \
	X(STORE_FAILURE,                "store-failure",                WHY_REASON | WHY_REFUSAL) \
	X(GREYLIST_DISABLED,            "greylist-disabled",            WHY_REASON) \
	X(GREYLIST,                     "greylist",                     WHY_LOGGED) \
	X(RELAY_DENIED,                 "relay_denied",                 WHY_REFUSAL) \
	X(REJECT_NON_FQDN_SENDER,       "reject_non_fqdn_sender",       WHY_REFUSAL) \
	X(REJECT_UNKNOWN_SENDER_DOMAIN, "reject_unknown_sender_domain", WHY_REFUSAL) \
	X(REJECT_NON_FQDN_RECIPIENT,    "reject_non_fqdn_recipient",    WHY_REFUSAL) \
	X(PERMIT_MX_BACKUP,             "permit_mx_backup",             WHY_REFUSAL) \
	X(MAX_ERRORS,                   "max_errors",                   WHY_REFUSAL) \
	X(MAX_LINE,                     "max_line",                     WHY_REFUSAL) \
	X(MAX_RECIPIENTS,               "max_recipients",               WHY_REFUSAL) \
	X(HELO_REQUIRED,                "helo_required",                WHY_LOGGED) \
	X(MESSAGE_SIZE_LIMIT,           "message_size_limit",           WHY_LOGGED) \
	X(COMMAND_TIMEOUT,              "command_timeout",              WHY_REFUSAL) \
	X(DATA_TIMEOUT,                 "data_timeout",                 WHY_REFUSAL) \
	X(BACKEND,                      "backend",                      WHY_REFUSAL) \
	X(BACKEND_REFUSED,              "backend_refused",              WHY_REFUSAL) \
	X(BACKEND_MAIL,                 "backend_mail",                 WHY_REFUSAL) \
	X(BACKEND_DOWN,                 "backend_down",                 WHY_REFUSAL) \
	X(ETRN,                         "etrn",                         WHY_REFUSAL) \
	X(ETRN_NETWORKS,                "etrn_networks",                WHY_REFUSAL) \
	X(PROXY_PROTOCOL,               "proxy_protocol",               WHY_REFUSAL) \
	X(MAX_TLS_HANDSHAKES,           "max_tls_handshakes",           WHY_REFUSAL) \
	X(TLS_HANDSHAKE_TIMEOUT,        "tls_handshake_timeout",        WHY_REFUSAL) \
	X(TRUSTED,                      "trusted",                      WHY_REASON) \
	X(HOSTILE,                      "hostile",                      WHY_REASON | WHY_REFUSAL) \
	X(SPAMTRAP,                     "spamtrap",                     WHY_REASON | WHY_REFUSAL)

enum why {
	WHY_NONE,        /* no reason or rule to name: nothing logged or counted */
#define WHY_ENUM(id, name, kinds) WHY_##id,
	WHY_LIST(WHY_ENUM)
#undef WHY_ENUM
	WHY_COUNT
};

/* The name as logged; NULL for WHY_NONE and anything out of range. */
const char *why_name(enum why w);
/* Whether W is counted as KIND (WHY_REASON or WHY_REFUSAL). */
bool why_is(enum why w, unsigned kind);
/* The entry of a store's reason; WHY_NONE for a value out of range. */
enum why why_of_gl(enum gl_reason r);

#endif
