/* The embedded store's hash tables and file format (its greylisting
 * behaviour is tested with the rules, in test_greylist.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "memstore.h"
#include "siphash.h"
#include "triplet.h"
#include "mk_triplet.h"
#include "walk_all.h"
#include "tmpdir.h"

#define T0 INT64_C(1700000000)

static const struct gl_params P = {
	.delay = 300,
	.retry_window = 172800,
	.pass_lifetime = 3110400,
	.awl_threshold = 5,
	.max_new_per_client = 1000000,
};

static const uint8_t KEY[SIPHASH_KEY_LEN] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };

static struct triplet numbered(int i)
{
	char sender[64];
	snprintf(sender, sizeof sender, "s%d@example.com", i);
	return mk("203.0.113.0/24", sender, "user@example.org");
}

static size_t read_file(const char *file, uint8_t *buf, size_t max)
{
	FILE *f = fopen(file, "rb");
	assert_non_null(f);
	size_t n = fread(buf, 1, max, f);
	assert_true(n < max);
	fclose(f);
	return n;
}

/* ---------------------------------------------------------------- siphash */

static void test_siphash_vectors(void **state)
{
	(void)state;
	/* The SipHash paper's vectors: key 00..0f, message 00..(n-1). */
	uint8_t msg[64];
	for (int i = 0; i < 64; i++)
		msg[i] = (uint8_t)i;
	assert_true(siphash24(KEY, msg, 0) == UINT64_C(0x726fdb47dd0e0e31));
	assert_true(siphash24(KEY, msg, 1) == UINT64_C(0x74f839c593dc67fd));
	assert_true(siphash24(KEY, msg, 15) == UINT64_C(0xa129ca6149be45e5));
	assert_true(siphash24(KEY, msg, 63) == UINT64_C(0x958a324ceb064572));
}

/* ------------------------------------------------------------ hash bounds */

/* A store of max_entries 1000 has 1024 buckets. */
#define BUCKETS 1024

/* N triplets whose keys all land in bucket 0 of a store keyed with KEY:
 * what an attacker who knew the key could grind. */
static struct triplet *colliding(size_t n)
{
	struct triplet *out = calloc(n, sizeof *out);
	assert_non_null(out);
	size_t found = 0;
	for (int i = 0; found < n; i++) {
		struct triplet t = numbered(i);
		if ((siphash24(KEY, t.key, TRIPLET_KEY_LEN) & (BUCKETS - 1)) == 0)
			out[found++] = t;
	}
	return out;
}

static void test_ms_chain_bounded(void **state)
{
	(void)state;
	enum { N = 64 };
	struct triplet *t = colliding(N);
	struct memstore *m = memstore_new_keyed(1000, KEY);
	for (int i = 0; i < N; i++) {
		memstore_decide(m, &P, T0 + i, &t[i], false);
		assert_true(memstore_stats(m).longest_walk <= MEMSTORE_CHAIN_MAX);
	}
	/* The bucket kept its newest MEMSTORE_CHAIN_MAX; the others were
	 * evicted, and counted. */
	for (int i = 0; i < N; i++)
		assert_int_equal(memstore_get(m, &t[i]).exists, i >= N - MEMSTORE_CHAIN_MAX);
	struct memstore_stats s = memstore_stats(m);
	assert_int_equal(s.triplets, MEMSTORE_CHAIN_MAX);
	assert_int_equal(s.evicted, N - MEMSTORE_CHAIN_MAX);
	assert_true(s.longest_walk <= MEMSTORE_CHAIN_MAX);

	/* The LRU eviction of a full store reaches that bucket too. */
	memstore_free(m);
	m = memstore_new_keyed(MEMSTORE_CHAIN_MAX + 10, KEY);
	for (int i = 0; i < N; i++) {
		memstore_decide(m, &P, T0 + i, &t[i], false);
		struct triplet other = numbered(-1 - i);
		memstore_decide(m, &P, T0 + i, &other, false);
	}
	assert_true(memstore_stats(m).longest_walk <= MEMSTORE_CHAIN_MAX);
	memstore_free(m);

	/* Networks: those that would overfill one bucket are not kept. */
	m = memstore_new_keyed(1000, KEY);
	int kept = 0, tried = 0;
	for (int i = 0; tried < N; i++) {
		char net[NET_TEXT_MAX];
		snprintf(net, sizeof net, "10.%d.%d.%d/32", i >> 16 & 255, i >> 8 & 255, i & 255);
		if ((siphash24(KEY, net, strlen(net)) & (BUCKETS - 1)) != 0)
			continue;
		tried++;
		assert_int_equal(memstore_whitelist(m, net, 5, T0 + 1000) == 0, tried <= MEMSTORE_CHAIN_MAX);
		kept += tried <= MEMSTORE_CHAIN_MAX;
		assert_true(memstore_stats(m).longest_walk <= MEMSTORE_CHAIN_MAX);
	}
	assert_int_equal(memstore_stats(m).networks, kept);
	memstore_free(m);
	free(t);
}

