#!/bin/sh
# SPDX-License-Identifier: MIT
# make check-install: `make install` into a temp PREFIX (and a temp DESTDIR
# with another PREFIX) after a plain `make`, then build a program with
# `pkg-config --cflags --libs courier` against what was installed and run
# it. The installed courier.pc must name the PREFIX given to install, not
# the one of the earlier build (/usr/local).
set -eu
MAKE=${MAKE:-make}
CC=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "check-install: $*" >&2; exit 1; }

# $1: what to print, $2: the prefix the .pc must name, $3: pkg-config dir,
# $4: lib dir to run with; PKG_CONFIG_SYSROOT_DIR set by the caller or not.
build_and_run() {
    # The file itself (pkg-config would prepend PKG_CONFIG_SYSROOT_DIR).
    [ -f "$3/courier.pc" ] || fail "$1: no courier.pc in $3"
    got=$(sed -n 's/^prefix=//p' "$3/courier.pc")
    [ "$got" = "$2" ] || fail "$1: courier.pc says prefix=$got, not $2"
    flags=$(PKG_CONFIG_PATH="$3" pkg-config --cflags --libs courier)
    echo "check-install: $1: pkg-config --cflags --libs courier: $flags"
    # shellcheck disable=SC2086
    $CC -std=c11 -Wall -Wextra -Werror -o "$tmp/prog" tests/buildsys/prog.c \
        $flags
    LD_LIBRARY_PATH="$4" "$tmp/prog"
    # The program ran against the installed copy, not lib/.
    LD_LIBRARY_PATH="$4" ldd "$tmp/prog" | grep -q "=> $4/libcourier.so" ||
        fail "$1: the program did not load $4/libcourier.so"
}

# A plain build first (PREFIX=/usr/local), as a user would.
$MAKE -s all

# 1. make install PREFIX=X
p1="$tmp/prefix"
$MAKE -s install PREFIX="$p1"
build_and_run "PREFIX=$p1" "$p1" "$p1/lib/pkgconfig" "$p1/lib"

# 2. make install DESTDIR=D PREFIX=/opt/courier: the .pc names /opt/courier;
# pkg-config's sysroot dir maps it to the staged copy.
stage="$tmp/stage"
$MAKE -s install DESTDIR="$stage" PREFIX=/opt/courier
PKG_CONFIG_SYSROOT_DIR="$stage" build_and_run \
    "DESTDIR=$stage PREFIX=/opt/courier" /opt/courier \
    "$stage/opt/courier/lib/pkgconfig" "$stage/opt/courier/lib"
echo "check-install: passed"
