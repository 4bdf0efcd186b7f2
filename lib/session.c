/* SPDX-License-Identifier: MIT */
#include "session.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <strophe.h>

#include "codec.h"
#include "hostile.h"
#include "push.h"
#include "trust.h"
#include "util.h"

#define NS_SM "urn:xmpp:sm:3"
#define NS_CSI "urn:xmpp:csi:0"
#define OUTQ_MAX ENGINE_OUTQ_MAX /* written, not yet acked, per stream */
/* The goodbye waits this long for the server's </stream>, then cuts the
 * socket. Below libstrophe 0.12's own 2 s disconnect timeout: when that
 * fires on a server that stopped answering, its TLS close waits on the
 * socket again (~0.8 s more, measured); a socket we shut down first
 * fails at once (behaviour.md §10: courier_stop is bounded). */
#define CLOSE_WAIT_MS 1500
#define CUT_WAIT_MS 500
#define SM_WAIT_MS 5000 /* no answer to <enable/>: acks by ping instead */
#define SHOWN_PEERS 16  /* peers whose answered forms are remembered */

/* One stanza of ours written to the current stream (XEP-0198 counting). */
typedef enum { OUT_OTHER, OUT_MSG, OUT_RCPT } out_kind_t;

typedef struct {
    uint32_t seq;
    out_kind_t kind;
    char id[COURIER_ID_MAX];
    int64_t rid;
} out_entry_t;

struct session {
    engine_t *e;
    xmpp_ctx_t *ctx;
    xmpp_conn_t *conn;
    xmpp_log_t log;
    xmpp_mem_t mem;         /* ours: behaviour.md §11 bounds (hostile.c) */
    hostile_t hx;
    int fd;                 /* the socket, from the sockopt callback */
    int connecting;         /* xmpp_connect_client issued, no disconnect */
    int streaming;          /* logged in over TLS: writing is safe */
    int online;             /* the engine was told LINK_UP */
    int sm;                 /* the server enabled stream management */
    int sm_pending;         /* <enable/> sent, no answer yet */
    int features_seen;      /* this connection's stream features logged */
    int sm_offered;         /* the last of them offered XEP-0198 */
    int csi_offered;        /* ... and XEP-0352 */
    int csi_sent;           /* state told this stream: 1, 0; -1 none */
    push_t *push;           /* XEP-0357 (lib/push.c), may be NULL */
    atomic_uint sync_req;   /* courier_sync round trips asked for */
    atomic_uint sync_done;  /* ... the last one answered */
    unsigned sync_sent;     /* ... the last one written on this stream */
    int auth_refused;       /* libstrophe logged an authentication failure */
    int debug_strophe;      /* COURIER_DEBUG_STROPHE, read once at open */
    trust_t trust;          /* behaviour.md §10: certificate failures of
                               this handshake, for on_certificate */
    uint32_t out_h;         /* our stanzas since <enable/> */
    uint32_t in_h;          /* the server's stanzas since <enabled/> */
    uint32_t r_asked_at;    /* out_h when we last sent <r/> */
    uint32_t ackping_seq;   /* no SM: out_h covered by the pending ack ping */
    int ackping_pending;
    char ackping_id[32];
    int64_t sm_deadline;    /* mono: give up waiting for <enabled/> */
    int ack_poisoned;       /* a counted message was not stored: never
                               acknowledge this stream again */
    uint64_t inbound;       /* stanzas handled, to spot TLS-buffered input */
    int in_handlers;        /* our handlers of one whole stanza are running */
    uint32_t trip_in_h;     /* in_h when the parser's memory bound tripped */
    int trip_in_handlers;   /* ...and whether that stanza was whole (and so
                               counted) by then */
    unsigned ping_n;
    /* Issue 17: peers whose clients have shown which forms they answer
     * (codec_msg_t.shown), so messages to them leave out the XEP-0022
     * requests those forms replace. In memory only, a few peers, the
     * oldest replaced: a peer not here gets every request. */
    struct {
        char peer[COURIER_JID_MAX];
        unsigned shown;
    } shown[SHOWN_PEERS];
    unsigned shown_next;
    out_entry_t *outq;      /* ring */
    size_t outq_head, outq_len;
    pthread_t thread;
    int has_thread;
    atomic_int stop;
    int driven_started;
    void (*exit_fn)(void *);
    void *exit_ud;
    struct session *reg_next;
    /* Stall guard (libstrophe has no handshake timeout: a server that
     * stalls the TLS handshake blocks xmpp_run_once forever; behaviour.md
     * §10): another thread cuts the socket. */
    pthread_t guard;
    int has_guard;
    pthread_mutex_t guard_mu;
    pthread_cond_t guard_cv;
    int64_t busy_since;     /* mono, while inside a pre-login run_once */
    int guard_stop;
    atomic_int fd_shared;   /* the socket, readable from the guard */
};

static void *guard_main(void *arg);
static void on_trip(void *ud, hostile_reason_t why);

/* libstrophe's sockopt callback gets no user data: sessions are found by
 * their connection in this registry (the only process-wide state). */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static session_t *reg_head;

static void reg_add(session_t *s)
{
    pthread_mutex_lock(&reg_mu);
    s->reg_next = reg_head;
    reg_head = s;
    pthread_mutex_unlock(&reg_mu);
}

/* behaviour.md §10: a handle stalled in a TLS handshake holds libstrophe's
 * lock (below), which every other handle's stop waits for. While a stop
 * waits, every stall guard cuts its handshake after STOP_STALL_GRACE_MS
 * instead of ping_timeout_ms (that attempt is retried after the backoff). */
static atomic_int stops_waiting;
#define STOP_STALL_GRACE_MS 250

static void stops_waiting_add(int n)
{
    atomic_fetch_add(&stops_waiting, n);
    if (n <= 0)
        return;
    pthread_mutex_lock(&reg_mu);
    for (session_t *x = reg_head; x; x = x->reg_next) {
        pthread_mutex_lock(&x->guard_mu);
        pthread_cond_signal(&x->guard_cv);
        pthread_mutex_unlock(&x->guard_mu);
    }
    pthread_mutex_unlock(&reg_mu);
}

static void reg_remove(session_t *s)
{
    pthread_mutex_lock(&reg_mu);
    for (session_t **pp = &reg_head; *pp; pp = &(*pp)->reg_next)
        if (*pp == s) {
            *pp = s->reg_next;
            break;
        }
    pthread_mutex_unlock(&reg_mu);
}

/* libstrophe 0.12 is not safe across threads even with one context per
 * thread: two handles logging in at once fail SCRAM (seen here). Every
 * libstrophe call runs under this process-wide recursive lock; handlers run
 * inside xmpp_run_once and re-enter it. Lock order: strophe, then engine. */
static pthread_once_t strophe_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t strophe_mu;

static void strophe_init(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&strophe_mu, &a);
    pthread_mutexattr_destroy(&a);
    xmpp_initialize();
}

static void strophe_lock(void)
{
    pthread_mutex_lock(&strophe_mu);
}

