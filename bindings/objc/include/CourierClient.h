/* SPDX-License-Identifier: MIT */
/**
 * @file CourierClient.h
 * Objective-C binding of libcourier (courier.h), one to one.
 *
 * Events: a delegate (CourierClientDelegate) and/or one block per event
 * (onState, onMessage or onReceive, onLink, onComposing, onLog, onRetract,
 * onCertificate).
 * For each event the block is called when one is set, else the delegate
 * method (never both).
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
 * per event, in order on a serial queue; the certificate decision
 * (onCertificate) excepted, which answers on the library's thread.
 * Default (both nil): the library's loop thread, as before. After -close
 * returns no task runs the app's code
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
 * block: -networkChanged:, -setActive:error:, -checkStatus:error:,
 * -storeCheck:, +version, +nameOfState:, +displayStatusOfState:, the
 * properties. In memory but take the handle's
 * lock: -start:, -stats:, -link:error:, -currentLink:. Read SQLite:
 * -stateOf:error:, -messageInfo:error:, -setComposing:peer:error:,
 * -historyWithPeer:beforeSeq:limit:error:, -pending:, -conversations:.
 * Write and commit SQLite: -sendText:to:error:, -sendMedia:..., -send:error:,
 * -markDisplayed:..., -retry:error:, -cancel:error:, -retract:error:,
 * -deleteMessage:peer:error:, -deleteMessage:peer:direction:error:,
 * -confirm:peer:error:. Can take long: the initializers (open, migrate;
 * the check owed after a crash runs on a thread of the library's own:
 * -checkStatus:error:), -sync:error: (up to its timeout),
 * -enablePushWithService:node:secret:error: and -disablePush: (commit to
 * SQLite, then wait up to ackTimeoutMs for the server's answer while
 * online), -stop:, -close
 * (a goodbye of up to ~2 s), -runOnce:error:, -erase: (rewrites the whole
 * file).
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
    CourierErrorNotSupported = -10,/**< COURIER_ENOTSUP */
    CourierErrorTimedOut = -11,   /**< COURIER_ETIMEDOUT (-sync:error:,
                                       -enablePushWithService:...,
                                       -disablePush:) */
    CourierErrorRefused = -12     /**< COURIER_EREFUSED: the server answered
                                       with an error, its condition in the
                                       description
                                       (-enablePushWithService:...,
                                       -disablePush:) */
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

/** courier_dir_t: the direction of a history entry. */
typedef NS_ENUM(NSInteger, CourierDirection) {
    CourierDirectionOut = 0, /**< sent by this account */
    CourierDirectionIn = 1   /**< received from the peer */
};

/** courier_check_t: the check of the store owed after an unclean close
 *  (-checkStatus:error:, behaviour.md §10). CourierStoreCheckUnknown (-1)
 *  is returned by -storeCheck: on an error other than a damaged store. */
typedef NS_ENUM(NSInteger, CourierStoreCheck) {
    CourierStoreCheckUnknown = -1,
    CourierStoreCheckNone = 0,    /**< nothing owed: the last close was clean */
    CourierStoreCheckRunning = 1, /**< under way on the library's thread */
    CourierStoreCheckOK = 2,      /**< ran to the end: no damage found */
    CourierStoreCheckDamaged = 3, /**< ran to the end: the store is damaged
                                       (with CourierErrorCorrupt) */
    CourierStoreCheckFailed = 4   /**< could not run: owed again at the
                                       next open */
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
    NSString *_jid, *_password, *_host, *_dbPath, *_caFile, *_caPath;
    NSUInteger _port, _ackTimeoutMs, _resendGraceMs, _pingIntervalMs,
        _pingTimeoutMs, _reconnectMinMs, _reconnectMaxMs, _maxInFlight,
        _maxBodyBytes;
    uint64_t _maxAgeMs;
    BOOL _allowPlaintext, _implicitRead, _synchronousFull, _appConfirms;
}
@property (nonatomic, copy, nullable) NSString *jid;        /**< required */
@property (nonatomic, copy, nullable) NSString *password;   /**< required */
@property (nonatomic, copy, nullable) NSString *host;       /**< else SRV */
@property (nonatomic) NSUInteger port;                      /**< 0 = default */
@property (nonatomic, copy, nullable) NSString *dbPath;     /**< required */
/** A CA bundle (PEM file) trusted besides OpenSSL's default paths: a
 *  private CA. On iOS those paths hold nothing: the public CAs come from
 *  the platform through onCertificate (or a bundle shipped here). */
