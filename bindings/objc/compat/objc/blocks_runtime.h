/* SPDX-License-Identifier: MIT */
/* Shim for Debian 12: GNUstep base 1.28 includes <objc/blocks_runtime.h>
 * when the compiler has blocks, but with gcc's libobjc that header does not
 * exist; libblocksruntime-dev's <Block.h> declares the same functions. */
#ifndef COURIER_OBJC_BLOCKS_RUNTIME_SHIM_H
#define COURIER_OBJC_BLOCKS_RUNTIME_SHIM_H
#include <Block.h>
#endif
