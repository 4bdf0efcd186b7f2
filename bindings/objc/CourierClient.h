/* SPDX-License-Identifier: MIT */
/**
 * @file CourierClient.h
 * Objective-C binding of libcourier (courier.h), one to one.
 *
 * Events: a delegate (CourierClientDelegate) and/or one block per event
 * (onState, onMessage, onLink, onComposing, onLog). For each event the
 * block is called when one is set, else the delegate method (never both).
 *
 * Threads: every method may be called from any thread. Delegate methods and
 * blocks run on the library's loop thread (one thread per client, events in
 * order), never on the main thread: they must not block; hop to the main
 * queue yourself (dispatch_async(dispatch_get_main_queue(), ^{ ... })).
 * Each call runs inside its own @autoreleasepool; an exception it raises is
 * logged and dropped.
 *
 * Memory: the delegate is not retained (weak under ARC where the runtime
 * supports it, assign otherwise): keep it alive until -close. Blocks are
 * copied and kept until replaced, -close or -dealloc: -close releases them,
 * which ends a retain cycle through a block that captured the client. The
 * sources compile with manual retain/release and are ARC-compatible.
 *
 * Callback queue: set `callbackExecutor` (any thread hop: a block that
 * runs the work it is given) or, where libdispatch exists (Apple),
 * `delegateQueue` (as XMPPFramework's delegateQueue; e.g. the main
 * queue), and every delegate method and block runs there instead, one task
 * per event, in order on a serial queue. Default (both nil): the library's
 * loop thread, as before. After -close returns no task runs the app's code
 * (a queued one finds the client closed and does nothing; -close waits for
 * one under way).
 *
 * Errors: methods that can fail take an NSError ** and return NO / nil /
 * CourierStateUnknown; Swift imports each as `throws`. The NSError has
 * domain CourierErrorDomain ("org.libcourier", an NS_ERROR_ENUM: Swift's
 * CourierError), code = the COURIER_E* value (negative, e.g.
 * CourierErrorInvalid = -1) and localizedDescription =
 * courier_strerror(code) + ": " + courier_last_error(), read on the failing
 * thread at once.
 *
 * Blocking and disk I/O (see include/courier.h for the detail): never
 * block: -networkChanged:, +version, +nameOfState:,
 * +displayStatusOfState:, the properties. In memory but take the handle's
 * lock: -start:, -stats:, -link:error:, -currentLink:. Read SQLite:
 * -stateOf:error:, -messageInfo:error:, -setComposing:peer:error:. Write and
 * commit SQLite: -sendText:to:error:, -sendMedia:..., -markDisplayed:...,
 * -retry:error:. Can take long: the initializers (open, migrate, check the
 * store), -stop:, -close (a goodbye of up to ~2.5 s), -runOnce:error:.
 * Keep every call that touches the disk off the main thread.
 */
#import <Foundation/Foundation.h>

#ifndef NS_ASSUME_NONNULL_BEGIN
#define NS_ASSUME_NONNULL_BEGIN
#define NS_ASSUME_NONNULL_END
#endif
#if !__has_feature(nullability)
#define nullable
#define nonnull
#define _Nullable
#define _Nonnull
#endif

/* Apple's SDK defines these; older SDKs and GNUstep may not. */
#ifndef NS_SWIFT_SENDABLE
#if __has_attribute(swift_attr)
#define NS_SWIFT_SENDABLE __attribute__((swift_attr("@Sendable")))
#else
#define NS_SWIFT_SENDABLE
#endif
#endif
#ifndef NS_SWIFT_NAME
#if __has_attribute(swift_name)
#define NS_SWIFT_NAME(_name) __attribute__((swift_name(#_name)))
#else
#define NS_SWIFT_NAME(_name)
#endif
#endif
#ifndef NS_ERROR_ENUM
#if __has_attribute(ns_error_domain)
#define NS_ERROR_ENUM(_domain, _name)                                        \
    enum __attribute__((ns_error_domain(_domain))) _name : NSInteger _name;  \
    enum __attribute__((ns_error_domain(_domain))) _name : NSInteger
