/*
 * Loading walks a schema table: every setting in the file must be known
 * (a typo such as "mynetwork" would otherwise silently leave a host open),
 * of the right type and within range; the first violation is reported with
 * the line libconfig recorded for that setting.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostport.h"
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "log.h"

#define CONFIG_FILE_MAX (1 << 20)
#define LIST_FILE_MAX (16 << 20)
#define DOMAIN_MAX 253

enum kind { K_GROUP, K_STR, K_INT, K_BOOL, K_STRLIST, K_INT_OR_AUTO, K_LATER };

/* K_LATER: settings of SPEC section 9 that a later version implements; they
 * are accepted (with a warning) so that one file serves every version. */
static const struct key {
	const char *path;
	enum kind kind;
	long min, max;
} schema[] = {
	{ "myhostname", K_STR, 0, 0 },
	{ "banner", K_STR, 0, 0 },
	{ "listen", K_STRLIST, 0, 0 },
	{ "backend", K_GROUP, 0, 0 },
	{ "backend.address", K_STR, 0, 0 },
	{ "backend.xclient", K_BOOL, 0, 0 },
	{ "backend.connect_timeout", K_INT, 1, 300 },
	{ "backend.command_timeout", K_INT, 1, 3600 },
	{ "backend.idle_time", K_INT, 0, 60 },
	{ "backend.idle_connections", K_INT, 0, 10000 },
	{ "backend.refuse_when_down", K_BOOL, 0, 0 },
	{ "mynetworks", K_STRLIST, 0, 0 },
	{ "local_domains", K_STRLIST, 0, 0 },
	{ "relay_domains", K_STRLIST, 0, 0 },
	{ "relay_domains_file", K_STR, 0, 0 },
	{ "helo_required", K_BOOL, 0, 0 },
	{ "disable_vrfy_command", K_BOOL, 0, 0 },
	{ "limits", K_GROUP, 0, 0 },
	{ "limits.max_connections", K_INT, 1, 1000000 },
	{ "limits.max_per_client", K_INT, 1, 1000000 },
	{ "limits.max_recipients", K_INT, 1, 100000 },
	{ "limits.max_line", K_INT, 512, 65536 },
	{ "limits.command_timeout", K_INT, 1, 86400 },
	{ "limits.data_timeout", K_INT, 1, 86400 },
	{ "limits.max_errors", K_INT, 1, 100000 },
	{ "shutdown_grace", K_INT, 0, 3600 },
	{ "workers", K_INT_OR_AUTO, 1, 64 },
	{ "log", K_GROUP, 0, 0 },
	{ "log.target", K_STR, 0, 0 },
	{ "log.level", K_STR, 0, 0 },
	{ "my_addresses", K_STRLIST, 0, 0 },
	{ "store", K_GROUP, 0, 0 },
	{ "store.type", K_STR, 0, 0 },
	{ "store.file", K_STR, 0, 0 },
	{ "store.failure", K_STR, 0, 0 },
	{ "store.max_entries", K_INT, 1000, 100000000 },
	{ "store.save_interval", K_INT, 1, 86400 },
	{ "store.redis", K_GROUP, 0, 0 },
	{ "store.redis.host", K_STR, 0, 0 },
	{ "store.redis.port", K_INT, 1, 65535 },
	{ "store.redis.password", K_STR, 0, 0 },
	{ "store.redis.db", K_INT, 0, 1000 },
	{ "store.redis.timeout_ms", K_INT, 1, 60000 },
	{ "store.redis.connect_timeout_ms", K_INT, 1, 60000 },
	{ "store.redis.prefix", K_STR, 0, 0 },
	{ "store.redis.sentinels", K_STRLIST, 0, 0 },
	{ "store.redis.master_name", K_STR, 0, 0 },
	{ "greylist", K_GROUP, 0, 0 },
	{ "greylist.enabled", K_BOOL, 0, 0 },
	{ "greylist.delay", K_INT, 0, 86400 },
	{ "greylist.retry_window", K_INT, 1, 31 * 86400 },
	{ "greylist.pass_lifetime", K_INT, 1, 366 * 86400 },
	{ "greylist.awl_threshold", K_INT, 0, 1000000 },
	{ "greylist.ipv4_prefix", K_INT, 8, 32 },
	{ "greylist.ipv6_prefix", K_INT, 16, 128 },
	{ "greylist.normalize_sender", K_BOOL, 0, 0 },
	{ "greylist.normalize", K_GROUP, 0, 0 },
	{ "greylist.normalize.lower", K_BOOL, 0, 0 },
	{ "greylist.normalize.batv", K_BOOL, 0, 0 },
	{ "greylist.normalize.srs", K_BOOL, 0, 0 },
	{ "greylist.normalize.extension", K_BOOL, 0, 0 },
	{ "greylist.normalize.digits", K_BOOL, 0, 0 },
	{ "greylist.normalize.hex", K_BOOL, 0, 0 },
	{ "greylist.max_new_per_client", K_INT, 1, 10000000 },
	{ "greylist.message", K_STR, 0, 0 },
	{ "control_socket", K_STR, 0, 0 },
	{ "dns", K_GROUP, 0, 0 },
	{ "dns.servers", K_STRLIST, 0, 0 },
	{ "dns.timeout_ms", K_INT, 10, 60000 },
	{ "dns.tries", K_INT, 1, 10 },
	{ "dns.cache_size", K_INT, 0, 10000000 },
	{ "permit_mx_backup", K_BOOL, 0, 0 },
	{ "permit_mx_backup_networks", K_STRLIST, 0, 0 },
	{ "reject_non_fqdn_sender", K_BOOL, 0, 0 },
	{ "reject_unknown_sender_domain", K_BOOL, 0, 0 },
	{ "reject_non_fqdn_recipient", K_BOOL, 0, 0 },
	{ "etrn_networks", K_STRLIST, 0, 0 },
	{ "proxy_protocol_networks", K_STRLIST, 0, 0 },
	{ "handover", K_GROUP, 0, 0 },
	{ "handover.domains", K_STRLIST, 0, 0 },
	{ "handover.probe_interval", K_INT, 0, 86400 },
	{ "handover.probe_timeout", K_INT, 1, 300 },
	{ "handover.probe_port", K_INT, 1, 65535 },
	{ "whitelist", K_GROUP, 0, 0 },
	{ "whitelist.clients", K_STRLIST, 0, 0 },
	{ "whitelist.clients_file", K_STR, 0, 0 },
	{ "whitelist.senders", K_STRLIST, 0, 0 },
	{ "whitelist.senders_file", K_STR, 0, 0 },
	{ "whitelist.recipients", K_STRLIST, 0, 0 },
	{ "whitelist.recipients_file", K_STR, 0, 0 },
	{ "whitelist.client_names", K_STRLIST, 0, 0 },
	{ "whitelist.client_names_file", K_STR, 0, 0 },
	{ "admin", K_GROUP, 0, 0 },
	{ "admin.listen", K_STR, 0, 0 },
	{ "user", K_STR, 0, 0 },
	{ "group", K_STR, 0, 0 },
	{ "run_as_root", K_BOOL, 0, 0 },
	{ "pid_file", K_STR, 0, 0 },
	{ "tls", K_GROUP, 0, 0 },
	{ "tls.cert", K_STR, 0, 0 },
	{ "tls.key", K_STR, 0, 0 },
	{ "tls.max_handshakes", K_INT, 1, 100000 },
	{ "tls.handshake_timeout", K_INT, 1, 3600 },
};