/* With a random key the bound is never reached: nothing is evicted before
 * the table is full, and chains stay short. */
static void test_ms_hash_spread(void **state)
{
	(void)state;
	enum { N = 100000 };
	struct memstore *m = memstore_new(N);
	assert_non_null(m);
	for (int i = 0; i < N; i++) {
		struct triplet t = numbered(i);
		memstore_decide(m, &P, T0, &t, false);
	}
	struct memstore_stats s = memstore_stats(m);
	assert_int_equal(s.triplets, N);
	assert_int_equal(s.evicted, 0);
	assert_true(s.longest_walk < MEMSTORE_CHAIN_MAX);
	memstore_free(m);

	/* Two stores do not share a key: the same keys land elsewhere. */
	struct memstore *a = memstore_new(1000), *b = memstore_new(1000);
	struct triplet *t = colliding(MEMSTORE_CHAIN_MAX * 2);
	for (int i = 0; i < MEMSTORE_CHAIN_MAX * 2; i++) {
		memstore_decide(a, &P, T0, &t[i], false);
		memstore_decide(b, &P, T0, &t[i], false);
	}
	assert_int_equal(memstore_stats(a).evicted + memstore_stats(b).evicted, 0);
	free(t);
	memstore_free(a);
	memstore_free(b);
}

/* ------------------------------------------------------------ file format */

struct seen {
	int n;
	char line[16][512];
	char text[8192];      /* the lines in order: walks go in bucket order */
};

static bool collect_cb(void *arg, const struct memstore_view *v)
{
	struct seen *s = arg;
	assert_true(s->n < 16);
	snprintf(s->line[s->n++], sizeof s->line[0], "%s|%s|%s|%s|%d|%lld|%lld\n", v->hex,
		 v->net, v->sender, v->rcpt, v->t.passed, (long long)v->t.first_seen,
		 (long long)v->t.expires);
	return true;
}

