#include "hostport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static bool parse_port(const char *s, unsigned *port)
{
	if (*s < '0' || *s > '9')
		return false;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || v == 0 || v > 65535)
		return false;
	*port = (unsigned)v;
	return true;
}

bool hostport_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64];
	const char *colon;
	bool bracketed = s[0] == '[';

	if (bracketed) {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return false;
		if ((size_t)(close - s - 1) >= sizeof host)
			return false;
		memcpy(host, s + 1, (size_t)(close - s - 1));
		host[close - s - 1] = 0;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || (size_t)(colon - s) >= sizeof host)
			return false;
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = 0;
		if (strchr(host, ':'))
			return false; /* IPv6 needs brackets */
	}
	unsigned port;
	if (!parse_port(colon + 1, &port))
		return false;
	if (!bracketed && strcmp(host, "localhost") == 0)
		memcpy(host, "127.0.0.1", sizeof "127.0.0.1");

	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (!bracketed && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((unsigned short)port);
		*len = sizeof *sin;
		return true;
	}
	if (bracketed && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((unsigned short)port);
		*len = sizeof *sin6;
		return true;
	}
	return false;
}
