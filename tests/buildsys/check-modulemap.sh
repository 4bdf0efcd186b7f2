#!/bin/sh
# SPDX-License-Identifier: MIT
# make check-modulemap: include/module.modulemap (module Courier) read by
# clang -fmodules, as Xcode and Swift read it: a C file whose
# #include <courier.h> becomes a module import, and an Objective-C file
# with `@import Courier;`. Each must build the module (a Courier-*.pcm in
# a fresh cache proves the map was used, not a textual include).
set -eu
CLANG=${CLANG:-clang}
command -v "$CLANG" >/dev/null 2>&1 || {
    echo "check-modulemap: no $CLANG (scripts/install-deps installs clang)" >&2
    exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flags="-fmodules -fimplicit-module-maps -Werror -Wall -Wextra -Iinclude"
for src in tests/buildsys/modules.c tests/buildsys/modules.m; do
    cache="$tmp/$(basename "$src")"
    case "$src" in
    *.c) std="-std=c11" ;;
    *.m) std="" ;;
    esac
    # shellcheck disable=SC2086
    "$CLANG" $std $flags -fmodules-cache-path="$cache" -fsyntax-only "$src"
    find "$cache" -name 'Courier-*.pcm' | grep -q . || {
        echo "check-modulemap: $src did not build module Courier" >&2
        exit 1; }
    echo "check-modulemap: $src imports module Courier"
done
# A module map that names a missing header must fail the same check (the
# check can fail).
mkdir -p "$tmp/bad"
printf 'module Courier {\n    header "nope.h"\n    export *\n}\n' \
    > "$tmp/bad/module.modulemap"
if "$CLANG" -fmodules -fmodules-cache-path="$tmp/badcache" \
        -I"$tmp/bad" -fsyntax-only tests/buildsys/modules.m 2>/dev/null; then
    echo "check-modulemap: a broken module map was accepted" >&2
    exit 1
fi
echo "check-modulemap: passed"