static int by_text(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void collect(struct memstore *m, struct seen *s)
{
	memset(s, 0, sizeof *s);
	walk_all(m, T0, collect_cb, s);
	qsort(s->line, (size_t)s->n, sizeof s->line[0], by_text);
	size_t o = 0;
	for (int i = 0; i < s->n; i++)
		o += (size_t)snprintf(s->text + o, sizeof s->text - o, "%s", s->line[i]);
}

/* The text format of earlier versions is read once; the next save writes
 * the compact format, which reads back the same. */
static void test_ms_reads_text_format(void **state)
{
	(void)state;
	struct triplet a = numbered(1);
	struct triplet b = mk("198.51.100.0/24", "\"john doe\"@example.org", "x@y");
	char text[2048];
	int len = snprintf(text, sizeof text,
			   "greygate-memstore 1\n"
			   "T %s %lld 1 %lld 203.0.113.0/24 s1@example.com user@example.org\n"
			   "T %s %lld 0 %lld 198.51.100.0/24 \"john%%20doe\"@example.org x@y\n"
			   "N 198.51.100.0/24 5 %lld %lld 0 0\n",
			   a.hex, (long long)T0 - 10, (long long)T0 + 5000, b.hex,
			   (long long)T0 - 5, (long long)T0 + 100, (long long)T0 - 20,
			   (long long)T0 + 86400);
	write_file(path("old.db"), text, (size_t)len);
	char err[512];
	struct memstore *m = memstore_new(100);
	assert_int_equal(memstore_load(m, path("old.db"), T0, err, sizeof err), 3);
	struct seen before, after;
	collect(m, &before);
	assert_int_equal(before.n, 2);
	assert_true(memstore_get(m, &a).passed);

	struct memstore_saved saved;
	assert_int_equal(memstore_save(m, path("old.db"), T0, &saved, err, sizeof err), 0);
	assert_int_equal(saved.triplets, 2);
	assert_int_equal(saved.networks, 1);
	uint8_t buf[4096];
	size_t n = read_file(path("old.db"), buf, sizeof buf);
	assert_int_equal(n, saved.bytes);
	assert_memory_equal(buf, "greygate-memstore 2\n", 20);

	struct memstore *m2 = memstore_new(100);
	assert_int_equal(memstore_load(m2, path("old.db"), T0, err, sizeof err), 3);
	collect(m2, &after);
	assert_string_equal(before.text, after.text);
	/* The network's auto-whitelist came along. */
	struct triplet fresh = mk("198.51.100.0/24", "new@example.com", "z@example.org");
	assert_int_equal(memstore_decide(m2, &P, T0, &fresh, false).reason, GL_REASON_AWL);
	memstore_free(m2);
	memstore_free(m);
}

/* What an entry costs in the file, for addresses of common lengths: a
 * network sends to several recipients of the site, and the site's
 * recipients recur. */
static void test_ms_file_is_compact(void **state)
{
	(void)state;
	enum { N = 20000 };
	struct memstore *m = memstore_new(N);
	for (int i = 0; i < N; i++) {
		char net[NET_TEXT_MAX], sender[64], rcpt[64];
		snprintf(net, sizeof net, "10.%d.%d.0/24", i / 3 >> 8 & 255, i / 3 & 255);
		snprintf(sender, sizeof sender, "bounce-%06d@newsletter.example.com", i / 3);
		snprintf(rcpt, sizeof rcpt, "firstname.lastname%d@example.org", i % 500);
		struct triplet t = mk(net, sender, rcpt);
		memstore_decide(m, &P, T0 + i / 10, &t, false);
	}
	char err[512];
	struct memstore_saved saved;
	assert_int_equal(memstore_save(m, path("size.db"), T0 + N / 10, &saved, err, sizeof err), 0);
	assert_int_equal(saved.triplets, N);
	double per = (double)saved.bytes / N;
	print_message("%d triplets, %llu networks: %llu bytes, %.1f an entry\n", N,
		      saved.networks, saved.bytes, per);
	assert_true(per < 40);
	memstore_free(m);
}

/* ---- a compact file built by hand, for damage that keeps the checksum */

struct bin {
	uint8_t b[4096];
	size_t len;
};

static void b_bytes(struct bin *f, const void *p, size_t n)
{
	assert_true(f->len + n <= sizeof f->b);
	memcpy(f->b + f->len, p, n);
	f->len += n;
}

static void b_u8(struct bin *f, uint8_t v)
{
	b_bytes(f, &v, 1);
}

static void b_varint(struct bin *f, uint64_t v)
{
	for (; v >= 0x80; v >>= 7)
		b_u8(f, (uint8_t)(v | 0x80));
	b_u8(f, (uint8_t)v);
}

static void b_lit(struct bin *f, const char *s)
{
	b_varint(f, (uint64_t)strlen(s) << 1);
	b_bytes(f, s, strlen(s));
}

static void b_header(struct bin *f, int64_t base)
{
	f->len = 0;
	b_bytes(f, "greygate-memstore 2\n", 20);
	for (int i = 0; i < 8; i++)
		b_u8(f, (uint8_t)((uint64_t)base >> (8 * i)));
}

/* Zigzag time differences to the base: these are small and positive. */
static void b_triplet(struct bin *f, uint8_t flags, uint64_t first, uint64_t expires)
{
	b_u8(f, 'T');
	b_u8(f, flags);
	b_varint(f, first << 1);
	b_varint(f, expires << 1);
}

static void b_end(struct bin *f, uint64_t nt, uint64_t nn)
{
	b_u8(f, 'E');
	b_varint(f, nt);
	b_varint(f, nn);
}

static void b_digest(struct bin *f)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	assert_int_equal(EVP_Digest(f->b, f->len, md, &mdlen, EVP_sha256(), NULL), 1);
	b_bytes(f, md, mdlen);
}

