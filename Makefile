# greygate build. `make` builds build/greygate; `make check` installs what is
# missing (as root), builds and runs every test; `make asan` does the same
# with AddressSanitizer and UBSan; `make run` starts greygate for a try.

PKGS     := libevent libevent_openssl hiredis libcares libconfig openssl
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

$(BUILD)/%.o: %.c $(wildcard lib/*.h proxy/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) $(PKG_CFLAGS) -Iproxy -c -o $@ $<

$(BUILD)/libgg.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/greygate: $(PROXY_OBJ) $(BUILD)/libgg.a
	$(CC) $(CFLAGS) -o $@ $(PROXY_OBJ) $(BUILD)/libgg.a $(LDFLAGS) $(PKG_LIBS)

$(BUILD)/greygate-ctl: $(BUILD)/ctl/greygate-ctl.o $(BUILD)/libgg.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libgg.a $(LDFLAGS) $(PKG_LIBS)

$(BUILD)/unit/%: test/unit/%.c $(BUILD)/libgg.a $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) $(PKG_CFLAGS) -o $@ $< $(BUILD)/libgg.a $(LDFLAGS) $(PKG_LIBS) -lcmocka

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

asan: deps
	$(MAKE) BUILD=build-asan OPT=-O1 \
	  LDFLAGS="-fsanitize=address,undefined" \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  all unit functional

run: deps all
	@bash tools/run.sh $(abspath $(BUILD)/greygate)

clean:
	rm -rf build build-asan