@property (nonatomic, copy, nullable) NSString *caFile;
/** A directory of hashed CA files (OpenSSL's c_rehash layout), trusted as
 *  caFile is (courier_config_t.ca_path). */
@property (nonatomic, copy, nullable) NSString *caPath;
@property (nonatomic) BOOL allowPlaintext;
@property (nonatomic) NSUInteger ackTimeoutMs, resendGraceMs;
@property (nonatomic) NSUInteger pingIntervalMs, pingTimeoutMs;
@property (nonatomic) NSUInteger reconnectMinMs, reconnectMaxMs;
@property (nonatomic) NSUInteger maxInFlight;
@property (nonatomic) uint64_t maxAgeMs;
@property (nonatomic) BOOL implicitRead;
@property (nonatomic) BOOL synchronousFull;
@property (nonatomic) NSUInteger maxBodyBytes;
/** YES: an incoming message counts as handed only at -confirm:peer:error:
 *  (once it is in the app's own database); until then it is handed again
 *  at every open. NO (the default): when the delegate method or block
 *  returns. */
@property (nonatomic) BOOL appConfirms;
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

/** courier_outgoing_t: what -send:error: sends. A TEXT message unless
 *  `kind` is set. Swift: `CourierOutgoing(to: peer, body: text)`. */
@interface CourierOutgoing : NSObject <NSCopying>
{
    NSString *_to, *_body, *_messageId, *_meta;
    CourierKind _kind;
}
/** The peer's bare JID. */
@property (nonatomic, copy) NSString *to;
/** CourierKindText (the default), Voice or Image. */
@property (nonatomic) CourierKind kind;
/** Text, or the media URL/description. */
@property (nonatomic, copy) NSString *body;
/** The app's own id (nil: the library makes one); required for Voice and
 *  Image (the media id). */
@property (nonatomic, copy, nullable) NSString *messageId;
/** App data delivered with the message (UTF-8, at most 4 KiB: a voice
 *  message's length, an image's size, reply-to...); nil: none. */
@property (nonatomic, copy, nullable) NSString *meta;
/** A TEXT message `body` to `to`. */
- (instancetype)initWithTo:(NSString *)to body:(NSString *)body;
/** The same, autoreleased. */
+ (instancetype)outgoingTo:(NSString *)to body:(NSString *)body;
/** Empty `to` and `body`: set them before sending. */
- (instancetype)init;
@end

/** courier_entry_t: one message of the history as the store keeps it
 *  (-historyWithPeer:beforeSeq:limit:error:, -pending:). Immutable: a
 *  snapshot taken when it was read. */
@interface CourierEntry : NSObject
{
    int64_t _seq, _timestampMs;
    CourierDirection _direction;
    NSString *_messageId, *_peer, *_body, *_meta;
    CourierKind _kind;
    CourierState _state;
    BOOL _retracted;
}
/** This account's history order (a newer entry has a larger seq): the
 *  paging cursor (beforeSeq). */
@property (nonatomic, readonly) int64_t seq;
@property (nonatomic, readonly) CourierDirection direction;
@property (nonatomic, readonly, copy) NSString *messageId;
/** The other side's bare JID. */
@property (nonatomic, readonly, copy) NSString *peer;
@property (nonatomic, readonly) CourierKind kind;
/** Text, or the media URL/description; "" once retracted. */
@property (nonatomic, readonly, copy) NSString *body;
/** App data sent with the message; "" if none (and once retracted). */
@property (nonatomic, readonly, copy) NSString *meta;
/** Out: its state; In: Delivered, or Displayed once marked. */
@property (nonatomic, readonly) CourierState state;
/** Out: created; In: the sender's time (Unix ms). */
@property (nonatomic, readonly) int64_t timestampMs;
/** Its sender retracted it (XEP-0424): body and meta are "". */
@property (nonatomic, readonly) BOOL retracted;
@end