/* Loads F into a store that held something; it must be refused with WHY
 * at byte AT (-1: anywhere), and the store left empty. */
static void expect_refused(const char *what, const void *data, size_t len, const char *why,
			   long at)
{
	write_file(path("bad.db"), data, len);
	struct memstore *s = memstore_new(100);
	struct triplet other = numbered(99);
	memstore_decide(s, &P, T0, &other, false);
	char e[512] = "";
	long r = memstore_load(s, path("bad.db"), T0, e, sizeof e);
	if (r != -1)
		fail_msg("%s: loaded (%ld)", what, r);
	if (why && !strstr(e, why))
		fail_msg("%s: error \"%s\", want \"%s\"", what, e, why);
	if (at >= 0) {
		char want[300];
		snprintf(want, sizeof want, "%s: byte %ld: ", path("bad.db"), at);
		if (strncmp(e, want, strlen(want)) != 0)
			fail_msg("%s: error \"%s\", want \"%s...\"", what, e, want);
	}
	struct memstore_stats st = memstore_stats(s);
	if (st.triplets != 0 || st.networks != 0)
		fail_msg("%s: store not empty", what);
	memstore_free(s);
}

static void test_ms_binary_damage(void **state)
{
	(void)state;
	struct triplet a = numbered(1), b = numbered(2);
	assert_string_equal(a.sender, "s1@example.com");

	/* The builder writes what memstore_load reads: two triplets sharing
	 * their network, sender domain and recipient (by reference), one
	 * network. An address is its local part and its domain. */
	struct bin good;
	b_header(&good, T0);
	b_triplet(&good, 1, 0, 1000);
	b_lit(&good, "203.0.113.0/24");           /* string 0 */
	b_lit(&good, "s1");
	b_lit(&good, "@example.com");             /* 2 */
	b_lit(&good, "user");
	b_lit(&good, "@example.org");             /* 4 */
	size_t second = good.len;
	b_triplet(&good, 0, 0, 1000);
	b_varint(&good, (5 << 1) | 1);            /* the network, five strings back */
	b_lit(&good, "s2");                       /* 5 */
	b_varint(&good, (4 << 1) | 1);            /* @example.com */
	b_varint(&good, (3 << 1) | 1);            /* user */
	b_varint(&good, (2 << 1) | 1);            /* @example.org */
	size_t network = good.len;
	b_u8(&good, 'N');
	b_varint(&good, (6 << 1) | 1);            /* the network again */
	b_varint(&good, 3);
	b_varint(&good, 0);
	b_varint(&good, 2000);
	b_varint(&good, 2);
	b_varint(&good, 100);
	size_t end = good.len;
	b_end(&good, 2, 1);
	b_digest(&good);
	write_file(path("good.db"), good.b, good.len);
	char err[512];
	struct memstore *m = memstore_new(100);
	long n = memstore_load(m, path("good.db"), T0, err, sizeof err);
	if (n != 3)
		fail_msg("the hand-built file: %ld, %s", n, err);
	struct seen s;
	collect(m, &s);
	assert_non_null(strstr(s.text, "|203.0.113.0/24|s2@example.com|user@example.org|0|"));
	assert_true(memstore_get(m, &a).passed);
	assert_false(memstore_get(m, &b).passed);
	memstore_free(m);

	/* Every cut and every flipped byte: the checksum. */
	for (size_t cut = 0; cut < good.len; cut++)
		expect_refused("cut", good.b, cut, NULL, -1);
	struct bin more = good;
	b_u8(&more, 0);
	expect_refused("a byte more", more.b, more.len, "checksum mismatch", -1);
	for (size_t i = 0; i < good.len; i++) {
		struct bin flipped = good;
		flipped.b[i] ^= (uint8_t)(1u << (i % 8));
		expect_refused("flipped", flipped.b, flipped.len, NULL, -1);
	}
	struct bin v3 = good;
	v3.b[18] = '3';
	expect_refused("another version", v3.b, v3.len, "not a greygate memory store file", -1);

	/* Damage behind a good checksum: each record is checked in itself. */
	struct {
		const char *what, *why;
		size_t keep;         /* bytes of GOOD kept before the damage */
		uint8_t bytes[400];
		size_t n;
		bool end;            /* then an end record for the two triplets */
	} cases[] = {
		{ "unknown record", "unknown record", network, { 'X' }, 1, true },
		{ "unknown flag", "malformed triplet", second, { 'T', 2, 0, 2, 11 }, 5, false },
		{ "reference to nothing", "malformed triplet", 28, { 'T', 0, 0, 2, 3 }, 5, false },
		{ "reference too far", "malformed triplet", second, { 'T', 0, 0, 2, 13 }, 5, false },
		{ "reference of zero", "malformed triplet", second, { 'T', 0, 0, 2, 1 }, 5, false },
		{ "NUL in a string", "malformed triplet", second,
		  { 'T', 0, 0, 2, 6, 'a', 0, 'b' }, 8, false },
		{ "string longer than the data", "malformed triplet", second,
		  { 'T', 0, 0, 2, 100, 'a' }, 6, false },
		{ "recipient in upper case", "malformed triplet", second,
		  { 'T', 0, 0, 2, 11, 2, 'x', 9, 2, 'X', 7 }, 11, true },
		{ "varint too long", "malformed network", network,
		  { 'N', 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0 }, 13, false },
		{ "count out of range", "malformed network", network,
		  { 'N', 0, 0x80, 0x80, 0x80, 0x80, 0x08, 0, 0, 0, 0 }, 11, false },
		{ "counts that do not match", "end record does not match", end, { 'E', 3, 1 }, 3,
		  false },
		{ "data after the end", "data after the end record", good.len - 32,
		  { 0 }, 1, false },
		{ "no end record", "no end record", end, { 0 }, 0, false },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct bin f;
		memcpy(f.b, good.b, cases[i].keep);
		f.len = cases[i].keep;
		b_bytes(&f, cases[i].bytes, cases[i].n);
		if (cases[i].end)
			b_end(&f, 2, 0);
		b_digest(&f);
		/* The error names the damaged record (the first damaged byte
		 * for the trailing case). */
		expect_refused(cases[i].what, f.b, f.len, cases[i].why, (long)cases[i].keep);
	}

	/* Strings whose length alone is wrong: a network name (or pool key)
	 * of POOL_TEXT_MAX bytes, a sender of 320. */
	struct bin f;
	memcpy(f.b, good.b, network);
	f.len = network;
	b_u8(&f, 'N');
	char longnet[POOL_TEXT_MAX + 1];
	memset(longnet, '1', POOL_TEXT_MAX);
	longnet[POOL_TEXT_MAX] = 0;
	b_lit(&f, longnet);
	b_bytes(&f, "\0\0\0\0\0", 5);
	b_end(&f, 2, 1);
	b_digest(&f);
	expect_refused("network name too long", f.b, f.len, "malformed network", (long)network);

	memcpy(f.b, good.b, second);
	f.len = second;
	b_triplet(&f, 0, 0, 1000);
	char longest[TRIPLET_PART_MAX + 1];
	memset(longest, 'a', TRIPLET_PART_MAX);
	longest[TRIPLET_PART_MAX] = 0;
	b_varint(&f, 1 | (5 << 1));
	b_lit(&f, longest);
	b_lit(&f, "@x");
	b_varint(&f, 1 | (4 << 1));
	b_varint(&f, 1 | (3 << 1));
	b_end(&f, 2, 0);
	b_digest(&f);
	expect_refused("sender too long", f.b, f.len, "malformed triplet", (long)second);
	/* Each part fits, the two together do not. */
	memcpy(f.b, good.b, second);
	f.len = second;
	b_triplet(&f, 0, 0, 1000);
	longest[TRIPLET_PART_MAX / 2] = 0;
	b_varint(&f, 1 | (5 << 1));
	b_lit(&f, longest);
	b_lit(&f, longest);
	b_varint(&f, 1 | (4 << 1));
	b_varint(&f, 1 | (3 << 1));
	b_end(&f, 2, 0);
	b_digest(&f);
	expect_refused("sender parts too long together", f.b, f.len, "malformed triplet",
		       (long)second);
}

