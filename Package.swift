// swift-tools-version:5.7
// SPDX-License-Identifier: MIT
//
// libcourier as a Swift package: the C library (module `Courier`, from
// include/module.modulemap) and the Objective-C binding (module
// `CourierObjC`, bindings/objc/include/module.modulemap).
//
// NOT BUILT HERE. This file was written on Debian 12, which has no Swift
// toolchain and no Xcode: `swift build` has never been run on it, and no
// app has consumed it. What was checked here is only the two module maps
// (`make check-modulemap` and `make check-objc-clang`, clang 14
// -fmodules) and the C and Objective-C
// sources themselves (make check, GNUstep). See docs/building-for-phones.md.
//
// The C target needs libstrophe (with expat), OpenSSL (libssl, libcrypto)
// and utf8proc for iOS: `scripts/build-phone-deps.sh ios` (a recipe, also
// NOT RUN here) builds them and `scripts/build-xcframework.sh deps` packs
// each as a static XCFramework under build/apple/; run both on a Mac
// before `swift build` or opening the package in Xcode. (Without SwiftPM:
// `scripts/build-xcframework.sh courier` makes Courier.xcframework.)
// SQLite is the system one (libsqlite3 ships with iOS and macOS), and so
// is libresolv.
//
// The library's sources are taken as the whole of lib/ (the one list,
// sources.mk, is what the Makefile and CMake read; lib/ holds nothing
// else that compiles), so a source added there needs no edit here.
import PackageDescription

let deps = "build/apple"

let package = Package(
    name: "Courier",
    platforms: [.iOS(.v13), .macOS(.v11)],
    products: [
        .library(name: "Courier", targets: ["Courier"]),
        .library(name: "CourierObjC", targets: ["CourierObjC"]),
    ],
    targets: [
        // Static XCFrameworks made by scripts/build-phone-deps.sh (headers
        // inside each).
        .binaryTarget(name: "strophe", path: "\(deps)/strophe.xcframework"),
        .binaryTarget(name: "ssl", path: "\(deps)/ssl.xcframework"),
        .binaryTarget(name: "crypto", path: "\(deps)/crypto.xcframework"),
        .binaryTarget(name: "utf8proc", path: "\(deps)/utf8proc.xcframework"),
        .binaryTarget(name: "expat", path: "\(deps)/expat.xcframework"),
        .target(
            name: "Courier",
            dependencies: ["strophe", "expat", "ssl", "crypto", "utf8proc"],
            path: ".",
            sources: ["lib"],
            // include/ holds courier.h and module.modulemap (module Courier).
            publicHeadersPath: "include",
            cSettings: [
                .headerSearchPath("lib"),
                .define("_GNU_SOURCE"),
                // No unsafeFlags (-Werror, -fvisibility=hidden): SwiftPM
                // refuses a dependency that has them. The warnings are
                // enforced by make check; the library is linked statically
                // into the app here, so visibility matters less.
            ],
            // libresolv: libstrophe's SRV lookups (res_query; its .pc has
            // Libs.private: -lresolv), which a static link must name.
            linkerSettings: [.linkedLibrary("sqlite3"), .linkedLibrary("resolv")]
        ),
        .target(
            name: "CourierObjC",
            dependencies: ["Courier"],
            path: "bindings/objc",
            exclude: ["compat", "test_objc.m", "README.md", "objc.mk"],
            sources: ["CourierClient.m"],
            // include/ holds CourierClient.h and its module.modulemap
            // (module CourierObjC), nothing else: the test-only stand-in
            // compat/dispatch-stub/dispatch/dispatch.h stays out of the
            // module and off the app's header search path.
            publicHeadersPath: "include",
            linkerSettings: [.linkedFramework("Foundation")]
        ),
    ],
    cLanguageStandard: .c11
)
