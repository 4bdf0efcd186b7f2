/* SPDX-License-Identifier: MIT */
/**
 * @file courier.h
 * libcourier: reliable 1:1 XMPP chat messages for mobile apps.
 *
 * Every outgoing message is written to SQLite before the send call returns,
 * tracked through its XEP-0022 events (offline / delivered / displayed) and
 * sent again until it is confirmed; incoming messages are handed to the app
 * exactly once. See docs/behaviour.md for the full behaviour and the reasons.
 *
 * Conventions (apply to every function below unless its comment says
 * otherwise):
 *  - Functions that can fail return `int`: COURIER_OK (0) or a negative
 *    COURIER_E* code. `courier_strerror()` names the code and
 *    `courier_last_error()` gives the detail, on the failing thread.
 *    A NULL handle gives COURIER_EINVAL. Any call that reads or writes the
 *    store may also give COURIER_ECORRUPT (SQLite met a damaged page), and
 *    any call that allocates COURIER_ENOMEM: the lists below do not always
 *    repeat these.
 *  - Strings passed in are borrowed for the call; the library copies what it
 *    keeps. Strings handed to callbacks are valid only during the callback.
 *    Output structs and buffers are the caller's; the strings the library
 *    returns are static (courier_last_error(): thread-local), never freed.
 *  - Every function may be called from any thread, from several at once,
 *    except that nothing may use a handle during or after its
 *    courier_close(). Callbacks run on the library's loop thread (the one
 *    courier_start() creates, or the caller of courier_run_once()) with no
 *    lock held, and may call back into the API; the one exception is
 *    courier_stop() on a handle without a loop thread, which runs what is
 *    still queued on the calling thread.
 *  - A call that returns an error never causes a callback about it.
 *
 * Threads, blocking and disk I/O at a glance (each function's comment has
 * the detail; see docs/behaviour.md §5, §7 and §10 for the reasons):
 *  - Never block, no disk: courier_network_changed() and
 *    courier_set_active() (any thread, a UI thread included),
 *    courier_config_init(), courier_display_status(),
 *    courier_state_name(), courier_strerror(), courier_last_error(),
 *    courier_version().
 *  - No disk I/O of their own: courier_start() (its loop thread does the
 *    work), courier_get_stats(), courier_get_link().
 *  - Read SQLite: courier_get_state(), courier_get_info(),
 *    courier_set_composing(), courier_history(), courier_pending(),
 *    courier_conversations().
 *  - Write and commit SQLite before returning: courier_send_text(),
 *    courier_send_media(), courier_send(), courier_mark_displayed(),
 *    courier_retry(), courier_cancel(), courier_retract(),
 *    courier_delete(), courier_delete_entry(), courier_confirm(),
 *    courier_erase() (which also rewrites the whole file: VACUUM).
 *  - Can take long: courier_sync() (up to its timeout),
 *    courier_push_enable() and courier_push_disable() (commit, then wait
 *    for the server's answer while online, up to ack_timeout_ms),
 *    courier_open() (opens and migrates the store; its check after an
 *    unclean close runs on a thread of its own), courier_stop() and
 *    courier_close() (wait for the loop to end after a goodbye of up to
 *    ~2 s, whatever the server does), courier_run_once() (a turn of the
 *    caller's loop).
 *  - The calls that touch the store, and courier_get_stats() and
 *    courier_get_link(), take the handle's lock: they can wait while the
 *    loop thread does the store work of one event (a commit included). The
 *    ones that read or write SQLite first commit what the loop's current
 *    turn has written so far. A commit may also run SQLite's automatic WAL
 *    checkpoint. A store that another connection holds locked makes a
 *    statement wait up to 5 s (SQLite's busy timeout), then fail with
 *    COURIER_ESTORE. Keep the calls that touch the disk off a UI thread.
 *  - Threads of the library's own, per handle: the loop thread of
 *    courier_start() (COURIER_RUN_ONCE_STACK_BYTES of stack), and a
 *    stall-guard thread from courier_open() that sleeps except while a
 *    connection is being set up (TLS handshake, login), and, after an
 *    unclean close only, the store-check thread from courier_open() (a
 *    read-only SQLite connection running PRAGMA quick_check; it ends by
 *    itself, and courier_close() and courier_erase() stop it, interrupted
 *    within milliseconds, and join it). courier_check_status() never
 *    blocks.
 */
#ifndef COURIER_H
#define COURIER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define COURIER_VERSION_MAJOR 0
#define COURIER_VERSION_MINOR 2
#define COURIER_VERSION_PATCH 0
#define COURIER_VERSION "0.2.0"

#if defined(_WIN32)
#define COURIER_API
#elif defined(__GNUC__)
#define COURIER_API __attribute__((visibility("default")))
#else
#define COURIER_API
#endif

/** Size of an id buffer, including the terminating NUL. */
#define COURIER_ID_MAX 128
/** Size of a JID buffer (bare JID), including the terminating NUL. */
#define COURIER_JID_MAX 512
/** Default upper bound on a message body, in bytes (configurable). */
#define COURIER_BODY_MAX_DEFAULT (64 * 1024)
/**
 * Version stamped into courier_config_t by courier_config_init(). It tells
 * the library which members the caller's structs have: 1 = up to
 * max_body_bytes in courier_config_t and up to on_log in
 * courier_callbacks_t (a program built against the 0.1 header);
 * 2 = app_confirms, ca_path and on_retract, on_certificate appended
 * (docs/behaviour.md §9, §10).
 */
#define COURIER_CONFIG_VERSION 2
/** Size of a meta buffer: at most 4 KiB of app data, plus the NUL. */
#define COURIER_META_MAX (4096 + 1)

/** Error codes. Values are ABI: never renumbered. */
typedef enum {
    COURIER_OK = 0,
    COURIER_EINVAL = -1,    /**< bad argument or config: the caller's bug */
    COURIER_ENOMEM = -2,    /**< out of memory */
    COURIER_ENOTFOUND = -3, /**< no message with that id */
    COURIER_ESTATE = -4,    /**< not allowed now (e.g. retry of a message
                                 that is not FAILED) */
    COURIER_ENOTCONN = -5,  /**< needs the link (e.g. composing offline) */
    COURIER_ESTORE = -6,    /**< SQLite failed (disk full, I/O); nothing was
                                 half-written */
    COURIER_ECORRUPT = -7,  /**< store unreadable or of a newer schema */
    COURIER_ECLOSED = -8,   /**< handle stopping or closed */
    COURIER_EAUTH = -9,     /**< the server refused the login */
    COURIER_ENOTSUP = -10,  /**< not available in this build */
    COURIER_ETIMEDOUT = -11, /**< courier_sync, courier_push_*: its time
                                  ran out first */
    COURIER_EREFUSED = -12  /**< the server answered a request with an
                                 error (courier_push_*; the condition is in
                                 courier_last_error()) */
} courier_error_t;

