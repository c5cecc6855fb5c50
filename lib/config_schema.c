/*
 * Loading walks the table: every setting in the file must be known (a
 * typo such as "mynetwork" would otherwise silently leave a host open), of
 * the right type and within range; then each row with a field takes the
 * file's value or its default.
 *
 * The rows are in load order: lists are read in table order, so the first
 * broken list a file holds is the one reported, as before the table.
 */
#include "config_priv.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define F(field) offsetof(struct gg_config, field)
/* the optional last argument: RESTART, or for a NAMED row RESTART_IF(same) */
#define GROUP(p)                  { .path = p, .kind = CK_GROUP, .off = CFG_NOWHERE }
#define STR(p, field, d, ...)     { .path = p, .kind = CK_STR, .off = F(field), .defp = d, __VA_ARGS__ }
#define INT(p, field, d, lo, hi, ...) \
	{ .path = p, .kind = CK_INT, .min = lo, .max = hi, .off = F(field), .def = d, __VA_ARGS__ }
#define BOOL(p, field, d, ...)    { .path = p, .kind = CK_BOOL, .off = F(field), .def = d, __VA_ARGS__ }
#define LIST(p, k, field, d)      { .path = p, .kind = k, .off = F(field), .defp = d }
/* read by its list's row: LIST_file */
#define LIST_FILE(p)              { .path = p, .kind = CK_STR, .off = CFG_NOWHERE }
/* read by a named function in config_named.c */
#define NAMED(p, k, ...)          { .path = p, .kind = k, .off = CFG_NOWHERE, __VA_ARGS__ }
#define RESTART                        .restart = true
#define RESTART_IF(fn)                 .restart = true, .same = fn

