#include "memstore.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILE_MAGIC "greygate-memstore 1"
/* The longest line save can write: a T line whose names are escaped byte
 * for byte (3 characters each), with numbers of 20 digits and a sign. */
#define FILE_LINE_MAX (3 * (NET_TEXT_MAX + 2 * TRIPLET_PART_MAX) + 128)

struct tentry {
	struct tentry *hnext, *prev, *next;   /* hash chain; LRU list */
	uint8_t key[TRIPLET_KEY_LEN];
	struct gl_triplet t;
	char hex[TRIPLET_HEX_LEN + 1];
	char *net, *sender, *rcpt;            /* one allocation, three strings */
};

struct nentry {
	struct nentry *hnext;
	struct gl_network n;
	char net[NET_TEXT_MAX];
};

struct memstore {
	struct tentry **tbuckets;
	size_t nbuckets, ntriplets, max_entries;
	struct tentry *lru_head, *lru_tail;  /* head: most recently used */
	struct nentry **nbuckets_net;
	size_t nnetbuckets, nnetworks;
	size_t sweep_pos;                    /* next bucket the sweeper looks at */
	unsigned long long evicted, expired;
};

static size_t key_hash(const uint8_t *key)
{
	size_t h;
	memcpy(&h, key, sizeof h);           /* a digest is uniform already */
	return h;
}

