# SPDX-License-Identifier: MIT
# The library's sources, the one list: the Makefile includes this file and
# CMakeLists.txt parses it (file(STRINGS) + regex: keep the form
# `LIB_SRCS := path.c ...`, with `\` continuations, nothing else on the
# lines). Add a source here and both builds pick it up.
LIB_SRCS := lib/util.c lib/core.c lib/store.c lib/codec.c lib/engine.c \
	lib/session.c lib/courier.c lib/hostile.c lib/history.c lib/trust.c \
	lib/check.c lib/push.c