/** Outgoing message states (behaviour.md §1). Values are ABI. */
typedef enum {
    COURIER_QUEUED = 0,
    COURIER_SENT = 1,
    COURIER_OFFLINE = 2,
    COURIER_DELIVERED = 3,
    COURIER_DISPLAYED = 4,
    COURIER_FAILED = 5
} courier_state_t;

/** Message kinds. Values are ABI. */
typedef enum {
    COURIER_TEXT = 0,
    COURIER_VOICE = 1,
    COURIER_IMAGE = 2
} courier_kind_t;

/** State of the link to the server. Values are ABI. */
typedef enum {
    COURIER_LINK_OFFLINE = 0,
    COURIER_LINK_CONNECTING = 1,
    COURIER_LINK_ONLINE = 2
} courier_link_t;

/** Levels passed to on_log. */
typedef enum {
    COURIER_LOG_DEBUG = 0,
    COURIER_LOG_INFO = 1,
    COURIER_LOG_WARN = 2,
    COURIER_LOG_ERROR = 3
} courier_log_level_t;

/**
 * Account configuration. Fill it with courier_config_init(), then set the
 * fields you need. courier_open() copies everything; the struct and its
 * strings may be freed as soon as it returns.
 */
typedef struct {
    const char *jid, *password;      /**< required */
    const char *host;                /**< optional; else from the JID (SRV) */
    unsigned short port;             /**< 0 = default */
    const char *db_path;             /**< required: the SQLite file */
    const char *ca_file;             /**< CA bundle (PEM file) for TLS:
                                          a private CA; a phone app hands
                                          the public ones to
                                          on_certificate (see TLS below) */
    int allow_plaintext;             /**< 0 = TLS required */
    unsigned ack_timeout_ms, resend_grace_ms;
    unsigned ping_interval_ms, ping_timeout_ms;
    unsigned reconnect_min_ms, reconnect_max_ms;
    unsigned max_in_flight;          /**< default 100, at most 2048 */
    uint64_t max_age_ms;             /**< default 0 = never expire */
    int implicit_read;               /**< default 1 */
    /* Additions to behaviour.md §7 (appended; courier_config_init sets them). */
    unsigned version;                /**< COURIER_CONFIG_VERSION */
    int synchronous_full;            /**< 1 = SQLite synchronous=FULL */
    unsigned max_body_bytes;         /**< default COURIER_BODY_MAX_DEFAULT */
    /* Version 2 (behaviour.md §9). */
    int app_confirms;                /**< 1: an incoming message counts as
                                          handed only at courier_confirm();
                                          default 0: when on_message
                                          returns */
    const char *ca_path;             /**< optional: a directory of hashed
                                          CA files (OpenSSL's c_rehash
                                          layout), trusted as ca_file is
                                          (behaviour.md §10) */
} courier_config_t;

/** "Why is this message where it is" (courier_get_info). */
typedef struct {
    courier_state_t state;
    unsigned attempts;               /**< times written to a stream */
    int64_t created_ms, last_sent_ms, last_change_ms; /**< Unix ms */
    int permanent;                   /**< FAILED and never resent by itself */
    char reason[64];                 /**< e.g. "ack-timeout", "link-lost",
                                          "expired", the error condition */
} courier_info_t;

/** A message handed to on_message. Valid only during the callback. */
typedef struct {
    const char *id, *peer;           /**< peer = bare JID (lower case) */
    courier_kind_t kind;
    const char *body;                /**< text, or the media URL/description */
    int64_t timestamp_ms;            /**< original send time (Unix ms) */
    /* Appended (behaviour.md §9); a program built against the 0.1 header
     * never reads it. */
    const char *meta;                /**< app data sent with the message,
                                          "" if none */
} courier_message_t;

/**
 * Callbacks. Copied by courier_open(); a NULL member means "not interested".
 * `ud` is the pointer given to courier_open(), never looked into.
 * on_state fires after the new state is durable, once per transition, in
 * order. on_message fires exactly once ever per (peer, id), with one
 * exception no library can close alone: a process killed while on_message
 * runs (before it returns) gets that message again at the next open; apps
 * that store messages themselves should key them by (peer, id), or set
 * `app_confirms` and call courier_confirm() once the message is in their
 * own database (behaviour.md §9). Callbacks must not block.
 * Members after on_log are read only from a config of version 2 or later
 * (see COURIER_CONFIG_VERSION): a program built against an older header
 * passes a shorter struct, and they count as NULL.
 */
typedef struct {
    void (*on_state)(void *ud, const char *id, const char *peer,
                     courier_state_t state);
    void (*on_message)(void *ud, const courier_message_t *msg);
    void (*on_link)(void *ud, courier_link_t link);
    void (*on_composing)(void *ud, const char *peer, int composing);
    void (*on_log)(void *ud, int level, const char *line);
    /* Version 2 (behaviour.md §9). */
    /** `peer` retracted its message `id` (XEP-0424): the history entry is
     *  marked retracted and its body and meta are gone. Owed like
     *  on_message: it counts as handed when this returns (with
     *  `app_confirms`: at a courier_confirm(peer, id) after this call),
     *  and a process that ends before that gets it again at the next open.
     *  Never for one retracted before it arrived; it may name a message
     *  on_message never gave this process (stored, then retracted before
     *  its hand-over: it is then never handed): ignore an unknown id. */
    void (*on_retract)(void *ud, const char *peer, const char *id);
    /** Platform trust (behaviour.md §10): OpenSSL could not verify the
     *  server's certificate with its default paths, `ca_file` and
     *  `ca_path`; the app decides with the platform's trust store
     *  (Android's TrustManager, iOS's SecTrust). `host` is the JID's
     *  domain the certificate must match; `pem_chain` the leaf and the
     *  certificates OpenSSL reported, as PEM, leaf first: not always the
     *  whole chain the server sent (see TLS below). Return non-zero to
     *  accept.
     *  A certificate whose name does not match `host` is refused by the
     *  library before this is asked (X509_check_host), whatever the app
     *  would say. NULL: an unverifiable certificate is refused.
     *  Runs on the loop thread during the login, before any credential is
     *  sent; the link waits for it (and, through libstrophe's lock, the
     *  other handles' loops too): answer quickly, and within
     *  `ping_timeout_ms`, after which the stall guard cuts the connection
     *  and the next attempt asks again. Must not block on the app's UI
     *  thread, and must not call courier_stop(), courier_close(),
     *  courier_sync() or courier_erase() on any handle: it runs inside
     *  libstrophe's process-wide lock, which those wait for. */
    int (*on_certificate)(void *ud, const char *host, const char *pem_chain);
} courier_callbacks_t;

