#include "memstore.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "list.h"

/* The text format of earlier versions, still read (see memstore_load). */
#define TEXT_MAGIC "greygate-memstore 1"
/* Its longest line: a T line whose names are escaped byte for byte (3
 * characters each), with numbers of 20 digits and a sign. */
#define TEXT_LINE_MAX (3 * (POOL_TEXT_MAX + 2 * TRIPLET_PART_MAX) + 128)

/* The compact format: MAGIC, the save time (8 bytes, little-endian), the
 * records, an end record with the counts, and a SHA-256 of everything
 * before it. docs/design.md describes the records. */
#define BIN_MAGIC "greygate-memstore 2\n"
#define BIN_MAGIC_LEN (sizeof BIN_MAGIC - 1)
#define BIN_HEADER_LEN (BIN_MAGIC_LEN + 8)
#define DIGEST_LEN 32
#define REC_TRIPLET 'T'
#define REC_NETWORK 'N'
#define REC_MARKS 'M'
#define REC_END 'E'
#define FLAG_PASSED 1
#define FLAG_BACKUP_FIRST 2
/* A string is written once and then referred to, by how many strings were
 * written since, while it is among the last REF_WINDOW: the reader keeps
 * just that many. */
#define REF_WINDOW 65536
#define VARINT_MAX 10
/* The longest record: a triplet whose five strings are written out (an
 * address is two: its local part and its domain). */
#define REC_MAX (2 + 2 * VARINT_MAX + 5 * VARINT_MAX + POOL_TEXT_MAX + 2 * TRIPLET_PART_MAX)

struct tentry {
	struct tentry *hnext;                 /* hash chain */
	struct list_node lru;
	uint8_t key[TRIPLET_KEY_LEN];
	struct gl_triplet t;
	char hex[TRIPLET_HEX_LEN + 1];
	char *net, *sender, *rcpt;            /* one allocation, three strings; NET is
					       * the key text (triplet_keytext) */
};

/* A network's counts, or a pool key's (its auto-whitelist only; the
 * per-client cap counts by network): NET is the key text, as long as it
 * is (most are networks, far shorter than a pool key may be). */
struct nentry {
	struct nentry *hnext;
	struct gl_network n;
	struct gl_marks mk;                  /* a network's marks (greylist.h) */
	int64_t mk_until;                    /* kept until then; 0: none */
	char net[];
};

struct memstore {
	uint8_t hkey[SIPHASH_KEY_LEN];
	struct tentry **tbuckets;
	size_t nbuckets, ntriplets, max_entries;   /* nbuckets: fixed (memstore_walk) */
	struct list_node lru;                /* first: most recently used */
	struct nentry **nbuckets_net;
	size_t nnetbuckets, nnetworks;
	size_t sweep_pos;                    /* next bucket the sweeper looks at */
	unsigned long long evicted, expired;
	size_t longest_walk;
};

/* Keyed: the key is a digest of what the client chose, and anybody can
 * grind triplets whose digests share their first bits. */
static size_t key_bucket(const struct memstore *m, const uint8_t *key)
{
	return (size_t)siphash24(m->hkey, key, TRIPLET_KEY_LEN) & (m->nbuckets - 1);
}

static size_t net_bucket(const struct memstore *m, const char *net)
{
	return (size_t)siphash24(m->hkey, net, strlen(net)) & (m->nnetbuckets - 1);
}

static void walked(struct memstore *m, size_t n)
{
	if (n > m->longest_walk)
		m->longest_walk = n;
}

struct memstore *memstore_new_keyed(size_t max_entries, const uint8_t key[SIPHASH_KEY_LEN])
{
	struct memstore *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	memcpy(m->hkey, key, SIPHASH_KEY_LEN);
	list_init(&m->lru);
	m->max_entries = max_entries;
	/* Both tables hold at most max_entries: two a bucket on average. */
	m->nbuckets = 1024;
	while (m->nbuckets < max_entries / 2 && m->nbuckets < (1u << 24))
		m->nbuckets *= 2;
	m->nnetbuckets = m->nbuckets;
	m->tbuckets = calloc(m->nbuckets, sizeof *m->tbuckets);
	m->nbuckets_net = calloc(m->nnetbuckets, sizeof *m->nbuckets_net);
	if (!m->tbuckets || !m->nbuckets_net) {
		memstore_free(m);
		return NULL;
	}
	return m;
}

struct memstore *memstore_new(size_t max_entries)
{
	uint8_t key[SIPHASH_KEY_LEN];
	for (size_t got = 0; got < sizeof key;) {
		ssize_t n = getrandom(key + got, sizeof key - got, 0);
		if (n < 0 && errno != EINTR)
			return NULL;
		if (n > 0)
			got += (size_t)n;
	}
	return memstore_new_keyed(max_entries, key);
}