#else
#define NS_ERROR_ENUM(_domain, _name) NS_ENUM(NSInteger, _name)
#endif
#endif
/* A method whose error is the NSError it set (not its return value):
 * Swift imports it as `throws` although it returns an enum. */
#if __has_attribute(swift_error)
#define COURIER_SWIFT_THROWS __attribute__((swift_error(nonnull_error)))
#else
#define COURIER_SWIFT_THROWS
#endif

/* libdispatch: on Apple always (Foundation brings it); Debian 12 has none
 * for GNUstep, so there the dispatch-queue API is left out and
 * `callbackExecutor` is the way to choose a thread. */
#ifndef COURIER_HAVE_DISPATCH
#if __has_include(<dispatch/dispatch.h>)
#include <dispatch/dispatch.h>
#define COURIER_HAVE_DISPATCH 1
#else
#define COURIER_HAVE_DISPATCH 0
#endif
#endif
/* A queue is an Objective-C object (strong property) with OS_OBJECT_USE_OBJC,
 * the default on every SDK this targets (iOS 13, macOS 11). */
#if COURIER_HAVE_DISPATCH && defined(OS_OBJECT_USE_OBJC) && OS_OBJECT_USE_OBJC
#define COURIER_HAVE_DISPATCH_QUEUE 1
#else
#define COURIER_HAVE_DISPATCH_QUEUE 0
#endif

#if __has_feature(objc_arc) && __has_feature(objc_arc_weak)
#define COURIER_WEAK weak
#define COURIER_IVAR_WEAK __weak
#elif __has_feature(objc_arc)
#define COURIER_WEAK assign
#define COURIER_IVAR_WEAK __unsafe_unretained
#else
#define COURIER_WEAK assign
#define COURIER_IVAR_WEAK
#endif

NS_ASSUME_NONNULL_BEGIN

/** NSError domain of every error of this binding: @"org.libcourier". */
extern NSString *const CourierErrorDomain;

/** COURIER_E* values (the C values: negative): the codes of
 *  CourierErrorDomain (Swift: `CourierError.Code`, caught as
 *  `catch let e as CourierError`). */
typedef NS_ERROR_ENUM(CourierErrorDomain, CourierErrorCode) {
    CourierErrorInvalid = -1,     /**< COURIER_EINVAL */
    CourierErrorNoMemory = -2,    /**< COURIER_ENOMEM */
    CourierErrorNotFound = -3,    /**< COURIER_ENOTFOUND */
    CourierErrorState = -4,       /**< COURIER_ESTATE */
    CourierErrorNotConnected = -5,/**< COURIER_ENOTCONN */
    CourierErrorStore = -6,       /**< COURIER_ESTORE */
    CourierErrorCorrupt = -7,     /**< COURIER_ECORRUPT */
    CourierErrorClosed = -8,      /**< COURIER_ECLOSED */
    CourierErrorAuth = -9,        /**< COURIER_EAUTH */
    CourierErrorNotSupported = -10/**< COURIER_ENOTSUP */
};

/** courier_state_t; CourierStateUnknown (-1) is returned on error only. */
typedef NS_ENUM(NSInteger, CourierState) {
    CourierStateUnknown = -1,
    CourierStateQueued = 0,
    CourierStateSent = 1,
    CourierStateOffline = 2,
    CourierStateDelivered = 3,
    CourierStateDisplayed = 4,
    CourierStateFailed = 5
};

/** courier_kind_t. */
typedef NS_ENUM(NSInteger, CourierKind) {
    CourierKindText = 0,
    CourierKindVoice = 1,
    CourierKindImage = 2
};

