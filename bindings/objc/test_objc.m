/* SPDX-License-Identifier: MIT */
/*
 * Tests of the Objective-C binding (manual retain/release here; no XCTest).
 * Offline tests always run; the live tests (delegate, then blocks) run when
 * COURIER_TEST_PORT, COURIER_TEST_CA, COURIER_TEST_DOMAIN and
 * COURIER_TEST_DIR are set (see tests/integration/prosody.sh). Prints
 * "N passed, N failed"; exit 1 on any failure. The file is also
 * syntax-checked under ARC (objc.mk): retain counts are checked under
 * manual retain/release only.
 */
#import "CourierClient.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "courier.h"
#if !__has_feature(objc_arc)
#include <Block.h>
#endif

#if __has_feature(objc_arc)
#define T_ARC 1
#define T_AUTORELEASE(x) (x)
#define T_RELEASE(x) ((x) = nil)
/* A client its own block refers to: weak, or the block keeps it alive. */
#define T_WEAK __weak
#else
#define T_ARC 0
#define T_AUTORELEASE(x) [(x) autorelease]
#define T_RELEASE(x) [(x) release]
#define T_WEAK __block /* manual retain/release: a block does not retain it */
#endif

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
#if !T_ARC
- (void)dealloc
{
    [_states release];
    [_messages release];
    [_links release];
    [super dealloc];
}
#endif
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
        return T_AUTORELEASE([[_states objectForKey:msgId] copy]);
    }
}
- (NSArray *)messages
{
    @synchronized(self) {
        return T_AUTORELEASE([_messages copy]);
    }
}
- (NSArray *)links
{
    @synchronized(self) {
        return T_AUTORELEASE([_links copy]);
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
    CourierConfig *c = T_AUTORELEASE([[CourierConfig alloc] init]);
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
    CHECK([[CourierClient version] isEqual:@"0.2.0"], "version %s",
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
    return T_AUTORELEASE([[CourierClient alloc] initWithConfig:cfg
                                                      delegate:rec
                                                         error:err]);
}

static void testOffline(void)
{
    Recorder *rec = T_AUTORELEASE([[Recorder alloc] init]);
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

    /* behaviour.md §10: a network change on an offline client is taken. */
    err = nil;
    CHECK([c networkChanged:&err], "networkChanged offline: %s",
          [[err localizedDescription] UTF8String]);

    CHECK([c stop:&err], "stop");
    [c close];
    [c close]; /* idempotent */
    err = nil;
    CHECK([c sendText:@"x" to:@"bob@example.test" error:&err] == nil
              && err.code == CourierErrorClosed, "after close");
    err = nil;
    CHECK(![c networkChanged:&err] && err.code == CourierErrorClosed,
          "networkChanged after close");

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

    Recorder *ra = T_AUTORELEASE([[Recorder alloc] init]);
    Recorder *rb = T_AUTORELEASE([[Recorder alloc] init]);
    CourierClient *alice = nil, *bob = nil;
    NSError *err = nil;
    for (int i = 0; i < 2; i++) {
        CourierConfig *cfg = T_AUTORELEASE([[CourierConfig alloc] init]);
        cfg.jid = i ? bobJid : aliceJid;
        cfg.password = i ? @"pw-bob" : @"pw-alice";
        cfg.host = @"127.0.0.1";
        cfg.port = (NSUInteger)atoi(port);
        cfg.caFile = [NSString stringWithUTF8String:ca];
        cfg.dbPath = [dirS stringByAppendingPathComponent:
            i ? @"objc-bob.db" : @"objc-alice.db"];
        CourierClient *c = T_AUTORELEASE([[CourierClient alloc]
            initWithConfig:cfg delegate:(i ? rb : ra) error:&err]);
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

/* ---- block callbacks ---------------------------------------------------- */

/* An array shared with the loop thread: append / copy under its lock. */
static void add(NSMutableArray *a, id o)
{
    @synchronized(a) {
        [a addObject:o];
    }
}

static NSArray *snap(NSMutableArray *a)
{
    @synchronized(a) {
        return T_AUTORELEASE([a copy]);
    }
}

static NSNumber *num(NSInteger v)
{
    return [NSNumber numberWithInteger:v];
}

static NSNumber *onMainThread(void)
{
    return [NSNumber numberWithBool:[NSThread isMainThread]];
}

/* [id, peer, state] rows of `rows` for `msgId`, as states in order. */
static NSArray *statesFor(NSMutableArray *rows, NSString *msgId)
{
    NSMutableArray *r = [NSMutableArray array];
    for (NSArray *row in snap(rows))
        if ([row isKindOfClass:[NSArray class]]
                && [[row objectAtIndex:0] isEqual:msgId])
            [r addObject:[row objectAtIndex:2]];
    return r;
}

/* Copy, replace, -close, -dealloc, checked on the blocks' own reference
 * counts. Debian's GNUstep blocks runtime (the one linked here) keeps a heap
 * block's count in flags & BLOCK_REFCOUNT_MASK, marks heap copies
 * BLOCK_NEEDS_FREE, and does not retain captured objects (so, unlike on
 * Apple, capture retain counts show nothing). A setter that kept the stack
 * block, took no reference, or never gave it back fails this. */
#if !T_ARC && defined(GNUSTEP)
#include <Block_private.h>
static int blockRefs(const void *b)
{
    return b ? ((const struct Block_layout *)b)->flags & BLOCK_REFCOUNT_MASK
             : -1;
}
static BOOL onHeap(const void *b)
{
    return b && (((const struct Block_layout *)b)->flags & BLOCK_NEEDS_FREE);
}
#endif

static void testBlocksMemory(void)
{
#if !T_ARC && defined(GNUSTEP)
    NSError *err = nil;
    NSDictionary *cfg = [NSDictionary dictionaryWithObjectsAndKeys:
        @"alice@example.test", @"jid", @"pw", @"password",
        dbPath(@"blocks-memory.db"), @"dbPath", nil];
    CourierClient *c = [[CourierClient alloc] initWithConfig:cfg error:&err];
    CHECK(c != nil, "open: %s", [[err localizedDescription] UTF8String]);
    if (!c)
        return;
    CHECK(c.delegate == nil && c.onState == nil && c.onMessage == nil
              && c.onLink == nil && c.onComposing == nil && c.onLog == nil,
          "no handlers at first");

    /* The runtime as assumed: a copy is on the heap with one reference,
     * Block_copy of it adds one, Block_release takes it back. */
    __block int calls = 0;
    CourierLinkHandler h = Block_copy(^(CourierLink link) {
        calls += 10;
    });
    CHECK(onHeap(h) && blockRefs(h) == 1, "own copy: heap %d refs %d",
          onHeap(h), blockRefs(h));
    CourierLinkHandler h2 = Block_copy(h);
    CHECK(h2 == h && blockRefs(h) == 2, "Block_copy: refs %d", blockRefs(h));
    Block_release(h2);
    CHECK(blockRefs(h) == 1, "Block_release: refs %d", blockRefs(h));

    /* A literal that captures a variable is on the stack: the setter must
     * move it to the heap. */
    void (^literal)(NSString *, CourierLogLevel) =
        ^(NSString *line, CourierLogLevel level) {
            calls++;
        };
    CHECK(!onHeap(literal), "the literal is already on the heap");
    c.onLog = literal;
    CourierLogHandler stored = c.onLog;
    CHECK(stored != literal && onHeap(stored) && blockRefs(stored) == 1,
          "setter kept a stack block (heap %d, refs %d)", onHeap(stored),
          blockRefs(stored));
    if (stored)
        stored(@"x", CourierLogInfo);
    CHECK(calls == 1, "the stored block is the one set (%d)", calls);

    /* Our heap block: the client adds one reference and gives it back when
     * the block is replaced, set to nil, at -close, at -dealloc. */
    c.onLink = h;
    CHECK(c.onLink == h && blockRefs(h) == 2, "set: refs %d", blockRefs(h));
    c.onLink = ^(CourierLink link) {
        calls += 100;
    };
    CHECK(blockRefs(h) == 1, "replaced, not released: refs %d",
          blockRefs(h));
    c.onLink = h;
    c.onLink = h; /* the same block again: still one reference */
    CHECK(blockRefs(h) == 2, "set twice: refs %d", blockRefs(h));
    c.onLink = nil;
    CHECK(blockRefs(h) == 1 && c.onLink == nil, "set nil: refs %d",
          blockRefs(h));

    c.onLink = h;
    c.onState = ^(NSString *i, NSString *p, CourierState st) {
        calls++;
    };
    c.onMessage = ^(NSString *i, NSString *p, CourierKind k, NSString *b,
                    int64_t ts) {
        calls++;
    };
    c.onComposing = ^(NSString *p, BOOL on) {
        calls++;
    };
    CHECK(onHeap(c.onState) && onHeap(c.onMessage) && onHeap(c.onComposing),
          "stack blocks kept");
    [c close];
    CHECK(blockRefs(h) == 1, "-close kept the block: refs %d", blockRefs(h));
    CHECK(c.onState == nil && c.onMessage == nil && c.onLink == nil
              && c.onComposing == nil && c.onLog == nil, "nil after close");

    c.onLink = h; /* after -close: released by -dealloc */
    CHECK(blockRefs(h) == 2, "refs %d", blockRefs(h));
    [c release];
    CHECK(blockRefs(h) == 1, "-dealloc kept the block: refs %d",
          blockRefs(h));
    Block_release(h);
#endif
}

/* Blocks with an unreachable server (127.0.0.1 port 1): a block replaces
 * the delegate method of its event only; blocks run off the main thread; an
 * exception raised by a block is contained; a block may replace itself
 * while it runs. */
static void testBlocksOffline(void)
{
    Recorder *rec = T_AUTORELEASE([[Recorder alloc] init]);
    NSError *err = nil;
    CourierClient *c = openOffline(@"blocks-offline.db", rec, &err);
    CHECK(c != nil, "open: %s", [[err localizedDescription] UTF8String]);
    if (!c)
        return;

    NSMutableArray *statesA = [NSMutableArray array]; /* [id, peer, state] */
    NSMutableArray *statesB = [NSMutableArray array];
    NSMutableArray *logs = [NSMutableArray array];
    NSMutableArray *onMain = [NSMutableArray array];
    CourierStateHandler second = ^(NSString *msgId, NSString *peer,
                                   CourierState st) {
        add(statesB, [NSArray arrayWithObjects:msgId, peer, num(st), nil]);
        add(onMain, onMainThread());
    };
    T_WEAK CourierClient *weakC = c;
    c.onState = ^(NSString *msgId, NSString *peer, CourierState st) {
        add(statesA, [NSArray arrayWithObjects:msgId, peer, num(st), nil]);
        add(onMain, onMainThread());
        if (st == CourierStateFailed) {
            weakC.onState = second; /* drops the client's reference */
            add(statesA, @"alive after replacing itself");
        }
    };
    c.onLog = ^(NSString *line, CourierLogLevel level) {
        add(logs, line);
        add(onMain, onMainThread());
        if ([snap(logs) count] == 1)
            [NSException raise:@"CourierTestException"
                        format:@"raised by the first onLog call"];
    };
    CHECK([c start:&err], "start: %s", [[err localizedDescription] UTF8String]);

    NSString *id1 = [c sendText:@"one" to:@"bob@example.test" error:&err];
    CHECK(id1 != nil, "send: %s", [[err localizedDescription] UTF8String]);
    NSNumber *failedN = num(CourierStateFailed);
    if (id1) {
        CHECK(WAIT_FOR([statesFor(statesA, id1) containsObject:failedN], 10),
              "onState: no FAILED (%s)",
              [[statesFor(statesA, id1) description] UTF8String]);
        CHECK([snap(statesA) containsObject:@"alive after replacing itself"],
              "the block did not survive replacing itself");
        CHECK([[rec statesOf:id1] count] == 0,
              "the delegate got states although a block is set");
    }
    NSString *id2 = [c sendText:@"two" to:@"bob@example.test" error:&err];
    CHECK(id2 != nil, "send: %s", [[err localizedDescription] UTF8String]);
    if (id2) {
        CHECK(WAIT_FOR([statesFor(statesB, id2) containsObject:failedN], 10),
              "new onState: no FAILED (%s)",
              [[statesFor(statesB, id2) description] UTF8String]);
        CHECK([statesFor(statesA, id2) count] == 0,
              "the replaced block still runs");
        NSArray *row = [snap(statesB) lastObject];
        CHECK([[row objectAtIndex:1] isEqual:@"bob@example.test"], "peer %s",
              [[[row objectAtIndex:1] description] UTF8String]);
    }
    /* No onLink block: link events still reach the delegate. */
    CHECK(WAIT_FOR([[rec links] count] > 0, 10), "delegate: no link event");
    /* Logging goes on after the first block raised. */
    CHECK(WAIT_FOR([snap(logs) count] >= 3, 15), "onLog: %lu lines",
          (unsigned long)[snap(logs) count]);
    CHECK([snap(onMain) count] > 0
              && ![snap(onMain) containsObject:[NSNumber numberWithBool:YES]],
          "a block ran on the main thread");
    CHECK([c stop:&err], "stop: %s", [[err localizedDescription] UTF8String]);
    [c close];
    CHECK(c.onState == nil && c.onLog == nil, "blocks kept after close");
}

static BOOL liveEnv(void)
{
    return getenv("COURIER_TEST_PORT") && getenv("COURIER_TEST_CA")
        && getenv("COURIER_TEST_DOMAIN") && getenv("COURIER_TEST_DIR");
}

static NSString *liveJid(NSString *user)
{
    return [NSString stringWithFormat:@"%@@%s", user,
                                      getenv("COURIER_TEST_DOMAIN")];
}

static CourierConfig *liveConfig(NSString *user, NSString *db)
{
    CourierConfig *cfg = T_AUTORELEASE([[CourierConfig alloc] init]);
    cfg.jid = liveJid(user);
    cfg.password = [@"pw-" stringByAppendingString:user];
    cfg.host = @"127.0.0.1";
    cfg.port = (NSUInteger)atoi(getenv("COURIER_TEST_PORT"));
    cfg.caFile = [NSString stringWithUTF8String:getenv("COURIER_TEST_CA")];
    cfg.dbPath = [[NSString stringWithUTF8String:getenv("COURIER_TEST_DIR")]
        stringByAppendingPathComponent:db];
    return cfg;
}

/* Alice and bob over the private Prosody with blocks only (no delegate):
 * text and voice arrive once with their kind, bob's block marks each one
 * displayed from the loop thread, alice's states go forward to DISPLAYED,
 * composing and link events arrive. */
static void testBlocksLive(void)
{
    if (!liveEnv()) {
        printf("live test skipped (COURIER_TEST_* not set)\n");
        return;
    }
    NSString *aliceJid = liveJid(@"alice"), *bobJid = liveJid(@"bob");
    NSError *err = nil;
    CourierClient *alice = [[CourierClient alloc]
        initWithConfig:liveConfig(@"alice", @"objc-blocks-alice.db")
                 error:&err];
    CHECK(alice != nil, "open: %s", [[err localizedDescription] UTF8String]);
    CourierClient *bob = [[CourierClient alloc]
        initWithConfig:liveConfig(@"bob", @"objc-blocks-bob.db") error:&err];
    CHECK(bob != nil, "open: %s", [[err localizedDescription] UTF8String]);
    if (!alice || !bob) {
        T_RELEASE(alice);
        T_RELEASE(bob);
        return;
    }

    NSMutableArray *aStates = [NSMutableArray array];
    NSMutableArray *aLinks = [NSMutableArray array];
    NSMutableArray *bLinks = [NSMutableArray array];
    NSMutableArray *aComposing = [NSMutableArray array];
    NSMutableArray *bMsgs = [NSMutableArray array];
    NSMutableArray *markErrors = [NSMutableArray array];
    NSMutableArray *onMain = [NSMutableArray array];
    alice.onState = ^(NSString *msgId, NSString *peer, CourierState st) {
        add(aStates, [NSArray arrayWithObjects:msgId, peer, num(st), nil]);
        add(onMain, onMainThread());
    };
    alice.onLink = ^(CourierLink link) {
        add(aLinks, num(link));
        add(onMain, onMainThread());
    };
    alice.onComposing = ^(NSString *peer, BOOL composing) {
        add(aComposing, [NSArray arrayWithObjects:peer,
                            [NSNumber numberWithBool:composing], nil]);
        add(onMain, onMainThread());
    };
    bob.onLink = ^(CourierLink link) {
        add(bLinks, num(link));
        add(onMain, onMainThread());
    };
    /* Bob shows each message at once: the block calls its own client on
     * the loop thread. */
    T_WEAK CourierClient *weakBob = bob;
    bob.onMessage = ^(NSString *msgId, NSString *peer, CourierKind kind,
                      NSString *body, int64_t ts) {
        add(bMsgs, [NSArray arrayWithObjects:msgId, peer, num(kind), body,
                       [NSNumber numberWithLongLong:ts], nil]);
        add(onMain, onMainThread());
        NSError *e = nil;
        if (![weakBob markDisplayed:msgId peer:peer error:&e])
            add(markErrors, [e localizedDescription]);
    };
    CHECK([alice start:&err] && [bob start:&err], "start: %s",
          [[err localizedDescription] UTF8String]);
    NSNumber *online = num(CourierLinkOnline);
    CHECK(WAIT_FOR([snap(aLinks) containsObject:online]
                       && [snap(bLinks) containsObject:online], 20),
          "online: alice %s bob %s", [[snap(aLinks) description] UTF8String],
          [[snap(bLinks) description] UTF8String]);

    int64_t now = (int64_t)([[NSDate date] timeIntervalSince1970] * 1000);
    NSString *text = @"blocks: 你好 👋 𝄞";
    NSString *textId = [alice sendText:text to:bobJid error:&err];
    CHECK(textId != nil, "send: %s", [[err localizedDescription] UTF8String]);
    NSString *voiceId = [NSString stringWithFormat:@"voice-blocks-%d",
                                                   (int)getpid()];
    CHECK([alice sendMedia:@"https://media.example/v.ogg"
                      kind:CourierKindVoice mediaId:voiceId to:bobJid
                     error:&err],
          "sendMedia: %s", [[err localizedDescription] UTF8String]);
    if (!textId) {
        [alice close];
        [bob close];
        T_RELEASE(alice);
        T_RELEASE(bob);
        return;
    }
    CHECK(WAIT_FOR([snap(bMsgs) count] >= 2, 20), "bob got %lu messages",
          (unsigned long)[snap(bMsgs) count]);
    int nText = 0, nVoice = 0;
    for (NSArray *m in snap(bMsgs)) {
        CHECK([[m objectAtIndex:1] isEqual:aliceJid], "peer %s",
              [[m objectAtIndex:1] UTF8String]);
        int64_t ts = [[m objectAtIndex:4] longLongValue];
        CHECK(ts > now - 600000 && ts < now + 600000, "timestamp %lld",
              (long long)ts);
        if ([[m objectAtIndex:0] isEqual:textId]) {
            nText++;
            CHECK([[m objectAtIndex:2] isEqual:num(CourierKindText)]
                      && [[m objectAtIndex:3] isEqual:text],
                  "text: kind %s body '%s'",
                  [[[m objectAtIndex:2] description] UTF8String],
                  [[m objectAtIndex:3] UTF8String]);
        } else if ([[m objectAtIndex:0] isEqual:voiceId]) {
            nVoice++;
            CHECK([[m objectAtIndex:2] isEqual:num(CourierKindVoice)]
                      && [[m objectAtIndex:3]
                             isEqual:@"https://media.example/v.ogg"],
                  "voice: kind %s body '%s'",
                  [[[m objectAtIndex:2] description] UTF8String],
                  [[m objectAtIndex:3] UTF8String]);
        }
    }
    CHECK(nText == 1 && nVoice == 1, "text %d voice %d (of %lu)", nText,
          nVoice, (unsigned long)[snap(bMsgs) count]);

    /* Bob's block marked both displayed: alice sees DISPLAYED, and the
     * states of each message only go forward. */
    NSNumber *displayed = num(CourierStateDisplayed);
    NSString *ids[2] = { textId, voiceId };
    for (int i = 0; i < 2; i++) {
        CHECK(WAIT_FOR([statesFor(aStates, ids[i]) containsObject:displayed],
                       20),
              "alice: %s not DISPLAYED (%s)", [ids[i] UTF8String],
              [[statesFor(aStates, ids[i]) description] UTF8String]);
        NSArray *st = statesFor(aStates, ids[i]);
        for (NSUInteger k = 1; k < [st count]; k++)
            CHECK([[st objectAtIndex:k] integerValue]
                      > [[st objectAtIndex:k - 1] integerValue],
                  "%s: states not forward: %s", [ids[i] UTF8String],
                  [[st description] UTF8String]);
    }
    CHECK([markErrors count] == 0, "markDisplayed from the block: %s",
          [[snap(markErrors) description] UTF8String]);

    /* Composing, then active: alice's onComposing. */
    CHECK([bob setComposing:YES peer:aliceJid error:&err], "composing: %s",
          [[err localizedDescription] UTF8String]);
    NSArray *on = [NSArray arrayWithObjects:bobJid,
                           [NSNumber numberWithBool:YES], nil];
    CHECK(WAIT_FOR([snap(aComposing) containsObject:on], 20),
          "alice: no composing (%s)",
          [[snap(aComposing) description] UTF8String]);
    CHECK([bob setComposing:NO peer:aliceJid error:&err], "active: %s",
          [[err localizedDescription] UTF8String]);
    NSArray *off = [NSArray arrayWithObjects:bobJid,
                            [NSNumber numberWithBool:NO], nil];
    CHECK(WAIT_FOR([snap(aComposing) containsObject:off], 20),
          "alice: no active (%s)", [[snap(aComposing) description] UTF8String]);

    CHECK([snap(onMain) count] > 0
              && ![snap(onMain) containsObject:[NSNumber numberWithBool:YES]],
          "a block ran on the main thread");
    [alice stop:NULL];
    [bob stop:NULL];
    [alice close];
    [bob close];
    T_RELEASE(alice);
    T_RELEASE(bob);
}

/* ---- callback executor, delegate queue, info, stats, runOnce -------------- */

/* Work units kept as void * (blocks are no objects on Debian's GNUstep:
 * no NSArray of them): a copy going in, run and released coming out. */
#if T_ARC
#define T_WORK_TO_PTR(b) ((__bridge_retained void *)[(b) copy])
#define T_RUN_PTR(p)                                                         \
    do {                                                                     \
        CourierCallbackWork w_ = (__bridge_transfer CourierCallbackWork)(p); \
        w_();                                                                \
    } while (0)
#else
#define T_WORK_TO_PTR(b) ((void *)Block_copy(b))
#define T_RUN_PTR(p)                                                         \
    do {                                                                     \
        CourierCallbackWork w_ = (CourierCallbackWork)(p);                   \
        w_();                                                                \
        Block_release(w_);                                                   \
    } while (0)
#endif

/* A serial queue of the test's own: one NSThread runs the units in order. */
@interface SerialWorker : NSObject
{
    NSCondition *_cond;
    void *_items[4096];
    unsigned _head, _count;
    BOOL _stop, _done;
    pthread_t _tid;
    int _ran;
}
- (void)enqueue:(CourierCallbackWork)work;
- (BOOL)isCurrentThread;
- (int)ran;
- (void)stopAndWait;
@end

@implementation SerialWorker
- (instancetype)init
{
    if ((self = [super init])) {
        _cond = [[NSCondition alloc] init];
        [NSThread detachNewThreadSelector:@selector(run:) toTarget:self
                               withObject:nil];
        [_cond lock];
        while (!_tid)
            [_cond wait];
        [_cond unlock];
    }
    return self;
}
#if !T_ARC
- (void)dealloc
{
    [_cond release];
    [super dealloc];
}
#endif
- (void)run:(id)unused
{
    [_cond lock];
    _tid = pthread_self();
    [_cond broadcast];
    for (;;) {
        while (!_count && !_stop)
            [_cond wait];
        if (!_count)
            break;
        void *p = _items[_head];
        _head = (_head + 1) % 4096;
        _count--;
        [_cond unlock];
        @autoreleasepool {
            T_RUN_PTR(p);
        }
        [_cond lock];
        _ran++;
    }
    _done = YES;
    [_cond broadcast];
    [_cond unlock];
}
- (void)enqueue:(CourierCallbackWork)work
{
    [_cond lock];
    if (_count < 4096 && !_stop) {
        _items[(_head + _count) % 4096] = T_WORK_TO_PTR(work);
        _count++;
        [_cond signal];
    }
    [_cond unlock];
}
- (BOOL)isCurrentThread
{
    return pthread_equal(pthread_self(), _tid) != 0;
}
- (int)ran
{
    [_cond lock];
    int n = _ran;
    [_cond unlock];
    return n;
}
- (void)stopAndWait
{
    [_cond lock];
    _stop = YES;
    [_cond broadcast];
    while (!_done)
        [_cond wait];
    [_cond unlock];
}
@end

/* Notes the thread of every delegate call against one worker. */
@interface ThreadRecorder : Recorder
{
@public
    SerialWorker *_worker;
    int _onWorker, _elsewhere;
    pthread_t _seen;
}
@end

@implementation ThreadRecorder
- (void)noteWorker
{
    @synchronized(self) {
        if (_worker && [_worker isCurrentThread])
            _onWorker++;
        else
            _elsewhere++;
        _seen = pthread_self();
    }
}
- (void)courier:(CourierClient *)client
    messageWithId:(NSString *)messageId
               to:(NSString *)peer
   didChangeState:(CourierState)state
{
    [self noteWorker];
    [super courier:client messageWithId:messageId to:peer
        didChangeState:state];
}
- (void)courier:(CourierClient *)client didChangeLink:(CourierLink)link
{
    [self noteWorker];
    [super courier:client didChangeLink:link];
}
- (void)courier:(CourierClient *)client
            log:(NSString *)line
          level:(CourierLogLevel)level
{
    [self noteWorker];
}
- (int)onWorker
{
    @synchronized(self) {
        return _onWorker;
    }
}
- (int)elsewhere
{
    @synchronized(self) {
        return _elsewhere;
    }
}
@end

static NSNumber *failedNum(void)
{
    return [NSNumber numberWithInteger:CourierStateFailed];
}

/* callbackExecutor: every delegate method and block runs on the worker,
 * none on the loop thread; events of one message stay in order. */
static void testCallbackExecutor(void)
{
    SerialWorker *worker = T_AUTORELEASE([[SerialWorker alloc] init]);
    ThreadRecorder *rec = T_AUTORELEASE([[ThreadRecorder alloc] init]);
    rec->_worker = worker;
    NSError *err = nil;
    CourierClient *c = openOffline(@"executor.db", rec, &err);
    CHECK(c != nil, "open: %s", [[err localizedDescription] UTF8String]);
    if (!c)
        return;
    CHECK(c.callbackExecutor == nil, "an executor by default");
    c.callbackExecutor = ^(CourierCallbackWork work) {
        [worker enqueue:work];
    };
    CHECK(c.callbackExecutor != nil, "executor not kept");
    NSMutableArray *blockThreads = [NSMutableArray array];
    c.onComposing = ^(NSString *peer, BOOL on) {
    };
    c.onLink = ^(CourierLink link) {
        add(blockThreads, [NSNumber numberWithBool:[worker isCurrentThread]]);
    };
    CHECK([c start:&err], "start: %s", [[err localizedDescription] UTF8String]);
    NSString *a = [c sendText:@"one" to:@"bob@example.test" error:&err];
    NSString *b = [c sendText:@"two" to:@"bob@example.test" error:&err];
    CHECK(a && b, "send: %s", [[err localizedDescription] UTF8String]);
    if (a && b) {
        CHECK(WAIT_FOR([[rec statesOf:a] containsObject:failedNum()]
                           && [[rec statesOf:b] containsObject:failedNum()],
                       10),
              "no FAILED through the executor (%s %s)",
              [[[rec statesOf:a] description] UTF8String],
              [[[rec statesOf:b] description] UTF8String]);
    }
    CHECK(WAIT_FOR([snap(blockThreads) count] > 0, 10), "no onLink block");
    CHECK([rec onWorker] > 0 && [rec elsewhere] == 0,
          "delegate calls: %d on the executor, %d elsewhere", [rec onWorker],
          [rec elsewhere]);
    CHECK(![snap(blockThreads) containsObject:[NSNumber numberWithBool:NO]],
          "a block ran off the executor");
    CHECK([c stop:&err], "stop");
    [c close];
    CHECK(c.callbackExecutor == nil, "executor kept after close");
    [worker stopAndWait];
}

/* Work still queued when -close returns runs nothing; an executor that
 * raises is contained. */
static void testExecutorAfterClose(void)
{
    static void *held[1024];
    static int nheld;
    nheld = 0;
    ThreadRecorder *rec = T_AUTORELEASE([[ThreadRecorder alloc] init]);
    NSError *err = nil;
    CourierClient *c = openOffline(@"executor-close.db", rec, &err);
    CHECK(c != nil, "open: %s", [[err localizedDescription] UTF8String]);
    if (!c)
        return;
    NSObject *lock = T_AUTORELEASE([[NSObject alloc] init]);
    c.callbackExecutor = ^(CourierCallbackWork work) {
        @synchronized(lock) {
            if (nheld < 1024)
                held[nheld++] = T_WORK_TO_PTR(work);
        }
    };
    CHECK([c start:&err], "start");
    NSString *a = [c sendText:@"held" to:@"bob@example.test" error:&err];
    CHECK(a != nil, "send");
    CHECK(WAIT_FOR(({
                       int n_;
                       @synchronized(lock) {
                           n_ = nheld;
                       }
                       n_ > 0;
                   }), 10), "no work reached the executor");
    CHECK([rec onWorker] + [rec elsewhere] == 0,
          "the library ran the delegate itself");
    /* One unit run while open: delivered, on this thread. */
    void *first = NULL;
    @synchronized(lock) {
        if (nheld > 0) {
            first = held[0];
            memmove(held, held + 1, (size_t)(nheld - 1) * sizeof *held);
            nheld--;
        }
    }
    if (first)
        T_RUN_PTR(first);
    CHECK([rec elsewhere] == 1, "the first unit delivered %d",
          [rec elsewhere]);
    [c stop:NULL];
    [c close];
    int n;
    @synchronized(lock) {
        n = nheld;
        nheld = 0;
    }
    for (int i = 0; i < n; i++)
        T_RUN_PTR(held[i]);
    CHECK([rec elsewhere] == 1, "%d units ran the delegate after -close",
          [rec elsewhere] - 1);

    /* An executor that raises: logged, the client goes on. */
    CourierClient *d = openOffline(@"executor-raise.db", nil, &err);
    CHECK(d != nil, "open: %s", [[err localizedDescription] UTF8String]);
    if (!d)
        return;
    d.callbackExecutor = ^(CourierCallbackWork work) {
        [NSException raise:@"CourierTestException"
                    format:@"executor raised (expected)"];
    };
    CHECK([d start:&err], "start");
    NSString *x = [d sendText:@"x" to:@"bob@example.test" error:&err];
    CHECK(x && WAIT_FOR([d stateOf:x error:NULL] == CourierStateFailed, 10),
          "raising executor: no FAILED");
    CHECK([d sendText:@"y" to:@"bob@example.test" error:&err] != nil,
          "send after a raising executor: %s",
          [[err localizedDescription] UTF8String]);
    [d stop:NULL];
    [d close];
}

/* The NSError ** methods: NO/nil with CourierErrorDomain and the code;
 * -messageInfo:, -stats:, -currentLink:, the typed initializer. */
static void testErrorsInfoStats(void)
{
    NSError *err = nil;
    CourierConfig *cfg = T_AUTORELEASE([[CourierConfig alloc]
        initWithJID:@"alice@example.test" password:@"pw"
             dbPath:dbPath(@"info.db")]);
    CHECK([cfg.jid isEqual:@"alice@example.test"] && cfg.ackTimeoutMs == 30000,
          "initWithJID: defaults kept");
    cfg.host = @"127.0.0.1";
    cfg.port = 1;
    Recorder *rec = T_AUTORELEASE([[Recorder alloc] init]);
    CourierClient *c = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:cfg delegate:rec error:&err]);
    CHECK(c != nil, "typed init: %s", [[err localizedDescription] UTF8String]);
    if (!c)
        return;
    int64_t before = (int64_t)([[NSDate date] timeIntervalSince1970] * 1000);
    CHECK([c start:&err], "start");
    NSString *a = [c sendText:@"info" to:@"bob@example.test" error:&err];
    CHECK(a && WAIT_FOR([[rec statesOf:a] containsObject:failedNum()], 10),
          "no FAILED");
    err = nil;
    CourierMessageInfo *mi = a ? [c messageInfo:a error:&err] : nil;
    CHECK(mi != nil && err == nil, "messageInfo: %s",
          [[err localizedDescription] UTF8String]);
    CHECK(mi.state == CourierStateFailed && !mi.permanent
              && mi.createdMs >= before - 1000
              && mi.lastChangeMs >= mi.createdMs && mi.reason != nil,
          "info %s", [[mi description] UTF8String]);
    err = nil;
    CHECK([c messageInfo:@"no-such-id" error:&err] == nil
              && [err.domain isEqual:CourierErrorDomain]
              && err.code == CourierErrorNotFound,
          "messageInfo unknown: %s %ld", [err.domain UTF8String],
          (long)err.code);
    err = nil;
    CHECK([c messageInfo:@"" error:&err] == nil
              && err.code == CourierErrorInvalid, "messageInfo empty id");
    err = nil;
    CourierStats *st = [c stats:&err];
    CHECK(st != nil && st.received == 0 && st.duplicates == 0
              && st.linksUp == 0, "stats %s", [[st description] UTF8String]);
    err = nil;
    CHECK([c currentLink:&err] != CourierLinkOnline && err == nil,
          "currentLink: %s", [[err localizedDescription] UTF8String]);
    err = nil;
    CHECK(![c runOnce:0 error:&err] && err.code == CourierErrorState
              && [err.domain isEqual:@"org.libcourier"],
          "runOnce on a started client: %ld", (long)err.code);
    [c stop:NULL];
    [c close];
    err = nil;
    CHECK([c stats:&err] == nil && err.code == CourierErrorClosed,
          "stats after close");
    err = nil;
    CHECK([c messageInfo:@"x" error:&err] == nil
              && err.code == CourierErrorClosed, "messageInfo after close");
    err = nil;
    CHECK([c currentLink:&err] == CourierLinkOffline
              && err.code == CourierErrorClosed, "currentLink after close");
    err = nil;
    CHECK(![c runOnce:0 error:&err] && err.code == CourierErrorClosed,
          "runOnce after close");

    /* The typed initializer refuses a bad configuration the same way. */
    CourierConfig *bad = T_AUTORELEASE([[CourierConfig alloc] init]);
    bad.dbPath = dbPath(@"bad.db");
    err = nil;
    CourierClient *none = [[CourierClient alloc] initWithConfiguration:bad
                                                              delegate:nil
                                                                 error:&err];
    CHECK(none == nil && [err.domain isEqual:CourierErrorDomain]
              && err.code == CourierErrorInvalid,
          "typed init without jid: %ld", (long)err.code);
}

/* -runOnce:error: drives the client from this thread: the delegate runs
 * here, inside the call. */
static void testRunOnce(void)
{
    ThreadRecorder *rec = T_AUTORELEASE([[ThreadRecorder alloc] init]);
    NSError *err = nil;
    CourierClient *c = openOffline(@"runonce.db", rec, &err);
    CHECK(c != nil, "open: %s", [[err localizedDescription] UTF8String]);
    if (!c)
        return;
    NSString *a = [c sendText:@"driven" to:@"bob@example.test" error:&err];
    CHECK(a != nil, "send");
    BOOL got = NO;
    for (int i = 0; i < 200 && !got && a; i++) {
        @autoreleasepool {
            err = nil;
            if (![c runOnce:50 error:&err]) {
                CHECK(0, "runOnce: %s", [[err localizedDescription] UTF8String]);
                break;
            }
            got = [[rec statesOf:a] containsObject:failedNum()];
        }
    }
    CHECK(got, "no FAILED from runOnce");
    CHECK([rec elsewhere] > 0
              && pthread_equal(rec->_seen, pthread_self()),
          "the delegate did not run on the calling thread");
    err = nil;
    CHECK(![c start:&err] && err.code == CourierErrorState,
          "start while runOnce drives: %ld", (long)err.code);
    [c stop:NULL];
    [c close];
}

#ifdef COURIER_TEST_DISPATCH_STUB
/* With compat/dispatch-stub: a "queue" is a SerialWorker, dispatch_async
 * its enqueue. Exercises delegateQueue and the initializer that takes one;
 * not Apple's libdispatch. */
@interface StubQueue : SerialWorker <OS_dispatch_queue>
@end
@implementation StubQueue
@end

void dispatch_async(dispatch_queue_t queue, dispatch_block_t block)
{
    [(StubQueue *)queue enqueue:block];
}

static void testDelegateQueueStub(void)
{
    StubQueue *q = T_AUTORELEASE([[StubQueue alloc] init]);
    ThreadRecorder *rec = T_AUTORELEASE([[ThreadRecorder alloc] init]);
    rec->_worker = q;
    NSError *err = nil;
    CourierConfig *cfg = T_AUTORELEASE([[CourierConfig alloc]
        initWithJID:@"alice@example.test" password:@"pw"
             dbPath:dbPath(@"queue.db")]);
    cfg.host = @"127.0.0.1";
    cfg.port = 1;
    CourierClient *c = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:cfg delegate:rec delegateQueue:q error:&err]);
    CHECK(c != nil, "open: %s", [[err localizedDescription] UTF8String]);
    if (!c)
        return;
    CHECK(c.delegateQueue == q && c.callbackExecutor != nil,
          "delegateQueue not kept");
    CHECK([c start:&err], "start");
    NSString *a = [c sendText:@"queued" to:@"bob@example.test" error:&err];
    CHECK(a && WAIT_FOR([[rec statesOf:a] containsObject:failedNum()], 10),
          "no FAILED through the queue");
    CHECK([rec onWorker] > 0 && [rec elsewhere] == 0,
          "delegate: %d on the queue, %d elsewhere", [rec onWorker],
          [rec elsewhere]);
    c.callbackExecutor = nil;
    CHECK(c.delegateQueue == nil, "delegateQueue kept after the executor "
                                  "was replaced");
    c.delegateQueue = q;
    [c stop:NULL];
    [c close];
    CHECK(c.delegateQueue == nil, "delegateQueue kept after close");
    [q stopAndWait];
}
#endif