static void clear(struct memstore *m)
{
	for (size_t i = 0; i < m->nbuckets; i++) {
		for (struct tentry *e = m->tbuckets[i], *nx; e; e = nx) {
			nx = e->hnext;
			free(e->net);
			free(e);
		}
		m->tbuckets[i] = NULL;
	}
	for (size_t i = 0; i < m->nnetbuckets; i++) {
		for (struct nentry *e = m->nbuckets_net[i], *nx; e; e = nx) {
			nx = e->hnext;
			free(e);
		}
		m->nbuckets_net[i] = NULL;
	}
	list_init(&m->lru);
	m->ntriplets = m->nnetworks = 0;
}

void memstore_free(struct memstore *m)
{
	if (!m)
		return;
	if (m->tbuckets && m->nbuckets_net)
		clear(m);
	free(m->tbuckets);
	free(m->nbuckets_net);
	free(m);
}

/* ---- triplets ---- */

/* E becomes the most recently used. */
static void lru_touch(struct memstore *m, struct tentry *e)
{
	list_del(&e->lru);
	list_push_front(&m->lru, &e->lru);
}

/* The link that points at KEY's entry, or the end of its bucket's chain;
 * LEN, if not NULL, gets the number of entries passed over. */
static struct tentry **tfind(struct memstore *m, const uint8_t *key, size_t *len)
{
	struct tentry **pp = &m->tbuckets[key_bucket(m, key)];
	size_t n = 0;
	while (*pp && memcmp((*pp)->key, key, TRIPLET_KEY_LEN) != 0) {
		pp = &(*pp)->hnext;
		n++;
	}
	walked(m, n + (*pp != NULL));
	if (len)
		*len = n;
	return pp;
}

static void tremove(struct memstore *m, struct tentry **pp)
{
	struct tentry *e = *pp;
	*pp = e->hnext;
	list_del(&e->lru);
	free(e->net);
	free(e);
	m->ntriplets--;
}

static struct tentry *tinsert(struct memstore *m, const uint8_t *key, const char *net,
			      const char *sender, const char *rcpt)
{
	struct list_node *oldest;
	while (m->ntriplets >= m->max_entries && (oldest = list_last(&m->lru))) {
		tremove(m, tfind(m, LIST_ELEM(oldest, struct tentry, lru)->key, NULL));
		m->evicted++;
	}
	/* A full bucket gives up its oldest entry (the chain's last: entries
	 * go in at the head). Without the hash key nobody can aim at one
	 * bucket, so this is about as rare as a random chain of that length. */
	size_t len;
	tfind(m, key, &len);
	if (len >= MEMSTORE_CHAIN_MAX) {
		struct tentry **last = &m->tbuckets[key_bucket(m, key)];
		while ((*last)->hnext)
			last = &(*last)->hnext;
		tremove(m, last);
		m->evicted++;
	}
	struct tentry *e = calloc(1, sizeof *e);
	size_t ln = strlen(net) + 1, ls = strlen(sender) + 1, lr = strlen(rcpt) + 1;
	char *strs = malloc(ln + ls + lr);
	if (!e || !strs) {
		free(e);
		free(strs);
		return NULL;
	}
	memcpy(e->key, key, TRIPLET_KEY_LEN);
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < TRIPLET_KEY_LEN; i++) {
		e->hex[2 * i] = hex[key[i] >> 4];
		e->hex[2 * i + 1] = hex[key[i] & 15];
	}
	e->net = memcpy(strs, net, ln);
	e->sender = memcpy(strs + ln, sender, ls);
	e->rcpt = memcpy(strs + ln + ls, rcpt, lr);
	struct tentry **bucket = &m->tbuckets[key_bucket(m, key)];
	e->hnext = *bucket;
	*bucket = e;
	list_push_front(&m->lru, &e->lru);
	m->ntriplets++;
	return e;
}

/* ---- networks ---- */

static struct nentry **nfind(struct memstore *m, const char *net, size_t *len)
{
	struct nentry **pp = &m->nbuckets_net[net_bucket(m, net)];
	size_t n = 0;
	while (*pp && strcmp((*pp)->net, net) != 0) {
		pp = &(*pp)->hnext;
		n++;
	}
	walked(m, n + (*pp != NULL));
	if (len)
		*len = n;
	return pp;
}

static bool network_live(const struct gl_network *n, int64_t now)
{
	return n->awl_expires > now || n->new_window_end > now;
}

static bool entry_live(const struct nentry *e, int64_t now)
{
	return network_live(&e->n, now) || e->mk_until > now;
}

static void nremove(struct memstore *m, struct nentry **pp)
{
	struct nentry *e = *pp;
	*pp = e->hnext;
	free(e);
	m->nnetworks--;
}

/* A new entry for NET in its bucket (LEN entries long already): NULL when
 * NET is too long or out of memory, or (*FULL) the table or the bucket is
 * full. */
