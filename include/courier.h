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
 *  - Strings passed in are borrowed for the call; the library copies what it
 *    keeps. Strings handed to callbacks are valid only during the callback.
 *  - Every function may be called from any thread. Callbacks run on the
 *    library's loop thread (the one inside courier_start(), or the caller of
 *    courier_run_once()) and may call back into the API.
 *  - A call that returns an error never causes a callback about it.
 */
#ifndef COURIER_H
#define COURIER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define COURIER_VERSION_MAJOR 0
#define COURIER_VERSION_MINOR 1
#define COURIER_VERSION_PATCH 0
#define COURIER_VERSION "0.1.0"

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
/** Version stamped into courier_config_t by courier_config_init(). */
#define COURIER_CONFIG_VERSION 1

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
    COURIER_ENOTSUP = -10   /**< not available in this build */
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
    const char *ca_file;             /**< optional CA bundle for TLS */
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
} courier_message_t;

/**
 * Callbacks. Copied by courier_open(); a NULL member means "not interested".
 * `ud` is the pointer given to courier_open(), never looked into.
 * on_state fires after the new state is durable, once per transition, in
 * order. on_message fires exactly once ever per (peer, id), with one
 * exception no library can close alone: a process killed while on_message
 * runs (before it returns) gets that message again at the next open; apps
 * that store messages themselves should key them by (peer, id). Callbacks
 * must not block.
 */
typedef struct {
    void (*on_state)(void *ud, const char *id, const char *peer,
                     courier_state_t state);
    void (*on_message)(void *ud, const courier_message_t *msg);
    void (*on_link)(void *ud, courier_link_t link);
    void (*on_composing)(void *ud, const char *peer, int composing);
    void (*on_log)(void *ud, int level, const char *line);
} courier_callbacks_t;

typedef struct courier courier_t;     /**< one account */

/**
 * Fill `cfg` with the defaults of behaviour.md §2/§4 (ack 30 s, grace 10 s, ping
 * 30 s / 33 s, reconnect 1 s..60 s, 100 in flight, no expiry, implicit read
 * on) and stamp its version. Strings are set to NULL. NULL-safe.
 */
COURIER_API void courier_config_init(courier_config_t *cfg);

/**
 * Open an account handle: validate `cfg`, open (or create, mode 0600) and
 * migrate the store, and load the unconfirmed outbox. No network activity
 * until courier_start() or courier_run_once().
 * `cfg` and `cb` (may be NULL) are copied; `ud` is passed back to callbacks.
 * @return COURIER_OK and `*out` set; or COURIER_EINVAL (a bad field, named
 *         in courier_last_error()), COURIER_ENOMEM, COURIER_ESTORE (cannot
 *         open or write the file), COURIER_ECORRUPT (not a store, or written
 *         by a newer version). On error `*out` is NULL.
 */
COURIER_API int courier_open(courier_t **out, const courier_config_t *cfg,
                             const courier_callbacks_t *cb, void *ud);

/**
 * Stop if needed, then free the handle. After it returns no callback runs
 * and `ud` is not touched. NULL-safe. From a callback, the close is
 * deferred until the callback returns. Stored messages are kept.
 */
COURIER_API void courier_close(courier_t *c);

/**
 * Connect and run the loop on a thread of the library's own; reconnects by
 * itself (behaviour.md §4) until courier_stop(). After courier_stop() it may be
 * called again on the same handle.
 * @return COURIER_OK, COURIER_ESTATE (already started, or courier_run_once
 *         drives the handle: courier_stop() first), COURIER_ENOMEM (no
 *         thread), COURIER_ECLOSED.
 */
COURIER_API int courier_start(courier_t *c);

/**
 * Disconnect (acknowledging what was received, at most ~2 s) and join the
 * loop thread; with courier_run_once, close the link. Stored messages are
 * kept; those not yet confirmed go out again at the next start. From a
 * callback the loop ends after the callback returns.
 * @return COURIER_OK, COURIER_ESTATE (another thread is inside
 *         courier_run_once), COURIER_ECLOSED.
 */
COURIER_API int courier_stop(courier_t *c);

/**
 * Drive the library from the caller's own loop instead of courier_start():
 * the first call starts connecting; each call runs due timers, the socket,
 * pending commands and callbacks, waiting at most `timeout_ms` for
 * something to happen. Callbacks run on the calling thread. One thread at
 * a time; courier_stop() closes the link.
 * @return COURIER_OK, COURIER_ESTATE (courier_start() owns the loop, or
 *         another thread is inside), COURIER_ECLOSED (closed from one of
 *         its callbacks: the handle is gone).
 */
COURIER_API int courier_run_once(courier_t *c, unsigned timeout_ms);

/**
 * Store a text message for `to` (a bare JID) and queue it; returns once it
 * is durable in SQLite (behaviour.md §5). While offline it is reported FAILED and
 * goes out by itself on reconnect. The new id is written to `id_out`.
 * Any thread; sends from several threads at once share SQLite commits
 * (each still returns only once its own message is committed).
 * @return COURIER_OK, COURIER_EINVAL (bad JID, empty, oversized or non
 *         UTF-8 body), COURIER_ESTORE (nothing stored), COURIER_ECLOSED.
 */
COURIER_API int courier_send_text(courier_t *c, const char *to,
                                  const char *body,
                                  char id_out[COURIER_ID_MAX]);

