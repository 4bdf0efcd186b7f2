/* SPDX-License-Identifier: MIT */
#include "core.h"

#include <stddef.h>
#include <string.h>

#include "util.h"

#define MAX_BOUNCES 3 /* behaviour.md §2: the third transient bounce is permanent */
#define REASON_EXPIRED "expired"
#define REASON_CANCELLED "cancelled"
/* behaviour.md §11: a link up this long was a success and resets the backoff; one
 * that dies sooner (killed right after login) does not. */
#define STABLE_LINK_MS 10000

/* Intrusive doubly-linked list node; a message sits in up to four lists. */
typedef struct node {
    struct node *prev, *next;
} node_t;

typedef struct {
    node_t head; /* sentinel */
} list_t;

typedef struct msg {
    core_row_t row;
    uint64_t seq;          /* acceptance order */
    struct msg *hnext;     /* hash chain */
    node_t all;            /* every unsettled message, by seq */
    node_t sendq;          /* waiting for a window slot, by seq */
    node_t ackq;           /* ack timer armed, by deadline */
    node_t expq;           /* expiry pending, by expire_base */
    int64_t ack_deadline;  /* mono */
    int64_t expire_base;   /* wall: send or retry time */
    int on_wire;           /* written this link, not acked by the server */
    int error_since_send;  /* an error bounced it after its last write */
    uint64_t wseq;         /* order of its last write (0: none this run) */
    core_cause_t cause;    /* why it sits in sendq */
} msg_t;

struct core {
    core_limits_t lim;
    msg_t **buckets;
    size_t nbuckets, count;
    list_t all, sendq, ackq, expq;
    uint64_t next_seq, next_wseq;
    size_t in_flight;
    const char *ignored;

    courier_link_t link;
    int started, auth_failed, dropping;
    int reconnect_now;          /* the network changed during a connect:
                                   if it fails, the next one goes at once */
    int64_t connect_started;    /* mono */
    int64_t next_ping;          /* mono */
    int64_t first_unanswered;   /* mono of the oldest unanswered ping, -1 */
    int64_t reconnect_at;       /* mono, -1 none */
    int64_t online_since;       /* mono of the last LINK_UP */
    unsigned backoff_ms;
    /* behaviour.md §10, review L3: a network change skips the backoff at
     * most once per skip period, which grows like the backoff until a
     * link holds (0: no skip since). */
    unsigned skip_gap_ms;
    int64_t skip_until;         /* mono */
    uint64_t rng;
    core_stats_t stats;
};

#define CONTAINER(ptr, field) \
    ((msg_t *)(void *)((char *)(ptr) - offsetof(msg_t, field)))

static void list_init(list_t *l)
{
    l->head.prev = l->head.next = &l->head;
}

static int list_empty(const list_t *l)
{
    return l->head.next == &l->head;
}

static int node_linked(const node_t *n)
{
    return n->next != NULL;
}

static void list_insert_before(node_t *at, node_t *n)
{
    n->next = at;
    n->prev = at->prev;
    at->prev->next = n;
    at->prev = n;
}

static void list_push_back(list_t *l, node_t *n)
{
    list_insert_before(&l->head, n);
}

