/* SPDX-License-Identifier: MIT */
/* What Swift and Objective-C code sees: the module, by name. */
@import Courier;

int courier_modules_check(void);
int courier_modules_check(void)
{
    return courier_strerror(COURIER_OK) != 0 && COURIER_VERSION_MAJOR >= 0;
}
