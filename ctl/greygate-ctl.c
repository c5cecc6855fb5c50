/*
 * greygate-ctl: list, explain, pass, delete and whitelist greylisting state
 * (README.md, "Running it"). With the Redis store it talks to Redis itself, so it
 * works from any host that reaches Redis and while greygate is stopped;
 * with the embedded store the state lives inside the daemon, so the
 * command goes through the daemon's control socket.
 */
#include <errno.h>
#include <stdarg.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "ctl_cmd.h"
#include "greylist_lua.h"
#include "log.h"
#include "sentinel.h"

static void usage(void)
{
	fprintf(stderr,
		"usage: greygate-ctl [-c FILE] COMMAND [ARGS]\n"
		"  list [net=NET] [sender=S] [rcpt=R] [state=passed|pending] [limit=N]\n"
		"  explain CLIENT SENDER RCPT\n"
		"  pass CLIENT SENDER RCPT\n"
		"  del KEY | del CLIENT SENDER RCPT\n"
		"  whitelist NET [TTL]\n"
		"  stats\n");
	exit(2);
}

/* ---- embedded store: through the daemon ---- */

static int via_daemon(const struct gg_config *cfg, int argc, char **argv)
{
	char line[4096];
	size_t n = 0;
	for (int i = 0; i < argc; i++) {
		if (strpbrk(argv[i], " \t\r\n")) {
			fprintf(stderr, "greygate-ctl: arguments with blanks cannot be sent to the daemon\n");
			return 2;
		}
		int w = snprintf(line + n, sizeof line - n, "%s%s", i ? " " : "", argv[i]);
		if (w < 0 || (size_t)w >= sizeof line - n - 1) {
			fprintf(stderr, "greygate-ctl: command too long\n");
			return 2;
		}
		n += (size_t)w;
	}
	line[n++] = '\n';
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", cfg->control_socket);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		fprintf(stderr, "greygate-ctl: cannot reach greygate at %s: %s (is it running?)\n",
			cfg->control_socket, strerror(errno));
		return 1;
	}
	if (write(fd, line, n) != (ssize_t)n) {
		fprintf(stderr, "greygate-ctl: cannot send to greygate: %s\n", strerror(errno));
		close(fd);
		return 1;
	}
	/* The daemon ends its answer with "status=N" and closes. */
	FILE *in = fdopen(fd, "r");
	int status = 1;
	char buf[4096];
	while (in && fgets(buf, sizeof buf, in)) {
		if (strncmp(buf, "status=", 7) == 0)
			status = atoi(buf + 7);
		else
			fputs(buf, stdout);
	}
	if (in)
		fclose(in);
	return status;
}

/* ---- Redis store: directly ---- */

struct rctx {
	redisContext *c;
	const struct gg_config *cfg;
	char host[256];            /* the master: store.redis.host/port or a sentinel's answer */
	int port;
	char err[256];
	redisReply *held;          /* keeps get()'s strings alive until the next call */
};

