#include "linger.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "list.h"

struct lingering_conn {
	struct list_node link;   /* on all */
	struct event *ev;
	size_t left;          /* input bytes still accepted */
	uint64_t until_ms;    /* monotonic */
};

static struct list_node all = { &all, &all };
static int lingering;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void finish(struct lingering_conn *l, evutil_socket_t fd)
{
	list_del(&l->link);
	event_free(l->ev);
	free(l);
	close(fd);
	lingering--;
}

/* Reads what is there; false once the client has closed, failed or sent
 * too much. */
static bool drain(struct lingering_conn *l, evutil_socket_t fd)
{
	char buf[4096];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n > 0) {
			if ((size_t)n >= l->left)
				return false;
			l->left -= (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else {
			return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
		}
	}
}

static void on_linger(evutil_socket_t fd, short what, void *arg)
{
	struct lingering_conn *l = arg;
	uint64_t now = now_ms();
	if (!(what & EV_READ) || !drain(l, fd) || now >= l->until_ms) {
		finish(l, fd);
		return;
	}
	uint64_t rest = l->until_ms - now;
	struct timeval tv = { (time_t)(rest / 1000), (suseconds_t)(rest % 1000) * 1000 };
	if (event_add(l->ev, &tv) != 0)
		finish(l, fd);
}

void linger_close(struct event_base *base, evutil_socket_t fd)
{
	struct lingering_conn *l = NULL;
	if (lingering >= LINGER_MAX || shutdown(fd, SHUT_WR) != 0 ||
	    !(l = calloc(1, sizeof *l)) ||
	    !(l->ev = event_new(base, fd, EV_READ, on_linger, l))) {
		free(l);
		close(fd);
		return;
	}
	lingering++;
	list_push_front(&all, &l->link);
	l->left = LINGER_BYTES;
	l->until_ms = now_ms() + LINGER_SECONDS * 1000;
	struct timeval tv = { LINGER_SECONDS, 0 };
	if (event_add(l->ev, &tv) != 0)
		finish(l, fd);
}

void linger_close_all(void)
{
	struct list_node *n;
	while ((n = list_first(&all))) {
		struct lingering_conn *l = LIST_ELEM(n, struct lingering_conn, link);
		finish(l, event_get_fd(l->ev));
	}
}