struct loader {
	const char *file;
	char *err;
	size_t errlen;
	bool failed;
};

static bool fail(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool fail(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
	if (ld->failed)
		return false;
	ld->failed = true;
	int n = snprintf(ld->err, ld->errlen, "%s:%d: ", ld->file,
			 s ? config_setting_source_line(s) : 0);
	if (n < 0 || (size_t)n >= ld->errlen)
		return false;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return false;
}

static const struct key *schema_find(const char *path)
{
	for (size_t i = 0; i < sizeof schema / sizeof schema[0]; i++)
		if (strcmp(schema[i].path, path) == 0)
			return &schema[i];
	return NULL;
}

static bool check_kind(struct loader *ld, const config_setting_t *s,
		       const struct key *k, const char *path)
{
	int t = config_setting_type(s);
	switch (k->kind) {
	case K_LATER:
		return true;
	case K_GROUP:
		return t == CONFIG_TYPE_GROUP || fail(ld, s, "%s must be a group { ... }", path);
	case K_STR:
		return t == CONFIG_TYPE_STRING || fail(ld, s, "%s must be a string", path);
	case K_BOOL:
		return t == CONFIG_TYPE_BOOL || fail(ld, s, "%s must be true or false", path);
	case K_INT: {
		if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
			return fail(ld, s, "%s must be an integer", path);
		long long v = config_setting_get_int64(s);
		if (v < k->min || v > k->max)
			return fail(ld, s, "%s = %lld is out of range %ld..%ld", path, v,
				    k->min, k->max);
		return true;
	}
	case K_INT_OR_AUTO:
		if (t == CONFIG_TYPE_STRING && strcmp(config_setting_get_string(s), "auto") == 0)
			return true;
		if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
			return fail(ld, s, "%s must be a number or \"auto\"", path);
		if (config_setting_get_int64(s) < k->min || config_setting_get_int64(s) > k->max)
			return fail(ld, s, "%s = %lld is out of range %ld..%ld", path,
				    config_setting_get_int64(s), k->min, k->max);
		return true;
	case K_STRLIST:
		if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
			return fail(ld, s, "%s must be a list of strings [ \"...\" ]", path);
		for (int i = 0; i < config_setting_length(s); i++) {
			const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
			if (config_setting_type(e) != CONFIG_TYPE_STRING)
				return fail(ld, e, "%s must be a list of strings", path);
		}
		return true;
	}
	return false;
}

/* Recursively checks that every setting below S is in the schema. */
static bool check_schema(struct loader *ld, const config_setting_t *s, const char *prefix)
{
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
		const char *name = config_setting_name(m);
		char path[128];
		snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", name ? name : "?");
		const struct key *k = schema_find(path);
		if (!k)
			return fail(ld, m, "unknown setting '%s'", path);
		if (!check_kind(ld, m, k, path))
			return false;
		if (k->kind == K_LATER) {
			struct logline l;
			ll_begin(&l, LOG_LVL_WARNING, "config");
			ll_str(&l, "setting", path);
			ll_str(&l, "reason", "not implemented in this version; ignored");
			ll_emit(&l);
		}
		if (k->kind == K_GROUP && !check_schema(ld, m, path))
			return false;
	}
	return true;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d) {
		log_msg(LOG_LVL_ERROR, "fatal", "out of memory loading configuration");
		abort();
	}
	return d;
}

