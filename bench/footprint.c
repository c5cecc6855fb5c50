/*
 * The driver of `make bench-footprint` (bench/footprint.py runs it; see
 * bench/README.md, "Footprint"). Three jobs, each printing key=value lines:
 *
 *   footprint redis PORT N LAYOUT   N triplets into the Redis on 127.0.0.1:PORT,
 *                                   pipelined, and INFO memory before/after.
 *                                   LAYOUT "script": EVALSHA of greylist_lua
 *                                   with the KEYS/ARGV greygate sends (then
 *                                   the same triplets again with delay 0:
 *                                   each passes and its network gets an AWL
 *                                   entry). Other layouts write what a more
 *                                   compact layout would store, with plain
 *                                   commands, to price it (the proposal in
 *                                   bench/README.md).
 *   footprint relay PORT TARGET MS  a TCP relay on 127.0.0.1:PORT to
 *                                   127.0.0.1:TARGET that holds what it reads
 *                                   for MS / 2 milliseconds each way: MS of
 *                                   round trip added, in order, without
 *                                   limiting what is in flight (this kernel
 *                                   has no sch_netem for `tc netem`).
 *   footprint memstore N FILE       N triplets into a memstore (heap and RSS
 *                                   growth), saved to FILE, loaded back
 *                                   (times, file size), and the time a fork
 *                                   of this process takes (what the daemon's
 *                                   loop waits for when a save starts).
 *
 * The triplets look like a storm's: sender "bounce-NNNNNNNN@list.example"
 * (28 bytes), recipient "userNNNNNNNN@example.org" (24), 1000 triplets per
 * client network (so the per-network counters are a rounding error) unless
 * one network each is asked for (the AWL measurement needs N networks).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "greylist_lua.h"
#include "memstore.h"
#include "triplet.h"

#define BATCH 1000                /* commands in flight per pipeline round */

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Triplet I; PER_NET triplets share a client network. */
static void make_triplet(struct triplet *t, unsigned i, unsigned per_net)
{
	char net[NET_TEXT_MAX], s[64], r[64];
	unsigned n = i / per_net;
	snprintf(net, sizeof net, "%u.%u.%u.0/24", 10 + (n >> 16), (n >> 8) & 255, n & 255);
	int sl = snprintf(s, sizeof s, "bounce-%08u@list.example", i);
	int rl = snprintf(r, sizeof r, "user%08u@example.org", i);
	if (triplet_make(t, net, s, (size_t)sl, r, (size_t)rl) < 0) {
		fprintf(stderr, "footprint: triplet %u could not be made\n", i);
		exit(1);
	}
}

/* ---- Redis --------------------------------------------------------------- */

static redisReply *cmd(redisContext *c, const char *fmt, const char *arg)
{
	redisReply *r = redisCommand(c, fmt, arg);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		fprintf(stderr, "footprint: redis %s: %s\n", fmt, r ? r->str : c->errstr);
		exit(1);
	}
	return r;
}

static long long used_memory(redisContext *c)
{
	redisReply *r = cmd(c, "INFO %s", "memory");
	const char *p = strstr(r->str, "used_memory:");
	long long v = p ? atoll(p + strlen("used_memory:")) : -1;
	freeReplyObject(r);
	return v;
}

static long long dbsize(redisContext *c)
{
	redisReply *r = cmd(c, "DBSIZE%s", "");
	long long v = r->integer;
	freeReplyObject(r);
	return v;
}

static void drain(redisContext *c, unsigned n)
{
	for (unsigned k = 0; k < n; k++) {
		redisReply *r;
		if (redisGetReply(c, (void **)&r) != REDIS_OK || !r || r->type == REDIS_REPLY_ERROR) {
			fprintf(stderr, "footprint: pipelined reply: %s\n",
				r ? r->str : c->errstr);
			exit(1);
		}
		freeReplyObject(r);
	}
}

struct layout {
	const char *name, *what;
	unsigned per_net;             /* triplets per network */
	/* Appends the commands that store triplet T (hex digest, parts) at NOW;
	 * returns how many. */
	unsigned (*append)(redisContext *c, const struct triplet *t, const char *sha,
			   const char *delay, long long now);
};