static void strophe_unlock(void)
{
    pthread_mutex_unlock(&strophe_mu);
}

/* ---- logging -------------------------------------------------------- */

/* behaviour.md §6: a stanza of the SASL exchange (PLAIN carries the password,
 * SCRAM what an offline guess needs) or of legacy iq:auth, as libstrophe's
 * debug log renders it ("SENT: <auth ...>"). The features that only list
 * mechanisms are harmless. */
static int shows_credentials(const char *msg)
{
    if (strncmp(msg, "SENT: ", 6) != 0 && strncmp(msg, "RECV: ", 6) != 0)
        return 0;
    /* the push secret and device token (XEP-0357) are credentials too */
    if (strstr(msg, "jabber:iq:auth") || strstr(msg, "urn:xmpp:push:0"))
        return 1;
    return strstr(msg, "urn:ietf:params:xml:ns:xmpp-sasl") &&
           strncmp(msg + 6, "<features", 9) != 0;
}

static int ask_app(void *ud, const char *host, const char *pem_chain)
{
    session_t *s = ud;
    return engine_ask_certificate(s->e, host, pem_chain);
}

/* The handshake is over and its certificate failed OpenSSL's checks (the
 * certfail handler let it go on): on_certificate decides, the name checked
 * first by trust.c. Refused: the socket is shut, so what libstrophe queues
 * next (its <auth/>) never leaves the machine. */
static void trust_gate(session_t *s)
{
    char why[sizeof(s->trust.why)];
    util_strlcpy(why, s->trust.why, sizeof(why));
    xmpp_tlscert_t *leaf = xmpp_conn_get_peer_cert(s->conn);
    const char *host = util_jid_domain(engine_self(s->e));
    trust_verdict_t v = trust_decide(&s->trust,
                                     leaf ? xmpp_tlscert_get_pem(leaf) : NULL,
                                     host, ask_app, s);
    if (leaf)
        xmpp_tlscert_free(leaf);
    engine_log(s->e, v == TRUST_ACCEPT ? COURIER_LOG_INFO : COURIER_LOG_WARN,
               "certificate of %s not verified by OpenSSL (%s): %s", host,
               why, trust_verdict_text(v));
    if (v != TRUST_ACCEPT && s->fd >= 0)
        shutdown(s->fd, SHUT_RDWR);
}

static void strophe_log(void *ud, xmpp_log_level_t level, const char *area,
                        const char *msg)
{
    session_t *s = ud;
    /* A refused login only shows in this log line (behaviour.md §4). Only
     * libstrophe's own error line: its debug lines carry received stanzas,
     * so a peer could write the words (behaviour.md §11). */
    if (level == XMPP_LEVEL_ERROR &&
        (strncmp(msg, "Cannot authenticate with known methods", 38) == 0 ||
         strncmp(msg, "Legacy client authentication failed", 35) == 0))
        s->auth_refused = 1;
    /* behaviour.md §11: libstrophe only logs a parse error (and keeps the socket
     * open, unread); each stanza it renders marks a stanza boundary. */
    if (strcmp(area, "xmpp") == 0 && strncmp(msg, "parse error", 11) == 0)
        hostile_trip(&s->hx, HOSTILE_BAD_XML);
    else if (strncmp(msg, "RECV: ", 6) == 0)
        hostile_stanza_done(&s->hx);
    /* libstrophe 0.12 has no getter for the stream features and user
     * handlers see none (they run only after login); its debug log renders
     * each stanza received, features included: the last ones before the
     * connect callback tell whether XEP-0198 is offered. */
    if (!s->streaming && strcmp(area, "xmpp") == 0 &&
        strncmp(msg, "RECV: <features ", 16) == 0) {
        /* behaviour.md §10: the first features after a handshake whose
         * certificate OpenSSL could not verify: decide now, before
         * libstrophe's SASL handler writes the credentials (it runs
         * after this line is logged, in this same turn). */
        if (trust_pending(&s->trust))
            trust_gate(s);
        s->features_seen = 1;
        s->sm_offered = strstr(msg, "xmlns=\"" NS_SM "\"") != NULL;
        s->csi_offered = strstr(msg, "xmlns=\"" NS_CSI "\"") != NULL;
    }
    if (level < XMPP_LEVEL_WARN && !s->debug_strophe)
        return; /* libstrophe's debug output includes raw stanzas */
    int lvl = level == XMPP_LEVEL_ERROR ? COURIER_LOG_WARN : COURIER_LOG_DEBUG;
    if (shows_credentials(msg)) {
        size_t name = strcspn(msg + 6, " >/");
        engine_log(s->e, lvl, "libstrophe %s: %.6s%.*s ... (credentials not "
                   "logged)", area, msg, (int)(name < 24 ? name : 24),
                   msg + 6);
        return;
    }
    engine_log(s->e, lvl, "libstrophe %s: %s", area, msg);
}

/* ---- sending, counted --------------------------------------------------- */

static void outq_push(session_t *s, out_kind_t kind, const char *id,
                      int64_t rid)
{
    s->out_h++;
    if (kind == OUT_OTHER)
        return; /* counted, nothing to confirm */
    if (s->outq_len == OUTQ_MAX) {
        /* The server stopped acknowledging: a link that cannot confirm
         * is cut; the store resends what it holds. */
        engine_log(s->e, COURIER_LOG_WARN, "%d stanzas unacknowledged: "
                   "dropping the link", OUTQ_MAX);
        if (s->fd >= 0)
            shutdown(s->fd, SHUT_RDWR);
        return;
    }
    out_entry_t *x = &s->outq[(s->outq_head + s->outq_len++) % OUTQ_MAX];
    x->seq = s->out_h;
    x->kind = kind;
    x->rid = rid;
    util_strlcpy(x->id, id ? id : "", sizeof(x->id));
}

/* The server has processed our stanzas up to `h`. */
static void ack_upto(session_t *s, uint32_t h)
{
    engine_ack_t acks[64]; /* one commit per 64 (ids point into outq) */
    size_t n = 0;
    while (s->outq_len) {
        out_entry_t *x = &s->outq[s->outq_head];
        if ((int32_t)(x->seq - h) > 0)
            break;
        if (x->kind == OUT_MSG)
            acks[n++] = (engine_ack_t){ .id = x->id };
        else if (x->kind == OUT_RCPT)
            acks[n++] = (engine_ack_t){ .rid = x->rid };
        if (n == sizeof(acks) / sizeof(acks[0])) {
            engine_acked_batch(s->e, acks, n);
            n = 0;
        }
        s->outq_head = (s->outq_head + 1) % OUTQ_MAX;
        s->outq_len--;
    }
    if (n)
        engine_acked_batch(s->e, acks, n);
}