typedef struct courier courier_t;     /**< one account */

/**
 * Fill `cfg` (the caller's) with the defaults of behaviour.md §2/§4 (ack
 * 30 s, grace 10 s, ping 30 s / 33 s, reconnect 1 s..60 s, 100 in flight,
 * no expiry, implicit read on, app_confirms off) and stamp its version.
 * Strings are set to NULL. NULL-safe. Any thread; allocates nothing, no
 * I/O, never blocks.
 * In this header courier_config_init() is a static inline function that
 * calls courier_config_init_size(cfg, sizeof *cfg), so the library knows
 * how large the caller's struct is; C, Objective-C and Swift (which imports
 * static inline functions) all get it. The exported symbol of the same
 * name, which programs built against the 0.1 header call, fills only the
 * version-1 members (it cannot know the struct is larger). A binding that
 * calls into the shared library by symbol (an FFI written by hand) calls
 * courier_config_init_size() with the struct's size.
 */
#ifndef COURIER_BUILDING_LIBRARY
static inline void courier_config_init(courier_config_t *cfg);
#else
COURIER_API void courier_config_init(courier_config_t *cfg);
#endif

/**
 * As courier_config_init(), for a struct of `size` bytes: the version
 * stamped is the newest whose members fit (sizeof(courier_config_t) of
 * this header: COURIER_CONFIG_VERSION). NULL-safe; a `size` smaller than a
 * version-1 config fills nothing.
 */
COURIER_API void courier_config_init_size(courier_config_t *cfg,
                                          size_t size);
#ifndef COURIER_BUILDING_LIBRARY
static inline void courier_config_init(courier_config_t *cfg)
{
    courier_config_init_size(cfg, sizeof *cfg);
}
#endif

/**
 * Open an account handle: validate `cfg`, open (or create, mode 0600) and
 * migrate the store, load the unconfirmed outbox, and queue the incoming
 * messages a previous run stored but never handed over (on_message gets
 * them at the first loop turn). No network activity until courier_start()
 * or courier_run_once().
 * `cfg` and `cb` (may be NULL) are copied; `ud` is passed back to callbacks
 * and must stay valid until courier_close() returns. The handle in `*out`
 * is the caller's, freed by courier_close().
 * Any thread. Blocks for its disk I/O: opens the SQLite file, switches it to
 * WAL, runs the schema migrations an older store needs (once; one that
 * copies a table or rebuilds an index takes time in proportion to it), and
 * reads the unsettled outbox and the unhanded inbox. After an unclean close
 * (the file's -wal left behind: a crash, or another connection still open)
 * SQLite recovers the WAL here (time in proportion to the WAL, not to the
 * store), and the check of every page that is then owed runs on a thread
 * of the library's own, after open returns (courier_check_status(),
 * docs/behaviour.md §10). Also starts the handle's stall-guard thread.
 * One handle per store file at a time, in one process: two handles on one
 * file would each resend its outbox and hand its inbox, and log in as the
 * same account. The library does not lock the file for the handle's life
 * (a lock held while iOS suspends the app in a shared container gets the
 * app killed), so an app with a second process (an iOS notification
 * service extension, an Android service in its own process) must not
 * open the store there while the main process has it open.
 * @return COURIER_OK and `*out` set; or COURIER_EINVAL (`out` or `cfg`
 *         NULL, a config not from courier_config_init(), a bad field, named
 *         in courier_last_error()), COURIER_ENOMEM, COURIER_ESTORE (cannot
 *         open or write the file, or it stayed locked), COURIER_ECORRUPT (not
 *         a store, written by a newer version, or a damaged page among
 *         those open reads; damage elsewhere is the check's to find). On
 *         error `*out` is NULL.
 */
COURIER_API int courier_open(courier_t **out, const courier_config_t *cfg,
                             const courier_callbacks_t *cb, void *ud);

/**
 * Stop if needed (as courier_stop(), goodbye included), then free the
 * handle. Once it is called no further callback is dispatched (one under
 * way on the loop thread is waited for); after it returns none runs and
 * `ud` is not touched.
 * NULL-safe. Stored messages are kept; messages not yet handed to
 * on_message are handed at the next open.
 * Any thread, but nothing else may be using `c`, or use it afterwards;
 * one exception: a courier_sync() waiting on another thread (an iOS
 * background task's expiry handler closing the handle) returns
 * COURIER_ECLOSED within milliseconds, and the handle is freed after it
 * has returned. From a callback it returns at once: the handle is freed on the loop
 * thread after the callback returns (with courier_run_once: before that call
 * returns COURIER_ECLOSED), and calls on it meanwhile give COURIER_ECLOSED.
 * Blocks as courier_stop() does, then joins a short-lived thread that frees
 * libstrophe's state. A store check under way (courier_check_status()) is
 * interrupted and its thread joined (milliseconds); it stays owed: the
 * -wal file is kept and the next open checks again. Disk I/O: the stop's
 * commits, then closing the store, where SQLite checkpoints the WAL into
 * the database file.
 */
COURIER_API void courier_close(courier_t *c);

/**
 * Connect and run the loop on a thread of the library's own (with
 * COURIER_RUN_ONCE_STACK_BYTES of stack); reconnects by itself
 * (behaviour.md §4) until courier_stop(). After courier_stop() it may be
 * called again on the same handle (that is also how a handle whose login
 * was refused tries again).
 * Any thread. Returns without waiting for the link: the calling thread does
 * no network or disk I/O (the loop thread does both). It waits only for a
 * courier_start()/courier_stop() under way on another thread, or for a loop
 * stopped from its own callback to finish (as courier_stop() waits).
 * @return COURIER_OK, COURIER_ESTATE (already started, or courier_run_once
 *         drives the handle: courier_stop() first), COURIER_ENOMEM (no
 *         thread), COURIER_ECLOSED, COURIER_EINVAL.
 */
COURIER_API int courier_start(courier_t *c);