static void get_str(const config_t *cf, const char *path, const char *def, char **out)
{
	const char *v;
	*out = xstrdup(config_lookup_string(cf, path, &v) == CONFIG_TRUE ? v : def);
}

static void get_int(const config_t *cf, const char *path, int def, int *out)
{
	int v;
	*out = config_lookup_int(cf, path, &v) == CONFIG_TRUE ? v : def;
}

static void get_bool(const config_t *cf, const char *path, bool def, bool *out)
{
	int v;
	*out = config_lookup_bool(cf, path, &v) == CONFIG_TRUE ? v != 0 : def;
}

/* Lower-cases and checks a domain, drops a trailing dot. A leading dot
 * (".example": every subdomain) is kept. */
static bool domain_normalise(const char *in, char *out, size_t outlen)
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

static bool domain_add(struct domainlist *l, const char *d)
{
	char **v = realloc(l->v, (l->n + 1) * sizeof *v);
	if (!v)
		return false;
	l->v = v;
	l->v[l->n++] = xstrdup(d);
	return true;
}

/* What one entry of a list means: the same check for an entry written in
 * the file and one in a list file. Returns false after calling fail(). */
typedef bool (*entry_fn)(struct loader *ld, const config_setting_t *s, const char *where,
			 const char *entry, void *dst);

/* One entry a line, '#' starts a comment, blank lines ignored. */
static bool load_list_file(struct loader *ld, const config_setting_t *s, entry_fn fn, void *dst)
{
	const char *file = config_setting_get_string(s);
	FILE *f = fopen(file, "r");
	if (!f)
		return fail(ld, s, "%s '%s': %s", config_setting_name(s), file, strerror(errno));
	char line[512];
	unsigned lineno = 0;
	long total = 0;
	bool ok = true;
	while (ok && fgets(line, sizeof line, f)) {
		lineno++;
		size_t n = strlen(line);
		total += (long)n;
		if (total > LIST_FILE_MAX) {
			ok = fail(ld, s, "%s is larger than %d bytes", file, LIST_FILE_MAX);
			break;
		}
		if (n == sizeof line - 1 && line[n - 1] != '\n') {
			ok = fail(ld, s, "%s:%u: line too long", file, lineno);
			break;
		}
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *p = line;
		while (isspace((unsigned char)*p))
			p++;
		char *end = p + strlen(p);
		while (end > p && isspace((unsigned char)end[-1]))
			*--end = 0;
		if (!*p)
			continue;
		char where[300];
		snprintf(where, sizeof where, "%s:%u", file, lineno);
		ok = fn(ld, s, where, p, dst);
	}
	fclose(f);
	return ok;
}

