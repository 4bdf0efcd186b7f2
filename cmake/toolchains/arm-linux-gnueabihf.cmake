# SPDX-License-Identifier: MIT
# Cross build for arm-linux-gnueabihf with Debian's cross gcc and the multiarch
# -dev packages (scripts/install-deps armhf): the
# target's libraries live in /usr/lib/arm-linux-gnueabihf beside the host's, so
# the sysroot is / and pkg-config reads only the target's .pc files.
# The unit tests run under qemu-user (ctest uses the emulator below).
#   cmake -S . -B build/cmake/arm \
#       -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/arm-linux-gnueabihf.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_LIBRARY_ARCHITECTURE arm-linux-gnueabihf)
set(CMAKE_C_COMPILER arm-linux-gnueabihf-gcc)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-arm)

# Programs of the host. Libraries: CMAKE_LIBRARY_ARCHITECTURE makes
# find_library look in /usr/lib/<triple>, not in the host's lib dir; headers
# are shared (multiarch), the arch-specific ones under /usr/include/<triple>.
set(CMAKE_FIND_ROOT_PATH /usr/arm-linux-gnueabihf)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
set(ENV{PKG_CONFIG_LIBDIR}
    "/usr/lib/arm-linux-gnueabihf/pkgconfig:/usr/share/pkgconfig")