static size_t str_hash(const char *s)
{
	size_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

struct memstore *memstore_new(size_t max_entries)
{
	struct memstore *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	m->max_entries = max_entries;
	m->nbuckets = 1024;
	while (m->nbuckets < max_entries / 2 && m->nbuckets < (1u << 24))
		m->nbuckets *= 2;
	m->nnetbuckets = 1024;
	while (m->nnetbuckets < max_entries / 8 && m->nnetbuckets < (1u << 22))
		m->nnetbuckets *= 2;
	m->tbuckets = calloc(m->nbuckets, sizeof *m->tbuckets);
	m->nbuckets_net = calloc(m->nnetbuckets, sizeof *m->nbuckets_net);
	if (!m->tbuckets || !m->nbuckets_net) {
		memstore_free(m);
		return NULL;
	}
	return m;
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
	m->lru_head = m->lru_tail = NULL;
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

static void lru_unlink(struct memstore *m, struct tentry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		m->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		m->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_front(struct memstore *m, struct tentry *e)
{
	e->next = m->lru_head;
	e->prev = NULL;
	if (m->lru_head)
		m->lru_head->prev = e;
	m->lru_head = e;
	if (!m->lru_tail)
		m->lru_tail = e;
}

static struct tentry **tfind(struct memstore *m, const uint8_t *key)
{
	struct tentry **pp = &m->tbuckets[key_hash(key) & (m->nbuckets - 1)];
	while (*pp && memcmp((*pp)->key, key, TRIPLET_KEY_LEN) != 0)
		pp = &(*pp)->hnext;
	return pp;
}

static void tremove(struct memstore *m, struct tentry **pp)
{
	struct tentry *e = *pp;
	*pp = e->hnext;
	lru_unlink(m, e);
	free(e->net);
	free(e);
	m->ntriplets--;
}

static struct tentry *tinsert(struct memstore *m, const uint8_t *key, const char *net,
			      const char *sender, const char *rcpt)
{
	while (m->ntriplets >= m->max_entries && m->lru_tail) {
		tremove(m, tfind(m, m->lru_tail->key));
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
	struct tentry **bucket = &m->tbuckets[key_hash(key) & (m->nbuckets - 1)];
	e->hnext = *bucket;
	*bucket = e;
	lru_front(m, e);
	m->ntriplets++;
	return e;
}

/* ---- networks ---- */

static struct nentry **nfind(struct memstore *m, const char *net)
{
	struct nentry **pp = &m->nbuckets_net[str_hash(net) & (m->nnetbuckets - 1)];
	while (*pp && strcmp((*pp)->net, net) != 0)
		pp = &(*pp)->hnext;
	return pp;
}

static bool network_live(const struct gl_network *n, int64_t now)
{
	return n->awl_expires > now || n->new_window_end > now;
}

/* 0: stored (or dropped, not live); 1: not kept, the table is full; -1: a
 * name too long or no memory. */
static int nstore(struct memstore *m, const char *net, const struct gl_network *n, int64_t now)
{
	struct nentry **pp = nfind(m, net);
	if (!network_live(n, now)) {
		if (*pp) {
			struct nentry *e = *pp;
			*pp = e->hnext;
			free(e);
			m->nnetworks--;
		}
		return 0;
	}
	if (*pp) {
		(*pp)->n = *n;
		return 0;
	}
	if (strlen(net) >= NET_TEXT_MAX)
		return -1;
	if (m->nnetworks >= m->max_entries) {
		/* Full: this network's counts are not kept (its new triplets are
		 * still capped by the triplet table's own bound). */
		m->evicted++;
		return 1;
	}
	struct nentry *e = calloc(1, sizeof *e);
	if (!e)
		return -1;
	memcpy(e->net, net, strlen(net) + 1);
	e->n = *n;
	struct nentry **bucket = &m->nbuckets_net[str_hash(net) & (m->nnetbuckets - 1)];
	e->hnext = *bucket;
	*bucket = e;
	m->nnetworks++;
	return 0;
}

static struct gl_network nget(struct memstore *m, const char *net)
{
	struct nentry *e = *nfind(m, net);
	struct gl_network none = { 0 };
	return e ? e->n : none;
}

/* ---- decisions ---- */

struct gl_decision memstore_decide(struct memstore *m, const struct gl_params *p, int64_t now,
				   const struct triplet *t, bool dry_run)
{
	struct tentry **pp = tfind(m, t->key);
	struct gl_triplet st = *pp ? (*pp)->t : (struct gl_triplet){ 0 };
	struct gl_network net = nget(m, t->net);
	struct gl_decision d = gl_decide(p, now, &st, &net, dry_run);
	if (dry_run)
		return d;
	struct tentry *e = *pp;
	if (st.exists && st.expires > now) {
		if (!e)
			e = tinsert(m, t->key, t->net, t->sender, t->rcpt);
		if (e) {
			e->t = st;
			lru_unlink(m, e);
			lru_front(m, e);
		}
	} else if (e) {
		tremove(m, pp);
	}
	nstore(m, t->net, &net, now);
	return d;
}

struct gl_triplet memstore_get(struct memstore *m, const struct triplet *t)
{
	struct tentry *e = *tfind(m, t->key);
	return e ? e->t : (struct gl_triplet){ 0 };
}

int memstore_pass(struct memstore *m, const struct triplet *t, int64_t now, int64_t lifetime)
{
	struct tentry *e = *tfind(m, t->key);
	if (!e)
		e = tinsert(m, t->key, t->net, t->sender, t->rcpt);
	if (!e)
		return -1;
	/* Left over from before it expired, the old state says nothing. */
	if (!e->t.exists || e->t.expires <= now)
		e->t.first_seen = now;
	/* Passing it by hand is a use: it must not be the next one evicted. */
	lru_unlink(m, e);
	lru_front(m, e);
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
	struct tentry **pp = tfind(m, key);
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

void memstore_foreach(struct memstore *m, int64_t now,
		      bool (*fn)(void *arg, const struct memstore_view *v), void *arg)
{
	for (struct tentry *e = m->lru_head; e; e = e->next) {
		if (e->t.expires <= now)
			continue;
		struct memstore_view v = { e->hex, e->net, e->sender, e->rcpt, e->t };
		if (!fn(arg, &v))
			return;
	}
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
			if (!network_live(&(*pp)->n, now)) {
				struct nentry *e = *pp;
				*pp = e->hnext;
				free(e);
				m->nnetworks--;
			} else {
				pp = &(*pp)->hnext;
			}
		}
	}
}

struct memstore_stats memstore_stats(const struct memstore *m)
{
	return (struct memstore_stats){ m->ntriplets, m->nnetworks, m->evicted, m->expired };
}

/* ---- persistence ---- */

/* Fields are separated by blanks, so blanks, '%' and control bytes inside
 * addresses (quoted local parts) are written as %XX. An empty string is
 * written as "%00" (a NUL cannot be inside a string): an empty field would
 * be two blanks, and the file could not be read back. */
static void put_field(FILE *f, const char *s)
{
	fputc(' ', f);
	if (!*s)
		fputs("%00", f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c <= ' ' || c == '%' || c == 0x7f)
			fprintf(f, "%%%02X", c);
		else
			fputc(c, f);
	}
}

int memstore_save(struct memstore *m, const char *file, int64_t now, char *err, size_t errlen)
{
	char tmp[4096];
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", file) >= sizeof tmp) {
		snprintf(err, errlen, "%s: path too long", file);
		return -1;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	fprintf(f, "%s\n", FILE_MAGIC);
	/* Oldest first, so that loading rebuilds the same LRU order. */
	for (struct tentry *e = m->lru_tail; e; e = e->prev) {
		if (e->t.expires <= now)
			continue;
		fprintf(f, "T %s %" PRId64 " %d %" PRId64, e->hex, e->t.first_seen,
			e->t.passed ? 1 : 0, e->t.expires);
		put_field(f, e->net);
		put_field(f, e->sender);
		put_field(f, e->rcpt);
		fputc('\n', f);
	}
	for (size_t i = 0; i < m->nnetbuckets; i++)
		for (struct nentry *e = m->nbuckets_net[i]; e; e = e->hnext)
			if (network_live(&e->n, now)) {
				fputc('N', f);
				put_field(f, e->net);
				fprintf(f, " %d %" PRId64 " %" PRId64 " %d %" PRId64 "\n",
					e->n.awl_count, e->n.awl_last, e->n.awl_expires,
					e->n.new_count, e->n.new_window_end);
			}
	bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, file) < 0) {
		snprintf(err, errlen, "%s: %s", ok ? file : tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

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

/* One line of the file past the magic. Entries that expired while greygate
 * was down are skipped, and so are networks that do not fit (counted as
 * evicted, as at run time): neither is damage. */
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
		if (t.expires <= now)
			return LOAD_OK;
		struct tentry **pp = tfind(m, key);
		struct tentry *e = *pp ? *pp : tinsert(m, key, f[5], f[6], f[7]);
		if (!e)
			return LOAD_NOMEM;
		e->t = t;
		return LOAD_OK;
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

long memstore_load(struct memstore *m, const char *file, int64_t now, char *err, size_t errlen)
{
	FILE *f = fopen(file, "r");
	if (!f) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s:0: %s", file, strerror(errno));
		return -1;
	}
	char line[FILE_LINE_MAX];
	long lineno = 0;
	size_t before = m->ntriplets + m->nnetworks;
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
			if (strcmp(line, FILE_MAGIC) != 0)
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
	if (why) {
		snprintf(err, errlen, "%s:%ld: %s", file, lineno, why);
		clear(m);
		return -1;
	}
	/* What the file added: not its lines, as expired entries are skipped
	 * and a smaller bound evicts some of what was read. */
	size_t after = m->ntriplets + m->nnetworks;
	return after > before ? (long)(after - before) : 0;
}