/**
 * Disconnect and end the loop: the loop thread finishes its current turn
 * (callbacks included), acknowledges what it stored (XEP-0198), closes the
 * stream
 * (waits up to 1.5 s for the server, then cuts the socket and waits up to
 * 0.5 s more), runs the callbacks this causes, and is joined. Stored
 * messages are kept; those not yet confirmed go out again at the next
 * start. Returns COURIER_OK when there is nothing to stop.
 * Any thread. From a callback of courier_start()'s loop it returns at once
 * and the loop ends after the callback returns. With courier_run_once (its
 * callbacks included), or on a handle never started, the link is closed on
 * the calling thread, which then runs the callbacks still queued.
 * Blocks up to ~2 s for the goodbye whatever the server does (docs/
 * behaviour.md §10): a server that stalls the TLS handshake or never
 * answers is cut, not waited for, and so is another handle's handshake
 * stalled for 250 ms (it holds libstrophe's process-wide lock; that
 * handle retries). Beyond that it waits only for work on this machine:
 * the loop's current turn (its SQLite commit, a callback that is running,
 * another handle's on_certificate) and libstrophe's name lookup when a connect is just
 * resolving the server's name (synchronous, as long as the system
 * resolver takes; not with `host` set to an address). Disk I/O: commits
 * to SQLite (the turn's writes, the stop, the states the lost link
 * changes).
 * @return COURIER_OK, COURIER_ESTATE (another thread is inside
 *         courier_run_once), COURIER_ECLOSED, COURIER_EINVAL.
 */
COURIER_API int courier_stop(courier_t *c);

/**
 * Drive the library from the caller's own loop instead of courier_start():
 * the first call starts connecting; each call runs due timers, the socket,
 * pending commands and callbacks, waiting at most `timeout_ms` for
 * something to happen (0: do not wait; while connecting, at most 10 ms).
 * Callbacks run on the calling thread. One thread at a time, with
 * COURIER_RUN_ONCE_STACK_BYTES of stack; courier_stop() closes the link.
 * Beyond that wait it blocks for the work it finds: SQLite reads and one
 * commit per turn (disk I/O), the callbacks themselves, and while
 * connecting libstrophe's name lookup (synchronous) and TLS handshake (cut
 * after ping_timeout_ms by the stall guard).
 * Signals: SIGPIPE (a write on a socket that was reset or cut) is blocked
 * on the calling thread for the length of the call and one raised
 * meanwhile is discarded; the thread's mask is then restored. The library
 * installs no signal handler and changes no process-wide setting; its own
 * threads block SIGPIPE for their life.
 * @return COURIER_OK, COURIER_ESTATE (courier_start() owns the loop,
 *         another thread is inside, or poll() failed), COURIER_ECLOSED
 *         (closed from one of its callbacks: the handle is gone),
 *         COURIER_EINVAL.
 */
COURIER_API int courier_run_once(courier_t *c, unsigned timeout_ms);

/**
 * Store a text message for `to` (a bare JID) and queue it; returns once it
 * is durable in SQLite (behaviour.md §5). While offline it is reported
 * FAILED and goes out by itself on reconnect. The new id is written to
 * `id_out` (the caller's buffer; may be NULL); on_state reports the
 * message's states on the loop thread once it is committed.
 * Any thread, callbacks included. Disk I/O: an INSERT and a COMMIT, which it
 * waits for (an fsync per commit with synchronous_full). Sends from several
 * threads at once share commits (each still returns only once its own
 * message is committed), so a call may also wait for the group before it.
 * No network I/O: the loop thread writes the stanza.
 * @return COURIER_OK, COURIER_EINVAL (bad JID, empty, oversized or non
 *         UTF-8 body, or a control character XML cannot carry),
 *         COURIER_ESTORE (nothing stored), COURIER_ECLOSED.
 */
COURIER_API int courier_send_text(courier_t *c, const char *to,
                                  const char *body,
                                  char id_out[COURIER_ID_MAX]);

/**
 * Store a voice or image message whose id is `media_id` (so every resend is
 * the same message), with `body` the media URL or description. Threads,
 * blocking and disk I/O as courier_send_text() (plus a read of the id).
 * @return as courier_send_text(), plus COURIER_EINVAL for a kind that is not
 *         VOICE/IMAGE or an invalid id (NULL, empty, over COURIER_ID_MAX - 1
 *         bytes, not UTF-8 or with controls), and COURIER_ESTATE when a
 *         message with that id already exists.
 */
COURIER_API int courier_send_media(courier_t *c, const char *to,
                                   courier_kind_t kind, const char *media_id,
                                   const char *body);

/**
 * Tell `peer` that message `id` from them was shown (if the sender asked
 * for a displayed event, in the form it understands best: behaviour.md §3),
 * and remember it so a later duplicate gets it again. Reliable: the owed
 * event is stored until the server has it.
 * Any thread. Disk I/O: one transaction (reads the message, marks it,
 * stores the owed event), committed before it returns. The stanza leaves
 * from the loop thread, now or after the next login.
 * @return COURIER_OK, COURIER_EINVAL (bad JID or id), COURIER_ENOTFOUND (no
 *         such incoming message), COURIER_ESTORE, COURIER_ECLOSED.
 */
COURIER_API int courier_mark_displayed(courier_t *c, const char *peer,
                                       const char *id);

/**
 * Send a composing (on != 0) or active (on == 0) notification to `peer`.
 * Not stored: a lost one is harmless. In background (courier_set_active
 * 0) nothing is sent and it returns COURIER_OK.
 * Any thread. Disk I/O: reads SQLite (the last message from `peer`, whose
 * id XEP-0022 composing names); writes nothing. The stanza leaves from the
 * loop thread.
 * @return COURIER_OK, COURIER_EINVAL, COURIER_ENOTCONN (offline),
 *         COURIER_ECLOSED.
 */
COURIER_API int courier_set_composing(courier_t *c, const char *peer,
                                      int composing);

/**
 * Send a FAILED message again at once (or, while offline, make it go out on
 * reconnect), clearing a permanent failure.
 * Any thread. Disk I/O: one transaction (reads the message, updates it),
 * committed before it returns. The stanza leaves from the loop thread.
 * @return COURIER_OK, COURIER_EINVAL, COURIER_ENOTFOUND, COURIER_ESTATE
 *         (the message is not FAILED), COURIER_ESTORE, COURIER_ECLOSED.
 */
COURIER_API int courier_retry(courier_t *c, const char *id);