static struct nentry *nadd(struct memstore *m, const char *net, size_t len, bool *full)
{
	size_t netlen = strlen(net);
	*full = false;
	if (netlen >= POOL_TEXT_MAX)
		return NULL;
	if (m->nnetworks >= m->max_entries || len >= MEMSTORE_CHAIN_MAX) {
		m->evicted++;
		*full = true;
		return NULL;
	}
	struct nentry *e = calloc(1, sizeof *e + netlen + 1);
	if (!e)
		return NULL;
	memcpy(e->net, net, netlen + 1);
	struct nentry **bucket = &m->nbuckets_net[net_bucket(m, net)];
	e->hnext = *bucket;
	*bucket = e;
	m->nnetworks++;
	return e;
}

/* 0: stored (or dropped, not live); 1: not kept, the table is full; -1: a
 * name too long or no memory. */
static int nstore(struct memstore *m, const char *net, const struct gl_network *n, int64_t now)
{
	size_t len;
	struct nentry **pp = nfind(m, net, &len);
	if (*pp) {
		(*pp)->n = *n;
		if (!entry_live(*pp, now))
			nremove(m, pp);
		return 0;
	}
	if (!network_live(n, now))
		return 0;
	/* Full (the table or the bucket): this network's counts are not kept
	 * (its new triplets are still capped by the triplet table's own
	 * bound). */
	bool full;
	struct nentry *e = nadd(m, net, len, &full);
	if (!e)
		return full ? 1 : -1;
	e->n = *n;
	return 0;
}

struct gl_marks memstore_marks(struct memstore *m, const char *net, const struct gl_mark_set *set,
			       int64_t now)
{
	size_t len;
	struct nentry **pp = nfind(m, net, &len);
	struct nentry *e = *pp;
	struct gl_marks mk = { 0 };
	int64_t until = 0;
	if (e && e->mk_until > now) {
		mk = e->mk;
		until = e->mk_until;
	}
	until = gl_mark_apply(&mk, set, now, until);
	if (set->kind == GL_MARK_NONE)
		return mk;
	bool full;
	if (!e && !(e = nadd(m, net, len, &full)))
		return mk;       /* not kept: as a store failure would be, no mark */
	e->mk = mk;
	e->mk_until = until;
	return mk;
}

static struct gl_network nget(struct memstore *m, const char *net)
{
	struct nentry *e = *nfind(m, net, NULL);
	struct gl_network none = { 0 };
	return e ? e->n : none;
}

/* ---- decisions ---- */

struct gl_decision memstore_decide(struct memstore *m, const struct gl_params *p, int64_t now,
				   const struct triplet *t, bool dry_run)
{
	struct tentry **pp = tfind(m, t->key, NULL);
	struct gl_triplet st = *pp ? (*pp)->t : (struct gl_triplet){ 0 };
	/* A pool key's auto-whitelist is its own; the cap on new triplets
	 * stays the client network's (a record of each, merged for
	 * gl_decide and split again). */
	const char *keytext = triplet_keytext(t);
	bool pool = t->pool[0] != '\0';
	struct gl_network awl = nget(m, keytext);
	struct gl_network cap = pool ? nget(m, t->net) : awl;
	struct gl_network net = awl;
	net.new_count = cap.new_count;
	net.new_window_end = cap.new_window_end;
	struct gl_decision d = gl_decide(p, now, &st, &net, dry_run);
	if (dry_run)
		return d;
	struct tentry *e = *pp;
	if (st.exists && st.expires > now) {
		if (!e)
			e = tinsert(m, t->key, keytext, t->sender, t->rcpt);
		if (e) {
			e->t = st;
			lru_touch(m, e);
		}
	} else if (e) {
		tremove(m, pp);
	}
	if (pool) {
		cap.new_count = net.new_count;
		cap.new_window_end = net.new_window_end;
		net.new_count = awl.new_count;
		net.new_window_end = awl.new_window_end;
		if (t->net[0])
			nstore(m, t->net, &cap, now);
	}
	nstore(m, keytext, &net, now);
	return d;
}

struct gl_triplet memstore_get(struct memstore *m, const struct triplet *t)
{
	struct tentry *e = *tfind(m, t->key, NULL);
	return e ? e->t : (struct gl_triplet){ 0 };
}

int memstore_pass(struct memstore *m, const struct triplet *t, int64_t now, int64_t lifetime)
{
	struct tentry *e = *tfind(m, t->key, NULL);
	if (!e)
		e = tinsert(m, t->key, triplet_keytext(t), t->sender, t->rcpt);
	if (!e)
		return -1;
	/* Left over from before it expired, the old state says nothing. */
	if (!e->t.exists || e->t.expires <= now)
		e->t.first_seen = now;
	/* Passing it by hand is a use: it must not be the next one evicted. */
	lru_touch(m, e);
	e->t.exists = true;
	e->t.passed = true;
	e->t.expires = now + lifetime;
	return 0;
}

