/*
 * session_priv: what the parts of a session share (session.c, the command
 * engine and life cycle; session_txn.c, MAIL/RCPT and the transaction;
 * session_data.c, DATA; session_tls.c, STARTTLS; session_proxy.c, the
 * PROXY header; session_etrn.c, ETRN). Only proxy/session*.c include it;
 * the rest of greygate knows session.h.
 */
#ifndef GG_SESSION_PRIV_H
#define GG_SESSION_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "backend.h"
#include "config.h"
#include "dotcodec.h"
#include "client_facts.h"
#include "list.h"
#include "log.h"
#include "netaddr.h"
#include "rcpt_ahead.h"
#include "rcpt_check.h"
#include "session_rules.h"
#include "smtp_cmd.h"
#include "smtp_reply.h"
#include "spf_txn.h"
#include "why.h"

#define HELO_MAX 255
#define RCPT_LOG_MAX 300

enum sstate {
	SS_CMD,      /* reading commands */
	SS_WAIT,     /* a command waits for a check or the backend */
	SS_DATA,     /* the message body is streaming */
	SS_CLOSING,  /* the last reply is being flushed */
	SS_PROXY,    /* waiting for the load balancer's PROXY header */
	SS_TLS_WAIT, /* STARTTLS answered: waiting for the client's first TLS bytes */
	SS_GREET,    /* the banner is held (session_greet.c): input waits for it */
};

/*
 * The client's mail transaction, as far as the backend is concerned. Only
 * txn_to() changes it (docs/design.md has the table of what the client gets
 * for each backend failure in each state):
 *   TX_NONE    no MAIL;
 *   TX_MAIL    MAIL given, nothing of it sent to the backend yet (a failed
 *              connection attempt loses nothing: the next RCPT tries again);
 *   TX_SENT    MAIL sent on the session's backend connection;
 *   TX_RCPT    the backend accepted a recipient on that connection;
 *   TX_FAILED  that connection was lost after MAIL went out: recipients it
 *              accepted are gone with it, so the transaction can no longer
 *              deliver; every RCPT and DATA gets a 4xx until RSET, HELO or
 *              the end of the session starts afresh. Never reconnected.
 *   TX_DATA    DATA sent; the body streams to the backend.
 */
enum txn { TX_NONE, TX_MAIL, TX_SENT, TX_RCPT, TX_FAILED, TX_DATA };

struct linebuf {
	char *p;
	size_t cap;
};

struct session {
	struct list_node link;   /* on all_sessions (session.c) */
	struct gg_config *cfg;
	struct bufferevent *bev;
	unsigned long long id;
	enum sstate state;
	struct ipaddr client;
	char client_str[48];
	unsigned client_port;
	time_t started;
	bool counted;        /* in connlimit under client */
	/* A PROXY header without a client (v1 UNKNOWN, v2 LOCAL or UNSPEC):
	 * client holds the balancer's address, which must earn the session
	 * no trust, so such a session takes no mail and reaches no backend. */
	bool client_unknown;
	struct client_facts facts;   /* its name: for XCLIENT and the RCPT rules */
	struct greet_hold *hold;     /* the banner held (SS_GREET), else NULL */
	double line_started; /* first byte of an incomplete command line, or 0 */

	char helo[HELO_MAX + 1];
	bool helo_seen, esmtp;
	bool tls;            /* STARTTLS answered */
	struct event *tls_deadline;  /* set while the TLS hand-shake is pending */
	bool direct_write;   /* replies are written by flush_replies() */
	bool discarding;     /* inside an over-long line */
	int errors;
	unsigned commands;
	unsigned messages;

	/* the transaction */
	enum txn txn;
	char sender[SMTP_PATH_MAX + 1];
	struct spf_txn spf;        /* its SPF check, for the spf: pool key */
	struct linebuf mail_line;  /* MAIL as replayed to the backend */
	struct linebuf fwd_line;   /* the RCPT (or ETRN) being forwarded */
	char rcpt[SMTP_PATH_MAX + 1];
	int rcpt_tried, rcpt_ok;
	char rcpts[RCPT_LOG_MAX];   /* accepted recipients, for the log */
	size_t rcpts_len;
	/* the backend refused our MAIL: its reply, kept for the transaction's
	 * RCPTs (allocated then: most sessions never need its 8 KiB) */
	struct smtp_reply *mail_refused;
	bool be_txn;         /* the backend has a transaction open (it may outlive
				the client's: the next MAIL then RSETs first) */

	struct backend *be;
	struct rcpt_check *check;
	struct rcpt_ahead *ahead;  /* checks of pipelined RCPTs, started early */
	struct dotcodec dc;
	bool body_failed;    /* backend gone or answered early: discard */
	bool body_paused;    /* back-pressure from the backend */
	bool out_paused;     /* back-pressure from the client */

	/* Queued replies are flushed, and a session that ended is freed, from
	 * this event: from the loop, with no frame of the session's on the
	 * stack. */
	struct event *tick;
	bool in_process;
	bool gone;           /* ended: freed by the next tick */
};

#define TXN_LOST "451 4.4.2 Error: connection to the mail system lost, try again later"

/* ---- session.c: life cycle, replies, the command engine ---- */

