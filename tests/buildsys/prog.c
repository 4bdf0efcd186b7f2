/* SPDX-License-Identifier: MIT */
/* A program built against an installed libcourier (pkg-config or CMake's
 * find_package): prints the version it was linked with at run time and
 * fails if that is not the header's. */
#include <courier.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    const char *v = courier_version();
    printf("libcourier %s: %s\n", v, courier_strerror(COURIER_OK));
    return strcmp(v, COURIER_VERSION) == 0 ? 0 : 1;
}