static bool hex_to_key(const char *hex, uint8_t *key)
{
	if (strlen(hex) != TRIPLET_HEX_LEN)
		return false;
	for (size_t i = 0; i < TRIPLET_KEY_LEN; i++) {
		unsigned v = 0;
		for (int j = 0; j < 2; j++) {
			char c = hex[2 * i + (size_t)j];
			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v |= (unsigned)(c - 'a' + 10);
			else
				return false;
		}
		key[i] = (uint8_t)v;
	}
	return true;
}

int memstore_delete(struct memstore *m, const char *hex)
{
	uint8_t key[TRIPLET_KEY_LEN];
	if (!hex_to_key(hex, key))
		return -1;
	struct tentry **pp = tfind(m, key, NULL);
	if (!*pp)
		return 0;
	tremove(m, pp);
	return 1;
}

int memstore_whitelist(struct memstore *m, const char *net, int threshold, int64_t expires)
{
	struct gl_network n = nget(m, net);
	n.awl_count = threshold > n.awl_count ? threshold : n.awl_count;
	n.awl_expires = expires;
	n.awl_last = 0;
	return nstore(m, net, &n, 0) == 0 ? 0 : -1;
}

bool memstore_walk(struct memstore *m, struct memstore_walk *w, int64_t now, size_t budget,
		   bool (*fn)(void *arg, const struct memstore_view *v), void *arg)
{
	/* An empty bucket costs a step too: a large table holding little is
	 * walked in slices as well. */
	for (size_t spent = 0; spent < budget && w->bucket < m->nbuckets; spent++) {
		for (struct tentry *e = m->tbuckets[w->bucket]; e; e = e->hnext, spent++) {
			if (e->t.expires <= now)
				continue;
			struct memstore_view v = { e->hex, e->net, e->sender, e->rcpt, e->t };
			if (!fn(arg, &v)) {
				w->bucket = m->nbuckets;
				return false;
			}
		}
		w->bucket++;
	}
	return w->bucket < m->nbuckets;
}

void memstore_sweep(struct memstore *m, int64_t now, size_t budget)
{
	for (size_t i = 0; i < budget; i++) {
		size_t b = m->sweep_pos++ & (m->nbuckets - 1);
		for (struct tentry **pp = &m->tbuckets[b]; *pp;) {
			if ((*pp)->t.expires <= now) {
				tremove(m, pp);
				m->expired++;
			} else {
				pp = &(*pp)->hnext;
			}
		}
		size_t nb = b & (m->nnetbuckets - 1);
		for (struct nentry **pp = &m->nbuckets_net[nb]; *pp;) {
			if (!entry_live(*pp, now)) {
				nremove(m, pp);
			} else {
				pp = &(*pp)->hnext;
			}
		}
	}
}

struct memstore_stats memstore_stats(const struct memstore *m)
{
	return (struct memstore_stats){ m->ntriplets, m->nnetworks, m->evicted, m->expired,
					m->longest_walk };
}

/* ---- the compact format ---- */

struct cached {
	const char *s;
	size_t len;
	uint64_t idx;
};

struct writer {
	FILE *f;
	EVP_MD_CTX *sha;
	int64_t base;                /* times are written as differences to it */
	unsigned long long bytes;
	uint64_t literals;           /* strings written out so far */
	struct cached *cache;        /* REF_WINDOW slots, by a hash of the string */
	bool ok;
	size_t len;
	uint8_t rec[REC_MAX];        /* the record being built */
};

static void put_u8(struct writer *w, uint8_t b)
{
	w->rec[w->len++] = b;
}

static void put_varint(struct writer *w, uint64_t v)
{
	for (; v >= 0x80; v >>= 7)
		put_u8(w, (uint8_t)(v | 0x80));
	put_u8(w, (uint8_t)v);
}

/* Zigzag, so that times shortly before the base are short too. */
static void put_time(struct writer *w, int64_t t)
{
	uint64_t d = (uint64_t)t - (uint64_t)w->base;
	put_varint(w, (d << 1) ^ (0 - (d >> 63)));
}

/* A string is a varint: twice its length, followed by its bytes; or twice
 * the distance back to the same string written out before, plus one. The
 * cache forgets a string when another takes its slot: that costs bytes,
 * never correctness. */
static void put_strn(struct writer *w, const char *s, size_t len)
{
	static const uint8_t cache_key[SIPHASH_KEY_LEN];
	struct cached *c = &w->cache[siphash24(cache_key, s, len) & (REF_WINDOW - 1)];
	if (c->s && w->literals - c->idx <= REF_WINDOW && c->len == len &&
	    memcmp(c->s, s, len) == 0) {
		put_varint(w, ((w->literals - c->idx) << 1) | 1);
		return;
	}
	put_varint(w, (uint64_t)len << 1);
	memcpy(w->rec + w->len, s, len);
	w->len += len;
	*c = (struct cached){ s, len, w->literals++ };
}

static void put_str(struct writer *w, const char *s, size_t max)
{
	size_t len = strlen(s);
	if (len >= max)
		w->ok = false;
	else
		put_strn(w, s, len);
}

