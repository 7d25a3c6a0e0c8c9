# Makefile of the chat system. `make` builds; `make run` and `make test`
# first install any missing Debian package (as root), see README.md.
#
#   make [V=1] [SAN=1]   build build/<flavour>/chat-fcgi (SAN=1: ASan+UBSan)
#   make run [PORT=8080] build and run nginx + chat-fcgi in the foreground
#   make cluster [NODES=2] [PORT=8080]  NODES nodes on one private PostgreSQL
#   make test [SAN=1]    every test; the last line is "N passed, N failed"
#   make bench           benchmarks (tests/bench/), figures for the README
#   make install [PREFIX=/usr/local] [DESTDIR=]
#   make clean

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
DATADIR    ?= $(PREFIX)/share/chat
PKG_CONFIG ?= pkg-config
CC         ?= cc
CFLAGS     ?= -O2 -g
PORT       ?= 8080

PKGS := fcgi sqlite3 json-c libsystemd libpq
WS_PKGS := libwebsockets
# Debian packages that building and running need, then those the tests add
# (Node and npm too, where no npm is on the PATH: a machine may have its own).
DEB_PKGS  := gcc make pkg-config libc6-dev libfcgi-dev libsqlite3-dev libjson-c-dev libwebsockets-dev \
             libwebsockets-evlib-ev libev-dev libsystemd-dev libpq-dev sqlite3 curl python3 procps
TEST_PKGS := libcmocka-dev jq python3-websockets chromium systemd clang libclang-rt-14-dev postgresql-15

ifeq ($(SAN),1)
FLAVOUR  := san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
else
FLAVOUR  := release
SANFLAGS :=
endif
B := build/$(FLAVOUR)

ifneq ($(V),1)
Q := @
endif

PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
WS_CFLAGS  = $(shell $(PKG_CONFIG) --cflags $(WS_PKGS) 2>/dev/null)
WS_LIBS    = $(shell $(PKG_CONFIG) --libs $(WS_PKGS) 2>/dev/null) -lev   # libev has no .pc
ALL_CFLAGS = -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -MMD -MP \
             $(SANFLAGS) $(PKG_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = -pthread $(SANFLAGS) $(LDFLAGS)

# Source layout: fcgi/common/ is shared by both programs, fcgi/chat-fcgi/
# and fcgi/chat-ws/ are each program's own (see README.md, "Source layout").
COMMON := util log valid params json_names json_strict store store_sqlite store_sqlite_prune store_sqlite_mutex store_sqlite_ckpt store_pg store_pg_read store_pg_write render notify watch sendq listen cli prom
COMMON_OBJS := $(COMMON:%=$(B)/obj/common/%.o) $(B)/schema_sql.o $(B)/schema_pg_sql.o
FCGI_OBJS := $(patsubst %,$(B)/obj/chat-fcgi/%.o,main workers reply hold commit api route metrics retain) $(COMMON_OBJS)
WS_OBJS   := $(patsubst %,$(B)/obj/chat-ws/%.o,main conn rooms replay handshake ws sse http feed writer) $(COMMON_OBJS)
INC_COMMON := -iquote fcgi/common

.PHONY: all run cluster test bench fuzz fuzz-build install uninstall clean deps deps-test deps-cluster
all: $(B)/chat-fcgi $(B)/chat-ws

$(B)/obj/common/%.o: fcgi/common/%.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(INC_COMMON) -c -o $@ $<
$(B)/obj/chat-fcgi/%.o: fcgi/chat-fcgi/%.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -iquote fcgi/chat-fcgi $(INC_COMMON) -c -o $@ $<
$(B)/obj/chat-ws/%.o: fcgi/chat-ws/%.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(WS_CFLAGS) -iquote fcgi/chat-ws $(INC_COMMON) -c -o $@ $<

# The schemas are compiled in, so a new database gets its one without the
# repo: sql/schema.sql as schema_sql, sql/schema-pg.sql as schema_pg_sql.
$(B)/schema_sql.c: sql/schema.sql | $(B)
	$(Q){ echo 'const char schema_sql[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $<; echo ';'; } > $@
$(B)/schema_pg_sql.c: sql/schema-pg.sql | $(B)
	$(Q){ echo 'const char schema_pg_sql[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $<; echo ';'; } > $@
$(B)/schema_sql.o $(B)/schema_pg_sql.o: $(B)/%.o: $(B)/%.c
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(B)/chat-fcgi: $(FCGI_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(B)/chat-ws: $(WS_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(WS_LIBS) $(PKG_LIBS)

# The unit tests: the shared modules, and the parking lot of chat-fcgi.
UNIT_OBJS := $(patsubst %,$(B)/obj/unit/%.o,test_unit test_fields test_store test_hold)
$(B)/test_unit: $(UNIT_OBJS) $(patsubst %,$(B)/obj/chat-fcgi/%.o,hold reply metrics retain) $(COMMON_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lcmocka

$(B)/obj/unit/%.o: tests/unit/%.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -iquote fcgi/chat-fcgi $(INC_COMMON) -c -o $@ $<

$(B):
	$(Q)mkdir -p $@

-include $(wildcard $(B)/*.d $(B)/obj/*/*.d)

# Installs what is missing: as root with apt-get, otherwise says the line to run.
deps: PKGS_NEEDED = $(DEB_PKGS)
deps-test: PKGS_NEEDED = $(DEB_PKGS) $(TEST_PKGS) $(if $(shell command -v npm),,nodejs npm)
deps deps-test deps-cluster:
	$(Q)missing=""; \
	for p in $(PKGS_NEEDED); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  else \
	    echo "missing packages; run as root:  apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

# Several nodes on one private PostgreSQL (conf/cluster.sh, SPEC section 9).
NODES ?= 2
deps-cluster: PKGS_NEEDED = $(DEB_PKGS) postgresql-15
cluster: deps-cluster
	$(Q)$(MAKE) --no-print-directory all
	$(Q)NODES=$(NODES) PORT=$(PORT) BIN_DIR=$(B) conf/cluster.sh run var

run: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)PORT=$(PORT) BIN_DIR=$(B) conf/stack.sh run var

test: deps-test
	$(Q)$(MAKE) --no-print-directory all $(B)/test_unit
	$(Q)BIN_DIR=$(B) tests/run.sh

# libFuzzer targets of the parsers (clang); `make test` runs each briefly,
# `make fuzz` for FUZZ_SECONDS each (default 300).
FUZZ_SRC := $(patsubst %,fcgi/common/%.c,params json_names json_strict valid util render)
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_SRC) fcgi/common/*.h
	$(Q)mkdir -p build/fuzz
	$(Q)clang -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined \
	  $(INC_COMMON) $(PKG_CFLAGS) -o $@ $< $(FUZZ_SRC) $(PKG_LIBS)
fuzz-build: build/fuzz/fuzz_query build/fuzz/fuzz_json build/fuzz/fuzz_ws
fuzz: deps-test
	$(Q)FUZZ_SECONDS=$${FUZZ_SECONDS:-300} tests/fuzz/fuzz.sh

# Benchmarks report figures; they are never part of `make test`.
bench: deps-cluster
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BIN_DIR=$(B) tests/bench/run.sh

# Programs in BINDIR; schema, page, nginx examples and README in DATADIR;
# systemd units and the sysusers entry where systemd looks under PREFIX.
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/sql $(DESTDIR)$(DATADIR)/htdocs \
	  $(DESTDIR)$(DATADIR)/nginx $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	install -m 755 $(B)/chat-fcgi $(B)/chat-ws $(DESTDIR)$(BINDIR)/
	install -m 644 sql/*.sql $(DESTDIR)$(DATADIR)/sql/
	install -m 644 htdocs/* $(DESTDIR)$(DATADIR)/htdocs/
	install -m 644 conf/nginx/chat-*.conf $(DESTDIR)$(DATADIR)/nginx/
	install -m 644 README.md $(DESTDIR)$(DATADIR)/
	sed 's|/usr/local/bin/|$(BINDIR)/|; s|/usr/local/share/chat/|$(DATADIR)/|' conf/systemd/chat-fcgi.service > $(DESTDIR)$(UNITDIR)/chat-fcgi.service
	sed 's|/usr/local/bin/|$(BINDIR)/|; s|/usr/local/share/chat/|$(DATADIR)/|' conf/systemd/chat-ws.service > $(DESTDIR)$(UNITDIR)/chat-ws.service
	sed 's|/usr/local/share/chat/|$(DATADIR)/|' conf/systemd/chat-fcgi.socket > $(DESTDIR)$(UNITDIR)/chat-fcgi.socket
	chmod 644 $(DESTDIR)$(UNITDIR)/chat-fcgi.service $(DESTDIR)$(UNITDIR)/chat-ws.service $(DESTDIR)$(UNITDIR)/chat-fcgi.socket
	install -m 644 conf/systemd/chat.sysusers $(DESTDIR)$(SYSUSERSDIR)/chat.conf

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/chat-fcgi $(DESTDIR)$(BINDIR)/chat-ws
	rm -f $(DESTDIR)$(UNITDIR)/chat-fcgi.service $(DESTDIR)$(UNITDIR)/chat-fcgi.socket \
	  $(DESTDIR)$(UNITDIR)/chat-ws.service $(DESTDIR)$(SYSUSERSDIR)/chat.conf
	rm -rf $(DESTDIR)$(DATADIR)

clean:
	rm -rf build