/* ---- the app's data contract (behaviour.md §9) ---------------------------- */

static NSString *errText(NSError *e)
{
    return e ? [e localizedDescription] : @"(no error)";
}
#define ERRS(e) [errText(e) UTF8String]

static void testDataContractOffline(void)
{
    NSString *bob = @"bob@example.test", *carol = @"carol@example.test";
    CourierConfig *dflt = T_AUTORELEASE([[CourierConfig alloc] init]);
    CHECK(!dflt.appConfirms, "appConfirms defaults to NO");
    CourierConfig *fromDict = [CourierConfig configWithDictionary:
        [NSDictionary dictionaryWithObject:[NSNumber numberWithBool:YES]
                                    forKey:@"appConfirms"] error:NULL];
    CHECK(fromDict.appConfirms, "appConfirms from a dictionary");
    CHECK([(CourierConfig *)T_AUTORELEASE([fromDict copy]) appConfirms],
          "appConfirms copied");

    NSError *err = nil;
    CourierClient *c = openOffline(@"dc.db", nil, &err);
    CHECK(c != nil, "open: %s", ERRS(err));
    if (!c)
        return;

    /* The app's own id: returned; a second send with it is State. */
    CourierOutgoing *m = [CourierOutgoing outgoingTo:bob body:@"first"];
    m.messageId = @"app-row-1";
    err = nil;
    NSString *sent = [c send:m error:&err];
    CHECK([sent isEqual:@"app-row-1"], "send own id: %s", ERRS(err));
    CourierOutgoing *again = T_AUTORELEASE([m copy]);
    again.body = @"second";
    err = nil;
    CHECK([c send:again error:&err] == nil && err.code == CourierErrorState
              && [err.domain isEqual:CourierErrorDomain],
          "same id twice: %s", ERRS(err));

    /* meta round trip through the history, with a voice message */
    NSString *meta = @"{\"secs\":12,\"w\":\"你好 👋\"}";
    CourierOutgoing *v = [CourierOutgoing outgoingTo:bob
                                                body:@"https://m.example/v.ogg"];
    v.kind = CourierKindVoice;
    v.messageId = @"voice-1";
    v.meta = meta;
    err = nil;
    CHECK([[c send:v error:&err] isEqual:@"voice-1"], "send voice: %s",
          ERRS(err));
    for (int i = 0; i < 3; i++) {
        NSString *t = [NSString stringWithFormat:@"t%d", i];
        CourierOutgoing *o = [CourierOutgoing outgoingTo:bob body:t];
        err = nil;
        CHECK([c send:o error:&err] != nil, "send t%d: %s", i, ERRS(err));
    }
    err = nil;
    CHECK([c sendText:@"other peer" to:carol error:&err] != nil, "carol: %s",
          ERRS(err));
    err = nil;
    NSArray<CourierEntry *> *all = [c historyWithPeer:bob beforeSeq:0
                                                limit:1000 error:&err];
    CHECK([all count] == 5, "history %s (%s)", [[all description] UTF8String],
          ERRS(err));
    for (NSUInteger i = 1; i < [all count]; i++)
        CHECK([[all objectAtIndex:i - 1] seq] > [[all objectAtIndex:i] seq],
              "newest first");
    CourierEntry *ve = [all count] >= 4 ? [all objectAtIndex:3] : nil;
    CHECK(ve && [ve.messageId isEqual:@"voice-1"]
              && ve.direction == CourierDirectionOut
              && [ve.peer isEqual:bob] && ve.kind == CourierKindVoice
              && [ve.body isEqual:@"https://m.example/v.ogg"]
              && [ve.meta isEqual:meta] && !ve.retracted
              && ve.timestampMs > 0,
          "voice entry %s", [[ve description] UTF8String]);
    CHECK([all count] && [[[all objectAtIndex:0] meta] isEqual:@""],
          "no meta: \"\"");
    /* pages of 2 */
    NSMutableArray *paged = [NSMutableArray array];
    int64_t cursor = 0;
    for (int round = 0; round < 10; round++) {
        NSArray *page = [c historyWithPeer:bob beforeSeq:cursor limit:2
                                     error:NULL];
        if ([page count] == 0)
            break;
        [paged addObjectsFromArray:page];
        cursor = [[page lastObject] seq];
    }
    CHECK([paged count] == 5, "paged %lu", (unsigned long)[paged count]);
    CHECK([[c historyWithPeer:nil beforeSeq:0 limit:100 error:NULL] count]
              == 6, "every peer");
    err = nil;
    CHECK([c historyWithPeer:bob beforeSeq:0 limit:0 error:&err] == nil
              && err.code == CourierErrorInvalid, "limit 0: %s", ERRS(err));
    err = nil;
    CHECK([c historyWithPeer:bob beforeSeq:0 limit:1001 error:&err] == nil
              && err.code == CourierErrorInvalid, "limit 1001");
    err = nil;
    CHECK([c historyWithPeer:@"not a jid" beforeSeq:0 limit:1 error:&err]
              == nil && err.code == CourierErrorInvalid, "bad peer");
    err = nil;
    NSArray<CourierConversation *> *convs = [c conversations:&err];
    CHECK([convs count] == 2
              && [[[convs objectAtIndex:0] peer] isEqual:carol]
              && [[[convs objectAtIndex:1] peer] isEqual:bob]
              && [[convs objectAtIndex:1] unread] == 0
              && [[convs objectAtIndex:1] lastSeq] == [[all objectAtIndex:0] seq],
          "conversations %s (%s)", [[convs description] UTF8String],
          ERRS(err));
    /* bad meta */
    CourierOutgoing *bad = [CourierOutgoing outgoingTo:bob body:@"x"];
    bad.meta = [@"" stringByPaddingToLength:4097 withString:@"x"
                            startingAtIndex:0];
    err = nil;
    CHECK([c send:bad error:&err] == nil && err.code == CourierErrorInvalid,
          "meta over 4 KiB: %s", ERRS(err));
    bad.meta = nil;
    bad.kind = CourierKindImage;
    err = nil;
    CHECK([c send:bad error:&err] == nil && err.code == CourierErrorInvalid,
          "image without an id: %s", ERRS(err));

    /* cancel: leaves pending */
    err = nil;
    NSArray *pend = [c pending:&err];
    CHECK([pend count] == 6, "pending %lu (%s)", (unsigned long)[pend count],
          ERRS(err));
    for (CourierEntry *e in pend) {
        err = nil;
        CHECK([c cancel:e.messageId error:&err], "cancel %s: %s",
              [e.messageId UTF8String], ERRS(err));
    }
    err = nil;
    pend = [c pending:&err];
    CHECK(pend != nil && [pend count] == 0, "pending after cancel %s",
          [[pend description] UTF8String]);
    err = nil;
    CHECK(![c cancel:@"voice-1" error:&err] && err.code == CourierErrorState,
          "cancel twice: %s", ERRS(err));
    err = nil;
    CHECK(![c cancel:@"no-such-id" error:&err]
              && err.code == CourierErrorNotFound, "cancel unknown");
    CourierMessageInfo *mi = [c messageInfo:@"voice-1" error:NULL];
    CHECK(mi.state == CourierStateFailed && mi.permanent
              && [mi.reason isEqual:@"cancelled"], "cancelled info %s",
          [[mi description] UTF8String]);

    /* retract (offline): marked and emptied */
    NSString *oops = [c send:[CourierOutgoing outgoingTo:bob body:@"oops"]
                       error:NULL];
    err = nil;
    CHECK([c retract:oops error:&err], "retract: %s", ERRS(err));
    CourierEntry *re = [[c historyWithPeer:bob beforeSeq:0 limit:1 error:NULL]
        lastObject];
    CHECK([re.messageId isEqual:oops] && re.retracted
              && [re.body isEqual:@""] && [re.meta isEqual:@""],
          "retracted entry %s", [[re description] UTF8String]);
    err = nil;
    CHECK(![c retract:oops error:&err] && err.code == CourierErrorState,
          "retract twice: %s", ERRS(err));
    err = nil;
    CHECK(![c retract:@"no-such-id" error:&err]
              && err.code == CourierErrorNotFound, "retract unknown");

    /* delete: gone from the history, the id kept */
    err = nil;
    CHECK(![c deleteMessage:@"voice-1" peer:carol error:&err]
              && err.code == CourierErrorNotFound, "delete, wrong peer: %s",
          ERRS(err));
    err = nil;
    CHECK([c deleteMessage:@"voice-1" peer:bob error:&err], "delete: %s",
          ERRS(err));
    BOOL still = NO;
    for (CourierEntry *e in [c historyWithPeer:bob beforeSeq:0 limit:100
                                         error:NULL])
        if ([e.messageId isEqual:@"voice-1"])
            still = YES;
    CHECK(!still, "deleted entry still in the history");
    CourierOutgoing *reuse = [CourierOutgoing outgoingTo:bob body:@"again"];
    reuse.messageId = @"voice-1";
    err = nil;
    CHECK([c send:reuse error:&err] == nil && err.code == CourierErrorState,
          "deleted id reused: %s", ERRS(err));

    /* confirm without appConfirms: State */
    err = nil;
    CHECK(![c confirm:@"no-such-id" peer:bob error:&err]
              && err.code == CourierErrorState, "confirm, appConfirms off: %s",
          ERRS(err));

    /* erase: refused while started; then an empty, usable store */
    CHECK([c start:&err], "start: %s", ERRS(err));
    err = nil;
    CHECK(![c erase:&err] && err.code == CourierErrorState,
          "erase while started: %s", ERRS(err));
    CHECK([c stop:&err], "stop: %s", ERRS(err));
    err = nil;
    CHECK([c erase:&err], "erase: %s", ERRS(err));
    CHECK([[c historyWithPeer:nil beforeSeq:0 limit:1000 error:NULL] count]
              == 0 && [[c pending:NULL] count] == 0
              && [[c conversations:NULL] count] == 0, "empty after erase");
    err = nil;
    NSString *after = [c send:[CourierOutgoing outgoingTo:bob body:@"after"]
                        error:&err];
    CHECK(after != nil, "send after erase: %s", ERRS(err));

    [c close];
    err = nil;
    CHECK([c historyWithPeer:nil beforeSeq:0 limit:1 error:&err] == nil
              && err.code == CourierErrorClosed, "history after close");
    err = nil;
    CHECK(![c erase:&err] && err.code == CourierErrorClosed,
          "erase after close");

    /* appConfirms on: an unknown message is NotFound */
    CourierConfig *ac = T_AUTORELEASE([[CourierConfig alloc]
        initWithJID:@"alice@example.test" password:@"pw"
             dbPath:dbPath(@"dc-confirm.db")]);
    ac.host = @"127.0.0.1";
    ac.port = 1;
    ac.appConfirms = YES;
    err = nil;
    CourierClient *d = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:ac delegate:nil error:&err]);
    CHECK(d != nil, "open appConfirms: %s", ERRS(err));
    err = nil;
    CHECK(d && ![d confirm:@"no-such-id" peer:bob error:&err]
              && err.code == CourierErrorNotFound, "confirm unknown: %s",
          ERRS(err));
    [d close];
}

