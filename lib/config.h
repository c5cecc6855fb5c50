/*
 * config: loading and validating greygate.conf (libconfig).
 *
 * Promises: gg_config_load either returns a complete, validated, immutable
 * configuration or NULL with "FILE:LINE: reason" in the error buffer; it
 * never leaves half a configuration behind. A configuration is reference
 * counted so that a reload (SIGHUP) can swap in a new one while sessions in
 * flight keep the one they started with.
 */
#ifndef GG_CONFIG_H
#define GG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "addrlist.h"
#include "dnsbl_site.h"
#include "domainlist.h"
#include "greylist.h"
#include "netaddr.h"
#include "score.h"
#include "pool_key.h"
#include "sender_norm.h"
#include "store_type.h"

#define GG_MAX_LISTEN 16

struct gg_config {
	int refs;
	char *file;
	char *bundle;                 /* gg_config_bundle */
	size_t bundle_len;

	char *myhostname;
	char *banner;                 /* text after "220 " */
	char *listen[GG_MAX_LISTEN];  /* "host:port" / "[v6]:port" */
	size_t nlisten;

	struct {
		char *address;            /* "host:port" */
		bool xclient;
		int connect_timeout;      /* seconds */
		int command_timeout;      /* seconds, per backend reply */
		int idle_time;            /* seconds a connection waits for the next client; 0: no reuse */
		int idle_connections;     /* at most this many waiting, per process */
		bool refuse_when_down;    /* greet with 421 while it cannot be reached */
	} backend;

	struct netlist mynetworks;
	struct domainlist local_domains;
	struct domainlist relay_domains;   /* relay_domains + relay_domains_file */

	bool helo_required;
	bool disable_vrfy_command;

	struct {
		int max_connections;
		int max_per_client;
		int max_recipients;
		int max_line;             /* bytes, without CRLF */
		int command_timeout;      /* seconds */
		int data_timeout;         /* seconds */
		int max_errors;
	} limits;

	int shutdown_grace;           /* seconds */
	int workers;                  /* processes sharing the listen sockets */

	struct {
		char *type;               /* as written; see kind */
		enum store_kind kind;     /* the row of store_types it names */
		char *file;               /* persistence of the memory store; "" none */
		bool tempfail;            /* failure = "tempfail" (else "accept") */
		int max_entries;          /* memory store bound */
		int save_interval;        /* seconds between saves of the memory store */
		struct {
			char *host;
			int port;
			char *password;
			int db;
			int timeout_ms;
			int connect_timeout_ms;
			char *prefix;
			char **sentinels;     /* "host:port"; none: host/port is the master */
			size_t nsentinels;
			char *master_name;    /* SENTINEL get-master-addr-by-name NAME */
			char **cluster;       /* "host:port" seeds of a Redis Cluster */
			size_t ncluster;
		} redis;
	} store;

	struct {
		bool enabled;
		int delay, retry_window, pass_lifetime;
		int awl_threshold;
		int ipv4_prefix, ipv6_prefix;
		int max_new_per_client;
		struct sender_norm_opts norm;
		char *message;            /* "%s" stands for the seconds left */
		bool shadow;              /* mode = "shadow": decide, log would-*, let the mail pass */
		/* Pool keys (lib/pool_key.h): the kinds greylist.pool_keys names,
		 * in its order; none: the network key only. */
		enum pool_kind pool_keys[POOL_KINDS];
		size_t npool_keys;
		/* How wide an SPF mechanism may be and still vouch for a sender
		 * (the SPF evaluator reads them). */
		int spf_max_prefix4, spf_max_prefix6;
		char **generic_name_words;    /* lib/generic_name.h */
		size_t ngeneric_name_words;
	} greylist;

	struct {
		struct netlist clients;
		struct addrlist senders, recipients;
	} whitelist;

	char *control_socket;         /* greygate-ctl talks to the daemon here */
	char *admin_listen;           /* /healthz and /metrics; "" off */
	char *user, *group;           /* drop to these after binding; "" none */
	bool run_as_root;             /* allow going on as root */
	char *pid_file;               /* "" none */

	/* The Postfix policy service (proxy/policy.c). */
	struct {
		char *listen;         /* "host:port"; "" off */
		bool prepend_header;  /* X-Greylist: on a triplet that waited */
	} policy;

	/* STARTTLS: an SSL_CTX with tls.cert and tls.key loaded, or NULL (no
	 * STARTTLS offered). Reloaded with the file, so SIGHUP picks up a
	 * renewed certificate. */
	struct ssl_ctx_st *tls_ctx;
	/* STARTTLS hand-shakes not finished yet, per process: a bound on their
	 * memory (tls.max_handshakes) and on their time (tls.handshake_timeout,
	 * seconds from the 220 to the finished hand-shake). */
	int tls_max_handshakes;
	int tls_handshake_timeout;

	struct {
		char *servers;            /* c-ares CSV "127.0.0.1:53,[::1]:53"; "" resolv.conf */
		int timeout_ms, tries, cache_size;
	} dns;

