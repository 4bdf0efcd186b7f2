/* SPDX-License-Identifier: MIT */
/*
 * Objective-C binding of libcourier. Compiles with manual retain/release
 * (GNUstep, tested) and with ARC (-fobjc-arc: iOS); the few differences are
 * behind COURIER_ARC.
 */
#import "CourierClient.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include "courier.h"

#if __has_feature(objc_arc)
#define COURIER_ARC 1
#define CR_BRIDGE __bridge
/* Blocks are objects: -copy moves a stack block to the heap; a strong local
 * set to nil releases here, not at scope end. */
#define CR_BLOCK_COPY(b) [(b) copy]
#define CR_BLOCK_RELEASE(b) ((b) = nil)
#else
#define COURIER_ARC 0
#define CR_BRIDGE
/* Block_copy/Block_release, not -copy/-release: with Debian's GNUstep (gcc
 * libobjc; GNUstep base's own blocks runtime) a block is no Objective-C
 * object, and its Block_copy(NULL) crashes. On Apple both forms work. */
#include <Block.h>
#define CR_BLOCK_COPY(b) ((b) ? Block_copy(b) : (__typeof__(b))0)
#define CR_BLOCK_RELEASE(b)                                                  \
    do {                                                                     \
        if (b)                                                               \
            Block_release(b);                                                \
    } while (0)
#endif

/* A reference a block keeps on something it captured, for work that runs
 * later: ARC (and Apple's blocks runtime) retain captures by themselves;
 * Debian's libBlocksRuntime does not, so without ARC the code takes one. */
#if COURIER_ARC
#define CR_UNRETAINED __unsafe_unretained
#define CR_KEEP(o) ((void)0)
#define CR_DROP(o) ((void)0)
#else
/* __block: not retained by a block copy under manual retain/release */
#define CR_UNRETAINED __block
#define CR_KEEP(o) ((void)[(o) retain])
#define CR_DROP(o) [(o) release]
#endif

NSString *const CourierErrorDomain = @"org.libcourier";

/* ---- errors ------------------------------------------------------------ */

/* code + detail -> NSError; `detail` NULL = courier_last_error() of this
 * thread, read now (before any other library call). */
static NSError *cr_error(int code, const char *detail)
{
    const char *name = courier_strerror(code);
    const char *more = detail ? detail : courier_last_error();
    NSString *desc;
    if (more && *more)
        desc = [NSString stringWithFormat:@"%s: %s", name, more];
    else
        desc = [NSString stringWithUTF8String:name];
    if (!desc) /* not UTF-8: never expected from the library */
        desc = @"libcourier error";
    NSDictionary *info = [NSDictionary
        dictionaryWithObject:desc forKey:NSLocalizedDescriptionKey];
    return [NSError errorWithDomain:CourierErrorDomain code:code
                           userInfo:info];
}

static void cr_set(NSError **out, int code, const char *detail)
{
    if (out)
        *out = cr_error(code, detail);
}

/* YES for COURIER_OK; else NO with `*error` set from `rc`. */
static BOOL cr_done(int rc, NSError **error)
{
    if (rc == COURIER_OK)
        return YES;
    cr_set(error, rc, NULL);
    return NO;
}

/* NSString -> borrowed UTF-8 (autoreleased). NULL + EINVAL for nil, a
 * non-string, an embedded U+0000 (C would cut the string there) or a lone
 * surrogate (not convertible to UTF-8). */
static const char *cr_utf8(id s, const char *what, NSError **err)
{
    char detail[96];
    if (![s isKindOfClass:[NSString class]]) {
        snprintf(detail, sizeof detail, "%s: not an NSString", what);
        cr_set(err, COURIER_EINVAL, detail);
        return NULL;
    }
    if ([(NSString *)s rangeOfString:@"\0" options:NSLiteralSearch].location
            != NSNotFound) {
        snprintf(detail, sizeof detail, "%s: contains U+0000", what);
        cr_set(err, COURIER_EINVAL, detail);
        return NULL;
    }
    const char *u = [(NSString *)s UTF8String];
    if (!u || strlen(u) != [(NSString *)s
                                lengthOfBytesUsingEncoding:NSUTF8StringEncoding]) {
        snprintf(detail, sizeof detail, "%s: not convertible to UTF-8", what);
        cr_set(err, COURIER_EINVAL, detail);
        return NULL;
    }
    return u;
}

/* Library string -> NSString; never nil (the library only hands UTF-8). */
static NSString *cr_str(const char *s)
{
    NSString *r = s ? [NSString stringWithUTF8String:s] : nil;
    return r ? r : @"";
}

/* ---- CourierConfig ----------------------------------------------------- */

@implementation CourierConfig

@synthesize jid = _jid, password = _password, host = _host, port = _port,
    dbPath = _dbPath, caFile = _caFile, caPath = _caPath,
    allowPlaintext = _allowPlaintext,
    ackTimeoutMs = _ackTimeoutMs, resendGraceMs = _resendGraceMs,
    pingIntervalMs = _pingIntervalMs, pingTimeoutMs = _pingTimeoutMs,
    reconnectMinMs = _reconnectMinMs, reconnectMaxMs = _reconnectMaxMs,
    maxInFlight = _maxInFlight, maxAgeMs = _maxAgeMs,
    implicitRead = _implicitRead, synchronousFull = _synchronousFull,
    maxBodyBytes = _maxBodyBytes, appConfirms = _appConfirms;

- (instancetype)init
{
    if ((self = [super init])) {
        courier_config_t c;
        courier_config_init(&c);
        _port = c.port;
        _allowPlaintext = c.allow_plaintext != 0;
        _ackTimeoutMs = c.ack_timeout_ms;
        _resendGraceMs = c.resend_grace_ms;
        _pingIntervalMs = c.ping_interval_ms;
        _pingTimeoutMs = c.ping_timeout_ms;
        _reconnectMinMs = c.reconnect_min_ms;
        _reconnectMaxMs = c.reconnect_max_ms;
        _maxInFlight = c.max_in_flight;
        _maxAgeMs = c.max_age_ms;
        _implicitRead = c.implicit_read != 0;
        _synchronousFull = c.synchronous_full != 0;
        _maxBodyBytes = c.max_body_bytes;
        _appConfirms = c.app_confirms != 0;
    }
    return self;
}

- (instancetype)initWithJID:(NSString *)jid
                   password:(NSString *)password
                     dbPath:(NSString *)dbPath
{
    if ((self = [self init])) {
        self.jid = jid;
        self.password = password;
        self.dbPath = dbPath;
    }
    return self;
}

#if !COURIER_ARC
- (void)dealloc
{
    [_jid release];
    [_password release];
    [_host release];
    [_dbPath release];
    [_caFile release];
    [_caPath release];
    [super dealloc];
}
#endif