/* Dave's delegate: the CourierMessage form (meta) and confirms each
 * message from the callback. */
@interface MetaRecorder : NSObject <CourierClientDelegate>
{
    NSMutableArray *_got, *_confirmErrors;
}
- (NSArray *)got;
- (NSArray *)confirmErrors;
@end

@implementation MetaRecorder
- (instancetype)init
{
    if ((self = [super init])) {
        _got = [[NSMutableArray alloc] init];
        _confirmErrors = [[NSMutableArray alloc] init];
    }
    return self;
}
#if !T_ARC
- (void)dealloc
{
    [_got release];
    [_confirmErrors release];
    [super dealloc];
}
#endif
- (void)courier:(CourierClient *)client
    didReceiveMessage:(CourierMessage *)message
{
    NSError *e = nil;
    BOOL ok = [client confirm:message.messageId peer:message.peer error:&e];
    @synchronized(self) {
        [_got addObject:message];
        if (!ok)
            [_confirmErrors addObject:errText(e)];
    }
}
/* must not be called: the CourierMessage form wins */
- (void)courier:(CourierClient *)client
    didReceiveMessageWithId:(NSString *)messageId
                       from:(NSString *)peer
                       kind:(CourierKind)kind
                       body:(NSString *)body
                timestampMs:(int64_t)timestampMs
{
    @synchronized(self) {
        [_confirmErrors addObject:@"the old message method was called"];
    }
}
- (NSArray *)got
{
    @synchronized(self) {
        return T_AUTORELEASE([_got copy]);
    }
}
- (NSArray *)confirmErrors
{
    @synchronized(self) {
        return T_AUTORELEASE([_confirmErrors copy]);
    }
}
@end