static bool domain_entry(struct loader *ld, const config_setting_t *s, const char *where,
			 const char *entry, void *dst)
{
	char d[DOMAIN_MAX + 2];
	if (!domain_normalise(entry, d, sizeof d))
		return fail(ld, s, "%s: '%s' is not a domain name", where, entry);
	if (!domain_add(dst, d))
		return fail(ld, s, "out of memory");
	return true;
}

static bool network_entry(struct loader *ld, const config_setting_t *s, const char *where,
			  const char *entry, void *dst)
{
	struct cidr c;
	bool host_bits;
	if (!cidr_parse(entry, &c, &host_bits))
		return fail(ld, s, "%s: '%s' is not an address or network", where, entry);
	if (host_bits) {
		struct logline l;
		ll_begin(&l, LOG_LVL_WARNING, "config");
		ll_str(&l, "setting", where);
		ll_str(&l, "value", entry);
		ll_str(&l, "reason", "host bits set beyond the prefix; they are ignored");
		ll_emit(&l);
	}
	if (netlist_add(dst, &c) < 0)
		return fail(ld, s, "out of memory");
	return true;
}

static bool address_entry(struct loader *ld, const config_setting_t *s, const char *where,
			  const char *entry, void *dst)
{
	if (!addrlist_valid(entry))
		return fail(ld, s, "%s: '%s' is not user@domain, user@, @domain, .domain or <>",
			    where, entry);
	if (addrlist_add(dst, entry) < 0)
		return fail(ld, s, "out of memory");
	return true;
}

/* A list setting PATH (or DEFAULTS when it is absent) and its companion
 * file setting PATH_file, each entry through FN. */
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
	return !f || load_list_file(ld, f, fn, dst);
}

static bool load_listen(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	const config_setting_t *s = config_lookup(cf, "listen");
	if (!s) {
		c->listen[c->nlisten++] = xstrdup("127.0.0.1:2525");
		return true;
	}
	if (config_setting_length(s) == 0)
		return fail(ld, s, "listen: at least one address is needed");
	if (config_setting_length(s) > GG_MAX_LISTEN)
		return fail(ld, s, "listen: at most %d addresses", GG_MAX_LISTEN);
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		struct sockaddr_storage ss;
		socklen_t len;
		if (!hostport_parse(config_setting_get_string(e), &ss, &len))
			return fail(ld, e, "listen: '%s' is not ADDRESS:PORT ([v6]:port for IPv6)",
				    config_setting_get_string(e));
		c->listen[c->nlisten++] = xstrdup(config_setting_get_string(e));
	}
	return true;
}

static bool validate(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (!hostport_parse(c->backend.address, &ss, &len))
		return fail(ld, config_lookup(cf, "backend.address"),
			    "backend.address: '%s' is not ADDRESS:PORT", c->backend.address);
	if (strcmp(c->log.target, "stderr") != 0 && strcmp(c->log.target, "syslog") != 0)
		return fail(ld, config_lookup(cf, "log.target"),
			    "log.target must be \"stderr\" or \"syslog\"");
	static const char *const levels[] = { "debug", "info", "warning", "error" };
	bool level_ok = false;
	for (size_t i = 0; i < 4; i++)
		level_ok |= strcmp(c->log.level, levels[i]) == 0;
	if (!level_ok)
		return fail(ld, config_lookup(cf, "log.level"),
			    "log.level must be debug, info, warning or error");
	char d[DOMAIN_MAX + 2];
	if (!domain_normalise(c->myhostname, d, sizeof d) || d[0] == '.')
		return fail(ld, config_lookup(cf, "myhostname"),
			    "myhostname '%s' is not a host name", c->myhostname);
	for (const char *p = c->banner; *p; p++)
		if ((unsigned char)*p < ' ')
			return fail(ld, config_lookup(cf, "banner"),
				    "banner must not contain control characters");
	return true;
}