- (id)copyWithZone:(NSZone *)zone
{
    CourierConfig *c = [[[self class] allocWithZone:zone] init];
    c.jid = _jid;
    c.password = _password;
    c.host = _host;
    c.port = _port;
    c.dbPath = _dbPath;
    c.caFile = _caFile;
    c.caPath = _caPath;
    c.allowPlaintext = _allowPlaintext;
    c.ackTimeoutMs = _ackTimeoutMs;
    c.resendGraceMs = _resendGraceMs;
    c.pingIntervalMs = _pingIntervalMs;
    c.pingTimeoutMs = _pingTimeoutMs;
    c.reconnectMinMs = _reconnectMinMs;
    c.reconnectMaxMs = _reconnectMaxMs;
    c.maxInFlight = _maxInFlight;
    c.maxAgeMs = _maxAgeMs;
    c.implicitRead = _implicitRead;
    c.synchronousFull = _synchronousFull;
    c.maxBodyBytes = _maxBodyBytes;
    c.appConfirms = _appConfirms;
    return c;
}

+ (nullable instancetype)configWithDictionary:(NSDictionary *)dict
                                        error:(NSError **)error
{
    static NSString *const strKeys[] = {
        @"jid", @"password", @"host", @"dbPath", @"caFile", @"caPath"
    };
    static NSString *const numKeys[] = {
        @"port", @"allowPlaintext", @"ackTimeoutMs", @"resendGraceMs",
        @"pingIntervalMs", @"pingTimeoutMs", @"reconnectMinMs",
        @"reconnectMaxMs", @"maxInFlight", @"maxAgeMs", @"implicitRead",
        @"synchronousFull", @"maxBodyBytes", @"appConfirms"
    };
    if (![dict isKindOfClass:[NSDictionary class]]) {
        cr_set(error, COURIER_EINVAL, "config: not an NSDictionary");
        return nil;
    }
    CourierConfig *cfg = [[self alloc] init];
#if !COURIER_ARC
    [cfg autorelease];
#endif
    for (id key in dict) {
        id val = [dict objectForKey:key];
        BOOL ok = NO;
        for (size_t i = 0; !ok && i < sizeof strKeys / sizeof *strKeys; i++)
            if ([strKeys[i] isEqual:key]) {
                if (![val isKindOfClass:[NSString class]])
                    break;
                [cfg setValue:val forKey:key];
                ok = YES;
            }
        for (size_t i = 0; !ok && i < sizeof numKeys / sizeof *numKeys; i++)
            if ([numKeys[i] isEqual:key]) {
                if (![val isKindOfClass:[NSNumber class]])
                    break;
                if ([val longLongValue] < 0)
                    break; /* every numeric field is unsigned */
                [cfg setValue:val forKey:key];
                ok = YES;
            }
        if (!ok) {
            char detail[160];
            snprintf(detail, sizeof detail,
                     "config key \"%s\": unknown, or wrong type/value",
                     [key isKindOfClass:[NSString class]]
                         ? [(NSString *)key UTF8String] : "?");
            cr_set(error, COURIER_EINVAL, detail);
            return nil;
        }
    }
    return cfg;
}

@end

/* ---- CourierMessageInfo, CourierStats ------------------------------------ */

/* Made by the client only (init family names: ARC's rules for self). */
@interface CourierMessageInfo ()
- (instancetype)initWithCInfo:(const courier_info_t *)i;
@end
@interface CourierStats ()
- (instancetype)initWithCStats:(const courier_stats_t *)st;
@end

@implementation CourierMessageInfo

@synthesize state = _state, attempts = _attempts, createdMs = _createdMs,
    lastSentMs = _lastSentMs, lastChangeMs = _lastChangeMs,
    permanent = _permanent, reason = _reason;

- (instancetype)initWithCInfo:(const courier_info_t *)i
{
    if ((self = [super init])) {
        char reason[sizeof i->reason + 1];
        memcpy(reason, i->reason, sizeof i->reason);
        reason[sizeof i->reason] = '\0';
        _state = (CourierState)i->state;
        _attempts = i->attempts;
        _createdMs = i->created_ms;
        _lastSentMs = i->last_sent_ms;
        _lastChangeMs = i->last_change_ms;
        _permanent = i->permanent != 0;
        NSString *r = [NSString stringWithUTF8String:reason];
        _reason = [(r ? r : @"") copy];
    }
    return self;
}

#if !COURIER_ARC
- (void)dealloc
{
    [_reason release];
    [super dealloc];
}
#endif

- (NSString *)description
{
    return [NSString stringWithFormat:@"<CourierMessageInfo %s attempts %lu "
                                      @"created %lld sent %lld changed %lld%s "
                                      @"reason '%@'>",
                                      courier_state_name(
                                          (courier_state_t)_state),
                                      (unsigned long)_attempts,
                                      (long long)_createdMs,
                                      (long long)_lastSentMs,
                                      (long long)_lastChangeMs,
                                      _permanent ? " permanent" : "", _reason];
}

@end

@implementation CourierStats

@synthesize sent = _sent, resentReconnect = _resentReconnect,
    resentPeer = _resentPeer, resentRetry = _resentRetry,
    received = _received, duplicates = _duplicates, linksUp = _linksUp;

- (instancetype)initWithCStats:(const courier_stats_t *)st
{
    if ((self = [super init])) {
        _sent = st->sent;
        _resentReconnect = st->resent_reconnect;
        _resentPeer = st->resent_peer;
        _resentRetry = st->resent_retry;
        _received = st->received;
        _duplicates = st->duplicates;
        _linksUp = st->links_up;
    }
    return self;
}

- (NSString *)description
{
    return [NSString stringWithFormat:@"<CourierStats sent %llu resent "
                                      @"%llu/%llu/%llu received %llu dups "
                                      @"%llu links %llu>",
                                      (unsigned long long)_sent,
                                      (unsigned long long)_resentReconnect,
                                      (unsigned long long)_resentPeer,
                                      (unsigned long long)_resentRetry,
                                      (unsigned long long)_received,
                                      (unsigned long long)_duplicates,
                                      (unsigned long long)_linksUp];
}

@end

/* ---- CourierOutgoing, CourierEntry, CourierConversation, CourierMessage ---- */

@implementation CourierOutgoing

@synthesize to = _to, kind = _kind, body = _body, messageId = _messageId,
    meta = _meta;

- (instancetype)init
{
    return [self initWithTo:@"" body:@""];
}

- (instancetype)initWithTo:(NSString *)to body:(NSString *)body
{
    if ((self = [super init])) {
        _to = [to copy];
        _body = [body copy];
        _kind = CourierKindText;
    }
    return self;
}

+ (instancetype)outgoingTo:(NSString *)to body:(NSString *)body
{
    CourierOutgoing *m = [[self alloc] initWithTo:to body:body];
#if !COURIER_ARC
    [m autorelease];
#endif
    return m;
}

#if !COURIER_ARC
- (void)dealloc
{
    [_to release];
    [_body release];
    [_messageId release];
    [_meta release];
    [super dealloc];
}
#endif