static bool strv_equal(char *const *a, size_t na, char *const *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

static bool same_listen(const struct gg_config *a, const struct gg_config *b)
{
	return strv_equal(a->listen, a->nlisten, b->listen, b->nlisten);
}

static bool same_failure(const struct gg_config *a, const struct gg_config *b)
{
	return a->store.tempfail == b->store.tempfail;
}

static bool same_sentinels(const struct gg_config *a, const struct gg_config *b)
{
	return strv_equal(a->store.redis.sentinels, a->store.redis.nsentinels,
			  b->store.redis.sentinels, b->store.redis.nsentinels);
}

static bool same_cluster(const struct gg_config *a, const struct gg_config *b)
{
	return strv_equal(a->store.redis.cluster, a->store.redis.ncluster, b->store.redis.cluster,
			  b->store.redis.ncluster);
}

static const char *const default_mynetworks[] = { "127.0.0.0/8", "::1/128", NULL };

const struct cfg_setting cfg_settings[] = {
	STR("myhostname", myhostname, NULL),               /* gethostname() */
	STR("banner", banner, NULL),                       /* "MYHOSTNAME ESMTP" */
	NAMED("listen", CK_STRLIST, RESTART_IF(same_listen)),
	GROUP("backend"),
	STR("backend.address", backend.address, "127.0.0.1:10025"),
	BOOL("backend.xclient", backend.xclient, true),
	INT("backend.connect_timeout", backend.connect_timeout, 5, 1, 300),
	INT("backend.command_timeout", backend.command_timeout, 300, 1, 3600),
	INT("backend.idle_time", backend.idle_time, 2, 0, 60),
	INT("backend.idle_connections", backend.idle_connections, 20, 0, 10000),
	BOOL("backend.refuse_when_down", backend.refuse_when_down, true),
	LIST("mynetworks", CK_NETS, mynetworks, default_mynetworks),
	LIST("local_domains", CK_DOMAINS, local_domains, NULL),
	LIST("relay_domains", CK_DOMAINS, relay_domains, NULL),
	LIST_FILE("relay_domains_file"),
	GROUP("whitelist"),
	LIST("whitelist.clients", CK_NETS, whitelist.clients, NULL),
	LIST_FILE("whitelist.clients_file"),
	LIST("whitelist.senders", CK_ADDRS, whitelist.senders, NULL),
	LIST_FILE("whitelist.senders_file"),
	LIST("whitelist.recipients", CK_ADDRS, whitelist.recipients, NULL),
	LIST_FILE("whitelist.recipients_file"),
	BOOL("helo_required", helo_required, true),
	BOOL("disable_vrfy_command", disable_vrfy_command, true),
	GROUP("limits"),
	INT("limits.max_connections", limits.max_connections, 10000, 1, 1000000),
	INT("limits.max_per_client", limits.max_per_client, 50, 1, 1000000),
	INT("limits.max_recipients", limits.max_recipients, 100, 1, 100000),
	INT("limits.max_line", limits.max_line, 2048, 512, 65536),
	INT("limits.command_timeout", limits.command_timeout, 300, 1, 86400),
	INT("limits.data_timeout", limits.data_timeout, 600, 1, 86400),
	INT("limits.max_errors", limits.max_errors, 20, 1, 100000),
	INT("shutdown_grace", shutdown_grace, 30, 0, 3600),
	{ .path = "workers", .kind = CK_INT_OR_AUTO, .min = 1, .max = 64, .off = F(workers), .def = 1,
	  RESTART },
	GROUP("log"),
	STR("log.target", log.target, "stderr"),
	STR("log.level", log.level, "info"),
	LIST("my_addresses", CK_NETS, my_addresses, NULL),
	GROUP("store"),
	STR("store.type", store.type, "memory", RESTART),
	STR("store.file", store.file, "/var/lib/greygate/greylist.db", RESTART),
	NAMED("store.failure", CK_STR, RESTART_IF(same_failure)),                    /* "accept": store.tempfail */
	INT("store.max_entries", store.max_entries, 1000000, 1000, 100000000, RESTART),
	INT("store.save_interval", store.save_interval, 300, 1, 86400, RESTART),
	GROUP("store.redis"),
	STR("store.redis.host", store.redis.host, "127.0.0.1", RESTART),
	INT("store.redis.port", store.redis.port, 6379, 1, 65535, RESTART),
	STR("store.redis.password", store.redis.password, "", RESTART),
	INT("store.redis.db", store.redis.db, 0, 0, 1000, RESTART),
	INT("store.redis.timeout_ms", store.redis.timeout_ms, 250, 1, 60000, RESTART),
	INT("store.redis.connect_timeout_ms", store.redis.connect_timeout_ms, 1000, 1, 60000, RESTART),
	STR("store.redis.prefix", store.redis.prefix, "gg:", RESTART),
	NAMED("store.redis.sentinels", CK_STRLIST, RESTART_IF(same_sentinels)),
	STR("store.redis.master_name", store.redis.master_name, "", RESTART),
	NAMED("store.redis.cluster", CK_STRLIST, RESTART_IF(same_cluster)),
	GROUP("greylist"),
	BOOL("greylist.enabled", greylist.enabled, true),
	INT("greylist.delay", greylist.delay, 300, 0, 86400),
	INT("greylist.retry_window", greylist.retry_window, 172800, 1, 31 * 86400),
	INT("greylist.pass_lifetime", greylist.pass_lifetime, 3110400, 1, 366 * 86400),
	INT("greylist.awl_threshold", greylist.awl_threshold, 5, 0, 1000000),
	INT("greylist.ipv4_prefix", greylist.ipv4_prefix, 24, 8, 32),
	INT("greylist.ipv6_prefix", greylist.ipv6_prefix, 64, 16, 128),
	NAMED("greylist.normalize_sender", CK_BOOL),       /* the default of the six below */
	GROUP("greylist.normalize"),
	NAMED("greylist.normalize.lower", CK_BOOL),
	NAMED("greylist.normalize.batv", CK_BOOL),
	NAMED("greylist.normalize.srs", CK_BOOL),
	NAMED("greylist.normalize.extension", CK_BOOL),
	NAMED("greylist.normalize.digits", CK_BOOL),
	NAMED("greylist.normalize.hex", CK_BOOL),
	INT("greylist.max_new_per_client", greylist.max_new_per_client, 100, 1, 10000000),
	STR("greylist.message", greylist.message, "Greylisted, retry in %s seconds"),
	NAMED("greylist.pool_keys", CK_STRLIST),           /* default [ "spf", "ptr" ] */
	INT("greylist.spf_max_prefix4", greylist.spf_max_prefix4, 16, 0, 32),
	INT("greylist.spf_max_prefix6", greylist.spf_max_prefix6, 32, 0, 128),
	NAMED("greylist.generic_name_words", CK_STRLIST),  /* default: default_generic_words */
	STR("control_socket", control_socket, "/run/greygate/control.sock", RESTART),
	GROUP("dns"),
	NAMED("dns.servers", CK_STRLIST),                  /* dns.servers as c-ares CSV */
	INT("dns.timeout_ms", dns.timeout_ms, 2000, 10, 60000),
	INT("dns.tries", dns.tries, 2, 1, 10),
	INT("dns.cache_size", dns.cache_size, 10000, 0, 10000000),
	BOOL("permit_mx_backup", permit_mx_backup, false),
	LIST("permit_mx_backup_networks", CK_NETS, permit_mx_backup_networks, NULL),
	BOOL("reject_non_fqdn_sender", reject_non_fqdn_sender, true),
	BOOL("reject_unknown_sender_domain", reject_unknown_sender_domain, true),
	BOOL("reject_non_fqdn_recipient", reject_non_fqdn_recipient, true),
	LIST("etrn_networks", CK_NETS, etrn_networks, NULL),
	LIST("proxy_protocol_networks", CK_NETS, proxy_protocol_networks, NULL),
	LIST("whitelist.client_names", CK_DOMAINS, client_names, NULL),
	LIST_FILE("whitelist.client_names_file"),
	GROUP("handover"),
	LIST("handover.domains", CK_DOMAINS, handover.domains, NULL), /* default: relay_domains */
	INT("handover.probe_interval", handover.probe_interval, 0, 0, 86400),
	INT("handover.probe_timeout", handover.probe_timeout, 10, 1, 300),
	INT("handover.probe_port", handover.probe_port, 25, 1, 65535),
	GROUP("admin"),
	STR("admin.listen", admin_listen, "127.0.0.1:9925", RESTART),
	STR("user", user, "", RESTART),
	STR("group", group, "", RESTART),
	BOOL("run_as_root", run_as_root, false, RESTART),
	STR("pid_file", pid_file, "", RESTART),
	GROUP("tls"),
	NAMED("tls.cert", CK_STR),                         /* both: tls_ctx */
	NAMED("tls.key", CK_STR),
	/* a hand-shake under way holds ~50 KiB (README): 100 of them, 5 MB */
	INT("tls.max_handshakes", tls_max_handshakes, 100, 1, 100000),
	INT("tls.handshake_timeout", tls_handshake_timeout, 30, 1, 3600),
	GROUP("policy"),
	STR("policy.listen", policy.listen, "", RESTART),
	BOOL("policy.prepend_header", policy.prepend_header, true),
	NAMED("greylist.mode", CK_STR),                    /* greylist.shadow */
	GROUP("scoring"),                                  /* present: scoring.enabled */
	NAMED("scoring.dnsbl", CK_STRLIST),                /* scoring.sites */
	GROUP("scoring.weights"),
	INT("scoring.weights.no_ptr", scoring.weights[SIG_NO_PTR], 2, -1000, 1000),
	INT("scoring.weights.unconfirmed_ptr", scoring.weights[SIG_UNCONFIRMED_PTR], 1, -1000, 1000),
	INT("scoring.weights.bad_helo", scoring.weights[SIG_BAD_HELO], 1, -1000, 1000),
	INT("scoring.weights.generic_ptr", scoring.weights[SIG_GENERIC_PTR], 2, -1000, 1000),
	INT("scoring.weights.spf_fail", scoring.weights[SIG_SPF_FAIL], 3, -1000, 1000),
	INT("scoring.weights.spf_softfail", scoring.weights[SIG_SPF_SOFTFAIL], 1, -1000, 1000),
	INT("scoring.weights.pregreet", scoring.weights[SIG_PREGREET], 4, -1000, 1000),
	INT("scoring.weights.backup_first", scoring.weights[SIG_BACKUP_FIRST], 3, -1000, 1000),
	GROUP("scoring.classes"),
	INT("scoring.classes.trusted", scoring.classes.trusted, -3, -100000, 100000),
	INT("scoring.classes.suspicious", scoring.classes.suspicious, 3, -100000, 100000),
	INT("scoring.classes.hostile", scoring.classes.hostile, 8, -100000, 100000),
	GROUP("scoring.suspicious"),
	INT("scoring.suspicious.delay", scoring.suspicious_delay, 900, 0, 86400),
	GROUP("scoring.hostile"),
	NAMED("scoring.hostile.action", CK_STR),           /* scoring.hostile_tempfail */
	INT("greet_wait", greet_wait, 0, 0, 60),
	LIST("spamtraps", CK_ADDRS, spamtraps, NULL),
	LIST_FILE("spamtraps_file"),
	INT("trap_lifetime", trap_lifetime, 86400, 1, 366 * 86400),
};

const size_t cfg_nsettings = sizeof cfg_settings / sizeof cfg_settings[0];

const struct cfg_setting *cfg_setting_find(const char *path)
{
	for (size_t i = 0; i < cfg_nsettings; i++)
		if (strcmp(cfg_settings[i].path, path) == 0)
			return &cfg_settings[i];
	return NULL;
}

const char *gg_config_restart_setting(const struct gg_config *old, const struct gg_config *new)
{
	for (size_t i = 0; i < cfg_nsettings; i++) {
		const struct cfg_setting *r = &cfg_settings[i];
		if (!r->restart)
			continue;
		bool same = true;
		if (r->same) {
			same = r->same(old, new);
		} else {
			const char *a = (const char *)old + r->off, *b = (const char *)new + r->off;
			if (r->kind == CK_STR)
				same = strcmp(*(char *const *)a, *(char *const *)b) == 0;
			else if (r->kind == CK_BOOL)
				same = *(const bool *)a == *(const bool *)b;
			else
				same = *(const int *)a == *(const int *)b;
		}
		if (!same)
			return r->path;
	}
	return NULL;
}

bool cfg_kind_is_list(enum cfg_kind k)
{
	return k == CK_STRLIST || k == CK_NETS || k == CK_DOMAINS || k == CK_ADDRS;
}

void cfg_settings_free(struct gg_config *c)
{
	for (size_t i = 0; i < cfg_nsettings; i++) {
		const struct cfg_setting *r = &cfg_settings[i];
		if (r->off == CFG_NOWHERE)
			continue;
		void *f = cfg_field(c, r);
		switch (r->kind) {
		case CK_STR:
			free(*(char **)f);
			break;
		case CK_NETS:
			netlist_free(f);
			break;
		case CK_DOMAINS:
			domainlist_free(f);
			break;
		case CK_ADDRS:
			addrlist_free(f);
			break;
		default:
			break;
		}
	}
}

static bool check_kind(struct loader *ld, const config_setting_t *s,
		       const struct cfg_setting *k, const char *path)
{
	int t = config_setting_type(s);
	switch (k->kind) {
	case CK_LATER:
		return true;
	case CK_GROUP:
		return t == CONFIG_TYPE_GROUP || cfg_fail(ld, s, "%s must be a group { ... }", path);
	case CK_STR:
		return t == CONFIG_TYPE_STRING || cfg_fail(ld, s, "%s must be a string", path);
	case CK_BOOL:
		return t == CONFIG_TYPE_BOOL || cfg_fail(ld, s, "%s must be true or false", path);
	case CK_INT: {
		if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
			return cfg_fail(ld, s, "%s must be an integer", path);
		long long v = config_setting_get_int64(s);
		if (v < k->min || v > k->max)
			return cfg_fail(ld, s, "%s = %lld is out of range %ld..%ld", path, v,
				    k->min, k->max);
		return true;
	}
	case CK_INT_OR_AUTO:
		if (t == CONFIG_TYPE_STRING && strcmp(config_setting_get_string(s), "auto") == 0)
			return true;
		if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
			return cfg_fail(ld, s, "%s must be a number or \"auto\"", path);
		if (config_setting_get_int64(s) < k->min || config_setting_get_int64(s) > k->max)
			return cfg_fail(ld, s, "%s = %lld is out of range %ld..%ld", path,
				    config_setting_get_int64(s), k->min, k->max);
		return true;
	case CK_STRLIST:
	case CK_NETS:
	case CK_DOMAINS:
	case CK_ADDRS:
		if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
			return cfg_fail(ld, s, "%s must be a list of strings [ \"...\" ]", path);
		for (int i = 0; i < config_setting_length(s); i++) {
			const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
			if (config_setting_type(e) != CONFIG_TYPE_STRING)
				return cfg_fail(ld, e, "%s must be a list of strings", path);
		}
		return true;
	}
	return false;
}

/* Recursively checks that every setting below S is in the schema. */
bool cfg_check_schema(struct loader *ld, const config_setting_t *s, const char *prefix)
{
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
		const char *name = config_setting_name(m);
		char path[128];
		snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", name ? name : "?");
		const struct cfg_setting *k = cfg_setting_find(path);
		if (!k)
			return cfg_fail(ld, m, "unknown setting '%s'", path);
		if (!check_kind(ld, m, k, path))
			return false;
		if (k->kind == CK_LATER) {
			struct logline l;
			ll_begin(&l, LOG_LVL_WARNING, "config");
			ll_str(&l, "setting", path);
			ll_str(&l, "reason", "not implemented in this version; ignored");
			ll_emit(&l);
		}
		if (k->kind == CK_GROUP && !cfg_check_schema(ld, m, path))
			return false;
	}
	return true;
}