static bool load_store(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	get_str(cf, "store.type", "memory", &c->store.type);
	get_str(cf, "store.file", "/var/lib/greygate/greylist.db", &c->store.file);
	char *failure;
	get_str(cf, "store.failure", "accept", &failure);
	bool failure_ok = strcmp(failure, "accept") == 0 || strcmp(failure, "tempfail") == 0;
	c->store.tempfail = strcmp(failure, "tempfail") == 0;
	free(failure);
	get_int(cf, "store.max_entries", 1000000, &c->store.max_entries);
	get_int(cf, "store.save_interval", 300, &c->store.save_interval);
	get_str(cf, "store.redis.host", "127.0.0.1", &c->store.redis.host);
	get_int(cf, "store.redis.port", 6379, &c->store.redis.port);
	get_str(cf, "store.redis.password", "", &c->store.redis.password);
	get_int(cf, "store.redis.db", 0, &c->store.redis.db);
	get_int(cf, "store.redis.timeout_ms", 250, &c->store.redis.timeout_ms);
	get_int(cf, "store.redis.connect_timeout_ms", 1000, &c->store.redis.connect_timeout_ms);
	get_str(cf, "store.redis.prefix", "gg:", &c->store.redis.prefix);
	get_str(cf, "store.redis.master_name", "", &c->store.redis.master_name);
	const config_setting_t *sl = config_lookup(cf, "store.redis.sentinels");
	for (int i = 0; sl && i < config_setting_length(sl); i++) {
		const config_setting_t *e = config_setting_get_elem(sl, (unsigned)i);
		const char *v = config_setting_get_string(e);
		struct sockaddr_storage ss;
		socklen_t len;
		if (!hostport_parse(v, &ss, &len))
			return fail(ld, e, "store.redis.sentinels: '%s' is not ADDRESS:PORT "
					   "([v6]:port for IPv6)", v);
		char **nv = realloc(c->store.redis.sentinels,
				    (c->store.redis.nsentinels + 1) * sizeof *nv);
		if (!nv)
			return fail(ld, e, "out of memory");
		c->store.redis.sentinels = nv;
		nv[c->store.redis.nsentinels++] = xstrdup(v);
	}
	if (c->store.redis.nsentinels) {
		const char *mn = c->store.redis.master_name;
		bool mn_ok = mn[0] && strlen(mn) <= 128;
		for (const char *p = mn; *p; p++)
			mn_ok &= (unsigned char)*p > ' ' && (unsigned char)*p < 127;
		const config_setting_t *mns = config_lookup(cf, "store.redis.master_name");
		if (!mn_ok)
			return fail(ld, mns ? mns : sl,
				    "store.redis.master_name must name the master (1..128 printable "
				    "characters, no blanks) when store.redis.sentinels is set");
	}
	get_str(cf, "control_socket", "/run/greygate/control.sock", &c->control_socket);
	get_str(cf, "admin.listen", "127.0.0.1:9925", &c->admin_listen);
	get_str(cf, "user", "", &c->user);
	get_str(cf, "group", "", &c->group);
	get_bool(cf, "run_as_root", false, &c->run_as_root);
	get_str(cf, "pid_file", "", &c->pid_file);
	struct sockaddr_storage ass;
	socklen_t alen;
	if (c->admin_listen[0] && !hostport_parse(c->admin_listen, &ass, &alen))
		return fail(ld, config_lookup(cf, "admin.listen"),
			    "admin.listen: '%s' is not ADDRESS:PORT (\"\" switches it off)",
			    c->admin_listen);
	if (strcmp(c->store.type, "memory") != 0 && strcmp(c->store.type, "redis") != 0)
		return fail(ld, config_lookup(cf, "store.type"),
			    "store.type must be \"memory\" or \"redis\"");
	if (!failure_ok)
		return fail(ld, config_lookup(cf, "store.failure"),
			    "store.failure must be \"accept\" or \"tempfail\"");
	if (strlen(c->store.redis.prefix) > 64)
		return fail(ld, config_lookup(cf, "store.redis.prefix"),
			    "store.redis.prefix is longer than 64 bytes");
	if (strlen(c->control_socket) >= 108)
		return fail(ld, config_lookup(cf, "control_socket"),
			    "control_socket path is longer than a socket path may be");
	return true;
}

