# SPDX-License-Identifier: MIT
# Build systems (issue 16): included from the top Makefile.
#   make check-cmake      CMakeLists.txt configured, built and ctest-ed for
#                         the host, aarch64 and armhf (unit tests under
#                         qemu-user), then installed and consumed with
#                         find_package(courier) (tests/buildsys/check-cmake.sh)
#   make check-install    make install PREFIX=X / DESTDIR, then a program
#                         built with pkg-config against it runs
#   make check-modulemap  include/module.modulemap read by clang -fmodules
# Debian packages: scripts/install-deps cmake arm64 armhf (cmake, ninja,
# both cross compilers, qemu-user, the :arm64 and :armhf -dev packages),
# clang for the module map.

.PHONY: check-cmake check-install check-modulemap

check-cmake:
	@scripts/install-deps cmake arm64 armhf
	tests/buildsys/check-cmake.sh

check-install:
	MAKE='$(MAKE)' tests/buildsys/check-install.sh

check-modulemap:
	tests/buildsys/check-modulemap.sh