- (id)copyWithZone:(NSZone *)zone
{
    CourierOutgoing *c =
        [[[self class] allocWithZone:zone] initWithTo:_to body:_body];
    c.kind = _kind;
    c.messageId = _messageId;
    c.meta = _meta;
    return c;
}

- (NSString *)description
{
    return [NSString stringWithFormat:@"<CourierOutgoing to %@ kind %ld id "
                                      @"%@ body '%@' meta '%@'>",
                                      _to, (long)_kind, _messageId, _body,
                                      _meta];
}

@end

/* Made by the client only. */
@interface CourierEntry ()
- (instancetype)initWithCEntry:(const courier_entry_t *)e;
@end
@interface CourierConversation ()
- (instancetype)initWithCConversation:(const courier_conversation_t *)c;
@end
@interface CourierMessage ()
- (instancetype)initWithCMessage:(const courier_message_t *)m;
@end

@implementation CourierEntry

@synthesize seq = _seq, direction = _direction, messageId = _messageId,
    peer = _peer, kind = _kind, body = _body, meta = _meta, state = _state,
    timestampMs = _timestampMs, retracted = _retracted;

- (instancetype)initWithCEntry:(const courier_entry_t *)e
{
    if ((self = [super init])) {
        _seq = e->seq;
        _direction = (CourierDirection)e->dir;
        _messageId = [cr_str(e->id) copy];
        _peer = [cr_str(e->peer) copy];
        _kind = (CourierKind)e->kind;
        _body = [cr_str(e->body) copy];
        _meta = [cr_str(e->meta) copy];
        _state = (CourierState)e->state;
        _timestampMs = e->timestamp_ms;
        _retracted = e->retracted != 0;
    }
    return self;
}

#if !COURIER_ARC
- (void)dealloc
{
    [_messageId release];
    [_peer release];
    [_body release];
    [_meta release];
    [super dealloc];
}
#endif

- (NSString *)description
{
    return [NSString stringWithFormat:@"<CourierEntry %lld %s %@ %@ kind %ld "
                                      @"%s body '%@' meta '%@' ts %lld%s>",
                                      (long long)_seq,
                                      _direction == CourierDirectionIn
                                          ? "in" : "out",
                                      _messageId, _peer, (long)_kind,
                                      courier_state_name(
                                          (courier_state_t)_state),
                                      _body, _meta, (long long)_timestampMs,
                                      _retracted ? " retracted" : ""];
}

@end

@implementation CourierConversation

@synthesize peer = _peer, lastSeq = _lastSeq, lastMs = _lastMs,
    unread = _unread;

- (instancetype)initWithCConversation:(const courier_conversation_t *)c
{
    if ((self = [super init])) {
        _peer = [cr_str(c->peer) copy];
        _lastSeq = c->last_seq;
        _lastMs = c->last_ms;
        _unread = c->unread;
    }
    return self;
}

#if !COURIER_ARC
- (void)dealloc
{
    [_peer release];
    [super dealloc];
}
#endif

- (NSString *)description
{
    return [NSString stringWithFormat:@"<CourierConversation %@ last %lld "
                                      @"at %lld unread %lu>",
                                      _peer, (long long)_lastSeq,
                                      (long long)_lastMs,
                                      (unsigned long)_unread];
}

@end

@implementation CourierMessage

@synthesize messageId = _messageId, peer = _peer, kind = _kind,
    body = _body, meta = _meta, timestampMs = _timestampMs;

- (instancetype)initWithCMessage:(const courier_message_t *)m
{
    if ((self = [super init])) {
        _messageId = [cr_str(m->id) copy];
        _peer = [cr_str(m->peer) copy];
        _kind = (CourierKind)m->kind;
        _body = [cr_str(m->body) copy];
        _meta = [cr_str(m->meta) copy];
        _timestampMs = m->timestamp_ms;
    }
    return self;
}

#if !COURIER_ARC
- (void)dealloc
{
    [_messageId release];
    [_peer release];
    [_body release];
    [_meta release];
    [super dealloc];
}
#endif

- (NSString *)description
{
    return [NSString stringWithFormat:@"<CourierMessage %@ from %@ kind %ld "
                                      @"body '%@' meta '%@' ts %lld>",
                                      _messageId, _peer, (long)_kind, _body,
                                      _meta, (long long)_timestampMs];
}

@end

/* ---- the gate of queued work ---------------------------------------------- */

/* Open until -close. Work queued on the app's executor holds it (not the
 * client, which may be gone by then) and runs the app's code only while it
 * is open, with its lock held: -close closes it under the same lock, so it
 * waits for a delivery under way on another thread, and none starts after
 * it. Recursive: a delegate method may call -close. */
@interface CRGate : NSObject
{
    NSRecursiveLock *_lock;
    BOOL _open;
}
- (BOOL)enterIfOpen; /* YES: open, and locked until -leave */
- (void)leave;
- (void)shut;
@end

@implementation CRGate
- (instancetype)init
{
    if ((self = [super init])) {
        _lock = [[NSRecursiveLock alloc] init];
        _open = YES;
    }
    return self;
}
#if !COURIER_ARC
- (void)dealloc
{
    [_lock release];
    [super dealloc];
}
#endif
- (BOOL)enterIfOpen
{
    [_lock lock];
    if (_open)
        return YES;
    [_lock unlock];
    return NO;
}
- (void)leave
{
    [_lock unlock];
}
- (void)shut
{
    [_lock lock];
    _open = NO;
    [_lock unlock];
}
@end

/* ---- callbacks (library loop thread) ------------------------------------ */

#ifdef GNUSTEP
/* GNUstep must know a thread before Objective-C code runs on it; the
 * library's loop thread is a plain pthread. Register it at its first
 * callback and unregister it when it ends (pthread key destructor). Apple's
 * Foundation needs none of this. */
static pthread_key_t cr_thread_key;
static pthread_once_t cr_thread_once = PTHREAD_ONCE_INIT;
static void cr_thread_exit(void *p)
{
    (void)p;
    GSUnregisterCurrentThread();
}
static void cr_thread_key_init(void)
{
    pthread_key_create(&cr_thread_key, cr_thread_exit);
}
static void cr_thread_enter(void)
{
    pthread_once(&cr_thread_once, cr_thread_key_init);
    if (!pthread_getspecific(cr_thread_key) && GSRegisterCurrentThread())
        pthread_setspecific(cr_thread_key, (void *)1);
}
#else
static void cr_thread_enter(void) {}
#endif

/* The event's block when one is set, else the delegate method. An
 * exception from either is logged and dropped: it must never unwind through
 * the C library (nor through the app's executor). Nothing touches `client`
 * after the call (it may have closed or released it): the block was taken
 * before, with a reference of its own (so replacing it meanwhile is safe),
 * and the delegate is only read when no block is set. */