static bool load_greylist(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	get_bool(cf, "greylist.enabled", true, &c->greylist.enabled);
	get_int(cf, "greylist.delay", 300, &c->greylist.delay);
	get_int(cf, "greylist.retry_window", 172800, &c->greylist.retry_window);
	get_int(cf, "greylist.pass_lifetime", 3110400, &c->greylist.pass_lifetime);
	get_int(cf, "greylist.awl_threshold", 5, &c->greylist.awl_threshold);
	get_int(cf, "greylist.ipv4_prefix", 24, &c->greylist.ipv4_prefix);
	get_int(cf, "greylist.ipv6_prefix", 64, &c->greylist.ipv6_prefix);
	get_int(cf, "greylist.max_new_per_client", 100, &c->greylist.max_new_per_client);
	get_str(cf, "greylist.message", "Greylisted, retry in %s seconds", &c->greylist.message);
	bool on;
	get_bool(cf, "greylist.normalize_sender", true, &on);
	struct sender_norm_opts *n = &c->greylist.norm;
	get_bool(cf, "greylist.normalize.lower", on, &n->lower);
	get_bool(cf, "greylist.normalize.batv", on, &n->batv);
	get_bool(cf, "greylist.normalize.srs", on, &n->srs);
	get_bool(cf, "greylist.normalize.extension", on, &n->ext);
	get_bool(cf, "greylist.normalize.digits", on, &n->digits);
	get_bool(cf, "greylist.normalize.hex", on, &n->hex);
	if (c->greylist.retry_window <= c->greylist.delay)
		return fail(ld, config_lookup(cf, "greylist.retry_window"),
			    "greylist.retry_window must be longer than greylist.delay");
	const char *m = c->greylist.message;
	const char *pct = strchr(m, '%');
	if (strlen(m) > 200 || (pct && (pct[1] != 's' || strchr(pct + 1, '%'))))
		return fail(ld, config_lookup(cf, "greylist.message"),
			    "greylist.message: at most 200 bytes and one %%s (the seconds left)");
	for (; *m; m++)
		if ((unsigned char)*m < ' ')
			return fail(ld, config_lookup(cf, "greylist.message"),
				    "greylist.message must not contain control characters");
	return true;
}

static bool load_dns(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	get_int(cf, "dns.timeout_ms", 2000, &c->dns.timeout_ms);
	get_int(cf, "dns.tries", 2, &c->dns.tries);
	get_int(cf, "dns.cache_size", 10000, &c->dns.cache_size);
	get_bool(cf, "permit_mx_backup", false, &c->permit_mx_backup);
	get_bool(cf, "reject_non_fqdn_sender", true, &c->reject_non_fqdn_sender);
	get_bool(cf, "reject_unknown_sender_domain", true, &c->reject_unknown_sender_domain);
	get_bool(cf, "reject_non_fqdn_recipient", true, &c->reject_non_fqdn_recipient);
	get_int(cf, "handover.probe_interval", 0, &c->handover.probe_interval);
	get_int(cf, "handover.probe_timeout", 10, &c->handover.probe_timeout);
	get_int(cf, "handover.probe_port", 25, &c->handover.probe_port);
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
			return fail(ld, e, "dns.servers: '%s' is not ADDRESS or ADDRESS:PORT", v);
		int n = snprintf(csv + used, sizeof csv - used, "%s%s", used ? "," : "", v);
		if (n < 0 || (size_t)n >= sizeof csv - used)
			return fail(ld, e, "dns.servers: too many servers");
		used += (size_t)n;
	}
	c->dns.servers = xstrdup(csv);
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
			return fail(ld, NULL, "out of memory");
	}
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
		for (size_t i = 0; i < c->relay_domains.n; i++)
			if (!domain_add(&c->handover.domains, c->relay_domains.v[i]))
				return fail(ld, NULL, "out of memory");
	return true;
}

/* The certificate and key are read here, so that -t and a reload refuse a
 * file that names a missing or mismatched pair, with its line. */
static bool load_tls(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	const config_setting_t *cert = config_lookup(cf, "tls.cert");
	const config_setting_t *key = config_lookup(cf, "tls.key");
	/* a hand-shake under way holds ~50 KiB (README): 100 of them, 5 MB */
	get_int(cf, "tls.max_handshakes", 100, &c->tls_max_handshakes);
	get_int(cf, "tls.handshake_timeout", 30, &c->tls_handshake_timeout);
	if (!cert && !key)
		return true;
	if (!cert || !key)
		return fail(ld, cert ? cert : key, "tls needs both cert and key");
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return fail(ld, cert, "cannot create a TLS context");
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
		return fail(ld, cert, "tls.cert '%s': %s", config_setting_get_string(cert), why);
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, config_setting_get_string(key), SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ERR_error_string_n(ERR_get_error(), why, sizeof why);
		return fail(ld, key, "tls.key '%s': %s", config_setting_get_string(key), why);
	}
	return true;
}

