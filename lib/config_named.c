/*
 * The settings that need more than a row of the table: addresses checked
 * as ADDRESS:PORT, values that depend on others, the TLS context, and the
 * checks across settings. Each reads the file through libconfig and
 * reports with the setting's line.
 */
#include "config_priv.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "hostname.h"
#include "hostport.h"
#include "log.h"

bool cfg_load_listen(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	const config_setting_t *s = config_lookup(cf, "listen");
	if (!s) {
		c->listen[c->nlisten++] = cfg_xstrdup("127.0.0.1:2525");
		return true;
	}
	if (config_setting_length(s) == 0)
		return cfg_fail(ld, s, "listen: at least one address is needed");
	if (config_setting_length(s) > GG_MAX_LISTEN)
		return cfg_fail(ld, s, "listen: at most %d addresses", GG_MAX_LISTEN);
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		struct sockaddr_storage ss;
		socklen_t len;
		if (!hostport_parse(config_setting_get_string(e), &ss, &len))
			return cfg_fail(ld, e, "listen: '%s' is not ADDRESS:PORT ([v6]:port for IPv6)",
				    config_setting_get_string(e));
		c->listen[c->nlisten++] = cfg_xstrdup(config_setting_get_string(e));
	}
	return true;
}

/* Whether two listen addresses would take each other's connections: the
 * same port, and the same address or a wildcard on either side (the
 * sockets are bound with SO_REUSEPORT, so the kernel would not refuse the
 * second; IPv6 sockets are v6-only, so families never collide). */
static bool same_listener(const char *a, const char *b)
{
	struct sockaddr_storage x, y;
	socklen_t xl, yl;
	if (!hostport_parse(a, &x, &xl) || !hostport_parse(b, &y, &yl) || x.ss_family != y.ss_family)
		return false;
	if (x.ss_family == AF_INET) {
		const struct sockaddr_in *p = (const struct sockaddr_in *)&x;
		const struct sockaddr_in *q = (const struct sockaddr_in *)&y;
		return p->sin_port == q->sin_port &&
		       (p->sin_addr.s_addr == q->sin_addr.s_addr ||
			p->sin_addr.s_addr == htonl(INADDR_ANY) || q->sin_addr.s_addr == htonl(INADDR_ANY));
	}
	const struct sockaddr_in6 *p = (const struct sockaddr_in6 *)&x;
	const struct sockaddr_in6 *q = (const struct sockaddr_in6 *)&y;
	return p->sin6_port == q->sin6_port &&
	       (IN6_ARE_ADDR_EQUAL(&p->sin6_addr, &q->sin6_addr) ||
		IN6_IS_ADDR_UNSPECIFIED(&p->sin6_addr) || IN6_IS_ADDR_UNSPECIFIED(&q->sin6_addr));
}

bool cfg_validate(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (!hostport_parse(c->backend.address, &ss, &len))
		return cfg_fail(ld, config_lookup(cf, "backend.address"),
			    "backend.address: '%s' is not ADDRESS:PORT", c->backend.address);
	if (strcmp(c->log.target, "stderr") != 0 && strcmp(c->log.target, "syslog") != 0)
		return cfg_fail(ld, config_lookup(cf, "log.target"),
			    "log.target must be \"stderr\" or \"syslog\"");
	static const char *const levels[] = { "debug", "info", "warning", "error" };
	bool level_ok = false;
	for (size_t i = 0; i < 4; i++)
		level_ok |= strcmp(c->log.level, levels[i]) == 0;
	if (!level_ok)
		return cfg_fail(ld, config_lookup(cf, "log.level"),
			    "log.level must be debug, info, warning or error");
	char d[DOMAIN_MAX + 2];
	if (!cfg_domain_normalise(c->myhostname, d, sizeof d) || d[0] == '.')
		return cfg_fail(ld, config_lookup(cf, "myhostname"),
			    "myhostname '%s' is not a host name", c->myhostname);
	for (const char *p = c->banner; *p; p++)
		if ((unsigned char)*p < ' ')
			return cfg_fail(ld, config_lookup(cf, "banner"),
				    "banner must not contain control characters");
	return true;
}

/* The list of ADDRESS:PORT at NAME into *V, *N: false (reported) when an
 * entry is not one. */