void cfg_get_bool(const config_t *cf, const char *path, bool def, bool *out)
{
	int v;
	*out = config_lookup_bool(cf, path, &v) == CONFIG_TRUE ? v != 0 : def;
}

/* "auto": one per core, as many as the row's range allows */
static int per_core(const struct cfg_setting *r)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < r->min ? (int)r->min : n > r->max ? (int)r->max : (int)n;
}

/* Every scalar that has a field: the file's value (checked against its
 * row by check_schema) or the row's default. Cannot fail. */
void cfg_load_scalars(const config_t *cf, struct gg_config *c)
{
	for (size_t i = 0; i < cfg_nsettings; i++) {
		const struct cfg_setting *r = &cfg_settings[i];
		if (r->off == CFG_NOWHERE)
			continue;
		void *f = cfg_field(c, r);
		const char *sv;
		int iv;
		switch (r->kind) {
		case CK_STR:
			if (config_lookup_string(cf, r->path, &sv) == CONFIG_TRUE)
				*(char **)f = cfg_xstrdup(sv);
			else if (r->defp)
				*(char **)f = cfg_xstrdup(r->defp);
			break;
		case CK_INT_OR_AUTO:
			if (config_lookup_string(cf, r->path, &sv) == CONFIG_TRUE) {
				*(int *)f = per_core(r);
				break;
			}
			/* fall through */
		case CK_INT:
			*(int *)f = config_lookup_int(cf, r->path, &iv) == CONFIG_TRUE ? iv : (int)r->def;
			break;
		case CK_BOOL:
			cfg_get_bool(cf, r->path, r->def != 0, f);
			break;
		default:
			break;
		}
	}
}