static bool load(struct loader *ld, const config_t *cf, struct gg_config *c)
{
	static const char *const default_mynetworks[] = { "127.0.0.0/8", "::1/128", NULL };
	char host[256] = "localhost";
	gethostname(host, sizeof host - 1);
	host[sizeof host - 1] = 0;

	if (!check_schema(ld, config_root_setting(cf), ""))
		return false;
	get_str(cf, "myhostname", host, &c->myhostname);
	char banner[300];
	snprintf(banner, sizeof banner, "%s ESMTP", c->myhostname);
	get_str(cf, "banner", banner, &c->banner);
	get_str(cf, "backend.address", "127.0.0.1:10025", &c->backend.address);
	get_bool(cf, "backend.xclient", true, &c->backend.xclient);
	get_int(cf, "backend.connect_timeout", 5, &c->backend.connect_timeout);
	get_int(cf, "backend.command_timeout", 300, &c->backend.command_timeout);
	get_int(cf, "backend.idle_time", 2, &c->backend.idle_time);
	get_int(cf, "backend.idle_connections", 20, &c->backend.idle_connections);
	get_bool(cf, "backend.refuse_when_down", true, &c->backend.refuse_when_down);
	get_bool(cf, "helo_required", true, &c->helo_required);
	get_bool(cf, "disable_vrfy_command", true, &c->disable_vrfy_command);
	get_int(cf, "limits.max_connections", 10000, &c->limits.max_connections);
	get_int(cf, "limits.max_per_client", 50, &c->limits.max_per_client);
	get_int(cf, "limits.max_recipients", 100, &c->limits.max_recipients);
	get_int(cf, "limits.max_line", 2048, &c->limits.max_line);
	get_int(cf, "limits.command_timeout", 300, &c->limits.command_timeout);
	get_int(cf, "limits.data_timeout", 600, &c->limits.data_timeout);
	get_int(cf, "limits.max_errors", 20, &c->limits.max_errors);
	get_int(cf, "shutdown_grace", 30, &c->shutdown_grace);
	/* "auto": one worker per core, as many as the 1..64 range allows */
	const char *w;
	if (config_lookup_string(cf, "workers", &w) == CONFIG_TRUE) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		c->workers = n < 1 ? 1 : n > 64 ? 64 : (int)n;
	} else {
		get_int(cf, "workers", 1, &c->workers);
	}
	get_str(cf, "log.target", "stderr", &c->log.target);
	get_str(cf, "log.level", "info", &c->log.level);

	return load_listen(ld, cf, c) &&
	       load_list(ld, cf, "mynetworks", default_mynetworks, network_entry, &c->mynetworks) &&
	       load_list(ld, cf, "local_domains", NULL, domain_entry, &c->local_domains) &&
	       load_list(ld, cf, "relay_domains", NULL, domain_entry, &c->relay_domains) &&
	       load_list(ld, cf, "whitelist.clients", NULL, network_entry, &c->whitelist.clients) &&
	       load_list(ld, cf, "whitelist.senders", NULL, address_entry, &c->whitelist.senders) &&
	       load_list(ld, cf, "whitelist.recipients", NULL, address_entry,
			 &c->whitelist.recipients) &&
	       load_list(ld, cf, "my_addresses", NULL, network_entry, &c->my_addresses) &&
	       load_list(ld, cf, "permit_mx_backup_networks", NULL, network_entry,
			 &c->permit_mx_backup_networks) &&
	       load_list(ld, cf, "etrn_networks", NULL, network_entry, &c->etrn_networks) &&
	       load_list(ld, cf, "proxy_protocol_networks", NULL, network_entry,
			 &c->proxy_protocol_networks) &&
	       load_list(ld, cf, "whitelist.client_names", NULL, domain_entry, &c->client_names) &&
	       load_list(ld, cf, "handover.domains", NULL, domain_entry, &c->handover.domains) &&
	       load_store(ld, cf, c) && load_greylist(ld, cf, c) && load_dns(ld, cf, c) &&
	       load_tls(ld, cf, c) &&
	       validate(ld, cf, c);
}

struct gg_config *gg_config_load(const char *file, char *err, size_t errlen)
{
	struct loader ld = { .file = file, .err = err, .errlen = errlen };
	struct stat st;
	if (stat(file, &st) < 0) {
		snprintf(err, errlen, "%s:0: %s", file, strerror(errno));
		return NULL;
	}
	if (st.st_size > CONFIG_FILE_MAX) {
		snprintf(err, errlen, "%s:0: larger than %d bytes", file, CONFIG_FILE_MAX);
		return NULL;
	}
	config_t cf;
	config_init(&cf);
	if (config_read_file(&cf, file) != CONFIG_TRUE) {
		snprintf(err, errlen, "%s:%d: %s",
			 config_error_file(&cf) ? config_error_file(&cf) : file,
			 config_error_line(&cf), config_error_text(&cf));
		config_destroy(&cf);
		return NULL;
	}
	struct gg_config *c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(err, errlen, "%s:0: out of memory", file);
		config_destroy(&cf);
		return NULL;
	}
	c->refs = 1;
	c->file = xstrdup(file);
	bool ok = load(&ld, &cf, c);
	config_destroy(&cf);
	if (!ok) {
		gg_config_unref(c);
		return NULL;
	}
	return c;
}

