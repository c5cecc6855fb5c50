/*
 * backend_priv: what the parts of the backend module share (backend.c, the
 * connection and its dialogue; backend_pool.c, the connections no session
 * owns: idle ones kept for the next client, and ones saying QUIT;
 * backend_probe.c, the capability probe). Only proxy/backend*.c include
 * it; the rest of greygate knows backend.h.
 */
#ifndef GG_BACKEND_PRIV_H
#define GG_BACKEND_PRIV_H

#include <stdbool.h>

#include "backend.h"
#include "list.h"

enum bstate {
	B_IDLE,        /* not connected */
	B_CONNECTING,
	B_GREETING,    /* waiting for 220 */
	B_EHLO,        /* waiting for the reply to our EHLO */
	B_XCLIENT,     /* waiting for the new 220 after XCLIENT */
	B_HELO2,       /* waiting for the reply to EHLO/HELO as the client */
	B_READY,
	B_BUSY,        /* a command is outstanding */
	B_DEAD,
};

struct backend {
	struct list_node live_link;   /* on live (backend.c) while not freed */
	struct event_base *base;
	struct gg_config *cfg;
	unsigned long long id;
	struct bufferevent *bev;
	enum bstate state;
	struct smtp_reply reply;
	backend_reply_fn done;
	void *done_arg;
	backend_reply_fn then;   /* a pipelined second command's reply */
	void (*drain_fn)(void *);
	void *drain_arg;
	char helo2[600];      /* the EHLO/HELO to send after XCLIENT */
	char xclient[2048];
	/* A completion waiting for the loop: the owner hears of it from
	 * deliver(), never inside the call that started the request nor
	 * inside our own reading, so no frame of ours is on the stack when the
	 * owner lets go of us. Replies are not parsed meanwhile. */
	struct event *deliver_ev;
	backend_reply_fn pending;
	void *pending_arg;
	enum backend_status pending_st;
	bool reply_stale;     /* reply holds the one delivered; reset before the next */
	bool probe;           /* throw-away connection that only learns caps */
	bool reused;          /* taken from the idle list, XCLIENT hand-shake not yet done */
	bool in_body;         /* the reply awaited is the one to end-of-data */
	int positive;         /* the class of positive reply the one awaited may have */
	int then_positive;    /* the same for the pipelined second command */
	bool delivered;       /* the last reply accepted a message, nothing sent since */
};

/* ---- backend.c ---- */

/* Frees B and its connection, if it still holds one; no QUIT. */
void really_free(struct backend *b);
/* Makes B the owner of its bufferevent's events. */
void attach(struct backend *b);

/* ---- backend_pool.c ---- */

/* Gives B the newest idle connection made under B's configuration; false
 * when there is none. */
bool take_idle(struct backend *b);
/* At exit: closes the idle connections and those saying QUIT. */
void pool_close_all(void);

#endif