/* carol sends dave a message with meta and retracts it: dave (appConfirms,
 * a delegate with -courier:didReceiveMessage:, an onRetract block) gets the
 * meta, confirms it, then onRetract fires and his history entry is
 * retracted. */
static void testDataContractLive(void)
{
    if (!liveEnv()) {
        printf("live test skipped (COURIER_TEST_* not set)\n");
        return;
    }
    NSString *carolJid = liveJid(@"carol"), *daveJid = liveJid(@"dave");
    MetaRecorder *mr = T_AUTORELEASE([[MetaRecorder alloc] init]);
    Recorder *rc = T_AUTORELEASE([[Recorder alloc] init]);
    CourierConfig *dcfg = liveConfig(@"dave", @"objc-dc-dave.db");
    dcfg.appConfirms = YES;
    NSError *err = nil;
    CourierClient *dave = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:dcfg delegate:mr error:&err]);
    CHECK(dave != nil, "open dave: %s", ERRS(err));
    CourierClient *carol = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:liveConfig(@"carol", @"objc-dc-carol.db")
                     delegate:rc error:&err]);
    CHECK(carol != nil, "open carol: %s", ERRS(err));
    if (!dave || !carol)
        return;
    NSMutableArray *retracts = [NSMutableArray array];
    dave.onRetract = ^(NSString *msgId, NSString *peer) {
        add(retracts, [NSArray arrayWithObjects:msgId, peer, nil]);
    };
    CHECK([dave start:&err] && [carol start:&err], "start: %s", ERRS(err));

    NSString *meta = @"{\"secs\":7,\"t\":\"你好 👋\"}";
    CourierOutgoing *m = [CourierOutgoing outgoingTo:daveJid body:@"你好 👋"];
    m.messageId = [NSString stringWithFormat:@"objc-retract-%d", (int)getpid()];
    m.meta = meta;
    err = nil;
    NSString *msgId = [carol send:m error:&err];
    CHECK([msgId isEqual:m.messageId], "send: %s", ERRS(err));
    CHECK(WAIT_FOR([[mr got] count] > 0, 30), "dave got nothing");
    NSArray *got = [mr got];
    if ([got count]) {
        CourierMessage *g = [got objectAtIndex:0];
        CHECK([got count] == 1 && [g.messageId isEqual:msgId]
                  && [g.peer isEqual:carolJid] && [g.body isEqual:@"你好 👋"]
                  && [g.meta isEqual:meta] && g.kind == CourierKindText,
              "dave got %s", [[got description] UTF8String]);
    }
    NSNumber *delivered = [NSNumber numberWithInteger:CourierStateDelivered];
    CHECK(WAIT_FOR([[rc statesOf:msgId] containsObject:delivered], 30),
          "carol: no DELIVERED (%s)",
          [[[rc statesOf:msgId] description] UTF8String]);
    CourierEntry *in = [[dave historyWithPeer:carolJid beforeSeq:0 limit:1
                                        error:&err] lastObject];
    CHECK(in.direction == CourierDirectionIn && [in.meta isEqual:meta]
              && !in.retracted, "dave's entry %s (%s)",
          [[in description] UTF8String], ERRS(err));

    err = nil;
    CHECK([carol retract:msgId error:&err], "retract: %s", ERRS(err));
    CHECK(WAIT_FOR([snap(retracts) count] > 0, 30), "dave: no onRetract");
    NSArray *r = [snap(retracts) count] ? [snap(retracts) objectAtIndex:0]
                                        : nil;
    CHECK(r && [[r objectAtIndex:0] isEqual:msgId]
              && [[r objectAtIndex:1] isEqual:carolJid],
          "onRetract %s", [[r description] UTF8String]);
    CourierEntry *after = [[dave historyWithPeer:carolJid beforeSeq:0 limit:1
                                           error:&err] lastObject];
    CHECK([after.messageId isEqual:msgId] && after.retracted
              && [after.body isEqual:@""] && [after.meta isEqual:@""],
          "dave's entry after %s", [[after description] UTF8String]);
    CourierEntry *mine = [[carol historyWithPeer:daveJid beforeSeq:0 limit:1
                                           error:&err] lastObject];
    CHECK(mine.retracted, "carol's entry %s", [[mine description] UTF8String]);
    CHECK([[mr confirmErrors] count] == 0, "confirm: %s",
          [[[mr confirmErrors] description] UTF8String]);
    /* onReceive, once set, wins over the delegate's methods */
    NSMutableArray *blockGot = [NSMutableArray array];
    T_WEAK CourierClient *weakDave = dave;
    dave.onReceive = ^(CourierMessage *msg) {
        add(blockGot, msg);
        [weakDave confirm:msg.messageId peer:msg.peer error:NULL];
    };
    CourierOutgoing *m2 = [CourierOutgoing outgoingTo:daveJid body:@"two"];
    m2.meta = @"m2";
    err = nil;
    NSString *id2 = [carol send:m2 error:&err];
    CHECK(id2 != nil, "send 2: %s", ERRS(err));
    CHECK(WAIT_FOR([snap(blockGot) count] > 0, 30), "onReceive: nothing");
    if ([snap(blockGot) count]) {
        CourierMessage *g = [snap(blockGot) objectAtIndex:0];
        CHECK([g.messageId isEqual:id2] && [g.meta isEqual:@"m2"]
                  && [g.body isEqual:@"two"], "onReceive got %s",
              [[g description] UTF8String]);
    }
    usleep(300000);
    CHECK([[mr got] count] == 1 && [snap(retracts) count] == 1,
          "exactly once: %lu messages, %lu retractions",
          (unsigned long)[[mr got] count],
          (unsigned long)[snap(retracts) count]);
    [carol stop:NULL];
    [dave stop:NULL];
    [carol close];
    [dave close];
}

