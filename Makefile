# SPDX-License-Identifier: MIT
# libcourier: the entry point (CMakeLists.txt, for CMake trees, reads the same
# sources.mk). Targets: all check asan valgrind bench
# demo install uninstall clean. Variants re-invoke make into their own dir.

VERSION_MAJOR := $(shell sed -n 's/^\#define COURIER_VERSION_MAJOR \([0-9]*\)/\1/p' include/courier.h)
VERSION := $(shell sed -n 's/^\#define COURIER_VERSION "\(.*\)"/\1/p' include/courier.h)

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR ?=

CC ?= cc
# Optimised with debug info by default, as a library is shipped; override
# freely (the warnings stay errors at every level).
CFLAGS ?= -O2 -g
BUILD ?= build
# Where the libraries land: lib/ for the default build, the variant dir else.
OUT ?= $(if $(filter build,$(BUILD)),lib,$(BUILD))
SAN ?=

# libutf8proc (MIT): JIDs folded as the servers' nodeprep does (lib/util.c).
PKGS := libstrophe sqlite3 libcrypto libutf8proc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

SAN_FLAGS := $(if $(SAN),-fsanitize=$(SAN) -fno-omit-frame-pointer -g,)
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fPIC \
	-fvisibility=hidden -MMD -MP -Iinclude -Ilib $(PKG_CFLAGS) $(SAN_FLAGS) \
	$(CFLAGS)
ALL_LDFLAGS = $(SAN_FLAGS) $(LDFLAGS)
LIBS := $(PKG_LIBS) -lpthread

# The source list is shared with CMakeLists.txt (sources.mk).
include sources.mk
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)

SONAME := libcourier.so.$(VERSION_MAJOR)
SHARED := $(OUT)/libcourier.so
STATIC := $(OUT)/libcourier.a

UNIT_TESTS := test_core test_store test_codec test_api test_wire test_check \
	test_trust test_push
UNIT_BINS := $(UNIT_TESTS:%=$(BUILD)/tests/%)

.PHONY: all check check-unit check-headers check-exports check-integration \
	check-integration-nosm check-integration-tls11 check-fuzz-tree \
	check-valgrind check-portable check-chaos check-chaos-once chaos asan valgrind examples fuzz \
	bench demo install uninstall clean deps
all: $(SHARED) $(STATIC) $(OUT)/courier.pc

deps:
	@scripts/install-deps

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(OUT)/libcourier.so.$(VERSION): $(LIB_OBJS)
	@mkdir -p $(OUT)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $(ALL_LDFLAGS) \
		-o $@ $(LIB_OBJS) $(LIBS)

$(SHARED): $(OUT)/libcourier.so.$(VERSION)
	ln -sf libcourier.so.$(VERSION) $(OUT)/$(SONAME)
	ln -sf $(SONAME) $@

$(STATIC): $(LIB_OBJS)
	@mkdir -p $(OUT)
	rm -f $@
	ar rcs $@ $(LIB_OBJS)

# courier.pc from the PREFIX/LIBDIR/INCLUDEDIR of the make run that writes
# it: the build tree's copy, and again by install (so that `make` then
# `make install PREFIX=X` installs a .pc that says X).
define write_pc
	@mkdir -p $(dir $(1))
	@printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' \
		'includedir=$(INCLUDEDIR)' '' 'Name: courier' \
		'Description: reliable 1:1 XMPP chat messages for mobile apps' \
		'Version: $(VERSION)' 'Requires.private: $(PKGS)' \
		'Libs: -L$${libdir} -lcourier' 'Libs.private: -lpthread' \
		'Cflags: -I$${includedir}' > $(1)
endef

$(OUT)/courier.pc: include/courier.h Makefile
	$(call write_pc,$@)

# ---- tests -----------------------------------------------------------
# test_core links only the pure core and util: a stray dependency breaks it.
$(BUILD)/tests/test_core: $(BUILD)/tests/unit/test_core.o $(BUILD)/lib/core.o \
		$(BUILD)/lib/util.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ -lutf8proc -lcmocka

$(BUILD)/tests/test_store: $(BUILD)/tests/unit/test_store.o \
		$(BUILD)/lib/store.o $(BUILD)/lib/util.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ -lsqlite3 -lutf8proc -lcmocka

$(BUILD)/tests/test_codec: $(BUILD)/tests/unit/test_codec.o \
		$(BUILD)/lib/codec.o $(BUILD)/lib/util.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

# test_wire: lib/hostile.c alone: the wire accounting on real loopback
# sockets, the allocator under libstrophe's rendering.
$(BUILD)/tests/test_wire: $(BUILD)/tests/unit/test_wire.o \
		$(BUILD)/lib/hostile.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

$(BUILD)/tests/test_api: $(BUILD)/tests/unit/test_api.o $(STATIC)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(STATIC) $(LIBS) -lcmocka

# test_trust: lib/trust.c alone (the name check, the chain for the app).
$(BUILD)/tests/test_trust: $(BUILD)/tests/unit/test_trust.o \
		$(BUILD)/lib/trust.o $(BUILD)/lib/util.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