/**
 * Read the current state of outgoing message `id` from the store into
 * `*out` (the caller's; untouched on error).
 * Any thread. Disk I/O: one SQLite read; no network.
 * @return COURIER_OK, COURIER_EINVAL (bad id, `out` NULL),
 *         COURIER_ENOTFOUND, COURIER_ESTORE, COURIER_ECLOSED.
 */
COURIER_API int courier_get_state(courier_t *c, const char *id,
                                  courier_state_t *out);

/**
 * Fill `*out` (the caller's; untouched on error) with the state, attempts,
 * times and reason of outgoing message `id`. Threads, blocking and disk
 * I/O as courier_get_state(): one SQLite read.
 * @return as courier_get_state().
 */
COURIER_API int courier_get_info(courier_t *c, const char *id,
                                 courier_info_t *out);

/**
 * What the reliability rules did since courier_open() (an addition to
 * behaviour.md §7; in memory, not persisted). The resend counters tell
 * apart the two phases of the product team's note (behaviour.md, "Why
 * the library exists"): `resent_reconnect` is phase 2 (earliest delivery, the
 * moment the link is back), `resent_peer` is phase 1 (eventual delivery:
 * the peer wrote, so what it has not confirmed goes again).
 */
typedef struct courier_stats {
    uint64_t sent;             /**< messages written the first time */
    uint64_t resent_reconnect; /**< written again after a reconnect */
    uint64_t resent_peer;      /**< written again because the peer wrote */
    uint64_t resent_retry;     /**< written again by courier_retry() */
    uint64_t received;         /**< incoming messages handed to the app */
    uint64_t duplicates;       /**< incoming duplicates dropped */
    uint64_t links_up;         /**< sessions that became ready */
} courier_stats_t;

/**
 * Fill `*out` (the caller's) with the handle's counters. Any thread. In
 * memory: no disk I/O, but it takes the handle's lock (see the conventions).
 * @return COURIER_OK, COURIER_EINVAL (`out` NULL), COURIER_ECLOSED.
 */
COURIER_API int courier_get_stats(courier_t *c, courier_stats_t *out);

/**
 * Current link state (an addition to behaviour.md §7), into `*out` (the
 * caller's). Any thread. In memory: no disk I/O, but it takes the handle's
 * lock (see the conventions).
 * @return COURIER_OK; COURIER_EAUTH when the server refused the login (then
 *         `*out` is COURIER_LINK_OFFLINE and the library does not retry
 *         until the next courier_start()); COURIER_EINVAL, COURIER_ECLOSED.
 */
COURIER_API int courier_get_link(courier_t *c, courier_link_t *out);

/**
 * The display mapping of the product team's note (behaviour.md §1):
 * "sending" (QUEUED, SENT), "delivered"
 * (OFFLINE, DELIVERED), "read" (DISPLAYED), "failed" (FAILED); "unknown"
 * for any other value. Static string, never NULL. Any thread; no I/O.
 */
COURIER_API const char *courier_display_status(courier_state_t s);

/** Name of state `s` ("QUEUED"...); "UNKNOWN" otherwise. Static, never
 *  NULL. Any thread; no I/O. */
COURIER_API const char *courier_state_name(courier_state_t s);

/** Static text for any int code; never NULL. Any thread; no I/O. */
COURIER_API const char *courier_strerror(int code);

/**
 * Detail of this thread's last error: set by every call that returned a
 * negative code, in a thread-local buffer (valid until the next failing
 * call on this thread; not to be freed). "" when there is none. Never
 * NULL. Read it on the thread whose call failed; no I/O.
 */
COURIER_API const char *courier_last_error(void);

/** Library version string, e.g. "0.2.0". Static; any thread; no I/O. */
COURIER_API const char *courier_version(void);

/**
 * Tell the library that the device's connectivity changed (behaviour.md
 * §10): call it from Android's ConnectivityManager.NetworkCallback
 * (onAvailable, onLost) or iOS's NWPathMonitor path update handler. A link
 * that is up is probed at once with a ping, and cut if the ping goes
 * unanswered for `ping_timeout_ms` (a socket left on a network that is
 * gone never answers); a link that is down reconnects now instead of
 * waiting out its backoff, which starts over from `reconnect_min_ms`; a
 * connect attempt under way runs on, and if it fails the next one goes at
 * once. The backoff is skipped at most once per skip period (doubling from
 * `reconnect_min_ms` to `reconnect_max_ms` until a link holds 10 s), so
 * calls in a loop make no reconnect storm. On a handle that is not started, or whose login the server
 * refused, it does nothing.
 * Any thread, callbacks included. Never blocks: it stores nothing, does
 * no disk or network I/O and takes no lock that is held across I/O or
 * callbacks; it marks the change and wakes the loop, which acts on it at
 * its next turn (a courier_run_once waiting on another thread is woken;
 * the next call acts on it before it waits).
 * Calls that come faster than the loop turns count as one.
 * @return COURIER_OK, COURIER_EINVAL (`c` NULL), COURIER_ECLOSED (closed
 *         from a callback).
 */
COURIER_API int courier_network_changed(courier_t *c);

/**
 * For a run woken by a push or a background task (behaviour.md §10):
 * connect if needed (courier_start() on a handle not started; a link that
 * is down reconnects now instead of waiting out its backoff), send what is
 * owed, receive what is waiting, and return once nothing is left in
 * flight: every pending message written and acknowledged by the server
 * (SENT or beyond; what waits for the peer's receipt is the server's
 * business now), every owed receipt and retraction taken by the server,
 * and everything the server had waiting for this account (offline
 * storage, held messages: a round trip after the login proves it sent
 * them all) stored and handed to on_message (returned). Messages that
 * keep arriving meanwhile are handled too but not waited for.
 * Then the link stays as it is: started and connected (courier_stop() to
 * close it, e.g. before the OS suspends the app), and it returns.
 * Any thread but the loop's (not from a callback). Blocks up to
 * `timeout_ms` (checking every few ms; the loop thread does the network
 * and disk work), plus, first, the end of a courier_start(),
 * courier_stop() or courier_erase() under way on another thread. Not with courier_run_once: that handle gives
 * COURIER_ESTATE.
 * @return COURIER_OK; COURIER_ETIMEDOUT (something was still in flight at
 *         `timeout_ms`: a server that does not answer, no network; the
 *         loop goes on), COURIER_EAUTH (the server refused the login),
 *         COURIER_ESTATE (driven by courier_run_once, or called from a
 *         callback), COURIER_ECLOSED (closed, or stopped meanwhile by
 *         another thread or a callback: courier_close() of the handle on
 *         another thread waits for this call to return before freeing it),
 *         COURIER_ENOMEM (no loop thread), COURIER_EINVAL.
 */