/* An address as its local part and its domain (from the last '@' on):
 * domains recur far more than addresses. */
static void put_addr(struct writer *w, const char *s)
{
	size_t len = strlen(s);
	const char *at = strrchr(s, '@');
	size_t local = at ? (size_t)(at - s) : len;
	if (len >= TRIPLET_PART_MAX) {
		w->ok = false;
		return;
	}
	put_strn(w, s, local);
	put_strn(w, s + local, len - local);
}

static void end_record(struct writer *w)
{
	if (w->ok && (fwrite(w->rec, 1, w->len, w->f) != w->len ||
		      EVP_DigestUpdate(w->sha, w->rec, w->len) != 1))
		w->ok = false;
	w->bytes += w->len;
	w->len = 0;
}

static void write_records(struct memstore *m, struct writer *w, int64_t now,
			  struct memstore_saved *saved)
{
	memcpy(w->rec, BIN_MAGIC, BIN_MAGIC_LEN);
	w->len = BIN_MAGIC_LEN;
	for (int i = 0; i < 8; i++)
		put_u8(w, (uint8_t)((uint64_t)now >> (8 * i)));
	end_record(w);
	/* Oldest first, so that loading rebuilds the same LRU order. */
	struct list_node *n;
	LIST_FOR_EACH_REVERSE(n, &m->lru) {
		if (!w->ok)
			break;
		struct tentry *e = LIST_ELEM(n, struct tentry, lru);
		if (e->t.expires <= now)
			continue;
		/* No key: it is a digest of the names, computed again on
		 * loading. */
		put_u8(w, REC_TRIPLET);
		put_u8(w, (e->t.passed ? FLAG_PASSED : 0) | (e->t.backup_first ? FLAG_BACKUP_FIRST : 0));
		put_time(w, e->t.first_seen);
		put_time(w, e->t.expires);
		put_str(w, e->net, POOL_TEXT_MAX);
		put_addr(w, e->sender);
		put_addr(w, e->rcpt);
		end_record(w);
		saved->triplets++;
	}
	for (size_t i = 0; i < m->nnetbuckets && w->ok; i++)
		for (struct nentry *e = m->nbuckets_net[i]; e; e = e->hnext) {
			if (e->mk_until > now) {
				put_u8(w, REC_MARKS);
				put_str(w, e->net, POOL_TEXT_MAX);
				put_time(w, e->mk.trapped_until);
				put_time(w, e->mk.trapped_at);
				put_time(w, e->mk_until);
				end_record(w);
				saved->marks++;
			}
			if (!network_live(&e->n, now))
				continue;
			put_u8(w, REC_NETWORK);
			put_str(w, e->net, POOL_TEXT_MAX);
			put_varint(w, (uint64_t)e->n.awl_count);
			put_time(w, e->n.awl_last);
			put_time(w, e->n.awl_expires);
			put_varint(w, (uint64_t)e->n.new_count);
			put_time(w, e->n.new_window_end);
			end_record(w);
			saved->networks++;
		}
	put_u8(w, REC_END);
	put_varint(w, saved->triplets);
	put_varint(w, saved->networks);
	if (saved->marks)      /* only then: a file without marks reads as before */
		put_varint(w, saved->marks);
	end_record(w);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	if (w->ok && (EVP_DigestFinal_ex(w->sha, md, &mdlen) != 1 || mdlen != DIGEST_LEN ||
		      fwrite(md, 1, DIGEST_LEN, w->f) != DIGEST_LEN))
		w->ok = false;
	w->bytes += DIGEST_LEN;
}

int memstore_save(struct memstore *m, const char *file, int64_t now, struct memstore_saved *out,
		  char *err, size_t errlen)
{
	char tmp[4096];
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", file) >= sizeof tmp) {
		snprintf(err, errlen, "%s: path too long", file);
		return -1;
	}
	int rc = -1;
	struct writer *w = calloc(1, sizeof *w);
	if (!w || !(w->cache = calloc(REF_WINDOW, sizeof *w->cache)) ||
	    !(w->sha = EVP_MD_CTX_new()) || EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL) != 1) {
		snprintf(err, errlen, "%s: out of memory", tmp);
		goto done;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	w->f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!w->f) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto done;
	}
	setvbuf(w->f, NULL, _IOFBF, 1 << 16);
	w->base = now;
	w->ok = true;
	struct memstore_saved saved = { 0, 0, 0, 0 };
	errno = 0;
	write_records(m, w, now, &saved);
	bool ok = w->ok && fflush(w->f) == 0 && fsync(fileno(w->f)) == 0;
	ok = (fclose(w->f) == 0) && ok;
	if (!ok || rename(tmp, file) < 0) {
		snprintf(err, errlen, "%s: %s", ok ? file : tmp, strerror(errno ? errno : EIO));
		unlink(tmp);
		goto done;
	}
	saved.bytes = w->bytes;
	if (out)
		*out = saved;
	rc = 0;