static redisReply *cmd(struct rctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static redisReply *cmd(struct rctx *x, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(x->c, fmt, ap);
	va_end(ap);
	if (!r) {
		snprintf(x->err, sizeof x->err, "%s", x->c->errstr);
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(x->err, sizeof x->err, "%s", r->str);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

static const char *str_or(const redisReply *r, const char *def)
{
	return r && r->type == REDIS_REPLY_STRING ? r->str : def;
}

/* Fills E from "HMGET key f p n s r" and "TTL key". */
static bool fill_entry(struct rctx *x, const char *key, const char *hex, struct ctl_entry *e,
		       redisReply **keep)
{
	redisReply *h = cmd(x, "HMGET %s f p n s r", key);
	if (!h)
		return false;
	if (h->type != REDIS_REPLY_ARRAY || h->elements != 5 || h->element[0]->type != REDIS_REPLY_STRING) {
		freeReplyObject(h);
		*keep = NULL;
		return true; /* gone meanwhile */
	}
	redisReply *ttl = cmd(x, "TTL %s", key);
	*e = (struct ctl_entry){ hex, str_or(h->element[2], "?"), str_or(h->element[3], ""),
				 str_or(h->element[4], "?"),
				 strcmp(str_or(h->element[1], "0"), "1") == 0,
				 strtoll(h->element[0]->str, NULL, 10), ttl ? ttl->integer : -1 };
	if (ttl)
		freeReplyObject(ttl);
	*keep = h;
	return true;
}

static int r_walk(void *ctx, uint64_t *cursor, size_t budget,
		  bool (*fn)(void *arg, const struct ctl_entry *e), void *arg)
{
	struct rctx *x = ctx;
	const char *prefix = x->cfg->store.redis.prefix;
	size_t plen = strlen(prefix) + strlen(GL_KEY_TRIPLET);
	char from[24], count[24];  /* hiredis's format knows no %llu nor %zu */
	snprintf(from, sizeof from, "%llu", (unsigned long long)*cursor);
	snprintf(count, sizeof count, "%zu", budget);
	redisReply *r = cmd(x, "SCAN %s MATCH %s" GL_KEY_TRIPLET "* COUNT %s", from, prefix, count);
	if (!r)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(r);
		snprintf(x->err, sizeof x->err, "unexpected SCAN reply");
		return -1;
	}
	*cursor = strtoull(r->element[0]->str, NULL, 10);
	bool go_on = true;
	for (size_t i = 0; go_on && i < r->element[1]->elements; i++) {
		const char *key = r->element[1]->element[i]->str;
		if (r->element[1]->element[i]->type != REDIS_REPLY_STRING || strlen(key) < plen)
			continue;           /* SCAN's MATCH makes it one of ours */
		struct ctl_entry e;
		redisReply *keep;
		if (!fill_entry(x, key, key + plen, &e, &keep)) {
			freeReplyObject(r);
			return -1;
		}
		if (keep) {
			go_on = fn(arg, &e);
			freeReplyObject(keep);
		}
	}
	freeReplyObject(r);
	return go_on && *cursor != 0;
}

static int r_get(void *ctx, const struct triplet *t, struct ctl_entry *e)
{
	struct rctx *x = ctx;
	if (x->held)
		freeReplyObject(x->held);
	x->held = NULL;
	char key[200];
	snprintf(key, sizeof key, "%s" GL_KEY_TRIPLET "%s", x->cfg->store.redis.prefix, t->hex);
	if (!fill_entry(x, key, t->hex, e, &x->held))
		return -1;
	return x->held ? 1 : 0;
}

static int r_explain(void *ctx, const struct gl_params *p, const struct triplet *t,
		     struct gl_decision *d)
{
	struct rctx *x = ctx;
	struct gl_script_keys k;
	gl_script_keys(x->cfg->store.redis.prefix, t, false, &k);
	redisReply *r = cmd(x, "EVAL %s 3 %s %s %s %lld %lld %lld %d %d 1 %s %s %s", greylist_lua,
			    k.triplet, k.awl, k.new_count, (long long)p->delay,
			    (long long)p->retry_window, (long long)p->pass_lifetime, p->awl_threshold,
			    p->max_new_per_client, t->net, t->sender, t->rcpt);
	if (!r)
		return -1;
	const char *bad = gl_script_answer(r, d);
	if (bad)
		snprintf(x->err, sizeof x->err, "%s", bad);
	freeReplyObject(r);
	return bad ? -1 : 0;
}

static int r_ok(redisReply *r)
{
	if (!r)
		return -1;
	freeReplyObject(r);
	return 0;
}

static int r_pass(void *ctx, const struct triplet *t, int64_t lifetime)
{
	struct rctx *x = ctx;
	char key[200];
	snprintf(key, sizeof key, "%s" GL_KEY_TRIPLET "%s", x->cfg->store.redis.prefix, t->hex);
	redisReply *now = cmd(x, "TIME");
	if (!now)
		return -1;
	if (now->type != REDIS_REPLY_ARRAY || now->elements < 1 ||
	    now->element[0]->type != REDIS_REPLY_STRING) {
		freeReplyObject(now);
		snprintf(x->err, sizeof x->err, "unexpected TIME reply");
		return -1;
	}
	char first[24];
	snprintf(first, sizeof first, "%s", now->element[0]->str);
	freeReplyObject(now);
	return r_ok(cmd(x, "HSETNX %s f %s", key, first)) < 0 ||
	       r_ok(cmd(x, "HSET %s p 1 n %s s %s r %s", key, t->net, t->sender, t->rcpt)) < 0 ||
	       r_ok(cmd(x, "EXPIRE %s %lld", key, (long long)lifetime)) < 0 ? -1 : 0;
}

static int r_del(void *ctx, const char *hex)
{
	struct rctx *x = ctx;
	if (strlen(hex) != TRIPLET_HEX_LEN || strspn(hex, "0123456789abcdef") != TRIPLET_HEX_LEN) {
		snprintf(x->err, sizeof x->err, "'%s' is not a key", hex);
		return -1;
	}
	redisReply *r = cmd(x, "DEL %s" GL_KEY_TRIPLET "%s", x->cfg->store.redis.prefix, hex);
	if (!r)
		return -1;
	int n = r->integer > 0;
	freeReplyObject(r);
	return n;
}

static int r_whitelist(void *ctx, const char *net, int threshold, int64_t ttl)
{
	struct rctx *x = ctx;
	char key[200];
	snprintf(key, sizeof key, "%s" GL_KEY_AWL "%s", x->cfg->store.redis.prefix, net);
	return r_ok(cmd(x, "HSET %s c %d t 0", key, threshold)) < 0 ||
	       r_ok(cmd(x, "EXPIRE %s %lld", key, (long long)ttl)) < 0 ? -1 : 0;
}

static bool count_one(void *arg, const struct ctl_entry *e)
{
	long *n = arg;
	n[0]++;
	n[1] += e->passed;
	return true;
}

static int r_stats(void *ctx, FILE *out)
{
	struct rctx *x = ctx;
	long n[2] = { 0, 0 };
	uint64_t cursor = 0;
	int more;
	while ((more = r_walk(ctx, &cursor, 500, count_one, n)) > 0)
		;
	if (more < 0)
		return -1;
	fprintf(out, "store=redis host=%s port=%d prefix=%s triplets=%ld passed=%ld pending=%ld\n",
		x->host, x->port, x->cfg->store.redis.prefix, n[0], n[1], n[0] - n[1]);
	return 0;
}

static const char *r_error(void *ctx)
{
	return ((struct rctx *)ctx)->err;
}

static const struct ctl_store redis_ops = {
	r_walk, r_get, r_explain, r_pass, r_del, r_whitelist, r_stats, r_error,
};

/* store.redis.sentinels: the first sentinel that names the master wins. */
static bool ask_sentinels(const struct gg_config *cfg, struct timeval tv, struct rctx *x)
{
	for (size_t i = 0; i < cfg->store.redis.nsentinels; i++) {
		const char *s = cfg->store.redis.sentinels[i];
		struct sentinel_addr a;
		if (!sentinel_parse(s, &a))
			continue;           /* the loader checked */
		redisContext *c = redisConnectWithTimeout(a.host, a.port, tv);
		if (!c || c->err) {
			fprintf(stderr, "greygate-ctl: sentinel %s: %s\n", s,
				c ? c->errstr : "out of memory");
			if (c)
				redisFree(c);
			continue;
		}
		redisSetTimeout(c, tv);
		redisReply *r = redisCommand(c, SENTINEL_ASK, cfg->store.redis.master_name);
		const char *why = c->errstr;
		bool error_reply, ok = r && sentinel_read_master(r, &a, &why, &error_reply);
		if (ok) {
			snprintf(x->host, sizeof x->host, "%s", a.host);
			x->port = a.port;
		} else {
			fprintf(stderr, "greygate-ctl: sentinel %s: %s\n", s, why);
		}
		if (r)
			freeReplyObject(r);
		redisFree(c);
		if (ok)
			return true;
	}
	return false;
}

static int via_redis(const struct gg_config *cfg, int argc, char **argv)
{
	struct timeval tv = { cfg->store.redis.connect_timeout_ms / 1000,
			      (cfg->store.redis.connect_timeout_ms % 1000) * 1000 };
	struct rctx x = { .cfg = cfg };
	snprintf(x.host, sizeof x.host, "%s", cfg->store.redis.host);
	x.port = cfg->store.redis.port;
	if (cfg->store.redis.nsentinels && !ask_sentinels(cfg, tv, &x)) {
		fprintf(stderr, "greygate-ctl: no sentinel named the master '%s'\n",
			cfg->store.redis.master_name);
		return 1;
	}
	x.c = redisConnectWithTimeout(x.host, x.port, tv);
	if (!x.c || x.c->err) {
		fprintf(stderr, "greygate-ctl: cannot connect to redis %s:%d: %s\n", x.host, x.port,
			x.c ? x.c->errstr : "out of memory");
		return 1;
	}
	struct timeval io = { 5, 0 };
	redisSetTimeout(x.c, io);
	if ((cfg->store.redis.password[0] &&
	     r_ok(cmd(&x, "AUTH %s", cfg->store.redis.password)) < 0) ||
	    (cfg->store.redis.db && r_ok(cmd(&x, "SELECT %d", cfg->store.redis.db)) < 0)) {
		fprintf(stderr, "greygate-ctl: redis: %s\n", x.err);
		redisFree(x.c);
		return 1;
	}
	int status = ctl_execute(cfg, &redis_ops, &x, argc, argv, stdout);
	if (x.held)
		freeReplyObject(x.held);
	redisFree(x.c);
	return status;
}

int main(int argc, char **argv)
{
	const char *file = "/etc/greygate/greygate.conf";
	int opt;
	while ((opt = getopt(argc, argv, "+c:h")) != -1) {
		if (opt == 'c')
			file = optarg;
		else
			usage();
	}
	if (optind >= argc)
		usage();
	/* Configuration warnings are the daemon's business, not ours. */
	log_setup("stderr", "error");
	char err[1024];
	struct gg_config *cfg = gg_config_load(file, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "greygate-ctl: %s\n", err);
		return 2;
	}
	int status = store_type(cfg->store.kind)->flags & STORE_EMBEDDED
			     ? via_daemon(cfg, argc - optind, argv + optind)
			     : via_redis(cfg, argc - optind, argv + optind);
	gg_config_unref(cfg);
	return status;
}
