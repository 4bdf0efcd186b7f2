#!/bin/sh
# SPDX-License-Identifier: MIT
#
# RECIPE -- NOT RUN HERE. libcourier's dependencies as static, position-
# independent archives for Android ABIs and iOS, then libcourier itself
# through its CMakeLists.txt. Written on Debian 12, which has no Android NDK
# and no Xcode: not one line below has been executed. The versions, URLs,
# configure targets and flags are what the upstream build docs describe;
# expect to fix details on the first real run, and please record them in
# docs/building-for-phones.md. What *is* checked here (make check-cmake)
# is the same CMakeLists.txt cross-built for aarch64 and armhf Linux.
#
#   scripts/build-phone-deps.sh android   (Linux or macOS host with the NDK)
#   scripts/build-phone-deps.sh ios       (macOS with Xcode)
#
# Output:
#   build/phone-deps/android/<abi>/{include,lib}   one prefix per ABI, with
#       libssl.a libcrypto.a libexpat.a libstrophe.a libsqlite3.a
#       libutf8proc.a, their .pc files, and libcourier.so/.a +
#       libcourier_jni.so (from CMakeLists.txt, COURIER_DEPS_PREFIX)
#   build/phone-deps/ios/<slice>/{include,lib}      the same archives for
#       ios-arm64, iossim-arm64, iossim-x86_64 (SQLite: iOS ships it)
#   build/apple/*.xcframework   one per dependency (Package.swift uses them)
#
# Every variable is set below; each can be overridden from the environment.
# CC and CFLAGS hold several words on purpose; .pc lines are literal.
# shellcheck disable=SC2086,SC2016
set -eu

# ---- pinned versions ----------------------------------------------------
# OpenSSL 3.0.x: an LTS line, and the version Debian 12
# ships here (3.0.22) -- the one make check ran against. NOTE: upstream
# support for 3.0 ended on 2026-09-07 (OpenSSL's release policy), so an
# app that ships should move to the 3.5 LTS line: set OPENSSL_VERSION and
# its SHA-256 (below), then re-test. Not done here: no 3.5 tarball or
# checksum could be verified on the machines this was written on.
OPENSSL_VERSION=${OPENSSL_VERSION:-3.0.22}
# SQLite amalgamation 3.46.1 (the "3460100" form is the download name).
# make check here ran against Debian's 3.40.1.
SQLITE_VERSION=${SQLITE_VERSION:-3460100}
SQLITE_YEAR=${SQLITE_YEAR:-2024}
# libstrophe 0.12.x (what Debian 12 ships: make check ran against it) with
# OpenSSL for TLS, expat for XML.
LIBSTROPHE_VERSION=${LIBSTROPHE_VERSION:-0.12.2}
EXPAT_VERSION=${EXPAT_VERSION:-2.6.4}
# utf8proc 2.x (MIT): one C file.
UTF8PROC_VERSION=${UTF8PROC_VERSION:-2.9.0}