/* STUBS, replaced by the real stepwise loader: they keep today's
 * behaviour (load whole from disk) behind the new interface. */
struct gg_config_load {
	struct gg_config *c;
};

struct gg_config_load *gg_config_load_begin(const char *file, char *err, size_t errlen)
{
	struct gg_config *c = gg_config_load(file, err, errlen);
	if (!c)
		return NULL;
	struct gg_config_load *ld = calloc(1, sizeof *ld);
	if (!ld) {
		gg_config_unref(c);
		snprintf(err, errlen, "%s:0: out of memory", file);
		return NULL;
	}
	ld->c = c;
	return ld;
}

struct gg_config_load *gg_config_load_begin_bundle(const void *buf, size_t len,
						   char *err, size_t errlen)
{
	char file[4096];
	if (len >= sizeof file) {
		snprintf(err, errlen, "bundle:0: too large");
		return NULL;
	}
	memcpy(file, buf, len);
	file[len] = 0;
	return gg_config_load_begin(file, err, errlen);
}

int gg_config_load_step(struct gg_config_load *ld, size_t budget)
{
	(void)ld;
	(void)budget;
	return 1;
}

struct gg_config *gg_config_load_end(struct gg_config_load *ld)
{
	struct gg_config *c = ld->c;
	free(ld);
	return c;
}

void gg_config_load_abort(struct gg_config_load *ld)
{
	gg_config_unref(ld->c);
	free(ld);
}

const void *gg_config_bundle(const struct gg_config *c, size_t *len)
{
	*len = strlen(c->file);
	return c->file;
}

const char *gg_config_restart_setting(const struct gg_config *old, const struct gg_config *new)
{
	if (strcmp(old->store.type, new->store.type) != 0)
		return "store.type";
	if (old->workers != new->workers)
		return "workers";
	return NULL;
}

struct gg_config *gg_config_ref(struct gg_config *c)
{
	c->refs++;
	return c;
}

static void domainlist_free(struct domainlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

void gg_config_unref(struct gg_config *c)
{
	if (!c || --c->refs > 0)
		return;
	free(c->file);
	free(c->myhostname);
	free(c->banner);
	for (size_t i = 0; i < c->nlisten; i++)
		free(c->listen[i]);
	free(c->backend.address);
	netlist_free(&c->mynetworks);
	netlist_free(&c->my_addresses);
	netlist_free(&c->permit_mx_backup_networks);
	netlist_free(&c->etrn_networks);
	netlist_free(&c->proxy_protocol_networks);
	domainlist_free(&c->client_names);
	domainlist_free(&c->handover.domains);
	free(c->dns.servers);
	SSL_CTX_free(c->tls_ctx);
	netlist_free(&c->whitelist.clients);
	addrlist_free(&c->whitelist.senders);
	addrlist_free(&c->whitelist.recipients);
	free(c->store.type);
	free(c->store.file);
	free(c->store.redis.host);
	free(c->store.redis.password);
	free(c->store.redis.prefix);
	for (size_t i = 0; i < c->store.redis.nsentinels; i++)
		free(c->store.redis.sentinels[i]);
	free(c->store.redis.sentinels);
	free(c->store.redis.master_name);
	free(c->greylist.message);
	free(c->control_socket);
	free(c->admin_listen);
	free(c->user);
	free(c->group);
	free(c->pid_file);
	domainlist_free(&c->local_domains);
	domainlist_free(&c->relay_domains);
	free(c->log.target);
	free(c->log.level);
	free(c);
}

bool domainlist_match(const struct domainlist *list, const char *domain, size_t len)
{
	if (len > 0 && domain[len - 1] == '.')
		len--;
	for (size_t i = 0; i < list->n; i++) {
		const char *e = list->v[i];
		size_t elen = strlen(e);
		if (e[0] == '.') {
			/* ".example" matches "a.example", not "example" itself */
			if (len > elen && strncasecmp(domain + len - elen, e, elen) == 0)
				return true;
		} else if (len == elen && strncasecmp(domain, e, len) == 0) {
			return true;
		}
	}
	return false;
}
