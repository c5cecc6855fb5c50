#include "accept_pause.h"

#include <event2/event.h>
#include <event2/listener.h>

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	accept_pause_end(arg);
}

int accept_pause_init(struct accept_pause *p, struct event_base *base,
		      void (*resumed)(void *arg), void *arg)
{
	*p = (struct accept_pause){ .resumed = resumed, .arg = arg };
	p->timer = evtimer_new(base, on_timer, p);
	return p->timer ? 0 : -1;
}

void accept_pause_start(struct accept_pause *p, struct evconnlistener *const *levs, size_t n,
			int ms)
{
	for (size_t i = 0; i < n; i++)
		evconnlistener_disable(levs[i]);
	p->levs = levs;
	p->n = n;
	p->paused = true;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(p->timer, &tv);
}

void accept_pause_end(struct accept_pause *p)
{
	if (!p->paused)
		return;
	p->paused = false;
	evtimer_del(p->timer);
	for (size_t i = 0; i < p->n; i++)
		evconnlistener_enable(p->levs[i]);
	if (p->resumed)
		p->resumed(p->arg);
}

void accept_pause_free(struct accept_pause *p)
{
	if (p->timer)
		event_free(p->timer);
	*p = (struct accept_pause){ 0 };
}
