# greygate build. `make` builds build/greygate; `make check` installs what is
# missing (as root), builds and runs every test; `make asan` does the same
# with AddressSanitizer and UBSan; `make run` starts greygate for a try.

PKGS     := libevent libevent_openssl hiredis libcares libconfig openssl libpsl
PYTHON   := /usr/bin/python3
BUILD    ?= build
CC       ?= cc
OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
WARN     := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
            -Wformat=2 -Wno-format-nonliteral -fno-common -Ilib
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

LIB_SRC   := $(sort $(wildcard lib/*.c))
PROXY_SRC := $(sort $(wildcard proxy/*.c))
UNIT_SRC  := $(sort $(wildcard test/unit/test_*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
PROXY_OBJ := $(PROXY_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN  := $(UNIT_SRC:test/unit/%.c=$(BUILD)/unit/%)

.PHONY: all deps check unit functional asan run clean

all: $(BUILD)/greygate $(BUILD)/greygate-ctl

$(BUILD)/%.o: %.c $(wildcard lib/*.h proxy/*.h ctl/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) $(PKG_CFLAGS) -Iproxy -c -o $@ $<

$(BUILD)/libgg.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/greygate: $(PROXY_OBJ) $(BUILD)/libgg.a
	$(CC) $(CFLAGS) -o $@ $(PROXY_OBJ) $(BUILD)/libgg.a $(LDFLAGS) $(PKG_LIBS)

# greygate-ctl's own modules are in ctl/ (what only the command does,
# such as blocking DNS, which lib/'s fuzz builds cannot link).
CTL_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard ctl/*.c)))
$(BUILD)/greygate-ctl: $(CTL_OBJ) $(BUILD)/libgg.a
	$(CC) $(CFLAGS) -o $@ $(CTL_OBJ) $(BUILD)/libgg.a $(LDFLAGS) $(PKG_LIBS)

$(BUILD)/unit/%: test/unit/%.c $(BUILD)/libgg.a $(wildcard lib/*.h test/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) $(PKG_CFLAGS) -Iproxy -o $@ $< $(UNIT_OBJ_$*) $(BUILD)/libgg.a \
	  $(LDFLAGS) $(PKG_LIBS) -lcmocka

# The rule table's test links the rules and what they count with, and
# gives the world (DNS, store, clock) as fakes through struct rcpt_env.
UNIT_OBJ_test_rcpt_rules := $(addprefix $(BUILD)/proxy/,rcpt_rules.o rcpt_greylist.o metrics.o xalloc.o)
$(BUILD)/unit/test_rcpt_rules: $(UNIT_OBJ_test_rcpt_rules) $(wildcard proxy/*.h)
# The session rules are pure: the test links them alone.
UNIT_OBJ_test_session_rules := $(BUILD)/proxy/session_rules.o
$(BUILD)/unit/test_session_rules: $(UNIT_OBJ_test_session_rules) $(wildcard proxy/*.h)

# The SPF check runs on the real resolver against a DNS server of the
# test's own.
UNIT_OBJ_test_spf_check := $(addprefix $(BUILD)/proxy/,spf.o resolver.o metrics.o xalloc.o)
$(BUILD)/unit/test_spf_check: $(UNIT_OBJ_test_spf_check) $(wildcard proxy/*.h)

# Installs the Debian packages the build and the tests need, when root and
# when something is missing; otherwise says what to install.
deps:
	@sh tools/deps.sh

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

functional: $(BUILD)/greygate
	GREYGATE_BIN=$(abspath $(BUILD)/greygate) $(PYTHON) -m pytest -q test/functional $(PYTEST_ARGS)

check: deps
	$(MAKE) all unit
	$(MAKE) functional
	@sh test/e2e/run-if-possible.sh "$(MAKE)"

asan: deps
	$(MAKE) BUILD=build-asan OPT=-O1 \
	  LDFLAGS="-fsanitize=address,undefined" \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  all unit functional

# End to end in network namespaces (test/e2e/README.md): a sending Postfix,
# two MX hosts (greygate + Postfix each), Redis and DNS on a private bridge;
# as root, about 2 minutes. `make check` runs it when it can.
.PHONY: e2e
e2e: $(BUILD)/greygate $(BUILD)/greygate-ctl
	@sh test/e2e/deps.sh
	GREYGATE_BIN=$(abspath $(BUILD)/greygate) $(PYTHON) -m pytest -q test/e2e $(PYTEST_ARGS)

# The Docker deployment for real (docker/README.md): the base image when
# there is no registry, the images, the demo stack (dns, redis, two MX
# hosts) and its failure cases, then the production compose file. Needs a
# Docker engine and docker-compose (or `docker compose`); root for the base
# image; about 6 minutes from nothing.
.PHONY: docker-smoke
docker-smoke:
	@sh tools/deps.sh debootstrap
	sh docker/smoke.sh
	sh docker/prod-check.sh

# The chaos run (test/chaos/README.md): the e2e topology, three sending
# Postfix instances, a ledger of messages and seeded faults; every message
# must arrive exactly once. Root; CHAOS_SECONDS of traffic (600) plus the
# drain. Not in `make check`. CHAOS_BIN=build-asan/greygate (built by
# `make asan`) for the sanitizer run; CHAOS_ARGS="--seed N" to repeat one.
CHAOS_SECONDS ?= 600
CHAOS_BIN ?= $(BUILD)/greygate
.PHONY: chaos
chaos: $(CHAOS_BIN)
	@sh test/e2e/deps.sh
	CHAOS_SECONDS=$(CHAOS_SECONDS) GREYGATE_BIN=$(abspath $(CHAOS_BIN)) $(PYTHON) test/chaos/chaos.py $(CHAOS_ARGS)

# Throughput, latency and memory on loopback (bench/README.md): an -O2
# build in build-bench, then bench/bench.py (about 6 minutes; root).
# BENCH_ARGS="--runs 1 --only storm,pass" and the like for a part of it.
.PHONY: bench
bench: deps
	@sh bench/deps.sh
	$(MAKE) BUILD=build-bench OPT=-O2 all
	$(PYTHON) bench/bench.py --greygate build-bench/greygate --ctl build-bench/greygate-ctl $(BENCH_ARGS)

# Time of a configuration load with a 16 MB whitelist.clients_file, whole
# and in steps (bench/config_load.c); a second or two.
.PHONY: bench-config
bench-config: $(BUILD)/bench/config_load
	$(BUILD)/bench/config_load $(BENCH_ARGS)

# The access lists' cost by size (bench/lists.c): add time, heap per entry,
# match ns/op for 10, 10 k and 1 M entries. About 10 seconds; no root.
.PHONY: bench-lists
bench-lists: $(BUILD)/bench/lists
	$(BUILD)/bench/lists

# Footprint and cost figures (bench/README.md, "Footprint"): Redis bytes per
# triplet and AWL entry, the embedded store per entry in memory and on disk,
# save/load times and the loop during a save, storm decisions/s with Redis
# behind added latency. Root; about 10 minutes. BENCH_ARGS="--only redis".
.PHONY: bench-footprint
bench-footprint: deps
	$(MAKE) BUILD=build-bench OPT=-O2 all build-bench/bench/footprint
	$(PYTHON) bench/footprint.py --greygate build-bench/greygate --driver build-bench/bench/footprint $(BENCH_ARGS)

# The deliverability simulator (sim/README.md): a synthetic mail day in
# real SMTP against a baseline and a selective primary/backup pair, with a
# compressed clock; a table and build/sim/delays.png. About 8 minutes
# (SIM_ARGS=--quick: under 2); root.
.PHONY: simulate
simulate: deps all
	@sh tools/deps.sh python3-matplotlib
	$(PYTHON) sim/simulate.py --greygate $(BUILD)/greygate $(SIM_ARGS)

# docs/dashboard.png: the dashboard's panels drawn from a real greygate's
# /metrics under load, a backend outage and a Redis outage (about 2 minutes;
# contrib/grafana/snapshot.py).
.PHONY: dashboard-snapshot
dashboard-snapshot: all
	@sh tools/deps.sh python3-matplotlib
	$(PYTHON) contrib/grafana/snapshot.py --greygate $(BUILD)/greygate

$(BUILD)/bench/%: bench/%.c $(BUILD)/libgg.a $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) $(PKG_CFLAGS) -o $@ $< $(BUILD)/libgg.a $(LDFLAGS) $(PKG_LIBS)

# libFuzzer targets (test/fuzz/README.md), built with clang into build-fuzz:
# replays test/fuzz/crashes/, then runs each target for FUZZ_SECONDS on a
# working copy of its seeds; fails if any crashes (5 x 60 s: about 5 min).
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_TARGETS := smtp_cmd address_norm dotcodec proxyproto dnsmsg session spf_record pool_key \
                policy_proto dnsbl_site redis_slots
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -std=c11 -D_GNU_SOURCE -Ilib
FUZZ_LIBS     = $(shell pkg-config --cflags --libs libevent openssl libpsl 2>/dev/null)
FUZZ_SRC_smtp_cmd     := lib/smtp_cmd.c
FUZZ_SRC_address_norm := lib/smtp_cmd.c lib/sender_norm.c lib/triplet.c lib/netaddr.c \
                         lib/pool_key.c lib/generic_name.c lib/regdomain.c lib/hostname.c
FUZZ_SRC_dotcodec     := lib/dotcodec.c
FUZZ_SRC_proxyproto   := lib/proxyproto.c lib/netaddr.c
FUZZ_SRC_dnsmsg       := lib/dnsmsg.c lib/netaddr.c lib/hostname.c
FUZZ_SRC_spf_record   := lib/spf_record.c lib/spf_macro.c lib/spf_eval.c lib/netaddr.c
FUZZ_SRC_pool_key     := lib/pool_key.c lib/generic_name.c lib/regdomain.c lib/hostname.c \
                         lib/netaddr.c
FUZZ_SRC_policy_proto := lib/policy_proto.c
FUZZ_SRC_dnsbl_site   := lib/dnsbl_site.c lib/netaddr.c lib/hostname.c
FUZZ_SRC_redis_slots  := lib/redis_slots.c lib/sentinel.c lib/hostport.c
FUZZ_LIBS_redis_slots  = $(shell pkg-config --cflags --libs hiredis 2>/dev/null)

build-fuzz/fuzz_%: test/fuzz/fuzz_%.c test/fuzz/fuzz_check.h $(wildcard lib/*.c lib/*.h)
	@mkdir -p build-fuzz && echo '*' > build-fuzz/.gitignore
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_SRC_$*) $(FUZZ_LIBS) $(FUZZ_LIBS_$*)

# The session target runs the proxy itself (all of proxy/ but main.c) with
# proxy/resolver.c on the fake c-ares the target defines: c-ares's headers,
# not its library.
FUZZ_SESSION_PKGS := libevent libevent_openssl hiredis libconfig openssl libpsl
build-fuzz/fuzz_session: test/fuzz/fuzz_session.c test/fuzz/fuzz_check.h $(wildcard lib/*.[ch] proxy/*.[ch])
	@mkdir -p build-fuzz && echo '*' > build-fuzz/.gitignore
	$(FUZZ_CC) $(FUZZ_FLAGS) -Iproxy $(shell pkg-config --cflags $(FUZZ_SESSION_PKGS) libcares 2>/dev/null) \
	  -o $@ $< $(filter-out proxy/main.c,$(wildcard proxy/*.c)) $(wildcard lib/*.c) \
	  $(shell pkg-config --libs $(FUZZ_SESSION_PKGS) 2>/dev/null)

# FUZZ_JOBS targets run at once (one per core by default).
FUZZ_JOBS ?= $(shell nproc 2>/dev/null || echo 1)

.PHONY: fuzz
fuzz: deps
	$(MAKE) $(FUZZ_TARGETS:%=build-fuzz/fuzz_%)
	$(MAKE) -j$(FUZZ_JOBS) $(FUZZ_TARGETS:%=fuzz-run-%)

fuzz-run-%: build-fuzz/fuzz_%
	@sh test/fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $*

run: deps all
	@bash tools/run.sh $(abspath $(BUILD)/greygate)

clean:
	rm -rf build build-asan build-bench build-fuzz

# ---- install (README.md, "Installing") ----
# `make install` puts the programs in $(PREFIX)/sbin (both are the
# administrator's: greygate binds port 25 as root, greygate-ctl needs the
# daemon's configuration and control socket), the man pages, the systemd
# unit, and the example configuration as $(SYSCONFDIR)/greygate/greygate.conf
# when there is none (an existing one is never overwritten). DESTDIR stages
# the tree elsewhere. The Debian package installs with PREFIX=/usr and
# UNITDIR=/lib/systemd/system (debian/rules).
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
MAN5       := man/greygate.conf.5
MAN8       := man/greygate.8 man/greygate-ctl.8
CONF_DEST   = $(DESTDIR)$(SYSCONFDIR)/greygate/greygate.conf

.PHONY: install uninstall
$(BUILD)/greygate.conf.installed: conf/greygate.conf tools/installed-conf.sed
	@mkdir -p $(dir $@)
	sed -f tools/installed-conf.sed $< > $@

install: all $(BUILD)/greygate.conf.installed
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	  $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/greygate
	install -m 755 $(BUILD)/greygate $(BUILD)/greygate-ctl $(DESTDIR)$(SBINDIR)/
	install -m 644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/
	install -m 644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/
	sed -e 's|/usr/sbin/|$(SBINDIR)/|g' -e 's|/etc/greygate/|$(SYSCONFDIR)/greygate/|g' \
	  conf/greygate.service > $(DESTDIR)$(UNITDIR)/greygate.service
	chmod 644 $(DESTDIR)$(UNITDIR)/greygate.service
	@if [ -e $(CONF_DEST) ]; then echo "keeping $(CONF_DEST)"; \
	 else install -m 644 $(BUILD)/greygate.conf.installed $(CONF_DEST); fi

# Leaves the configuration when it was edited (it is the administrator's).
uninstall: $(BUILD)/greygate.conf.installed
	rm -f $(DESTDIR)$(SBINDIR)/greygate $(DESTDIR)$(SBINDIR)/greygate-ctl \
	  $(MAN5:man/%=$(DESTDIR)$(MANDIR)/man5/%) $(MAN8:man/%=$(DESTDIR)$(MANDIR)/man8/%) \
	  $(DESTDIR)$(UNITDIR)/greygate.service
	@if cmp -s $(CONF_DEST) $(BUILD)/greygate.conf.installed; then \
	   rm -f $(CONF_DEST); rmdir $(DESTDIR)$(SYSCONFDIR)/greygate 2>/dev/null || true; \
	 elif [ -e $(CONF_DEST) ]; then echo "keeping $(CONF_DEST): it was changed"; fi

# The settings' lines of man/greygate.conf.5, from the table (lib/config_doc.h).
.PHONY: man-settings
man-settings: $(BUILD)/tools/config_doc
	@$(BUILD)/tools/config_doc

$(BUILD)/tools/%: tools/%.c $(BUILD)/libgg.a $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) $(PKG_CFLAGS) -o $@ $< $(BUILD)/libgg.a $(LDFLAGS) $(PKG_LIBS)

# The Debian package (debian/), built, checked with lintian, installed into
# a fresh debootstrap chroot and started there: test/deb/run.sh. As root,
# with the Debian archive reachable; 3 to 4 minutes.
.PHONY: deb-test
deb-test:
	@sh tools/deps.sh debhelper dpkg-dev debootstrap lintian
	sh test/deb/run.sh $(BUILD)