static void node_unlink(node_t *n)
{
    if (!node_linked(n))
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

/* ---- actions ------------------------------------------------------- */

void core_out_init(core_out_t *out)
{
    memset(out, 0, sizeof(*out));
}

void core_out_reset(core_out_t *out)
{
    out->len = 0;
}

void core_out_free(core_out_t *out)
{
    util_free(out->acts);
    core_out_init(out);
}

/* Returns a zeroed action to fill, or NULL on ENOMEM. */
static core_act_t *out_push(core_out_t *out, core_act_type_t type)
{
    if (out->len == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 16;
        core_act_t *a = util_realloc(out->acts, cap * sizeof(*a));
        if (!a)
            return NULL;
        out->acts = a;
        out->cap = cap;
    }
    core_act_t *act = &out->acts[out->len++];
    memset(act, 0, sizeof(*act));
    act->type = type;
    return act;
}

/* ---- messages ------------------------------------------------------ */

static size_t bucket_of(const core_t *k, const char *id)
{
    return (size_t)(util_fnv1a(UTIL_FNV_INIT, id, strlen(id)) &
                    (k->nbuckets - 1));
}

static msg_t *find(const core_t *k, const char *id)
{
    for (msg_t *m = k->buckets[bucket_of(k, id)]; m; m = m->hnext)
        if (strcmp(m->row.id, id) == 0)
            return m;
    return NULL;
}

static int grow(core_t *k)
{
    size_t n = k->nbuckets * 2;
    msg_t **b = util_calloc(n, sizeof(*b));
    if (!b)
        return COURIER_ENOMEM;
    for (size_t i = 0; i < k->nbuckets; i++) {
        msg_t *m = k->buckets[i];
        while (m) {
            msg_t *next = m->hnext;
            size_t j = (size_t)(util_fnv1a(UTIL_FNV_INIT, m->row.id,
                                           strlen(m->row.id)) & (n - 1));
            m->hnext = b[j];
            b[j] = m;
            m = next;
        }
    }
    util_free(k->buckets);
    k->buckets = b;
    k->nbuckets = n;
    return COURIER_OK;
}

static msg_t *msg_add(core_t *k, const core_row_t *row, int64_t expire_base)
{
    if (k->count >= k->nbuckets && grow(k) != COURIER_OK)
        return NULL;
    msg_t *m = util_calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->row = *row;
    m->seq = k->next_seq++;
    m->expire_base = expire_base;
    size_t b = bucket_of(k, row->id);
    m->hnext = k->buckets[b];
    k->buckets[b] = m;
    k->count++;
    list_push_back(&k->all, &m->all);
    if (k->lim.max_age_ms)
        list_push_back(&k->expq, &m->expq);
    return m;
}

static void wire_clear(core_t *k, msg_t *m)
{
    if (m->on_wire) {
        m->on_wire = 0;
        k->in_flight--;
    }
}

static void msg_remove(core_t *k, msg_t *m)
{
    msg_t **pp = &k->buckets[bucket_of(k, m->row.id)];
    while (*pp != m)
        pp = &(*pp)->hnext;
    *pp = m->hnext;
    k->count--;
    wire_clear(k, m);
    node_unlink(&m->all);
    node_unlink(&m->sendq);
    node_unlink(&m->ackq);
    node_unlink(&m->expq);
    util_free(m);
}

static int settled(const core_row_t *r)
{
    return r->state == COURIER_DELIVERED || r->state == COURIER_DISPLAYED ||
           (r->state == COURIER_FAILED && r->permanent);
}

int core_state_rank(courier_state_t s)
{
    switch (s) {
    case COURIER_QUEUED: return 0;
    case COURIER_SENT: return 1;
    case COURIER_OFFLINE: return 2;
    case COURIER_DELIVERED: return 3;
    case COURIER_DISPLAYED: return 4;
    case COURIER_FAILED: return -1;
    }
    return -1;
}

/* Move `row` to `state`, emitting one conditional STATE action (CAS on the
 * state the core believes is stored). The app hears of it once per
 * transition: FAILED again (a new bounce, expiry) is persisted quietly. */
static int set_state(core_row_t *row, courier_state_t state,
                     const char *reason, int permanent, int notify,
                     core_now_t now, core_out_t *out)
{
    core_act_t *a = out_push(out, CORE_ACT_STATE);
    if (!a)
        return COURIER_ENOMEM;
    a->from_mask = 1u << row->state;
    row->state = state;
    row->permanent = permanent;
    row->last_change_ms = now.wall_ms;
    util_strlcpy(row->reason, reason ? reason : "", sizeof(row->reason));
    util_strlcpy(a->id, row->id, sizeof(a->id));
    util_strlcpy(a->peer, row->peer, sizeof(a->peer));
    a->state = state;
    a->attempts = row->attempts;
    a->bounces = row->bounces;
    a->last_sent_ms = row->last_sent_ms;
    a->last_change_ms = row->last_change_ms;
    a->permanent = permanent;
    a->cancelled = row->cancelled;
    a->notify = notify && a->from_mask != 1u << state;
    util_strlcpy(a->reason, row->reason, sizeof(a->reason));
    return COURIER_OK;
}

static int emit_simple(core_out_t *out, core_act_type_t type,
                       const char *id, const char *peer)
{
    core_act_t *a = out_push(out, type);
    if (!a)
        return COURIER_ENOMEM;
    if (id)
        util_strlcpy(a->id, id, sizeof(a->id));
    if (peer)
        util_strlcpy(a->peer, peer, sizeof(a->peer));
    return COURIER_OK;
}

static int emit_link(core_t *k, courier_link_t link, core_out_t *out)
{
    k->link = link;
    core_act_t *a = out_push(out, CORE_ACT_LINK);
    if (!a)
        return COURIER_ENOMEM;
    a->link = link;
    return COURIER_OK;
}

/* Insert into the send queue keeping acceptance order (behaviour.md §5: per-peer
 * order). The queue is short; walk from the tail. */
static void sendq_add(core_t *k, msg_t *m, core_cause_t cause)
{
    if (node_linked(&m->sendq) || m->row.cancelled)
        return;
    m->cause = cause;
    node_t *at = k->sendq.head.prev;
    while (at != &k->sendq.head && CONTAINER(at, sendq)->seq > m->seq)
        at = at->prev;
    list_insert_before(at->next, &m->sendq);
}

static int expired(const core_t *k, const msg_t *m, core_now_t now)
{
    return k->lim.max_age_ms &&
           (m->row.state == COURIER_QUEUED || m->row.state == COURIER_FAILED) &&
           now.wall_ms - m->expire_base >= (int64_t)k->lim.max_age_ms;
}

/* behaviour.md §2 expiry: FAILED permanently, never sent again by itself. */
static int expire(core_t *k, msg_t *m, core_now_t now, core_out_t *out)
{
    int rc = set_state(&m->row, COURIER_FAILED, REASON_EXPIRED, 1, 1, now,
                       out);
    msg_remove(k, m);
    return rc;
}

/* Write queued messages while the window allows (behaviour.md §2 pacing). */
static int pump(core_t *k, core_now_t now, core_out_t *out)
{
    int rc = COURIER_OK;
    while (rc == COURIER_OK && k->link == COURIER_LINK_ONLINE &&
           !list_empty(&k->sendq) && k->in_flight < k->lim.max_in_flight) {
        msg_t *m = CONTAINER(k->sendq.head.next, sendq);
        node_unlink(&m->sendq);
        if (expired(k, m, now)) {
            rc = expire(k, m, now, out);
            continue;
        }
        /* behaviour.md §1: FAILED goes back to QUEUED when sent again. */
        if (m->row.state == COURIER_FAILED)
            rc = set_state(&m->row, COURIER_QUEUED, "", 0, 1, now, out);
        if (rc != COURIER_OK)
            break;
        core_act_t *a = out_push(out, CORE_ACT_TRANSMIT);
        if (!a)
            return COURIER_ENOMEM;
        if (m->row.attempts == 0)
            k->stats.first_writes++;
        else
            k->stats.rewrites[m->cause]++;
        m->row.attempts++;
        m->row.last_sent_ms = now.wall_ms;
        m->error_since_send = 0;
        m->wseq = ++k->next_wseq;
        util_strlcpy(a->id, m->row.id, sizeof(a->id));
        util_strlcpy(a->peer, m->row.peer, sizeof(a->peer));
        a->state = m->row.state;
        a->attempts = m->row.attempts;
        a->last_sent_ms = m->row.last_sent_ms;
        if (!m->on_wire) {
            m->on_wire = 1;
            k->in_flight++;
        }
        /* behaviour.md §2 ack timer: only matters while nothing has confirmed it. */
        node_unlink(&m->ackq);
        if (m->row.state == COURIER_QUEUED) {
            m->ack_deadline = now.mono_ms + k->lim.ack_timeout_ms;
            list_push_back(&k->ackq, &m->ackq);
        }
    }
    return rc;
}

/* The server (or the peer) has the message: it left the wire. */
static void confirmed(core_t *k, msg_t *m)
{
    wire_clear(k, m);
    node_unlink(&m->ackq);
    node_unlink(&m->expq);
}

/* ---- events -------------------------------------------------------- */

static int on_send(core_t *k, const core_ev_t *ev, core_now_t now,
                   core_out_t *out)
{
    if (!ev->row || !util_id_valid(ev->row->id) || !ev->row->peer[0])
        return COURIER_EINVAL;
    if (find(k, ev->row->id))
        return COURIER_ESTATE;
    core_row_t row = *ev->row;
    row.state = COURIER_QUEUED;
    row.permanent = 0;
    msg_t *m = msg_add(k, &row, now.wall_ms);
    if (!m)
        return COURIER_ENOMEM;
    if (k->link != COURIER_LINK_ONLINE) /* behaviour.md §2: offline send = FAILED */
        return set_state(&m->row, COURIER_FAILED, "offline", 0, 1, now, out);
    /* behaviour.md §2 ack timer: from the send, also while waiting for a slot. */
    m->ack_deadline = now.mono_ms + k->lim.ack_timeout_ms;
    list_push_back(&k->ackq, &m->ackq);
    sendq_add(k, m, CORE_CAUSE_SEND);
    return pump(k, now, out);
}

static int on_retry(core_t *k, const core_ev_t *ev, core_now_t now,
                    core_out_t *out)
{
    if (!ev->row || !util_id_valid(ev->row->id))
        return COURIER_EINVAL;
    msg_t *m = find(k, ev->row->id);
    const core_row_t *cur = m ? &m->row : ev->row;
    if (cur->state != COURIER_FAILED)
        return COURIER_ESTATE;
    if (!m) {
        m = msg_add(k, ev->row, now.wall_ms);
        if (!m)
            return COURIER_ENOMEM;
    } else if (k->lim.max_age_ms) {
        m->expire_base = now.wall_ms; /* a manual retry restarts the clock */
        node_unlink(&m->expq);
        list_push_back(&k->expq, &m->expq);
    }
    m->row.bounces = 0;
    if (k->link != COURIER_LINK_ONLINE) /* goes out on reconnect */
        return set_state(&m->row, COURIER_FAILED, "offline", 0, 0, now, out);
    m->row.permanent = 0;
    sendq_add(k, m, CORE_CAUSE_RETRY);
    return pump(k, now, out);
}

static unsigned next_backoff(core_t *k)
{
    /* xorshift64*: jitter only, seeded by the caller */
    k->rng ^= k->rng >> 12;
    k->rng ^= k->rng << 25;
    k->rng ^= k->rng >> 27;
    uint64_t r = k->rng * 0x2545F4914F6CDD1DULL;
    unsigned b = k->backoff_ms;
    unsigned delay = b / 2 + (unsigned)(r % (b / 2 + 1)); /* equal jitter */
    k->backoff_ms = b >= k->lim.reconnect_max_ms / 2 ? k->lim.reconnect_max_ms
                                                     : b * 2;
    return delay;
}

static int on_link_up(core_t *k, core_now_t now, core_out_t *out)
{
    if (k->link == COURIER_LINK_ONLINE)
        return COURIER_OK;
    int rc = emit_link(k, COURIER_LINK_ONLINE, out);
    k->stats.links_up++;
    k->online_since = now.mono_ms; /* the backoff resets if it holds */
    k->reconnect_at = -1;
    k->reconnect_now = 0;
    k->dropping = 0;
    k->next_ping = now.mono_ms + k->lim.ping_interval_ms;
    k->first_unanswered = -1;
    /* behaviour.md §2 reconnect: every QUEUED and FAILED again, oldest first. */
    for (node_t *n = k->all.head.next; n != &k->all.head; n = n->next) {
        msg_t *m = CONTAINER(n, all);
        if (m->row.state == COURIER_QUEUED || m->row.state == COURIER_FAILED)
            sendq_add(k, m, CORE_CAUSE_RECONNECT);
    }
    if (rc == COURIER_OK)
        rc = pump(k, now, out);
    return rc;
}

static int on_link_down(core_t *k, core_now_t now, core_out_t *out,
                        const char *reason)
{
    int rc = COURIER_OK;
    /* behaviour.md §4 reset on success; §11: only for a link that held */
    if (k->link == COURIER_LINK_ONLINE &&
        now.mono_ms - k->online_since >= STABLE_LINK_MS) {
        k->backoff_ms = k->lim.reconnect_min_ms;
        k->skip_gap_ms = 0;
        k->skip_until = 0;
    }
    if (k->link != COURIER_LINK_OFFLINE)
        rc = emit_link(k, COURIER_LINK_OFFLINE, out);
    k->dropping = 0;
    /* behaviour.md §2 disconnect: every QUEUED message becomes FAILED at once. */
    for (node_t *n = k->all.head.next; n != &k->all.head; n = n->next) {
        msg_t *m = CONTAINER(n, all);
        m->on_wire = 0;
        node_unlink(&m->sendq);
        node_unlink(&m->ackq);
        if (rc == COURIER_OK && m->row.state == COURIER_QUEUED)
            rc = set_state(&m->row, COURIER_FAILED, reason, 0, 1, now, out);
    }
    k->in_flight = 0;
    if (k->started && !k->auth_failed)
        /* behaviour.md §10: an attempt the network change overtook is
         * followed by the next one at once, not after a backoff */
        k->reconnect_at = k->reconnect_now ? now.mono_ms
                                           : now.mono_ms + next_backoff(k);
    else
        k->reconnect_at = -1;
    k->reconnect_now = 0;
    return rc;
}

static int on_tick(core_t *k, core_now_t now, core_out_t *out);

/* May a network change skip the backoff now? Then the next may only
 * after the skip period, which doubles from reconnect_min_ms up to
 * reconnect_max_ms: an app (or a flapping network) that reports changes
 * in a loop cannot make a reconnect storm against a server that cuts
 * every link (review L3). Returns 2 for the first skip since a link held
 * (the backoff may start over), 1 for a later one, 0 for none. */
static int take_skip(core_t *k, core_now_t now)
{
    if (k->skip_gap_ms && now.mono_ms < k->skip_until)
        return 0;
    int first = k->skip_gap_ms == 0;
    unsigned g = k->skip_gap_ms;
    k->skip_gap_ms = !g ? k->lim.reconnect_min_ms
                        : g >= k->lim.reconnect_max_ms / 2
                              ? k->lim.reconnect_max_ms
                              : g * 2;
    k->skip_until = now.mono_ms + k->skip_gap_ms;
    return first ? 2 : 1;
}

/* behaviour.md §10: the OS reports that connectivity changed. */
static int on_network_changed(core_t *k, core_now_t now, core_out_t *out)
{
    if (!k->started || k->auth_failed) {
        k->ignored = "network change while stopped or login refused";
        return COURIER_OK;
    }
    switch (k->link) {
    case COURIER_LINK_ONLINE:
        /* The socket may be bound to a network that is gone: probe it now.
         * Unanswered for ping_timeout_ms, the watchdog cuts it (on_tick);
         * a ping already unanswered keeps its earlier deadline. */
        if (k->dropping)
            return COURIER_OK;
        if (k->first_unanswered < 0)
            k->first_unanswered = now.mono_ms;
        k->next_ping = now.mono_ms + k->lim.ping_interval_ms;
        return emit_simple(out, CORE_ACT_PING, NULL, NULL);
    case COURIER_LINK_CONNECTING:
        /* Let the attempt run (a burst of OS reports must not churn it);
         * if it fails, the next one goes at once. */
        if (!k->reconnect_now && !take_skip(k, now)) {
            k->ignored = "network change within the skip period";
            return COURIER_OK;
        }
        k->reconnect_now = 1;
        return COURIER_OK;
    case COURIER_LINK_OFFLINE: {
        /* The backoff grew on the old network: connect now, and (the
         * first time since a link held) start it over from
         * reconnect_min_ms. */
        int skip = take_skip(k, now);
        if (!skip) {
            k->ignored = "network change within the skip period";
            return COURIER_OK;
        }
        if (skip == 2)
            k->backoff_ms = k->lim.reconnect_min_ms;
        k->reconnect_at = now.mono_ms;
        return on_tick(k, now, out);
    }
    }
    return COURIER_OK;
}

static int on_acked(core_t *k, const core_ev_t *ev, core_now_t now,
                    core_out_t *out)
{
    msg_t *m = ev->id ? find(k, ev->id) : NULL;
    if (!m && ev->row && ev->row->state == COURIER_FAILED &&
        (strcmp(ev->row->reason, REASON_EXPIRED) == 0 ||
         strcmp(ev->row->reason, REASON_CANCELLED) == 0)) {
        /* behaviour.md §1: it expired (or was cancelled, §9) on the wire,
         * and the server did take it: SENT, held again (a cancelled one is
         * never written again). (A bounced row stays: the bounce
         * outranks.) */
        m = msg_add(k, ev->row, now.wall_ms);
        if (!m)
            return COURIER_ENOMEM;
        confirmed(k, m);
        return set_state(&m->row, COURIER_SENT, "", 0, 1, now, out);
    }
    if (!m) {
        k->ignored = "ack for a message not held";
        return COURIER_OK;
    }
    wire_clear(k, m);
    int rc = COURIER_OK;
    /* A bounce after the write outranks the server's ack of that write. */
    if (!m->error_since_send && (m->row.state == COURIER_QUEUED ||
                                 m->row.state == COURIER_FAILED)) {
        confirmed(k, m);
        rc = set_state(&m->row, COURIER_SENT, "", 0, 1, now, out);
    }
    if (rc == COURIER_OK)
        rc = pump(k, now, out);
    return rc;
}

/* Does an event or error from `from` concern a message to `peer`? */
static int from_peer(const char *from, const char *peer)
{
    return from && strcmp(from, peer) == 0;
}

static int promote(core_out_t *out, const char *peer, int by_created,
                   int64_t before_ms)
{
    core_act_t *a = out_push(out, CORE_ACT_PROMOTE_DISPLAYED);
    if (!a)
        return COURIER_ENOMEM;
    util_strlcpy(a->peer, peer, sizeof(a->peer));
    a->by_created = by_created;
    a->before_ms = before_ms;
    return COURIER_OK;
}

/* Forward-only move of a held message; settles it when it is DELIVERED or
 * beyond. FAILED is outside the path: any event moves it on (behaviour.md §1). */
static int advance(core_t *k, msg_t *m, courier_state_t to, core_now_t now,
                   core_out_t *out)
{
    if (core_state_rank(to) <= core_state_rank(m->row.state))
        return COURIER_OK;
    confirmed(k, m);
    int rc = set_state(&m->row, to, "", 0, 1, now, out);
    if (to == COURIER_DELIVERED || to == COURIER_DISPLAYED)
        msg_remove(k, m);
    return rc;
}

/* behaviour.md §11: could the peer's device have shown `e` before the message it
 * marked (last written at `ref_ms`, write order `ref_wseq`)? Only if the
 * server took it from a write before that one and nothing bounced it
 * since. Held DELIVERED does not exist (settled). */
static int shown_before(const msg_t *e, int64_t ref_ms, uint64_t ref_wseq)
{
    if (e->error_since_send ||
        (e->row.state != COURIER_SENT && e->row.state != COURIER_OFFLINE))
        return 0;
    if (e->wseq && ref_wseq)
        return e->wseq < ref_wseq;
    return e->row.last_sent_ms <= ref_ms;
}

static int on_event(core_t *k, const core_ev_t *ev, core_now_t now,
                    core_out_t *out)
{
    courier_state_t to = ev->kind_state;
    if (!ev->id || !ev->peer ||
        (to != COURIER_OFFLINE && to != COURIER_DELIVERED &&
         to != COURIER_DISPLAYED))
        return COURIER_EINVAL;
    msg_t *m = find(k, ev->id);
    const core_row_t *row = m ? &m->row : ev->row;
    if (!row) {
        k->ignored = "event for an unknown id";
        return COURIER_OK;
    }
    /* behaviour.md §3: only the bare JID the message went to (the server's offline
     * event comes in the recipient's name). */
    if (!from_peer(ev->peer, row->peer)) {
        k->ignored = "event from a JID the message was not sent to";
        return COURIER_OK;
    }
    char peer[COURIER_JID_MAX];
    int64_t created = row->created_ms;
    int held = m != NULL; /* m may be freed by advance(): keep its seq */
    uint64_t ref_seq = held ? m->seq : 0, ref_wseq = held ? m->wseq : 0;
    int64_t ref_sent = row->last_sent_ms;
    int rc = COURIER_OK;
    util_strlcpy(peer, row->peer, sizeof(peer));
    if (core_state_rank(to) <= core_state_rank(row->state)) {
        k->ignored = "event would move the message backwards";
    } else if (m) {
        rc = advance(k, m, to, now, out);
    } else {
        core_row_t copy = *row; /* settled: the store's row, not held */
        rc = set_state(&copy, to, "", 0, 1, now, out);
        /* A permanently FAILED row moved to OFFLINE is unsettled again:
         * held, as a reload from the store would hold it. */
        if (rc == COURIER_OK && to == COURIER_OFFLINE) {
            msg_t *again = msg_add(k, &copy, now.wall_ms);
            if (!again)
                rc = COURIER_ENOMEM;
            else
                confirmed(k, again);
        }
    }
    /* behaviour.md §1: an XEP-0333 displayed also covers earlier messages, but
     * only those the device could have shown (behaviour.md §11). One that bounced
     * goes out again now: the peer's device is there to take it. */
    if (rc == COURIER_OK && ev->cumulative && to == COURIER_DISPLAYED) {
        node_t *n = k->all.head.next;
        while (rc == COURIER_OK && n != &k->all.head) {
            msg_t *e = CONTAINER(n, all);
            n = n->next;
            int earlier = held ? e->seq < ref_seq : e->row.created_ms <= created;
            if (!earlier || strcmp(e->row.peer, peer) != 0)
                continue;
            if (shown_before(e, ref_sent, ref_wseq))
                rc = advance(k, e, COURIER_DISPLAYED, now, out);
            else if (e->error_since_send && k->link == COURIER_LINK_ONLINE)
                sendq_add(k, e, CORE_CAUSE_PEER);
        }
        if (rc == COURIER_OK)
            rc = promote(out, peer, 1, created);
    }
    return rc == COURIER_OK ? pump(k, now, out) : rc;
}

static int transient_error(const core_ev_t *ev)
{
    return ev->err_type == CORE_ERR_WAIT ||
           (ev->condition &&
            (strcmp(ev->condition, "service-unavailable") == 0 ||
             strcmp(ev->condition, "recipient-unavailable") == 0));
}

static int on_error(core_t *k, const core_ev_t *ev, core_now_t now,
                    core_out_t *out)
{
    if (!ev->id || !ev->peer)
        return COURIER_EINVAL;
    msg_t *m = find(k, ev->id);
    if (!m) {
        /* Settled: DELIVERED/DISPLAYED never fail, FAILED stays so. */
        k->ignored = "error for a message not held";
        return COURIER_OK;
    }
    /* Bounces come from the recipient, or its server. */
    if (!from_peer(ev->peer, m->row.peer) &&
        strcmp(ev->peer, util_jid_domain(m->row.peer)) != 0) {
        k->ignored = "error from a JID the message was not sent to";
        return COURIER_OK;
    }
    const char *cond = ev->condition && ev->condition[0]
                           ? ev->condition : "undefined-condition";
    int permanent = 1;
    if (transient_error(ev))
        permanent = ++m->row.bounces >= MAX_BOUNCES;
    wire_clear(k, m);
    node_unlink(&m->sendq);
    node_unlink(&m->ackq);
    m->error_since_send = 1;
    int rc = set_state(&m->row, COURIER_FAILED, cond, permanent, 1, now, out);
    if (permanent)
        msg_remove(k, m);
    return rc == COURIER_OK ? pump(k, now, out) : rc;
}

static int receipt(core_out_t *out, const char *peer, const char *id,
                   courier_state_t state, unsigned asked)
{
    core_act_t *a = out_push(out, CORE_ACT_RECEIPT);
    if (!a)
        return COURIER_ENOMEM;
    util_strlcpy(a->id, id, sizeof(a->id));
    util_strlcpy(a->peer, peer, sizeof(a->peer));
    a->state = state;
    a->asked = asked;
    return COURIER_OK;
}

#define ASK_DELIVERED \
    (CORE_ASK_X22_DELIVERED | CORE_ASK_RECEIPT | CORE_ASK_MARKABLE)
#define ASK_DISPLAYED (CORE_ASK_X22_DISPLAYED | CORE_ASK_MARKABLE)

static int on_message(core_t *k, const core_ev_t *ev, core_now_t now,
                      core_out_t *out)
{
    if (!ev->id || !ev->peer || !util_id_valid(ev->id) || !ev->peer[0])
        return COURIER_EINVAL;
    int rc = COURIER_OK;
    /* behaviour.md §3: to the app exactly once; receipts also for a duplicate. */
    if (!ev->duplicate)
        rc = emit_simple(out, CORE_ACT_DELIVER, ev->id, ev->peer);
    if (rc == COURIER_OK && (ev->asked & ASK_DELIVERED))
        rc = receipt(out, ev->peer, ev->id, COURIER_DELIVERED,
                     ev->asked & ASK_DELIVERED);
    if (rc == COURIER_OK && ev->displayed_before && (ev->asked & ASK_DISPLAYED))
        rc = receipt(out, ev->peer, ev->id, COURIER_DISPLAYED,
                     ev->asked & ASK_DISPLAYED);
    if (rc != COURIER_OK || ev->duplicate)
        return rc;
    /* behaviour.md §2 peer activity (a): implicit read of what P's device has. */
    if (k->lim.implicit_read)
        rc = promote(out, ev->peer, 0, ev->sent_wall_ms);
    /* behaviour.md §2: P's device is there: bounces of what we hold for P
     * count again from zero (three in a row, with no sign of P between
     * them, make one FAILED for good). */
    for (node_t *n = k->all.head.next; n != &k->all.head; n = n->next) {
        msg_t *m = CONTAINER(n, all);
        if (strcmp(m->row.peer, ev->peer) == 0)
            m->row.bounces = 0;
    }
    /* (b): resend what P has not confirmed, unless written just now. */
    if (rc == COURIER_OK && k->link == COURIER_LINK_ONLINE) {
        for (node_t *n = k->all.head.next; n != &k->all.head; n = n->next) {
            msg_t *m = CONTAINER(n, all);
            if (strcmp(m->row.peer, ev->peer) == 0 &&
                now.wall_ms - m->row.last_sent_ms >=
                    (int64_t)k->lim.resend_grace_ms)
                sendq_add(k, m, CORE_CAUSE_PEER);
        }
        rc = pump(k, now, out);
    }
    return rc;
}

/* behaviour.md §9: the app gives up on a message. */
static int on_cancel(core_t *k, const core_ev_t *ev, core_now_t now,
                     core_out_t *out)
{
    if (!ev->id)
        return COURIER_EINVAL;
    msg_t *m = find(k, ev->id);
    const core_row_t *cur = m ? &m->row : ev->row;
    if (!cur || cur->cancelled)
        return COURIER_ESTATE;
    int failing = cur->state == COURIER_QUEUED || cur->state == COURIER_FAILED;
    if (!failing && !(ev->force && (cur->state == COURIER_SENT ||
                                    cur->state == COURIER_OFFLINE)))
        return COURIER_ESTATE;
    core_row_t copy = *cur;
    core_row_t *row = m ? &m->row : &copy;
    row->cancelled = 1;
    int rc = failing ? set_state(row, COURIER_FAILED, REASON_CANCELLED, 1, 1,
                                 now, out)
                     : set_state(row, row->state, row->reason, row->permanent,
                                 0, now, out);
    if (m && failing) {
        msg_remove(k, m);
    } else if (m) {
        /* SENT/OFFLINE: held until a receipt settles it, never resent */
        node_unlink(&m->sendq);
        node_unlink(&m->expq);
    }
    return rc == COURIER_OK ? pump(k, now, out) : rc;
}

static int on_mark_displayed(const core_ev_t *ev, core_out_t *out)
{
    if (!ev->id || !ev->peer)
        return COURIER_EINVAL;
    if (!(ev->asked & ASK_DISPLAYED))
        return COURIER_OK;
    return receipt(out, ev->peer, ev->id, COURIER_DISPLAYED,
                   ev->asked & ASK_DISPLAYED);
}

static int on_tick(core_t *k, core_now_t now, core_out_t *out)
{
    int rc = COURIER_OK;
    /* behaviour.md §2 ack timer */
    while (rc == COURIER_OK && !list_empty(&k->ackq)) {
        msg_t *m = CONTAINER(k->ackq.head.next, ackq);
        if (m->ack_deadline > now.mono_ms)
            break;
        node_unlink(&m->ackq);
        if (m->row.state == COURIER_QUEUED)
            rc = set_state(&m->row, COURIER_FAILED, "ack-timeout", 0, 1, now,
                           out);
    }
    /* behaviour.md §2 expiry */
    while (rc == COURIER_OK && !list_empty(&k->expq)) {
        msg_t *m = CONTAINER(k->expq.head.next, expq);
        if (now.wall_ms - m->expire_base < (int64_t)k->lim.max_age_ms)
            break;
        node_unlink(&m->expq);
        if (expired(k, m, now))
            rc = expire(k, m, now, out);
    }
    if (rc != COURIER_OK)
        return rc;
    switch (k->link) {
    case COURIER_LINK_ONLINE:
        /* behaviour.md §4 watchdog: a ping unanswered for ping_timeout_ms ends it */
        if (k->first_unanswered >= 0 &&
            now.mono_ms - k->first_unanswered >=
                (int64_t)k->lim.ping_timeout_ms) {
            if (!k->dropping) {
                k->dropping = 1;
                rc = emit_simple(out, CORE_ACT_DROP_LINK, NULL, NULL);
            }
        } else if (now.mono_ms >= k->next_ping) {
            if (k->first_unanswered < 0)
                k->first_unanswered = now.mono_ms;
            k->next_ping = now.mono_ms + k->lim.ping_interval_ms;
            rc = emit_simple(out, CORE_ACT_PING, NULL, NULL);
        }
        break;
    case COURIER_LINK_CONNECTING:
        /* A stalled connect or TLS handshake is cut after the same time a
         * silent link gets. */
        if (now.mono_ms - k->connect_started >=
                (int64_t)k->lim.ping_timeout_ms && !k->dropping) {
            k->dropping = 1;
            rc = emit_simple(out, CORE_ACT_DROP_LINK, NULL, NULL);
        }
        break;
    case COURIER_LINK_OFFLINE:
        if (k->started && !k->auth_failed && k->reconnect_at >= 0 &&
            now.mono_ms >= k->reconnect_at) {
            k->reconnect_at = -1;
            k->connect_started = now.mono_ms;
            k->dropping = 0;
            rc = emit_link(k, COURIER_LINK_CONNECTING, out);
            if (rc == COURIER_OK)
                rc = emit_simple(out, CORE_ACT_CONNECT, NULL, NULL);
        }
        break;
    }
    return rc;
}

/* ---- public -------------------------------------------------------- */

int core_new(core_t **out, const core_limits_t *lim)
{
    *out = NULL;
    if (!lim || lim->max_in_flight == 0 || lim->reconnect_min_ms == 0 ||
        lim->reconnect_max_ms < lim->reconnect_min_ms ||
        lim->ping_interval_ms == 0 || lim->ping_timeout_ms == 0)
        return COURIER_EINVAL;
    core_t *k = util_calloc(1, sizeof(*k));
    if (!k)
        return COURIER_ENOMEM;
    k->nbuckets = 64;
    k->buckets = util_calloc(k->nbuckets, sizeof(*k->buckets));
    if (!k->buckets) {
        util_free(k);
        return COURIER_ENOMEM;
    }
    k->lim = *lim;
    list_init(&k->all);
    list_init(&k->sendq);
    list_init(&k->ackq);
    list_init(&k->expq);
    k->link = COURIER_LINK_OFFLINE;
    k->first_unanswered = -1;
    k->reconnect_at = -1;
    k->backoff_ms = lim->reconnect_min_ms;
    k->rng = lim->random_seed ? lim->random_seed : 0x9E3779B97F4A7C15ULL;
    *out = k;
    return COURIER_OK;
}

void core_free(core_t *k)
{
    if (!k)
        return;
    while (!list_empty(&k->all))
        msg_remove(k, CONTAINER(k->all.head.next, all));
    util_free(k->buckets);
    util_free(k);
}

int core_load(core_t *k, const core_row_t *row)
{
    if (!row || !util_id_valid(row->id))
        return COURIER_EINVAL;
    if (settled(row) || find(k, row->id))
        return COURIER_OK;
    return msg_add(k, row, row->created_ms) ? COURIER_OK : COURIER_ENOMEM;
}

int core_feed(core_t *k, const core_ev_t *ev, core_now_t now, core_out_t *out)
{
    if (!k || !ev || !out)
        return COURIER_EINVAL;
    k->ignored = NULL;
    switch (ev->type) {
    case CORE_EV_SEND: return on_send(k, ev, now, out);
    case CORE_EV_RETRY: return on_retry(k, ev, now, out);
    case CORE_EV_LINK_UP: return on_link_up(k, now, out);
    case CORE_EV_LINK_DOWN: return on_link_down(k, now, out, "link-lost");
    case CORE_EV_AUTH_FAILED:
        k->auth_failed = 1; /* behaviour.md §4: no retry loop on a refused login */
        return on_link_down(k, now, out, "auth-failed");
    case CORE_EV_STOP:
        k->started = 0;
        k->reconnect_at = -1;
        k->reconnect_now = 0;
        return COURIER_OK;
    case CORE_EV_START:
        k->started = 1;
        k->auth_failed = 0;
        k->backoff_ms = k->lim.reconnect_min_ms;
        if (k->link == COURIER_LINK_OFFLINE)
            k->reconnect_at = now.mono_ms;
        return on_tick(k, now, out);
    case CORE_EV_INBOUND:
        /* behaviour.md §4: any inbound data counts as an answer. */
        k->first_unanswered = -1;
        k->next_ping = now.mono_ms + k->lim.ping_interval_ms;
        return COURIER_OK;
    case CORE_EV_ACKED: return on_acked(k, ev, now, out);
    case CORE_EV_EVENT: return on_event(k, ev, now, out);
    case CORE_EV_ERROR: return on_error(k, ev, now, out);
    case CORE_EV_MESSAGE: return on_message(k, ev, now, out);
    case CORE_EV_MARK_DISPLAYED: return on_mark_displayed(ev, out);
    case CORE_EV_TICK: return on_tick(k, now, out);
    case CORE_EV_NETWORK_CHANGED: return on_network_changed(k, now, out);
    case CORE_EV_CANCEL: return on_cancel(k, ev, now, out);
    }
    return COURIER_EINVAL;
}

static int64_t earliest(int64_t a, int64_t b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

int64_t core_next_deadline(const core_t *k, core_now_t now)
{
    int64_t d = -1;
    if (!list_empty(&k->expq)) {
        /* expiry runs on the wall clock: convert to a mono deadline */
        const msg_t *m = CONTAINER(k->expq.head.next, expq);
        int64_t left = m->expire_base + (int64_t)k->lim.max_age_ms -
                       now.wall_ms;
        d = now.mono_ms + (left > 0 ? left : 0);
    }
    if (!list_empty(&k->ackq))
        d = earliest(d, CONTAINER(k->ackq.head.next, ackq)->ack_deadline);
    switch (k->link) {
    case COURIER_LINK_ONLINE:
        if (k->first_unanswered >= 0 && !k->dropping)
            d = earliest(d, k->first_unanswered + k->lim.ping_timeout_ms);
        if (!k->dropping)
            d = earliest(d, k->next_ping);
        break;
    case COURIER_LINK_CONNECTING:
        if (!k->dropping)
            d = earliest(d, k->connect_started + k->lim.ping_timeout_ms);
        break;
    case COURIER_LINK_OFFLINE:
        if (k->started && !k->auth_failed)
            d = earliest(d, k->reconnect_at);
        break;
    }
    return d;
}

void core_get_stats(const core_t *k, core_stats_t *out)
{
    *out = k->stats;
}

const core_row_t *core_find(const core_t *k, const char *id)
{
    const msg_t *m = id ? find(k, id) : NULL;
    return m ? &m->row : NULL;
}

size_t core_unsettled(const core_t *k)
{
    return k->count;
}

size_t core_in_flight(const core_t *k)
{
    return k->in_flight;
}

int core_owes_writes(const core_t *k)
{
    return !list_empty(&k->sendq) || k->in_flight > 0;
}

courier_link_t core_link(const core_t *k)
{
    return k->link;
}

int core_link_up(const core_t *k)
{
    return k->link == COURIER_LINK_ONLINE;
}

const char *core_ignored(const core_t *k)
{
    return k->ignored;
}

int core_started(const core_t *k)
{
    return k->started;
}

int core_auth_failed(const core_t *k)
{
    return k->auth_failed;
}

void core_restore_started(core_t *k, int64_t mono_now)
{
    k->started = 1;
    if (k->link == COURIER_LINK_OFFLINE)
        k->reconnect_at = mono_now;
}
