/* SPDX-License-Identifier: MIT */
/* make check-objc-clang: CourierClient.h imported as a clang module (as
 * SwiftPM's CourierObjC target and Swift see it), under ARC with the
 * nullability warnings as errors, through bindings/objc/include/module.modulemap. */
@import CourierObjC;

int courier_objc_module_check(void);
int courier_objc_module_check(void)
{
    CourierConfig *c = [[CourierConfig alloc] initWithJID:@"a@example.com"
                                                 password:@"pw"
                                                   dbPath:@"/tmp/x.db"];
    CourierErrorCode code = CourierErrorInvalid;
    CourierStateHandler h = ^(NSString *msgId, NSString *peer,
                              CourierState state) {
    };
    CourierCallbackExecutor ex = ^(CourierCallbackWork work) {
        work();
    };
    (void)h;
    (void)ex;
    return c != nil && code == -1 && [CourierErrorDomain length] > 0;
}