done:
	if (w) {
		free(w->cache);
		EVP_MD_CTX_free(w->sha);
	}
	free(w);
	return rc;
}

/* ---- loading ---- */

/* One triplet read from a file. One that expired while greygate was down
 * is skipped, which is no damage. */
static bool load_triplet(struct memstore *m, const uint8_t *key, const struct gl_triplet *t,
			 const char *net, const char *sender, const char *rcpt, int64_t now)
{
	if (t->expires <= now)
		return true;
	struct tentry **pp = tfind(m, key, NULL);
	struct tentry *e = *pp ? *pp : tinsert(m, key, net, sender, rcpt);
	if (!e)
		return false;
	e->t = *t;
	return true;
}

struct reader {
	const uint8_t *p, *end;
	const uint8_t *rec;          /* where the record being read starts */
	int64_t base;
	uint64_t literals;
	const uint8_t **lit;         /* the last REF_WINDOW strings written out */
	uint16_t *litlen;
};

static bool get_varint(struct reader *r, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (r->p == r->end)
			return false;
		uint8_t b = *r->p++;
		if (shift == 63 && b > 1)
			return false;
		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return true;
		}
	}
	return false;
}

static bool get_time(struct reader *r, int64_t *t)
{
	uint64_t u;
	if (!get_varint(r, &u))
		return false;
	uint64_t d = (u >> 1) ^ (0 - (u & 1));
	*t = (int64_t)((uint64_t)r->base + d);
	return true;
}

static bool get_count(struct reader *r, int *out)
{
	uint64_t v;
	if (!get_varint(r, &v) || v > INT_MAX)
		return false;
	*out = (int)v;
	return true;
}

/* A string into OUT at *LEN, where it must end before MAX; *LEN moves
 * past it. */
static bool get_strn(struct reader *r, char *out, size_t *outlen, size_t max)
{
	uint64_t v;
	if (!get_varint(r, &v))
		return false;
	const uint8_t *p;
	size_t len;
	if (v & 1) {
		uint64_t back = v >> 1;
		if (back == 0 || back > REF_WINDOW || back > r->literals)
			return false;
		size_t slot = (size_t)((r->literals - back) % REF_WINDOW);
		p = r->lit[slot];
		len = r->litlen[slot];
	} else {
		if ((v >> 1) >= TRIPLET_PART_MAX || (uint64_t)(r->end - r->p) < (v >> 1))
			return false;
		len = (size_t)(v >> 1);
		p = r->p;
		r->p += len;
		if (memchr(p, 0, len))
			return false;
		size_t slot = (size_t)(r->literals++ % REF_WINDOW);
		r->lit[slot] = p;
		r->litlen[slot] = (uint16_t)len;
	}
	if (len >= max - *outlen)
		return false;
	memcpy(out + *outlen, p, len);
	*outlen += len;
	out[*outlen] = 0;
	return true;
}

static bool get_str(struct reader *r, char *out, size_t max)
{
	size_t len = 0;
	return get_strn(r, out, &len, max);
}

static bool get_addr(struct reader *r, char *out, size_t max)
{
	size_t len = 0;
	return get_strn(r, out, &len, max) && get_strn(r, out, &len, max);
}

/* NET's marks as a file had them: false when out of memory (a full table
 * drops them, as it would have when they were set). */
static bool load_marks(struct memstore *m, const char *net, const struct gl_marks *mk,
		       int64_t until)
{
	size_t len;
	struct nentry **pp = nfind(m, net, &len);
	bool full = false;
	struct nentry *e = *pp ? *pp : nadd(m, net, len, &full);
	if (!e)
		return full;
	e->mk = *mk;
	e->mk_until = until;
	return true;
}

/* Reads the records after the header; NULL, or what is wrong with the
 * record at R->rec. */
