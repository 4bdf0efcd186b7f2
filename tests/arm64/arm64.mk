# SPDX-License-Identifier: MIT
# arm64 (aarch64, the CPU of every phone): included from the top Makefile
# (uses its UNIT_TESTS). The library and the unit tests are cross-built with
# Debian's aarch64-linux-gnu-gcc against the arm64 multiarch -dev packages,
# then run under qemu-user.
#   make check-arm64   scripts/install-deps arm64; build build/arm64/
#                      (libcourier.so/.a, tests, and the JNI glue as an
#                      arm64 libcourier_jni.so compiled against Android's
#                      jni.h); run tests/unit/*.c and the fuzz corpus
#                      replay under qemu-aarch64
# Debian packages (scripts/install-deps arm64): gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross, qemu-user, and libstrophe-dev libsqlite3-dev
# libssl-dev libcmocka-dev libutf8proc-dev for :arm64 (dpkg
# --add-architecture arm64).
# What differs from x86-64 and is thus worth a run: plain char is unsigned,
# long double, alignment, the arm64 builds of SQLite/OpenSSL/libstrophe.
# (qemu-user keeps the host's memory order: races are not what it finds.)

ARM64_CC ?= aarch64-linux-gnu-gcc
ARM64_QEMU ?= qemu-aarch64
ARM64_BUILD := build/arm64
# pkg-config reads the arm64 .pc files (same sysroot: multiarch).
ARM64_PKG_CONFIG_LIBDIR := \
	/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
ARM64_UNIT_BINS = $(UNIT_TESTS:%=$(ARM64_BUILD)/tests/%)
ARM64_BINS = $(ARM64_UNIT_BINS) $(ARM64_BUILD)/tests/fuzz_replay
# The JNI glue as the NDK builds it: Android's jni.h, __ANDROID__ defined
# (glibc instead of bionic: a link check, not an Android build).
ARM64_JNI_INC ?= /usr/include/android/nativehelper
ARM64_JNI_SO = $(ARM64_BUILD)/jni-android/libcourier_jni.so

.PHONY: arm64 arm64-jni check-arm64

# The whole library too (the .so links with --no-undefined against the
# arm64 libraries), in its own build dir: the host build is not touched.
arm64:
	@scripts/install-deps arm64
	env PKG_CONFIG_LIBDIR=$(ARM64_PKG_CONFIG_LIBDIR) $(MAKE) \
		BUILD=$(ARM64_BUILD) CC=$(ARM64_CC) SAN= all $(ARM64_BINS)
	$(MAKE) arm64-jni

arm64-jni: $(ARM64_JNI_SO)

$(ARM64_BUILD)/jni-android/courier_jni.o: bindings/jni/courier_jni.c \
		include/courier.h
	@mkdir -p $(dir $@)
	$(ARM64_CC) -std=c11 -D_GNU_SOURCE -D__ANDROID__ -Wall -Wextra -Werror \
		-fPIC -fvisibility=hidden -Iinclude -I$(ARM64_JNI_INC) -c $< -o $@

$(ARM64_JNI_SO): $(ARM64_BUILD)/jni-android/courier_jni.o \
		$(ARM64_BUILD)/libcourier.a
	$(ARM64_CC) -shared -Wl,--no-undefined -Wl,--exclude-libs,ALL -o $@ \
		$< $(ARM64_BUILD)/libcourier.a -lstrophe -lsqlite3 -lcrypto \
		-lutf8proc -lpthread

# qemu-aarch64 refuses a host binary anyway; the Machine check says why.
check-arm64: arm64
	@set -e; for f in $(ARM64_BINS) $(ARM64_BUILD)/libcourier.so \
			$(ARM64_JNI_SO); do \
		readelf -h $$f | grep -q 'Machine: *AArch64' || { \
			echo "check-arm64: $$f is not an arm64 ELF"; exit 1; }; done
	@exp=$$(aarch64-linux-gnu-nm -D --defined-only $(ARM64_JNI_SO) | \
		awk '{print $$3}' | sort | tr '\n' ' '); \
	if [ "$$exp" != "JNI_OnLoad JNI_OnUnload " ]; then \
		echo "check-arm64: libcourier_jni.so exports: $$exp"; exit 1; fi
	@set -e; for t in $(ARM64_UNIT_BINS); do \
		echo "== $(ARM64_QEMU) $$t"; $(ARM64_QEMU) $$t; done
	$(ARM64_QEMU) $(ARM64_BUILD)/tests/fuzz_replay tests/fuzz/corpus
	@echo "check-arm64: unit tests passed on aarch64 (qemu-user)"