/** courier_link_t. */
typedef NS_ENUM(NSInteger, CourierLink) {
    CourierLinkOffline = 0,
    CourierLinkConnecting = 1,
    CourierLinkOnline = 2
};

/** courier_log_level_t. */
typedef NS_ENUM(NSInteger, CourierLogLevel) {
    CourierLogDebug = 0,
    CourierLogInfo = 1,
    CourierLogWarn = 2,
    CourierLogError = 3
};

/**
 * courier_config_t. -init fills it with courier_config_init() defaults.
 * Unsigned fields are NSUInteger; a value that does not fit the C field is
 * refused with CourierErrorInvalid.
 */
@interface CourierConfig : NSObject <NSCopying>
{
    /* Explicit ivars: the GNU (fragile ABI) runtime used to test this on
     * Linux cannot synthesize them. */
    NSString *_jid, *_password, *_host, *_dbPath, *_caFile;
    NSUInteger _port, _ackTimeoutMs, _resendGraceMs, _pingIntervalMs,
        _pingTimeoutMs, _reconnectMinMs, _reconnectMaxMs, _maxInFlight,
        _maxBodyBytes;
    uint64_t _maxAgeMs;
    BOOL _allowPlaintext, _implicitRead, _synchronousFull;
}
@property (nonatomic, copy, nullable) NSString *jid;        /**< required */
@property (nonatomic, copy, nullable) NSString *password;   /**< required */
@property (nonatomic, copy, nullable) NSString *host;       /**< else SRV */
@property (nonatomic) NSUInteger port;                      /**< 0 = default */
@property (nonatomic, copy, nullable) NSString *dbPath;     /**< required */
@property (nonatomic, copy, nullable) NSString *caFile;
@property (nonatomic) BOOL allowPlaintext;
@property (nonatomic) NSUInteger ackTimeoutMs, resendGraceMs;
@property (nonatomic) NSUInteger pingIntervalMs, pingTimeoutMs;
@property (nonatomic) NSUInteger reconnectMinMs, reconnectMaxMs;
@property (nonatomic) NSUInteger maxInFlight;
@property (nonatomic) uint64_t maxAgeMs;
@property (nonatomic) BOOL implicitRead;
@property (nonatomic) BOOL synchronousFull;
@property (nonatomic) NSUInteger maxBodyBytes;
/** Defaults with the three required fields set (Swift:
 *  `CourierConfig(jid:password:dbPath:)`). */
- (instancetype)initWithJID:(NSString *)jid
                   password:(NSString *)password
                     dbPath:(NSString *)dbPath;
/** Defaults, then the dictionary's keys (the property names above, values
 *  NSString / NSNumber). Unknown keys or wrong types: nil and EINVAL. */
+ (nullable instancetype)configWithDictionary:(NSDictionary *)dict
                                        error:(NSError **)error;
@end

/** courier_info_t: why an outgoing message is where it is
 *  (-messageInfo:error:). A snapshot. */
@interface CourierMessageInfo : NSObject
{
    CourierState _state;
    NSUInteger _attempts;
    int64_t _createdMs, _lastSentMs, _lastChangeMs;
    BOOL _permanent;
    NSString *_reason;
}
@property (nonatomic, readonly) CourierState state;
/** Times written to a stream. */
@property (nonatomic, readonly) NSUInteger attempts;
/** Unix ms; lastSentMs is 0 before the first write. */
@property (nonatomic, readonly) int64_t createdMs, lastSentMs, lastChangeMs;
/** FAILED and never resent by itself (only -retry:error:). */
@property (nonatomic, readonly) BOOL permanent;
/** "offline", "link-lost", "ack-timeout", "expired", an XMPP error
 *  condition, or "". */
@property (nonatomic, readonly, copy) NSString *reason;
@end

/** courier_stats_t: what the reliability rules did since the client was
 *  opened (-stats:; in memory). A snapshot. */