	/* DNS-based policy at RCPT (README.md, the order of the checks) */
	struct netlist my_addresses;       /* what our MX names resolve to (+ listen addresses) */
	bool permit_mx_backup;
	struct netlist permit_mx_backup_networks;
	bool reject_non_fqdn_sender;
	bool reject_unknown_sender_domain;
	bool reject_non_fqdn_recipient;
	struct netlist etrn_networks;
	struct netlist proxy_protocol_networks;  /* clients that send a PROXY header */
	struct domainlist client_names;    /* whitelist.client_names: FCrDNS-verified */
	struct {
		struct domainlist domains;     /* default: relay_domains */
		int probe_interval;            /* seconds; 0: off */
		int probe_timeout;
		int probe_port;
	} handover;

	/* Selective greylisting (README.md): on when the file has a scoring
	 * group; otherwise no signal is looked up and every client is normal. */
	struct {
		bool enabled;
		struct dnsbl_site *sites;     /* scoring.dnsbl */
		size_t nsites;
		int weights[SIG_COUNT];       /* scoring.weights.<signal>, where it is a setting */
		struct score_classes classes;
		int suspicious_delay;         /* seconds */
		bool hostile_tempfail;        /* hostile.action = "tempfail" (else "reject") */
	} scoring;
	/* Seconds the 220 banner may be held for the pregreet test
	 * (proxy/session_greet.c); 0 off. Used only with scoring on. */
	int greet_wait;
	/* Recipients nobody real writes to: a RCPT to one marks the client's
	 * network trapped in the store for trap_lifetime seconds (scoring on). */
	struct addrlist spamtraps;
	int trap_lifetime;

	struct {
		char *target;             /* "stderr" or "syslog" */
		char *level;              /* "debug", "info", "warning", "error" */
	} log;
};

/*
 * Reads and validates FILE. On failure returns NULL and writes
 * "FILE:LINE: reason" (LINE 0 when no line applies) into ERR. Only regular
 * files are opened (the main file, every @include, the list files, the TLS
 * files): anything else is refused at once instead of blocking.
 */
struct gg_config *gg_config_load(const char *file, char *err, size_t errlen);

/*
 * A load in steps, so that a reload of large list files never stalls the
 * event loop: begin reads and parses the main file (and its @includes,
 * CONFIG_FILE_MAX bytes in all), every setting and inline list, and queues
 * the list files (LIST_file settings); each step does at most BUDGET bytes
 * of list-file work (reading, parsing whole lines, copying into the
 * bundle), so that a step may go over by one line; what needs the lists
 * runs after the last one. gg_config_load is begin, steps until done, end.
 * A list file is read whole and must not change while it is read (same
 * inode, size, mtime; its path still naming it): to change one, write a
 * new file and rename it into place. On failure the error is in ERR as for
 * gg_config_load and nothing is left behind but LD, for abort.
 */
struct gg_config_load;
struct gg_config_load *gg_config_load_begin(const char *file, char *err, size_t errlen);
/* The same from a bundle made by gg_config_bundle: the configuration a
 * supervisor holds in force, with nothing read from disk but the TLS
 * certificate and key it names. The bundle is input like any other:
 * malformed ones are refused. Errors name the original file, with LINE 0
 * (the bundle's own lines would mean nothing to a reader). */
struct gg_config_load *gg_config_load_begin_bundle(const void *buf, size_t len,
						   char *err, size_t errlen);
/* 1 when done, 0 when more remains, -1 on failure (ERR filled). */
int gg_config_load_step(struct gg_config_load *ld, size_t budget);
/* The configuration (NULL unless the last step returned 1); frees LD. */
struct gg_config *gg_config_load_end(struct gg_config_load *ld);
void gg_config_load_abort(struct gg_config_load *ld);

/* Every byte C was made from, self-contained: libconfig's rendering of the
 * parsed main file (includes expanded) and the list files' bytes. What a
 * worker loads to run the configuration in force, whatever the files on
 * disk say now. C->file stays the original path. Owned by C. */
const void *gg_config_bundle(const struct gg_config *c, size_t *len);

/* The first setting that differs between OLD and NEW and takes a restart
 * to change, named as in the file ("store.type", "listen", ...): every
 * store.* setting, control_socket, listen (all addresses, in order),
 * workers, admin.listen, user, group, run_as_root, pid_file,
 * policy.listen (the rows
 * marked RESTART in lib/config_schema.c, in table order). NULL when a
 * reload can apply NEW whole. */
const char *gg_config_restart_setting(const struct gg_config *old, const struct gg_config *new);

struct gg_config *gg_config_ref(struct gg_config *c);
void gg_config_unref(struct gg_config *c);

/* The greylist settings of C in the form a decision takes (the daemon's
 * stores and greygate-ctl's explain). */
struct gl_params gg_config_gl_params(const struct gg_config *c);
/* The same for a client of class K (selective greylisting): suspicious
 * waits scoring.suspicious.delay and neither earns nor uses the
 * auto-whitelist. */
struct gl_params gg_config_gl_params_class(const struct gg_config *c, enum score_class k);
/* Class K's, and for a pending triplet flagged backup_first (greylist.h)
 * those of FLAGGED, the class the client's score has with
 * scoring.weights.backup_first added: its delay and auto-whitelist rule,
 * refused when FLAGGED is hostile. The RCPT decision and explain both. */
struct gl_params gg_config_gl_params_flagged(const struct gg_config *c, enum score_class k,
					     enum score_class flagged);

#endif