/* ------------------------------------------------------------------ walks */

/* How often each numbered(i) triplet was shown, for i < WALK_IDS. */
enum { WALK_IDS = 20000 };

struct tally {
	int times[WALK_IDS];
};

static bool tally_cb(void *arg, const struct memstore_view *v)
{
	struct tally *t = arg;
	int i;
	assert_int_equal(sscanf(v->sender, "s%d@", &i), 1);
	assert_true(i >= 0 && i < WALK_IDS);
	t->times[i]++;
	return true;
}

static void add(struct memstore *m, int i, int64_t now)
{
	struct triplet t = numbered(i);
	memstore_decide(m, &P, now, &t, false);
}

static void del(struct memstore *m, int i)
{
	struct triplet t = numbered(i);
	memstore_delete(m, t.hex);
}

/* Walked in slices of any size, a store shows each of its triplets once;
 * a slice looks at about its budget of buckets and entries. */
/* ------------------------------------------------------------ pool keys */

static struct triplet pooled(const char *net, const char *pool, const char *sender)
{
	struct triplet t;
	if (triplet_make_pool(&t, net, pool, sender, strlen(sender), "r@example.org", 13) != 0)
		fail_msg("triplet_make_pool(%s, %s, %s) failed", net, pool, sender);
	return t;
}