COURIER_API int courier_sync(courier_t *c, unsigned timeout_ms);

/**
 * The app went to the background (`active` 0) or came back (non-zero)
 * (behaviour.md §10): call it from Android's ProcessLifecycleOwner
 * (onStop / onStart) or iOS's scene phase. When the server's stream
 * features offer XEP-0352 Client State Indication the library sends
 * <inactive/> or <active/>, now if the link is up, and again after every
 * login while in background (remembered across reconnects, in memory for
 * the handle's life; a new handle starts in foreground). The server may
 * then hold back presence and chat states; messages still arrive. In
 * background courier_set_composing(peer, 1) sends nothing (and returns
 * COURIER_OK); (peer, 0) still does, so a "typing" shown at the peer
 * ends. A server without CSI is told nothing.
 * Any thread. Never blocks, no disk I/O, no lock held across I/O: it
 * marks the state and wakes the loop, which sends it at its next turn.
 * @return COURIER_OK, COURIER_EINVAL (`c` NULL), COURIER_ECLOSED.
 */
COURIER_API int courier_set_active(courier_t *c, int active);

/**
 * Push (XEP-0357, behaviour.md §10): ask the server to notify the app
 * server `service_jid` (a JID, e.g. "push.example.com"; at most
 * COURIER_JID_MAX - 1 bytes) on pubsub node `node` (1..1023 bytes, e.g.
 * the device token the app server gave) while this account has no
 * session online, so that the app server can wake the app (APNs, FCM),
 * which then calls courier_sync(). `secret` (1..1023 bytes, or NULL for
 * none) goes in the request's XEP-0004 publish-options form (FORM_TYPE
 * http://jabber.org/protocol/pubsub#publish-options, field "secret"),
 * for the app server to check. The strings must be UTF-8 text XML can
 * carry; all three are copied.
 * The registration is remembered in the store (it survives close and
 * open) and written again after every login (after stream management and
 * initial presence), until courier_push_disable(). One per handle:
 * enabling another service or node replaces it, and the server is asked
 * to disable the old one (now, or at the next login). A server's refusal
 * does not forget it: it is asked again at each login, and each answer is
 * reported through on_log.
 * While the link is up the call waits for the server's answer, up to
 * `ack_timeout_ms` of the config. Offline (not started, connecting,
 * between links) it returns COURIER_OK once the registration is stored:
 * it is written at the next login and the answer goes to on_log; so too
 * if the link drops while the call waits. It never waits from a
 * callback (the loop thread) or on a handle driven by courier_run_once:
 * there it returns COURIER_OK once stored, the answer going to on_log.
 * Any thread. Disk I/O: one transaction, committed before it waits or
 * returns; no network I/O on the calling thread (the loop writes the
 * request). Blocks up to `ack_timeout_ms` while online.
 * @return COURIER_OK (stored; accepted by the server, or to be written at
 *         the next login); COURIER_EINVAL (`service_jid` not a JID, `node`
 *         or `secret` empty, too long, not UTF-8 or with a control
 *         character; named in courier_last_error()), COURIER_EREFUSED (the
 *         server answered with an error, e.g. feature-not-implemented from
 *         a server without XEP-0357; the condition and text are in
 *         courier_last_error(); still stored), COURIER_ETIMEDOUT (online,
 *         but no answer in time; still stored), COURIER_ESTORE,
 *         COURIER_ECLOSED (closed, or courier_close() on another thread
 *         while this call waited: it returns at once, still stored, and
 *         the handle is freed after it has returned).
 * Two calls that overlap (from two threads) each get the answer to the
 * newest change: the earlier one may report the later one's refusal.
 * The answer counts only from the server (no `from`, the domain or the
 * account's bare JID), never from another device of the account.
 */
COURIER_API int courier_push_enable(courier_t *c, const char *service_jid,
                                    const char *node, const char *secret);

/**
 * Stop push (behaviour.md §10): forget the registration of
 * courier_push_enable() and ask the server to disable it (XEP-0357
 * <disable/> with its service and node). The disable is owed in the store
 * until the server answers it: offline it is written at the next login.
 * Nothing remembered: COURIER_OK, nothing sent. Call it while online
 * before courier_erase() at logout: erase forgets the registration
 * without telling the server.
 * Threads, blocking, waiting and disk I/O as courier_push_enable().
 * @return COURIER_OK (forgotten; disabled by the server, which may also
 *         say it held no such registration, or to be disabled at the next
 *         login); COURIER_EREFUSED (the server answered with another
 *         error; forgotten all the same), COURIER_ETIMEDOUT (online, no
 *         answer in time: owed, asked again at the next login),
 *         COURIER_ESTORE, COURIER_ECLOSED, COURIER_EINVAL.
 */
COURIER_API int courier_push_disable(courier_t *c);

/* ---- the app's data contract (behaviour.md §9) ---------------------- */

/** Direction of a history entry. Values are ABI. */
typedef enum { COURIER_DIR_OUT = 0, COURIER_DIR_IN = 1 } courier_dir_t;

/** One message of the history, as the store keeps it. Strings are valid
 *  only during the callback that receives it. */
typedef struct {
    int64_t seq;                 /**< this account's history order: a new
                                      entry gets a larger seq; the paging
                                      cursor */
    courier_dir_t dir;
    const char *id, *peer;       /**< peer = the other side's bare JID */
    courier_kind_t kind;
    const char *body;            /**< "" once retracted */
    const char *meta;            /**< app data sent with the message, "" if
                                      none (and once retracted) */
    courier_state_t state;       /**< OUT: its state; IN: DELIVERED, or
                                      DISPLAYED once the app marked it or a
                                      later one of the peer's */
    int64_t timestamp_ms;        /**< OUT: created; IN: the sender's time */
    int retracted;               /**< its sender retracted it (XEP-0424) */
} courier_entry_t;

/** Receives one entry; return non-zero to stop the walk (the call then
 *  returns that value). */
typedef int (*courier_entry_fn)(void *ud, const courier_entry_t *e);

/** One conversation (courier_conversations). */
typedef struct {
    const char *peer;
    int64_t last_seq, last_ms;   /**< the newest entry with this peer */
    unsigned unread;             /**< incoming not marked displayed: those
                                      after the newest one marked (marking a
                                      message marks the earlier ones, as
                                      XEP-0333 does), retracted ones not
                                      counted */
} courier_conversation_t;