/* ---- issue 15: the phone's life (behaviour.md §10) --------------------- */

static double nowSecs(void)
{
    return [[NSDate date] timeIntervalSince1970];
}

/* The child of the unclean-close test: opens with the C API, sends, and
 * dies without closing (an app killed in the background). Plain C after
 * fork: no Objective-C runtime work in the child. */
static void crashChild(const char *db)
{
    courier_config_t cfg;
    courier_config_init(&cfg);
    cfg.jid = "alice@example.test/phone";
    cfg.password = "pw";
    cfg.host = "127.0.0.1";
    cfg.port = 1;
    cfg.db_path = db;
    courier_t *c = NULL;
    courier_outgoing_t m = { .to = "bob@example.test",
                             .body = "before the crash", .id = "crash-1" };
    if (courier_open(&c, &cfg, NULL, NULL) != COURIER_OK ||
        courier_send(c, &m, NULL) != COURIER_OK)
        _exit(1);
    _exit(0); /* no courier_close */
}

/* Thread-local: set while the test's executor runs a unit of work. */
static __thread int inExecutor;

static void testPhoneLifeOffline(void)
{
    NSError *err = nil;
    CHECK(CourierErrorTimedOut == -11
              && CourierErrorTimedOut == COURIER_ETIMEDOUT, "TimedOut");
    CHECK(CourierStoreCheckNone == COURIER_CHECK_NONE
              && CourierStoreCheckRunning == COURIER_CHECK_RUNNING
              && CourierStoreCheckOK == COURIER_CHECK_OK
              && CourierStoreCheckDamaged == COURIER_CHECK_DAMAGED
              && CourierStoreCheckFailed == COURIER_CHECK_FAILED,
          "CourierStoreCheck values");

    /* caPath: nil by default, from a dictionary, copied, passed through;
     * a U+0000 in it is the binding's EINVAL, naming it. */
    CourierConfig *dflt = T_AUTORELEASE([[CourierConfig alloc] init]);
    CHECK(dflt.caPath == nil, "caPath defaults to nil");
    CourierConfig *fromDict = [CourierConfig configWithDictionary:
        [NSDictionary dictionaryWithObject:tmpDir forKey:@"caPath"]
                                                         error:NULL];
    CHECK([fromDict.caPath isEqual:tmpDir], "caPath from a dictionary");
    CourierConfig *copied = T_AUTORELEASE([fromDict copy]);
    CHECK([copied.caPath isEqual:tmpDir], "caPath copied");
    CourierConfig *cfg = T_AUTORELEASE([[CourierConfig alloc]
        initWithJID:@"alice@example.test" password:@"pw"
             dbPath:dbPath(@"phone.db")]);
    cfg.host = @"127.0.0.1";
    cfg.port = 1;
    cfg.caPath = tmpDir;
    CourierClient *c = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:cfg delegate:nil error:&err]);
    CHECK(c != nil, "open with caPath: %s", ERRS(err));
    CourierConfig *bad = T_AUTORELEASE([cfg copy]);
    bad.caPath = @"/tmp/a\0b";
    err = nil;
    CourierClient *none = [[CourierClient alloc]
        initWithConfiguration:bad delegate:nil error:&err];
    CHECK(none == nil && err.code == CourierErrorInvalid
              && [[err localizedDescription] rangeOfString:@"caPath"].location
                     != NSNotFound, "caPath with U+0000: %s", ERRS(err));
    if (!c)
        return;

    /* checkStatus: a fresh store owes nothing */
    CourierStoreCheck sc = CourierStoreCheckUnknown;
    err = nil;
    CHECK([c checkStatus:&sc error:&err] && sc == CourierStoreCheckNone,
          "checkStatus %ld: %s", (long)sc, ERRS(err));
    CHECK([c storeCheck:NULL] == CourierStoreCheckNone, "storeCheck");

    /* setActive: before start (remembered), started, after close */
    err = nil;
    CHECK([c setActive:NO error:&err] && [c setActive:YES error:&err]
              && [c setActive:NO error:&err], "setActive: %s", ERRS(err));

    /* sync on a client not started, against a port that refuses: it
     * starts it and, nothing ever acknowledged, times out after (not
     * before) its timeout; the loop goes on */
    NSString *owed = [c sendText:@"owed" to:@"bob@example.test" error:&err];
    CHECK(owed != nil, "send: %s", ERRS(err));
    err = nil;
    double t0 = nowSecs();
    BOOL synced = [c sync:300 error:&err];
    double took = nowSecs() - t0;
    CHECK(!synced && err.code == CourierErrorTimedOut
              && [err.domain isEqual:CourierErrorDomain],
          "sync unreachable: %s", ERRS(err));
    CHECK(took >= 0.29, "sync returned after %.3f s", took);
    err = nil;
    CHECK(![c start:&err] && err.code == CourierErrorState,
          "sync did not start the client: %s", ERRS(err));
    err = nil;
    CHECK([c setActive:YES error:&err], "setActive started: %s", ERRS(err));
    err = nil;
    CHECK(![c sync:((NSUInteger)UINT_MAX) + 1 error:&err]
              && err.code == CourierErrorInvalid, "sync timeout too large");
    [c stop:NULL];

    /* deleteMessage:peer:direction: names the entry's direction */
    CourierOutgoing *m = [CourierOutgoing outgoingTo:@"bob@example.test"
                                                body:@"gone"];
    m.messageId = @"de-1";
    err = nil;
    CHECK([[c send:m error:&err] isEqual:@"de-1"], "send de-1: %s", ERRS(err));
    err = nil;
    CHECK(![c deleteMessage:@"de-1" peer:@"bob@example.test"
                  direction:CourierDirectionIn error:&err]
              && err.code == CourierErrorNotFound, "delete IN: %s", ERRS(err));
    err = nil;
    CHECK(![c deleteMessage:@"de-1" peer:@"bob@example.test"
                  direction:(CourierDirection)7 error:&err]
              && err.code == CourierErrorInvalid, "bad direction: %s",
          ERRS(err));
    err = nil;
    CHECK([c deleteMessage:@"de-1" peer:@"bob@example.test"
                 direction:CourierDirectionOut error:&err],
          "delete OUT: %s", ERRS(err));
    NSArray *h = [c historyWithPeer:@"bob@example.test" beforeSeq:0 limit:10
                              error:&err];
    BOOL left = NO;
    for (CourierEntry *e in h)
        if ([e.messageId isEqual:@"de-1"])
            left = YES;
    CHECK(h && !left, "de-1 still in the history: %s",
          [[h description] UTF8String]);
    err = nil;
    CHECK([c deleteMessage:@"de-1" peer:@"bob@example.test"
                 direction:CourierDirectionOut error:&err],
          "delete again (harmless): %s", ERRS(err));

    /* onCertificate: kept until -close, which releases it */
    c.onCertificate = ^BOOL(NSString *host, NSString *pem) {
        return NO;
    };
    CHECK(c.onCertificate != nil, "onCertificate kept");

    [c close];
    CHECK(c.onCertificate == nil, "onCertificate kept after close");
    err = nil;
    CHECK(![c setActive:NO error:&err] && err.code == CourierErrorClosed,
          "setActive after close");
    err = nil;
    CHECK(![c sync:10 error:&err] && err.code == CourierErrorClosed,
          "sync after close");
    err = nil;
    CHECK(![c checkStatus:&sc error:&err] && err.code == CourierErrorClosed
              && [c storeCheck:NULL] == CourierStoreCheckUnknown,
          "checkStatus after close");
    err = nil;
    CHECK(![c deleteMessage:@"x" peer:@"bob@example.test"
                  direction:CourierDirectionOut error:&err]
              && err.code == CourierErrorClosed, "deleteMessage after close");

    /* sync from the loop thread (a block, no executor) would wait for
     * itself: State; on a client -runOnce:error: drives: State */
    NSMutableArray *codes = [NSMutableArray array];
    CourierClient *d = openOffline(@"sync-cb.db", nil, &err);
    CHECK(d != nil, "open: %s", ERRS(err));
    T_WEAK CourierClient *weakD = d;
    d.onState = ^(NSString *msgId, NSString *peer, CourierState st) {
        NSError *e = nil;
        BOOL ok = [weakD sync:10 error:&e];
        add(codes, num(ok ? 0 : e.code));
    };
    CHECK([d start:&err], "start: %s", ERRS(err));
    [d sendText:@"x" to:@"bob@example.test" error:NULL];
    CHECK(WAIT_FOR([snap(codes) count] > 0, 10), "no callback");
    CHECK([snap(codes) count] > 0
              && [[snap(codes) objectAtIndex:0] isEqual:num(CourierErrorState)],
          "sync from the loop thread: %s",
          [[snap(codes) description] UTF8String]);
    [d stop:NULL];
    [d close];
    CourierClient *o = openOffline(@"sync-once.db", nil, &err);
    if (o) {
        [o runOnce:0 error:NULL];
        err = nil;
        CHECK(![o sync:10 error:&err] && err.code == CourierErrorState,
              "sync with runOnce: %s", ERRS(err));
        [o stop:NULL];
        [o close];
    }

    /* An app killed with its client open (a forked child that never
     * closes) leaves the store unclean: the next open returns at once and
     * the check runs on the library's thread: Running or OK, then OK. */
    NSString *crashDb = dbPath(@"crash.db");
    pid_t pid = fork();
    if (pid == 0)
        crashChild([crashDb fileSystemRepresentation]);
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status)
              && WEXITSTATUS(status) == 0, "crash child: %d", status);
    CHECK([[NSFileManager defaultManager] fileExistsAtPath:
              [crashDb stringByAppendingString:@"-wal"]], "no -wal left");
    NSMutableArray *verdicts = [NSMutableArray array];
    CourierClient *k = openOffline(@"crash.db", nil, &err);
    CHECK(k != nil, "reopen: %s", ERRS(err));
    if (k) {
        k.onLog = ^(NSString *line, CourierLogLevel level) {
            if ([line rangeOfString:@"check after an unclean close"].location
                    != NSNotFound)
                add(verdicts, [NSArray arrayWithObjects:num(level), line,
                                                        nil]);
        };
        CourierStoreCheck first = [k storeCheck:&err];
        CHECK(first == CourierStoreCheckRunning || first == CourierStoreCheckOK,
              "first status %ld: %s", (long)first, ERRS(err));
        CHECK(WAIT_FOR([k storeCheck:NULL] != CourierStoreCheckRunning, 30),
              "check still running");
        CHECK([k storeCheck:NULL] == CourierStoreCheckOK, "verdict %ld",
              (long)[k storeCheck:NULL]);
        CourierEntry *e = [[k historyWithPeer:@"bob@example.test" beforeSeq:0
                                        limit:1 error:&err] lastObject];
        CHECK([e.messageId isEqual:@"crash-1"], "the child's message: %s",
              [[e description] UTF8String]);
        CHECK([k start:&err], "start: %s", ERRS(err)); /* the log's turn */
        CHECK(WAIT_FOR([snap(verdicts) count] > 0, 10), "no verdict logged");
        usleep(100000);
        CHECK([snap(verdicts) count] == 1
                  && [[[snap(verdicts) objectAtIndex:0] objectAtIndex:0]
                         isEqual:num(CourierLogInfo)],
              "verdicts %s", [[snap(verdicts) description] UTF8String]);
        [k stop:NULL];
        [k close];
    }
}