static int send_stanza(session_t *s, xmpp_stanza_t *st, out_kind_t kind,
                       const char *id, int64_t rid)
{
    if (!st)
        return COURIER_ENOMEM;
    /* libstrophe: before the connect callback a send may go out before
     * STARTTLS, and while disconnected it drops a send silently. */
    if (!s->streaming) {
        xmpp_stanza_release(st);
        return COURIER_ENOTCONN;
    }
    /* Review M2: xmpp_send renders the stanza and, if that fails (no
     * memory), only logs it. Counted anyway, the server's h would lag ours
     * by one from here on and acknowledge a message that never left: it
     * counts only if it was queued (libstrophe 0.12 queues, writing
     * happens in xmpp_run_once). */
    int before = xmpp_conn_send_queue_len(s->conn);
    xmpp_send(s->conn, st);
    int queued = xmpp_conn_send_queue_len(s->conn) > before;
    xmpp_stanza_release(st);
    if (!queued) {
        engine_log(s->e, COURIER_LOG_WARN, "a stanza failed to render: not "
                   "sent%s", kind == OUT_MSG ? " (the message waits for its "
                   "ack timer or the next link)" : "");
        return COURIER_ENOMEM;
    }
    outq_push(s, kind, id, rid);
    return COURIER_OK;
}

static void ask_ack(session_t *s)
{
    if (!s->online || s->sm_pending || s->out_h == s->r_asked_at)
        return;
    if (s->sm) {
        xmpp_send_raw_string(s->conn, "<r xmlns='" NS_SM "'/>");
        s->r_asked_at = s->out_h;
    } else if (!s->ackping_pending) {
        /* No SM: the answer to a ping proves the server handled what we
         * wrote before it (behaviour.md §1 SENT). */
        snprintf(s->ackping_id, sizeof(s->ackping_id), "ack-%u",
                 ++s->ping_n);
        xmpp_stanza_t *p = codec_build_ping(
            s->ctx, util_jid_domain(engine_self(s->e)), s->ackping_id);
        if (send_stanza(s, p, OUT_OTHER, NULL, 0) != COURIER_OK)
            return;
        s->ackping_pending = 1;
        s->ackping_seq = s->out_h;
        s->r_asked_at = s->out_h;
    }
}

/* behaviour.md §10: tell the server the app's state (XEP-0352) when it
 * changed, and again after every login (a new stream starts active, so
 * only background needs saying then). A nonza: not counted by SM. */
static void csi_sync(session_t *s)
{
    if (!s->online || !s->csi_offered)
        return;
    int want = engine_is_active(s->e);
    if (s->csi_sent == want || (s->csi_sent < 0 && want))
        return;
    xmpp_send_raw_string(s->conn, want ? "<active xmlns='" NS_CSI "'/>"
                                       : "<inactive xmlns='" NS_CSI "'/>");
    s->csi_sent = want;
    engine_log(s->e, COURIER_LOG_DEBUG, "client state sent: %s (XEP-0352)",
               want ? "active" : "inactive");
}

/* courier_sync: one ping per request, written once online; its answer
 * comes after everything the server had for us (offline storage is
 * flushed at our initial presence, which went before it). */
static void sync_ping(session_t *s)
{
    unsigned want = atomic_load(&s->sync_req);
    if (!s->online || s->sync_sent == want)
        return;
    char id[32];
    snprintf(id, sizeof(id), "sync-%u", want);
    if (send_stanza(s, codec_build_ping(s->ctx,
                                        util_jid_domain(engine_self(s->e)),
                                        id),
                    OUT_OTHER, NULL, 0) == COURIER_OK)
        s->sync_sent = want;
}

/* behaviour.md §10: the push registration after every login, and the
 * app's changes; counted like any iq of ours. */
static int push_send(void *ud, xmpp_stanza_t *st)
{
    return send_stanza(ud, st, OUT_OTHER, NULL, 0);
}

static void push_sync(session_t *s)
{
    if (s->push)
        push_pump(s->push, s->ctx, s->online, push_send, s);
}

void session_set_push(session_t *s, push_t *p)
{
    s->push = p;
}

unsigned session_sync_request(session_t *s)
{
    unsigned n = atomic_fetch_add(&s->sync_req, 1) + 1;
    engine_wake(s->e);
    return n;
}

int session_sync_done(session_t *s, unsigned n)
{
    return (int)(atomic_load(&s->sync_done) - n) >= 0;
}

/* ---- transport, called by engine_dispatch on the loop thread ---------- */

/* The forms `peer` (bare) has been seen answering in (CODEC_SHOWN_*). */
static unsigned shown_by(const session_t *s, const char *peer)
{
    for (size_t i = 0; i < SHOWN_PEERS; i++)
        if (s->shown[i].shown && strcmp(s->shown[i].peer, peer) == 0)
            return s->shown[i].shown;
    return 0;
}

static void note_shown(session_t *s, const char *peer, unsigned shown)
{
    size_t i;
    for (i = 0; i < SHOWN_PEERS; i++)
        if (s->shown[i].shown && strcmp(s->shown[i].peer, peer) == 0)
            break;
    if (i == SHOWN_PEERS) {
        i = s->shown_next++ % SHOWN_PEERS;
        util_strlcpy(s->shown[i].peer, peer, sizeof(s->shown[i].peer));
        s->shown[i].shown = 0;
    }
    s->shown[i].shown |= shown;
}

static void tp_send_chat_locked(void *ud, const core_row_t *row,
                                const char *body, const char *meta)
{
    session_t *s = ud;
    /* Issue 17: requests the peer's client answers in newer forms are left
     * out (codec_build_chat_for); behaviour.md §8. */
    xmpp_stanza_t *st = codec_build_chat_for(
        s->ctx, row->peer, row->id, row->kind, body, row->created_ms,
        engine_self(s->e), row->attempts > 0 ? row->attempts - 1 : 0,
        shown_by(s, row->peer));
    if (st && codec_add_meta(st, meta) != 0) {
        xmpp_stanza_release(st);
        st = NULL;
    }
    send_stanza(s, st, OUT_MSG, row->id, 0);
}

int (*session_fault_drop_receipt)(const char *peer, const char *id,
                                  courier_state_t state);

static void tp_send_receipt_locked(void *ud, const store_rcpt_t *r)
{
    session_t *s = ud;
    if (session_fault_drop_receipt &&
        session_fault_drop_receipt(r->peer, r->id, r->state)) {
        engine_receipt_acked(s->e, r->rid);
        return;
    }
    xmpp_stanza_t *st =
        r->retract ? codec_build_retraction(s->ctx, r->peer, r->id)
                   : codec_build_receipt(s->ctx, r->peer, r->id, r->state,
                                         r->asked);
    if (!st) { /* no form applies: nothing is owed */
        engine_receipt_acked(s->e, r->rid);
        return;
    }
    send_stanza(s, st, OUT_RCPT, NULL, r->rid);
}

static void tp_send_composing_locked(void *ud, const char *peer,
                                     const char *last, int on)
{
    session_t *s = ud;
    send_stanza(s, codec_build_composing(s->ctx, peer, last, on), OUT_OTHER,
                NULL, 0);
}

