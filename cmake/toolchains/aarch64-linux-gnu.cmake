# SPDX-License-Identifier: MIT
# Cross build for aarch64-linux-gnu with Debian's cross gcc and the multiarch
# -dev packages (scripts/install-deps arm64): the
# target's libraries live in /usr/lib/aarch64-linux-gnu beside the host's, so
# the sysroot is / and pkg-config reads only the target's .pc files.
# The unit tests run under qemu-user (ctest uses the emulator below).
#   cmake -S . -B build/cmake/aarch64 \
#       -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)

# Programs of the host. Libraries: CMAKE_LIBRARY_ARCHITECTURE makes
# find_library look in /usr/lib/<triple>, not in the host's lib dir; headers
# are shared (multiarch), the arch-specific ones under /usr/include/<triple>.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
set(ENV{PKG_CONFIG_LIBDIR}
    "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
