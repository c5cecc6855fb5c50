/* session_tls: STARTTLS (RFC 3207) for a session: the hand-shake slots and
 * deadline, and the TLS filter set up at the client's first bytes. */

#include "session_priv.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "log.h"
#include "server.h"

/* Hand-shakes of this process that have not finished yet: each holds its
 * TLS state until then, so there are at most tls.max_handshakes. */
static int tls_pending;

/* The hand-shake finished, or the session ended: its slot is free. */
void tls_handshake_over(struct session *s)
{
	if (!s->tls_deadline)
		return;
	event_free(s->tls_deadline);
	s->tls_deadline = NULL;
	tls_pending--;
}

static void on_tls_info(const SSL *ssl, int where, int ret)
{
	(void)ret;
	if (where & SSL_CB_HANDSHAKE_DONE)
		tls_handshake_over(SSL_get_app_data(ssl));
}

/* After the 220 the client can be told nothing more in plaintext: a
 * hand-shake not finished in time ends the connection. */
static void on_tls_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct session *s = arg;
	log_reject(s, "STARTTLS", NULL, WHY_TLS_HANDSHAKE_TIMEOUT);
	kill_session(s);
}

/*
 * The TLS layer is a filter over the plaintext connection. Whatever the
 * client pipelined after STARTTLS is thrown away before the filter exists:
 * plaintext sent ahead must never be read as if it came through TLS (the
 * STARTTLS command injection class). The session then starts over: no
 * HELO, no transaction, and the backend connection (whose XCLIENT
 * described the plaintext session) goes. The filter itself waits for the
 * client's first bytes (tls_begin).
 */
void cmd_starttls(struct session *s, const struct smtp_cmd *c)
{
	if (c->arg_len) {
		reject_counted(s, "STARTTLS", "501 5.5.4 Syntax: STARTTLS", WHY_NONE);
		return;
	}
	if (s->txn != TX_NONE) {
		reject_counted(s, "STARTTLS", "503 5.5.1 Error: MAIL transaction in progress", WHY_NONE);
		return;
	}
	/* Postfix's answer when it cannot start TLS now: the client may go
	 * on in plaintext */
	if (tls_pending >= s->cfg->tls_max_handshakes) {
		refuse(s, "STARTTLS", "454 4.7.0 TLS not available due to temporary reason",
		       WHY_MAX_TLS_HANDSHAKES);
		return;
	}
	s->tls_deadline = evtimer_new(srv.base, on_tls_deadline, s);
	if (!s->tls_deadline) {
		reply(s, "454 4.7.0 TLS not available due to local problem");
		return;
	}
	struct timeval tv = { s->cfg->tls_handshake_timeout, 0 };
	evtimer_add(s->tls_deadline, &tv);
	tls_pending++;
	reply(s, "220 2.0.0 Ready to start TLS");
	struct evbuffer *in = bufferevent_get_input(s->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	s->state = SS_TLS_WAIT;
	s->tls = true;
	abort_transaction(s, "STARTTLS");
	drop_backend(s);
	s->helo_seen = false;
	s->esmtp = false;
	s->helo[0] = 0;
}

/* The client's first bytes after the 220 are here, in the plaintext
 * input, where the filter reads them from. Only now is the TLS state
 * allocated: a client that says STARTTLS and sends nothing costs what a
 * plaintext session costs until its deadline. */
void tls_begin(struct session *s)
{
	SSL *ssl = SSL_new(s->cfg->tls_ctx);
	struct bufferevent *tls = ssl ? bufferevent_openssl_filter_new(
		srv.base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE) : NULL;
	if (!tls) {
		SSL_free(ssl);
		struct logline l;
		ll_begin(&l, LOG_LVL_ERROR, "starttls");
		ll_int(&l, "id", (long long)s->id);
		ll_str(&l, "client", s->client_str);
		ll_str(&l, "error", "cannot set up TLS (out of memory); connection closed");
		ll_emit(&l);
		kill_session(s);
		return;
	}
	SSL_set_app_data(ssl, s);
	SSL_set_info_callback(ssl, on_tls_info);
	/* what is left of the 220 leaves ahead of the hand-shake, through the
	 * plaintext bufferevent as the filter expects */
	bufferevent_enable(s->bev, EV_WRITE);
	s->bev = tls;
	s->state = SS_CMD;
	session_set_callbacks(s);
}

const char *tls_version(const struct session *s)
{
	if (!s->tls)
		return NULL;
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
	return ssl ? SSL_get_version(ssl) : NULL;
}
