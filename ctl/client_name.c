#include "client_name.h"

#include <ares.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>

#include "hostname.h"
#include "netaddr.h"

/* PTR names looked at, as many as a session's (proxy/fcrdns.h's
 * FCRDNS_NAMES_MAX): a reverse zone may list any number. */
#define NAMES_MAX 4

struct fcrdns {
	char names[NAMES_MAX][HOSTNAME_MAX + 1];    /* its PTR names, valid host names only */
	int nnames;
	const struct ipaddr *want;
	bool confirmed;
};

static void keep_name(struct fcrdns *f, const char *n)
{
	if (n && f->nnames < NAMES_MAX && strlen(n) <= HOSTNAME_MAX && hostname_valid(n, strlen(n)))
		snprintf(f->names[f->nnames++], sizeof f->names[0], "%s", n);
}

static void on_ptr(void *arg, int status, int timeouts, struct hostent *h)
{
	(void)timeouts;
	struct fcrdns *f = arg;
	if (status != ARES_SUCCESS || !h)
		return;
	keep_name(f, h->h_name);
	for (char **n = h->h_aliases; n && *n; n++)
		keep_name(f, *n);
}

static void on_addr(void *arg, int status, int timeouts, struct hostent *h)
{
	(void)timeouts;
	struct fcrdns *f = arg;
	if (status != ARES_SUCCESS || !h || h->h_addrtype != f->want->family)
		return;
	size_t len = f->want->family == AF_INET ? 4 : 16;
	for (char **a = h->h_addr_list; a && *a; a++)
		if ((size_t)h->h_length == len && memcmp(*a, f->want->b, len) == 0)
			f->confirmed = true;
}

/* Runs CH's queries to their end (this is a command: it may wait). */
static void ares_run(ares_channel ch)
{
	for (;;) {
		fd_set r, w;
		FD_ZERO(&r);
		FD_ZERO(&w);
		int n = ares_fds(ch, &r, &w);
		if (n == 0)
			return;
		struct timeval tv, *tvp = ares_timeout(ch, NULL, &tv);
		select(n, &r, &w, NULL, tvp);
		ares_process(ch, &r, &w);
	}
}

/* dns.servers empty: the system's resolver configuration, as the
 * daemon's. */
bool client_name_confirmed(const struct gg_config *cfg, const char *client, char *out,
			   size_t outlen)
{
	struct ipaddr a;
	if (!ipaddr_parse(client, &a) || ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
		return false;
	struct ares_options o = { .timeout = cfg->dns.timeout_ms, .tries = cfg->dns.tries };
	ares_channel ch;
	bool found = false;
	if (ares_init_options(&ch, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES) != ARES_SUCCESS)
		goto done;
	if (!cfg->dns.servers[0] || ares_set_servers_ports_csv(ch, cfg->dns.servers) == ARES_SUCCESS) {
		struct fcrdns f = { .want = &a };
		ares_gethostbyaddr(ch, a.b, a.family == AF_INET ? 4 : 16, a.family, on_ptr, &f);
		ares_run(ch);
		for (int i = 0; i < f.nnames && !found; i++) {
			ares_gethostbyname(ch, f.names[i], a.family, on_addr, &f);
			ares_run(ch);
			if (f.confirmed) {
				snprintf(out, outlen, "%s", f.names[i]);
				found = true;
			}
		}
	}
	ares_destroy(ch);
done:
	ares_library_cleanup();
	return found;
}