static const char *RETRY_TTL = "176400";  /* retry_window + the script's grace */

static unsigned put_script(redisContext *c, const struct triplet *t, const char *sha,
			   const char *delay, long long now)
{
	(void)now;
	struct gl_script_keys k;
	gl_script_keys("gg:", t, false, &k);
	/* greygate's defaults: retry_window, pass_lifetime, awl_threshold; a cap
	 * no storm reaches, as in the storm bench */
	const char *argv[] = { "EVALSHA", sha, "3", k.triplet, k.awl, k.new_count, delay,
			       "172800", "3110400", "5", "10000000", "0",
			       triplet_keytext(t), t->sender, t->rcpt };
	redisAppendCommandArgv(c, 15, argv, NULL);
	return 1;
}

/* As the script, without the parts greygate-ctl shows (first, passed). */
static unsigned put_noparts(redisContext *c, const struct triplet *t, const char *sha,
			    const char *delay, long long now)
{
	(void)sha, (void)delay;
	redisAppendCommand(c, "HSET gg:t:%s f %lld p 0", t->hex, now);
	redisAppendCommand(c, "EXPIRE gg:t:%s %s", t->hex, RETRY_TTL);
	return 2;
}

/* One integer string (first seen * 2 + passed) under the same key. */
static unsigned put_int(redisContext *c, const struct triplet *t, const char *sha,
			const char *delay, long long now)
{
	(void)sha, (void)delay;
	redisAppendCommand(c, "SET gg:t:%s %lld EX %s", t->hex, now * 2, RETRY_TTL);
	return 1;
}

/* The same integer under the 16 digest bytes as they are, after "gg:t:". */
static unsigned put_int_bin(redisContext *c, const struct triplet *t, const char *sha,
			    const char *delay, long long now)
{
	(void)sha, (void)delay;
	redisAppendCommand(c, "SET gg:t:%b %lld EX %s", t->key, (size_t)TRIPLET_KEY_LEN, now * 2,
			   RETRY_TTL);
	return 1;
}

/* Small hashes keyed by the first 2 digest bytes (65,536 buckets, ~15
 * triplets each at 1 M: a listpack), field the next 8 bytes, value the
 * integer; the bucket's TTL the longest of its triplets' (Redis 7.0 has no
 * TTL per field: the script would drop a bucket's expired fields when it
 * writes the bucket). */
static unsigned put_bucket(redisContext *c, const struct triplet *t, const char *sha,
			   const char *delay, long long now)
{
	(void)sha, (void)delay;
	redisAppendCommand(c, "HSET gg:T:%b %b %lld", t->key, (size_t)2, t->key + 2, (size_t)8,
			   now * 2);
	redisAppendCommand(c, "EXPIRE gg:T:%b %s", t->key, (size_t)2, RETRY_TTL);
	return 2;
}

/* One hash per client network (the network is a Redis Cluster's hash tag
 * already), field 10 digest bytes, value the integer. */
static unsigned put_net(redisContext *c, const struct triplet *t, const char *sha,
			const char *delay, long long now)
{
	(void)sha, (void)delay;
	redisAppendCommand(c, "HSET gg:T:{%s} %b %lld", t->net, t->key, (size_t)10, now * 2);
	redisAppendCommand(c, "EXPIRE gg:T:{%s} %s", t->net, RETRY_TTL);
	return 2;
}

static const struct layout layouts[] = {
	{ "script", "today: hash f,p,n,s,r under gg:t:<32 hex>, TTL", 1000, put_script },
	{ "noparts", "hash f,p only under gg:t:<32 hex>, TTL", 1000, put_noparts },
	{ "int", "integer string under gg:t:<32 hex>, TTL", 1000, put_int },
	{ "intbin", "integer string under gg:t:<16 bytes>, TTL", 1000, put_int_bin },
	{ "bucket", "65536 hashes gg:T:<2 bytes>, field 8 bytes, integer value", 1000,
	  put_bucket },
	{ "net10", "a hash per network gg:T:{NET}, field 10 bytes, integer; 10 a network", 10,
	  put_net },
	{ "net100", "the same, 100 triplets a network (a listpack)", 100, put_net },
	{ "net1000", "the same, 1000 triplets a network (a hash table)", 1000, put_net },
};

