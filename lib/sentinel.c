#include "sentinel.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostport.h"

bool sentinel_parse(const char *entry, struct sentinel_addr *a)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (!hostport_parse(entry, &ss, &len))
		return false;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &sin->sin_addr, a->host, sizeof a->host);
		a->port = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, a->host, sizeof a->host);
		a->port = ntohs(sin6->sin6_port);
	}
	return true;
}

bool sentinel_addr_ok(const char *host, long port)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return port >= 1 && port <= 65535 && strlen(host) < INET6_ADDRSTRLEN &&
	       (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1);
}

bool sentinel_read_master(const redisReply *r, struct sentinel_addr *a, const char **why,
			  bool *error_reply)
{
	*error_reply = false;
	if (r->type == REDIS_REPLY_NIL) {
		*why = "does not know the master name";
		return false;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		*error_reply = true;
		*why = r->str;
		return false;
	}
	*why = "unusable answer (not a numeric ADDRESS PORT)";
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING)
		return false;
	char *end;
	long port = strtol(r->element[1]->str, &end, 10);
	if (*end || end == r->element[1]->str || !sentinel_addr_ok(r->element[0]->str, port))
		return false;
	snprintf(a->host, sizeof a->host, "%s", r->element[0]->str);
	a->port = (int)port;
	return true;
}

bool sentinel_ask_each(char *const *entries, size_t n, const char *name, struct timeval tv,
		       struct sentinel_addr *a, sentinel_report_fn *report, void *arg)
{
	for (size_t i = 0; i < n; i++) {
		struct sentinel_addr s;
		if (!sentinel_parse(entries[i], &s))
			continue;           /* the loader checked */
		redisContext *c = redisConnectWithTimeout(s.host, s.port, tv);
		const char *why = c ? c->errstr : "out of memory";
		redisReply *r = NULL;
		bool error_reply, ok = false;
		if (c && !c->err && redisSetTimeout(c, tv) == REDIS_OK &&
		    (r = redisCommand(c, SENTINEL_ASK, name)) != NULL)
			ok = sentinel_read_master(r, a, &why, &error_reply);
		if (!ok && report)
			report(arg, entries[i], why);
		if (r)
			freeReplyObject(r);
		if (c)
			redisFree(c);
		if (ok)
			return true;
	}
	return false;
}
