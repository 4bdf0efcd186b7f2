/* SPDX-License-Identifier: MIT */
/*
 * The sans-I/O reliability core: events in, actions out.
 *
 * No sockets, no SQLite, no libstrophe, no clock: time is the `now` argument
 * of core_feed(). It keeps in memory only the *unsettled* outgoing messages
 * (QUEUED, SENT, OFFLINE and non-permanent FAILED); settled ones (DELIVERED,
 * DISPLAYED, permanently FAILED) live only in the store, and events about
 * them are fed together with their stored row (`ev.row`).
 *
 * Actions are appended to a core_out_t in the order they must run: a
 * CORE_ACT_STATE (persist, then notify) precedes the TRANSMIT that depends
 * on it.
 */
#ifndef COURIER_CORE_H
#define COURIER_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "courier.h"

typedef struct core core_t;

/* Two clocks: `mono_ms` for timers (never jumps), `wall_ms` (Unix ms) for
 * everything stored or compared with a peer's timestamps. */
typedef struct {
    int64_t mono_ms;
    int64_t wall_ms;
} core_now_t;

typedef struct {
    unsigned ack_timeout_ms, resend_grace_ms;
    unsigned ping_interval_ms, ping_timeout_ms;
    unsigned reconnect_min_ms, reconnect_max_ms;
    unsigned max_in_flight;
    uint64_t max_age_ms;
    int implicit_read;
    uint64_t random_seed; /* jitter; tests fix it */
} core_limits_t;

/* One outgoing message as the store keeps it (without its body). */
typedef struct {
    char id[COURIER_ID_MAX];
    char peer[COURIER_JID_MAX];
    courier_kind_t kind;
    courier_state_t state;
    unsigned attempts;
    unsigned bounces; /* transient error bounces so far */
    int64_t created_ms, last_sent_ms, last_change_ms; /* wall */
    int permanent;
    char reason[64];
    int cancelled;    /* the app gave up: never written again */
    int retracted, deleted; /* store only (history marks) */
    int64_t seq;      /* store only: history order */
} core_row_t;

/* Receipt forms a sender asked for (bit mask). */
enum {
    CORE_ASK_X22_DELIVERED = 1 << 0, /* jabber:x:event <delivered/> */
    CORE_ASK_X22_DISPLAYED = 1 << 1, /* jabber:x:event <displayed/> */
    CORE_ASK_RECEIPT = 1 << 2,       /* XEP-0184 <request/> */
    CORE_ASK_MARKABLE = 1 << 3,      /* XEP-0333 <markable/> */
    CORE_ASK_X22_COMPOSING = 1 << 4  /* jabber:x:event <composing/> */
};

typedef enum {
    CORE_EV_SEND,          /* app send, already stored: .row */
    CORE_EV_RETRY,         /* app retry: .row (stored row) */
    CORE_EV_LINK_UP,       /* session ready (bound, presence sent) */
    CORE_EV_LINK_DOWN,     /* link lost or closed (also a failed
                              connect attempt) */
    CORE_EV_AUTH_FAILED,   /* server refused the login: no retry loop */
    CORE_EV_STOP,          /* app stop: no reconnect until CORE_EV_START */
    CORE_EV_START,         /* app start: connect now */
    CORE_EV_INBOUND,       /* any inbound data (watchdog) */
    CORE_EV_ACKED,         /* server accepted message .id */
    CORE_EV_EVENT,         /* .kind_state OFFLINE/DELIVERED/DISPLAYED for .id
                              from .peer; .cumulative: XEP-0333 displayed
                              also covers earlier messages */
    CORE_EV_ERROR,         /* <message type='error'> for .id from .peer */
    CORE_EV_MESSAGE,       /* incoming chat message from .peer, stored;
                              .duplicate if seen before */
    CORE_EV_MARK_DISPLAYED,/* app marks incoming .id from .peer as shown */
    CORE_EV_TICK,          /* timers may be due */
    CORE_EV_NETWORK_CHANGED,/* the OS reports a connectivity change:
                               probe a link that is up, reconnect one that
                               is down now (behaviour.md §10) */
    CORE_EV_CANCEL         /* the app gives up on .id (.row: the stored
                              row): QUEUED/FAILED become FAILED, permanent,
                              "cancelled"; with .force (retract, delete)
                              SENT/OFFLINE stay as they are. Either way it
                              is never written again (behaviour.md §9) */
} core_ev_type_t;

typedef enum {
    CORE_ERR_CANCEL, CORE_ERR_MODIFY, CORE_ERR_AUTH, CORE_ERR_WAIT,
    CORE_ERR_CONTINUE
} core_err_type_t;

typedef struct {
    core_ev_type_t type;
    const char *id;             /* ACKED EVENT ERROR MESSAGE MARK_DISPLAYED */
    const char *peer;           /* bare JID, lower case */
    const core_row_t *row;      /* SEND RETRY; ACKED/EVENT/ERROR for a
                                   message the core does not hold (NULL:
                                   unknown id) */
    courier_state_t kind_state; /* EVENT */
    int cumulative;             /* EVENT */
    core_err_type_t err_type;   /* ERROR */
    const char *condition;      /* ERROR: e.g. "service-unavailable" */
    int64_t sent_wall_ms;       /* MESSAGE: its delay stamp, else arrival */
    unsigned asked;             /* MESSAGE, MARK_DISPLAYED: CORE_ASK_* */
    int duplicate;              /* MESSAGE */
    int displayed_before;       /* MESSAGE: app had marked it displayed */
    int force;                  /* CANCEL */
} core_ev_t;