/* N triplets through L, PER_NET to a network, with DELAY; prints the
 * bytes per triplet under TAG. */
static void redis_fill(redisContext *c, const struct layout *l, const char *sha, unsigned n,
		       unsigned per_net, const char *delay, const char *tag)
{
	long long before = used_memory(c), keys0 = dbsize(c);
	double t0 = mono();
	long long now = (long long)time(NULL);
	for (unsigned i = 0; i < n;) {
		unsigned queued = 0, end = i + BATCH < n ? i + BATCH : n;
		for (; i < end; i++) {
			struct triplet t;
			make_triplet(&t, i, per_net);
			queued += l->append(c, &t, sha, delay, now);
		}
		drain(c, queued);
	}
	double secs = mono() - t0;
	long long after = used_memory(c), keys1 = dbsize(c);
	printf("%s layout=%s n=%u used_before=%lld used_after=%lld keys_added=%lld "
	       "bytes_per_entry=%.1f secs=%.2f per_s=%.0f what=\"%s\"\n",
	       tag, l->name, n, before, after, keys1 - keys0,
	       (double)(after - before) / n, secs, n / secs, l->what);
	fflush(stdout);
}

static int redis_main(int port, unsigned n, const char *layout)
{
	const struct layout *l = NULL;
	for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
		if (!strcmp(layouts[i].name, layout))
			l = &layouts[i];
	if (!l) {
		fprintf(stderr, "footprint: no layout %s\n", layout);
		return 2;
	}
	redisContext *c = redisConnect("127.0.0.1", port);
	if (!c || c->err) {
		fprintf(stderr, "footprint: redis 127.0.0.1:%d: %s\n", port,
			c ? c->errstr : "out of memory");
		return 1;
	}
	redisReply *r = cmd(c, "SCRIPT LOAD %s", greylist_lua);
	char sha[64];
	snprintf(sha, sizeof sha, "%s", r->str);
	freeReplyObject(r);
	freeReplyObject(cmd(c, "FLUSHALL%s", ""));
	/* the triplets of a storm: new, greylisted, 1000 per network */
	redis_fill(c, l, sha, n, l->per_net, "300", "triplets");
	if (l->append == put_script) {
		/* AWL: N new networks, one triplet each (triplet + counter),
		 * then the same again with delay 0: each passes and its
		 * network gets an auto-whitelist hash; nothing else grows. */
		freeReplyObject(cmd(c, "FLUSHALL%s", ""));
		redis_fill(c, l, sha, n, 1, "0", "net_first");
		redis_fill(c, l, sha, n, 1, "0", "awl");
		r = cmd(c, "MEMORY USAGE %s", "gg:a:10.0.0.0/24");
		printf("sample key=gg:a:10.0.0.0/24 memory_usage=%lld\n", r->integer);
		freeReplyObject(r);
		struct triplet t;
		make_triplet(&t, 0, 1);
		char key[128];
		gl_key_tagged(key, sizeof key, "gg:", GL_KEY_TRIPLET, NULL, t.hex);
		r = cmd(c, "MEMORY USAGE %s", key);
		printf("sample key=%s memory_usage=%lld\n", key, r->integer);
		freeReplyObject(r);
	}
	redisFree(c);
	return 0;
}

/* ---- the embedded store ------------------------------------------------- */

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "VmRSS:", 6))
			v = atol(line + 6);
	if (f)
		fclose(f);
	return v;
}

static size_t heap(void)
{
	struct mallinfo2 m = mallinfo2();
	return m.uordblks + m.hblkhd;
}

