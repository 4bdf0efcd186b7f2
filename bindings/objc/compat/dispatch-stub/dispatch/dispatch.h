/* SPDX-License-Identifier: MIT */
/* NOT libdispatch. Debian 12 has no libdispatch for GNUstep
 * (libdispatch-dev is not in bookworm), so the delegateQueue code of
 * CourierClient (COURIER_HAVE_DISPATCH_QUEUE) would never be compiled here.
 * This header declares the little of <dispatch/dispatch.h> it uses, with
 * Apple's types (OS_OBJECT_USE_OBJC: a queue is an Objective-C object), so
 * that objc.mk can (1) type-check that code under ARC and (2) build a test
 * whose dispatch_async (test_objc.m, COURIER_TEST_DISPATCH_STUB) runs the
 * work on a serial thread of the test's own. What Apple's libdispatch does
 * is not tested by this. */
#ifndef COURIER_DISPATCH_STUB_H
#define COURIER_DISPATCH_STUB_H
#import <Foundation/NSObject.h>

#define OS_OBJECT_USE_OBJC 1
@protocol OS_dispatch_queue <NSObject>
@end
typedef NSObject<OS_dispatch_queue> *dispatch_queue_t;
typedef void (^dispatch_block_t)(void);
void dispatch_async(dispatch_queue_t queue, dispatch_block_t block);
#endif
