/*
 * accept_pause: a rest for listeners that cannot accept. A shortage of
 * descriptors or memory leaves the connection pending, so the socket stays
 * readable and the next accept fails at once: a listener that went on
 * would spin the loop (and its log) without answering anybody. Its
 * accept-error callback pauses it here instead. Used by the SMTP listeners
 * (listener.c) and the admin endpoint (admin.c).
 *
 * Promises: the listeners of a pause are enabled again exactly once, by
 * the timer or by accept_pause_end, whichever comes first.
 */
#ifndef GG_ACCEPT_PAUSE_H
#define GG_ACCEPT_PAUSE_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct event;
struct evconnlistener;

struct accept_pause {
	struct event *timer;
	struct evconnlistener *const *levs;  /* the caller's, during a pause */
	size_t n;
	bool paused;
	void (*resumed)(void *arg);
	void *arg;
};

/* Readies P on BASE; RESUMED(ARG), if not NULL, runs as each pause ends,
 * once the listeners accept again. 0, or -1 out of memory. */
int accept_pause_init(struct accept_pause *p, struct event_base *base,
		      void (*resumed)(void *arg), void *arg);
/* Stops LEVS[0..N) from accepting for MS milliseconds. LEVS must stay
 * valid until the pause ends (or accept_pause_free). */
void accept_pause_start(struct accept_pause *p, struct evconnlistener *const *levs, size_t n,
			int ms);
/* Ends the pause under way now (a descriptor was freed); else nothing. */
void accept_pause_end(struct accept_pause *p);
/* Frees P's timer; a pause under way is dropped with its listeners. */
void accept_pause_free(struct accept_pause *p);

#endif