#define CR_INVOKE(client, Type, take, sel, bcall, dcall)                     \
    do {                                                                     \
        Type blk = [client take];                                            \
        id<CourierClientDelegate> d = blk ? nil : client.delegate;           \
        @try {                                                               \
            if (blk)                                                         \
                bcall;                                                       \
            else if ([d respondsToSelector:@selector(sel)])                  \
                dcall;                                                       \
        } @catch (NSException *e) {                                          \
            NSLog(@"libcourier: %s raised %@: %@",                          \
                  blk ? "block " #take : "delegate " #sel, [e name],         \
                  [e reason]);                                               \
        }                                                                    \
        CR_BLOCK_RELEASE(blk);                                               \
    } while (0)

/* The blocks and the executor, each with a reference for the caller (under
 * the lock). */
@interface CourierClient ()
- (CourierStateHandler)cr_takeOnState;
- (CourierMessageHandler)cr_takeOnMessage;
- (CourierLinkHandler)cr_takeOnLink;
- (CourierComposingHandler)cr_takeOnComposing;
- (CourierLogHandler)cr_takeOnLog;
- (CourierReceiveHandler)cr_takeOnReceive;
- (CourierRetractHandler)cr_takeOnRetract;
- (CourierCertificateHandler)cr_takeOnCertificate;
- (CourierCallbackExecutor)cr_takeExecutor;
- (CRGate *)cr_gate;
@end

typedef void (^CRDeliver)(CourierClient *client);
typedef void (^CRCleanup)(void);

/* Deliver one event: on this thread (no executor: the library's loop
 * thread, as courier.h says), or as one unit of work for the app's
 * executor, which runs it only while the client's gate is open. `cleanup`
 * runs once, after the delivery (or when the work finds the gate shut);
 * a unit the executor drops without running keeps what it holds. */
static void cr_deliver(CourierClient *client, CRDeliver deliver,
                       CRCleanup cleanup)
{
    CourierCallbackExecutor ex = [client cr_takeExecutor];
    if (!ex) {
        deliver(client);
        cleanup();
        return;
    }
    CRGate *gate = [client cr_gate];
    CR_UNRETAINED CourierClient *weakClient = client; /* the gate says
                                                          whether it lives */
    CR_KEEP(gate);
    CourierCallbackWork work = CR_BLOCK_COPY(^{
        @autoreleasepool {
            if ([gate enterIfOpen]) {
                deliver(weakClient);
                [gate leave];
            }
            cleanup();
            CR_DROP(gate);
        }
    });
    @try {
        ex(work);
    } @catch (NSException *e) {
        NSLog(@"libcourier: callbackExecutor raised %@: %@ (event lost)",
              [e name], [e reason]);
    }
    CR_BLOCK_RELEASE(work);
    CR_BLOCK_RELEASE(ex);
}

/* Each event: its arguments as objects (kept for work that runs later),
 * then cr_deliver. */
static void cr_on_state(void *ud, const char *msg_id, const char *peer,
                        courier_state_t state)
{
    cr_thread_enter();
    @autoreleasepool {
        NSString *i = cr_str(msg_id), *p = cr_str(peer);
        CourierState st = (CourierState)state;
        CR_KEEP(i);
        CR_KEEP(p);
        cr_deliver((CR_BRIDGE CourierClient *)ud, ^(CourierClient *client) {
            CR_INVOKE(client, CourierStateHandler, cr_takeOnState,
                      courier:messageWithId:to:didChangeState:,
                      blk(i, p, st),
                      [d courier:client messageWithId:i to:p
                          didChangeState:st]);
        }, ^{
            CR_DROP(i);
            CR_DROP(p);
        });
    }
}

/* The message event has two forms each way: onReceive (a CourierMessage)
 * wins over onMessage (the arguments); without a block, the delegate's
 * -courier:didReceiveMessage: wins over the older method. */
static void cr_on_message(void *ud, const courier_message_t *m)
{
    cr_thread_enter();
    @autoreleasepool {
        /* alloc: one reference, given back by the cleanup (ARC: the
         * blocks hold it) */
        CourierMessage *msg = [[CourierMessage alloc] initWithCMessage:m];
        cr_deliver((CR_BRIDGE CourierClient *)ud, ^(CourierClient *client) {
            CourierReceiveHandler rb = [client cr_takeOnReceive];
            CourierMessageHandler mb = nil;
            if (!rb)
                mb = [client cr_takeOnMessage];
            id<CourierClientDelegate> d = (rb || mb) ? nil : client.delegate;
            @try {
                if (rb)
                    rb(msg);
                else if (mb)
                    mb(msg.messageId, msg.peer, msg.kind, msg.body,
                       msg.timestampMs);
                else if ([d respondsToSelector:@selector(courier:
                                                   didReceiveMessage:)])
                    [d courier:client didReceiveMessage:msg];
                else if ([d respondsToSelector:@selector(courier:
                                                   didReceiveMessageWithId:
                                                   from:kind:body:
                                                   timestampMs:)])
                    [d courier:client didReceiveMessageWithId:msg.messageId
                                                         from:msg.peer
                                                         kind:msg.kind
                                                         body:msg.body
                                                  timestampMs:msg.timestampMs];
            } @catch (NSException *e) {
                NSLog(@"libcourier: %s raised %@: %@",
                      rb ? "block onReceive"
                         : mb ? "block onMessage" : "delegate (message)",
                      [e name], [e reason]);
            }
            CR_BLOCK_RELEASE(rb);
            CR_BLOCK_RELEASE(mb);
        }, ^{
            CR_DROP(msg);
        });
    }
}

static void cr_on_retract(void *ud, const char *peer, const char *msg_id)
{
    cr_thread_enter();
    @autoreleasepool {
        NSString *i = cr_str(msg_id), *p = cr_str(peer);
        CR_KEEP(i);
        CR_KEEP(p);
        cr_deliver((CR_BRIDGE CourierClient *)ud, ^(CourierClient *client) {
            CR_INVOKE(client, CourierRetractHandler, cr_takeOnRetract,
                      courier:didRetract:from:, blk(i, p),
                      [d courier:client didRetract:i from:p]);
        }, ^{
            CR_DROP(i);
            CR_DROP(p);
        });
    }
}

static void cr_on_link(void *ud, courier_link_t link)
{
    cr_thread_enter();
    @autoreleasepool {
        CourierLink l = (CourierLink)link;
        cr_deliver((CR_BRIDGE CourierClient *)ud, ^(CourierClient *client) {
            CR_INVOKE(client, CourierLinkHandler, cr_takeOnLink,
                      courier:didChangeLink:, blk(l),
                      [d courier:client didChangeLink:l]);
        }, ^{
        });
    }
}

static void cr_on_composing(void *ud, const char *peer, int composing)
{
    cr_thread_enter();
    @autoreleasepool {
        NSString *p = cr_str(peer);
        BOOL on = composing != 0;
        CR_KEEP(p);
        cr_deliver((CR_BRIDGE CourierClient *)ud, ^(CourierClient *client) {
            CR_INVOKE(client, CourierComposingHandler, cr_takeOnComposing,
                      courier:peer:isComposing:, blk(p, on),
                      [d courier:client peer:p isComposing:on]);
        }, ^{
            CR_DROP(p);
        });
    }
}

