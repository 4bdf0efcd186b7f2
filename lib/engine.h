/* SPDX-License-Identifier: MIT */
/*
 * The engine runs the core's actions against the store, and hands the rest
 * to the loop thread: callbacks and transport calls wait in one ordered
 * queue that engine_dispatch() drains on the loop thread.
 *
 * Every engine_* function may be called from any thread (one mutex),
 * except engine_dispatch(), which belongs to the loop thread. Transitions
 * are persisted under the mutex before anything depending on them is
 * queued (behaviour.md §5: the store is the truth).
 */
#ifndef COURIER_ENGINE_H
#define COURIER_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "core.h"
#include "courier.h"
#include "store.h"

typedef struct engine engine_t;

/* The session holds at most ENGINE_OUTQ_MAX stanzas written and not yet
 * acknowledged by the server, and cuts a link that goes beyond. Messages
 * (max_in_flight, at most ENGINE_MAX_IN_FLIGHT) and owed receipts (at
 * most ENGINE_RCPT_WINDOW at once) share it, with room to spare for a
 * message written again before its ack (behaviour.md §11). */
#define ENGINE_OUTQ_MAX 4096
#define ENGINE_RCPT_WINDOW 100
#define ENGINE_MAX_IN_FLIGHT (ENGINE_OUTQ_MAX / 2)

/* What the engine needs from a link. Called on the loop thread only, never
 * with the engine's mutex held. NULL members are skipped. */
typedef struct {
    /* Write message `row` with `body` to the stream. */
    void (*send_chat)(void *tp, const core_row_t *row, const char *body,
                      const char *meta);
    /* Write receipt `r`; report engine_receipt_acked(r->rid) once the
     * server has it (or at once if it writes nothing): until then it
     * holds a slot of the receipt window, until the link goes down. */
    void (*send_receipt)(void *tp, const store_rcpt_t *r);
    void (*send_composing)(void *tp, const char *peer, const char *last_id,
                           int on);
    void (*ping)(void *tp);
    void (*drop_link)(void *tp);
    void (*connect)(void *tp);
} engine_transport_t;

/* Clock hook, for tests; the default reads util_mono_ms() (CLOCK_BOOTTIME
 * on Linux: it counts sleep) and CLOCK_REALTIME. */
typedef core_now_t (*engine_clock_fn)(void *ud);

/* Validate `cfg` (naming the bad field in courier_last_error), copy it,
 * open the store and load the unconfirmed outbox. */
int engine_open(engine_t **out, const courier_config_t *cfg,
                const courier_callbacks_t *cb, void *ud);
void engine_close(engine_t *e);

void engine_set_transport(engine_t *e, const engine_transport_t *tp,
                          void *tp_ud);
void engine_set_clock(engine_t *e, engine_clock_fn fn, void *ud);

/* The copied configuration (strings owned by the engine). */
const courier_config_t *engine_config(const engine_t *e);
/* Our own bare JID, lower case. */
const char *engine_self(const engine_t *e);

/* A file descriptor (eventfd) that becomes readable when the queue has
 * work for the loop thread; engine_dispatch() clears it. */
int engine_wake_fd(const engine_t *e);

/* App commands (behaviour.md §7, §9). `app_id` NULL: a fresh id (text);
 * `meta` may be NULL. */
int engine_send(engine_t *e, const char *to, courier_kind_t kind,
                const char *app_id, const char *body, const char *meta,
                char id_out[COURIER_ID_MAX]);
int engine_cancel(engine_t *e, const char *id);
int engine_retract(engine_t *e, const char *id);
/* `dir`: COURIER_DIR_OUT, COURIER_DIR_IN or ENGINE_DIR_ANY (ESTATE when
 * the id names an entry in each direction). */
#define ENGINE_DIR_ANY (-1)
int engine_delete(engine_t *e, const char *peer, const char *id, int dir);
int engine_confirm(engine_t *e, const char *peer, const char *id);
/* Erase the store; the caller makes sure no loop runs (courier_erase). */
int engine_erase(engine_t *e);
/* Run `fn` on the store under the handle's lock, after the loop turn's
 * writes are committed: a consistent read for the history walks
 * (history.c). `fn` must not call back into the engine. */