/** Receives one conversation; non-zero stops the walk (and is returned). */
typedef int (*courier_conversation_fn)(void *ud,
                                       const courier_conversation_t *c);

/** What courier_send() sends. */
typedef struct {
    const char *to;              /**< bare JID */
    courier_kind_t kind;
    const char *body;            /**< text, or the media URL/description */
    const char *id;              /**< optional: the app's own id (NULL: one
                                      is made); VOICE/IMAGE: the media id
                                      (required) */
    const char *meta;            /**< optional app data (UTF-8, at most
                                      4 KiB: e.g. voice length, image size,
                                      reply-to), delivered with the
                                      message */
} courier_outgoing_t;

/**
 * The general send: store message `m` and queue it; returns once it is
 * durable (behaviour.md §5, §9). With `m->id` set, an id that already names
 * a message (in any state, deleted ones included) gives COURIER_ESTATE and
 * changes nothing, so an app can write its own row first, send with the
 * same id, and repeat the send after a crash without doubling the message.
 * `meta` reaches the peer's on_message (courier_message_t.meta) and both
 * sides' history. The id is written to `id_out` (may be NULL).
 * Threads, blocking and disk I/O as courier_send_text().
 * @return COURIER_OK; COURIER_EINVAL (`m` NULL, bad JID, body or kind, an
 *         invalid id, VOICE/IMAGE without an id, meta over 4 KiB, not
 *         UTF-8 or with a control character XML cannot carry),
 *         COURIER_ESTATE (the id exists), COURIER_ESTORE, COURIER_ECLOSED.
 */
COURIER_API int courier_send(courier_t *c, const courier_outgoing_t *m,
                             char id_out[COURIER_ID_MAX]);

/**
 * Walk the history with `peer` (NULL: every peer), newest first: the
 * entries whose seq < `before_seq` (0: from the newest), at most `limit`
 * (1..1000). Deleted entries are left out. Pass the smallest seq of a page
 * as the next page's `before_seq`. A page costs the same whatever the
 * size of the store (index walks only).
 * `fn` runs on the calling thread, with no lock held: it may call the API.
 * Entries read in one go (in batches, each a consistent snapshot); one
 * written meanwhile has a larger seq than any of them.
 * Any thread. Disk I/O: SQLite reads.
 * @return COURIER_OK, the non-zero value `fn` returned, COURIER_EINVAL
 *         (`fn` NULL, bad JID, limit 0 or over 1000), COURIER_ESTORE,
 *         COURIER_ECLOSED.
 */
COURIER_API int courier_history(courier_t *c, const char *peer,
                                int64_t before_seq, unsigned limit,
                                courier_entry_fn fn, void *ud);

/**
 * Walk the outgoing messages no device has confirmed yet (QUEUED, SENT,
 * OFFLINE, FAILED) and the app did not cancel, oldest first: what an app
 * shows as "sending" or "failed, tap to retry" at start-up. Threads and
 * I/O as courier_history().
 * @return COURIER_OK, `fn`'s non-zero value, COURIER_EINVAL, COURIER_ESTORE,
 *         COURIER_ECLOSED.
 */
COURIER_API int courier_pending(courier_t *c, courier_entry_fn fn, void *ud);

/**
 * Walk the conversations: one per peer with at least one entry, the most
 * recent first, with unread counts. Threads and I/O as courier_history()
 * (a few index seeks per peer).
 * @return as courier_pending().
 */
COURIER_API int courier_conversations(courier_t *c, courier_conversation_fn fn,
                                      void *ud);

/**
 * Give up on outgoing message `id` that is QUEUED or FAILED: it is never
 * written again (not on reconnect, peer activity or expiry),
 * courier_get_info() says FAILED, permanent, reason "cancelled", and it
 * leaves courier_pending(). on_state reports FAILED if it was not already.
 * A copy already on its way that the server or the peer then confirms
 * still moves it on (SENT, DELIVERED...): the app learns the truth.
 * Any thread. Disk I/O: one transaction, committed before it returns.
 * @return COURIER_OK; COURIER_ENOTFOUND (no outgoing message `id`),
 *         COURIER_ESTATE (SENT or beyond: the server has it, use
 *         courier_retract(); or already cancelled), COURIER_EINVAL,
 *         COURIER_ESTORE, COURIER_ECLOSED.
 */
COURIER_API int courier_cancel(courier_t *c, const char *id);

/**
 * Retract outgoing message `id` (XEP-0424, with a fallback body for
 * clients that do not know it): the retraction is stored and sent until
 * the server has it (like a receipt, after every reconnect); the history
 * entry is marked retracted and its body and meta dropped; a message not
 * yet confirmed is also cancelled, so it is never written again. The
 * peer's library marks its entry and fires on_retract.
 * Any thread. Disk I/O: one transaction, committed before it returns.
 * @return COURIER_OK; COURIER_ENOTFOUND (no outgoing message `id`: only
 *         its sender can retract a message), COURIER_ESTATE (already
 *         retracted, or deleted), COURIER_EINVAL, COURIER_ESTORE,
 *         COURIER_ECLOSED.
 */
COURIER_API int courier_retract(courier_t *c, const char *id);

/**
 * Remove message `id` exchanged with `peer` from this device's history
 * (sent or received; an unconfirmed outgoing one is cancelled first). Its
 * body and meta are dropped; the id stays known, so a duplicate of an
 * incoming message is never handed again and an app id is never reused.
 * Nothing is sent. The peer chooses the ids of its messages, so one may
 * equal the id of one of ours: then nothing is deleted and the call says
 * COURIER_ESTATE; courier_delete_entry() names the direction.
 * Any thread. Disk I/O: one transaction, committed before it returns.
 * @return COURIER_OK; COURIER_ENOTFOUND (no message `id` with `peer`),
 *         COURIER_ESTATE (`id` names an entry in each direction),
 *         COURIER_EINVAL, COURIER_ESTORE, COURIER_ECLOSED.
 */
COURIER_API int courier_delete(courier_t *c, const char *peer,
                               const char *id);

/**
 * As courier_delete(), for the entry of direction `dir` only (the `dir` of
 * its courier_entry_t).
 * @return as courier_delete(), never COURIER_ESTATE; COURIER_EINVAL for a
 *         `dir` that is no courier_dir_t.
 */
COURIER_API int courier_delete_entry(courier_t *c, const char *peer,
                                     const char *id, courier_dir_t dir);