static int memstore_main(unsigned n, const char *file)
{
	const struct gl_params p = { .delay = 300, .retry_window = 172800,
				     .pass_lifetime = 3110400, .awl_threshold = 5,
				     .max_new_per_client = 10000000 };
	int64_t now = (int64_t)time(NULL);
	size_t h0 = heap();
	long r0 = rss_kb();
	/* max_entries as greygate sets it (store.max_entries), with room for
	 * the few a full bucket would evict */
	struct memstore *m = memstore_new((size_t)n + n / 8);
	if (!m)
		return 1;
	double t0 = mono();
	for (unsigned i = 0; i < n; i++) {
		struct triplet t;
		make_triplet(&t, i, 1000);
		memstore_decide(m, &p, now, &t, false);
	}
	double fill = mono() - t0;
	size_t h1 = heap();
	long r1 = rss_kb();
	struct memstore_stats st = memstore_stats(m);
	printf("memory n=%u triplets=%zu networks=%zu evicted=%llu heap_per_entry=%.1f "
	       "rss_per_entry=%.1f fill_secs=%.2f\n",
	       n, st.triplets, st.networks, st.evicted, (double)(h1 - h0) / n,
	       (double)(r1 - r0) * 1024 / n, fill);

	char err[512];
	struct memstore_saved saved;
	t0 = mono();
	if (memstore_save(m, file, now, &saved, err, sizeof err) < 0) {
		fprintf(stderr, "footprint: save: %s\n", err);
		return 1;
	}
	double save = mono() - t0;
	struct stat sb;
	if (stat(file, &sb) < 0)
		return 1;
	printf("save triplets=%llu networks=%llu file_bytes=%lld bytes_per_entry=%.1f secs=%.3f\n",
	       saved.triplets, saved.networks, (long long)sb.st_size,
	       (double)sb.st_size / (double)saved.triplets, save);

	/* What the daemon's loop waits for when a periodic save starts: the
	 * fork (page tables of the whole heap); the child does the rest. */
	double worst = 0, sum = 0;
	for (int k = 0; k < 5; k++) {
		t0 = mono();
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		double f = mono() - t0;
		if (pid < 0)
			return 1;
		waitpid(pid, NULL, 0);
		sum += f;
		worst = f > worst ? f : worst;
	}
	printf("fork rss_kb=%ld mean_ms=%.2f max_ms=%.2f\n", rss_kb(), sum / 5 * 1e3, worst * 1e3);
	memstore_free(m);

	struct memstore *m2 = memstore_new((size_t)n + n / 8);
	if (!m2)
		return 1;
	t0 = mono();
	long got = memstore_load(m2, file, now, err, sizeof err);
	double load = mono() - t0;
	if (got < 0) {
		fprintf(stderr, "footprint: load: %s\n", err);
		return 1;
	}
	printf("load entries=%ld secs=%.3f\n", got, load);
	memstore_free(m2);
	return 0;
}

/* ---- the delay relay ------------------------------------------------------ */

/* What one direction read, waiting for its time. */
struct chunk {
	struct chunk *next;
	struct evbuffer *buf;
	double due;
};

struct pair;

/* One direction of a relayed connection: what FROM reads goes to TO. */
struct way {
	struct bufferevent *from, *to;
	struct chunk *head, **tail;
	struct event *timer;
	struct pair *pair;
};

struct pair {
	struct way up, down;
};

static struct event_base *relay_base;
static double relay_half;                 /* seconds each way */
static struct sockaddr_in relay_target;

static void way_free(struct way *w)
{
	while (w->head) {
		struct chunk *c = w->head;
		w->head = c->next;
		evbuffer_free(c->buf);
		free(c);
	}
	if (w->timer)
		event_free(w->timer);
	bufferevent_free(w->from);
}

/* Either side closed or failed: the other is closed too (hiredis then
 * reconnects through a new pair). */
static void pair_free(struct pair *p)
{
	way_free(&p->up);
	way_free(&p->down);
	free(p);
}

static void way_arm(struct way *w, double now)
{
	double wait = w->head->due - now;
	if (wait < 0)
		wait = 0;
	struct timeval tv = { (time_t)wait, (suseconds_t)((wait - (time_t)wait) * 1e6) };
	evtimer_add(w->timer, &tv);
}