/** courier_conversation_t (-conversations:). Immutable: a snapshot. */
@interface CourierConversation : NSObject
{
    NSString *_peer;
    int64_t _lastSeq, _lastMs;
    NSUInteger _unread;
}
@property (nonatomic, readonly, copy) NSString *peer;
/** The seq and time (Unix ms) of the newest entry with this peer. */
@property (nonatomic, readonly) int64_t lastSeq, lastMs;
/** Incoming messages not marked displayed (those after the newest one
 *  marked); retracted ones are not counted. */
@property (nonatomic, readonly) NSUInteger unread;
@end

/** courier_message_t: an incoming message as one object, meta included
 *  (-courier:didReceiveMessage:, onReceive). Immutable. */
@interface CourierMessage : NSObject
{
    NSString *_messageId, *_peer, *_body, *_meta;
    CourierKind _kind;
    int64_t _timestampMs;
}
@property (nonatomic, readonly, copy) NSString *messageId;
/** The sender's bare JID. */
@property (nonatomic, readonly, copy) NSString *peer;
@property (nonatomic, readonly) CourierKind kind;
/** Text, or the media URL/description. */
@property (nonatomic, readonly, copy) NSString *body;
/** App data the sender attached (CourierOutgoing.meta); "" if none. */
@property (nonatomic, readonly, copy) NSString *meta;
/** Original send time (Unix ms). */
@property (nonatomic, readonly) int64_t timestampMs;
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
/** The incoming message as one object, meta included (onReceive). */
typedef void (NS_SWIFT_SENDABLE ^CourierReceiveHandler)(
    CourierMessage *message);
/** `peer` retracted its message `messageId` (onRetract). */
typedef void (NS_SWIFT_SENDABLE ^CourierRetractHandler)(NSString *messageId,
                                                        NSString *peer);
/** Platform trust (onCertificate, behaviour.md §10): OpenSSL could not
 *  verify the server's certificate; return YES to accept it. `host` is
 *  the JID's domain (the library has already checked that the leaf names
 *  it); `pemChain` the certificates the server presented, as PEM, leaf
 *  first. Runs on the library's loop thread inside the login, whatever
 *  the callback queue: answer quickly (well within pingTimeoutMs) and
 *  never wait for the main queue. */
typedef BOOL (NS_SWIFT_SENDABLE ^CourierCertificateHandler)(
    NSString *host, NSString *pemChain);
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
/** An incoming message, meta included: once per (peer, messageId). When
 *  the delegate has this method, it is called instead of the one below.
 *  With appConfirms, handed again at every open until
 *  -confirm:peer:error:. */
- (void)courier:(CourierClient *)client
    didReceiveMessage:(CourierMessage *)message;
/** An incoming message: once per (peer, messageId) (the form without
 *  meta, for delegates written before it). */
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
/** `peer` retracted its message `messageId` (XEP-0424): the history entry
 *  is marked retracted and its body and meta are gone (drop them from the
 *  app's copy too). Once per message; never for one not handed over. */
- (void)courier:(CourierClient *)client
     didRetract:(NSString *)messageId
           from:(NSString *)peer;
/** Platform trust, as the onCertificate block (which wins when set):
 *  OpenSSL could not verify the server's certificate; return YES to
 *  accept `pemChain` (PEM, leaf first) for `host` (the JID's domain,
 *  already checked against the leaf by the library). Called on the
 *  library's loop thread, never through the callback queue: answer now,
 *  without waiting for the main queue. Without it (and without the
 *  block) the certificate is refused. */
- (BOOL)courier:(CourierClient *)client
    shouldAcceptCertificateChain:(NSString *)pemChain
                         forHost:(NSString *)host;
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
    NSLock *_handlerLock; /* guards the eight blocks (held for a swap) */
    CourierStateHandler _onState;
    CourierMessageHandler _onMessage;
    CourierLinkHandler _onLink;
    CourierComposingHandler _onComposing;
    CourierLogHandler _onLog;
    CourierReceiveHandler _onReceive;
    CourierRetractHandler _onRetract;
    CourierCertificateHandler _onCertificate;
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
/** The message event as a CourierMessage (meta included): when set, it is
 *  called instead of onMessage and of both delegate methods. */