static void cr_on_log(void *ud, int level, const char *line)
{
    cr_thread_enter();
    @autoreleasepool {
        NSString *t = cr_str(line);
        CourierLogLevel lv = (CourierLogLevel)level;
        CR_KEEP(t);
        cr_deliver((CR_BRIDGE CourierClient *)ud, ^(CourierClient *client) {
            CR_INVOKE(client, CourierLogHandler, cr_takeOnLog,
                      courier:log:level:, blk(t, lv),
                      [d courier:client log:t level:lv]);
        }, ^{
            CR_DROP(t);
        });
    }
}

/* Platform trust (behaviour.md §10): the app's answer, now, on the loop
 * thread; never through the executor (the login waits for it). The block
 * when set, else the delegate method, else refused. An exception refuses.
 * courier_close() waits for a call under way, so none runs after -close. */
static int cr_on_certificate(void *ud, const char *host, const char *pem)
{
    cr_thread_enter();
    BOOL ok = NO;
    @autoreleasepool {
        CourierClient *client = (CR_BRIDGE CourierClient *)ud;
        NSString *h = cr_str(host), *p = cr_str(pem);
        CourierCertificateHandler blk = [client cr_takeOnCertificate];
        id<CourierClientDelegate> d = blk ? nil : client.delegate;
        @try {
            if (blk)
                ok = blk(h, p);
            else if ([d respondsToSelector:@selector(courier:
                                               shouldAcceptCertificateChain:
                                               forHost:)])
                ok = [d courier:client shouldAcceptCertificateChain:p
                        forHost:h];
        } @catch (NSException *e) {
            ok = NO;
            NSLog(@"libcourier: %s raised %@: %@ (certificate refused)",
                  blk ? "block onCertificate"
                      : "delegate courier:shouldAcceptCertificateChain:"
                        "forHost:",
                  [e name], [e reason]);
        }
        CR_BLOCK_RELEASE(blk);
    }
    return ok ? 1 : 0;
}

/* ---- CourierClient ------------------------------------------------------ */

#define HANDLE ((courier_t *)_handle)

/* Sets *error and returns `fail` when closed. */
#define CR_OPEN_OR(fail)                                                     \
    do {                                                                     \
        if (!_handle) {                                                      \
            cr_set(error, COURIER_ECLOSED, "handle closed");                 \
            return fail;                                                     \
        }                                                                    \
    } while (0)

@implementation CourierClient

@synthesize delegate = _delegate;

/* Block properties: copied in (a stack block moves to the heap, what it
 * captured is retained), swapped under _handlerLock; the old one is
 * released after the lock (its captures' -dealloc may call back in). The
 * getter hands out the stored block, valid until it is replaced (blocks are
 * no objects on Debian's GNUstep: no retain + autorelease); callbacks take
 * their own reference (cr_take*). */
#define CR_HANDLER_ACCESSORS(Type, getter, setter, take, ivar)               \
    -(Type)getter                                                            \
    {                                                                        \
        Type b;                                                              \
        [_handlerLock lock];                                                 \
        b = ivar;                                                            \
        [_handlerLock unlock];                                               \
        return b;                                                            \
    }                                                                        \
    -(Type)take                                                              \
    {                                                                        \
        Type b;                                                              \
        [_handlerLock lock];                                                 \
        b = CR_BLOCK_COPY(ivar);                                             \
        [_handlerLock unlock];                                               \
        return b;                                                            \
    }                                                                        \
    -(void)setter:(Type)handler                                              \
    {                                                                        \
        Type copied = CR_BLOCK_COPY(handler);                                \
        Type old;                                                            \
        [_handlerLock lock];                                                 \
        old = ivar;                                                          \
        ivar = copied;                                                       \
        [_handlerLock unlock];                                               \
        CR_BLOCK_RELEASE(old);                                               \
    }

CR_HANDLER_ACCESSORS(CourierStateHandler, onState, setOnState,
                     cr_takeOnState, _onState)
CR_HANDLER_ACCESSORS(CourierMessageHandler, onMessage, setOnMessage,
                     cr_takeOnMessage, _onMessage)
CR_HANDLER_ACCESSORS(CourierLinkHandler, onLink, setOnLink, cr_takeOnLink,
                     _onLink)
CR_HANDLER_ACCESSORS(CourierComposingHandler, onComposing, setOnComposing,
                     cr_takeOnComposing, _onComposing)
CR_HANDLER_ACCESSORS(CourierLogHandler, onLog, setOnLog, cr_takeOnLog, _onLog)
CR_HANDLER_ACCESSORS(CourierReceiveHandler, onReceive, setOnReceive,
                     cr_takeOnReceive, _onReceive)
CR_HANDLER_ACCESSORS(CourierRetractHandler, onRetract, setOnRetract,
                     cr_takeOnRetract, _onRetract)
CR_HANDLER_ACCESSORS(CourierCertificateHandler, onCertificate,
                     setOnCertificate, cr_takeOnCertificate, _onCertificate)

- (CourierCallbackExecutor)callbackExecutor
{
    CourierCallbackExecutor b;
    [_handlerLock lock];
    b = _callbackExecutor;
    [_handlerLock unlock];
    return b;
}

- (CourierCallbackExecutor)cr_takeExecutor
{
    CourierCallbackExecutor b;
    [_handlerLock lock];
    b = CR_BLOCK_COPY(_callbackExecutor);
    [_handlerLock unlock];
    return b;
}

/* Sets the executor and the queue it came from (nil: not from a queue). */
- (void)cr_setExecutor:(CourierCallbackExecutor)executor queue:(id)queue
{
    CourierCallbackExecutor copied = CR_BLOCK_COPY(executor);
    CourierCallbackExecutor old;
#if COURIER_HAVE_DISPATCH_QUEUE
    dispatch_queue_t oldQueue;
#if !COURIER_ARC
    [queue retain];
#endif
#endif
    [_handlerLock lock];
    old = _callbackExecutor;
    _callbackExecutor = copied;
#if COURIER_HAVE_DISPATCH_QUEUE
    oldQueue = _delegateQueue;
    _delegateQueue = queue;
#endif
    [_handlerLock unlock];
    CR_BLOCK_RELEASE(old);
#if COURIER_HAVE_DISPATCH_QUEUE
#if !COURIER_ARC
    [oldQueue release];
#endif
    (void)oldQueue; /* ARC: released at the end of scope, after the lock */
#endif
    (void)queue;
}

- (void)setCallbackExecutor:(CourierCallbackExecutor)executor
{
    [self cr_setExecutor:executor queue:nil];
}

#if COURIER_HAVE_DISPATCH_QUEUE
- (dispatch_queue_t)delegateQueue
{
    dispatch_queue_t q;
    [_handlerLock lock];
    q = _delegateQueue;
    [_handlerLock unlock];
    return q;
}

