/* session_data: DATA, the body relayed through the dot codec to the
 * backend with back-pressure both ways. */

#include "session_priv.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <string.h>

#include "backend.h"
#include "dotcodec.h"
#include "metrics.h"

static void data_finished(struct session *s, const char *text, size_t len, bool accepted)
{
	log_transaction(s, accepted ? "accepted" : "rejected", text, len);
	if (accepted) {
		s->messages++;
		metrics_add(M_MESSAGES_ACCEPTED, 1);
		metrics_add(M_BYTES_RELAYED, (int64_t)s->dc.out_bytes);
	} else {
		metrics_add(M_MESSAGES_REJECTED, 1);
	}
	s->be_txn = false;
	txn_to(s, TX_NONE);
	struct timeval tv = { s->cfg->limits.command_timeout, 0 };
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	resume(s);
}

static void body_replied(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	struct session *s = arg;
	if (s->state == SS_DATA) {
		/* The backend spoke (or died) before the body was complete:
		 * whatever it said, the message is not safely accepted. Read the
		 * rest of the client's data and then say so. */
		s->body_failed = true;
		drop_backend(s);
		if (s->body_paused) {
			s->body_paused = false;
			bufferevent_enable(s->bev, EV_READ);
		}
		return;
	}
	if (st != BE_OK) {
		const char *t = "451 4.4.2 Error: connection to the mail system lost, message not accepted";
		reply(s, t);
		drop_backend(s);
		data_finished(s, t, strlen(t), false);
	} else {
		relay_reply(s, r);
		data_finished(s, r->text, r->len, r->code / 100 == 2);
	}
}

static void body_drained(void *arg)
{
	struct session *s = arg;
	if (!s->body_paused || s->state != SS_DATA)
		return;
	s->body_paused = false;
	bufferevent_enable(s->bev, EV_READ);
	process_input(s);
}

static void data_replied(void *arg, enum backend_status st, const struct smtp_reply *r)
{
	struct session *s = arg;
	if (st != BE_OK) {
		backend_failed(s, "DATA", st);
	} else if (r->code != 354) {
		relay_reply(s, r);
		log_transaction(s, "rejected", r->text, r->len);
		txn_to(s, TX_NONE);
		resume(s);
	} else {
		txn_to(s, TX_DATA);
		relay_reply(s, r);
		dotcodec_init(&s->dc);
		s->body_failed = false;
		backend_body_begin(s->be, body_replied, s);
		backend_on_drain(s->be, body_drained, s);
		s->state = SS_DATA;
		struct timeval tv = { s->cfg->limits.data_timeout, 0 };
		bufferevent_set_timeouts(s->bev, &tv, &tv);
		bufferevent_enable(s->bev, EV_READ);
		process_input(s);
	}
}

void cmd_data(struct session *s, const struct smtp_cmd *c)
{
	if (c->arg_len) {
		reject_counted(s, "DATA", "501 5.5.4 Syntax: DATA", WHY_NONE);
		return;
	}
	if (s->txn == TX_NONE) {
		reject_counted(s, "DATA", "503 5.5.1 Error: need MAIL command", WHY_NONE);
		return;
	}
	if (s->txn == TX_RCPT && !s->be)   /* (recipients were accepted on one) */
		txn_to(s, TX_FAILED);
	if (s->txn == TX_FAILED) {
		refuse(s, "DATA", TXN_LOST, WHY_BACKEND);
		return;
	}
	if (s->rcpt_ok == 0) {
		reject_counted(s, "DATA", s->rcpt_tried ? "554 5.5.1 Error: no valid recipients"
						     : "503 5.5.1 Error: need RCPT command", WHY_NONE);
		return;
	}
	/* (a connection that died idle: backend_command reports it) */
	wait_for(s);
	backend_command(s->be, "DATA", 4, data_replied, s);
}

/* Feeds buffered client data through the re-encoder into the backend until
 * the end of the message, the end of the input, or back-pressure. */
void pump_body(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	bool done = false;
	while (!done && evbuffer_get_length(in) > 0) {
		if (!s->body_failed && backend_body_full(s->be)) {
			s->body_paused = true;
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		struct evbuffer *out = s->body_failed ? NULL : backend_body(s->be);
		size_t used = dotcodec_feed(&s->dc, v.iov_base, v.iov_len, out, &done);
		if (used == (size_t)-1) {
			s->body_failed = true;
			drop_backend(s);
			continue;
		}
		evbuffer_drain(in, used);
	}
	if (!done)
		return;
	if (s->body_failed) {
		const char *t = "451 4.4.2 Error: connection to the mail system lost, message not accepted";
		reply(s, t);
		data_finished(s, t, strlen(t), false);
		return;
	}
	/* The reply to end-of-data is the backend's; wait for it. */
	s->state = SS_WAIT;
	bufferevent_disable(s->bev, EV_READ);
	backend_body_end(s->be);
}