@property (nonatomic, copy, nullable) CourierReceiveHandler onReceive;
/** A retraction (as -courier:didRetract:from:). */
@property (nonatomic, copy, nullable) CourierRetractHandler onRetract;
/**
 * Platform trust (courier_callbacks_t.on_certificate, behaviour.md §10):
 * asked when OpenSSL cannot verify the server's certificate with its
 * default paths, caFile and caPath (on iOS those paths hold nothing), with
 * the JID's domain and the chain as PEM, leaf first; return YES to accept
 * (iOS: SecTrustEvaluateWithError, see the README). The library checks
 * the host name itself (X509_check_host) before it asks: a certificate
 * for another name is refused and this is not called. Runs on the
 * library's loop thread inside the login, before any credential is sent,
 * even with a callbackExecutor or delegateQueue: the link waits for the
 * answer (and, through libstrophe's lock, other clients' loops too), and
 * past pingTimeoutMs the attempt is cut and the next one asks again. An
 * exception raised here is logged and refuses. nil (and no delegate
 * method): refused. The C callback is always set, because the block may
 * be set after init: without a decider the handshake finishes and the
 * connection is then shut before any credential leaves (the C library
 * without on_certificate fails the handshake itself; either way no
 * login).
 */
@property (nonatomic, copy, nullable) CourierCertificateHandler onCertificate;

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
/** courier_set_active() (behaviour.md §10): the app went to the background
 *  (NO) or came back (YES); call it from the scene phase (UIScene
 *  didEnterBackground / willEnterForeground, SwiftUI scenePhase). When
 *  the server offers XEP-0352 Client State Indication the library sends
 *  <inactive/> or <active/> (now if the link is up, and <inactive/> again
 *  after every login while in background); messages still arrive. In
 *  background -setComposing:peer:error: sends nothing. Remembered for the
 *  client's life (a client not started included); a new one starts in
 *  foreground. Any thread or queue, the main one included; never blocks,
 *  no disk I/O. CourierErrorClosed after -close. */
- (BOOL)setActive:(BOOL)active error:(NSError **)error;
/** courier_sync() (behaviour.md §10): for a run woken by a push or a
 *  background task. Starts a client that is not started (a link that is
 *  down reconnects now), sends what is owed, receives what is waiting,
 *  and returns once nothing is in flight: every pending message
 *  acknowledged by the server, every owed receipt and retraction taken,
 *  and what the server held for this account handed to the delegate or
 *  blocks. The link stays up afterwards (-stop: before the task ends).
 *  Blocks up to timeoutMs: never on the main thread; not from a callback
 *  on the library's thread (CourierErrorState). Errors: TimedOut
 *  (something still in flight at timeoutMs: no network, a server that
 *  does not answer; the loop goes on), Auth (login refused), State
 *  (driven by -runOnce:error:, or called from the loop thread), Closed,
 *  NoMemory, Invalid. Swift: `try client.sync(20000)`. */
- (BOOL)sync:(NSUInteger)timeoutMs error:(NSError **)error;
/** courier_check_status() (behaviour.md §10): where the check of the
 *  store owed after an unclean close stands. After the app was killed the
 *  library checks every page on a thread of its own once the initializer
 *  has returned; the client works meanwhile. The verdict is also logged
 *  once (info ok, error damaged, warn could not run). `*outStatus` is set
 *  also when the store is damaged: then NO with CourierErrorCorrupt (its
 *  description carries SQLite's first finding): tell the user, keep what
 *  -historyWithPeer:... still reads, then -erase: or delete the files.
 *  Any thread; never blocks, no disk I/O. */
