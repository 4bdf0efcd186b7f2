# SPDX-License-Identifier: MIT
# Hostile input (SPEC §11, issue 13), included by the top Makefile:
#   make check-hostile   the suite under a real Prosody (+ a fake server)
# Guarded: a second inclusion is a no-op.
ifndef COURIER_HOSTILE_MK
COURIER_HOSTILE_MK := 1

HOSTILE_BIN := $(BUILD)/tests/test_hostile
$(HOSTILE_BIN): $(BUILD)/tests/integration/test_hostile.o \
		$(BUILD)/tests/integration/fakeserver.o $(STATIC)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STATIC) $(LIBS) -lcmocka

.PHONY: check-hostile
check-hostile: $(HOSTILE_BIN)
	tests/integration/prosody.sh -- $(HOSTILE_BIN)

endif