static void on_due(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct way *w = arg;
	double now = mono();
	while (w->head && w->head->due <= now) {
		struct chunk *c = w->head;
		w->head = c->next;
		if (!w->head)
			w->tail = &w->head;
		bufferevent_write_buffer(w->to, c->buf);
		evbuffer_free(c->buf);
		free(c);
	}
	if (w->head)
		way_arm(w, now);
}

static void on_relay_read(struct bufferevent *bev, void *arg)
{
	struct way *w = arg;
	if (relay_half <= 0) {
		bufferevent_write_buffer(w->to, bufferevent_get_input(bev));
		return;
	}
	struct chunk *c = calloc(1, sizeof *c);
	if (!c || !(c->buf = evbuffer_new())) {
		fprintf(stderr, "footprint relay: out of memory; closing the connection\n");
		free(c);
		pair_free(w->pair);
		return;
	}
	evbuffer_add_buffer(c->buf, bufferevent_get_input(bev));
	double now = mono();
	c->due = now + relay_half;
	bool idle = !w->head;
	*w->tail = c;
	w->tail = &c->next;
	if (idle)
		way_arm(w, now);
}

static void on_relay_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct way *w = arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		pair_free(w->pair);
}

static void nodelay(evutil_socket_t fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static bool way_init(struct way *w, struct pair *p, struct bufferevent *from,
		     struct bufferevent *to)
{
	w->from = from;
	w->to = to;
	w->tail = &w->head;
	w->pair = p;
	w->timer = evtimer_new(relay_base, on_due, w);
	bufferevent_setcb(from, on_relay_read, NULL, on_relay_event, w);
	return w->timer && bufferevent_enable(from, EV_READ) == 0;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	(void)l, (void)sa, (void)salen, (void)arg;
	struct pair *p = calloc(1, sizeof *p);
	struct bufferevent *in = bufferevent_socket_new(relay_base, fd, BEV_OPT_CLOSE_ON_FREE);
	struct bufferevent *out = bufferevent_socket_new(relay_base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!p || !in || !out) {
		fprintf(stderr, "footprint relay: out of memory; connection refused\n");
		if (in)
			bufferevent_free(in);
		else
			evutil_closesocket(fd);
		if (out)
			bufferevent_free(out);
		free(p);
		return;
	}
	nodelay(fd);
	if (!way_init(&p->up, p, in, out) || !way_init(&p->down, p, out, in) ||
	    bufferevent_socket_connect(out, (struct sockaddr *)&relay_target,
				       sizeof relay_target) < 0) {
		fprintf(stderr, "footprint relay: cannot reach the target; connection closed\n");
		pair_free(p);
		return;
	}
	nodelay(bufferevent_getfd(out));
}

static int relay_main(int port, int target, double rtt_ms)
{
	relay_half = rtt_ms / 2000.0;
	struct event_config *ec = event_config_new();
	/* timerfd: sub-millisecond timers, for the 1 ms row */
	event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
	relay_base = event_base_new_with_config(ec);
	event_config_free(ec);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	relay_target = sin;
	relay_target.sin_port = htons((uint16_t)target);
	struct evconnlistener *l =
		relay_base ? evconnlistener_new_bind(relay_base, on_accept, NULL,
						     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128,
						     (struct sockaddr *)&sin, sizeof sin)
			   : NULL;
	if (!l) {
		fprintf(stderr, "footprint relay: cannot listen on 127.0.0.1:%d\n", port);
		return 1;
	}
	event_base_dispatch(relay_base);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 5 && !strcmp(argv[1], "redis"))
		return redis_main(atoi(argv[2]), (unsigned)strtoul(argv[3], NULL, 10), argv[4]);
	if (argc == 4 && !strcmp(argv[1], "memstore"))
		return memstore_main((unsigned)strtoul(argv[2], NULL, 10), argv[3]);
	if (argc == 5 && !strcmp(argv[1], "relay"))
		return relay_main(atoi(argv[2]), atoi(argv[3]), atof(argv[4]));
	fprintf(stderr, "usage: footprint redis PORT N LAYOUT | footprint memstore N FILE | "
			"footprint relay PORT TARGET MS\n"
			"layouts: script noparts int intbin bucket\n");
	return 2;
}
