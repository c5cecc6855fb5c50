/*
 * proxyproto: the HAProxy PROXY protocol header (versions 1 and 2) that a
 * load balancer sends before the client's first byte, for
 * proxy_protocol_networks.
 *
 * Promises: strict and bounded: a v1 header is at most 107 bytes including
 * CRLF, a v2 header at most 16 + 536 bytes (larger address blocks are
 * refused); anything malformed is refused, never guessed at. The parser
 * works on a prefix of the stream: it says how many bytes it needs, or how
 * many the header took, so the caller can hand it whatever has arrived.
 */
#ifndef GG_PROXYPROTO_H
#define GG_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

#define PROXYPROTO_V1_MAX 107
#define PROXYPROTO_V2_MAX (16 + 536)

enum proxyproto_status {
	PP_OK,          /* header complete; see the result */
	PP_NEED_MORE,   /* a valid prefix so far; read more */
	PP_INVALID,     /* not a valid header: refuse the connection */
};

struct proxyproto_result {
	size_t len;             /* bytes the header took */
	int version;            /* 1 or 2 */
	/* LOCAL or UNSPEC (v2), UNKNOWN (v1): the header names no client
	 * (a health check, or a proxy that could not tell); src and dst are
	 * zero. The connection's own peer is the proxy, not the client. */
	int local;
	struct ipaddr src, dst;
	uint16_t src_port, dst_port;
};

enum proxyproto_status proxyproto_parse(const unsigned char *buf, size_t len,
					struct proxyproto_result *r);

#endif