/**
 * Store a voice or image message whose id is `media_id` (so every resend is
 * the same message), with `body` the media URL or description.
 * @return as courier_send_text(), plus COURIER_EINVAL for a kind that is not
 *         VOICE/IMAGE or an invalid id, and COURIER_ESTATE when a message
 *         with that id already exists.
 */
COURIER_API int courier_send_media(courier_t *c, const char *to,
                                   courier_kind_t kind, const char *media_id,
                                   const char *body);

/**
 * Tell `peer` that message `id` from them was shown (the forms of displayed
 * event the sender asked for), and remember it so a later duplicate gets it
 * again. Reliable: kept until the server has it.
 * @return COURIER_OK, COURIER_EINVAL, COURIER_ENOTFOUND (no such incoming
 *         message), COURIER_ESTORE, COURIER_ECLOSED.
 */
COURIER_API int courier_mark_displayed(courier_t *c, const char *peer,
                                       const char *id);

/**
 * Send a composing (on != 0) or active (on == 0) notification to `peer`.
 * Not stored: a lost one is harmless.
 * @return COURIER_OK, COURIER_EINVAL, COURIER_ENOTCONN (offline),
 *         COURIER_ECLOSED.
 */
COURIER_API int courier_set_composing(courier_t *c, const char *peer,
                                      int composing);

/**
 * Send a FAILED message again at once (or, while offline, make it go out on
 * reconnect), clearing a permanent failure.
 * @return COURIER_OK, COURIER_EINVAL, COURIER_ENOTFOUND, COURIER_ESTATE
 *         (the message is not FAILED), COURIER_ESTORE, COURIER_ECLOSED.
 */
COURIER_API int courier_retry(courier_t *c, const char *id);

/**
 * Read the current state of outgoing message `id` from the store.
 * @return COURIER_OK, COURIER_EINVAL, COURIER_ENOTFOUND, COURIER_ESTORE,
 *         COURIER_ECLOSED.
 */
COURIER_API int courier_get_state(courier_t *c, const char *id,
                                  courier_state_t *out);

/**
 * Fill `out` with the state, attempts, times and reason of message `id`.
 * @return as courier_get_state().
 */
COURIER_API int courier_get_info(courier_t *c, const char *id,
                                 courier_info_t *out);

/**
 * What the reliability rules did since courier_open() (an addition to
 * behaviour.md §7; in memory, not persisted). The resend counters tell the note's
 * two phases apart: `resent_reconnect` is phase 2 (earliest delivery, the
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
 * Fill `out` with the handle's counters. Any thread.
 * @return COURIER_OK, COURIER_EINVAL (`out` NULL), COURIER_ECLOSED.
 */
COURIER_API int courier_get_stats(courier_t *c, courier_stats_t *out);

/**
 * Current link state (an addition to behaviour.md §7).
 * @return COURIER_OK; COURIER_EAUTH when the server refused the login (then
 *         `*out` is COURIER_LINK_OFFLINE and the library does not retry
 *         until the next courier_start()); COURIER_EINVAL, COURIER_ECLOSED.
 */
COURIER_API int courier_get_link(courier_t *c, courier_link_t *out);

/**
 * The note's display mapping: "sending" (QUEUED, SENT), "delivered"
 * (OFFLINE, DELIVERED), "read" (DISPLAYED), "failed" (FAILED); "unknown"
 * for any other value. Static string, never NULL.
 */
COURIER_API const char *courier_display_status(courier_state_t s);

/** Name of state `s` ("QUEUED"...); "UNKNOWN" otherwise. Never NULL. */
COURIER_API const char *courier_state_name(courier_state_t s);

/** Static text for any int code; never NULL. */
COURIER_API const char *courier_strerror(int code);

/**
 * Detail of this thread's last error: set by every call that returned a
 * negative code, in a thread-local buffer (valid until the next failing
 * call on this thread). "" when there is none. Never NULL.
 */
COURIER_API const char *courier_last_error(void);

/** Library version string, e.g. "0.1.0". */
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
 * once. On a handle that is not started, or whose login the server
 * refused, it does nothing.
 * Any thread, callbacks included. Never blocks: it stores nothing, does
 * no disk or network I/O and takes no lock; it marks the change and wakes
 * the loop, which acts on it at its next turn (a courier_run_once waiting
 * on another thread is woken; the next call acts on it before it waits).
 * Calls that come faster than the loop turns count as one.
 * @return COURIER_OK, COURIER_EINVAL (`c` NULL), COURIER_ECLOSED (closed
 *         from a callback).
 */
COURIER_API int courier_network_changed(courier_t *c);

/*
 * TLS (behaviour.md §6, §10): TLS is required unless allow_plaintext, and the
 * certificate is verified against the JID's domain. TLS 1.2 as the minimum
 * is enforced by OpenSSL 3 at its default security level (>= 1); libstrophe
 * 0.12.2 offers no way to set or read the version. With OpenSSL 1.1.x, or
 * an OpenSSL configuration at security level 0, TLS 1.1 can be negotiated.
 */

/**
 * Stack a thread needs to call courier_run_once() whatever a server sends
 * (behaviour.md §11 "Hostile input"); the thread of courier_start() gets this much
 * of its own, and courier_close() frees libstrophe's state on such a
 * thread too, so those two need nothing from the caller.
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
