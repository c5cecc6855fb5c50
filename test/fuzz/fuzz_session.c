/*
 * fuzz_session: whole SMTP sessions through the real proxy code (session,
 * rcpt_check, rcpt_ahead, fcrdns, mxset, backend relay, resolver and its
 * cache, the embedded store), in one process on a real libevent loop.
 *
 * Peers, all driven by the input:
 *  - the client: one end of a socketpair handed to session_start; it sends
 *    commands, bodies and garbage from its script, pipelined unless the
 *    script says WAIT;
 *  - the backend: a listening socket on 127.0.0.1:<ephemeral> that
 *    backend.address names; the harness accepts on its own loop and
 *    answers each greeting/command/end-of-data from its script (replies,
 *    delays, 4xx/5xx, 421+close, close, silence, closing mid-body);
 *  - DNS: proxy/resolver.c as it is, on a fake c-ares (the ares_* functions
 *    it calls are defined here, so -lcares is not linked): every query
 *    takes its answer from the DNS script: records (names from a table of
 *    hostile ones or raw wire labels, addresses), NXDOMAIN, NODATA,
 *    timeouts, garbage messages, and errors reported synchronously from
 *    inside ares_query, as c-ares does for a name it refuses (a label over
 *    63 octets after unescaping is refused that way even without a script
 *    entry, as c-ares does).
 * Time is virtual: clock_gettime(CLOCK_MONOTONIC*) is defined here and
 * returns the harness's clock while a run is on; the harness runs the loop
 * without blocking until nothing moves, then advances the clock, so
 * timeouts of seconds cost microseconds and runs are deterministic.
 * Log lines go through syslog(), defined here: formatted and dropped
 * (FUZZ_SESSION_LOG=1 prints them to stderr, for reading a reproducer).
 *
 * Input layout (every stream reads as 0 once exhausted):
 *   byte 0  configuration bits: 1 greylist.delay 0 (else 3600),
 *           2 backend.xclient, 4 backend.idle_time 5 (else 0),
 *           8 backend.refuse_when_down, 16 whitelist.client_names
 *           ".example.net" and scoring (a DNSBL and a DNSWL site, and
 *           greet_wait 2: the banner held, the client's pipelined first
 *           commands taken as pregreet; a spamtrap, whose RCPT marks the
 *           client's network in the embedded store), 32 permit_mx_backup + reject_unknown_sender_domain,
 *           64 helo_required, 128 small limits (2 recipients, 3 errors,
 *           max_line 512)
 *   byte 1  the backend's EHLO extensions: 1 PIPELINING, 2 XCLIENT,
 *           4 SIZE, 8 8BITMIME, 16 SMTPUTF8, 32 DSN, 64 ENHANCEDSTATUSCODES,
 *           128 STARTTLS+CHUNKING
 *   byte 2  client address (% 5): 127.0.0.1 (mynetworks), 192.0.2.10,
 *           198.51.100.7, 2001:db8::10, ::1 (mynetworks)
 *   byte 3  B, byte 4 D: lengths of the backend and DNS scripts
 *   then B bytes backend script, D bytes DNS script, the rest the client
 *   script.
 * Backend script, one entry per reply the backend owes (greeting, each
 * command, end-of-data; the start-up probe gets defaults): byte K, K&15 %
 * 11: 0 default, 1 4xx, 2 5xx, 3 421 + close, 4 close without reply,
 * 5 silence from now on, 6 default, then close 1 s later, 7 odd default (multi-line,
 * junk extensions), 8 garbage line, 9 default, but close when body bytes
 * arrive, 10 a 354 for anything; K&128: a byte follows, delay x 50 ms.
 * DNS script, one entry per ares_query: byte M, M&7: 0 default record
 * (A/AAAA: the client's address if M&8), 1 synchronous error inside
 * ares_query, 2 NXDOMAIN, 3 NODATA, 4 SERVFAIL, 5 N=byte%6 records from
 * the script (names: byte < 0xc0 picks from the table, else raw labels;
 * addresses: byte < 0x80 the client's, else raw bytes), 6 garbage message
 * (length byte + bytes), 7 time-out after the configured timeout; M&16
 * TTL 300 (cached) else 0; M&128: a byte follows, delay x 20 ms.
 * Client script: byte OP, OP%16: 0 HELO, 1 EHLO (name byte), 2 MAIL
 * (sender byte, params byte), 3 RCPT (recipient byte), 4 DATA, 5 body
 * bytes (length byte + bytes), 6 a standard body with its end, 7 RSET,
 * 8 NOOP, 9 QUIT, 10 raw line (length + bytes + CRLF), 11 raw bytes
 * (length + bytes), 12 WAIT for every reply, 13 SLEEP (byte x 100 ms),
 * 14 disconnect, 15 VRFY/HELP/ETRN/STARTTLS/junk (byte). An op that
 * sends after a disconnect (the client's or the server's) opens a new
 * connection first, up to 4 in a run (backend connections are reused between them with
 * idle_time).
 *
 * Invariants (a break aborts with "invariant failed: ..."):
 *  - no sanitizer report (ASan, UBSan; LeakSanitizer per input);
 *  - replies are well formed (3 digits, '-' or ' ', CRLF, one code per
 *    reply) and there is exactly one reply per client command, in order:
 *    a command is a line up to LF (as the session reads them), DATA's 354
 *    makes the bytes up to CRLF.CRLF one more command (and only a DATA
 *    line gets a 354); the only replies without a command are the
 *    greeting and a 421 before closing; nothing follows a 221 or 421; a
 *    session that closes with commands unanswered said 421 or 221 (or
 *    refused at the greeting) last;
 *  - every command is answered within 120 s (virtual) and the session is
 *    gone within 120 s of its client leaving;
 *  - a 2xx to end-of-data only for a message the backend accepted with a
 *    2xx, with the same content when the client's body had no bare CR/LF;
 *    a 2xx to RCPT only if the backend said 2xx to as many RCPTs;
 *  - the backend gets command lines ended by CRLF with no other CR or LF,
 *    only SMTP verbs greygate sends (a body line outside DATA would be
 *    something else), DATA only after a recipient it accepted, and a body
 *    in canonical form (every CR followed by LF and every LF preceded by
 *    CR) that ends at CRLF.CRLF only;
 *  - the backend is still "reachable" after the run unless the backend
 *    script made it fail or lag, or it lacks the XCLIENT the
 *    configuration asks for: the fake backend refuses what Postfix
 *    refuses for the bytes alone (bad UTF-8, controls, an XCLIENT NAME
 *    that is no host name), and such a refusal is one client's problem;
 *  - after the run no session is left (srv.active 0) and no descriptor
 *    is left open.
 */
#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "config.h"
#include "connlimit.h"
#include "linger.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "resolver.h"
#include "server.h"
#include "session.h"
#include "spf.h"
#include "store.h"

#include "fuzz_check.h"

#define STEP_MS 100             /* virtual time per idle step */
#define QUIET_ITERS 8           /* loop passes without activity = idle */
#define REPLY_BOUND_MS 120000   /* a command waits this long at most */
#define RUN_BOUND_MS 1200000    /* all of one run, virtual */
#define CONNS_MAX 4             /* client connections in one run */