static void tp_ping_locked(void *ud)
{
    session_t *s = ud;
    char id[32];
    snprintf(id, sizeof(id), "ping-%u", ++s->ping_n);
    send_stanza(s, codec_build_ping(s->ctx,
                                    util_jid_domain(engine_self(s->e)), id),
                OUT_OTHER, NULL, 0);
}

/* A dead link is cut at once: shutdown() makes libstrophe see EOF; a
 * polite close would wait for a peer that is gone (behaviour.md §4). */
static void tp_drop_link(void *ud)
{
    session_t *s = ud;
    if (s->fd >= 0)
        shutdown(s->fd, SHUT_RDWR);
}

static void conn_handler(xmpp_conn_t *conn, xmpp_conn_event_t ev, int err,
                         xmpp_stream_error_t *se, void *ud);

static void tp_connect_locked(void *ud)
{
    session_t *s = ud;
    const courier_config_t *cfg = engine_config(s->e);
    if (s->connecting)
        return;
    s->auth_refused = 0;
    s->features_seen = s->sm_offered = s->csi_offered = 0;
    s->csi_sent = -1;
    trust_reset(&s->trust);
    s->fd = -1;
    atomic_store(&s->fd_shared, -1);
    /* The whole flag word, set at once: libstrophe's SM off (the acks are
     * ours, behaviour.md §1), TLS mandatory (§6). */
    long flags = XMPP_CONN_FLAG_DISABLE_SM;
    flags |= cfg->allow_plaintext ? 0 : XMPP_CONN_FLAG_MANDATORY_TLS;
    xmpp_conn_set_flags(s->conn, flags);
    int rc = xmpp_connect_client(s->conn, cfg->host, cfg->port, conn_handler,
                                 s);
    if (rc != XMPP_EOK) {
        engine_log(s->e, COURIER_LOG_WARN, "connect to %s failed at once "
                   "(%d)", cfg->host ? cfg->host : "the JID's domain", rc);
        engine_feed(s->e, CORE_EV_LINK_DOWN);
        return;
    }
    s->connecting = 1;
}

static void tp_send_chat(void *ud, const core_row_t *row, const char *body,
                         const char *meta)
{
    strophe_lock();
    tp_send_chat_locked(ud, row, body, meta);
    strophe_unlock();
}

static void tp_send_receipt(void *ud, const store_rcpt_t *r)
{
    strophe_lock();
    tp_send_receipt_locked(ud, r);
    strophe_unlock();
}

static void tp_send_composing(void *ud, const char *peer, const char *last,
                              int on)
{
    strophe_lock();
    tp_send_composing_locked(ud, peer, last, on);
    strophe_unlock();
}

static void tp_ping(void *ud)
{
    strophe_lock();
    tp_ping_locked(ud);
    strophe_unlock();
}

static void tp_connect(void *ud)
{
    strophe_lock();
    tp_connect_locked(ud);
    strophe_unlock();
}

static const engine_transport_t transport = {
    .send_chat = tp_send_chat,
    .send_receipt = tp_send_receipt,
    .send_composing = tp_send_composing,
    .ping = tp_ping,
    .drop_link = tp_drop_link,
    .connect = tp_connect,
};

/* ---- libstrophe handlers -------------------------------------------- */

static void go_online(session_t *s)
{
    s->online = 1;
    engine_feed(s->e, CORE_EV_LINK_UP);
}

static int count_inbound(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    (void)conn;
    session_t *s = ud;
    const char *name = xmpp_stanza_get_name(st);
    s->inbound++;
    s->in_handlers = 1; /* the first handler; damage_handler is the last */
    hostile_stanza_done(&s->hx);
    engine_feed(s->e, CORE_EV_INBOUND); /* behaviour.md §4: any data answers */
    if (s->sm && name && (strcmp(name, "message") == 0 ||
                          strcmp(name, "presence") == 0 ||
                          strcmp(name, "iq") == 0))
        s->in_h++;
    return 1;
}

/* Something counted in in_h is not stored (disk full, no memory):
 * acknowledging it would let the server forget it. Never ack this stream
 * again and cut it: the server keeps the message for the next session. */
static void poison_acks(session_t *s, int rc)
{
    if (s->ack_poisoned)
        return;
    s->ack_poisoned = 1;
    engine_log(s->e, COURIER_LOG_ERROR, "incoming message not stored (%s): "
               "dropping the link so the server keeps it",
               courier_strerror(rc));
    if (s->fd >= 0)
        shutdown(s->fd, SHUT_RDWR);
}

static int sm_handler(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    (void)conn;
    session_t *s = ud;
    const char *name = xmpp_stanza_get_name(st);
    if (!name)
        return 1;
    if (strcmp(name, "enabled") == 0 && s->sm_pending) {
        s->sm_pending = 0;
        s->sm = 1;
        s->in_h = 0;
        go_online(s);
    } else if (strcmp(name, "failed") == 0 && s->sm_pending) {
        s->sm_pending = 0;
        engine_log(s->e, COURIER_LOG_INFO, "server refused stream "
                   "management: acks by ping");
        go_online(s);
    } else if (strcmp(name, "r") == 0 && s->sm && !s->ack_poisoned) {
        /* What in_h counts must be committed before the server hears it */
        int rc = engine_batch_flush(s->e);
        if (rc != COURIER_OK)
            poison_acks(s, rc);
        else
            xmpp_send_raw_string(s->conn, "<a xmlns='" NS_SM "' h='%" PRIu32
                                 "'/>", s->in_h);
    } else if (strcmp(name, "a") == 0 && s->sm) {
        const char *h = xmpp_stanza_get_attribute(st, "h");
        char *end = NULL;
        unsigned long v = h && h[0] >= '0' && h[0] <= '9'
                              ? strtoul(h, &end, 10) : 0;
        if (!end || *end != '\0' || v > UINT32_MAX ||
            (int32_t)((uint32_t)v - s->out_h) > 0) {
            /* An ack for stanzas we never wrote would mark unsent
             * messages SENT: a server that does that cannot be trusted
             * with this stream. */
            engine_log(s->e, COURIER_LOG_WARN, "bad <a h='%.16s'/> (we "
                       "wrote %" PRIu32 "): dropping the link",
                       h ? h : "", s->out_h);
            if (s->fd >= 0)
                shutdown(s->fd, SHUT_RDWR);
        } else {
            ack_upto(s, (uint32_t)v);
        }
    }
    return 1;
}