static const char *load_records(struct memstore *m, struct reader *r, int64_t now)
{
	uint64_t ntriplets = 0, nnetworks = 0, nmarks = 0;
	char net[POOL_TEXT_MAX], sender[TRIPLET_PART_MAX], rcpt[TRIPLET_PART_MAX];
	for (;;) {
		r->rec = r->p;
		if (r->p == r->end)
			return "no end record";
		uint8_t kind = *r->p++;
		if (kind == REC_TRIPLET) {
			struct gl_triplet t = { .exists = true };
			if (r->p == r->end || (r->p[0] & ~(FLAG_PASSED | FLAG_BACKUP_FIRST)))
				return "malformed triplet";
			t.passed = r->p[0] & FLAG_PASSED;
			t.backup_first = *r->p++ & FLAG_BACKUP_FIRST;
			if (!get_time(r, &t.first_seen) || !get_time(r, &t.expires) ||
			    !get_str(r, net, sizeof net) || !get_addr(r, sender, sizeof sender) ||
			    !get_addr(r, rcpt, sizeof rcpt))
				return "malformed triplet";
			/* The key is made again of the names, as it was (the
			 * recipient was in lower case already). */
			struct triplet k;
			if (t.expires > now) {
				if (triplet_make_text(&k, net, sender, strlen(sender), rcpt,
						      strlen(rcpt)) < 0 || strcmp(k.rcpt, rcpt) != 0)
					return "malformed triplet";
				if (!load_triplet(m, k.key, &t, net, sender, rcpt, now))
					return "out of memory";
			}
			ntriplets++;
		} else if (kind == REC_NETWORK) {
			struct gl_network n;
			if (!get_str(r, net, sizeof net) || !get_count(r, &n.awl_count) ||
			    !get_time(r, &n.awl_last) || !get_time(r, &n.awl_expires) ||
			    !get_count(r, &n.new_count) || !get_time(r, &n.new_window_end))
				return "malformed network";
			if (nstore(m, net, &n, now) < 0)
				return "out of memory";
			nnetworks++;
		} else if (kind == REC_MARKS) {
			struct gl_marks mk = { 0 };
			int64_t until;
			if (!get_str(r, net, sizeof net) || !get_time(r, &mk.trapped_until) ||
			    !get_time(r, &mk.trapped_at) || !get_time(r, &until))
				return "malformed marks";
			if (until > now && !load_marks(m, net, &mk, until))
				return "out of memory";
			nmarks++;
		} else if (kind == REC_END) {
			/* a marks count follows when there were marks records */
			uint64_t nt, nn, nm = 0;
			if (!get_varint(r, &nt) || !get_varint(r, &nn) ||
			    (nmarks && !get_varint(r, &nm)) || nt != ntriplets ||
			    nn != nnetworks || nm != nmarks)
				return "end record does not match the entries";
			if (r->p != r->end) {
				r->rec = r->p;
				return "data after the end record";
			}
			return NULL;
		} else {
			return "unknown record";
		}
	}
}

/* FD holds the compact format (its magic was seen). The checksum is
 * checked before anything is read into the store. */
static bool load_binary(struct memstore *m, int fd, const char *file, int64_t now, char *err,
			size_t errlen)
{
	struct stat st;
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: byte 0: %s", file, strerror(errno));
		return false;
	}
	if ((uint64_t)st.st_size > SIZE_MAX || st.st_size < (off_t)(BIN_HEADER_LEN + 3 + DIGEST_LEN)) {
		snprintf(err, errlen, "%s: byte %lld: file cut short", file, (long long)st.st_size);
		return false;
	}
	size_t size = (size_t)st.st_size;
	const uint8_t *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		snprintf(err, errlen, "%s: byte 0: %s", file, strerror(errno));
		return false;
	}
	size_t body = size - DIGEST_LEN;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	const char *why = NULL;
	size_t at = body;
	struct reader r = { .p = map + BIN_HEADER_LEN, .end = map + body };
	if (EVP_Digest(map, body, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != DIGEST_LEN) {
		why = "cannot compute the checksum";
	} else if (memcmp(md, map + body, DIGEST_LEN) != 0) {
		why = "checksum mismatch (damaged or cut short)";
	} else {
		r.lit = calloc(REF_WINDOW, sizeof *r.lit);
		r.litlen = calloc(REF_WINDOW, sizeof *r.litlen);
		uint64_t base = 0;
		for (int i = 7; i >= 0; i--)
			base = (base << 8) | map[BIN_MAGIC_LEN + (size_t)i];
		r.base = (int64_t)base;
		why = r.lit && r.litlen ? load_records(m, &r, now) : "out of memory";
		at = (size_t)(r.rec - map);
		free(r.lit);
		free(r.litlen);
	}
	munmap((void *)map, size);
	if (why)
		snprintf(err, errlen, "%s: byte %zu: %s", file, at, why);
	return !why;
}


/* ---- loading the text format of earlier versions ---- */

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Undoes put_field in place. Digits are checked one by one: sscanf("%2X")
 * would take "%4G" or "%-1" for an escape. */
static bool unescape(char *s)
{
	if (strcmp(s, "%00") == 0) {
		*s = 0;
		return true;
	}
	char *o = s;
	for (char *p = s; *p; p++) {
		if (*p != '%') {
			*o++ = *p;
			continue;
		}
		int hi = hex_digit(p[1]), lo = hi < 0 ? -1 : hex_digit(p[2]);
		if (lo < 0 || (hi == 0 && lo == 0))
			return false;
		*o++ = (char)(hi * 16 + lo);
		p += 2;
	}
	*o = 0;
	return true;
}

/* A whole field as a decimal number, in range: strtoll alone would take
 * "99999999999999999999" as INT64_MAX and " 5" as 5. */
static bool parse_i64(const char *s, int64_t *out)
{
	if (!(*s == '-' || (*s >= '0' && *s <= '9')))
		return false;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (*end || errno == ERANGE)
		return false;
	*out = v;
	return true;
}