static bool count_pools(void *arg, const struct memstore_view *v)
{
	*(int *)arg += strcmp(v->net, "ptr:example.com") == 0;
	return true;
}

/* A pool key's retry from another network is the same triplet; its
 * auto-whitelist is the pool's, the cap on new triplets each network's;
 * the key text survives a save and a load. */
static void test_ms_pool_keys(void **state)
{
	(void)state;
	struct gl_params p = P;
	p.awl_threshold = 1;
	p.max_new_per_client = 2;
	struct memstore *m = memstore_new_keyed(1000, KEY);
	assert_non_null(m);

	struct triplet a = pooled("203.0.113.0/24", "ptr:example.com", "s@x.example");
	struct triplet b = pooled("198.51.100.0/24", "ptr:example.com", "s@x.example");
	assert_int_equal(memstore_decide(m, &p, T0, &a, false).reason, GL_REASON_NEW);
	struct gl_decision d = memstore_decide(m, &p, T0 + 301, &b, false);
	assert_int_equal(d.action, GL_PASS);
	assert_int_equal(d.reason, GL_REASON_TRIPLET);

	/* one pass (threshold 1): the pool is on the auto-whitelist, from any
	 * network; the network it passed from is not */
	struct triplet c = pooled("192.0.2.0/24", "ptr:example.com", "other@y.example");
	assert_int_equal(memstore_decide(m, &p, T0 + 400, &c, false).reason, GL_REASON_AWL);
	struct triplet n = mk("198.51.100.0/24", "other@y.example", "r@example.org");
	assert_int_equal(memstore_decide(m, &p, T0 + 400, &n, false).reason, GL_REASON_NEW);

	/* the cap counts by network, pool key or not: 198.51.100.0/24 made one
	 * new triplet above (n), one more is allowed, then none */
	struct triplet q1 = pooled("198.51.100.0/24", "ptr:other.example", "a@z.example");
	struct triplet q2 = pooled("198.51.100.0/24", "ptr:other.example", "b@z.example");
	assert_false(memstore_decide(m, &p, T0 + 500, &q1, false).capped);
	assert_true(memstore_decide(m, &p, T0 + 500, &q2, false).capped);
	/* another network of the same pool has its own */
	struct triplet q3 = pooled("192.0.2.0/24", "ptr:other.example", "b@z.example");
	assert_false(memstore_decide(m, &p, T0 + 500, &q3, false).capped);

	/* saved and loaded: the entry keeps its key text, and the rebuilt key
	 * finds it (passed) */
	char err[256];
	if (memstore_save(m, path("pool.db"), T0 + 600, NULL, err, sizeof err) != 0)
		fail_msg("save: %s", err);
	struct memstore *m2 = memstore_new_keyed(1000, KEY);
	assert_true(memstore_load(m2, path("pool.db"), T0 + 600, err, sizeof err) > 0);
	assert_true(memstore_get(m2, &b).passed);
	int pools = 0;
	struct memstore_walk w = { 0 };
	while (memstore_walk(m2, &w, T0 + 600, 1000, count_pools, &pools))
		;
	assert_int_equal(pools, 1);
	/* and the pool's auto-whitelist came along */
	assert_int_equal(memstore_decide(m2, &p, T0 + 700, &c, false).reason, GL_REASON_AWL);
	memstore_free(m2);
	memstore_free(m);
}