static bool load_addrs(struct loader *ld, const config_t *cf, const char *name, char ***v,
		       size_t *n)
{
	const config_setting_t *sl = config_lookup(cf, name);
	for (int i = 0; sl && i < config_setting_length(sl); i++) {
		const config_setting_t *e = config_setting_get_elem(sl, (unsigned)i);
		const char *a = config_setting_get_string(e);
		struct sockaddr_storage ss;
		socklen_t len;
		if (!hostport_parse(a, &ss, &len))
			return cfg_fail(ld, e, "%s: '%s' is not ADDRESS:PORT ([v6]:port for IPv6)",
					name, a);
		char **nv = realloc(*v, (*n + 1) * sizeof *nv);
		if (!nv)
			return cfg_fail(ld, e, "out of memory");
		*v = nv;
		nv[(*n)++] = cfg_xstrdup(a);
	}
	return true;
}

/* store.redis.cluster: a non-empty list makes store.type "redis" a
 * cluster store ("redis-cluster" says the same and needs the list). Keys
 * carry a hash tag there, so the prefix must not open one; a cluster has
 * only database 0, and no sentinels. */
static bool load_cluster(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	const config_setting_t *cl = config_lookup(cf, "store.redis.cluster");
	if (!load_addrs(ld, cf, "store.redis.cluster", &c->store.redis.cluster,
			&c->store.redis.ncluster))
		return false;
	if (c->store.kind == STORE_REDIS && c->store.redis.ncluster)
		c->store.kind = STORE_REDIS_CLUSTER;
	if (c->store.kind != STORE_REDIS_CLUSTER)
		return true;
	if (!c->store.redis.ncluster)
		return cfg_fail(ld, config_lookup(cf, "store.type"),
			    "store.type \"redis-cluster\" needs store.redis.cluster "
			    "(the ADDRESS:PORT of some of its nodes)");
	if (c->store.redis.nsentinels)
		return cfg_fail(ld, cl, "store.redis.cluster and store.redis.sentinels exclude "
				    "each other");
	if (c->store.redis.db)
		return cfg_fail(ld, config_lookup(cf, "store.redis.db"),
			    "store.redis.db must be 0 with store.redis.cluster");
	if (strpbrk(c->store.redis.prefix, "{}"))
		return cfg_fail(ld, config_lookup(cf, "store.redis.prefix"),
			    "store.redis.prefix must not contain '{' or '}' with store.redis.cluster "
			    "(the keys' hash tag)");
	return true;
}

bool cfg_load_store(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	const char *failure = "accept";
	config_lookup_string(cf, "store.failure", &failure);
	bool failure_ok = strcmp(failure, "accept") == 0 || strcmp(failure, "tempfail") == 0;
	c->store.tempfail = strcmp(failure, "tempfail") == 0;
	const config_setting_t *sl = config_lookup(cf, "store.redis.sentinels");
	if (!load_addrs(ld, cf, "store.redis.sentinels", &c->store.redis.sentinels,
			&c->store.redis.nsentinels))
		return false;
	if (c->store.redis.nsentinels) {
		const char *mn = c->store.redis.master_name;
		bool mn_ok = mn[0] && strlen(mn) <= 128;
		for (const char *p = mn; *p; p++)
			mn_ok &= (unsigned char)*p > ' ' && (unsigned char)*p < 127;
		const config_setting_t *mns = config_lookup(cf, "store.redis.master_name");
		if (!mn_ok)
			return cfg_fail(ld, mns ? mns : sl,
				    "store.redis.master_name must name the master (1..128 printable "
				    "characters, no blanks) when store.redis.sentinels is set");
	}
	struct sockaddr_storage ass;
	socklen_t alen;
	if (c->admin_listen[0] && !hostport_parse(c->admin_listen, &ass, &alen))
		return cfg_fail(ld, config_lookup(cf, "admin.listen"),
			    "admin.listen: '%s' is not ADDRESS:PORT (\"\" switches it off)",
			    c->admin_listen);
	if (c->policy.listen[0] && !hostport_parse(c->policy.listen, &ass, &alen))
		return cfg_fail(ld, config_lookup(cf, "policy.listen"),
			    "policy.listen: '%s' is not ADDRESS:PORT (\"\" switches it off)",
			    c->policy.listen);
	for (size_t i = 0; c->policy.listen[0] && i < c->nlisten; i++)
		if (same_listener(c->policy.listen, c->listen[i]))
			return cfg_fail(ld, config_lookup(cf, "policy.listen"),
				    "policy.listen: '%s' takes the connections of listen address '%s'",
				    c->policy.listen, c->listen[i]);
	if (store_type_find(c->store.type, &c->store.kind) < 0)
		return cfg_fail(ld, config_lookup(cf, "store.type"), "store.type must be %s",
			    store_type_names());
	if (!failure_ok)
		return cfg_fail(ld, config_lookup(cf, "store.failure"),
			    "store.failure must be \"accept\" or \"tempfail\"");
	if (strlen(c->store.redis.prefix) > 64)
		return cfg_fail(ld, config_lookup(cf, "store.redis.prefix"),
			    "store.redis.prefix is longer than 64 bytes");
	if (!load_cluster(ld, cf, c))
		return false;
	if (strlen(c->control_socket) >= 108)
		return cfg_fail(ld, config_lookup(cf, "control_socket"),
			    "control_socket path is longer than a socket path may be");
	return true;
}

