/* SPDX-License-Identifier: MIT */
/*
 * Tests of the Objective-C binding (manual retain/release; no XCTest here).
 * Offline tests always run; the live test runs when COURIER_TEST_PORT,
 * COURIER_TEST_CA, COURIER_TEST_DOMAIN and COURIER_TEST_DIR are set (see
 * tests/integration/prosody.sh). Prints "N passed, N failed"; exit 1 on any
 * failure.
 */
#import "CourierClient.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (cond) {                                                          \
            passed++;                                                        \
        } else {                                                             \
            failed++;                                                        \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

/* Records events; touched from the loop thread and the test thread. */
@interface Recorder : NSObject <CourierClientDelegate>
{
    NSMutableDictionary *_states;   /* id -> NSMutableArray of NSNumber */
    NSMutableArray *_messages;      /* NSArray [id, peer, body] */
    NSMutableArray *_links;
    BOOL _offMainThread;            /* every callback was off the main thread */
    int _calls;
}
- (NSArray *)statesOf:(NSString *)msgId;
- (NSArray *)messages;
- (NSArray *)links;
- (BOOL)allOffMainThread;
@end

@implementation Recorder
- (instancetype)init
{
    if ((self = [super init])) {
        _states = [[NSMutableDictionary alloc] init];
        _messages = [[NSMutableArray alloc] init];
        _links = [[NSMutableArray alloc] init];
        _offMainThread = YES;
    }
    return self;
}
- (void)dealloc
{
    [_states release];
    [_messages release];
    [_links release];
    [super dealloc];
}
- (void)noteThread
{
    _calls++;
    if ([NSThread isMainThread])
        _offMainThread = NO;
}
- (void)courier:(CourierClient *)client
    messageWithId:(NSString *)messageId
               to:(NSString *)peer
   didChangeState:(CourierState)state
{
    @synchronized(self) {
        [self noteThread];
        NSMutableArray *a = [_states objectForKey:messageId];
        if (!a) {
            a = [NSMutableArray array];
            [_states setObject:a forKey:messageId];
        }
        [a addObject:[NSNumber numberWithInteger:state]];
    }
}
- (void)courier:(CourierClient *)client
    didReceiveMessageWithId:(NSString *)messageId
                       from:(NSString *)peer
                       kind:(CourierKind)kind
                       body:(NSString *)body
                timestampMs:(int64_t)timestampMs
{
    @synchronized(self) {
        [self noteThread];
        [_messages addObject:[NSArray arrayWithObjects:messageId, peer, body,
                                                       nil]];
    }
}
- (void)courier:(CourierClient *)client didChangeLink:(CourierLink)link
{
    @synchronized(self) {
        [self noteThread];
        [_links addObject:[NSNumber numberWithInteger:link]];
    }
}
- (void)courier:(CourierClient *)client
            log:(NSString *)line
          level:(CourierLogLevel)level
{
    if (getenv("COURIER_TEST_VERBOSE"))
        fprintf(stderr, "log %d: %s\n", (int)level, [line UTF8String]);
}
- (NSArray *)statesOf:(NSString *)msgId
{
    @synchronized(self) {
        return [[[_states objectForKey:msgId] copy] autorelease];
    }
}
- (NSArray *)messages
{
    @synchronized(self) {
        return [[_messages copy] autorelease];
    }
}
- (NSArray *)links
{
    @synchronized(self) {
        return [[_links copy] autorelease];
    }
}
- (BOOL)allOffMainThread
{
    @synchronized(self) {
        return _offMainThread && _calls > 0;
    }
}
@end

/* Poll `cond` every 20 ms for up to `secs`. */
#define WAIT_FOR(cond, secs)                                                 \
    ({                                                                       \
        BOOL ok_ = NO;                                                       \
        for (int i_ = 0; i_ < (int)((secs) * 50); i_++) {                    \
            @autoreleasepool {                                               \
                if ((cond)) {                                                \
                    ok_ = YES;                                               \
                    break;                                                   \
                }                                                            \
            }                                                                \
            usleep(20000);                                                   \
        }                                                                    \
        ok_;                                                                 \
    })

static NSString *tmpDir;

static NSString *dbPath(NSString *name)
{
    return [tmpDir stringByAppendingPathComponent:name];
}

static void testDefaults(void)
{
    CourierConfig *c = [[[CourierConfig alloc] init] autorelease];
    CHECK(c.ackTimeoutMs == 30000, "ack %lu", (unsigned long)c.ackTimeoutMs);
    CHECK(c.resendGraceMs == 10000, "grace %lu",
          (unsigned long)c.resendGraceMs);
    CHECK(c.pingIntervalMs == 30000 && c.pingTimeoutMs == 33000, "ping");
    CHECK(c.reconnectMinMs == 1000 && c.reconnectMaxMs == 60000, "reconnect");
    CHECK(c.maxInFlight == 100, "inflight %lu", (unsigned long)c.maxInFlight);
    CHECK(c.maxAgeMs == 0, "maxAge");
    CHECK(c.implicitRead, "implicitRead");
    CHECK(!c.allowPlaintext, "allowPlaintext");
    CHECK(c.port == 0 && c.jid == nil && c.host == nil, "strings/port");
    CHECK(c.maxBodyBytes == 64 * 1024, "maxBody");
    CHECK([[CourierClient version] isEqual:@"0.1.0"], "version %s",
          [[CourierClient version] UTF8String]);
    CHECK([[CourierClient nameOfState:CourierStateDelivered]
              isEqual:@"DELIVERED"], "state name");
    CHECK([[CourierClient displayStatusOfState:CourierStateDisplayed]
              isEqual:@"read"], "display status");

    CourierConfig *d = [CourierConfig configWithDictionary:
        [NSDictionary dictionaryWithObjectsAndKeys:@"a@b.c", @"jid",
            [NSNumber numberWithInt:5222], @"port", nil] error:NULL];
    CHECK(d && [d.jid isEqual:@"a@b.c"] && d.port == 5222
              && d.ackTimeoutMs == 30000, "dictionary config");
    NSError *err = nil;
    CourierConfig *bad = [CourierConfig configWithDictionary:
        [NSDictionary dictionaryWithObject:@"x" forKey:@"nope"] error:&err];
    CHECK(bad == nil && err.code == CourierErrorInvalid
              && [err.domain isEqual:@"org.libcourier"], "unknown key");
}

static CourierClient *openOffline(NSString *name, Recorder *rec,
                                  NSError **err)
{
    NSDictionary *cfg = [NSDictionary dictionaryWithObjectsAndKeys:
        @"alice@example.test", @"jid", @"pw", @"password",
        @"127.0.0.1", @"host", [NSNumber numberWithInt:1], @"port",
        dbPath(name), @"dbPath", nil];
    return [[[CourierClient alloc] initWithConfig:cfg delegate:rec
                                            error:err] autorelease];
}

static void testOffline(void)
{
    Recorder *rec = [[[Recorder alloc] init] autorelease];
    NSError *err = nil;
    CourierClient *c = openOffline(@"offline.db", rec, &err);
    CHECK(c != nil, "open: %s", [[err localizedDescription] UTF8String]);
    if (!c)
        return;
    CHECK([c start:&err], "start: %s", [[err localizedDescription] UTF8String]);

    NSString *msgId = [c sendText:@"hello" to:@"bob@example.test" error:&err];
    CHECK(msgId.length > 0, "sendText: %s",
          [[err localizedDescription] UTF8String]);
    if (msgId) {
        BOOL got = WAIT_FOR(
            [[rec statesOf:msgId]
                containsObject:[NSNumber numberWithInteger:CourierStateFailed]],
            10);
        CHECK(got, "no FAILED for %s (states %s)", [msgId UTF8String],
              [[[rec statesOf:msgId] description] UTF8String]);
        CHECK([rec allOffMainThread], "callback on the main thread");
        err = nil;
        CourierState st = [c stateOf:msgId error:&err];
        CHECK(st == CourierStateFailed, "stateOf %ld", (long)st);
    }

    /* Bad JID: EINVAL, detail after ": ". */
    err = nil;
    NSString *bad = [c sendText:@"x" to:@"not a jid" error:&err];
    CHECK(bad == nil && err != nil, "bad JID accepted");
    CHECK(err.code == CourierErrorInvalid && err.code == -1, "code %ld",
          (long)err.code);
    CHECK([err.domain isEqual:CourierErrorDomain]
              && [CourierErrorDomain isEqual:@"org.libcourier"], "domain");
    CHECK([[err localizedDescription] rangeOfString:@": "].location
              != NSNotFound, "description '%s'",
          [[err localizedDescription] UTF8String]);
    if (getenv("COURIER_TEST_VERBOSE"))
        fprintf(stderr, "bad JID: %s\n", [[err localizedDescription] UTF8String]);

    /* Emoji, CJK, a non-BMP char: accepted and stored. */
    err = nil;
    NSString *body = @"你好 👋 𝄞 ünïcödé";
    NSString *uid = [c sendText:body to:@"bob@example.test" error:&err];
    CHECK(uid.length > 0, "unicode body: %s",
          [[err localizedDescription] UTF8String]);
    if (uid) {
        err = nil;
        CHECK([c stateOf:uid error:&err] != CourierStateUnknown, "stateOf: %s",
              [[err localizedDescription] UTF8String]);
    }

    /* A lone surrogate cannot be UTF-8: EINVAL from the binding. */
    unichar lone[] = { 'a', 0xD800, 'b' };
    err = nil;
    CHECK([c sendText:[NSString stringWithCharacters:lone length:3]
                   to:@"bob@example.test" error:&err] == nil
              && err.code == CourierErrorInvalid, "lone surrogate");
    /* U+0000 would be cut by C: refused. */
    err = nil;
    CHECK([c sendText:@"a\0b" to:@"bob@example.test" error:&err] == nil
              && err.code == CourierErrorInvalid, "embedded NUL");

    /* Errors mapping: unknown id, retry of a non-FAILED one. */
    err = nil;
    CHECK([c stateOf:@"no-such-id" error:&err] == CourierStateUnknown
              && err.code == CourierErrorNotFound, "notfound %ld",
          (long)err.code);
    err = nil;
    CHECK([c sendMedia:@"https://x/y.jpg" kind:CourierKindImage
               mediaId:@"img-1" to:@"bob@example.test" error:&err],
          "sendMedia: %s", [[err localizedDescription] UTF8String]);
    err = nil;
    CHECK(![c sendMedia:@"https://x/y.jpg" kind:CourierKindImage
                mediaId:@"img-1" to:@"bob@example.test" error:&err]
              && err.code == CourierErrorState, "duplicate media id");
    err = nil;
    CHECK(![c markDisplayed:@"nope" peer:@"bob@example.test" error:&err]
              && err.code == CourierErrorNotFound, "markDisplayed notfound");
    err = nil;
    CHECK(![c setComposing:YES peer:@"bob@example.test" error:&err]
              && err.code == CourierErrorNotConnected, "composing offline");
    if (msgId) {
        err = nil;
        CHECK([c retry:msgId error:&err], "retry FAILED: %s",
              [[err localizedDescription] UTF8String]);
    }

    CHECK([c stop:&err], "stop");
    [c close];
    [c close]; /* idempotent */
    err = nil;
    CHECK([c sendText:@"x" to:@"bob@example.test" error:&err] == nil
              && err.code == CourierErrorClosed, "after close");

    /* Bad config: EINVAL from courier_open, nil returned. */
    err = nil;
    CourierClient *none = [[CourierClient alloc]
        initWithConfig:[NSDictionary dictionaryWithObject:@"x" forKey:@"jid"]
              delegate:nil error:&err];
    CHECK(none == nil && err.code == CourierErrorInvalid, "bad config");
}

static void testLive(void)
{
    const char *port = getenv("COURIER_TEST_PORT");
    const char *ca = getenv("COURIER_TEST_CA");
    const char *domain = getenv("COURIER_TEST_DOMAIN");
    const char *dir = getenv("COURIER_TEST_DIR");
    if (!port || !ca || !domain || !dir) {
        printf("live test skipped (COURIER_TEST_* not set)\n");
        return;
    }
    NSString *dom = [NSString stringWithUTF8String:domain];
    NSString *aliceJid = [@"alice@" stringByAppendingString:dom];
    NSString *bobJid = [@"bob@" stringByAppendingString:dom];
    NSString *dirS = [NSString stringWithUTF8String:dir];

    Recorder *ra = [[[Recorder alloc] init] autorelease];
    Recorder *rb = [[[Recorder alloc] init] autorelease];
    CourierClient *alice = nil, *bob = nil;
    NSError *err = nil;
    for (int i = 0; i < 2; i++) {
        CourierConfig *cfg = [[[CourierConfig alloc] init] autorelease];
        cfg.jid = i ? bobJid : aliceJid;
        cfg.password = i ? @"pw-bob" : @"pw-alice";
        cfg.host = @"127.0.0.1";
        cfg.port = (NSUInteger)atoi(port);
        cfg.caFile = [NSString stringWithUTF8String:ca];
        cfg.dbPath = [dirS stringByAppendingPathComponent:
            i ? @"objc-bob.db" : @"objc-alice.db"];
        CourierClient *c = [[[CourierClient alloc]
            initWithConfig:cfg delegate:(i ? rb : ra) error:&err] autorelease];
        CHECK(c != nil, "live open: %s",
              [[err localizedDescription] UTF8String]);
        if (!c)
            return;
        CHECK([c start:&err], "live start");
        if (i)
            bob = c;
        else
            alice = c;
    }
    NSNumber *online = [NSNumber numberWithInteger:CourierLinkOnline];
    CHECK(WAIT_FOR([[rb links] containsObject:online], 20), "bob online");

    NSString *text = @"你好 👋";
    err = nil;
    NSString *msgId = [alice sendText:text to:bobJid error:&err];
    CHECK(msgId != nil, "live send: %s",
          [[err localizedDescription] UTF8String]);
    if (!msgId)
        return;
    CHECK(WAIT_FOR([[rb messages] count] > 0, 20), "bob got nothing");
    NSArray *msgs = [rb messages];
    if ([msgs count] > 0) {
        NSArray *m = [msgs objectAtIndex:0];
        CHECK([msgs count] == 1, "bob got %lu", (unsigned long)[msgs count]);
        CHECK([[m objectAtIndex:0] isEqual:msgId], "id");
        CHECK([[m objectAtIndex:1] isEqual:aliceJid], "peer %s",
              [[m objectAtIndex:1] UTF8String]);
        CHECK([[m objectAtIndex:2] isEqual:text], "body '%s'",
              [[m objectAtIndex:2] UTF8String]);
    }
    NSNumber *delivered = [NSNumber numberWithInteger:CourierStateDelivered];
    CHECK(WAIT_FOR([[ra statesOf:msgId] containsObject:delivered], 20),
          "alice: no DELIVERED (states %s)",
          [[[ra statesOf:msgId] description] UTF8String]);

    /* Bob shows it: alice sees DISPLAYED. */
    err = nil;
    CHECK([bob markDisplayed:msgId peer:aliceJid error:&err],
          "markDisplayed: %s", [[err localizedDescription] UTF8String]);
    NSNumber *displayed = [NSNumber numberWithInteger:CourierStateDisplayed];
    CHECK(WAIT_FOR([[ra statesOf:msgId] containsObject:displayed], 20),
          "alice: no DISPLAYED (states %s)",
          [[[ra statesOf:msgId] description] UTF8String]);
    CHECK([ra allOffMainThread] && [rb allOffMainThread], "threads");

    [alice stop:NULL];
    [bob stop:NULL];
    [alice close];
    [bob close];
}

int main(void)
{
    @autoreleasepool {
        char tmpl[] = "/tmp/courier-objc-XXXXXX";
        if (!mkdtemp(tmpl)) {
            perror("mkdtemp");
            return 2;
        }
        tmpDir = [[NSString alloc] initWithUTF8String:tmpl];

        testDefaults();
        testOffline();
        testLive();

        [[NSFileManager defaultManager] removeItemAtPath:tmpDir error:NULL];
        [tmpDir release];
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