static void test_walk_shows_each_once(void **state)
{
	(void)state;
	enum { N = 5000, NBUCKETS = 8192 };
	struct memstore *m = memstore_new(2 * N);
	for (int i = 0; i < N; i++)
		add(m, i, T0);
	/* expired ones are not shown */
	struct triplet old = numbered(N);
	memstore_pass(m, &old, T0 - 100, 10);
	static const size_t budgets[] = { 1, 7, 1000, SIZE_MAX };
	for (size_t b = 0; b < sizeof budgets / sizeof *budgets; b++) {
		struct tally *t = calloc(1, sizeof *t);
		struct memstore_walk w = { 0 };
		int slices = 1;
		while (memstore_walk(m, &w, T0, budgets[b], tally_cb, t))
			slices++;
		for (int i = 0; i < N; i++)
			if (t->times[i] != 1)
				fail_msg("budget %zu: s%d shown %d times", budgets[b], i, t->times[i]);
		assert_int_equal(t->times[N], 0);
		/* ended: it stays ended */
		assert_false(memstore_walk(m, &w, T0, budgets[b], tally_cb, t));
		if (budgets[b] == 1000) {
			/* a slice may end up to a bucket's length past its budget */
			int steps = NBUCKETS + N + 1;
			assert_true(slices >= steps / (1000 + MEMSTORE_CHAIN_MAX));
			assert_true(slices <= steps / 1000 + 1);
		}
		free(t);
	}
	memstore_free(m);

	/* An empty table is walked in slices too: its buckets cost. */
	struct memstore *e = memstore_new(1000000);
	struct memstore_walk w = { 0 };
	int slices = 1;
	while (memstore_walk(e, &w, T0, 4096, tally_cb, NULL))
		slices++;
	assert_int_equal(slices, 524288 / 4096);
	memstore_free(e);
}

static bool stop_at_3(void *arg, const struct memstore_view *v)
{
	(void)v;
	return ++*(int *)arg < 3;
}

/* A bucket is taken whole (the position is a bucket), even past the
 * budget; FN returning false ends the walk. */