/* Starts a log line about S: the event, the session's id and client. */
void begin_line(struct logline *l, const struct session *s, const char *event);
/* Ends S at once (limits, requests in flight); freed later from the loop. */
void kill_session(struct session *s);
/* Closes S once the replies already queued have reached the client. */
void close_after_flush(struct session *s);
/* Queues one reply line (CRLF added); it leaves from the loop. */
void reply(struct session *s, const char *text);
/* reply() with a format, bounded to 1 KiB. */
void replyf(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs a refusal of CMD with the reply TEXT (NULL: the client was told nothing). */
void log_reject(struct session *s, const char *cmd, const char *text, enum why rule);
/* Counts an error towards limits.max_errors; false when S is closing for it. */
bool count_error(struct session *s, const char *cmd);
/* Logs and answers a refusal that does not count towards max_errors. */
void refuse(struct session *s, const char *cmd, const char *text, enum why rule);
/* refuse() and count_error(); false when S is closing. */
bool reject_counted(struct session *s, const char *cmd, const char *text, enum why rule);
/* Relays the backend's reply R (it ends in CRLF already). */
void relay_reply(struct session *s, const struct smtp_reply *r);
/* The command waits: no reading from the client until resume(). */
void wait_for(struct session *s);
/* Back to reading commands after a command that waited. */
void resume(struct session *s);
/* Handles what the client sent, as far as the state allows. */
void process_input(struct session *s);
/* What the session rules (session_rules.h) need of S; a command adds
 * what it parsed. */
struct sess_query session_query(const struct session *s);
/* Runs the session rules of AT for CMD: true when it may go on, else
 * refused (answered, logged, counted as the rule says). */
bool session_allows(struct session *s, const char *cmd, enum sess_point at,
		    const struct sess_query *q);
/* Answers and logs the session rules' refusal V of CMD. */
void session_refuse(struct session *s, const char *cmd, const struct sess_verdict *v);
/* Greets the client (or refuses it while the backend is down). */
void greet(struct session *s);
/* Sets the client connection's callbacks, bounds and timeouts (again after
 * STARTTLS, on the TLS filter). */
void session_set_callbacks(struct session *s);

/* The client's confirmed name for XCLIENT and logs, or Postfix's
 * [UNAVAILABLE] / [TEMPUNAVAIL]. */
const char *client_name(const struct session *s);

/* ---- session_txn.c: the transaction, MAIL and RCPT ---- */

/* Logs the transaction's end with RESULT and the reply TEXT. */
void log_transaction(struct session *s, const char *result, const char *text, size_t len);
/* Lets go of S's backend connection and any transaction open on it. */
void drop_backend(struct session *s);
/* The one place the transaction changes state. */
void txn_to(struct session *s, enum txn to);
/* Ends an open transaction without a message, logging its recipients. */
void abort_transaction(struct session *s, const char *why);
/* The client's attributes for the backend's XCLIENT. */
struct backend_client client_info(const struct session *s);
/* The backend failed while CMD (RCPT or DATA) waited for it: answers, and
 * fails the transaction once MAIL had gone out. */
void backend_failed(struct session *s, const char *cmd, enum backend_status st);
/* Grows B to NEED bytes (never shrinks); NULL when out of memory. */
char *linebuf_reserve(struct linebuf *b, size_t need);
/* MAIL: checks it and starts the transaction; nothing reaches the backend yet. */
void cmd_mail(struct session *s, const struct smtp_cmd *c);
/* RCPT: checks it, then replays MAIL as needed and relays it to the
 * backend; LINE, LEN: the command line as sent, for the look-ahead. */
void cmd_rcpt(struct session *s, const struct smtp_cmd *c, const char *line, size_t len);
/* RSET: ends the transaction, the backend's too when it has one open. */
void cmd_rset(struct session *s);
/* Starts the checks of RCPTs pipelined behind the one being decided. */
void look_ahead(struct session *s);

/* ---- session_data.c ---- */

/* DATA: relays it and, after the backend's 354, the body (SS_DATA). */
void cmd_data(struct session *s, const struct smtp_cmd *c);
/* Feeds the client's buffered body to the backend (SS_DATA). */
void pump_body(struct session *s);

/* ---- session_tls.c ---- */

/* STARTTLS: 220, then the plaintext session starts over (SS_TLS_WAIT). */
void cmd_starttls(struct session *s, const struct smtp_cmd *c);
/* The client's first bytes after STARTTLS's 220 are in: sets up TLS. */
void tls_begin(struct session *s);
/* Frees S's hand-shake slot and deadline, if it holds them. */
void tls_handshake_over(struct session *s);
/* The TLS version in use, or NULL for plaintext. */
const char *tls_version(const struct session *s);

/* ---- session_proxy.c ---- */

/* Reads the PROXY header (SS_PROXY); true once the session may go on. */
bool read_proxy_header(struct session *s);

/* ---- session_greet.c ---- */

/* Sends the 220 banner, or holds it for the pregreet test (greet_wait):
 * until the connection's score is in, at most greet_wait seconds; the
 * whole greet_wait when the score is suspicious already (SS_GREET). */
void greet_banner(struct session *s);
/* The client sent bytes while the banner is held: the pregreet signal
 * (once). They stay in the input for the commands after the banner. */
void greet_early(struct session *s);
/* Lets go of a held banner's timer and wait (the session ends). */
void greet_cancel(struct session *s);
/* HELO (ESMTP false) or EHLO C: the name checked as the backend would
 * check it, a new name drops the backend connection made for the old one,
 * and EHLO offers only what the backend offers too. */
void cmd_helo(struct session *s, const struct smtp_cmd *c, bool esmtp);

/* ---- session_etrn.c ---- */

/* ETRN: relayed to the backend for a client and domain allowed to. */
void cmd_etrn(struct session *s, const struct smtp_cmd *c);

#endif