static int message_handler(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    (void)conn;
    session_t *s = ud;
    if (hostile_damaged(&s->hx)) {
        /* behaviour.md §11: its text was refused half-way (hostile.h): dropped
         * like an oversized body, the link kept; counted in h, so its
         * sender hears the same refusal (never an error for an error). */
        const char *type = xmpp_stanza_get_type(st);
        const char *from = xmpp_stanza_get_from(st);
        const char *id = xmpp_stanza_get_id(st);
        engine_log(s->e, COURIER_LOG_WARN, "dropped a message whose text "
                   "costs too much to join (from %.64s)", from ? from : "?");
        if (from && id && *id &&
            (!type || strcmp(type, "chat") == 0 ||
             strcmp(type, "normal") == 0))
            send_stanza(s, codec_build_refusal(s->ctx, st,
                                               "policy-violation",
                                               "text too costly to join"),
                        OUT_OTHER, NULL, 0);
        return 1;
    }
    codec_limits_t lim = { engine_config(s->e)->max_body_bytes };
    codec_msg_t m;
    int rc = codec_parse_message(st, &lim, &m);
    if (rc == COURIER_OK && m.cls == CODEC_IGNORE && m.refuse) {
        /* behaviour.md §11: counted in h, so the server forgets it; the sender
         * must hear that it was not taken. */
        engine_log(s->e, COURIER_LOG_INFO, "refused a message from %s "
                   "(%s): %s sent back", m.from, m.why, m.refuse);
        send_stanza(s, codec_build_refusal(s->ctx, st, m.refuse, m.why),
                    OUT_OTHER, NULL, 0);
    }
    /* Only from a message taken (not ignored, not an error): its sender
     * is the server-stamped, normalised bare JID (codec). */
    if (rc == COURIER_OK && m.shown &&
        (m.cls == CODEC_CHAT || m.cls == CODEC_EVENTS))
        note_shown(s, m.from, m.shown);
    if (rc == COURIER_OK)
        rc = engine_incoming(s->e, &m);
    codec_msg_clear(&m);
    if (rc != COURIER_OK)
        poison_acks(s, rc);
    return 1;
}

/* Only our server (or our own account) may answer our pings. */
static int from_our_server(session_t *s, xmpp_stanza_t *st)
{
    return util_from_own_server(xmpp_stanza_get_from(st), engine_self(s->e));
}

static int iq_handler(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    (void)conn;
    session_t *s = ud;
    const char *type = xmpp_stanza_get_type(st);
    const char *id = xmpp_stanza_get_id(st);
    if (type && (strcmp(type, "get") == 0 || strcmp(type, "set") == 0)) {
        /* RFC 6120: answer pings and refuse what we do not know. */
        xmpp_stanza_t *reply = codec_build_iq_reply(s->ctx, st);
        if (reply)
            send_stanza(s, reply, OUT_OTHER, NULL, 0);
    } else if (s->push && push_on_iq(s->push, st)) {
        /* an answer to our enable or disable (XEP-0357) */
    } else if (id && strncmp(id, "sync-", 5) == 0 && from_our_server(s, st)) {
        char *end = NULL;
        unsigned long n = strtoul(id + 5, &end, 10);
        if (end && *end == '\0' && n <= UINT32_MAX &&
            (int)((unsigned)n - atomic_load(&s->sync_done)) > 0 &&
            (int)((unsigned)n - s->sync_sent) <= 0)
            atomic_store(&s->sync_done, (unsigned)n);
    } else if (id && s->ackping_pending &&
               strcmp(id, s->ackping_id) == 0 && from_our_server(s, st)) {
        s->ackping_pending = 0;
        ack_upto(s, s->ackping_seq);
    }
    return 1;
}

/* Added last, so it runs after the other handlers of each stanza. */
static int damage_handler(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    (void)conn;
    (void)st;
    session_t *s = ud;
    hostile_clear_damage(&s->hx);
    s->in_handlers = 0;
    return 1;
}

static void drain_send_queue(session_t *s)
{
    char *dropped;
    /* libstrophe would free stanzas left queued at a disconnect only
     * late; the store keeps the truth. */
    while ((dropped = xmpp_conn_send_queue_drop_element(
                s->conn, XMPP_QUEUE_OLDEST)) != NULL)
        xmpp_free(s->ctx, dropped);
}

static void conn_handler(xmpp_conn_t *conn, xmpp_conn_event_t ev, int err,
                         xmpp_stream_error_t *se, void *ud)
{
    (void)conn;
    session_t *s = ud;
    if (ev == XMPP_CONN_CONNECT && trust_pending(&s->trust)) {
        /* Cannot happen (the gate runs at the features before login);
         * if it did, a link whose certificate was never judged is not
         * used. */
        engine_log(s->e, COURIER_LOG_ERROR, "logged in over a certificate "
                   "never judged: dropping the link");
        trust_reset(&s->trust);
        if (s->fd >= 0)
            shutdown(s->fd, SHUT_RDWR);
        return;
    }
    if (ev == XMPP_CONN_CONNECT) {
        s->out_h = s->in_h = s->r_asked_at = 0;
        s->outq_head = s->outq_len = 0;
        s->ackping_pending = 0;
        s->ack_poisoned = 0;
        s->in_handlers = 0;
        s->sm = 0;
        /* Damage from a stanza before login is not the next message's
         * (hostile_set_fd clears it per socket too). libstrophe 0.12 runs
         * the user handlers, damage_handler included, on the stanza that
         * completes login, so this only guards that order. */
        hostile_clear_damage(&s->hx);
        s->sm_deadline = util_mono_ms() + SM_WAIT_MS;
        /* XEP-0198: <enable/> first, the counts start from it; presence so
         * the server flushes offline storage to this session. */
        s->streaming = 1; /* TLS and login are done */
        if (s->features_seen && !s->sm_offered) {
            /* A server without SM answers <enable/> with a stream
             * error (behaviour.md §4). behaviour.md §1: acks by ping. */
            engine_log(s->e, COURIER_LOG_INFO, "the server offers no "
                       "stream management: acks by ping");
            send_stanza(s, xmpp_presence_new(s->ctx), OUT_OTHER, NULL, 0);
            go_online(s);
            return;
        }
        xmpp_send_raw_string(s->conn, "<enable xmlns='" NS_SM "'/>");
        s->sm_pending = 1;
        send_stanza(s, xmpp_presence_new(s->ctx), OUT_OTHER, NULL, 0);
        return; /* the engine hears "online" once SM is settled */
    }
    if (ev == XMPP_CONN_RAW_CONNECT)
        return;
    /* disconnect or failure */
    int was_online = s->online;
    s->online = s->streaming = 0;
    s->connecting = 0;
    s->sm = s->sm_pending = 0;
    s->sync_sent = atomic_load(&s->sync_done); /* ask again when back */
    if (s->push)
        push_link_down(s->push); /* everything owed again at the next login */
    s->fd = -1;
    atomic_store(&s->fd_shared, -1);
    hostile_set_fd(&s->hx, -1);
    drain_send_queue(s);
    if (s->auth_refused) {
        engine_log(s->e, COURIER_LOG_ERROR, "login refused by the server "
                   "for %s: not retrying until restarted",
                   engine_config(s->e)->jid);
        engine_feed(s->e, CORE_EV_AUTH_FAILED);
        return;
    }
    engine_log(s->e, was_online ? COURIER_LOG_INFO : COURIER_LOG_WARN,
               "link %s (error %d%s%s)", was_online ? "lost" : "failed", err,
               se && se->text ? ": " : "", se && se->text ? se->text : "");
    engine_feed(s->e, CORE_EV_LINK_DOWN);
}

