/*
 * The rows are in load order: lists are read in table order, so the first
 * broken list a file holds is the one reported, as before the table.
 */
#include "config_schema.h"

#include <stdlib.h>
#include <string.h>

#define F(field) offsetof(struct gg_config, field)
#define GROUP(p)                  { p, CK_GROUP, 0, 0, CFG_NOWHERE, 0, NULL }
#define STR(p, field, d)          { p, CK_STR, 0, 0, F(field), 0, d }
#define INT(p, field, d, lo, hi)  { p, CK_INT, lo, hi, F(field), d, NULL }
#define BOOL(p, field, d)         { p, CK_BOOL, 0, 0, F(field), d, NULL }
#define LIST(p, kind, field, d)   { p, kind, 0, 0, F(field), 0, d }
/* read by its list's row: LIST_file */
#define LIST_FILE(p)              { p, CK_STR, 0, 0, CFG_NOWHERE, 0, NULL }
/* read by a named function in config.c */
#define NAMED(p, kind)            { p, kind, 0, 0, CFG_NOWHERE, 0, NULL }

static const char *const default_mynetworks[] = { "127.0.0.0/8", "::1/128", NULL };

const struct cfg_setting cfg_settings[] = {
	STR("myhostname", myhostname, NULL),               /* gethostname() */
	STR("banner", banner, NULL),                       /* "MYHOSTNAME ESMTP" */
	NAMED("listen", CK_STRLIST),
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
	{ "workers", CK_INT_OR_AUTO, 1, 64, F(workers), 1, NULL },
	GROUP("log"),
	STR("log.target", log.target, "stderr"),
	STR("log.level", log.level, "info"),
	LIST("my_addresses", CK_NETS, my_addresses, NULL),
	GROUP("store"),
	STR("store.type", store.type, "memory"),
	STR("store.file", store.file, "/var/lib/greygate/greylist.db"),
	NAMED("store.failure", CK_STR),                    /* "accept": store.tempfail */
	INT("store.max_entries", store.max_entries, 1000000, 1000, 100000000),
	INT("store.save_interval", store.save_interval, 300, 1, 86400),
	GROUP("store.redis"),
	STR("store.redis.host", store.redis.host, "127.0.0.1"),
	INT("store.redis.port", store.redis.port, 6379, 1, 65535),
	STR("store.redis.password", store.redis.password, ""),
	INT("store.redis.db", store.redis.db, 0, 0, 1000),
	INT("store.redis.timeout_ms", store.redis.timeout_ms, 250, 1, 60000),
	INT("store.redis.connect_timeout_ms", store.redis.connect_timeout_ms, 1000, 1, 60000),
	STR("store.redis.prefix", store.redis.prefix, "gg:"),
	NAMED("store.redis.sentinels", CK_STRLIST),
	STR("store.redis.master_name", store.redis.master_name, ""),
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
	STR("control_socket", control_socket, "/run/greygate/control.sock"),
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
	STR("admin.listen", admin_listen, "127.0.0.1:9925"),
	STR("user", user, ""),
	STR("group", group, ""),
	BOOL("run_as_root", run_as_root, false),
	STR("pid_file", pid_file, ""),
	GROUP("tls"),
	NAMED("tls.cert", CK_STR),                         /* both: tls_ctx */
	NAMED("tls.key", CK_STR),
	/* a hand-shake under way holds ~50 KiB (README): 100 of them, 5 MB */
	INT("tls.max_handshakes", tls_max_handshakes, 100, 1, 100000),
	INT("tls.handshake_timeout", tls_handshake_timeout, 30, 1, 3600),
};

const size_t cfg_nsettings = sizeof cfg_settings / sizeof cfg_settings[0];

const struct cfg_setting *cfg_setting_find(const char *path)
{
	for (size_t i = 0; i < cfg_nsettings; i++)
		if (strcmp(cfg_settings[i].path, path) == 0)
			return &cfg_settings[i];
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