/* Delegate form of the certificate decision, counting its calls. */
@interface CertDelegate : NSObject <CourierClientDelegate>
{
@public
    int _asked;
    BOOL _answer;
}
@end
@implementation CertDelegate
- (BOOL)courier:(CourierClient *)client
    shouldAcceptCertificateChain:(NSString *)pemChain
                         forHost:(NSString *)host
{
    @synchronized(self) {
        _asked++;
    }
    return _answer;
}
- (int)asked
{
    @synchronized(self) {
        return _asked;
    }
}
@end

static BOOL linkOnline(CourierClient *c)
{
    return [c currentLink:NULL] == CourierLinkOnline;
}

/* Live (behaviour.md §10): platform trust, caPath, sync and the id both
 * sides chose. No caFile: OpenSSL cannot verify the test server. The
 * block gets the JID's domain and the chain, leaf first (the leaf is the
 * server's certificate file: a platform verifier would check the rest),
 * on the library's thread although a callback executor is set; YES: the
 * link comes up. A delegate that says NO, a block that raises and a
 * client without any decider never get online. caPath alone is trusted. */
static void testPhoneLifeLive(void)
{
    if (!liveEnv()) {
        printf("live test skipped (COURIER_TEST_* not set)\n");
        return;
    }
    NSString *domain = [NSString stringWithUTF8String:
                                     getenv("COURIER_TEST_DOMAIN")];
    NSString *leafFile = [[NSString stringWithUTF8String:
                                        getenv("COURIER_TEST_DIR")]
        stringByAppendingPathComponent:@"server.crt"];
    NSString *leaf = [[NSString stringWithContentsOfFile:leafFile
                                                encoding:NSUTF8StringEncoding
                                                   error:NULL]
        stringByTrimmingCharactersInSet:
            [NSCharacterSet whitespaceAndNewlineCharacterSet]];
    CHECK(leaf.length > 0, "no %s", [leafFile UTF8String]);
    NSError *err = nil;

    NSMutableArray *asked = [NSMutableArray array];
    CourierConfig *ac = liveConfig(@"alice", @"objc-cert-alice.db");
    ac.caFile = nil;
    CourierClient *a = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:ac delegate:nil error:&err]);
    CHECK(a != nil, "open: %s", ERRS(err));
    if (!a)
        return;
    a.callbackExecutor = ^(CourierCallbackWork work) {
        inExecutor = 1;
        work();
        inExecutor = 0;
    };
    a.onCertificate = ^BOOL(NSString *host, NSString *pem) {
        BOOL ok = [host isEqual:domain] && leaf.length > 0
            && [pem hasPrefix:leaf];
        add(asked, [NSArray arrayWithObjects:host, num(inExecutor),
                                             num(ok), nil]);
        return ok;
    };
    CHECK([a start:&err], "start: %s", ERRS(err));
    CHECK(WAIT_FOR(linkOnline(a), 30), "not online through onCertificate "
          "(asked %s)", [[snap(asked) description] UTF8String]);
    NSArray *rows = snap(asked);
    CHECK([rows count] > 0, "onCertificate never asked");
    for (NSArray *r in rows)
        CHECK([[r objectAtIndex:0] isEqual:domain]
                  && [[r objectAtIndex:1] isEqual:num(0)]
                  && [[r objectAtIndex:2] isEqual:num(1)],
              "asked %s", [[r description] UTF8String]);
    [a stop:NULL];
    [a close];

    CertDelegate *no = T_AUTORELEASE([[CertDelegate alloc] init]);
    CourierConfig *nc = liveConfig(@"alice", @"objc-cert-no.db");
    nc.caFile = nil;
    CourierClient *b = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:nc delegate:no error:&err]);
    CHECK(b && [b start:&err], "start: %s", ERRS(err));
    CHECK(WAIT_FOR([no asked] > 0, 20), "delegate never asked");
    CHECK(!WAIT_FOR(linkOnline(b), 2), "online although refused");
    [b stop:NULL];
    [b close];

    NSMutableArray *raised = [NSMutableArray array];
    CourierConfig *rc = liveConfig(@"alice", @"objc-cert-raise.db");
    rc.caFile = nil;
    CourierClient *r = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:rc delegate:nil error:&err]);
    if (r) {
        r.onCertificate = ^BOOL(NSString *host, NSString *pem) {
            add(raised, host);
            [NSException raise:@"CertBug" format:@"expected"];
            return YES;
        };
        CHECK([r start:&err], "start: %s", ERRS(err));
        CHECK(WAIT_FOR([snap(raised) count] > 0, 20), "block never asked");
        CHECK(!WAIT_FOR(linkOnline(r), 2), "online although it raised");
        [r stop:NULL];
        [r close];
    }

    /* -close from inside the block (the loop thread, inside the login):
     * deferred until the block returns; asked once, then nothing. */
    NSMutableArray *closedIn = [NSMutableArray array];
    CourierConfig *kc = liveConfig(@"alice", @"objc-cert-close.db");
    kc.caFile = nil;
    CourierClient *k = [[CourierClient alloc] initWithConfiguration:kc
                                                           delegate:nil
                                                              error:&err];
    if (k) {
        T_WEAK CourierClient *weakK = k;
        k.onCertificate = ^BOOL(NSString *host, NSString *pem) {
            add(closedIn, host);
            [weakK close];
            return YES;
        };
        CHECK([k start:&err], "start: %s", ERRS(err));
        CHECK(WAIT_FOR([snap(closedIn) count] > 0, 20), "block never asked");
        usleep(300000);
        err = nil;
        CHECK([snap(closedIn) count] == 1 && ![k start:&err]
                  && err.code == CourierErrorClosed && k.onCertificate == nil,
              "closed from onCertificate: %lu calls, %s",
              (unsigned long)[snap(closedIn) count], ERRS(err));
        T_RELEASE(k);
    }

    CourierConfig *zc = liveConfig(@"alice", @"objc-cert-none.db");
    zc.caFile = nil;
    CourierClient *z = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:zc delegate:nil error:&err]);
    CHECK(z && [z start:&err], "start: %s", ERRS(err));
    CHECK(!WAIT_FOR(linkOnline(z), 3), "online without any CA or decider");
    [z stop:NULL];
    [z close];

    CourierConfig *pc = liveConfig(@"alice", @"objc-capath.db");
    pc.caFile = nil;
    pc.caPath = [NSString stringWithUTF8String:getenv("COURIER_TEST_CA_DIR")];
    CourierClient *p = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:pc delegate:nil error:&err]);
    CHECK(p && [p start:&err], "start: %s", ERRS(err));
    CHECK(WAIT_FOR(linkOnline(p), 30), "caPath not trusted");
    [p stop:NULL];
    [p close];

    /* sync, as a push-woken run: bob sends alice an id while she is away;
     * alice, not started, queues her own message with the same id and
     * syncs: acknowledged and received when it returns. Then delete is
     * State and the direction decides. */
    NSString *aliceJid = liveJid(@"alice"), *bobJid = liveJid(@"bob");
    NSString *both = [NSString stringWithFormat:@"objc-both-%d", (int)getpid()];
    Recorder *bobRec = T_AUTORELEASE([[Recorder alloc] init]);
    CourierClient *bob = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:liveConfig(@"bob", @"objc-sync-bob.db")
                     delegate:bobRec error:&err]);
    CHECK(bob && [bob start:&err], "bob: %s", ERRS(err));
    CHECK(WAIT_FOR(linkOnline(bob), 30), "bob not online");
    CourierOutgoing *bm = [CourierOutgoing outgoingTo:aliceJid
                                                 body:@"from bob"];
    bm.messageId = both;
    err = nil;
    CHECK([[bob send:bm error:&err] isEqual:both], "bob send: %s", ERRS(err));
    NSNumber *sent = num(CourierStateSent);
    CHECK(WAIT_FOR([[bobRec statesOf:both] containsObject:sent], 30),
          "the server never took bob's message");

    Recorder *aliceRec = T_AUTORELEASE([[Recorder alloc] init]);
    CourierClient *alice = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:liveConfig(@"alice", @"objc-sync-alice.db")
                     delegate:aliceRec error:&err]);
    CHECK(alice != nil, "alice: %s", ERRS(err));
    if (!alice || !bob)
        return;
    CHECK([alice storeCheck:NULL] == CourierStoreCheckNone, "alice's check");
    CHECK([alice setActive:NO error:&err], "setActive: %s", ERRS(err));
    CourierOutgoing *am = [CourierOutgoing outgoingTo:bobJid
                                                 body:@"from alice"];
    am.messageId = both;
    err = nil;
    CHECK([[alice send:am error:&err] isEqual:both], "alice send: %s",
          ERRS(err));
    err = nil;
    CHECK([alice sync:30000 error:&err], "sync: %s", ERRS(err));
    CourierState st = [alice stateOf:both error:&err];
    CHECK(st >= CourierStateSent && st != CourierStateFailed,
          "alice's message after sync: %ld", (long)st);
    NSArray *msgs = [aliceRec messages];
    CHECK([msgs count] == 1 && [[[msgs objectAtIndex:0] objectAtIndex:0]
                                   isEqual:both]
              && [[[msgs objectAtIndex:0] objectAtIndex:1] isEqual:bobJid],
          "alice received %s", [[msgs description] UTF8String]);
    CHECK(linkOnline(alice), "the link did not stay up");
    err = nil;
    CHECK([alice sync:30000 error:&err], "sync again: %s", ERRS(err));
    CHECK([alice setActive:YES error:&err], "setActive: %s", ERRS(err));

    NSArray *h = [alice historyWithPeer:bobJid beforeSeq:0 limit:10 error:&err];
    CHECK([h count] == 2, "history %s", [[h description] UTF8String]);
    err = nil;
    CHECK(![alice deleteMessage:both peer:bobJid error:&err]
              && err.code == CourierErrorState, "delete both ways: %s",
          ERRS(err));
    err = nil;
    CHECK([alice deleteMessage:both peer:bobJid direction:CourierDirectionIn
                         error:&err], "delete IN: %s", ERRS(err));
    h = [alice historyWithPeer:bobJid beforeSeq:0 limit:10 error:&err];
    CHECK([h count] == 1
              && ((CourierEntry *)[h objectAtIndex:0]).direction
                     == CourierDirectionOut,
          "history after %s", [[h description] UTF8String]);
    err = nil;
    CHECK([alice deleteMessage:both peer:bobJid error:&err],
          "delete the one left: %s", ERRS(err));
    [alice stop:NULL];
    [bob stop:NULL];
    [alice close];
    [bob close];
}