@interface CourierStats : NSObject
{
    uint64_t _sent, _resentReconnect, _resentPeer, _resentRetry, _received,
        _duplicates, _linksUp;
}
@property (nonatomic, readonly) uint64_t sent;            /**< first writes */
@property (nonatomic, readonly) uint64_t resentReconnect; /**< after a reconnect */
@property (nonatomic, readonly) uint64_t resentPeer;      /**< the peer wrote */
@property (nonatomic, readonly) uint64_t resentRetry;     /**< -retry:error: */
@property (nonatomic, readonly) uint64_t received;        /**< handed to the app */
@property (nonatomic, readonly) uint64_t duplicates;      /**< dropped */
@property (nonatomic, readonly) uint64_t linksUp;         /**< sessions ready */
@end

@class CourierClient;

/* Block forms of the delegate methods (same arguments, same thread or
 * queue). NS_SWIFT_SENDABLE: Swift imports them as @Sendable closures, so
 * a closure written inside a @MainActor type is not taken as main-actor
 * isolated, and Swift 6 does not trap when the library calls it off the
 * main thread. (The closure then must not touch main-actor state directly:
 * hop with `Task { @MainActor in ... }` or set delegateQueue to the main
 * queue and use MainActor.assumeIsolated.) */
typedef void (NS_SWIFT_SENDABLE ^CourierStateHandler)(NSString *messageId,
                                                      NSString *peer,
                                                      CourierState state);
typedef void (NS_SWIFT_SENDABLE ^CourierMessageHandler)(NSString *messageId,
                                                        NSString *peer,
                                                        CourierKind kind,
                                                        NSString *body,
                                                        int64_t timestampMs);
typedef void (NS_SWIFT_SENDABLE ^CourierLinkHandler)(CourierLink link);
typedef void (NS_SWIFT_SENDABLE ^CourierComposingHandler)(NSString *peer,
                                                          BOOL composing);
typedef void (NS_SWIFT_SENDABLE ^CourierLogHandler)(NSString *line,
                                                    CourierLogLevel level);
/** One event's delivery, handed to a callbackExecutor to run once. */
typedef void (NS_SWIFT_SENDABLE ^CourierCallbackWork)(void);
/** Runs `work` (once, later or now) on the thread or queue of the app's
 *  choice, in the order given if the order of events matters; e.g.
 *  `^(CourierCallbackWork w) { [opQueue addOperationWithBlock:w]; }`.
 *  Called on the library's thread: it must not block. */
typedef void (NS_SWIFT_SENDABLE ^CourierCallbackExecutor)(
    CourierCallbackWork work);

/**
 * Events of one account. All optional. Called on the library's loop thread
 * (not the main thread): do not block; dispatch to the main queue.
 * Strings are copies (NSString), valid after the call.
 */
@protocol CourierClientDelegate <NSObject>
@optional
/** An outgoing message changed state (after it is durable, in order). */
- (void)courier:(CourierClient *)client
    messageWithId:(NSString *)messageId
               to:(NSString *)peer
   didChangeState:(CourierState)state;
/** An incoming message: once per (peer, messageId). */
- (void)courier:(CourierClient *)client
    didReceiveMessageWithId:(NSString *)messageId
                       from:(NSString *)peer
                       kind:(CourierKind)kind
                       body:(NSString *)body
                timestampMs:(int64_t)timestampMs;
- (void)courier:(CourierClient *)client didChangeLink:(CourierLink)link;
- (void)courier:(CourierClient *)client
           peer:(NSString *)peer
    isComposing:(BOOL)composing;
- (void)courier:(CourierClient *)client
            log:(NSString *)line
          level:(CourierLogLevel)level;
@end