- (void)setDelegateQueue:(dispatch_queue_t)queue
{
    if (!queue) {
        [self cr_setExecutor:nil queue:nil];
        return;
    }
    /* The block keeps the queue (ARC, and Apple's blocks runtime without
     * it), so an event that took this executor just before it is replaced
     * still has its queue; the ivar keeps it for the getter.
     * dispatch_async copies the work. */
    [self cr_setExecutor:^(CourierCallbackWork work) {
        dispatch_async(queue, work);
    } queue:queue];
}
#endif

- (CRGate *)cr_gate
{
    return _gate;
}

/* All eight to nil, and the executor (-close, hence -dealloc). */
- (void)cr_dropHandlers
{
    [self cr_setExecutor:nil queue:nil];
    CourierStateHandler s;
    CourierMessageHandler m;
    CourierLinkHandler l;
    CourierComposingHandler c;
    CourierLogHandler g;
    CourierReceiveHandler r;
    CourierRetractHandler x;
    CourierCertificateHandler t;
    [_handlerLock lock];
    s = _onState;
    m = _onMessage;
    l = _onLink;
    c = _onComposing;
    g = _onLog;
    r = _onReceive;
    x = _onRetract;
    t = _onCertificate;
    _onReceive = nil;
    _onRetract = nil;
    _onCertificate = nil;
    _onState = nil;
    _onMessage = nil;
    _onLink = nil;
    _onComposing = nil;
    _onLog = nil;
    [_handlerLock unlock];
    CR_BLOCK_RELEASE(s);
    CR_BLOCK_RELEASE(m);
    CR_BLOCK_RELEASE(l);
    CR_BLOCK_RELEASE(c);
    CR_BLOCK_RELEASE(g);
    CR_BLOCK_RELEASE(r);
    CR_BLOCK_RELEASE(x);
    CR_BLOCK_RELEASE(t);
}

+ (NSString *)version
{
    return cr_str(courier_version());
}

+ (NSString *)nameOfState:(CourierState)state
{
    return cr_str(courier_state_name((courier_state_t)state));
}

+ (NSString *)displayStatusOfState:(CourierState)state
{
    return cr_str(courier_display_status((courier_state_t)state));
}

static BOOL cr_opt(NSString *s, const char **out, const char *what,
                   NSError **error)
{
    *out = NULL;
    if (!s)
        return YES;
    *out = cr_utf8(s, what, error);
    return *out != NULL;
}

- (nullable instancetype)initWithConfig:(id)config
                               delegate:(nullable id<CourierClientDelegate>)delegate
                                  error:(NSError **)error
{
    if (!(self = [super init]))
        return nil;
    _delegate = delegate;
    _handlerLock = [[NSLock alloc] init];
    _gate = [[CRGate alloc] init];

    CourierConfig *cfg = nil;
    if ([config isKindOfClass:[CourierConfig class]])
        cfg = config;
    else if ([config isKindOfClass:[NSDictionary class]])
        cfg = [CourierConfig configWithDictionary:config error:error];
    else
        cr_set(error, COURIER_EINVAL,
               "config: neither a CourierConfig nor an NSDictionary");

    courier_config_t c;
    courier_config_init(&c);
    BOOL ok = cfg != nil;
    ok = ok && cr_opt(cfg.jid, &c.jid, "jid", error);
    ok = ok && cr_opt(cfg.password, &c.password, "password", error);
    ok = ok && cr_opt(cfg.host, &c.host, "host", error);
    ok = ok && cr_opt(cfg.dbPath, &c.db_path, "dbPath", error);
    ok = ok && cr_opt(cfg.caFile, &c.ca_file, "caFile", error);
    ok = ok && cr_opt(cfg.caPath, &c.ca_path, "caPath", error);
    if (ok && (cfg.port > USHRT_MAX || cfg.ackTimeoutMs > UINT_MAX ||
               cfg.resendGraceMs > UINT_MAX || cfg.pingIntervalMs > UINT_MAX ||
               cfg.pingTimeoutMs > UINT_MAX || cfg.reconnectMinMs > UINT_MAX ||
               cfg.reconnectMaxMs > UINT_MAX || cfg.maxInFlight > UINT_MAX ||
               cfg.maxBodyBytes > UINT_MAX)) {
        cr_set(error, COURIER_EINVAL, "config: a numeric field is too large");
        ok = NO;
    }
    if (ok) {
        c.port = (unsigned short)cfg.port;
        c.allow_plaintext = cfg.allowPlaintext ? 1 : 0;
        c.ack_timeout_ms = (unsigned)cfg.ackTimeoutMs;
        c.resend_grace_ms = (unsigned)cfg.resendGraceMs;
        c.ping_interval_ms = (unsigned)cfg.pingIntervalMs;
        c.ping_timeout_ms = (unsigned)cfg.pingTimeoutMs;
        c.reconnect_min_ms = (unsigned)cfg.reconnectMinMs;
        c.reconnect_max_ms = (unsigned)cfg.reconnectMaxMs;
        c.max_in_flight = (unsigned)cfg.maxInFlight;
        c.max_age_ms = cfg.maxAgeMs;
        c.implicit_read = cfg.implicitRead ? 1 : 0;
        c.synchronous_full = cfg.synchronousFull ? 1 : 0;
        c.max_body_bytes = (unsigned)cfg.maxBodyBytes;
        c.app_confirms = cfg.appConfirms ? 1 : 0;

        courier_callbacks_t cb = {
            .on_state = cr_on_state, .on_message = cr_on_message,
            .on_link = cr_on_link, .on_composing = cr_on_composing,
            .on_log = cr_on_log, .on_retract = cr_on_retract,
            /* always: the block may be set after init (see the header) */
            .on_certificate = cr_on_certificate,
        };
        courier_t *h = NULL;
        /* ud = self, not retained: courier_close() in -close/-dealloc
         * guarantees no callback runs after it. */
        int rc = courier_open(&h, &c, &cb, (CR_BRIDGE void *)self);
        if (rc == COURIER_OK)
            _handle = h;
        else {
            cr_set(error, rc, NULL);
            ok = NO;
        }
    }
    if (!ok) {
#if !COURIER_ARC
        [self release];
#endif
        return nil;
    }
    return self;
}

- (nullable instancetype)initWithConfig:(id)config error:(NSError **)error
{
    return [self initWithConfig:config delegate:nil error:error];
}

- (nullable instancetype)initWithConfiguration:(CourierConfig *)config
                                      delegate:(nullable id<CourierClientDelegate>)delegate
                                         error:(NSError **)error
{
    return [self initWithConfig:config delegate:delegate error:error];
}

#if COURIER_HAVE_DISPATCH_QUEUE
- (nullable instancetype)initWithConfiguration:(CourierConfig *)config
                                      delegate:(nullable id<CourierClientDelegate>)delegate
                                 delegateQueue:(nullable dispatch_queue_t)queue
                                         error:(NSError **)error
{
    if ((self = [self initWithConfig:config delegate:delegate error:error]))
        self.delegateQueue = queue;
    return self;
}
#endif

- (void)dealloc
{
    [self close];
#if !COURIER_ARC
    [_gate release];
    [_handlerLock release];
    [super dealloc];
#endif
}

