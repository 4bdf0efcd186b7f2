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
 * Errors: methods that can fail take an NSError ** and return NO / nil /
 * CourierStateUnknown. The NSError has domain CourierErrorDomain
 * ("org.libcourier"), code = the COURIER_E* value (negative, e.g.
 * CourierErrorInvalid = -1) and localizedDescription =
 * courier_strerror(code) + ": " + courier_last_error(), read on the failing
 * thread at once.
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

/** COURIER_E* values (the C values: negative). */
typedef NS_ENUM(NSInteger, CourierErrorCode) {
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
/** Defaults, then the dictionary's keys (the property names above, values
 *  NSString / NSNumber). Unknown keys or wrong types: nil and EINVAL. */
+ (nullable instancetype)configWithDictionary:(NSDictionary *)dict
                                        error:(NSError **)error;
@end

@class CourierClient;

/** Block forms of the delegate methods (same arguments, same thread). */
typedef void (^CourierStateHandler)(NSString *messageId, NSString *peer,
                                    CourierState state);
typedef void (^CourierMessageHandler)(NSString *messageId, NSString *peer,
                                      CourierKind kind, NSString *body,
                                      int64_t timestampMs);
typedef void (^CourierLinkHandler)(CourierLink link);
typedef void (^CourierComposingHandler)(NSString *peer, BOOL composing);
typedef void (^CourierLogHandler)(NSString *line, CourierLogLevel level);

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
    void *_handle;      /* courier_t *, NULL once closed */
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
/** courier_get_state(); CourierStateUnknown and *error on failure. */
- (CourierState)stateOf:(NSString *)messageId error:(NSError **)error;
/** courier_get_link(); CourierErrorAuth when the login was refused. */
- (BOOL)link:(CourierLink *)outLink error:(NSError **)error;
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