/* Lower-cases and checks a domain, drops a trailing dot. A leading dot
 * (".example": every subdomain) is kept. */
bool cfg_domain_normalise(const char *in, char *out, size_t outlen)
{
	size_t n = strlen(in);
	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n == 0 || n > DOMAIN_MAX || n >= outlen)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		if (!isalnum(c) && c != '-' && c != '.' && c != '_')
			return false;
		out[i] = (char)tolower(c);
	}
	out[n] = 0;
	return strstr(out, "..") == NULL;
}

static bool domain_entry(struct loader *ld, const config_setting_t *s, const char *where,
			 const char *entry, void *dst)
{
	char d[DOMAIN_MAX + 2];
	if (!cfg_domain_normalise(entry, d, sizeof d))
		return cfg_fail(ld, s, "%s: '%s' is not a domain name", where, entry);
	if (!domainlist_add(dst, d))
		return cfg_fail(ld, s, "out of memory");
	return true;
}

static bool network_entry(struct loader *ld, const config_setting_t *s, const char *where,
			  const char *entry, void *dst)
{
	struct cidr c;
	bool host_bits;
	if (!cidr_parse(entry, &c, &host_bits))
		return cfg_fail(ld, s, "%s: '%s' is not an address or network", where, entry);
	if (host_bits) {
		struct logline l;
		ll_begin(&l, LOG_LVL_WARNING, "config");
		ll_str(&l, "setting", where);
		ll_str(&l, "value", entry);
		ll_str(&l, "reason", "host bits set beyond the prefix; they are ignored");
		ll_emit(&l);
	}
	if (netlist_add(dst, &c) < 0)
		return cfg_fail(ld, s, "out of memory");
	return true;
}