- (void)close
{
    /* Queued work runs nothing from now on; one delivery under way on an
     * executor's thread is waited for (not from itself: recursive). */
    [(CRGate *)_gate shut];
    courier_t *h = HANDLE;
    _handle = NULL;
    courier_close(h); /* NULL-safe; deferred when called from a callback */
    /* No callback runs after courier_close() (one in progress, when called
     * from it, holds its own reference to its block). */
    [self cr_dropHandlers];
}

- (BOOL)start:(NSError **)error
{
    CR_OPEN_OR(NO);
    int rc = courier_start(HANDLE);
    return cr_done(rc, error);
}

- (BOOL)stop:(NSError **)error
{
    CR_OPEN_OR(NO);
    int rc = courier_stop(HANDLE);
    return cr_done(rc, error);
}

- (nullable NSString *)sendText:(NSString *)body
                             to:(NSString *)peer
                          error:(NSError **)error
{
    CR_OPEN_OR(nil);
    const char *to = cr_utf8(peer, "to", error);
    const char *b = to ? cr_utf8(body, "body", error) : NULL;
    if (!b)
        return nil;
    char new_id[COURIER_ID_MAX];
    int rc = courier_send_text(HANDLE, to, b, new_id);
    if (rc != COURIER_OK) {
        cr_set(error, rc, NULL);
        return nil;
    }
    return cr_str(new_id);
}

- (BOOL)sendMedia:(NSString *)body
             kind:(CourierKind)kind
          mediaId:(NSString *)mediaId
               to:(NSString *)peer
            error:(NSError **)error
{
    CR_OPEN_OR(NO);
    const char *to = cr_utf8(peer, "to", error);
    const char *mid = to ? cr_utf8(mediaId, "mediaId", error) : NULL;
    const char *b = mid ? cr_utf8(body, "body", error) : NULL;
    if (!b)
        return NO;
    int rc = courier_send_media(HANDLE, to, (courier_kind_t)kind, mid, b);
    return cr_done(rc, error);
}

- (BOOL)markDisplayed:(NSString *)messageId
                 peer:(NSString *)peer
                error:(NSError **)error
{
    CR_OPEN_OR(NO);
    const char *p = cr_utf8(peer, "peer", error);
    const char *i = p ? cr_utf8(messageId, "id", error) : NULL;
    if (!i)
        return NO;
    int rc = courier_mark_displayed(HANDLE, p, i);
    return cr_done(rc, error);
}

- (BOOL)setComposing:(BOOL)composing
                peer:(NSString *)peer
               error:(NSError **)error
{
    CR_OPEN_OR(NO);
    const char *p = cr_utf8(peer, "peer", error);
    if (!p)
        return NO;
    int rc = courier_set_composing(HANDLE, p, composing ? 1 : 0);
    return cr_done(rc, error);
}

- (BOOL)retry:(NSString *)messageId error:(NSError **)error
{
    CR_OPEN_OR(NO);
    const char *i = cr_utf8(messageId, "id", error);
    if (!i)
        return NO;
    int rc = courier_retry(HANDLE, i);
    return cr_done(rc, error);
}

- (BOOL)networkChanged:(NSError **)error
{
    CR_OPEN_OR(NO);
    int rc = courier_network_changed(HANDLE);
    return cr_done(rc, error);
}

- (BOOL)setActive:(BOOL)active error:(NSError **)error
{
    CR_OPEN_OR(NO);
    int rc = courier_set_active(HANDLE, active ? 1 : 0);
    return cr_done(rc, error);
}

- (BOOL)sync:(NSUInteger)timeoutMs error:(NSError **)error
{
    CR_OPEN_OR(NO);
    if (timeoutMs > UINT_MAX) {
        cr_set(error, COURIER_EINVAL, "timeoutMs is too large");
        return NO;
    }
    int rc = courier_sync(HANDLE, (unsigned)timeoutMs);
    return cr_done(rc, error);
}

- (BOOL)enablePushWithService:(NSString *)serviceJID
                         node:(NSString *)node
                       secret:(nullable NSString *)secret
                        error:(NSError **)error
{
    CR_OPEN_OR(NO);
    const char *svc = cr_utf8(serviceJID, "serviceJID", error);
    const char *n = svc ? cr_utf8(node, "node", error) : NULL;
    if (!n)
        return NO;
    const char *sec = NULL; /* nil: no secret */
    if (secret && !(sec = cr_utf8(secret, "secret", error)))
        return NO;
    /* Commits, then, online, waits here for the server's answer; the
     * loop thread writes the request meanwhile. */
    int rc = courier_push_enable(HANDLE, svc, n, sec);
    return cr_done(rc, error);
}

- (BOOL)disablePush:(NSError **)error
{
    CR_OPEN_OR(NO);
    int rc = courier_push_disable(HANDLE);
    return cr_done(rc, error);
}

- (BOOL)checkStatus:(CourierStoreCheck *)outStatus error:(NSError **)error
{
    CR_OPEN_OR(NO);
    courier_check_t st = COURIER_CHECK_NONE;
    int rc = courier_check_status(HANDLE, &st);
    /* set also for ECORRUPT: *out is COURIER_CHECK_DAMAGED then */
    if (outStatus && (rc == COURIER_OK || rc == COURIER_ECORRUPT))
        *outStatus = (CourierStoreCheck)st;
    return cr_done(rc, error);
}

- (CourierStoreCheck)storeCheck:(NSError **)error
{
    CourierStoreCheck st = CourierStoreCheckUnknown;
    if (![self checkStatus:&st error:error] &&
        st != CourierStoreCheckDamaged)
        return CourierStoreCheckUnknown;
    return st;
}

- (CourierState)stateOf:(NSString *)messageId error:(NSError **)error
{
    CR_OPEN_OR(CourierStateUnknown);
    const char *i = cr_utf8(messageId, "id", error);
    if (!i)
        return CourierStateUnknown;
    courier_state_t st;
    int rc = courier_get_state(HANDLE, i, &st);
    if (rc != COURIER_OK) {
        cr_set(error, rc, NULL);
        return CourierStateUnknown;
    }
    return (CourierState)st;
}

- (nullable CourierMessageInfo *)messageInfo:(NSString *)messageId
                                       error:(NSError **)error
{
    CR_OPEN_OR(nil);
    const char *i = cr_utf8(messageId, "id", error);
    if (!i)
        return nil;
    courier_info_t info;
    int rc = courier_get_info(HANDLE, i, &info);
    if (rc != COURIER_OK) {
        cr_set(error, rc, NULL);
        return nil;
    }
    CourierMessageInfo *r =
        [[CourierMessageInfo alloc] initWithCInfo:&info];
#if !COURIER_ARC
    [r autorelease];
#endif
    return r;
}