- (BOOL)checkStatus:(CourierStoreCheck *)outStatus error:(NSError **)error;
/** courier_push_enable() (XEP-0357, behaviour.md §10): ask the server to
 *  notify the app server `serviceJID` (a JID, e.g. @"push.example.com") on
 *  pubsub node `node` (1..1023 bytes of UTF-8, e.g. the APNs device token
 *  the app server handed out) while this account has no session online,
 *  so that it can wake the app, which then calls -sync:error:. `secret`
 *  (1..1023 bytes, or nil for none) goes in the request's publish-options
 *  form for the app server to check. The registration is stored (it
 *  survives -close and a new client on the same dbPath) and written again
 *  after every login until -disablePush:. One per client: enabling
 *  another service or node replaces it (the server is asked to disable
 *  the old one). A server's refusal does not forget it: asked again at
 *  each login, each answer logged (onLog / -courier:log:level:).
 *  Online the call waits for the server's answer, up to ackTimeoutMs.
 *  Offline (not started, connecting, between links) it returns YES once
 *  stored: written at the next login, the answer logged. From a callback
 *  on the library's thread, or on a client -runOnce:error: drives, it
 *  never waits (stored; the answer logged).
 *  Any thread. Disk I/O: one transaction, committed before it waits or
 *  returns; no network on this thread. Blocks up to ackTimeoutMs while
 *  online: never on the main thread. Errors: Invalid (serviceJID not a
 *  JID; node or secret empty, too long, with a control character or
 *  U+0000; named in the description), Refused (the server answered with
 *  an error, e.g. feature-not-implemented from a server without
 *  XEP-0357: the condition is in the description; still stored),
 *  TimedOut (online, no answer in time; still stored), Store, Closed.
 *  Swift: `try client.enablePush(service:node:secret:)`. */
- (BOOL)enablePushWithService:(NSString *)serviceJID
                         node:(NSString *)node
                       secret:(nullable NSString *)secret
                        error:(NSError **)error
    NS_SWIFT_NAME(enablePush(service:node:secret:));
/** courier_push_disable() (behaviour.md §10): forget the registration of
 *  -enablePushWithService:node:secret:error: and ask the server to
 *  disable it; the disable is owed in the store until the server answers
 *  it (offline: written at the next login). Nothing registered: YES,
 *  nothing sent. At logout call it while online before -erase: (which
 *  forgets the registration without telling the server). Threads,
 *  blocking and disk I/O as -enablePushWithService:node:secret:error::
 *  commits, then waits up to ackTimeoutMs while online; never on the
 *  main thread. Errors: Refused (the server answered with an error other
 *  than item-not-found; forgotten all the same), TimedOut (online, no
 *  answer in time: owed, asked again at the next login), Store, Closed.
 *  Swift: `try client.disablePush()`. */
- (BOOL)disablePush:(NSError **)error;
/** -checkStatus:error: as a value (Swift: `try client.storeCheck()`, which
 *  throws CourierError.corrupt for a damaged store):
 *  CourierStoreCheckDamaged with CourierErrorCorrupt,
 *  CourierStoreCheckUnknown and *error on any other error. */
- (CourierStoreCheck)storeCheck:(NSError **)error COURIER_SWIFT_THROWS;

/* ---- the app's data contract (courier.h, behaviour.md §9) ---- */

/** courier_send(): store `message` and queue it; returns its id (the
 *  app's own, or the one made) once it is durable. With messageId set, an
 *  id that already names a message (deleted ones included) is
 *  CourierErrorState and changes nothing: write your own row first, send
 *  with the same id, and repeat the send after a crash without doubling
 *  it. meta reaches the peer's -courier:didReceiveMessage: / onReceive and
 *  both sides' history. Disk I/O: an INSERT and a COMMIT, waited for.
 *  Errors: Invalid (bad JID, body or kind, bad id, Voice/Image without an
 *  id, meta over 4 KiB or with a control character), State, Store,
 *  Closed. Swift: `let id = try client.send(m)`. */
- (nullable NSString *)send:(CourierOutgoing *)message
                      error:(NSError **)error;
/** courier_history(): a page of the history with `peer` (nil: every
 *  peer), newest first: the entries whose seq < beforeSeq (0: from the
 *  newest), at most `limit` (1..1000); deleted ones left out. Pass the
 *  last entry's seq as the next page's beforeSeq; an empty array is the
 *  end. Reads SQLite (index walks: a page costs the same whatever the
 *  store's size). Errors: Invalid (bad JID, limit 0 or over 1000), Store,
 *  Closed. Swift: `try client.history(peer:beforeSeq:limit:)`. */