/* Words of provider-assigned names (generic_name.h): ISPs' dynamic and
 * customer ranges, as the big ones name them. */
static const char *const default_generic_words[] = {
	"dyn", "dynamic", "dynip", "dhcp", "pool", "ppp", "pppoe", "dsl", "adsl", "vdsl", "xdsl",
	"cable", "cust", "customer", "client", "broadband", "dial", "dialup", "dialin", "cpe",
	"residential", "mobile", "wireless",
};
#define GENERIC_WORDS_MAX 1000

static bool add_word(struct gg_config *c, const char *w)
{
	char **nv = realloc(c->greylist.generic_name_words,
			    (c->greylist.ngeneric_name_words + 1) * sizeof *nv);
	if (!nv)
		return false;
	c->greylist.generic_name_words = nv;
	nv[c->greylist.ngeneric_name_words++] = cfg_xstrdup(w);
	return true;
}

/* greylist.pool_keys and greylist.generic_name_words. */
static bool load_pool_keys(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	const config_setting_t *s = config_lookup(cf, "greylist.pool_keys");
	if (!s) {
		c->greylist.pool_keys[0] = POOL_SPF;
		c->greylist.pool_keys[1] = POOL_PTR;
		c->greylist.npool_keys = 2;
	}
	for (int i = 0; s && i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v = config_setting_get_string(e);
		enum pool_kind k;
		if (!pool_kind_parse(v, &k) || k == POOL_NET)
			return cfg_fail(ld, e, "greylist.pool_keys: '%s' is not \"spf\" or \"ptr\" "
				    "(the network is the key when neither applies)", v);
		for (size_t j = 0; j < c->greylist.npool_keys; j++)
			if (c->greylist.pool_keys[j] == k)
				return cfg_fail(ld, e, "greylist.pool_keys: '%s' twice", v);
		c->greylist.pool_keys[c->greylist.npool_keys++] = k;
	}
	const config_setting_t *w = config_lookup(cf, "greylist.generic_name_words");
	if (!w) {
		for (size_t i = 0; i < sizeof default_generic_words / sizeof *default_generic_words; i++)
			if (!add_word(c, default_generic_words[i]))
				return cfg_fail(ld, NULL, "out of memory");
		return true;
	}
	if (config_setting_length(w) > GENERIC_WORDS_MAX)
		return cfg_fail(ld, w, "greylist.generic_name_words: at most %d words",
			    GENERIC_WORDS_MAX);
	for (int i = 0; i < config_setting_length(w); i++) {
		const config_setting_t *e = config_setting_get_elem(w, (unsigned)i);
		const char *v = config_setting_get_string(e);
		/* a word is compared with a label or a run of letters in one */
		size_t n = strlen(v);
		if (n == 0 || n > HOSTNAME_LABEL_MAX || strspn(v, "abcdefghijklmnopqrstuvwxyz"
						 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != n)
			return cfg_fail(ld, e, "greylist.generic_name_words: '%s' is not a word of a "
				    "host name (letters, digits, '-', '_'; 1 to 63)", v);
		if (!add_word(c, v))
			return cfg_fail(ld, NULL, "out of memory");
	}
	return true;
}

bool cfg_load_greylist(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	if (!load_pool_keys(ld, cf, c))
		return false;
	bool on;
	cfg_get_bool(cf, "greylist.normalize_sender", true, &on);
	struct sender_norm_opts *n = &c->greylist.norm;
	cfg_get_bool(cf, "greylist.normalize.lower", on, &n->lower);
	cfg_get_bool(cf, "greylist.normalize.batv", on, &n->batv);
	cfg_get_bool(cf, "greylist.normalize.srs", on, &n->srs);
	cfg_get_bool(cf, "greylist.normalize.extension", on, &n->ext);
	cfg_get_bool(cf, "greylist.normalize.digits", on, &n->digits);
	cfg_get_bool(cf, "greylist.normalize.hex", on, &n->hex);
	if (c->greylist.retry_window <= c->greylist.delay)
		return cfg_fail(ld, config_lookup(cf, "greylist.retry_window"),
			    "greylist.retry_window must be longer than greylist.delay");
	const char *m = c->greylist.message;
	const char *pct = strchr(m, '%');
	if (strlen(m) > 200 || (pct && (pct[1] != 's' || strchr(pct + 1, '%'))))
		return cfg_fail(ld, config_lookup(cf, "greylist.message"),
			    "greylist.message: at most 200 bytes and one %%s (the seconds left)");
	for (; *m; m++)
		if ((unsigned char)*m < ' ')
			return cfg_fail(ld, config_lookup(cf, "greylist.message"),
				    "greylist.message must not contain control characters");
	return true;
}

bool cfg_load_dns(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	/* c-ares takes the servers as one list; each is checked here so that a
	 * typo is refused with its line instead of at the first lookup. */
	const config_setting_t *s = config_lookup(cf, "dns.servers");
	char csv[1024] = "";
	size_t used = 0;
	for (int i = 0; s && i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v = config_setting_get_string(e);
		struct sockaddr_storage ss;
		socklen_t len;
		struct ipaddr a;
		if (!hostport_parse(v, &ss, &len) && !ipaddr_parse(v, &a))
			return cfg_fail(ld, e, "dns.servers: '%s' is not ADDRESS or ADDRESS:PORT", v);
		int n = snprintf(csv + used, sizeof csv - used, "%s%s", used ? "," : "", v);
		if (n < 0 || (size_t)n >= sizeof csv - used)
			return cfg_fail(ld, e, "dns.servers: too many servers");
		used += (size_t)n;
	}
	c->dns.servers = cfg_xstrdup(csv);
	/* "This host" for permit_mx_backup: my_addresses plus every concrete
	 * listen address (a wildcard says nothing about our MX names). */
	for (size_t i = 0; i < c->nlisten; i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		struct cidr host = { .prefix = 0 };
		if (!hostport_parse(c->listen[i], &ss, &len) ||
		    !ipaddr_from_sockaddr((struct sockaddr *)&ss, &host.net))
			continue;
		static const uint8_t zero[16];
		if (memcmp(host.net.b, zero, host.net.family == AF_INET ? 4 : 16) == 0)
			continue;
		host.prefix = host.net.family == AF_INET ? 32 : 128;
		if (netlist_add(&c->my_addresses, &host) < 0)
			return cfg_fail(ld, NULL, "out of memory");
	}
	return true;
}

/* What needs the list files' entries, once the last one is in. */
bool cfg_load_after_lists(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	if (c->permit_mx_backup && c->permit_mx_backup_networks.n == 0) {
		struct logline l;
		ll_begin(&l, LOG_LVL_WARNING, "config");
		ll_str(&l, "setting", "permit_mx_backup");
		ll_str(&l, "reason", "without permit_mx_backup_networks anybody can make this host "
				     "relay for a domain by pointing a low-preference MX record at it");
		ll_emit(&l);
	}
	/* The handover watches the relay domains unless told otherwise. */
	if (!config_lookup(cf, "handover.domains"))
		for (size_t i = 0; i < c->relay_domains.names.n; i++)
			if (!domainlist_add(&c->handover.domains, c->relay_domains.names.v[i]))
				return cfg_fail(ld, NULL, "out of memory");
	return true;
}

/* The certificate and key are read here, so that -t and a reload refuse a
 * file that names a missing or mismatched pair, with its line. */
bool cfg_load_tls(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	const config_setting_t *cert = config_lookup(cf, "tls.cert");
	const config_setting_t *key = config_lookup(cf, "tls.key");
	if (!cert && !key)
		return true;
	if (!cert || !key)
		return cfg_fail(ld, cert ? cert : key, "tls needs both cert and key");
	/* OpenSSL opens them blocking: a FIFO would hang the load */
	const config_setting_t *both[] = { cert, key };
	for (size_t i = 0; i < 2; i++) {
		struct stat st;
		const char *f = config_setting_get_string(both[i]);
		if (stat(f, &st) == 0 && !S_ISREG(st.st_mode))
			return cfg_fail(ld, both[i], "%s '%s': not a regular file",
				    i == 0 ? "tls.cert" : "tls.key", f);
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return cfg_fail(ld, cert, "cannot create a TLS context");
	c->tls_ctx = ctx;
	/* RFC 8996: nothing older than TLS 1.2 */
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* An SMTP session is idle most of its life: its ~34 KiB of record
	 * buffers are freed while empty instead of kept for the next record. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	char why[256];
	if (SSL_CTX_use_certificate_chain_file(ctx, config_setting_get_string(cert)) != 1) {
		ERR_error_string_n(ERR_get_error(), why, sizeof why);
		return cfg_fail(ld, cert, "tls.cert '%s': %s", config_setting_get_string(cert), why);
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, config_setting_get_string(key), SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ERR_error_string_n(ERR_get_error(), why, sizeof why);
		return cfg_fail(ld, key, "tls.key '%s': %s", config_setting_get_string(key), why);
	}
	return true;
}

/* One of CHOICES (NULL-ended) at PATH, DEF when absent: its index, or -1
 * (reported) when the file names something else. */
static int choice(struct loader *ld, const config_t *cf, const char *path,
		  const char *const *choices, const char *must)
{
	const char *v = choices[0];
	config_lookup_string(cf, path, &v);
	for (int i = 0; choices[i]; i++)
		if (strcmp(v, choices[i]) == 0)
			return i;
	cfg_fail(ld, config_lookup(cf, path), "%s must be %s", path, must);
	return -1;
}

#define SCORING_SITES_MAX 32

/* greylist.mode and the scoring group: the DNSBL sites in postscreen's
 * syntax, thresholds out of order warned of, the suspicious delay inside the retry
 * window (a longer one could never be waited out). */
bool cfg_load_scoring(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	static const char *const modes[] = { "enforce", "shadow", NULL };
	static const char *const actions[] = { "reject", "tempfail", NULL };
	int mode = choice(ld, cf, "greylist.mode", modes, "\"enforce\" or \"shadow\"");
	if (mode < 0)
		return false;
	c->greylist.shadow = mode == 1;
	c->scoring.enabled = config_lookup(cf, "scoring") != NULL;
	int action = choice(ld, cf, "scoring.hostile.action", actions, "\"reject\" or \"tempfail\"");
	if (action < 0)
		return false;
	c->scoring.hostile_tempfail = action == 1;
	const config_setting_t *s = config_lookup(cf, "scoring.dnsbl");
	int n = s ? config_setting_length(s) : 0;
	if (n > SCORING_SITES_MAX)
		return cfg_fail(ld, s, "scoring.dnsbl: at most %d sites", SCORING_SITES_MAX);
	if (n && !(c->scoring.sites = calloc((size_t)n, sizeof *c->scoring.sites)))
		return cfg_fail(ld, s, "out of memory");
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v = config_setting_get_string(e);
		if (!dnsbl_site_parse(v, &c->scoring.sites[c->scoring.nsites]))
			return cfg_fail(ld, e, "scoring.dnsbl: '%s' is not site=filter*weight "
					   "(e.g. \"zen.example=127.0.0.[2..11]*3\")", v);
		c->scoring.nsites++;
	}
	const struct score_classes *t = &c->scoring.classes;
	if (!(t->trusted < t->suspicious && t->suspicious < t->hostile)) {
		struct logline l;
		ll_begin(&l, LOG_LVL_WARNING, "config");
		ll_str(&l, "setting", "scoring.classes");
		ll_str(&l, "reason", "not trusted < suspicious < hostile; a score is classed hostile "
				     "first, then suspicious, then trusted");
		ll_emit(&l);
	}
	if (c->scoring.enabled && c->scoring.suspicious_delay >= c->greylist.retry_window)
		return cfg_fail(ld, config_lookup(cf, "scoring.suspicious.delay"),
			    "scoring.suspicious.delay must be shorter than greylist.retry_window");
	return true;
}