# SHA-256 of each download; fetch() stops on a mismatch. How each was
# checked (nothing could be downloaded from the build machine):
#   OpenSSL 3.0.22     the file itself, as Debian's signed source archive
#                      ships it (openssl_3.0.22.orig.tar.gz, with upstream's
#                      detached signature); the same sum is pinned by
#                      Homebrew's openssl@3.0 formula.
#   libstrophe 0.12.2  Debian's signed source package 0.12.2-1 lists this
#                      sum for the upstream .tar.xz (shipped with upstream's
#                      detached signature).
#   expat 2.6.4        the sum several independent build recipes pin for
#                      this release's .tar.xz (expat publishes signatures,
#                      not sums).
#   utf8proc 2.9.0     Debian's signed source index (orig.tar.gz), Homebrew,
#                      Spack and Termux all pin this sum for GitHub's
#                      v2.9.0 tag archive.
#   SQLite             EMPTY: sqlite.org publishes SHA3-256, not SHA-256,
#                      and no SHA-256 of this zip could be checked. Fill it
#                      in before the first Android run (iOS does not fetch
#                      SQLite): download the zip, compare its SHA3-256
#                        python3 -c 'import hashlib,sys;print(hashlib.sha3_256(open(sys.argv[1],"rb").read()).hexdigest())' FILE
#                      with the one sqlite.org's download page lists for it,
#                      then paste `sha256sum FILE` (macOS: shasum -a 256)
#                      here, or export SQLITE_SHA256.
# With a pinned sum empty the script stops and prints the sum it got;
# COURIER_ALLOW_UNVERIFIED=1 lets it go on with the unchecked file (for a
# first look only, never for a build that ships).
OPENSSL_SHA256=${OPENSSL_SHA256:-67ebca7e50d17383028045486653492195b83db95f8558709701bb47b5c1ef81}
SQLITE_SHA256=${SQLITE_SHA256:-}
LIBSTROPHE_SHA256=${LIBSTROPHE_SHA256:-b3c79b6deeafafc0f622ba3ee3ca67e9a8e7d75edb102588c6b6f52b38c9fa4b}
EXPAT_SHA256=${EXPAT_SHA256:-a695629dae047055b37d50a0ff4776d1d45d0a4c842cf4ccee158441f55ff7ee}
UTF8PROC_SHA256=${UTF8PROC_SHA256:-18c1626e9fc5a2e192311e36b3010bfc698078f692888940f1fa150547abb0c1}
COURIER_ALLOW_UNVERIFIED=${COURIER_ALLOW_UNVERIFIED:-0}

OPENSSL_URL=https://www.openssl.org/source/openssl-$OPENSSL_VERSION.tar.gz
SQLITE_URL=https://www.sqlite.org/$SQLITE_YEAR/sqlite-amalgamation-$SQLITE_VERSION.zip
LIBSTROPHE_URL=https://github.com/strophe/libstrophe/releases/download/$LIBSTROPHE_VERSION/libstrophe-$LIBSTROPHE_VERSION.tar.xz
EXPAT_TAG=R_$(echo "$EXPAT_VERSION" | tr . _)
EXPAT_URL=https://github.com/libexpat/libexpat/releases/download/$EXPAT_TAG/expat-$EXPAT_VERSION.tar.xz
UTF8PROC_URL=https://github.com/JuliaStrings/utf8proc/archive/refs/tags/v$UTF8PROC_VERSION.tar.gz

# ---- Android ------------------------------------------------------------
# NDK r26d (26.3.11579264), as Android Studio's SDK manager installs it.
ANDROID_NDK_VERSION=${ANDROID_NDK_VERSION:-26.3.11579264}
ANDROID_SDK_ROOT=${ANDROID_SDK_ROOT:-$HOME/Android/Sdk}
ANDROID_NDK_HOME=${ANDROID_NDK_HOME:-$ANDROID_SDK_ROOT/ndk/$ANDROID_NDK_VERSION}
# API 24 (Android 7.0): minSdk of the app; also what makes
# _FILE_OFFSET_BITS=64 fully supported on 32-bit ABIs.
ANDROID_API=${ANDROID_API:-24}
ANDROID_ABIS=${ANDROID_ABIS:-arm64-v8a armeabi-v7a x86_64}
# The NDK's prebuilt host dir: darwin-x86_64 on every Mac (Apple silicon
# too), linux-x86_64 on Linux.
case "$(uname -s)" in
Darwin) ANDROID_HOST_TAG=${ANDROID_HOST_TAG:-darwin-x86_64} ;;
*)      ANDROID_HOST_TAG=${ANDROID_HOST_TAG:-linux-x86_64} ;;
esac
ANDROID_TOOLCHAIN=$ANDROID_NDK_HOME/toolchains/llvm/prebuilt/$ANDROID_HOST_TAG

# ---- iOS ----------------------------------------------------------------
IOS_MIN_VERSION=${IOS_MIN_VERSION:-13.0}
IOS_SLICES=${IOS_SLICES:-ios-arm64 iossim-arm64 iossim-x86_64}