static bool address_entry(struct loader *ld, const config_setting_t *s, const char *where,
			  const char *entry, void *dst)
{
	if (!addrlist_valid(entry))
		return cfg_fail(ld, s, "%s: '%s' is not user@domain, user@, @domain, .domain or <>",
			    where, entry);
	if (addrlist_add(dst, entry) < 0)
		return cfg_fail(ld, s, "out of memory");
	return true;
}


/* A list setting PATH (or DEFAULTS when it is absent) and its companion
 * file setting PATH_file, each entry through FN; the file is queued for
 * the steps. */
static bool load_list(struct loader *ld, const config_t *cf, const char *path,
		      const char *const *defaults, entry_fn fn, void *dst)
{
	const config_setting_t *s = config_lookup(cf, path);
	if (s) {
		for (int i = 0; i < config_setting_length(s); i++) {
			const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
			if (!fn(ld, e, path, config_setting_get_string(e), dst))
				return false;
		}
	} else {
		for (size_t i = 0; defaults && defaults[i]; i++)
			if (!fn(ld, NULL, path, defaults[i], dst))
				return false;
	}
	char file_path[128];
	snprintf(file_path, sizeof file_path, "%s_file", path);
	const config_setting_t *f = config_lookup(cf, file_path);
	return !f || cfg_queue_list_file(ld, f, file_path, fn, dst);
}

/* Every list that has a field, in table order, with its file queued. */
bool cfg_load_lists(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	for (size_t i = 0; i < cfg_nsettings; i++) {
		const struct cfg_setting *r = &cfg_settings[i];
		entry_fn fn = r->kind == CK_NETS ? network_entry :
			      r->kind == CK_DOMAINS ? domain_entry :
			      r->kind == CK_ADDRS ? address_entry : NULL;
		if (fn && r->off != CFG_NOWHERE &&
		    !load_list(ld, cf, r->path, r->defp, fn, cfg_field(c, r)))
			return false;
	}
	return true;
}