# test_check: the store check after an unclean close (lib/check.c) and the
# calls around it, through the static library (its test hook is internal).
$(BUILD)/tests/test_check: $(BUILD)/tests/unit/test_check.o $(STATIC)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(STATIC) $(LIBS) -lcmocka

# test_push: push (lib/push.c) without a server: arguments, what is
# stored, the stanzas, the answers; through the static library.
$(BUILD)/tests/test_push: $(BUILD)/tests/unit/test_push.o $(STATIC)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(STATIC) $(LIBS) -lcmocka

# behaviour.md §9: a program built against the 0.1 header (a copy, in
# tests/abi/v0_1) runs against today's library. Compiled without
# -Iinclude, so it sees only the old header.
$(BUILD)/tests/abi_old_program: tests/abi/old_program.c tests/abi/v0_1/courier.h $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Werror $(if $(SAN),-fsanitize=$(SAN) -g,-O2) \
		-Itests/abi/v0_1 -o $@ $< $(STATIC) $(LIBS)

INTEG_BIN := $(BUILD)/tests/test_live
$(INTEG_BIN): $(BUILD)/tests/integration/test_live.o \
		$(BUILD)/tests/integration/relay.o \
		$(BUILD)/tests/integration/spawn.o $(STATIC)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STATIC) $(LIBS) -lcmocka

# A real Prosody on 127.0.0.1, started and stopped by PID by the script.
check-integration: $(INTEG_BIN)
	tests/integration/prosody.sh -- $(INTEG_BIN)

# The same suite against a Prosody without mod_smacks: SENT by ping (§1),
# and without XEP-0357 push (mod_cloud_notify): an <enable/> is refused.
check-integration-nosm: $(INTEG_BIN)
	COURIER_TEST_NO_SM=1 COURIER_TEST_NO_PUSH=1 \
		tests/integration/prosody.sh -- $(INTEG_BIN)

# A Prosody speaking TLS 1.1 only: the client must never log in (§10).
check-integration-tls11: $(INTEG_BIN)
	COURIER_TEST_TLS11=1 COURIER_TEST_FILTER='test_tls_below_1_2*' \
		tests/integration/prosody.sh -- $(INTEG_BIN)

CHAOS_BIN := $(BUILD)/tests/chaos_run
$(CHAOS_BIN): $(BUILD)/tests/chaos/chaos.o \
		$(BUILD)/tests/integration/relay.o \
		$(BUILD)/tests/integration/spawn.o $(STATIC)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STATIC) $(LIBS)

# Exactly-once at the app's seams (own ids, app_confirms) under kills.
ONCE_BIN := $(BUILD)/tests/chaos_once
$(ONCE_BIN): $(BUILD)/tests/chaos/once.o \
		$(BUILD)/tests/integration/relay.o \
		$(BUILD)/tests/integration/spawn.o $(STATIC)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STATIC) $(LIBS)

# Faults at random through relays of our own: short form in make check.
check-chaos: $(CHAOS_BIN) check-chaos-once
	CHAOS_N=$${CHAOS_N:-1000} tests/integration/prosody.sh -- $(CHAOS_BIN)

check-chaos-once: $(ONCE_BIN)
	ONCE_N=$${ONCE_N:-800} tests/integration/prosody.sh -- $(ONCE_BIN)

chaos: deps
	$(MAKE) all $(CHAOS_BIN) $(ONCE_BIN)
	CHAOS_N=10000 tests/integration/prosody.sh -- $(CHAOS_BIN)
	ONCE_N=10000 ONCE_KILL_PM=5 tests/integration/prosody.sh -- $(ONCE_BIN)

check-unit: $(UNIT_BINS) $(BUILD)/tests/fuzz_replay $(BUILD)/tests/abi_old_program
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done
	@d=$$(mktemp -d) && $(BUILD)/tests/abi_old_program $$d; rc=$$?; \
		rm -rf $$d; exit $$rc
	$(BUILD)/tests/fuzz_replay tests/fuzz/corpus

# The fuzz target, replayed over its corpus with the normal build.
FUZZ_OBJS := $(BUILD)/tests/fuzz/fuzz_stanza.o $(BUILD)/lib/codec.o \
	$(BUILD)/lib/core.o $(BUILD)/lib/util.o