# ---- where --------------------------------------------------------------
TOP=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$TOP/build/phone-deps}
SRC=$WORK/src
APPLE_OUT=${APPLE_OUT:-$TOP/build/apple}
JOBS=${JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}

die() { echo "build-phone-deps: $*" >&2; exit 1; }

sha256() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
    else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

# fetch URL SHA256 -> $SRC/<file name>
fetch() {
    url=$1 want=$2 f=$SRC/$(basename "$1")
    mkdir -p "$SRC"
    [ -f "$f" ] || curl -fL --retry 3 -o "$f.part" "$url"
    [ -f "$f" ] || mv "$f.part" "$f"
    got=$(sha256 "$f")
    if [ -z "$want" ]; then
        [ "$COURIER_ALLOW_UNVERIFIED" = 1 ] ||
            die "no pinned SHA-256 for $url (the file's is $got): check it upstream, then set it in this script or the environment (see the comment above OPENSSL_SHA256)"
    elif [ "$got" != "$want" ]; then
        die "$f: SHA-256 $got, expected $want"
    fi
}

# fetch_all [sqlite]: SQLite only where it is built (Android; iOS has its own)
fetch_all() {
    fetch "$OPENSSL_URL" "$OPENSSL_SHA256"
    [ "${1:-}" != sqlite ] || fetch "$SQLITE_URL" "$SQLITE_SHA256"
    fetch "$LIBSTROPHE_URL" "$LIBSTROPHE_SHA256"
    fetch "$EXPAT_URL" "$EXPAT_SHA256"
    fetch "$UTF8PROC_URL" "$UTF8PROC_SHA256"
}

# unpack ARCHIVE DIR: a fresh source tree per target (autotools builds in
# place).
unpack() {
    rm -rf "$2"; mkdir -p "$2"
    case "$1" in
    *.zip) (cd "$2" && unzip -q "$1") ;;
    *)     tar -xf "$1" -C "$2" ;;
    esac
}

# ---- one target: CC/AR/RANLIB/HOST_TRIPLE/OPENSSL_TARGET/PREFIX set -----
# CFLAGS carries -fPIC: the archives end up inside libcourier.so.
build_expat() {
    b=$WORK/tmp/$TAG/expat; unpack "$SRC/expat-$EXPAT_VERSION.tar.xz" "$b"
    (cd "$b/expat-$EXPAT_VERSION" &&
     ./configure --host="$HOST_TRIPLE" --prefix="$PREFIX" --disable-shared \
        --enable-static --with-pic --without-docbook --without-examples \
        --without-tests --without-xmlwf CC="$CC" AR="$AR" RANLIB="$RANLIB" CFLAGS="$CFLAGS" &&
     make -j"$JOBS" && make install)
}

build_openssl() {
    b=$WORK/tmp/$TAG/openssl; unpack "$SRC/openssl-$OPENSSL_VERSION.tar.gz" "$b"
    # no-shared: archives only; OpenSSL still compiles them PIC (its
    # default "pic" feature). Android targets read ANDROID_NDK_ROOT and
    # find clang on PATH.
    # CC from the environment overrides the target's compiler (OpenSSL 3
    # reads CC/AR/RANLIB): it carries the arch, sysroot and minimum OS.
    (cd "$b/openssl-$OPENSSL_VERSION" &&
     CC="$CC" AR="$AR" RANLIB="$RANLIB" \
     ./Configure "$OPENSSL_TARGET" $OPENSSL_EXTRA no-shared no-tests \
        no-ui-console --prefix="$PREFIX" --libdir=lib &&
     make -j"$JOBS" build_libs && make install_dev)
}