typedef int (*engine_read_fn)(store_t *s, void *ud);
int engine_read(engine_t *e, engine_read_fn fn, void *ud);
int engine_retry(engine_t *e, const char *id);
int engine_mark_displayed(engine_t *e, const char *peer, const char *id);
int engine_set_composing(engine_t *e, const char *peer, int on);
int engine_get_info(engine_t *e, const char *id, courier_info_t *out);
void engine_get_stats(engine_t *e, courier_stats_t *out);
/* Link state; `*auth_failed` (may be NULL) = the last login was refused. */
courier_link_t engine_link(engine_t *e, int *auth_failed);
/* Platform trust (behaviour.md §10): 1 if the app gave on_certificate. */
int engine_wants_certificates(engine_t *e);
/* Ask the app's on_certificate now, on the calling (loop) thread, with no
 * engine lock held: 1 accepts; 0 refuses (also after engine_mute). */
int engine_ask_certificate(engine_t *e, const char *host, const char *pem);
/* No app callback runs after this (courier_close); transport items do. */
void engine_mute(engine_t *e);

/* One transaction for a loop turn's session events (engine_feed,
 * engine_acked*, engine_incoming, engine_tick between begin and end): one
 * commit instead of one per stanza. End it before engine_dispatch, and
 * flush it before telling the server what it holds (an <a h/>). App calls
 * from other threads meanwhile commit it first and reopen it. End/flush
 * return COURIER_ESTORE (or the commit's code) if a commit of it failed:
 * then its writes are gone and nothing counted in it may be acknowledged.
 * Loop thread only. */
int engine_batch_begin(engine_t *e);
int engine_batch_end(engine_t *e);
int engine_batch_flush(engine_t *e);

/* Link and timer events from the session (or a test). */
int engine_feed(engine_t *e, core_ev_type_t type);
/* The server acknowledged our message `id` (XEP-0198 or a ping). */
int engine_acked(engine_t *e, const char *id);
/* Several acknowledgements (one <a h/>) in one commit: a message when
 * `id` is set, else the receipt `rid`. The first error is returned; the
 * other acks are still applied. */
typedef struct {
    const char *id;
    int64_t rid;
} engine_ack_t;
int engine_acked_batch(engine_t *e, const engine_ack_t *acks, size_t n);
/* The server acknowledged the stanza carrying receipt `rid`. */
int engine_receipt_acked(engine_t *e, int64_t rid);
/* An inbound <message/>, parsed: store, dedupe, events, errors. */
int engine_incoming(engine_t *e, const codec_msg_t *m);
/* The OS reports a connectivity change (behaviour.md §10). Any thread;
 * takes no lock and writes nothing: it sets a flag and wakes the loop,
 * and the next engine_tick feeds CORE_EV_NETWORK_CHANGED. */
int engine_network_changed(engine_t *e);
/* Foreground (1) or background (0), behaviour.md §10: any thread, no
 * lock, no store; wakes the loop, whose session tells the server
 * (XEP-0352) after every login. In background engine_set_composing sends
 * nothing. */
int engine_set_active(engine_t *e, int active);
int engine_is_active(const engine_t *e);
/* Feed CORE_EV_NETWORK_CHANGED if one was reported, then CORE_EV_TICK if
 * a timer is due. */
int engine_tick(engine_t *e);
/* ms until the next timer (0 if due), or -1 when none is armed. */
int64_t engine_timeout_ms(engine_t *e);

/* Log through on_log (queued, so it runs on the loop thread). */
void engine_log(engine_t *e, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Wake the loop thread (e.g. to notice a stop request). Any thread. */
void engine_wake(engine_t *e);

/* Loop thread: run queued callbacks and transport calls, in order.
 * Returns the number of items run. */
size_t engine_dispatch(engine_t *e);
/* courier_sync: the link is up, no message waits to be written or for the
 * server's ack, no receipt is owed (stored or unacknowledged), and no
 * callback waits or runs. Any thread. */
int engine_quiet(engine_t *e);
/* Items waiting for engine_dispatch(). */
size_t engine_pending(engine_t *e);

#endif /* COURIER_ENGINE_H */