/* ------------------------------------------------------------------ */
/* input streams                                                      */

struct stream {
	const uint8_t *p;
	size_t n, i;
};

static uint8_t next(struct stream *s)
{
	return s->i < s->n ? s->p[s->i++] : 0;
}

static bool more(const struct stream *s)
{
	return s->i < s->n;
}

/* ------------------------------------------------------------------ */
/* virtual clock, logging                                             */

static bool virt;
static uint64_t vnow_ms;
static unsigned activity;       /* bumped by every harness-side event */
static bool print_logs;

int clock_gettime(clockid_t id, struct timespec *ts)
{
	if (virt && (id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_COARSE ||
		     id == CLOCK_MONOTONIC_RAW || id == CLOCK_BOOTTIME)) {
		ts->tv_sec = (time_t)(vnow_ms / 1000);
		ts->tv_nsec = (long)(vnow_ms % 1000) * 1000000L;
		return 0;
	}
	return (int)syscall(SYS_clock_gettime, id, ts);
}

void openlog(const char *ident, int option, int facility)
{
	(void)ident;
	(void)option;
	(void)facility;
}

void closelog(void)
{
}

void syslog(int prio, const char *fmt, ...)
{
	char line[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (print_logs && n > 0)
		fprintf(stderr, "[%d] %s\n", prio, line);
}

/* ------------------------------------------------------------------ */
/* the run's state                                                    */

static struct stream bscript, dscript, cscript;
static uint8_t caps_bits;
static bool backend_scripted_failure;   /* the script made the backend fail or lag */
static struct ipaddr client_addr;
static struct sockaddr_storage client_sa;

/* what the backend accepted, in order: canonical text of each message */
#define MSG_MAX 64
static struct {
	char *text[MSG_MAX];
	size_t len[MSG_MAX];
	size_t head, tail;
	unsigned rcpt_ok;       /* 2xx replies to RCPT, all connections */
} accepted;

/* ------------------------------------------------------------------ */
/* fake c-ares                                                        */

struct ares_channeldata {
	struct fake_q *pending;
	int timeout_ms, tries;
};

struct fake_q {
	struct fake_q *next;
	ares_callback cb;
	void *arg;
	uint64_t due;
	int status;
	unsigned char *abuf;
	int alen;
};

int ares_library_init(int flags)
{
	(void)flags;
	return ARES_SUCCESS;
}

void ares_library_cleanup(void)
{
}

const char *ares_strerror(int code)
{
	return code == ARES_EBADNAME ? "Misformatted domain name" : "fake c-ares error";
}

int ares_init_options(ares_channel *chp, struct ares_options *o, int mask)
{
	struct ares_channeldata *c = calloc(1, sizeof *c);
	if (!c)
		return ARES_ENOMEM;
	c->timeout_ms = (mask & ARES_OPT_TIMEOUTMS) ? o->timeout : 2000;
	c->tries = (mask & ARES_OPT_TRIES) ? o->tries : 2;
	*chp = c;
	return ARES_SUCCESS;
}

int ares_set_servers_ports_csv(ares_channel c, const char *csv)
{
	(void)c;
	(void)csv;
	return ARES_SUCCESS;
}

void ares_destroy(ares_channel c)
{
	while (c->pending) {
		struct fake_q *q = c->pending;
		c->pending = q->next;
		q->cb(q->arg, ARES_EDESTRUCTION, 0, NULL, 0);
		free(q->abuf);
		free(q);
	}
	free(c);
}

struct timeval *ares_timeout(ares_channel c, struct timeval *maxtv, struct timeval *tv)
{
	(void)maxtv;
	if (!c->pending)
		return NULL;
	uint64_t due = UINT64_MAX;
	for (struct fake_q *q = c->pending; q; q = q->next)
		if (q->due < due)
			due = q->due;
	uint64_t left = due > vnow_ms ? due - vnow_ms : 0;
	tv->tv_sec = (time_t)(left / 1000);
	tv->tv_usec = (suseconds_t)(left % 1000) * 1000;
	return tv;
}

void ares_process_fd(ares_channel c, ares_socket_t r, ares_socket_t w)
{
	(void)r;
	(void)w;
	/* One at a time, from the top: a callback may add queries. */
	for (;;) {
		struct fake_q **pp = &c->pending;
		while (*pp && (*pp)->due > vnow_ms)
			pp = &(*pp)->next;
		if (!*pp)
			return;
		struct fake_q *q = *pp;
		*pp = q->next;
		activity++;
		q->cb(q->arg, q->status, 0, q->abuf, q->alen);
		free(q->abuf);
		free(q);
	}
}

/* Whether c-ares would refuse NAME (ares_create_query: a label over 63
 * octets after unescaping "\." and "\DDD", or over 255 in all). */
static bool cares_refuses(const char *name)
{
	size_t label = 0, total = 0;
	for (const char *p = name; *p; p++) {
		if (*p == '\\' && p[1]) {
			if (p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9' &&
			    p[3] >= '0' && p[3] <= '9')
				p += 3;
			else
				p++;
		} else if (*p == '.') {
			label = 0;
			total++;
			continue;
		}
		if (++label > 63 || ++total > 253)
			return true;
	}
	return false;
}

/* A DNS response without a question section (dnsmsg does not need one). */
struct msg {
	unsigned char b[1400];
	size_t n;
	bool overflow;
};

static void put(struct msg *m, const void *p, size_t n)
{
	if (n > sizeof m->b - m->n) {
		m->overflow = true;
		return;
	}
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

static void put16(struct msg *m, unsigned v)
{
	unsigned char b[2] = { (unsigned char)(v >> 8), (unsigned char)v };
	put(m, b, 2);
}

static void put32(struct msg *m, uint32_t v)
{
	put16(m, v >> 16);
	put16(m, v & 0xffff);
}

/* Wire-format names the DNS script picks from: the ordinary, the ones
 * Postfix would refuse, and the ones that broke things. */
#define W(s) { s, sizeof s - 1 }
static const struct {
	const char *w;
	size_t n;
} names[] = {
	W("\x04host\x07" "example\x03net\x00"),
	W("\x02mx\x07" "example\x03net\x00"),
	W("\x0bmail.client\x07" "example\x03net\x00"),       /* a dot in a label */
	W("\x3f" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\\"
	  "\x07" "example\x03net\x00"),                     /* 62 a + backslash */
	W("\x09" "evil!name\x07" "example\x03net\x00"),
	W("\x00"),                                        /* root: null MX */
	W("\x05" "a\x00" "b c\x07" "example\x03net\x00"),   /* NUL, space */
	W("\x09localhost\x00"),
	W("\x02mx\x04test\x07" "example\x00"),
	W("\x04HOST\x07" "Example\x03NET\x00"),
	W("\x03" "a\r\n\x07" "example\x03net\x00"),
	W("\x04\xff\xfe\xc3\x28\x07" "example\x03net\x00"),
	W("\x01-\x07" "example\x03net\x00"),
	W("\x3f" "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	  "\x3f" "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	  "\x3f" "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	  "\x3d" "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\x00"),
	W("\x05" "a\\097\x07" "example\x03net\x00"),
	W("\x01*\x07" "example\x03net\x00"),
};

/* A name from the script: a table entry, or raw labels. */
static void put_name(struct msg *m, struct stream *s)
{
	uint8_t k = next(s);
	if (k < 0xc0) {
		size_t i = k % (sizeof names / sizeof names[0]);
		put(m, names[i].w, names[i].n);
		return;
	}
	size_t labels = (size_t)(k & 7) + 1, total = 1;
	for (size_t i = 0; i < labels; i++) {
		size_t len = next(s) % 64;
		if (len == 0 || total + 1 + len > 255)
			break;
		unsigned char l = (unsigned char)len;
		put(m, &l, 1);
		for (size_t j = 0; j < len; j++) {
			unsigned char c = next(s);
			put(m, &c, 1);
		}
		total += 1 + len;
	}
	put(m, "", 1);
}

static void put_addr(struct msg *m, struct stream *s, int type, bool mine)
{
	size_t len = type == DNS_T_A ? 4 : 16;
	unsigned char a[16];
	if (mine && client_addr.family == (type == DNS_T_A ? AF_INET : AF_INET6)) {
		memcpy(a, client_addr.b, len);
	} else if (!mine && more(s)) {
		for (size_t i = 0; i < len; i++)
			a[i] = next(s);
	} else {
		memset(a, 0, sizeof a);
		a[0] = type == DNS_T_A ? 192 : 0x20;
		a[len - 1] = 99;
	}
	put(m, a, len);
}

/* One answer record of TYPE; DEFAULTS: the ordinary record. */
static void put_rr(struct msg *m, int type, uint32_t ttl, struct stream *s, bool defaults,
		   bool mine)
{
	put(m, "", 1); /* owner: the root; dnsmsg does not compare it */
	put16(m, (unsigned)type);
	put16(m, 1);
	put32(m, ttl);
	size_t rdlen_at = m->n;
	put16(m, 0);
	size_t start = m->n;
	switch (type) {
	case DNS_T_A:
	case DNS_T_AAAA:
		if (defaults)
			put_addr(m, s, type, mine);
		else
			put_addr(m, s, type, next(s) < 0x80);
		break;
	case DNS_T_MX:
		put16(m, defaults ? 10 : next(s));
		if (defaults)
			put(m, names[1].w, names[1].n);
		else
			put_name(m, s);
		break;
	default:
		if (defaults)
			put(m, names[0].w, names[0].n);
		else
			put_name(m, s);
		break;
	}
	if (m->overflow)
		return;
	size_t rdlen = m->n - start;
	m->b[rdlen_at] = (unsigned char)(rdlen >> 8);
	m->b[rdlen_at + 1] = (unsigned char)rdlen;
}

static void message(struct msg *m, unsigned rcode, unsigned an)
{
	m->n = 0;
	m->overflow = false;
	put16(m, 0);
	put16(m, 0x8180 | rcode);
	put16(m, 0);
	put16(m, an);
	put16(m, 0);
	put16(m, 0);
}

void ares_query(ares_channel c, const char *name, int dnsclass, int type, ares_callback cb,
		void *arg)
{
	(void)dnsclass;
	activity++;
	uint8_t k = more(&dscript) ? next(&dscript) : 0;
	uint64_t delay = 0;
	if (k & 0x80)
		delay = (uint64_t)next(&dscript) * 20;
	uint32_t ttl = (k & 16) ? 300 : 0;
	int status = ARES_SUCCESS;
	struct msg m;
	message(&m, 0, 0);
	if (cares_refuses(name) || (k & 7) == 1) {
		/* c-ares answers these inside ares_query */
		static const int sync_err[] = { ARES_EBADNAME, ARES_ENOMEM, ARES_ESERVFAIL };
		cb(arg, cares_refuses(name) ? ARES_EBADNAME : sync_err[(k >> 3) % 3], 0, NULL, 0);
		return;
	}
	switch (k & 7) {
	case 0:
		message(&m, 0, 1);
		put_rr(&m, type, ttl, &dscript, true, (k & 8) != 0);
		break;
	case 2:
		message(&m, 3, 0);
		status = ARES_ENOTFOUND;
		break;
	case 3:
		status = ARES_ENODATA;
		break;
	case 4:
		status = ARES_ESERVFAIL;
		m.n = 0;
		break;
	case 5: {
		unsigned n = next(&dscript) % 6;
		message(&m, 0, n);
		for (unsigned i = 0; i < n; i++)
			put_rr(&m, type, ttl, &dscript, false, false);
		break;
	}
	case 6: {
		m.n = next(&dscript);
		for (size_t i = 0; i < m.n; i++)
			m.b[i] = next(&dscript);
		break;
	}
	case 7:
		status = ARES_ETIMEOUT;
		m.n = 0;
		delay = (uint64_t)c->timeout_ms * (uint64_t)(c->tries > 0 ? c->tries : 1);
		break;
	}
	struct fake_q *q = calloc(1, sizeof *q);
	CHECK(q != NULL);
	q->cb = cb;
	q->arg = arg;
	q->due = vnow_ms + delay;
	q->status = status;
	if (m.n > 0 && !m.overflow) {
		q->abuf = malloc(m.n);
		CHECK(q->abuf != NULL);
		memcpy(q->abuf, m.b, m.n);
		q->alen = (int)m.n;
	}
	q->next = c->pending;
	c->pending = q;
}

/* ------------------------------------------------------------------ */
/* the backend                                                        */

static int listen_fd = -1;
static char backend_addr[64];
static struct event *accept_ev;
static bool probe_phase;

/* The lines of a body (the bytes before the final ".\r\n", so empty or
 * ended by CRLF), each without one leading dot, each ended by '\n'. */
static char *body_text(const char *b, size_t n, size_t *outlen)
{
	char *t = malloc(n + 1);
	CHECK(t != NULL);
	size_t o = 0;
	bool bol = true;
	for (size_t i = 0; i < n; i++) {
		if (bol && b[i] == '.') {
			bol = false;
			continue;
		}
		bol = false;
		if (b[i] == '\r' && i + 1 < n && b[i + 1] == '\n') {
			t[o++] = '\n';
			i++;
			bol = true;
			continue;
		}
		t[o++] = b[i];
	}
	*outlen = o;
	return t;
}

struct pending_reply {
	struct pending_reply *next;
	uint64_t due;
	char *text;                 /* NULL: close */
	size_t len;
	char *msg;                  /* an accepted message's text: record it when sent */
	size_t msg_len;
	bool rcpt_ok;
};

#define BCONN_MAX 32
struct bconn {
	struct bufferevent *bev;
	struct event *timer;
	struct pending_reply *out, **out_tail;
	uint64_t last_due;
	bool probe, stalled, closing;
	bool body;                  /* in DATA, after our 354 */
	bool close_in_body;
	bool rcpt_accepted;         /* in this transaction: a 2xx to a RCPT */
	char win[5];                /* the last bytes of the body */
	bool prev_cr;
	char *raw;                  /* the body so far */
	size_t raw_len, raw_cap;
};
static struct bconn *bconns[BCONN_MAX];

static void bconn_free(struct bconn *c)
{
	for (size_t i = 0; i < BCONN_MAX; i++)
		if (bconns[i] == c)
			bconns[i] = NULL;
	while (c->out) {
		struct pending_reply *r = c->out;
		c->out = r->next;
		free(r->text);
		free(r->msg);
		free(r);
	}
	if (c->bev)
		bufferevent_free(c->bev);
	event_free(c->timer);
	free(c->raw);
	free(c);
}

/* Sends what is due; false when the connection is gone. */
static bool bconn_flush(struct bconn *c)
{
	while (c->out && c->out->due <= vnow_ms) {
		struct pending_reply *r = c->out;
		c->out = r->next;
		if (!c->out)
			c->out_tail = &c->out;
		if (!r->text) {
			/* what was written goes out before the close, as a
			 * server's reply-then-close does */
			struct evbuffer *o = bufferevent_get_output(c->bev);
			while (evbuffer_get_length(o) > 0 &&
			       evbuffer_write(o, bufferevent_getfd(c->bev)) > 0)
				;
			free(r);
			bconn_free(c);
			return false;
		}
		bufferevent_write(c->bev, r->text, r->len);
		if (print_logs)
			fprintf(stderr, "backend %p > %.*s\n", (void *)c, (int)r->len, r->text);
		if (r->msg) {
			CHECK(accepted.tail - accepted.head < MSG_MAX);
			size_t i = accepted.tail++ % MSG_MAX;
			accepted.text[i] = r->msg;
			accepted.len[i] = r->msg_len;
			r->msg = NULL;
		}
		if (r->rcpt_ok)
			accepted.rcpt_ok++;
		free(r->text);
		free(r);
	}
	if (c->out) {
		uint64_t left = c->out->due - vnow_ms;
		struct timeval tv = { (time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000 };
		evtimer_add(c->timer, &tv);
	}
	return true;
}

static void bconn_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	activity++;
	bconn_flush(arg);
}

/* Queues TEXT (NULL: close) after DELAY, behind what is queued already. */
static void queue(struct bconn *c, const char *text, uint64_t delay, char *msg, size_t msg_len,
		  bool rcpt_ok)
{
	struct pending_reply *r = calloc(1, sizeof *r);
	CHECK(r != NULL);
	if (text) {
		r->len = strlen(text);
		r->text = strdup(text);
		CHECK(r->text != NULL);
	}
	uint64_t due = vnow_ms + delay;
	r->due = due > c->last_due ? due : c->last_due;
	c->last_due = r->due;
	r->msg = msg;
	r->msg_len = msg_len;
	r->rcpt_ok = rcpt_ok;
	*c->out_tail = r;
	c->out_tail = &r->next;
}

static void ehlo_reply(char *out, size_t len, bool odd)
{
	static const char *const ext[8] = {
		"PIPELINING", "XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT",
		"SIZE 10240000", "8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES",
		"STARTTLS\r\n250-CHUNKING",
	};
	size_t o = (size_t)snprintf(out, len, "250-backend.test\r\n");
	if (odd)
		o += (size_t)snprintf(out + o, len - o,
				      "250-SIZE junk\r\n250-XCLIENT\r\n250-PIPELINING x y\r\n"
				      "250-SIZE 18446744073709551617\r\n");
	for (int i = 0; i < 8; i++)
		if (caps_bits & (1u << i))
			o += (size_t)snprintf(out + o, len - o, "250-%s\r\n", ext[i]);
	snprintf(out + o, len - o, "250 HELP\r\n");
}

/* The reply the backend owes for VERB ("" the greeting, "." the end of
 * data), from the script unless this is the probe's connection. MSG: the
 * message just received (owned). False when the connection is gone. */
static bool answer(struct bconn *c, const char *verb, char *msg, size_t msg_len)
{
	char def[1024];
	bool greet = !verb[0], eod = strcmp(verb, ".") == 0;
	bool rcpt = strcasecmp(verb, "RCPT") == 0, data = strcasecmp(verb, "DATA") == 0;
	if (greet || strcasecmp(verb, "XCLIENT") == 0)
		snprintf(def, sizeof def, "220 backend.test ESMTP\r\n");
	else if (strcasecmp(verb, "EHLO") == 0)
		ehlo_reply(def, sizeof def, false);
	else if (data)
		snprintf(def, sizeof def, "354 End data with <CR><LF>.<CR><LF>\r\n");
	else if (strcasecmp(verb, "QUIT") == 0)
		snprintf(def, sizeof def, "221 2.0.0 Bye\r\n");
	else if (eod)
		snprintf(def, sizeof def, "250 2.0.0 Ok: queued as 4AB12\r\n");
	else
		snprintf(def, sizeof def, "250 2.1.0 Ok\r\n");
	uint8_t k = (c->probe || !more(&bscript)) ? 0 : next(&bscript);
	uint64_t delay = (k & 0x80) ? (uint64_t)next(&bscript) * 50 : 0;
	if ((k & 15) % 11 != 0 || delay > 0)
		backend_scripted_failure = true;
	const char *text = def;
	bool close_after = strcasecmp(verb, "QUIT") == 0;
	uint64_t close_delay = delay;
	switch ((k & 15) % 11) {
	case 1:
		text = "451 4.3.0 Error: queue file write error\r\n";
		break;
	case 2:
		text = "554 5.7.1 Error: rejected\r\n";
		break;
	case 3:
		text = "421 4.4.2 backend.test Error: timeout exceeded\r\n";
		close_after = true;
		break;
	case 4:
		text = NULL;
		break;
	case 5:
		c->stalled = true;
		free(msg);
		return true;
	case 6:
		/* idle too long afterwards, as smtpd_timeout ends it */
		close_after = true;
		close_delay = delay + 1000;
		break;
	case 7:
		if (strcasecmp(verb, "EHLO") == 0) {
			ehlo_reply(def, sizeof def, true);
		} else {
			char code[4];
			memcpy(code, def, 3);
			code[3] = 0;
			snprintf(def, sizeof def, "%s-first line\r\n%s-\r\n%s last\r\n", code, code,
				 code);
		}
		break;
	case 8:
		text = "hello there\r\n";
		break;
	case 9:
		c->close_in_body = true;
		break;
	case 10:
		text = "354 go ahead\r\n";
		break;
	default:
		break;
	}
	bool ok = text && text[0] == '2';
	if (text) {
		queue(c, text, delay, eod && ok ? msg : NULL, msg_len, rcpt && ok);
		if (eod && ok)
			msg = NULL;
		if (data && strncmp(text, "354", 3) == 0) {
			c->body = true;
			memcpy(c->win, "\0\0\0\r\n", 5);
			c->prev_cr = false;
			c->raw_len = 0;
		}
		if (rcpt && ok)
			c->rcpt_accepted = true;
	}
	free(msg);
	if (!text || close_after) {
		c->closing = true;
		queue(c, NULL, close_delay, NULL, 0, false);
	}
	return bconn_flush(c);
}

static void raw_add(struct bconn *c, char ch)
{
	if (c->raw_len == c->raw_cap) {
		size_t cap = c->raw_cap * 2 + 256;
		char *m = realloc(c->raw, cap);
		CHECK(m != NULL);
		c->raw = m;
		c->raw_cap = cap;
	}
	c->raw[c->raw_len++] = ch;
}

static bool known_verb(const char *v)
{
	static const char *const verbs[] = { "EHLO", "HELO", "XCLIENT", "MAIL", "RCPT", "DATA",
					     "RSET", "NOOP", "QUIT", "ETRN" };
	for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
		if (strcasecmp(v, verbs[i]) == 0)
			return true;
	return false;
}

static bool valid_utf8(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = p[i];
		size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
			   : (c & 0xf8) == 0xf0 ? 4 : 0;
		if (len == 0 || (len == 2 && c < 0xc2) || n - i < len)
			return false;
		for (size_t k = 1; k < len; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
		i += len;
	}
	return true;
}

/* As Postfix's valid_hostname: LDH (and '_') labels of 1..63 octets, no
 * '-' at either end, 255 in all, not all numeric. */
static bool valid_hostname(const char *h)
{
	size_t label = 0, total = 0;
	bool non_numeric = false;
	for (const char *p = h;; p++, total++) {
		if (*p == '.' || !*p) {
			if (label == 0 || p[-1] == '-')
				return false;
			if (!*p)
				break;
			label = 0;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return false;
		if (label == 0 && *p == '-')
			return false;
		if (++label > 63)
			return false;
		if (!(*p >= '0' && *p <= '9'))
			non_numeric = true;
	}
	return total <= 255 && non_numeric;
}

/* What Postfix (3.7, smtputf8_enable) answers to LINE when it refuses it
 * for its bytes alone, whoever sent it; NULL when it does not. */
static const char *postfix_refuses(const char *line, size_t n)
{
	if (!valid_utf8((const unsigned char *)line, n))
		return "500 5.5.2 Error: bad UTF-8 syntax\r\n";
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			return "500 5.5.2 Error: bad syntax\r\n";
	if ((n == 4 && (strncasecmp(line, "EHLO", 4) == 0 || strncasecmp(line, "HELO", 4) == 0)) ||
	    (n == 5 && (strncasecmp(line, "EHLO ", 5) == 0 || strncasecmp(line, "HELO ", 5) == 0)))
		return "501 Syntax: EHLO hostname\r\n";
	if (n < 8 || strncasecmp(line, "XCLIENT ", 8) != 0)
		return NULL;
	/* XCLIENT NAME=xtext: a host name, [UNAVAILABLE] or [TEMPUNAVAIL];
	 * HELO=xtext: at most 255 octets */
	for (size_t i = 8; i < n;) {
		size_t e = i;
		while (e < n && line[e] != ' ')
			e++;
		char val[600];
		size_t v = 0;
		const char *eq = memchr(line + i, '=', e - i);
		for (const char *p = eq ? eq + 1 : line + e; p < line + e && v < sizeof val - 1; p++) {
			if (*p == '+' && line + e - p >= 3) {
				char hex[3] = { p[1], p[2], 0 };
				val[v++] = (char)strtol(hex, NULL, 16);
				p += 2;
			} else {
				val[v++] = *p;
			}
		}
		val[v] = 0;
		if (eq && (size_t)(eq - (line + i)) == 4 && strncasecmp(line + i, "NAME", 4) == 0 &&
		    strcmp(val, "[UNAVAILABLE]") != 0 && strcmp(val, "[TEMPUNAVAIL]") != 0 &&
		    !valid_hostname(val))
			return "501 5.5.4 Bad NAME syntax\r\n";
		if (eq && (size_t)(eq - (line + i)) == 4 && strncasecmp(line + i, "HELO", 4) == 0 &&
		    v > 255)
			return "501 5.5.4 Bad HELO syntax\r\n";
		i = e + 1;
	}
	return NULL;
}

/* One command line as the backend reads it (without its CRLF). */
static bool backend_line(struct bconn *c, const char *line, size_t n)
{
	if (print_logs)
		fprintf(stderr, "backend %p < %.*s\n", (void *)c, (int)n, line);
	CHECK(memchr(line, '\r', n) == NULL);   /* a CR inside a command line */
	char verb[16];
	size_t v = 0;
	while (v < n && v < sizeof verb - 1 && line[v] != ' ')
		verb[v] = line[v], v++;
	verb[v] = 0;
	CHECK(known_verb(verb));                 /* no body or client junk as a command */
	if (strcasecmp(verb, "MAIL") == 0 || strcasecmp(verb, "RSET") == 0 ||
	    strcasecmp(verb, "EHLO") == 0 || strcasecmp(verb, "HELO") == 0 ||
	    strcasecmp(verb, "XCLIENT") == 0)
		c->rcpt_accepted = false;
	if (strcasecmp(verb, "DATA") == 0)
		CHECK(c->rcpt_accepted);             /* DATA only after an accepted recipient */
	if (c->stalled || c->closing)
		return true;
	const char *refusal = postfix_refuses(line, n);
	if (refusal) {
		queue(c, refusal, 0, NULL, 0, false);
		return bconn_flush(c);
	}
	return answer(c, verb, NULL, 0);
}

static void backend_read(struct bufferevent *bev, void *arg)
{
	struct bconn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	activity++;
	int one = 1;
	setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
	if (print_logs)
		fprintf(stderr, "%llu backend %p reads %zu bytes\n", (unsigned long long)vnow_ms,
			(void *)c, evbuffer_get_length(in));
	while (evbuffer_get_length(in) > 0) {
		if (c->body) {
			if (c->close_in_body) {
				bconn_free(c);
				return;
			}
			char ch;
			evbuffer_remove(in, &ch, 1);
			CHECK(!(c->prev_cr && ch != '\n'));   /* a bare CR reached the backend */
			CHECK(!(ch == '\n' && !c->prev_cr));  /* a bare LF reached the backend */
			c->prev_cr = ch == '\r';
			memmove(c->win, c->win + 1, 4);
			c->win[4] = ch;
			raw_add(c, ch);
			if (memcmp(c->win, "\r\n.\r\n", 5) == 0) {
				c->body = false;
				c->rcpt_accepted = false;
				size_t len;
				char *t = body_text(c->raw, c->raw_len - 3, &len);
				if (c->stalled || c->closing) {
					free(t);
				} else if (!answer(c, ".", t, len)) {
					return;
				}
			}
			continue;
		}
		size_t n;
		char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
		if (!line)
			return;
		/* the line ended by CRLF, and held no other LF (readln split it) */
		CHECK(n > 0 && line[n - 1] == '\r');
		bool alive = backend_line(c, line, n - 1);
		free(line);
		if (!alive)
			return;
	}
}

static void backend_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	activity++;
	bconn_free(arg);
}

/* Nagle's algorithm holds a small segment until the last one is
 * acknowledged, ~40 ms of real time on loopback, while virtual time races
 * on: a body's last line would reach the backend after its time-out. Both
 * ends of a backend connection get TCP_NODELAY (the proxy's end is found
 * by its address: same process), and the backend acknowledges at once. */
static void no_delay(int s)
{
	int one = 1;
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct sockaddr_storage peer, me, a, b;
	socklen_t pl = sizeof peer, ml = sizeof me;
	if (getpeername(s, (struct sockaddr *)&peer, &pl) < 0 ||
	    getsockname(s, (struct sockaddr *)&me, &ml) < 0)
		return;
	for (int fd = 0; fd < 256; fd++) {
		socklen_t al = sizeof a, bl = sizeof b;
		if (fd == s || getsockname(fd, (struct sockaddr *)&a, &al) < 0 || al != pl ||
		    memcmp(&a, &peer, al) != 0 || getpeername(fd, (struct sockaddr *)&b, &bl) < 0 ||
		    bl != ml || memcmp(&b, &me, bl) != 0)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		return;
	}
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	(void)arg;
	int s = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (s < 0)
		return;
	activity++;
	no_delay(s);
	struct bconn *c = calloc(1, sizeof *c);
	CHECK(c != NULL);
	size_t slot = 0;
	while (slot < BCONN_MAX && bconns[slot])
		slot++;
	CHECK(slot < BCONN_MAX);   /* more backend connections than any session needs */
	bconns[slot] = c;
	c->out_tail = &c->out;
	c->probe = probe_phase;
	c->bev = bufferevent_socket_new(srv.base, s, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(srv.base, bconn_timer, c);
	CHECK(c->bev && c->timer);
	bufferevent_setcb(c->bev, backend_read, NULL, backend_event, c);
	bufferevent_enable(c->bev, EV_READ);
	answer(c, "", NULL, 0);
}

static bool any_bconn(void)
{
	for (size_t i = 0; i < BCONN_MAX; i++)
		if (bconns[i])
			return true;
	return false;
}

/* ------------------------------------------------------------------ */
/* the client                                                         */

static struct {
	struct bufferevent *bev;
	struct evbuffer *sent;      /* everything written, for the reply count */
	size_t upos;                /* where the next unanswered command starts */
	bool body;                  /* the bytes at upos are a body (after 354) */
	bool greeted, closed_by_server;
	bool last_was_close;        /* the last reply was 421 / 221 / a refused greeting */
	bool ended;                 /* 221 or 421 seen: nothing may follow */
	int rcode;
} cl;
static unsigned client_rcpt_ok;   /* 2xx to RCPT, all connections of the run */

/* Where the command at upos ends (just after it), or 0 when incomplete. */
static size_t unit_end(void)
{
	size_t len = evbuffer_get_length(cl.sent);
	if (cl.upos >= len)
		return 0;
	const unsigned char *p = evbuffer_pullup(cl.sent, -1);
	if (!cl.body) {
		const unsigned char *lf = memchr(p + cl.upos, '\n', len - cl.upos);
		return lf ? (size_t)(lf - p) + 1 : 0;
	}
	char win[5] = { 0, 0, 0, '\r', '\n' };
	for (size_t i = cl.upos; i < len; i++) {
		memmove(win, win + 1, 4);
		win[4] = (char)p[i];
		if (memcmp(win, "\r\n.\r\n", 5) == 0)
			return i + 1;
	}
	return 0;
}

static bool unanswered(void)
{
	return !cl.greeted || unit_end() != 0;
}

/* A complete reply of CODE arrived. */
static void on_reply(int code)
{
	if (print_logs)
		fprintf(stderr, "%llu client < %d\n", (unsigned long long)vnow_ms, code);
	CHECK(!cl.ended);   /* nothing after 221 or 421 */
	if (!cl.greeted) {
		cl.greeted = true;
		cl.last_was_close = code != 220;
		cl.ended = code == 421;
		return;
	}
	cl.last_was_close = code == 421 || code == 221;
	size_t end = unit_end();
	if (!end) {
		/* unasked: only 421 before closing (timeouts, errors) */
		CHECK(code == 421);
		cl.ended = true;
		return;
	}
	const unsigned char *p = evbuffer_pullup(cl.sent, -1);
	if (cl.body) {
		if (code / 100 == 2) {
			/* the backend accepted this message (with this text) */
			size_t from = cl.upos, n = end - 3 - from;
			bool clean = true;
			for (size_t i = from; i < from + n; i++)
				if ((p[i] == '\r' && (i + 1 >= from + n || p[i + 1] != '\n')) ||
				    (p[i] == '\n' && (i == from || p[i - 1] != '\r')))
					clean = false;
			size_t tl = 0;
			char *t = clean ? body_text((const char *)p + from, n, &tl) : NULL;
			bool found = false;
			while (!found) {
				CHECK(accepted.head < accepted.tail);  /* 2xx with no accepted message */
				size_t i = accepted.head++ % MSG_MAX;
				found = !clean || (accepted.len[i] == tl &&
						   memcmp(accepted.text[i], t, tl) == 0);
				free(accepted.text[i]);
				accepted.text[i] = NULL;
			}
			free(t);
		}
		cl.body = false;
	} else {
		if (code == 354) {
			CHECK(end - cl.upos >= 4 && strncasecmp((const char *)p + cl.upos, "DATA", 4) == 0);
			cl.body = true;
		}
		if (code / 100 == 2 && end - cl.upos >= 4 &&
		    strncasecmp((const char *)p + cl.upos, "RCPT", 4) == 0) {
			client_rcpt_ok++;
			CHECK(client_rcpt_ok <= accepted.rcpt_ok);  /* 2xx to a RCPT the backend did not take */
		}
	}
	cl.upos = end;
	if (code == 221 || code == 421)
		cl.ended = true;
}

static void client_read(struct bufferevent *bev, void *arg)
{
	(void)arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	activity++;
	size_t n;
	char *line;
	while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF))) {
		CHECK(n >= 4 && line[n - 1] == '\r');           /* replies end with CRLF */
		CHECK(n - 1 <= 1000);
		for (int i = 0; i < 3; i++)
			CHECK(line[i] >= '0' && line[i] <= '9');
		CHECK(line[3] == ' ' || line[3] == '-' || n - 1 == 3);
		int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		CHECK(cl.rcode == 0 || cl.rcode == code);       /* one code per reply */
		bool last = n - 1 == 3 || line[3] == ' ';
		free(line);
		if (!last) {
			cl.rcode = code;
			continue;
		}
		cl.rcode = 0;
		on_reply(code);
	}
}

static void client_gone_server(void)
{
	cl.closed_by_server = true;
	CHECK(cl.rcode == 0);   /* closed in the middle of a reply */
	/* commands left unanswered: the server must have said why */
	if (unanswered())
		CHECK(cl.last_was_close);
	bufferevent_free(cl.bev);
	cl.bev = NULL;
}

static void client_event(struct bufferevent *bev, short what, void *arg)
{
	(void)what;
	(void)arg;
	activity++;
	/* what is still readable counts */
	client_read(bev, NULL);
	client_gone_server();
}

static void client_send(const void *p, size_t n)
{
	if (!cl.bev || n == 0)
		return;
	if (print_logs)
		fprintf(stderr, "%llu client > %.*s\n", (unsigned long long)vnow_ms, (int)n, (const char *)p);
	evbuffer_add(cl.sent, p, n);
	bufferevent_write(cl.bev, p, n);
}

static void client_str(const char *s)
{
	client_send(s, strlen(s));
}

/* ------------------------------------------------------------------ */
/* the loop                                                           */

/* Runs the loop until nothing moves. */
static void settle(void)
{
	for (int quiet = 0; quiet < QUIET_ITERS;) {
		unsigned a = activity;
		event_base_loop(srv.base, EVLOOP_NONBLOCK);
		quiet = activity == a ? quiet + 1 : 0;
	}
}

static uint64_t run_start;

static void step(void)
{
	vnow_ms += STEP_MS;
	CHECK(vnow_ms - run_start < RUN_BOUND_MS);
	settle();
}

/* Every command answered (or the server closed) within the bound. */
static void wait_replies(void)
{
	uint64_t t0 = vnow_ms;
	settle();
	while (cl.bev && unanswered()) {
		CHECK(vnow_ms - t0 < REPLY_BOUND_MS);   /* a command went unanswered */
		step();
	}
}

static const char *const helo_names[] = {
	"client.example.net", "[192.0.2.10]", "bad\xffname", "a b", "", "localhost",
	"evil!name.example.net", "[IPv6:2001:db8::10]", "x.", "-dash.example",
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example",
	"na\tme", "UPPER.EXAMPLE.NET", "[1.2.3]", "\xc3\xa9xample.net", "a..b",
};
static const char *const senders[] = {
	"<alice@sender.example>", "<>", "<bob@example.net>", "<srs0=ab=cd=example.com=x@fwd.example>",
	"<prvs=0123456789=carol@example.org>", "<dave@[192.0.2.1]>", "<nodomain>",
	"<\"quoted user\"@example.net>", "<@route.example:eve@example.net>", "<x@localhost>",
	"<a@b>", "alice@sender.example",
};
static const char *const mail_params[] = {
	"", " SIZE=1000", " BODY=8BITMIME", " SMTPUTF8", " SIZE=99999999999", " RET=HDRS ENVID=x",
	" AUTH=<>", " FOO=bar", " SIZE=", " BODY=BINARYMIME",
};
static const char *const rcpts[] = {
	"<user@test.example>", "<postmaster>", "<user@relay.example>", "<user@other.example>",
	"<Postmaster>", "<>", "<user@[127.0.0.1]>", "<user@test.example> NOTIFY=SUCCESS ORCPT=rfc822;x@y",
	"<user2@test.example>", "<user@sub.relay.example>", "user@test.example",
	"<postmaster@test.example>", "<user@test.example> FOO=1", "<trap@test.example>",
};
static const char *const misc[] = {
	"VRFY user", "HELP", "ETRN test.example", "STARTTLS", "EXPN list", "BDAT 10 LAST",
	"AUTH PLAIN", "XCLIENT ADDR=1.2.3.4", "TURN", "\x00\x01", "GET / HTTP/1.0",
};
#define PICK(t, b) ((t)[(b) % (sizeof(t) / sizeof((t)[0]))])

static void client_op(uint8_t op)
{
	char line[1200];
	uint8_t a;
	size_t n;
	switch (op % 16) {
	case 0:
	case 1:
		snprintf(line, sizeof line, "%s %s\r\n", op % 16 ? "EHLO" : "HELO",
			 PICK(helo_names, next(&cscript)));
		client_str(line);
		break;
	case 2:
		a = next(&cscript);
		snprintf(line, sizeof line, "MAIL FROM:%s%s\r\n", PICK(senders, a),
			 PICK(mail_params, next(&cscript)));
		client_str(line);
		break;
	case 3:
		snprintf(line, sizeof line, "RCPT TO:%s\r\n", PICK(rcpts, next(&cscript)));
		client_str(line);
		break;
	case 4:
		client_str("DATA\r\n");
		break;
	case 5:
	case 10:
	case 11:
		n = next(&cscript);
		for (size_t i = 0; i < n; i++)
			line[i] = (char)next(&cscript);
		client_send(line, n);
		if (op % 16 == 10)
			client_str("\r\n");
		break;
	case 6:
		client_str("From: a@sender.example\r\nSubject: test\r\n\r\nHello.\r\n"
			   "..leading dot\r\n.\r\n");
		break;
	case 7:
		client_str("RSET\r\n");
		break;
	case 8:
		client_str("NOOP\r\n");
		break;
	case 9:
		client_str("QUIT\r\n");
		break;
	case 12:
		wait_replies();
		break;
	case 13: {
		uint64_t until = vnow_ms + (uint64_t)next(&cscript) * 100;
		settle();
		while (vnow_ms < until)
			step();
		break;
	}
	case 14:
		if (cl.bev) {
			settle();
			bufferevent_free(cl.bev);
			cl.bev = NULL;
		}
		break;
	case 15: {
		const char *m = PICK(misc, next(&cscript));
		client_send(m, m[0] ? strlen(m) : 2);
		client_str("\r\n");
		break;
	}
	}
	settle();
}

/* A new connection from the client (the last one is closed already). */
static void client_connect(void)
{
	if (cl.sent)
		evbuffer_free(cl.sent);
	memset(&cl, 0, sizeof cl);
	cl.sent = evbuffer_new();
	CHECK(cl.sent != NULL);
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	cl.bev = bufferevent_socket_new(srv.base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	CHECK(cl.bev != NULL);
	bufferevent_setcb(cl.bev, client_read, NULL, client_event, NULL);
	bufferevent_enable(cl.bev, EV_READ);
	/* as the listener admits it (the limit is never reached here) */
	CHECK(connlimit_acquire(&client_addr, 10));
	session_start(sv[1], (const struct sockaddr *)&client_sa, &client_addr, false);
	settle();
}

/* ------------------------------------------------------------------ */
/* one run                                                            */

static char conf_path[64];   /* a memfd: nothing is left behind in /tmp */
static int baseline_fds;

static int count_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 256; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

static void write_config(uint8_t bits)
{
	FILE *f = fopen(conf_path, "w");
	CHECK(f != NULL);
	bool small = bits & 128;
	fprintf(f,
		"myhostname = \"gw.test\";\n"
		"listen = [ \"127.0.0.1:1\" ];\n"
		"backend = { address = \"%s\"; xclient = %s; connect_timeout = 1;\n"
		"  command_timeout = 2; idle_time = %d; refuse_when_down = %s; };\n"
		"mynetworks = [ \"127.0.0.0/8\", \"::1/128\" ];\n"
		"local_domains = [ \"test.example\" ];\n"
		"relay_domains = [ \"relay.example\" ];\n"
		"helo_required = %s;\n"
		"limits = { max_connections = 100; max_per_client = 10; max_recipients = %d;\n"
		"  max_line = %d; command_timeout = 10; data_timeout = 10; max_errors = %d; };\n"
		"greylist = { enabled = true; delay = %d; };\n"
		"store = { type = \"memory\"; file = \"\"; max_entries = 1000; };\n"
		"dns = { servers = [ \"127.0.0.1:53\" ]; timeout_ms = 500; tries = 1; };\n"
		"permit_mx_backup = %s;\n"
		"reject_unknown_sender_domain = %s;\n"
		"%s"
		"admin = { listen = \"\"; };\n"
		"control_socket = \"\";\n"
		"run_as_root = true;\n"
		"log = { target = \"syslog\"; level = \"debug\"; };\n",
		backend_addr, bits & 2 ? "true" : "false", bits & 4 ? 5 : 0,
		bits & 8 ? "true" : "false", bits & 64 ? "true" : "false", small ? 2 : 100,
		small ? 512 : 2048, small ? 3 : 20, bits & 1 ? 0 : 3600,
		bits & 32 ? "true" : "false", bits & 32 ? "true" : "false",
		bits & 16 ? "whitelist = { client_names = [ \".example.net\" ]; };\n"
			    "scoring = { dnsbl = [ \"bl.example=127.0.0.[2..11]*9\", \"wl.example*-5\" ]; };\n"
			    "greet_wait = 2;\n"
			    "spamtraps = [ \"trap@test.example\" ];\n"
			  : "");
	CHECK(fclose(f) == 0);
}

static void pick_client(uint8_t b)
{
	static const char *const addrs[] = { "127.0.0.1", "192.0.2.10", "198.51.100.7",
					     "2001:db8::10", "::1" };
	const char *a = PICK(addrs, b);
	memset(&client_sa, 0, sizeof client_sa);
	if (strchr(a, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&client_sa;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(40000);
		CHECK(inet_pton(AF_INET6, a, &s6->sin6_addr) == 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&client_sa;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(40000);
		CHECK(inet_pton(AF_INET, a, &s4->sin_addr) == 1);
	}
	CHECK(ipaddr_from_sockaddr((const struct sockaddr *)&client_sa, &client_addr));
}

static void init_once(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	print_logs = getenv("FUZZ_SESSION_LOG") != NULL;
	signal(SIGPIPE, SIG_IGN);
	int fd = memfd_create("fuzz_session.conf", MFD_CLOEXEC);
	CHECK(fd >= 0);
	snprintf(conf_path, sizeof conf_path, "/proc/self/fd/%d", fd);
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(listen_fd >= 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof sin;
	CHECK(bind(listen_fd, (struct sockaddr *)&sin, sizeof sin) == 0);
	CHECK(listen(listen_fd, 64) == 0);
	CHECK(getsockname(listen_fd, (struct sockaddr *)&sin, &sl) == 0);
	snprintf(backend_addr, sizeof backend_addr, "127.0.0.1:%u", ntohs(sin.sin_port));
	CHECK(metrics_init_private() == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init_once();
	if (size < 5)
		return 0;
	struct stream hdr = { data, 5, 0 };
	uint8_t cfgbits = next(&hdr);
	caps_bits = next(&hdr);
	pick_client(next(&hdr));
	size_t blen = next(&hdr), dlen = next(&hdr);
	size_t off = 5;
	blen = blen < size - off ? blen : size - off;
	bscript = (struct stream){ data + off, blen, 0 };
	off += blen;
	dlen = dlen < size - off ? dlen : size - off;
	dscript = (struct stream){ data + off, dlen, 0 };
	off += dlen;
	cscript = (struct stream){ data + off, size - off, 0 };

	baseline_fds = count_fds();
	write_config(cfgbits);
	char err[512];
	struct gg_config *cfg = gg_config_load(conf_path, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "fuzz_session: config: %s\n", err);
		abort();
	}
	virt = true;
	vnow_ms = 1000000;
	run_start = vnow_ms;
	memset(&srv, 0, sizeof srv);
	srv.cfg = cfg;
	srv.nworkers = 1;
	srv.base = event_base_new();
	CHECK(srv.base != NULL);
	log_setup(cfg->log.target, cfg->log.level);
	CHECK(store_open(srv.base, cfg) == 0);
	CHECK(resolver_open(srv.base, cfg) == 0);
	CHECK(spf_open(srv.base) == 0);
	accept_ev = event_new(srv.base, listen_fd, EV_READ | EV_PERSIST, on_accept, NULL);
	CHECK(accept_ev && event_add(accept_ev, NULL) == 0);

	/* start-up: the probe learns the backend's extensions (defaults only) */
	probe_phase = true;
	backend_probe(srv.base, cfg);
	settle();
	for (int i = 0; i < 50 && any_bconn(); i++)
		step();
	probe_phase = false;

	backend_scripted_failure = false;
	client_rcpt_ok = 0;
	memset(&cl, 0, sizeof cl);
	client_connect();
	for (unsigned conns = 1; more(&cscript);) {
		/* scripted waits add up: the script ends where the rest of the
		 * run (an op, the last replies, the session's end) could no
		 * longer fit in the run's bound */
		if (vnow_ms - run_start > RUN_BOUND_MS - 4 * REPLY_BOUND_MS)
			break;
		uint8_t op = next(&cscript);
		/* waiting, sleeping and leaving need no connection */
		bool sends = op % 16 < 12 || op % 16 == 15;
		if (!cl.bev && sends) {
			if (conns++ == CONNS_MAX)
				break;
			client_connect();
		}
		client_op(op);
	}

	/* the client waits for what it asked, then leaves */
	if (cl.bev)
		wait_replies();
	if (cl.bev) {
		bufferevent_free(cl.bev);
		cl.bev = NULL;
	}
	uint64_t t0 = vnow_ms;
	settle();
	while (srv.active > 0) {
		CHECK(vnow_ms - t0 < REPLY_BOUND_MS);   /* the session outlived its client */
		step();
	}

	/* One client's data does not make the backend "down" for everybody:
	 * only a backend that fails (or lags) by the script, or one that does
	 * not offer the XCLIENT the configuration asks for, may be. */
	CHECK(backend_reachable() || backend_scripted_failure || ((cfgbits & 2) && !(caps_bits & 2)));

	/* tear down as the worker does at exit */
	session_shutdown();
	linger_close_all();
	backend_shutdown();
	settle();
	for (size_t i = 0; i < BCONN_MAX; i++)
		if (bconns[i])
			bconn_free(bconns[i]);
	for (;;) {
		int s = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (s < 0)
			break;
		close(s);
	}
	event_free(accept_ev);
	store_close();
	spf_close();
	resolver_close();
	evbuffer_free(cl.sent);
	cl.sent = NULL;
	while (accepted.head < accepted.tail) {
		free(accepted.text[accepted.head % MSG_MAX]);
		accepted.text[accepted.head++ % MSG_MAX] = NULL;
	}
	accepted.head = accepted.tail = 0;
	accepted.rcpt_ok = 0;
	gg_config_unref(srv.cfg);
	event_base_free(srv.base);
	srv.base = NULL;
	srv.cfg = NULL;
	virt = false;
	if (count_fds() != baseline_fds) {
		for (int fd = 0; fd < 256; fd++) {
			char path[64], target[256];
			snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
			ssize_t n = readlink(path, target, sizeof target - 1);
			if (n > 0)
				fprintf(stderr, "fd %d: %.*s\n", fd, (int)n, target);
		}
	}
	CHECK(count_fds() == baseline_fds);   /* a descriptor was left open */
	return 0;
}