/* TCP_NODELAY: no Nagle stalls. And libstrophe waits with select(),
 * which corrupts memory on an fd above 1023 (FD_SETSIZE), so such a socket
 * is refused. */
static int sockopt_cb(xmpp_conn_t *conn, void *sock)
{
    int fd = *(int *)sock;
    int one = 1;
    if (fd >= 1024)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
#ifdef SO_NOSIGPIPE
    /* Apple: a write on a dead socket returns EPIPE, no signal */
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
    pthread_mutex_lock(&reg_mu);
    for (session_t *s = reg_head; s; s = s->reg_next)
        if (s->conn == conn) {
            s->fd = fd;
            atomic_store(&s->fd_shared, fd);
            hostile_set_fd(&s->hx, fd);
        }
    pthread_mutex_unlock(&reg_mu);
    return xmpp_sockopt_cb_keepalive(conn, sock);
}

/* libstrophe's certfail handler: OpenSSL could not verify `cert` during
 * the handshake. Noted, and the handshake goes on: the verdict comes at
 * the end of it (trust_gate), with the leaf. Only installed when the app
 * gave on_certificate: without it libstrophe refuses as before. */
static _Thread_local session_t *tl_turn; /* inside its xmpp_run_once */

static int certfail_cb(const xmpp_tlscert_t *cert, const char *errormsg)
{
    /* libstrophe 0.12.2 leaves the certificate's connection unset
     * (xmpp_tlscert_get_conn gives NULL): the session is the one whose
     * turn this thread is running. */
    session_t *s = tl_turn;
    if (!s)
        return 0;
    trust_note(&s->trust, xmpp_tlscert_get_pem(cert), errormsg);
    return 1;
}

/* ---- lifecycle ------------------------------------------------------ */

int session_new(session_t **out, engine_t *e)
{
    *out = NULL;
    pthread_once(&strophe_once, strophe_init);
    session_t *s = util_calloc(1, sizeof(*s));
    if (!s)
        return COURIER_ENOMEM;
    s->e = e;
    s->fd = -1;
    /* Review L5: read once, on the app's thread in courier_open, never on
     * the loop thread (getenv is not safe against the app's setenv). */
    s->debug_strophe = getenv("COURIER_DEBUG_STROPHE") != NULL;
    atomic_store(&s->fd_shared, -1);
    pthread_mutex_init(&s->guard_mu, NULL);
    pthread_cond_init(&s->guard_cv, NULL);
    s->has_guard = pthread_create(&s->guard, NULL, guard_main, s) == 0;
    s->outq = util_calloc(OUTQ_MAX, sizeof(*s->outq));
    s->log.handler = strophe_log;
    s->log.userdata = s;
    hostile_init(&s->hx);
    trust_init(&s->trust);
    hostile_set_body_max(&s->hx, engine_config(e)->max_body_bytes);
    s->hx.on_trip = on_trip;
    s->hx.on_trip_ud = s;
    s->hx.defer_memory_cut = 1;
    s->mem = (xmpp_mem_t){ hostile_alloc, hostile_free, hostile_realloc,
                           &s->hx };
    strophe_lock();
    s->ctx = s->outq ? xmpp_ctx_new(&s->mem, &s->log) : NULL;
    hostile_watch_begin(&s->hx);
    s->conn = s->ctx ? xmpp_conn_new(s->ctx) : NULL;
    int stoppable = s->conn && hostile_find_parser(&s->hx, s->ctx, s->conn);
    strophe_unlock();
    if (s->conn && !stoppable)
        engine_log(e, COURIER_LOG_INFO, "libstrophe's expat parser not found:"
                   " a bound that trips cuts the link one read later");
    if (!s->conn) {
        session_free(s);
        return COURIER_ENOMEM;
    }
    strophe_lock();
    const courier_config_t *cfg = engine_config(e);
    xmpp_conn_set_jid(s->conn, cfg->jid);
    xmpp_conn_set_pass(s->conn, cfg->password);
    if (cfg->ca_file)
        xmpp_conn_set_cafile(s->conn, cfg->ca_file);
    if (cfg->ca_path)
        xmpp_conn_set_capath(s->conn, cfg->ca_path);
    if (engine_wants_certificates(e))
        xmpp_conn_set_certfail_handler(s->conn, certfail_cb);
    xmpp_conn_set_sockopt_callback(s->conn, sockopt_cb);
    xmpp_handler_add(s->conn, count_inbound, NULL, NULL, NULL, s);
    xmpp_handler_add(s->conn, sm_handler, NS_SM, NULL, NULL, s);
    xmpp_handler_add(s->conn, message_handler, NULL, "message", NULL, s);
    xmpp_handler_add(s->conn, iq_handler, NULL, "iq", NULL, s);
    xmpp_handler_add(s->conn, damage_handler, NULL, NULL, NULL, s);
    strophe_unlock();
    engine_set_transport(e, &transport, s);
    reg_add(s);
    *out = s;
    return COURIER_OK;
}

static void release_strophe(void *arg)
{
    session_t *s = arg;
    strophe_lock();
    if (s->conn)
        xmpp_conn_release(s->conn);
    if (s->ctx)
        xmpp_ctx_free(s->ctx);
    strophe_unlock();
}

void session_free(session_t *s)
{
    if (!s)
        return;
    if (s->has_thread)
        session_stop(s);
    else
        session_close_link(s);
    reg_remove(s);
    if (s->has_guard) {
        pthread_mutex_lock(&s->guard_mu);
        s->guard_stop = 1;
        pthread_cond_signal(&s->guard_cv);
        pthread_mutex_unlock(&s->guard_mu);
        pthread_join(s->guard, NULL);
    }
    pthread_mutex_destroy(&s->guard_mu);
    pthread_cond_destroy(&s->guard_cv);
    if (s->e)
        engine_set_transport(s->e, NULL, NULL);
    /* behaviour.md §11: a stanza cut half-way is still in libstrophe's parser,
     * freed recursively with the connection: not on the app's stack. */
    hostile_on_big_stack(release_strophe, s);
    trust_reset(&s->trust);
    util_free(s->outq);
    util_free(s);
}

/* ---- the loop --------------------------------------------------------- */

static int conn_fd(session_t *s)
{
    return s->connecting || s->streaming ? s->fd : -1;
}

static void *guard_main(void *arg)
{
    session_t *s = arg;
    pthread_mutex_lock(&s->guard_mu);
    while (!s->guard_stop) {
        if (s->busy_since <= 0) {
            pthread_cond_wait(&s->guard_cv, &s->guard_mu);
            continue;
        }
        int64_t since = s->busy_since;
        /* behaviour.md §10: a stop does not wait for the stall to time
         * out (courier_stop is bounded whatever the server does). */
        int64_t due = atomic_load(&s->stop) ? since
                      : atomic_load(&stops_waiting) > 0
                          ? since + STOP_STALL_GRACE_MS
                          : since + engine_config(s->e)->ping_timeout_ms;
        int64_t now = util_mono_ms();
        if (now < due) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ns = ts.tv_nsec + (due - now) * 1000000;
            ts.tv_sec += ns / 1000000000;
            ts.tv_nsec = ns % 1000000000;
            pthread_cond_timedwait(&s->guard_cv, &s->guard_mu, &ts);
            continue;
        }
        if (s->busy_since == since) { /* still stuck in the same call */
            int fd = atomic_load(&s->fd_shared);
            if (fd >= 0)
                shutdown(fd, SHUT_RDWR);
            s->busy_since = 0;
        }
    }
    pthread_mutex_unlock(&s->guard_mu);
    return NULL;
}