- (nullable NSArray<CourierEntry *> *)historyWithPeer:(nullable NSString *)peer
                                            beforeSeq:(int64_t)beforeSeq
                                                limit:(NSUInteger)limit
                                                error:(NSError **)error
    NS_SWIFT_NAME(history(peer:beforeSeq:limit:));
/** courier_pending(): the outgoing messages no device has confirmed yet
 *  and the app did not cancel (Queued, Sent, Offline, Failed), oldest
 *  first: "sending" / "failed, tap to retry" at start-up. Reads SQLite.
 *  Swift: `try client.pending()`. */
- (nullable NSArray<CourierEntry *> *)pending:(NSError **)error;
/** courier_conversations(): one per peer, the most recent first, with
 *  unread counts. Reads SQLite. Swift: `try client.conversations()`. */
- (nullable NSArray<CourierConversation *> *)conversations:(NSError **)error;
/** courier_cancel(): give up on outgoing message `messageId` (Queued or
 *  Failed): never written again; Failed, permanent, reason "cancelled";
 *  leaves -pending:. Writes SQLite. Errors: NotFound, State (Sent or
 *  beyond: retract it; or already cancelled), Invalid, Store, Closed. */
- (BOOL)cancel:(NSString *)messageId error:(NSError **)error;
/** courier_retract(): retract outgoing message `messageId` (XEP-0424):
 *  stored and sent until the server has it; the history entry is marked
 *  retracted, its body and meta dropped; one not yet confirmed is also
 *  cancelled. The peer gets -courier:didRetract:from: / onRetract. Writes
 *  SQLite. Errors: NotFound (no outgoing message: only its sender
 *  retracts), State (already retracted, or deleted), Invalid, Store,
 *  Closed. */
- (BOOL)retract:(NSString *)messageId error:(NSError **)error;
/** courier_delete(): remove message `messageId` exchanged with `peer`
 *  (either direction) from this device's history; nothing is sent; the id
 *  stays known. The peer chooses its ids, so one may equal one of ours:
 *  then nothing is deleted and the error is State; name the direction
 *  with -deleteMessage:peer:direction:error:. Writes SQLite. Errors:
 *  NotFound, State (an entry in each direction), Invalid, Store, Closed.
 *  Swift: `try client.deleteMessage(id, peer: peer)`. */
- (BOOL)deleteMessage:(NSString *)messageId
                 peer:(NSString *)peer
                error:(NSError **)error;
/** courier_delete_entry(): as -deleteMessage:peer:error:, for the entry of
 *  `direction` only (an entry's `direction`); never State. Errors:
 *  NotFound, Invalid (also a direction that is no CourierDirection),
 *  Store, Closed. Swift: `try client.deleteMessage(id, peer: peer,
 *  direction: .in)`. */
- (BOOL)deleteMessage:(NSString *)messageId
                 peer:(NSString *)peer
            direction:(CourierDirection)direction
                error:(NSError **)error;
/** courier_confirm(): with appConfirms, incoming message `messageId` from
 *  `peer` is safely in the app's own database (until then it is handed
 *  again at every open). Again is harmless. Any thread, callbacks
 *  included. Writes SQLite (one UPDATE). Errors: NotFound, State
 *  (appConfirms is off), Invalid, Store, Closed. */
- (BOOL)confirm:(NSString *)messageId
           peer:(NSString *)peer
          error:(NSError **)error;
/** courier_erase(): erase this account's store (logout): every message,
 *  owed receipt and retraction and every mark; the file is rebuilt so no
 *  text is left in it. The client stays open with an empty store. It must
 *  be stopped (-stop:) and not driven by -runOnce:error:; not from a
 *  callback on the library's thread. Disk I/O: deletes, VACUUM (time in
 *  proportion to the store), a WAL checkpoint. Errors: State (started or
 *  driven), Store, Closed. Swift: `try client.erase()`. */
- (BOOL)erase:(NSError **)error;

@end

NS_ASSUME_NONNULL_END
