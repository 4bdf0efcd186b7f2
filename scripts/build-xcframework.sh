#!/bin/sh
# SPDX-License-Identifier: MIT
#
# NOT RUN HERE -- a recipe. Assembles XCFrameworks with xcodebuild, which
# exists only on macOS with Xcode; this was written on Debian 12 (no Xcode,
# no Swift) and has never been executed. See docs/building-for-phones.md.
#
#   scripts/build-xcframework.sh deps      one static XCFramework per
#       dependency (strophe, ssl, crypto, expat, utf8proc) from the slices
#       scripts/build-phone-deps.sh ios left in build/phone-deps/ios/
#   scripts/build-xcframework.sh courier   libcourier.a for each slice
#       (CMakeLists.txt with Unix Makefiles, CMAKE_SYSTEM_NAME=iOS,
#       COURIER_DEPS_PREFIX on that slice's deps), then build/apple/Courier.xcframework with courier.h
#       and module.modulemap as its headers (module Courier)
#
# An XCFramework holds one library per platform variant: the device slice
# (ios-arm64) as is, the two simulator slices (arm64, x86_64) merged into
# one fat archive with lipo first.
# Every variable is set below; each can be overridden from the environment.
set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$TOP/build/phone-deps}
APPLE_OUT=${APPLE_OUT:-$TOP/build/apple}
IOS_MIN_VERSION=${IOS_MIN_VERSION:-13.0}
JOBS=${JOBS:-$(sysctl -n hw.ncpu 2>/dev/null || echo 2)}
DEVICE=$WORK/ios/ios-arm64
SIM_ARM64=$WORK/ios/iossim-arm64
SIM_X86_64=$WORK/ios/iossim-x86_64
SIM_FAT=$WORK/ios/iossim-fat

die() { echo "build-xcframework: $*" >&2; exit 1; }
command -v xcodebuild >/dev/null 2>&1 ||
    die "no xcodebuild: this needs macOS with Xcode (NOT RUN on Linux)"

# xcframework NAME LIB HEADERS_DIR: device + fat simulator archive.
xcframework() {
    name=$1 lib=$2 hdrs=$3
    mkdir -p "$SIM_FAT/lib" "$APPLE_OUT"
    lipo -create "$SIM_ARM64/lib/$lib" "$SIM_X86_64/lib/$lib" \
        -output "$SIM_FAT/lib/$lib"
    rm -rf "$APPLE_OUT/$name.xcframework"
    xcodebuild -create-xcframework \
        -library "$DEVICE/lib/$lib" -headers "$hdrs" \
        -library "$SIM_FAT/lib/$lib" -headers "$hdrs" \
        -output "$APPLE_OUT/$name.xcframework"
}

# Headers of one dependency, copied apart so that each XCFramework carries
# only its own.
headers_of() {
    d=$WORK/ios/headers/$1; rm -rf "$d"; mkdir -p "$d"; shift
    for h in "$@"; do cp -R "$DEVICE/include/$h" "$d/"; done
    echo "$d"
}

deps() {
    for s in "$DEVICE" "$SIM_ARM64" "$SIM_X86_64"; do
        [ -d "$s/lib" ] || die "missing $s: run scripts/build-phone-deps.sh ios"
    done
    xcframework strophe libstrophe.a "$(headers_of strophe strophe.h)"
    # OpenSSL's headers go with libcrypto; libssl uses the same ones.
    xcframework crypto libcrypto.a "$(headers_of crypto openssl)"
    xcframework ssl libssl.a "$(headers_of ssl)"
    xcframework expat libexpat.a \
        "$(headers_of expat expat.h expat_config.h expat_external.h)"
    xcframework utf8proc libutf8proc.a "$(headers_of utf8proc utf8proc.h)"
}

courier() {
    for slice in ios-arm64 iossim-arm64 iossim-x86_64; do
        case "$slice" in
        ios-arm64)     sysroot=iphoneos arch=arm64 ;;
        iossim-arm64)  sysroot=iphonesimulator arch=arm64 ;;
        iossim-x86_64) sysroot=iphonesimulator arch=x86_64 ;;
        esac
        b=$WORK/tmp/$slice/courier
        # Unix Makefiles, not -G Xcode: courier_static is made of object
        # libraries only ($<TARGET_OBJECTS>), which CMake warns the Xcode
        # generator may not handle. CMAKE_SYSTEM_NAME=iOS with a Makefile
        # generator is a plain cross build: clang from the SDK named by
        # CMAKE_OSX_SYSROOT (xcrun resolves iphoneos/iphonesimulator), one
        # architecture per build dir, the archive at the top of it.
        # (Ninja works the same: CMAKE_GENERATOR=Ninja.)
        cmake -S "$TOP" -B "$b" -G "${CMAKE_GENERATOR:-Unix Makefiles}" \
            -DCMAKE_SYSTEM_NAME=iOS -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_OSX_SYSROOT="$sysroot" -DCMAKE_OSX_ARCHITECTURES="$arch" \
            -DCMAKE_OSX_DEPLOYMENT_TARGET="$IOS_MIN_VERSION" \
            -DCOURIER_BUILD_TESTS=OFF -DCOURIER_BUILD_JNI=OFF \
            -DCOURIER_DEPS_PREFIX="$WORK/ios/$slice" \
            -DCMAKE_INSTALL_PREFIX="$WORK/ios/$slice"
        cmake --build "$b" --target courier_static --parallel "$JOBS"
        mkdir -p "$WORK/ios/$slice/lib"
        cp "$b/libcourier.a" "$WORK/ios/$slice/lib/"
    done
    hdrs=$WORK/ios/headers/courier; rm -rf "$hdrs"; mkdir -p "$hdrs"
    cp "$TOP/include/courier.h" "$TOP/include/module.modulemap" "$hdrs/"
    xcframework Courier libcourier.a "$hdrs"
    echo "build-xcframework: $APPLE_OUT/Courier.xcframework"
}

case "${1:-}" in
deps)    deps ;;
courier) courier ;;
*) echo "usage: $0 deps|courier   (NOT RUN HERE: needs Xcode)" >&2; exit 2 ;;
esac