/**
 * With `app_confirms` set: incoming message `id` from `peer` is safely in
 * the app's own database; until this call it is handed again at every
 * open (so neither a crash nor a callback that only queued the work loses
 * it). Calling it again is harmless. After on_retract named `id`, the
 * same call confirms that the app applied the retraction; before that, a
 * retracted message stays owed to on_retract whatever is confirmed.
 * Any thread, callbacks included. Disk I/O: one UPDATE, committed before
 * it returns.
 * @return COURIER_OK; COURIER_ENOTFOUND (no such incoming message),
 *         COURIER_ESTATE (app_confirms is off: on_message's return already
 *         counts), COURIER_EINVAL, COURIER_ESTORE, COURIER_ECLOSED.
 */
COURIER_API int courier_confirm(courier_t *c, const char *peer,
                                const char *id);

/**
 * Erase this account's store (logout): every message, owed receipt and
 * retraction and every mark; then the file is rebuilt so no message text
 * is left in it or its journal. The handle stays open with an empty
 * store. The handle must be stopped (courier_stop()) and not driven by
 * courier_run_once.
 * Any thread but the loop's. Disk I/O: deletes, VACUUM (rewrites the
 * file: time in proportion to the store) and a WAL checkpoint. A store
 * check under way is stopped first and, once the store is rewritten, run
 * again on its thread (courier_check_status()).
 * @return COURIER_OK; COURIER_ESTATE (started or being driven),
 *         COURIER_ESTORE, COURIER_ECLOSED, COURIER_EINVAL.
 */
COURIER_API int courier_erase(courier_t *c);

/**
 * Where the check of the store owed after an unclean close stands
 * (behaviour.md §10). A store whose last close was not clean (the app was
 * killed, the process crashed) may have damaged pages; PRAGMA quick_check
 * reads every page to find them, which takes 0.2-0.4 s per million
 * messages on a desktop and more on a phone, so courier_open() does not
 * wait for it: it starts the check on a thread of the library's own, on a
 * read-only SQLite connection of its own, and returns. The handle works
 * meanwhile (sends are stored and committed as always; a page SQLite finds
 * damaged while reading gives COURIER_ECORRUPT, as at any time).
 */
typedef enum {
    COURIER_CHECK_NONE = 0,    /**< nothing owed: the last close was clean */
    COURIER_CHECK_RUNNING = 1, /**< owed, under way on the check thread */
    COURIER_CHECK_OK = 2,      /**< ran to the end: no damage found */
    COURIER_CHECK_DAMAGED = 3, /**< ran to the end: the store is damaged */
    COURIER_CHECK_FAILED = 4   /**< could not run (I/O error, out of
                                    memory): owed again at the next open */
} courier_check_t;

/**
 * The state of the store check (see courier_check_t) in `*out`. The
 * verdict is also logged once through on_log: COURIER_LOG_INFO for OK,
 * COURIER_LOG_ERROR for DAMAGED, COURIER_LOG_WARN for FAILED. A store found
 * damaged is what courier_open() refused with COURIER_ECORRUPT before the
 * check moved off its caller's thread: show the user, keep what can still
 * be read (courier_history() reads the pages that are intact), then
 * courier_erase() or delete the files. Until a check has found no damage
 * it stays owed: a handle closed while it runs, or after damage was found,
 * leaves the -wal file and the next open checks again. courier_erase()
 * stops a check under way and checks the rewritten store again.
 * Any thread, never blocks, no disk I/O.
 * @return COURIER_OK; COURIER_ECORRUPT when `*out` is
 *         COURIER_CHECK_DAMAGED (courier_last_error(): SQLite's first
 *         finding); COURIER_EINVAL (`out` NULL), COURIER_ECLOSED.
 */
COURIER_API int courier_check_status(courier_t *c, courier_check_t *out);

/*
 * TLS (behaviour.md §6, §10): TLS is required unless allow_plaintext, and the
 * certificate is verified against the JID's domain. The trusted CAs are
 * OpenSSL's default paths plus `ca_file` and `ca_path`. On a phone the
 * default paths usually hold nothing (a directory fixed when OpenSSL was
 * built, absent on the device): apps hand the check to the platform's
 * trust store through on_certificate, and use `ca_file`/`ca_path` only for
 * a private CA. What on_certificate gets: libstrophe 0.12 shows the
 * library only the leaf and the certificates OpenSSL reported as failing,
 * not the whole chain the server sent; so `pem_chain` is the leaf, then
 * the reported ones in issuer order. For the usual chain (leaf + one
 * intermediate, or a self-signed leaf) that is the whole chain; an
 * intermediate OpenSSL verified between two it could not may be missing
 * (seen with a server that sends its root too: leaf + root reach the
 * app, and a platform check that needs the intermediate refuses).
 * The name check is the library's own (X509_check_host on the
 * subjectAltName names, no partial wildcards, never the subject's CN, as
 * Android and iOS do) and is never handed to the app. A JID domain
 * that is not ASCII is compared as it is written, not in its xn-- form:
 * such a server is refused (not supported yet).
 * The decision is taken as soon as the TLS handshake is over, before
 * libstrophe writes any credential, whether or not the server then
 * sends its stream features.
 * TLS 1.2 as the minimum is enforced by OpenSSL 3 at its default security
 * level (>= 1); libstrophe 0.12.2 offers no way to set or read the version.
 * With OpenSSL 1.1.x, or an OpenSSL configuration at security level 0,
 * TLS 1.1 can be negotiated.
 */

/**
 * Stack a thread needs to call courier_run_once() whatever a server sends
 * (behaviour.md §11 "Hostile input"); the thread of courier_start() gets this much
 * of its own, and courier_stop() and courier_close() run libstrophe (the
 * close's last reads, freeing its state) on such a thread too, so those
 * need nothing from the caller: only courier_run_once() does.
 * Why: libstrophe 0.12 renders every received stanza recursively, once per
 * nesting level (~96 bytes a level on x86_64), whatever the log level.
 * The library bounds one stanza (4 MiB on the wire, 128 MiB of parser
 * memory: ~160 000 levels) and cuts the link beyond; this covers the wire
 * bound alone. Less is enough for what stock servers relay: ~37 000 levels
 * from a peer through a 256 KiB c2s limit (3.6 MB of stack), ~75 000 from
 * a federated server through a 512 KiB s2s limit (7.2 MB) — but a phone's
 * 1 MiB default thread stack is not.
 */
#define COURIER_RUN_ONCE_STACK_BYTES ((size_t)64 * 1024 * 1024)

#ifdef __cplusplus
}
#endif

#endif /* COURIER_H */
