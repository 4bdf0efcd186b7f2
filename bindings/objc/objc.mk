# SPDX-License-Identifier: MIT
# Objective-C binding: included from the top Makefile (uses its STATIC, LIBS,
# BUILD, PKG_CFLAGS).
#   make check-objc   build libcourier_objc.a + test_objc with clang and
#                     GNUstep (manual retain/release), run the tests against
#                     a local Prosody, and syntax-check CourierClient.m and
#                     test_objc.m under ARC (check-objc-arc), with the
#                     nullability warnings, a dispatch stand-in and as a
#                     module (check-objc-clang), and run the delegateQueue
#                     code against that stand-in (check-objc-dispatch-stub)
# Debian packages: clang (14), libgnustep-base-dev, libblocksruntime-dev
# (gnustep-make comes with them; gnustep-config is used for the flags).

OBJC_DIR := bindings/objc
OBJC_OUT = $(BUILD)/objc
OBJC_CC ?= clang
# Debian's GNUstep is built on gcc's libobjc: clang needs gcc's objc/
# headers, the GNU runtime ABI, and a shim for <objc/blocks_runtime.h>
# (compat/). Debian's runtime has no ARC: tests use manual retain/release.
OBJC_GCC_INC := $(shell gcc -print-file-name=include)
OBJC_GS_FLAGS := $(shell gnustep-config --objc-flags 2>/dev/null)
OBJC_GS_LIBS := $(shell gnustep-config --base-libs 2>/dev/null)
OBJC_CFLAGS = $(filter-out -MMD -MP -I. -O2 -g,$(OBJC_GS_FLAGS)) -gdwarf-4 -O1 \
	-fblocks -I$(OBJC_DIR)/compat \
	-Wall -Wextra -Werror -Wno-unused-parameter -Iinclude -I$(OBJC_DIR)/include \
	$(PKG_CFLAGS)
OBJC_MRC_FLAGS = -fobjc-runtime=gcc -isystem $(OBJC_GCC_INC)
# ARC check: clang refuses ARC with the gcc runtime, so pretend GNUstep 2.0
# (only -fsyntax-only, nothing is linked) and use a copy of gcc's
# <objc/runtime.h> with its one ARC-invalid line (id->class_pointer) bridged.
OBJC_ARC_INC = $(OBJC_OUT)/arc-include
OBJC_ARC_FLAGS = -fobjc-runtime=gnustep-2.0 -fobjc-arc -isystem $(OBJC_ARC_INC) \
	-isystem $(OBJC_GCC_INC)
OBJC_LIB = $(OBJC_OUT)/libcourier_objc.a
OBJC_TEST = $(OBJC_OUT)/test_objc

.PHONY: objc check-objc check-objc-arc check-objc-clang check-objc-dispatch-stub

objc: $(OBJC_LIB)

$(OBJC_OUT)/CourierClient.o: $(OBJC_DIR)/CourierClient.m \
		$(OBJC_DIR)/include/CourierClient.h include/courier.h
	@mkdir -p $(OBJC_OUT)
	$(OBJC_CC) $(OBJC_CFLAGS) $(OBJC_MRC_FLAGS) -c $< -o $@

# The glue alone; link it with libcourier.a (see README for iOS).
$(OBJC_LIB): $(OBJC_OUT)/CourierClient.o
	rm -f $@
	ar rcs $@ $^

$(OBJC_OUT)/test_objc.o: $(OBJC_DIR)/test_objc.m $(OBJC_DIR)/include/CourierClient.h
	@mkdir -p $(OBJC_OUT)
	$(OBJC_CC) $(OBJC_CFLAGS) $(OBJC_MRC_FLAGS) -c $< -o $@

# -lBlocksRuntime before GNUstep base: both export _Block_copy and
# _NSConcreteStackBlock, and the first one linked wins. GNUstep base's
# (a stub for gcc's libobjc) returns clang's stack blocks uncopied, so a
# stored block would dangle; libBlocksRuntime's copies them (it does not
# retain captured objects, unlike Apple's: no Objective-C hooks here).
$(OBJC_TEST): $(OBJC_OUT)/test_objc.o $(OBJC_LIB) $(STATIC) $(OBJC_DIR)/objc.mk
	$(OBJC_CC) -o $@ $(OBJC_OUT)/test_objc.o $(OBJC_LIB) $(STATIC) $(LIBS) \
		-lBlocksRuntime $(OBJC_GS_LIBS)

$(OBJC_ARC_INC)/objc/runtime.h: $(OBJC_GCC_INC)/objc/runtime.h
	@mkdir -p $(dir $@)
	sed -e 's/return object->class_pointer;/return ((__bridge struct objc_object *)object)->class_pointer;/' \
		-e 's/#include "\(.*\)"/#include <objc\/\1>/' $< > $@

# The binding and its test (the blocks as an ARC app writes them: a block
# that names its own client strongly is a -Warc-retain-cycles error).
check-objc-arc: $(OBJC_ARC_INC)/objc/runtime.h
	set -e; for f in $(OBJC_DIR)/CourierClient.m $(OBJC_DIR)/test_objc.m; do \
		$(OBJC_CC) $(OBJC_CFLAGS) $(OBJC_ARC_FLAGS) -fsyntax-only $$f; done
	@echo "check-objc-arc: CourierClient.m and test_objc.m are ARC-clean"