@interface CourierClient : NSObject
{
    void *_Nullable _handle; /* courier_t *, NULL once closed */
    id _gate;            /* CRGate: open until -close; held by queued work */
    CourierCallbackExecutor _Nullable _callbackExecutor;
#if COURIER_HAVE_DISPATCH_QUEUE
    dispatch_queue_t _Nullable _delegateQueue;
#endif
    COURIER_IVAR_WEAK id<CourierClientDelegate> _delegate;
    NSLock *_handlerLock; /* guards the five blocks (held for a swap) */
    CourierStateHandler _onState;
    CourierMessageHandler _onMessage;
    CourierLinkHandler _onLink;
    CourierComposingHandler _onComposing;
    CourierLogHandler _onLog;
}

@property (nonatomic, COURIER_WEAK, nullable) id<CourierClientDelegate> delegate;

/**
 * Per-event blocks, called instead of the delegate method of the same event
 * when set (nil: the delegate method). Set them before -start: so no event
 * is missed. Setting one is thread-safe, also from a callback (a block may
 * replace itself): an event being delivered completes with the block it
 * began with, which holds its own reference meanwhile. The setter copies
 * the block; replacing it, -close and -dealloc release it. The getter
 * returns the stored block, valid until it is replaced. A block that
 * captures the client makes a retain cycle that -close ends (or capture it
 * __weak under ARC).
 */
@property (nonatomic, copy, nullable) CourierStateHandler onState;
@property (nonatomic, copy, nullable) CourierMessageHandler onMessage;
@property (nonatomic, copy, nullable) CourierLinkHandler onLink;
@property (nonatomic, copy, nullable) CourierComposingHandler onComposing;
@property (nonatomic, copy, nullable) CourierLogHandler onLog;

/**
 * Where delegate methods and blocks run: nil (the default) on the
 * library's loop thread (or the caller of -runOnce:error:); else each event
 * is handed to this block as one unit of work (see CourierCallbackExecutor).
 * Set it before -start:. A unit still queued when -close returns does
 * nothing when it runs; -close waits for one under way on another thread
 * (so a delegate method must not wait for the thread that calls -close).
 * Copied; released by -close. Setting it clears delegateQueue.
 */
@property (nonatomic, copy, nullable) CourierCallbackExecutor callbackExecutor;
#if COURIER_HAVE_DISPATCH_QUEUE
/**
 * The dispatch queue delegate methods and blocks run on (as
 * XMPPFramework's delegateQueue): each event is dispatch_async'ed to it.
 * nil (the default): the library's loop thread, as callbackExecutor nil.
 * A serial queue keeps events in order (the main queue for UI code). The
 * same rules as callbackExecutor, which it sets.
 */
@property (nonatomic, strong, nullable) dispatch_queue_t delegateQueue;
#endif

/** courier_version(). */
+ (NSString *)version;
/** courier_state_name(): "QUEUED"..., "UNKNOWN". */
+ (NSString *)nameOfState:(CourierState)state;
/** courier_display_status(): "sending", "delivered", "read", "failed". */
+ (NSString *)displayStatusOfState:(CourierState)state;

/**
 * courier_open(). `config` is a CourierConfig or an NSDictionary (see
 * +[CourierConfig configWithDictionary:error:]). The delegate is not
 * retained. No network until -start:.
 */
- (nullable instancetype)initWithConfig:(id)config
                               delegate:(nullable id<CourierClientDelegate>)delegate
                                  error:(NSError **)error;
/** The same without a delegate: set the on* blocks, then -start:. */
- (nullable instancetype)initWithConfig:(id)config error:(NSError **)error;
/** courier_open() with a typed configuration (Swift:
 *  `try CourierClient(configuration:delegate:)`). Blocks for disk I/O:
 *  opens, migrates and, after an unclean close, checks the store. */
- (nullable instancetype)initWithConfiguration:(CourierConfig *)config
                                      delegate:(nullable id<CourierClientDelegate>)delegate
                                         error:(NSError **)error;
#if COURIER_HAVE_DISPATCH_QUEUE
/** The same, with the queue delegate methods and blocks run on (nil: the
 *  library's thread). Swift: `try CourierClient(configuration: cfg,
 *  delegate: self, delegateQueue: .main)`. */