/* Push (behaviour.md §10), offline: enabled on a client not started,
 * then started against a port that refuses: YES once stored, without
 * waiting for a server; replacing, disabling, disabling again are
 * harmless; the store reopens with the registration (that the next login
 * writes it is testPushLive). Bad arguments are Invalid, naming the
 * argument; after -close, Closed. */
static void testPushOffline(void)
{
    CHECK(CourierErrorRefused == -12 && CourierErrorRefused == COURIER_EREFUSED,
          "Refused");
    NSError *err = nil;
    NSString *svc = @"push.example.com";
    CourierClient *c = openOffline(@"push.db", nil, &err);
    CHECK(c != nil, "open: %s", ERRS(err));
    if (!c)
        return;
    CHECK([c enablePushWithService:svc node:@"token-1" secret:@"s3cret"
                             error:&err], "enable: %s", ERRS(err));
    CHECK([c enablePushWithService:svc node:@"token-2" secret:nil
                             error:&err], "replace, no secret: %s", ERRS(err));
    CHECK([c enablePushWithService:svc node:@"\u4f60\u597d-token"
                            secret:@"\u4f60\u597d" error:&err],
          "UTF-8: %s", ERRS(err));
    CHECK([c disablePush:&err], "disable: %s", ERRS(err));
    CHECK([c disablePush:&err], "disable again (harmless): %s", ERRS(err));
    CHECK([c enablePushWithService:svc node:@"token-3" secret:@"s3cret"
                             error:&err], "enable again: %s", ERRS(err));

    struct {
        NSString *service, *node, *secret, *named;
    } bad[] = {
        { svc, @"", nil, @"node" },
        { svc, nil, nil, @"node" },  /* nonnull: the binding's Invalid */
        { @"not a jid", @"token", nil, @"service_jid" },
        { @"", @"token", nil, @"service" },
        { nil, @"token", nil, @"serviceJID" },
        { svc, @"token", @"", @"secret" },
        { svc, @"nul\0inside", nil, @"node" },
        { svc, @"ctl\x01", nil, @"node" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = nil;
        BOOL ok = [c enablePushWithService:bad[i].service node:bad[i].node
                                    secret:bad[i].secret error:&err];
        CHECK(!ok && err.code == CourierErrorInvalid
                  && [err.domain isEqual:CourierErrorDomain]
                  && [[err localizedDescription]
                         rangeOfString:bad[i].named].location != NSNotFound,
              "bad argument %zu: %s", i, ERRS(err));
    }
    NSString *most = [@"" stringByPaddingToLength:1023 withString:@"n"
                                  startingAtIndex:0];
    err = nil;
    CHECK([c enablePushWithService:svc node:most secret:nil error:&err],
          "a 1023-byte node: %s", ERRS(err));
    NSString *over = [most stringByAppendingString:@"n"];
    err = nil;
    CHECK(![c enablePushWithService:svc node:over secret:nil error:&err]
              && err.code == CourierErrorInvalid, "1024-byte node: %s",
          ERRS(err));
    err = nil;
    CHECK(![c enablePushWithService:svc node:@"token" secret:over error:&err]
              && err.code == CourierErrorInvalid, "1024-byte secret: %s",
          ERRS(err));

    /* started, the link never up: stored at once, not waited for */
    err = nil;
    CHECK([c start:&err], "start: %s", ERRS(err));
    double t0 = nowSecs();
    CHECK([c enablePushWithService:svc node:@"token-4" secret:@"s3cret"
                             error:&err]
              && [c disablePush:&err]
              && [c enablePushWithService:svc node:@"token-5" secret:nil
                                    error:&err],
          "started, offline: %s", ERRS(err));
    double took = nowSecs() - t0;
    CHECK(took < 5.0, "waited %.3f s offline", took);
    [c stop:NULL];
    [c close];
    err = nil;
    CHECK(![c enablePushWithService:svc node:@"token" secret:nil error:&err]
              && err.code == CourierErrorClosed, "enable after close: %s",
          ERRS(err));
    err = nil;
    CHECK(![c disablePush:&err] && err.code == CourierErrorClosed,
          "disable after close: %s", ERRS(err));

    /* the store reopens with it, and forgets it offline */
    CourierClient *d = openOffline(@"push.db", nil, &err);
    CHECK(d != nil, "reopen: %s", ERRS(err));
    if (!d)
        return;
    CHECK([d storeCheck:NULL] == CourierStoreCheckNone, "reopened clean");
    err = nil;
    CHECK([d disablePush:&err], "disable after reopen: %s", ERRS(err));
    CHECK([d enablePushWithService:svc node:@"token-6" secret:nil error:&err],
          "enable after reopen: %s", ERRS(err));
    [d close];
}

/* Push live against the test Prosody (mod_cloud_notify; the push
 * component's JID from prosody.sh; with COURIER_TEST_NO_PUSH the server
 * refuses instead). Enabled offline, closed, reopened and started: the
 * registration came from the store and the login writes it (the answer
 * logged). Online the call returns the server's answer: accepted; Refused
 * with the condition for a service JID equal to the session's own full
 * JID (mod_cloud_notify's bad-request). Disable online, then again.
 * Called from a block on the loop thread it does not wait. */
static void testPushLive(void)
{
    if (!liveEnv()) {
        printf("live test skipped (COURIER_TEST_* not set)\n");
        return;
    }
    const char *pj = getenv("COURIER_TEST_PUSH_JID");
    NSString *svc = pj ? [NSString stringWithUTF8String:pj]
                       : [@"push." stringByAppendingString:
                             [NSString stringWithUTF8String:
                                           getenv("COURIER_TEST_DOMAIN")]];
    NSString *node = [NSString stringWithFormat:@"objc-push-%d",
                                                (int)getpid()];
    CourierConfig *cfg = liveConfig(@"dave", @"objc-push-dave.db");
    NSString *ownJid = [liveJid(@"dave") stringByAppendingString:@"/objc-push"];
    cfg.jid = ownJid;
    NSMutableArray *logs = [NSMutableArray array];
    CourierLogHandler logger = ^(NSString *line, CourierLogLevel level) {
        if ([line rangeOfString:@"push (XEP-0357)"].location != NSNotFound)
            add(logs, line);
    };
    NSError *err = nil;
    CourierClient *d = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:cfg delegate:nil error:&err]);
    CHECK(d != nil, "open: %s", ERRS(err));
    if (!d)
        return;
    CHECK([d enablePushWithService:svc node:node secret:@"s3cret" error:&err],
          "enable, not started: %s", ERRS(err));
    [d close];

    CourierClient *e = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:cfg delegate:nil error:&err]);
    CHECK(e != nil, "reopen: %s", ERRS(err));
    if (!e)
        return;
    e.onLog = logger;
    CHECK([e start:&err], "start: %s", ERRS(err));
    CHECK(WAIT_FOR(linkOnline(e), 30), "dave not online");
    NSString *answer = [NSString stringWithFormat:@"enable at %@ %@", svc,
                                                  pj ? @"accepted"
                                                     : @"refused"];
    CHECK(WAIT_FOR([[snap(logs) componentsJoinedByString:@"\n"]
                       rangeOfString:answer].location != NSNotFound, 30),
          "the stored registration was not written at login: %s",
          [[snap(logs) description] UTF8String]);
    err = nil;
    if (pj) {
        CHECK([e enablePushWithService:svc
                                  node:[node stringByAppendingString:@"-2"]
                                secret:nil error:&err],
              "enable online: %s", ERRS(err));
        err = nil;
        CHECK(![e enablePushWithService:ownJid node:node secret:nil
                                  error:&err]
                  && err.code == CourierErrorRefused && err.code == -12
                  && [err.domain isEqual:CourierErrorDomain]
                  && [[err localizedDescription]
                         rangeOfString:@"bad-request"].location != NSNotFound,
              "enable at our own JID: %s", ERRS(err));
    } else {
        CHECK(![e enablePushWithService:svc node:node secret:nil error:&err]
                  && err.code == CourierErrorRefused
                  && [[err localizedDescription]
                         rangeOfString:@"service-unavailable"].location
                         != NSNotFound,
              "enable without XEP-0357: %s", ERRS(err));
    }
    err = nil;
    CHECK([e disablePush:&err], "disable online: %s", ERRS(err));
    CHECK(WAIT_FOR([[snap(logs) componentsJoinedByString:@"\n"]
                       rangeOfString:@"disable at"].location != NSNotFound,
                   30), "no disable answer logged: %s",
          [[snap(logs) description] UTF8String]);
    err = nil;
    CHECK([e disablePush:&err], "disable again: %s", ERRS(err));
    [e stop:NULL];
    [e close];

    /* From a block on the library's thread (no callback queue) the call
     * never waits for the answer that very thread brings: YES once
     * stored, the answer logged. */
    CourierConfig *kc = liveConfig(@"dave", @"objc-push-cb-dave.db");
    kc.ackTimeoutMs = 20000;
    CourierClient *k = T_AUTORELEASE([[CourierClient alloc]
        initWithConfiguration:kc delegate:nil error:&err]);
    CHECK(k != nil, "open: %s", ERRS(err));
    if (!k)
        return;
    NSMutableArray *inBlock = [NSMutableArray array], *klogs =
        [NSMutableArray array];
    T_WEAK CourierClient *weakK = k;
    k.onLink = ^(CourierLink link) {
        if (link != CourierLinkOnline || [snap(inBlock) count] > 0)
            return;
        NSError *e2 = nil;
        double t = nowSecs();
        BOOL ok = [weakK enablePushWithService:svc node:@"objc-push-cb"
                                        secret:nil error:&e2];
        add(inBlock, [NSArray arrayWithObjects:num(ok ? 0 : e2.code),
                         [NSNumber numberWithDouble:nowSecs() - t], nil]);
    };
    k.onLog = ^(NSString *line, CourierLogLevel level) {
        if ([line rangeOfString:@"push (XEP-0357)"].location != NSNotFound)
            add(klogs, line);
    };
    CHECK([k start:&err], "start: %s", ERRS(err));
    CHECK(WAIT_FOR([snap(inBlock) count] > 0, 30), "never online");
    NSArray *r = [snap(inBlock) lastObject];
    CHECK(r && [[r objectAtIndex:0] isEqual:num(0)]
              && [[r objectAtIndex:1] doubleValue] < 5.0,
          "enable from the loop thread: %s", [[r description] UTF8String]);
    CHECK(WAIT_FOR([[snap(klogs) componentsJoinedByString:@"\n"]
                       rangeOfString:answer].location != NSNotFound, 30),
          "no answer logged: %s", [[snap(klogs) description] UTF8String]);
    err = nil;
    CHECK([k disablePush:&err], "disable: %s", ERRS(err));
    [k stop:NULL];
    [k close];
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

#ifdef COURIER_TEST_DISPATCH_STUB
        testDelegateQueueStub(); /* then the rest, live ones skipped */
#endif
        testDefaults();
        testOffline();
        testLive();
        testBlocksMemory();
        testBlocksOffline();
        testBlocksLive();
        testCallbackExecutor();
        testExecutorAfterClose();
        testErrorsInfoStats();
        testRunOnce();
        testDataContractOffline();
        testDataContractLive();
        testPhoneLifeOffline();
        testPhoneLifeLive();
        testPushOffline();
        testPushLive();

        [[NSFileManager defaultManager] removeItemAtPath:tmpDir error:NULL];
        T_RELEASE(tmpDir);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
