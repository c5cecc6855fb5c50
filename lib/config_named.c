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
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

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

bool cfg_load_greylist(struct loader *ld, const config_t *cf, struct gg_config *c)
{
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