build_strophe() {
    b=$WORK/tmp/$TAG/strophe
    unpack "$SRC/libstrophe-$LIBSTROPHE_VERSION.tar.xz" "$b"
    # TLS: libstrophe uses OpenSSL unless told --disable-tls (its dummy TLS)
    # or another backend; neither is passed, and the archive is checked
    # below. XML: expat (the default), found through PKG_CONFIG_LIBDIR.
    (cd "$b/libstrophe-$LIBSTROPHE_VERSION" &&
     PKG_CONFIG_LIBDIR="$PREFIX/lib/pkgconfig" ./configure \
        --host="$HOST_TRIPLE" --prefix="$PREFIX" --disable-shared \
        --enable-static --with-pic --disable-examples \
        CC="$CC" AR="$AR" RANLIB="$RANLIB" CFLAGS="$CFLAGS" &&
     make -j"$JOBS" libstrophe.la && make install-libLTLIBRARIES \
        install-includeHEADERS install-pkgconfigDATA)
    grep -q openssl "$PREFIX/lib/pkgconfig/libstrophe.pc" ||
        die "$TAG: libstrophe was not configured with OpenSSL"
}

build_sqlite() {
    b=$WORK/tmp/$TAG/sqlite; unpack "$SRC/sqlite-amalgamation-$SQLITE_VERSION.zip" "$b"
    d=$b/sqlite-amalgamation-$SQLITE_VERSION
    # Thread-safe (the default, said here for the reader); no extension
    # loading on a phone.
    $CC $CFLAGS -O2 -DSQLITE_THREADSAFE=1 -DSQLITE_OMIT_LOAD_EXTENSION \
        -c "$d/sqlite3.c" -o "$b/sqlite3.o"
    mkdir -p "$PREFIX/lib/pkgconfig" "$PREFIX/include"
    rm -f "$PREFIX/lib/libsqlite3.a"
    $AR rcs "$PREFIX/lib/libsqlite3.a" "$b/sqlite3.o"
    cp "$d/sqlite3.h" "$PREFIX/include/"
}

build_utf8proc() {
    b=$WORK/tmp/$TAG/utf8proc; unpack "$SRC/v$UTF8PROC_VERSION.tar.gz" "$b"
    d=$b/utf8proc-$UTF8PROC_VERSION
    $CC $CFLAGS -O2 -DUTF8PROC_STATIC -c "$d/utf8proc.c" -o "$b/utf8proc.o"
    mkdir -p "$PREFIX/lib/pkgconfig" "$PREFIX/include"
    rm -f "$PREFIX/lib/libutf8proc.a"
    $AR rcs "$PREFIX/lib/libutf8proc.a" "$b/utf8proc.o"
    cp "$d/utf8proc.h" "$PREFIX/include/"
    # CMakeLists.txt finds utf8proc with pkg-config.
    printf '%s\n' "prefix=$PREFIX" 'libdir=${prefix}/lib' \
        'includedir=${prefix}/include' '' 'Name: libutf8proc' \
        'Description: Unicode normalization (static)' \
        "Version: $UTF8PROC_VERSION" 'Libs: -L${libdir} -lutf8proc' \
        'Cflags: -I${includedir} -DUTF8PROC_STATIC' \
        > "$PREFIX/lib/pkgconfig/libutf8proc.pc"
}