- (nullable CourierStats *)stats:(NSError **)error
{
    CR_OPEN_OR(nil);
    courier_stats_t st;
    int rc = courier_get_stats(HANDLE, &st);
    if (rc != COURIER_OK) {
        cr_set(error, rc, NULL);
        return nil;
    }
    CourierStats *r = [[CourierStats alloc] initWithCStats:&st];
#if !COURIER_ARC
    [r autorelease];
#endif
    return r;
}

- (CourierLink)currentLink:(NSError **)error
{
    CourierLink l = CourierLinkOffline;
    if (![self link:&l error:error])
        return CourierLinkOffline;
    return l;
}

- (BOOL)runOnce:(NSUInteger)timeoutMs error:(NSError **)error
{
    CR_OPEN_OR(NO);
    if (timeoutMs > UINT_MAX) {
        cr_set(error, COURIER_EINVAL, "timeoutMs is too large");
        return NO;
    }
    /* A callback may -close (and release) the client: nothing of self is
     * touched after the call. */
    int rc = courier_run_once(HANDLE, (unsigned)timeoutMs);
    return cr_done(rc, error);
}

- (BOOL)link:(CourierLink *)outLink error:(NSError **)error
{
    CR_OPEN_OR(NO);
    courier_link_t l = COURIER_LINK_OFFLINE;
    int rc = courier_get_link(HANDLE, &l);
    if (outLink)
        *outLink = (CourierLink)l;
    return cr_done(rc, error);
}

/* ---- the app's data contract ------------------------------------------------ */

- (nullable NSString *)send:(CourierOutgoing *)message
                      error:(NSError **)error
{
    CR_OPEN_OR(nil);
    if (![message isKindOfClass:[CourierOutgoing class]]) {
        cr_set(error, COURIER_EINVAL, "message: not a CourierOutgoing");
        return nil;
    }
    courier_outgoing_t m;
    memset(&m, 0, sizeof m);
    m.kind = (courier_kind_t)message.kind;
    m.to = cr_utf8(message.to, "to", error);
    m.body = m.to ? cr_utf8(message.body, "body", error) : NULL;
    if (!m.body || !cr_opt(message.messageId, &m.id, "messageId", error) ||
        !cr_opt(message.meta, &m.meta, "meta", error))
        return nil;
    char new_id[COURIER_ID_MAX];
    int rc = courier_send(HANDLE, &m, new_id);
    if (rc != COURIER_OK) {
        cr_set(error, rc, NULL);
        return nil;
    }
    return cr_str(new_id);
}

/* Walks collect into an NSMutableArray (ud); they run on this thread. */
static int cr_collect_entry(void *ud, const courier_entry_t *e)
{
    CourierEntry *x = [[CourierEntry alloc] initWithCEntry:e];
    [(CR_BRIDGE NSMutableArray *)ud addObject:x];
#if !COURIER_ARC
    [x release];
#endif
    return 0;
}

static int cr_collect_conversation(void *ud, const courier_conversation_t *c)
{
    CourierConversation *x =
        [[CourierConversation alloc] initWithCConversation:c];
    [(CR_BRIDGE NSMutableArray *)ud addObject:x];
#if !COURIER_ARC
    [x release];
#endif
    return 0;
}

/* The walk's result: an immutable copy, or nil and *error. */
static NSArray *cr_walk_result(int rc, NSMutableArray *rows, NSError **error)
{
    if (rc != COURIER_OK) {
        cr_set(error, rc < 0 ? rc : COURIER_EINVAL, NULL);
        return nil;
    }
    return [NSArray arrayWithArray:rows];
}

- (nullable NSArray<CourierEntry *> *)historyWithPeer:(nullable NSString *)peer
                                            beforeSeq:(int64_t)beforeSeq
                                                limit:(NSUInteger)limit
                                                error:(NSError **)error
{
    CR_OPEN_OR(nil);
    const char *p = NULL;
    if (!cr_opt(peer, &p, "peer", error))
        return nil;
    if (limit > UINT_MAX) {
        cr_set(error, COURIER_EINVAL, "limit out of range 1..1000");
        return nil;
    }
    NSMutableArray *rows = [NSMutableArray array];
    int rc = courier_history(HANDLE, p, beforeSeq, (unsigned)limit,
                             cr_collect_entry, (CR_BRIDGE void *)rows);
    return cr_walk_result(rc, rows, error);
}

- (nullable NSArray<CourierEntry *> *)pending:(NSError **)error
{
    CR_OPEN_OR(nil);
    NSMutableArray *rows = [NSMutableArray array];
    int rc = courier_pending(HANDLE, cr_collect_entry, (CR_BRIDGE void *)rows);
    return cr_walk_result(rc, rows, error);
}

- (nullable NSArray<CourierConversation *> *)conversations:(NSError **)error
{
    CR_OPEN_OR(nil);
    NSMutableArray *rows = [NSMutableArray array];
    int rc = courier_conversations(HANDLE, cr_collect_conversation,
                                   (CR_BRIDGE void *)rows);
    return cr_walk_result(rc, rows, error);
}

- (BOOL)cancel:(NSString *)messageId error:(NSError **)error
{
    CR_OPEN_OR(NO);
    const char *i = cr_utf8(messageId, "id", error);
    if (!i)
        return NO;
    int rc = courier_cancel(HANDLE, i);
    return cr_done(rc, error);
}

- (BOOL)retract:(NSString *)messageId error:(NSError **)error
{
    CR_OPEN_OR(NO);
    const char *i = cr_utf8(messageId, "id", error);
    if (!i)
        return NO;
    int rc = courier_retract(HANDLE, i);
    return cr_done(rc, error);
}

- (BOOL)deleteMessage:(NSString *)messageId
                 peer:(NSString *)peer
                error:(NSError **)error
{
    CR_OPEN_OR(NO);
    const char *p = cr_utf8(peer, "peer", error);
    const char *i = p ? cr_utf8(messageId, "id", error) : NULL;
    if (!i)
        return NO;
    int rc = courier_delete(HANDLE, p, i);
    return cr_done(rc, error);
}

- (BOOL)deleteMessage:(NSString *)messageId
                 peer:(NSString *)peer
            direction:(CourierDirection)direction
                error:(NSError **)error
{
    CR_OPEN_OR(NO);
    const char *p = cr_utf8(peer, "peer", error);
    const char *i = p ? cr_utf8(messageId, "id", error) : NULL;
    if (!i)
        return NO;
    int rc = courier_delete_entry(HANDLE, p, i, (courier_dir_t)direction);
    return cr_done(rc, error);
}

- (BOOL)confirm:(NSString *)messageId
           peer:(NSString *)peer
          error:(NSError **)error
{
    CR_OPEN_OR(NO);
    const char *p = cr_utf8(peer, "peer", error);
    const char *i = p ? cr_utf8(messageId, "id", error) : NULL;
    if (!i)
        return NO;
    int rc = courier_confirm(HANDLE, p, i);
    return cr_done(rc, error);
}

- (BOOL)erase:(NSError **)error
{
    CR_OPEN_OR(NO);
    int rc = courier_erase(HANDLE);
    return cr_done(rc, error);
}

@end