# Stricter clang checks, each an error when it warns:
# - ARC with the nullability warnings (completeness: every pointer of the
#   header annotated; nullable passed where nonnull is declared);
# - the delegateQueue code (only compiled where <dispatch/dispatch.h>
#   exists: not on Debian 12) type-checked under ARC against
#   compat/dispatch-stub, a declaration-only stand-in with Apple's types;
# - CourierClient.h as a clang module (`@import CourierObjC;`), through
#   the module map SwiftPM uses, include/module.modulemap, under ARC; the
#   module must contain that header and no other (no dispatch stand-in).
OBJC_NULL_FLAGS = -Wnullability-completeness -Wnullability \
	-Wnullable-to-nonnull-conversion
OBJC_STUB_FLAGS = -I$(OBJC_DIR)/compat/dispatch-stub -DCOURIER_TEST_DISPATCH_STUB
OBJC_MOD_DIR = $(OBJC_OUT)/module
check-objc-clang: $(OBJC_ARC_INC)/objc/runtime.h
	set -e; for f in $(OBJC_DIR)/CourierClient.m $(OBJC_DIR)/test_objc.m; do \
		$(OBJC_CC) $(OBJC_CFLAGS) $(OBJC_ARC_FLAGS) $(OBJC_NULL_FLAGS) \
			-fsyntax-only $$f; \
		$(OBJC_CC) $(OBJC_CFLAGS) $(OBJC_ARC_FLAGS) $(OBJC_NULL_FLAGS) \
			$(OBJC_STUB_FLAGS) -fsyntax-only $$f; done
	rm -rf $(OBJC_MOD_DIR); mkdir -p $(OBJC_MOD_DIR)
	test "$$(ls $(OBJC_DIR)/include)" = "$$(printf 'CourierClient.h\nmodule.modulemap')"
	$(OBJC_CC) $(OBJC_CFLAGS) $(OBJC_ARC_FLAGS) $(OBJC_NULL_FLAGS) -fmodules \
		-fimplicit-module-maps -fmodules-cache-path=$(OBJC_MOD_DIR)/cache \
		-fmodule-map-file=$(OBJC_DIR)/include/module.modulemap \
		-fsyntax-only $(OBJC_DIR)/compat/import_module.m
	find $(OBJC_MOD_DIR)/cache -name 'CourierObjC-*.pcm' | grep -q .
	@echo "check-objc-clang: nullability complete, delegateQueue code" \
		"type-checked (stub), module CourierObjC" \
		"($(OBJC_DIR)/include/module.modulemap) imports (ARC)"

# The delegateQueue path run against the stub (test_objc.m's dispatch_async
# hands the work to a serial thread of its own): the binding and the test
# built again with compat/dispatch-stub; offline, no server.
OBJC_STUB_TEST = $(OBJC_OUT)/test_objc_dispatch_stub
$(OBJC_OUT)/stub-CourierClient.o: $(OBJC_DIR)/CourierClient.m \
		$(OBJC_DIR)/include/CourierClient.h $(OBJC_DIR)/compat/dispatch-stub/dispatch/dispatch.h
	@mkdir -p $(OBJC_OUT)
	$(OBJC_CC) $(OBJC_CFLAGS) $(OBJC_MRC_FLAGS) $(OBJC_STUB_FLAGS) -c $< -o $@
$(OBJC_OUT)/stub-test_objc.o: $(OBJC_DIR)/test_objc.m $(OBJC_DIR)/include/CourierClient.h \
		$(OBJC_DIR)/compat/dispatch-stub/dispatch/dispatch.h
	@mkdir -p $(OBJC_OUT)
	$(OBJC_CC) $(OBJC_CFLAGS) $(OBJC_MRC_FLAGS) $(OBJC_STUB_FLAGS) -c $< -o $@
$(OBJC_STUB_TEST): $(OBJC_OUT)/stub-test_objc.o $(OBJC_OUT)/stub-CourierClient.o \
		$(STATIC) $(OBJC_DIR)/objc.mk
	$(OBJC_CC) -o $@ $(OBJC_OUT)/stub-test_objc.o \
		$(OBJC_OUT)/stub-CourierClient.o $(STATIC) $(LIBS) \
		-lBlocksRuntime $(OBJC_GS_LIBS)
check-objc-dispatch-stub: $(OBJC_STUB_TEST)
	$(OBJC_STUB_TEST)
	@echo "check-objc-dispatch-stub: passed (a stand-in, not libdispatch)"

check-objc: check-objc-arc check-objc-clang check-objc-dispatch-stub $(OBJC_TEST)
	@rm -f $(OBJC_OUT)/test.log; set +e; \
	tests/integration/prosody.sh -- $(OBJC_TEST) \
		> $(OBJC_OUT)/test.log 2>&1; rc=$$?; \
	cat $(OBJC_OUT)/test.log; \
	if [ $$rc -ne 0 ]; then echo "check-objc: tests failed ($$rc)"; \
		exit $$rc; fi; \
	if grep -q 'live test skipped' $(OBJC_OUT)/test.log; then \
		echo "check-objc: the live test did not run"; exit 1; fi; \
	echo "check-objc: passed"