static void guard_arm(session_t *s, int on)
{
    pthread_mutex_lock(&s->guard_mu);
    s->busy_since = on ? util_mono_ms() : 0;
    pthread_cond_signal(&s->guard_cv);
    pthread_mutex_unlock(&s->guard_mu);
}

/* Inside the allocator, at a trip: note where the stream was. */
static void on_trip(void *ud, hostile_reason_t why)
{
    session_t *s = ud;
    (void)why;
    s->trip_in_h = s->in_h;
    s->trip_in_handlers = s->in_handlers;
}

/* behaviour.md §11, review H2: a peer reaches the parser's memory bound
 * through a stock server (libstrophe copies an element's namespace into
 * every element: ~1 300 empty children under a 100 KB xmlns). Cut with the
 * stanza unacknowledged, the server would send it again at every login
 * and cut the link each time. So the stanza is acknowledged first: h
 * counts it (it was whole and counted, or it is the one being parsed),
 * what h covers before it is committed first, and the <a/> is written
 * before the socket is shut. expat is stopped (suspended) already, so
 * libstrophe has sent nothing after it. The stanza itself is lost: the
 * sender is not told (its id and sender are in the part never parsed). */
static void ack_poisoned_then_cut(session_t *s)
{
    if (s->streaming && s->sm && !s->ack_poisoned) {
        uint32_t h = s->trip_in_handlers || s->in_h != s->trip_in_h
                         ? s->in_h
                         : s->trip_in_h + 1;
        int rc = engine_batch_flush(s->e);
        if (rc != COURIER_OK) {
            poison_acks(s, rc);
        } else {
            s->in_h = h;
            xmpp_send_raw_string(s->conn, "<a xmlns='" NS_SM "' h='%" PRIu32
                                 "'/>", h);
            engine_log(s->e, COURIER_LOG_WARN, "acknowledged the stanza past "
                       "the parser's memory bound (h=%" PRIu32 ") before "
                       "the cut, so the server does not send it again", h);
            /* Writing comes first in a libstrophe turn; what it reads
             * then is a parse error (expat is suspended), harmless. */
            for (int i = 0; i < 4 && s->hx.cut_pending &&
                            xmpp_conn_send_queue_len(s->conn) > 0;
                 i++)
                xmpp_run_once(s->ctx, 0);
        }
    }
    hostile_cut(&s->hx);
}

/* One libstrophe turn; the caller holds strophe_lock(). Any turn may
 * read and so run the STARTTLS handshake, which blocks inside libstrophe:
 * before the stream is up the stall guard watches it. */
static void strophe_turn_locked(session_t *s)
{
    int guarded = s->connecting && !s->streaming;
    if (guarded)
        guard_arm(s, 1);
    session_t *outer = tl_turn;
    tl_turn = s;
    xmpp_run_once(s->ctx, 0);
    tl_turn = outer;
    if (guarded)
        guard_arm(s, 0);
    /* behaviour.md §10: judge a certificate OpenSSL could not verify as
     * soon as the handshake is over, not only at the next stream
     * features: a server that sends none gets libstrophe's login after
     * its 15 s features timeout, with the features from before TLS. */
    if (trust_pending(&s->trust) && xmpp_conn_is_secured(s->conn))
        trust_gate(s);
    if (s->hx.cut_pending)
        ack_poisoned_then_cut(s);
    hostile_reason_t why = hostile_turn_end(&s->hx);
    if (why != HOSTILE_NONE)
        engine_log(s->e, COURIER_LOG_WARN, "the server sent %s: dropping "
                   "the link", hostile_reason_text(why));
}

static void run_strophe(session_t *s)
{
    /* TLS may hold decrypted input that poll() cannot see: keep running
     * while stanzas keep coming (bounded). */
    for (int i = 0; i < 64; i++) {
        uint64_t before = s->inbound;
        strophe_lock();
        strophe_turn_locked(s);
        strophe_unlock();
        if (s->inbound == before)
            break;
    }
}

/* SIGPIPE: libstrophe writes with write()/SSL_write, and a write on a
 * socket the peer reset or we shut (a cut) raises SIGPIPE, whose default
 * ends the process. The loop thread blocks it for its life; an app thread
 * (courier_run_once) has it blocked around the step, and one that was
 * raised meanwhile is taken off before the mask is restored. Never a
 * process-wide setting (the app owns those). */
typedef struct {
    sigset_t old;
    int restore;
} sigpipe_guard_t;

static void sigpipe_block(sigpipe_guard_t *g)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    g->restore = pthread_sigmask(SIG_BLOCK, &set, &g->old) == 0 &&
                 !sigismember(&g->old, SIGPIPE);
}

static void sigpipe_unblock(sigpipe_guard_t *g)
{
    if (!g->restore)
        return;
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    const struct timespec now = { 0, 0 };
    while (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) &&
           sigtimedwait(&set, NULL, &now) == SIGPIPE)
        ;
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

static int step(session_t *s, unsigned timeout_ms);

int session_step(session_t *s, unsigned timeout_ms)
{
    if (session_is_loop_thread(s))
        return step(s, timeout_ms); /* SIGPIPE blocked for good */
    sigpipe_guard_t g;
    sigpipe_block(&g);
    int rc = step(s, timeout_ms);
    sigpipe_unblock(&g);
    return rc;
}