# ---- Android ------------------------------------------------------------
android() {
    [ -d "$ANDROID_TOOLCHAIN" ] ||
        die "no NDK toolchain at $ANDROID_TOOLCHAIN (set ANDROID_NDK_HOME)"
    fetch_all sqlite
    export ANDROID_NDK_ROOT="$ANDROID_NDK_HOME"    # OpenSSL reads this name
    PATH=$ANDROID_TOOLCHAIN/bin:$PATH; export PATH
    AR=$ANDROID_TOOLCHAIN/bin/llvm-ar
    RANLIB=$ANDROID_TOOLCHAIN/bin/llvm-ranlib
    for abi in $ANDROID_ABIS; do
        case "$abi" in
        arm64-v8a)   HOST_TRIPLE=aarch64-linux-android
                     OPENSSL_TARGET=android-arm64 ;;
        armeabi-v7a) HOST_TRIPLE=armv7a-linux-androideabi
                     OPENSSL_TARGET=android-arm ;;
        x86_64)      HOST_TRIPLE=x86_64-linux-android
                     OPENSSL_TARGET=android-x86_64 ;;
        *) die "unknown ABI $abi" ;;
        esac
        TAG=android-$abi
        PREFIX=$WORK/android/$abi
        CC=$ANDROID_TOOLCHAIN/bin/$HOST_TRIPLE$ANDROID_API-clang
        CFLAGS="-fPIC -O2"
        OPENSSL_EXTRA="-D__ANDROID_API__=$ANDROID_API"
        build_expat; build_openssl; build_strophe; build_sqlite
        build_utf8proc
        # libcourier with the NDK's CMake toolchain file (no unit tests:
        # they run under qemu in make check-cmake, not on a device).
        cmake -S "$TOP" -B "$WORK/tmp/$TAG/courier" \
            -DCMAKE_TOOLCHAIN_FILE="$ANDROID_NDK_HOME/build/cmake/android.toolchain.cmake" \
            -DANDROID_ABI="$abi" -DANDROID_PLATFORM="android-$ANDROID_API" \
            -DCMAKE_BUILD_TYPE=Release -DCOURIER_BUILD_TESTS=OFF \
            -DCOURIER_DEPS_PREFIX="$PREFIX" -DCMAKE_INSTALL_PREFIX="$PREFIX"
        cmake --build "$WORK/tmp/$TAG/courier" --parallel "$JOBS"
        cmake --install "$WORK/tmp/$TAG/courier"
        echo "build-phone-deps: $abi -> $PREFIX"
    done
}

# ---- iOS ----------------------------------------------------------------
ios() {
    command -v xcrun >/dev/null 2>&1 || die "no xcrun: iOS needs macOS + Xcode"
    fetch_all
    for slice in $IOS_SLICES; do
        case "$slice" in
        ios-arm64)     sdk=iphoneos arch=arm64
                       target=arm64-apple-ios$IOS_MIN_VERSION
                       OPENSSL_TARGET=ios64-xcrun ;;
        iossim-arm64)  sdk=iphonesimulator arch=arm64
                       target=arm64-apple-ios$IOS_MIN_VERSION-simulator
                       OPENSSL_TARGET=iossimulator-xcrun ;;
        iossim-x86_64) sdk=iphonesimulator arch=x86_64
                       target=x86_64-apple-ios$IOS_MIN_VERSION-simulator
                       OPENSSL_TARGET=iossimulator-xcrun ;;
        *) die "unknown slice $slice" ;;
        esac
        TAG=$slice
        PREFIX=$WORK/ios/$slice
        case "$arch" in
        arm64) HOST_TRIPLE=aarch64-apple-darwin ;;
        *)     HOST_TRIPLE=$arch-apple-darwin ;;
        esac
        CC="$(xcrun -sdk $sdk -f clang) -isysroot $(xcrun -sdk $sdk --show-sdk-path) -target $target"
        AR=$(xcrun -sdk $sdk -f ar)
        RANLIB=$(xcrun -sdk $sdk -f ranlib)
        CFLAGS="-fPIC -O2"
        OPENSSL_EXTRA=""    # CC's -target carries arch and min version
        # SQLite: the system libsqlite3 (Package.swift links it).
        build_expat; build_openssl; build_strophe; build_utf8proc
        echo "build-phone-deps: $slice -> $PREFIX"
    done
    # Package.swift's binary targets: one static XCFramework per library
    # (the two simulator slices merged with lipo), then Courier's own.
    "$TOP/scripts/build-xcframework.sh" deps
    "$TOP/scripts/build-xcframework.sh" courier
}

case "${1:-}" in
android) android ;;
ios)     ios ;;
*) echo "usage: $0 android|ios   (a recipe: see docs/building-for-phones.md)" >&2
   exit 2 ;;
esac
