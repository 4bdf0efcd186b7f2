#!/bin/sh
# SPDX-License-Identifier: MIT
# make check-cmake: CMakeLists.txt for the host, aarch64 and armhf (Debian's
# cross gcc; the unit tests and the fuzz corpus replay run under qemu-user
# through CMAKE_CROSSCOMPILING_EMULATOR). For each: configure, build, the
# ELF machine, soname and exports of libcourier.so (and libcourier_jni.so),
# ctest, then `cmake --install` into a temp prefix and an app tree
# (tests/buildsys/consumer) that does find_package(courier), links
# courier::courier and courier::courier_static, and runs both (ctest, so
# under qemu-user when cross); on the host, clang also imports the installed
# module map (include/courier/module.modulemap). Build dirs:
# build/cmake/<target>/.
set -eu
top=$(pwd)
out=build/cmake
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
jobs=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
gen=""
command -v ninja >/dev/null 2>&1 && gen="-G Ninja"

fail() { echo "check-cmake: $*" >&2; exit 1; }

# $1 name, $2 toolchain file or "", $3 readelf machine, $4 tool prefix
one() {
    name=$1 tc=$2 machine=$3 tp=$4
    b=$out/$name
    start=$(date +%s)
    tcarg=""
    [ -n "$tc" ] && tcarg="-DCMAKE_TOOLCHAIN_FILE=$top/$tc"
    echo "== check-cmake: $name"
    # A fresh configure each time: a cache from another tree is not reused.
    rm -rf "$b"
    # shellcheck disable=SC2086
    cmake -S . -B "$b" $gen $tcarg -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_INSTALL_PREFIX=/usr/local >"$b.configure.log" 2>&1 ||
        { cat "$b.configure.log"; fail "$name: configure failed"; }
    cmake --build "$b" --parallel "$jobs"
    so=$b/libcourier.so
    readelf -h "$so" | grep -q "Machine: *$machine" ||
        fail "$name: $so is not a $machine ELF"
    readelf -d "$so" | grep -q 'SONAME.*\[libcourier\.so\.0\]' ||
        fail "$name: soname is not libcourier.so.0"
    bad=$("${tp}nm" -D --defined-only "$so" | awk '{print $3}' |
        grep -v '^courier_' || true)
    [ -z "$bad" ] || fail "$name: exported non-courier symbols: $bad"
    if [ -f "$b/libcourier_jni.so" ]; then
        exp=$("${tp}nm" -D --defined-only "$b/libcourier_jni.so" |
            awk '{print $3}' | sort | tr '\n' ' ')
        [ "$exp" = "JNI_OnLoad JNI_OnUnload " ] ||
            fail "$name: libcourier_jni.so exports: $exp"
    else
        fail "$name: no libcourier_jni.so (jni.h not found?)"
    fi
    ctest --test-dir "$b" --output-on-failure
    # Installed package, consumed the CMake way.
    rm -rf "${tmp:?}/$name"
    cmake --install "$b" --prefix "$tmp/$name/prefix" >/dev/null
    for f in include/courier.h include/courier/module.modulemap \
            lib/cmake/courier/courierConfig.cmake \
            lib/cmake/courier/courierConfigVersion.cmake \
            lib/pkgconfig/courier.pc lib/libcourier.a lib/libcourier.so.0; do
        [ -e "$tmp/$name/prefix/$f" ] || fail "$name: not installed: $f"
    done
    grep -qx "prefix=$tmp/$name/prefix" "$tmp/$name/prefix/lib/pkgconfig/courier.pc" ||
        fail "$name: the installed courier.pc names another prefix"
    [ ! -e "$tmp/$name/prefix/include/module.modulemap" ] ||
        fail "$name: a module map installed at the top of include/"
    # The installed module map, as an app's clang or Swift reads it
    # (-I<prefix>/include/courier): `@import Courier;` builds the module.
    if [ "$name" = host ]; then    # clang: scripts/install-deps
        clang -fmodules -fimplicit-module-maps -Werror \
            -fmodules-cache-path="$tmp/$name/modcache" \
            -I"$tmp/$name/prefix/include/courier" \
            -fsyntax-only tests/buildsys/modules.m
        find "$tmp/$name/modcache" -name 'Courier-*.pcm' | grep -q . ||
            fail "$name: the installed module map did not build module Courier"
    fi
    # shellcheck disable=SC2086
    cmake -S tests/buildsys/consumer -B "$tmp/$name/app" $gen $tcarg \
        -DCMAKE_PREFIX_PATH="$tmp/$name/prefix" >"$tmp/$name.app.log" 2>&1 ||
        { cat "$tmp/$name.app.log"; fail "$name: consumer configure failed"; }
    cmake --build "$tmp/$name/app" --parallel "$jobs"
    ctest --test-dir "$tmp/$name/app" --output-on-failure
    echo "== check-cmake: $name passed in $(( $(date +%s) - start )) s"
}

one host "" 'Advanced Micro Devices X86-64' ""
one aarch64 cmake/toolchains/aarch64-linux-gnu.cmake AArch64 \
    aarch64-linux-gnu-
one armhf cmake/toolchains/arm-linux-gnueabihf.cmake ARM \
    arm-linux-gnueabihf-
# The phones' static-dependency mode (COURIER_STATIC_DEPS, which
# COURIER_DEPS_PREFIX turns on), configure only: every dependency must
# resolve to an archive. (Linking it needs PIC archives, which the phone
# recipe builds and Debian's are not.)
echo "== check-cmake: COURIER_STATIC_DEPS=ON resolves archives (configure)"
# shellcheck disable=SC2086
cmake -S . -B "$tmp/static" $gen -DCOURIER_STATIC_DEPS=ON \
    -DCOURIER_BUILD_TESTS=OFF >"$tmp/static.log" 2>&1 ||
    { cat "$tmp/static.log"; fail "static deps: configure failed"; }
for v in OPENSSL_CRYPTO_LIBRARY SQLite3_LIBRARY COURIER_STATIC_expat \
        COURIER_STATIC_ssl COURIER_STATIC_crypto pkgcfg_lib_STROPHE_strophe \
        pkgcfg_lib_UTF8PROC_utf8proc; do
    grep -q "^$v:FILEPATH=.*\.a$" "$tmp/static/CMakeCache.txt" ||
        fail "static deps: $v is not an archive"
done
echo "check-cmake: host, aarch64 and armhf built, tested and consumed"