/* One turn of the loop: timers, dispatch, a poll, libstrophe's turn. */
static int step(session_t *s, unsigned timeout_ms)
{
    engine_t *e = s->e;
    engine_tick(e);
    engine_dispatch(e);
    strophe_lock();
    if (s->sm_pending && util_mono_ms() >= s->sm_deadline) {
        /* B6: a server without stream management may ignore <enable/>:
         * go on with acks by ping. */
        s->sm_pending = 0;
        engine_log(s->e, COURIER_LOG_INFO, "no answer to <enable/>: acks "
                   "by ping");
        go_online(s);
    }
    ask_ack(s);
    csi_sync(s);
    push_sync(s);
    sync_ping(s);
    int want_out = xmpp_conn_send_queue_len(s->conn) > 0;
    strophe_unlock();

    int64_t t = engine_timeout_ms(e);
    int wait = t >= 0 && t < (int64_t)timeout_ms ? (int)t : (int)timeout_ms;
    struct pollfd p[2] = { { .fd = engine_wake_fd(e), .events = POLLIN },
                           { .fd = conn_fd(s), .events = POLLIN } };
    if (p[1].fd >= 0 && want_out)
        p[1].events |= POLLOUT;
    /* While connecting, libstrophe needs turns to notice the TCP connect
     * and drives its handshake with its own timers: short steps. */
    if (s->connecting && !s->online && wait > 10)
        wait = 10;
    if (s->sm_pending) {
        int64_t left = s->sm_deadline - util_mono_ms();
        if (left < wait)
            wait = left > 0 ? (int)left : 0;
    }
    int n = poll(p, p[1].fd >= 0 ? 2 : 1, wait);
    if (n < 0 && errno != EINTR)
        return util_set_error(COURIER_ESTATE, "poll: %s", strerror(errno));
#ifdef TCP_QUICKACK
    /* Acknowledge what we read now, not 40 ms later: a server with Nagle
     * on (Prosody's default) holds its next stanza, a receipt say, until
     * our ACK arrives. Linux clears the flag by itself: set per read. */
    if (n > 0 && p[1].fd >= 0 && (p[1].revents & POLLIN)) {
        int one = 1;
        setsockopt(p[1].fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
    }
#endif
    /* The turn's stanzas, acks and timers: one commit, before any callback
     * or stanza that reports them (the dispatch). */
    engine_batch_begin(e);
    run_strophe(s);
    engine_tick(e);
    int brc = engine_batch_end(e);
    if (brc != COURIER_OK) {
        strophe_lock();
        poison_acks(s, brc);
        strophe_unlock();
    }
    engine_dispatch(e);
    strophe_lock();
    ask_ack(s);
    csi_sync(s);
    push_sync(s);
    sync_ping(s);
    strophe_turn_locked(s); /* flush what the dispatch queued */
    strophe_unlock();
    return COURIER_OK;
}

/* Set first thing in the loop thread, so a callback that runs before
 * pthread_create has returned is still recognised. */
static _Thread_local const session_t *tl_loop;

static void *loop_main(void *arg)
{
    session_t *s = arg;
    tl_loop = s;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE); /* libstrophe's send() has no MSG_NOSIGNAL */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    engine_feed(s->e, CORE_EV_START);
    while (!atomic_load(&s->stop))
        step(s, 60000);
    session_close_link(s);
    if (s->exit_fn)
        s->exit_fn(s->exit_ud); /* may free the session */
    return NULL;
}

int session_is_loop_thread(const session_t *s)
{
    return tl_loop == s;
}

void session_request_stop(session_t *s)
{
    atomic_store(&s->stop, 1);
    engine_wake(s->e);
}

void session_set_exit_hook(session_t *s, void (*fn)(void *ud), void *ud)
{
    s->exit_fn = fn;
    s->exit_ud = ud;
}

int session_driven(const session_t *s)
{
    return s->driven_started;
}

void session_begin_driven(session_t *s)
{
    if (!s->driven_started) {
        s->driven_started = 1;
        engine_feed(s->e, CORE_EV_START);
    }
}

int session_start(session_t *s)
{
    if (s->has_thread && atomic_load(&s->stop) && !session_is_loop_thread(s)) {
        pthread_join(s->thread, NULL); /* stopped from a callback */
        s->has_thread = 0;
    }
    if (s->has_thread)
        return util_set_error(COURIER_ESTATE, "already started");
    atomic_store(&s->stop, 0);
    /* behaviour.md §11: libstrophe recurses once per nesting level of a received
     * stanza; the stack is sized for the deepest one let through
     * (hostile.h), not left to the platform's default (1 MiB on phones). */
    pthread_attr_t a;
    if (pthread_attr_init(&a) != 0)
        return util_set_error(COURIER_ENOMEM, "cannot create the loop "
                              "thread");
    int rc = pthread_attr_setstacksize(&a, HOSTILE_STACK_BYTES);
    if (rc == 0)
        rc = pthread_create(&s->thread, &a, loop_main, s);
    pthread_attr_destroy(&a);
    if (rc != 0)
        return util_set_error(COURIER_ENOMEM, "cannot create the loop "
                              "thread (%d MiB stack)",
                              (int)(HOSTILE_STACK_BYTES >> 20));
    s->has_thread = 1;
    return COURIER_OK;
}

int session_stop(session_t *s)
{
    /* From a callback: it ends itself. First: the loop's first callback
     * can run before session_start has set has_thread. */
    if (session_is_loop_thread(s)) {
        atomic_store(&s->stop, 1);
        return COURIER_OK;
    }
    if (!s->has_thread)
        return util_set_error(COURIER_ESTATE, "not started");
    atomic_store(&s->stop, 1);
    engine_wake(s->e);
    /* A turn stuck in the TLS handshake of a server that stalls is cut
     * now by the guard, not after ping_timeout_ms; another handle's, which
     * holds libstrophe's lock, after STOP_STALL_GRACE_MS. */
    stops_waiting_add(1);
    pthread_join(s->thread, NULL);
    stops_waiting_add(-1);
    s->has_thread = 0;
    return COURIER_OK;
}

int session_running(const session_t *s)
{
    return s->has_thread;
}

int session_stop_asked(session_t *s)
{
    return atomic_load(&s->stop);
}

/* The libstrophe part of a close: it reads, so it may parse (and render,
 * and free) the rest of a deep stanza. */
static void close_strophe(void *arg)
{
    session_t *s = arg;
    strophe_lock();
    if (s->streaming) {
        /* behaviour.md §3: acknowledge everything stored so the server does not
         * store those messages again. */
        if (s->sm && !s->ack_poisoned)
            xmpp_send_raw_string(s->conn, "<a xmlns='" NS_SM "' h='%" PRIu32
                                 "'/>", s->in_h);
        xmpp_disconnect(s->conn);
        int64_t until = util_mono_ms() + CLOSE_WAIT_MS;
        while (s->connecting && util_mono_ms() < until) {
            struct pollfd p = { .fd = conn_fd(s), .events = POLLIN };
            strophe_unlock(); /* other handles keep running meanwhile */
            if (p.fd >= 0)
                poll(&p, 1, 50);
            strophe_lock();
            strophe_turn_locked(s);
        }
    }
    if (s->connecting) {
        tp_drop_link(s);
        int64_t until = util_mono_ms() + CUT_WAIT_MS;
        while (s->connecting && util_mono_ms() < until) {
            strophe_turn_locked(s);
            strophe_unlock();
            usleep(10000);
            strophe_lock();
        }
    }
    strophe_unlock();
}

void session_close_link(session_t *s)
{
    s->driven_started = 0;
    engine_feed(s->e, CORE_EV_STOP);
    /* behaviour.md §11: the loop thread has the stack for a hostile
     * stanza; courier_stop and courier_close of a courier_run_once handle
     * run on any thread of the app, so libstrophe runs on one of ours
     * (callbacks still run here, in engine_dispatch). */
    if (session_is_loop_thread(s) || (!s->streaming && !s->connecting)) {
        close_strophe(s);
    } else {
        stops_waiting_add(1);
        hostile_on_big_stack(close_strophe, s);
        stops_waiting_add(-1);
    }
    engine_dispatch(s->e);
}