static bool parse_count(const char *s, int *out)
{
	int64_t v;
	if (!parse_i64(s, &v) || v < 0 || v > INT_MAX)
		return false;
	*out = (int)v;
	return true;
}

/* Splits LINE at single blanks into at most MAX fields; returns the count,
 * MAX + 1 when there are more. Two blanks make an empty field, which no
 * field may be, so that damage is refused rather than skipped over. */
static size_t split(char *line, char **f, size_t max)
{
	size_t n = 0;
	for (char *p = line;;) {
		if (n == max)
			return max + 1;
		f[n++] = p;
		p = strchr(p, ' ');
		if (!p)
			return n;
		*p++ = 0;
	}
}

enum load_result { LOAD_OK, LOAD_BAD, LOAD_NOMEM };

/* One line of the file past the magic. Networks that do not fit are
 * skipped (counted as evicted, as at run time): that is no damage. */
static enum load_result load_line(struct memstore *m, char *line, int64_t now)
{
	char *f[8];
	size_t nf = split(line, f, 8);
	if (nf == 8 && strcmp(f[0], "T") == 0) {
		uint8_t key[TRIPLET_KEY_LEN];
		int64_t passed;
		struct gl_triplet t = { .exists = true };
		if (!hex_to_key(f[1], key) || !parse_i64(f[2], &t.first_seen) ||
		    !parse_i64(f[3], &passed) || (passed != 0 && passed != 1) ||
		    !parse_i64(f[4], &t.expires) || !unescape(f[5]) || !unescape(f[6]) ||
		    !unescape(f[7]) || strlen(f[5]) >= NET_TEXT_MAX ||
		    strlen(f[6]) >= TRIPLET_PART_MAX || strlen(f[7]) >= TRIPLET_PART_MAX)
			return LOAD_BAD;
		t.passed = passed == 1;
		return load_triplet(m, key, &t, f[5], f[6], f[7], now) ? LOAD_OK : LOAD_NOMEM;
	}
	if (nf == 7 && strcmp(f[0], "N") == 0) {
		struct gl_network n;
		if (!unescape(f[1]) || strlen(f[1]) >= NET_TEXT_MAX ||
		    !parse_count(f[2], &n.awl_count) || !parse_i64(f[3], &n.awl_last) ||
		    !parse_i64(f[4], &n.awl_expires) || !parse_count(f[5], &n.new_count) ||
		    !parse_i64(f[6], &n.new_window_end))
			return LOAD_BAD;
		return nstore(m, f[1], &n, now) < 0 ? LOAD_NOMEM : LOAD_OK;
	}
	return LOAD_BAD;
}

/* FD holds something else than the compact format: the text format of
 * earlier versions, or damage. */
static bool load_text(struct memstore *m, int fd, const char *file, int64_t now, char *err,
		      size_t errlen)
{
	FILE *f = fdopen(fd, "r");
	if (!f) {
		snprintf(err, errlen, "%s:0: %s", file, strerror(errno));
		close(fd);
		return false;
	}
	char line[TEXT_LINE_MAX];
	long lineno = 0;
	const char *why = NULL;
	while (!why && fgets(line, sizeof line, f)) {
		lineno++;
		size_t n = strlen(line);
		if (n == 0 || line[n - 1] != '\n') {
			why = "line too long or truncated";
			break;
		}
		line[n - 1] = 0;
		if (lineno == 1) {
			if (strcmp(line, TEXT_MAGIC) != 0)
				why = "not a greygate memory store file";
			continue;
		}
		enum load_result r = load_line(m, line, now);
		if (r == LOAD_BAD)
			why = "malformed entry";
		else if (r == LOAD_NOMEM)
			why = "out of memory";
	}
	if (!why && ferror(f))
		why = strerror(errno);
	if (!why && lineno == 0)
		why = "empty file";
	fclose(f);
	if (why)
		snprintf(err, errlen, "%s:%ld: %s", file, lineno, why);
	return !why;
}

long memstore_load(struct memstore *m, const char *file, int64_t now, char *err, size_t errlen)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s:0: %s", file, strerror(errno));
		return -1;
	}
	size_t before = m->ntriplets + m->nnetworks;
	char head[BIN_MAGIC_LEN];
	bool ok;
	if (pread(fd, head, sizeof head, 0) == (ssize_t)sizeof head &&
	    memcmp(head, BIN_MAGIC, BIN_MAGIC_LEN) == 0) {
		ok = load_binary(m, fd, file, now, err, errlen);
		close(fd);
	} else {
		ok = load_text(m, fd, file, now, err, errlen);
	}
	if (!ok) {
		clear(m);
		return -1;
	}
	/* What the file added: not its entries, as expired ones are skipped
	 * and a smaller bound evicts some of what was read. */
	size_t after = m->ntriplets + m->nnetworks;
	return after > before ? (long)(after - before) : 0;
}
