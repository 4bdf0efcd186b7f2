# SPDX-License-Identifier: MIT
# Benchmarks (issue 7), included by the top Makefile: `make bench` builds
# the library, then runs `bench-run`. The library is built again for the
# benchmark (BENCH_CFLAGS, -O2 -g like the default, in its own BENCH_BUILD):
# the references it is compared with (libstrophe, SQLite) are Debian's -O2
# builds. Knobs (environment): BENCH_N, BENCH_RUNS, BENCH_ENQ_N,
# BENCH_HISTORY, BENCH_IDLE_S, BENCH_N1, BENCH_SLIX, BENCH_TIMEOUT,
# BENCH_SECTIONS, BENCH_GOALS_N, BENCH_GOALS_RUNS (see bench/bench.c).
# Guarded: safe to include twice.
ifndef COURIER_BENCH_MK
COURIER_BENCH_MK := 1

BENCH_CFLAGS ?= -O2 -g
BENCH_BUILD ?= build/bench-O2

BENCH_SRCS := bench/bench.c bench/clients.c bench/util.c \
	tests/integration/spawn.c
BENCH_OBJS := $(BENCH_SRCS:%.c=$(BUILD)/%.o)
BENCH_BIN := $(BUILD)/bench/courier-bench

$(BENCH_BIN): $(BENCH_OBJS) $(STATIC)
	$(CC) $(ALL_LDFLAGS) -o $@ $(BENCH_OBJS) $(STATIC) $(LIBS)

.PHONY: bench-run bench-bin
# The benchmark program and the library under it, optimised, in a variant
# directory of their own.
bench-bin:
	$(MAKE) BUILD=$(BENCH_BUILD) CFLAGS='$(BENCH_CFLAGS)' \
		$(BENCH_BUILD)/bench/courier-bench

# A private Prosody on 127.0.0.1 (tests/integration/prosody.sh), stopped by
# PID when the run ends.
bench-run: bench-bin
	tests/integration/prosody.sh -- $(BENCH_BUILD)/bench/courier-bench

endif
