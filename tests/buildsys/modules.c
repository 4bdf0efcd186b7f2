/* SPDX-License-Identifier: MIT */
/* With clang -fmodules and include/ on the path, this #include is turned
 * into an import of module Courier (include/module.modulemap). */
#include <courier.h>

int courier_modules_check(void);
int courier_modules_check(void)
{
    return courier_strerror(COURIER_OK) != 0 && COURIER_VERSION_MAJOR >= 0;
}
