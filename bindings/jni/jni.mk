# SPDX-License-Identifier: MIT
# Java (JNI) binding: included from the top Makefile (uses its CC, STATIC,
# LIBS, BUILD, PKG_CFLAGS). Plain javac/jar, no Maven.
#   make check-jni    build libcourier_jni.so + courier.jar, run the tests
#                     (JUnit 4, -Xcheck:jni) against a local Prosody, and
#                     compile the glue against Android's jni.h
# Debian packages: default-jdk-headless (or openjdk-17-jdk-headless), junit4
# (pulls libhamcrest-java), android-libnativehelper-dev,
# libjetbrains-annotations-java (compile time only).

JNI_DIR := bindings/jni
JNI_OUT = $(BUILD)/jni
# The JDK of the javac on PATH (OpenJDK 17 on Debian 12).
JNI_JDK ?= $(shell dirname "$$(dirname "$$(readlink -f "$$(command -v javac)")")")
JNI_JAVA_SRCS := $(wildcard $(JNI_DIR)/src/org/libcourier/*.java)
JNI_TEST_SRCS := $(wildcard $(JNI_DIR)/test/org/libcourier/*.java)
JNI_SO = $(JNI_OUT)/libcourier_jni.so
JNI_JAR = $(JNI_OUT)/courier.jar
JNI_TEST_JAR = $(JNI_OUT)/courier-test.jar
JUNIT_CP := /usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar
# org.jetbrains.annotations.NotNull/Nullable (Debian's
# libjetbrains-annotations-java 23, class file version 52): what Kotlin reads
# as non-null / nullable types. Retention CLASS: on the compile classpath
# only; the tests run without it (CourierTest checks that).
JNI_ANNOT_JAR := /usr/share/java/org.jetbrains.annotations-java8.jar
# --release 8: the language level Android's toolchain takes everywhere.
JAVAC_FLAGS := --release 8 -Xlint:all,-options -Werror -encoding UTF-8
JNI_CFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fPIC \
	-fvisibility=hidden -Iinclude -I$(JNI_JDK)/include \
	-I$(JNI_JDK)/include/linux $(PKG_CFLAGS) $(CFLAGS)
JNI_JAVA_CMD = env COURIER_JNI_LIVE=1 java -Xcheck:jni -Djava.library.path=$(JNI_OUT) \
	-cp $(JNI_JAR):$(JNI_TEST_JAR):$(JUNIT_CP) \
	org.junit.runner.JUnitCore org.libcourier.CourierTest

# Android's jni.h (Debian android-libnativehelper-dev) declares
# AttachCurrentThread*(JavaVM*, JNIEnv**, ...): the glue must compile
# against it as the NDK does (__ANDROID__ defined).
ANDROID_JNI_INC := /usr/include/android/nativehelper

.PHONY: check-jni check-jni-android check-jni-annotations jni

jni: $(JNI_SO) $(JNI_JAR)

$(JNI_OUT)/courier_jni.o: $(JNI_DIR)/courier_jni.c include/courier.h
	@mkdir -p $(JNI_OUT)
	$(CC) $(JNI_CFLAGS) -c $< -o $@

# Only JNI_OnLoad/JNI_OnUnload leave the .so: the static library's
# courier_* symbols stay inside (--exclude-libs).
$(JNI_SO): $(JNI_OUT)/courier_jni.o $(STATIC)
	$(CC) -shared -Wl,--no-undefined -Wl,--exclude-libs,ALL $(LDFLAGS) \
		-o $@ $< $(STATIC) $(LIBS)

$(JNI_JAR): $(JNI_JAVA_SRCS)
	rm -rf $(JNI_OUT)/classes
	@mkdir -p $(JNI_OUT)/classes
	@test -f $(JNI_ANNOT_JAR) || { echo "jni: $(JNI_ANNOT_JAR) missing" \
		"(libjetbrains-annotations-java: scripts/install-deps)"; exit 1; }
	javac $(JAVAC_FLAGS) -cp $(JNI_ANNOT_JAR) -d $(JNI_OUT)/classes \
		$(JNI_JAVA_SRCS)
	jar cf $@ -C $(JNI_OUT)/classes .

$(JNI_TEST_JAR): $(JNI_TEST_SRCS) $(JNI_JAR)
	rm -rf $(JNI_OUT)/test-classes
	@mkdir -p $(JNI_OUT)/test-classes
	javac $(JAVAC_FLAGS) -cp $(JNI_JAR):$(JUNIT_CP):$(JNI_ANNOT_JAR) \
		-d $(JNI_OUT)/test-classes $(JNI_TEST_SRCS)
	jar cf $@ -C $(JNI_OUT)/test-classes .

check-jni-android:
	@test -f $(ANDROID_JNI_INC)/jni.h || { echo "check-jni-android:" \
		"$(ANDROID_JNI_INC)/jni.h missing (android-libnativehelper-dev)"; \
		exit 1; }
	$(CC) -std=c11 -D_GNU_SOURCE -D__ANDROID__ -Wall -Wextra -Werror \
		-Iinclude -I$(ANDROID_JNI_INC) -fsyntax-only $(JNI_DIR)/courier_jni.c

# The annotations are in the class files Kotlin reads (javap shows the
# invisible annotations javac kept): the public API's String parameters and
# returns, the listener's parameters, the Config's nullable strings.
check-jni-annotations: $(JNI_JAR)
	@set -e; cd $(JNI_OUT)/classes; \
	for c in Courier Listener Config MessageInfo Entry Conversation Outgoing; do \
		javap -v -p org/libcourier/$$c.class > ../javap-$$c.txt; done; \
	grep -q 'Lorg/jetbrains/annotations/NotNull;' ../javap-Courier.txt; \
	grep -q 'Lorg/jetbrains/annotations/Nullable;' ../javap-Courier.txt; \
	grep -q 'Lorg/jetbrains/annotations/NotNull;' ../javap-Listener.txt; \
	grep -q 'Lorg/jetbrains/annotations/Nullable;' ../javap-Config.txt; \
	grep -q 'Lorg/jetbrains/annotations/NotNull;' ../javap-MessageInfo.txt; \
	grep -q 'Lorg/jetbrains/annotations/NotNull;' ../javap-Entry.txt; \
	grep -q 'Lorg/jetbrains/annotations/NotNull;' ../javap-Conversation.txt; \
	grep -q 'Lorg/jetbrains/annotations/Nullable;' ../javap-Outgoing.txt; \
	if grep -q 'RuntimeVisible.*Annotations' ../javap-Courier.txt; then \
		echo "check-jni-annotations: runtime-visible annotations"; exit 1; fi
	@echo "check-jni-annotations: NotNull/Nullable in the class files (CLASS retention)"

# The tests run under a private Prosody (the live test needs it; the others
# run offline). Any -Xcheck:jni warning (a missed exception check, a local
# reference overflow on the loop thread) fails the run.
check-jni: check-jni-android check-jni-annotations $(JNI_SO) $(JNI_JAR) \
		$(JNI_TEST_JAR)
	@rm -f $(JNI_OUT)/test.log; set +e; \
	tests/integration/prosody.sh -- $(JNI_JAVA_CMD) \
		> $(JNI_OUT)/test.log 2>&1; rc=$$?; \
	cat $(JNI_OUT)/test.log; \
	if [ $$rc -ne 0 ]; then echo "check-jni: tests failed ($$rc)"; \
		exit $$rc; fi; \
	if grep -n -E 'WARNING in native method|WARNING: JNI|FATAL ERROR in native method' \
		$(JNI_OUT)/test.log; then \
		echo "check-jni: -Xcheck:jni reported the lines above"; exit 1; fi; \
	echo "check-jni: passed"