$(BUILD)/tests/fuzz_replay: $(BUILD)/tests/fuzz/replay.o $(FUZZ_OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# libFuzzer (clang) for FUZZ_SECONDS (60). The source tree is only read:
# libFuzzer writes new inputs to its first corpus dir (build/fuzz/corpus)
# and crashes to build/fuzz/; copy a find worth keeping into
# tests/fuzz/corpus by hand (make check replays it).
FUZZ_SECONDS ?= 60
fuzz:
	@scripts/install-deps fuzz
	@mkdir -p build/fuzz/corpus
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
		-Iinclude -Ilib $(PKG_CFLAGS) -o build/fuzz/fuzz_stanza \
		tests/fuzz/fuzz_stanza.c lib/codec.c lib/core.c lib/util.c $(LIBS)
	build/fuzz/fuzz_stanza -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
		-artifact_prefix=build/fuzz/ build/fuzz/corpus tests/fuzz/corpus
	@echo "fuzz: new inputs in build/fuzz/corpus ($$(ls build/fuzz/corpus | \
		wc -l) files), artifacts (if any) in build/fuzz/"
	$(MAKE) fuzz-stream

# make fuzz leaves the source tree untouched (a short run; needs clang).
check-fuzz-tree:
	tests/fuzz/tree_untouched.sh 10

# courier.h alone, strict C99 and as C++ (STYLE: header hygiene).
check-headers:
	@mkdir -p $(BUILD)
	printf '#include "courier.h"\nint main(void){return 0;}\n' > $(BUILD)/hdr.c
	$(CC) -std=c99 -pedantic -Wall -Wextra -Werror -Iinclude \
		-o $(BUILD)/hdr_c $(BUILD)/hdr.c
	cp $(BUILD)/hdr.c $(BUILD)/hdr.cpp
	c++ -std=c++11 -pedantic -Wall -Wextra -Werror -Iinclude \
		-o $(BUILD)/hdr_cpp $(BUILD)/hdr.cpp

# Only courier_* symbols leave the shared library.
check-exports: $(SHARED)
	@bad=$$(nm -D --defined-only $(SHARED) | awk '{print $$3}' | \
		grep -v '^courier_' || true); \
	if [ -n "$$bad" ]; then echo "exported non-courier symbols:"; \
		echo "$$bad"; exit 1; fi; echo "exports: only courier_*"

# The non-Linux code paths (Darwin: a self-pipe instead of eventfd; old
# Android: ids from /dev/urandom), built and unit-tested here in a variant
# dir.
check-portable:
	$(MAKE) BUILD=build/portable \
		CFLAGS='-DCOURIER_NO_EVENTFD -DCOURIER_URANDOM' \
		build/portable/tests/test_api
	build/portable/tests/test_api

check: deps
	$(MAKE) all examples check-headers check-exports check-unit \
		check-portable
	$(MAKE) asan
	$(MAKE) check-integration check-integration-nosm check-hostile \
		check-integration-tls11 check-chaos check-jni check-interop \
		check-integration-ejabberd check-objc check-arm64 \
		check-cmake check-install check-modulemap
	@echo "check: all suites passed"

# Unit and integration suites again under AddressSanitizer + UBSan (and
# LeakSanitizer: a leak fails the run).
# The live suite's one suppression (tests/lsan.supp) is a libstrophe leak
# on a stream that ends mid-login; the unit tests run without it, so the
# codec's stanza handling keeps full leak checking.
asan:
	$(MAKE) BUILD=build/asan SAN=address,undefined check-unit
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
		$(MAKE) BUILD=build/asan SAN=address,undefined check-integration
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
		$(MAKE) BUILD=build/asan SAN=address,undefined check-fuzz-stream \
		check-hostile

valgrind: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== valgrind $$t"; \
		valgrind -q --leak-check=full --errors-for-leak-kinds=definite \
		--error-exitcode=1 $$t; done

# The integration suite under memcheck: zero errors, no definite leaks.
check-valgrind: $(INTEG_BIN)
	COURIER_TEST_TIME_SCALE=10 tests/integration/prosody.sh -- \
		valgrind -q --leak-check=full --num-callers=40 \
		--suppressions=tests/valgrind.supp \
		--errors-for-leak-kinds=definite --error-exitcode=1 $(INTEG_BIN)

# ---- install ---------------------------------------------------------
install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
		$(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 include/courier.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 755 $(OUT)/libcourier.so.$(VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libcourier.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libcourier.so
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	$(call write_pc,$(DESTDIR)$(PKGCONFIGDIR)/courier.pc)

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/courier.h \
		$(DESTDIR)$(LIBDIR)/libcourier.so.$(VERSION) \
		$(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libcourier.so \
		$(DESTDIR)$(LIBDIR)/libcourier.a $(DESTDIR)$(PKGCONFIGDIR)/courier.pc

EXAMPLES := $(BUILD)/examples/courier-chat $(BUILD)/examples/courier-bot \
	$(BUILD)/examples/demo
examples: $(EXAMPLES)

$(BUILD)/examples/courier-%: $(BUILD)/examples/%.o $(STATIC)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(STATIC) $(LIBS)

$(BUILD)/examples/demo: $(BUILD)/examples/demo.o \
		$(BUILD)/tests/integration/relay.o $(STATIC)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STATIC) $(LIBS)

# A local Prosody (temp dir, private CA, own port), two clients, the ticks.
demo: deps
	$(MAKE) all $(BUILD)/examples/demo
	tests/integration/prosody.sh -- $(BUILD)/examples/demo

# bench-run comes from bench/bench.mk (issue: benchmarks).
bench: deps
	$(MAKE) all bench-run

clean:
	rm -rf build lib/libcourier.so* lib/libcourier.a lib/courier.pc

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
# Fragments of their own parts (benchmarks, interop suites).
-include bench/bench.mk
-include tests/integration/interop.mk
-include bindings/jni/jni.mk
-include bindings/objc/objc.mk
-include tests/arm64/arm64.mk
-include tests/integration/hostile.mk
-include tests/buildsys/buildsys.mk
