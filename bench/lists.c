/*
 * The access lists' cost as their size grows (`make bench-lists`): for 10,
 * 10 k and 1 M entries, the time to add them, the heap they take (glibc's
 * mallinfo2, allocator overhead included) and the time a match takes, hit
 * and miss. "linear" is the scan the lists used before (cidr_match on each
 * network in turn), for comparison.
 */
#include <arpa/inet.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addrlist.h"
#include "domainlist.h"
#include "netaddr.h"

static volatile size_t sink;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t heap(void)
{
	struct mallinfo2 m = mallinfo2();
	return m.uordblks + m.hblkhd;
}

static uint64_t rnd_state = 88172645463325252ULL;

static uint32_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (uint32_t)(rnd_state >> 16);
}

/* ns per call of FN(ARG, i) over at least 0.2 s (at least 3 calls) */
#define TIME_NS(expr)                                                       \
	({                                                                  \
		size_t ops_ = 0;                                            \
		double t0_ = now(), t_;                                     \
		do {                                                        \
			for (size_t k_ = 0; k_ < 64; k_++, ops_++) {        \
				size_t i = ops_;                            \
				sink += (expr);                             \
				(void)i;                                    \
			}                                                   \
			t_ = now() - t0_;                                   \
		} while (t_ < 0.2);                                         \
		t_ * 1e9 / (double)ops_;                                    \
	})

static struct ipaddr v4(uint32_t h)
{
	struct ipaddr a = { .family = AF_INET };
	uint32_t be = htonl(h);
	memcpy(a.b, &be, 4);
	return a;
}

static void bench_networks(size_t n, bool linear)
{
	struct cidr *v = malloc(n * sizeof *v);
	enum { Q = 1024 };
	struct ipaddr hit[Q], miss[Q];
	for (size_t i = 0; i < n; i++) {
		/* hosts over 10/8 and, one in eight, /24s over 100/8 */
		v[i].prefix = i % 8 ? 32 : 24;
		v[i].net = v4(i % 8 ? 0x0a000000u | (rnd() & 0xffffff)
				   : 0x64000000u | (rnd() & 0xffff00));
	}
	size_t h0 = heap();
	double t0 = now();
	struct netlist l = { 0 };
	for (size_t i = 0; i < n; i++)
		if (netlist_add(&l, &v[i]) < 0)
			abort();
	double add = now() - t0;
	size_t bytes = heap() - h0;
	for (size_t q = 0; q < Q; q++) {
		hit[q] = v[rnd() % n].net;
		miss[q] = v4(0x0b000000u | (rnd() & 0xffffff));
	}
	double hit_ns = TIME_NS(netlist_match(&l, &hit[i % Q]));
	double miss_ns = TIME_NS(netlist_match(&l, &miss[i % Q]));
	printf("networks    %8zu  add %7.0f ns/entry  %6.1f bytes/entry  match hit %6.0f ns  miss %6.0f ns",
	       n, add * 1e9 / (double)n, (double)bytes / (double)n, hit_ns, miss_ns);
	if (linear) {
		double lin = TIME_NS(({
			bool m = false;
			for (size_t e = 0; e < n && !m; e++)
				m = cidr_match(&v[e], &miss[i % Q]);
			m;
		}));
		printf("  (linear miss %.0f ns)", lin);
	}
	printf("\n");
	netlist_free(&l);
	free(v);
}

static void bench_networks6(size_t n)
{
	struct cidr c = { .prefix = 64, .net.family = AF_INET6 };
	size_t h0 = heap();
	double t0 = now();
	struct netlist l = { 0 };
	for (size_t i = 0; i < n; i++) {
		c.net.b[0] = 0x20;
		c.net.b[1] = 0x01;
		for (int k = 2; k < 8; k++)
			c.net.b[k] = (uint8_t)rnd();
		if (netlist_add(&l, &c) < 0)
			abort();
	}
	double add = now() - t0;
	size_t bytes = heap() - h0;
	struct ipaddr a = { .family = AF_INET6 };
	a.b[0] = 0x20;
	a.b[1] = 0x02;
	double miss_ns = TIME_NS(netlist_match(&l, &a) + (a.b[5] = (uint8_t)i, 0));
	printf("networks v6 %8zu  add %7.0f ns/entry  %6.1f bytes/entry  match miss %6.0f ns\n",
	       n, add * 1e9 / (double)n, (double)bytes / (double)n, miss_ns);
	netlist_free(&l);
}

static void bench_domains(size_t n)
{
	char d[64];
	size_t h0 = heap();
	double t0 = now();
	struct domainlist l = { 0 };
	for (size_t i = 0; i < n; i++) {
		snprintf(d, sizeof d, "%sd%zu.example", i % 4 ? "" : ".", i);
		if (!domainlist_add(&l, d))
			abort();
	}
	double add = now() - t0;
	size_t bytes = heap() - h0;
	static const char hit[] = "d1.example", sub[] = "mail.out.d0.example",
			  miss[] = "mx1.mail.nothere.example";
	double hit_ns = TIME_NS(domainlist_match(&l, hit, sizeof hit - 1));
	double sub_ns = TIME_NS(domainlist_match(&l, sub, sizeof sub - 1));
	double miss_ns = TIME_NS(domainlist_match(&l, miss, sizeof miss - 1));
	printf("domains     %8zu  add %7.0f ns/entry  %6.1f bytes/entry  match exact %4.0f ns  "
	       "subdomain %4.0f ns  miss (4 labels) %4.0f ns\n",
	       n, add * 1e9 / (double)n, (double)bytes / (double)n, hit_ns, sub_ns, miss_ns);
	domainlist_free(&l);
}

static void bench_addresses(size_t n)
{
	char p[80];
	size_t h0 = heap();
	double t0 = now();
	struct addrlist l = { 0 };
	for (size_t i = 0; i < n; i++) {
		switch (i % 4) {
		case 0: snprintf(p, sizeof p, "u%zu@d%zu.example", i, i); break;
		case 1: snprintf(p, sizeof p, "u%zu@", i); break;
		case 2: snprintf(p, sizeof p, "@d%zu.example", i); break;
		default: snprintf(p, sizeof p, ".d%zu.example", i); break;
		}
		if (addrlist_add(&l, p) < 0)
			abort();
	}
	double add = now() - t0;
	size_t bytes = heap() - h0;
	static const char miss[] = "someone@mail.nothere.example";
	double miss_ns = TIME_NS(addrlist_match(&l, miss, sizeof miss - 1));
	printf("addresses   %8zu  add %7.0f ns/entry  %6.1f bytes/entry  match miss %4.0f ns\n",
	       n, add * 1e9 / (double)n, (double)bytes / (double)n, miss_ns);
	addrlist_free(&l);
}

int main(void)
{
	static const size_t sizes[] = { 10, 10000, 1000000 };
	for (size_t s = 0; s < 3; s++)
		bench_networks(sizes[s], true);
	bench_networks6(sizes[2]);
	for (size_t s = 0; s < 3; s++)
		bench_domains(sizes[s]);
	for (size_t s = 0; s < 3; s++)
		bench_addresses(sizes[s]);
	return 0;
}
