# SPDX-License-Identifier: MIT
# Hostile input (behaviour.md §11, issue 13), included by the top Makefile:
#   make check-hostile   the suite under a real Prosody (+ a fake server)
# Guarded: a second inclusion is a no-op.
ifndef COURIER_HOSTILE_MK
COURIER_HOSTILE_MK := 1

HOSTILE_BIN := $(BUILD)/tests/test_hostile
$(HOSTILE_BIN): $(BUILD)/tests/integration/test_hostile.o \
		$(BUILD)/tests/integration/fakeserver.o \
		$(BUILD)/tests/integration/relay.o $(STATIC)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STATIC) $(LIBS) -lcmocka

# Sanitizer builds are slower at the hostile streams' work: their time
# bounds stretch (the suites' COURIER_TEST_TIME_SCALE).
HOSTILE_SCALE = $${COURIER_TEST_TIME_SCALE:-$(if $(SAN),10,1)}

.PHONY: check-hostile check-fuzz-stream fuzz-stream
check-hostile: $(HOSTILE_BIN)
	COURIER_TEST_TIME_SCALE=$(HOSTILE_SCALE) \
		$(if $(SAN),COURIER_TEST_SANITIZED=1) \
		tests/integration/prosody.sh -- $(HOSTILE_BIN)

# The whole-path fuzz target (issue 13 item 8): server bytes through a real
# stream into the whole library; its corpus replayed (make check, asan).
FUZZ_STREAM_BIN := $(BUILD)/tests/fuzz_stream_replay
$(FUZZ_STREAM_BIN): $(BUILD)/tests/fuzz/replay.o \
		$(BUILD)/tests/fuzz/fuzz_stream.o \
		$(BUILD)/tests/integration/fakeserver.o $(STATIC)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STATIC) $(LIBS)

$(BUILD)/tests/fuzz/fuzz_stream.o: ALL_CFLAGS += -Itests/integration

check-fuzz-stream: $(FUZZ_STREAM_BIN)
	$(FUZZ_STREAM_BIN) tests/fuzz/stream_corpus

# libFuzzer for FUZZ_SECONDS; new inputs go to build/fuzz/stream_corpus
# (first directory), the seeds in the source tree stay read-only.
fuzz-stream:
	@scripts/install-deps fuzz
	@mkdir -p build/fuzz/stream_corpus
	clang -std=c11 -D_GNU_SOURCE -g -O1 \
		-fsanitize=fuzzer,address,undefined -Iinclude -Ilib \
		-Itests/integration $(PKG_CFLAGS) -o build/fuzz/fuzz_stream \
		tests/fuzz/fuzz_stream.c tests/integration/fakeserver.c \
		$(LIB_SRCS) $(LIBS)
	build/fuzz/fuzz_stream -max_total_time=$(FUZZ_SECONDS) \
		-max_len=65536 -timeout=30 build/fuzz/stream_corpus \
		tests/fuzz/stream_corpus

endif