- (nullable instancetype)initWithConfiguration:(CourierConfig *)config
                                      delegate:(nullable id<CourierClientDelegate>)delegate
                                 delegateQueue:(nullable dispatch_queue_t)queue
                                         error:(NSError **)error;
#endif

/** courier_start(): connect on the library's own thread. */
- (BOOL)start:(NSError **)error;
/** courier_stop(): disconnect and join the loop thread. */
- (BOOL)stop:(NSError **)error;
/** courier_close(); idempotent; after it every call fails with
 *  CourierErrorClosed. Also done by -dealloc. After it returns no delegate
 *  method or block runs (from a callback: after that callback returns),
 *  and the on* blocks are released (set to nil). */
- (void)close;

/** courier_send_text(): returns the new message id once durable. */
- (nullable NSString *)sendText:(NSString *)body
                             to:(NSString *)peer
                          error:(NSError **)error;
/** courier_send_media(): kind Voice or Image, caller-chosen mediaId. */
- (BOOL)sendMedia:(NSString *)body
             kind:(CourierKind)kind
          mediaId:(NSString *)mediaId
               to:(NSString *)peer
            error:(NSError **)error;
/** courier_mark_displayed(): message `messageId` received from `peer`. */
- (BOOL)markDisplayed:(NSString *)messageId
                 peer:(NSString *)peer
                error:(NSError **)error;
/** courier_set_composing(). */
- (BOOL)setComposing:(BOOL)composing
                peer:(NSString *)peer
               error:(NSError **)error;
/** courier_retry(): resend a FAILED message. */
- (BOOL)retry:(NSString *)messageId error:(NSError **)error;
/** courier_get_state(); CourierStateUnknown and *error on failure (Swift:
 *  `try client.stateOf(id)`). Reads SQLite. */
- (CourierState)stateOf:(NSString *)messageId
                  error:(NSError **)error COURIER_SWIFT_THROWS;
/** courier_get_info(): state, attempts, times, reason (Swift:
 *  `try client.messageInfo(id)`). Reads SQLite. */
- (nullable CourierMessageInfo *)messageInfo:(NSString *)messageId
                                       error:(NSError **)error;
/** courier_get_stats() (Swift: `try client.stats()`). In memory. */
- (nullable CourierStats *)stats:(NSError **)error;
/** courier_get_link(); CourierErrorAuth when the login was refused. */
- (BOOL)link:(CourierLink *)outLink error:(NSError **)error;
/** courier_get_link() as a value (Swift: `try client.currentLink()`);
 *  CourierLinkOffline and *error on failure. */
- (CourierLink)currentLink:(NSError **)error COURIER_SWIFT_THROWS;
/** courier_run_once(): drive the library from your own thread instead of
 *  -start: (one thread at a time, with COURIER_RUN_ONCE_STACK_BYTES of
 *  stack). Waits up to timeoutMs for something to happen, then runs the
 *  socket, timers, pending work and, without a callback queue, the
 *  delegate methods and blocks on the calling thread. CourierErrorState
 *  when -start: drives the client; CourierErrorClosed when a callback
 *  closed it (Swift: `try client.runOnce(100)`). */
- (BOOL)runOnce:(NSUInteger)timeoutMs error:(NSError **)error;
/** courier_network_changed() (behaviour.md §10): the device's network
 *  changed. A link that is up is probed at once with a ping (cut if it
 *  goes unanswered for pingTimeoutMs); a link that is down reconnects
 *  now instead of waiting out its backoff. Call it from an NWPathMonitor
 *  pathUpdateHandler. Any thread or queue; never blocks (no I/O, no
 *  lock). Does nothing on a client that is not started.
 *  CourierErrorClosed after -close. */
- (BOOL)networkChanged:(NSError **)error;

@end

NS_ASSUME_NONNULL_END