typedef enum {
    /* Persist then notify: message .id to .peer is now .state. Conditional
     * on its stored state being one of .from_mask (1 << state). Fields
     * .attempts .last_sent_ms .bounces .permanent .reason are the row's. */
    CORE_ACT_STATE,
    /* Persist .attempts/.last_sent_ms, then write message .id to the
     * stream (with its original id, body, kind and timestamp). */
    CORE_ACT_TRANSMIT,
    /* Bulk, in the store: every message to .peer in DELIVERED whose
     * .by_created ? created_ms : last_sent_ms is <= .before_ms becomes
     * DISPLAYED; notify each. (Settled rows are not in the core.) */
    CORE_ACT_PROMOTE_DISPLAYED,
    /* Hand incoming message .id from .peer to the app (on_message). */
    CORE_ACT_DELIVER,
    /* Owe .peer a receipt for its message .id: .state DELIVERED or
     * DISPLAYED, in the forms .asked. Stored until the server has it. */
    CORE_ACT_RECEIPT,
    CORE_ACT_PING,         /* send an XEP-0199 ping to the server */
    CORE_ACT_DROP_LINK,    /* the link is dead: close it at once */
    CORE_ACT_CONNECT,      /* start a connect attempt */
    CORE_ACT_LINK          /* notify on_link(.link) */
} core_act_type_t;

typedef struct {
    core_act_type_t type;
    char id[COURIER_ID_MAX];
    char peer[COURIER_JID_MAX];
    courier_state_t state;
    unsigned from_mask;
    unsigned attempts, bounces;
    int64_t last_sent_ms, last_change_ms;
    int permanent;
    char reason[64];
    int cancelled;         /* STATE: the row's cancelled mark */
    int notify;            /* STATE: 0 = persist only (FAILED again) */
    int by_created;
    int64_t before_ms;
    unsigned asked;
    courier_link_t link;
} core_act_t;

/* A growable list of actions, reused across feeds (core_out_reset). */
typedef struct {
    core_act_t *acts;
    size_t len, cap;
} core_out_t;

void core_out_init(core_out_t *out);
void core_out_reset(core_out_t *out);
void core_out_free(core_out_t *out);

int core_new(core_t **out, const core_limits_t *lim);
void core_free(core_t *k);

/* Adopt an unsettled row loaded from the store at start-up (oldest first).
 * Settled rows are ignored. Emits nothing. COURIER_ENOMEM on failure. */
int core_load(core_t *k, const core_row_t *row);

/* Feed one event; actions are appended to `out`. Returns COURIER_OK,
 * COURIER_EINVAL (malformed event), COURIER_ESTATE (retry of a message
 * that is not FAILED, or a send of an id the core holds) or COURIER_ENOMEM:
 * then the core and `out` may disagree with the store, and the caller must
 * rebuild the core from the store (core_free, core_new, core_load). */
int core_feed(core_t *k, const core_ev_t *ev, core_now_t now, core_out_t *out);

/* Monotonic ms of the next timer (feed CORE_EV_TICK then), or -1 when
 * none is armed. `now` converts wall-clock expiry to the mono clock. */
int64_t core_next_deadline(const core_t *k, core_now_t now);

/* Why a message went on the wire again (behaviour.md §2), counted per handle. */
typedef enum {
    CORE_CAUSE_SEND = 0,   /* the app's send, or start-up: first write */
    CORE_CAUSE_RECONNECT,  /* phase 2.4: the session came back */
    CORE_CAUSE_PEER,       /* phase 1.2/1.3: the peer wrote again */
    CORE_CAUSE_RETRY,      /* courier_retry() */
    CORE_CAUSE_COUNT
} core_cause_t;

typedef struct {
    uint64_t first_writes;                /* messages written the first time */
    uint64_t rewrites[CORE_CAUSE_COUNT];  /* written again, by cause */
    uint64_t links_up;                    /* sessions that became ready */
} core_stats_t;

/* Counters since core_new (not persisted). */
void core_get_stats(const core_t *k, core_stats_t *out);

/* Introspection (tests, get_info, bench). */
const core_row_t *core_find(const core_t *k, const char *id);
size_t core_unsettled(const core_t *k);
size_t core_in_flight(const core_t *k);
/* 1 while a message waits to be written or is written and not yet
 * acknowledged by the server (courier_sync). */
int core_owes_writes(const core_t *k);
courier_link_t core_link(const core_t *k);
int core_link_up(const core_t *k);

/* Why the last event changed nothing (static text), or NULL. For the
 * executor's debug log: spoofed, unknown or late events. */
const char *core_ignored(const core_t *k);

/* 1 if the app started the link (CORE_EV_START, no STOP since); 1 if the
 * last login was refused. */
int core_started(const core_t *k);
int core_auth_failed(const core_t *k);

/* A core rebuilt from the store keeps the app's intent: started, so it
 * connects again at its next tick. Emits nothing. */
void core_restore_started(core_t *k, int64_t mono_now);

/* Rank of a state on the forward path (FAILED is outside it). */
int core_state_rank(courier_state_t s);

#endif /* COURIER_CORE_H */