static void test_walk_bucket_whole_and_stop(void **state)
{
	(void)state;
	struct triplet *t = colliding(MEMSTORE_CHAIN_MAX);
	struct memstore *m = memstore_new_keyed(1000, KEY);
	for (int i = 0; i < MEMSTORE_CHAIN_MAX; i++)
		memstore_decide(m, &P, T0, &t[i], false);
	struct seen s;
	memset(&s, 0, sizeof s);
	struct memstore_walk w = { 0 };
	/* The buckets before, one at a time, until the full one: it all comes
	 * in the same slice. */
	while (s.n == 0 && memstore_walk(m, &w, T0, 1, collect_cb, &s))
		;
	assert_int_equal(s.n, MEMSTORE_CHAIN_MAX);
	free(t);

	int calls = 0;
	struct memstore *big = memstore_new(1000);
	for (int i = 0; i < 100; i++)
		add(big, i, T0);
	struct memstore_walk w2 = { 0 };
	assert_false(memstore_walk(big, &w2, T0, SIZE_MAX, stop_at_3, &calls));
	assert_int_equal(calls, 3);
	assert_false(memstore_walk(big, &w2, T0, SIZE_MAX, stop_at_3, &calls));
	assert_int_equal(calls, 3);
	memstore_free(big);
	memstore_free(m);
}

/* Triplets added and deleted between slices, some deleted and added again:
 * none is shown twice, and every one there from the start to the end is
 * shown. */
static void test_walk_with_changes_between_slices(void **state)
{
	(void)state;
	enum { N = 6000 };
	struct memstore *m = memstore_new(4 * N);
	for (int i = 0; i < N; i++)
		add(m, i, T0);
	struct tally *t = calloc(1, sizeof *t);
	bool touched[WALK_IDS] = { false };     /* deleted (or re-added) meanwhile */
	struct memstore_walk w = { 0 };
	int next_new = N, round = 0;
	while (memstore_walk(m, &w, T0, 50, tally_cb, t)) {
		round++;
		int victim = (round * 7919) % N;
		del(m, victim);
		touched[victim] = true;
		if (round % 3 == 0)
			add(m, victim, T0);                 /* back, maybe behind us */
		if (next_new < WALK_IDS)
			add(m, next_new++, T0);
	}
	int survivors = 0;
	for (int i = 0; i < WALK_IDS; i++) {
		if (t->times[i] > 1)
			fail_msg("s%d shown %d times", i, t->times[i]);
		if (i < N && !touched[i]) {
			survivors++;
			if (t->times[i] != 1)
				fail_msg("s%d, there all along, not shown", i);
		}
	}
	assert_true(survivors > N / 2);
	free(t);
	memstore_free(m);
}

/* The table never grows: a full store evicts instead. A walk through
 * evictions (each new triplet pushes the oldest out) is no different:
 * nothing twice, and the triplets that were never evicted are all there. */
static void test_walk_across_evictions(void **state)
{
	(void)state;
	enum { N = 2000 };
	struct memstore *m = memstore_new(N);
	for (int i = 0; i < N; i++)
		add(m, i, T0);
	struct tally *t = calloc(1, sizeof *t);
	struct memstore_walk w = { 0 };
	int next_new = N;
	while (memstore_walk(m, &w, T0, 20, tally_cb, t))
		for (int k = 0; k < 3 && next_new < WALK_IDS; k++)
			add(m, next_new++, T0);
	assert_true(memstore_stats(m).evicted > 0);
	for (int i = 0; i < WALK_IDS; i++) {
		if (t->times[i] > 1)
			fail_msg("s%d shown %d times", i, t->times[i]);
		/* there at the end, so there all along: evicted ones stay out */
		struct triplet k = numbered(i);
		if (i < N && memstore_get(m, &k).exists && t->times[i] != 1)
			fail_msg("s%d, there all along, not shown", i);
	}
	free(t);
	memstore_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_siphash_vectors),
		cmocka_unit_test(test_ms_chain_bounded),
		cmocka_unit_test(test_ms_hash_spread),
		cmocka_unit_test(test_ms_reads_text_format),
		cmocka_unit_test(test_ms_file_is_compact),
		cmocka_unit_test(test_ms_binary_damage),
		cmocka_unit_test(test_ms_pool_keys),
		cmocka_unit_test(test_walk_shows_each_once),
		cmocka_unit_test(test_walk_bucket_whole_and_stop),
		cmocka_unit_test(test_walk_with_changes_between_slices),
		cmocka_unit_test(test_walk_across_evictions),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
