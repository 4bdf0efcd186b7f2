# SPDX-License-Identifier: MIT
# Interop suites (issue 6), included by the top Makefile:
#   make check-interop               test_interop under Prosody, then ejabberd
#   make check-integration-ejabberd  the integration suite under ejabberd
# Each harness starts its own server on 127.0.0.1 and stops it by PID.
# Guarded: `make -f Makefile -f tests/integration/interop.mk` reads it twice.
ifndef COURIER_INTEROP_MK
COURIER_INTEROP_MK := 1

INTEROP_BIN := $(BUILD)/tests/test_interop
$(INTEROP_BIN): $(BUILD)/tests/integration/test_interop.o \
		$(BUILD)/tests/integration/relay.o \
		$(BUILD)/tests/integration/spawn.o $(STATIC)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STATIC) $(LIBS) -lcmocka

.PHONY: check-interop check-interop-prosody check-interop-ejabberd \
	check-integration-ejabberd

check-interop: check-interop-prosody check-interop-ejabberd

check-interop-prosody: $(INTEROP_BIN)
	tests/integration/prosody.sh -- $(INTEROP_BIN)

check-interop-ejabberd: $(INTEROP_BIN)
	tests/integration/ejabberd.sh -- $(INTEROP_BIN)

check-integration-ejabberd: $(BUILD)/tests/test_live
	tests/integration/ejabberd.sh -- $(BUILD)/tests/test_live

endif
