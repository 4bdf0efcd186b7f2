/* SPDX-License-Identifier: MIT */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#if defined(__linux__) && !defined(COURIER_NO_EVENTFD)
#include <sys/eventfd.h>
#define HAVE_EVENTFD 1
#endif
#include <time.h>
#include <unistd.h>

#include "util.h"

/* One deferred item for the loop thread: a callback or a transport call. */
typedef enum {
    ITEM_STATE, ITEM_MESSAGE, ITEM_LINK, ITEM_COMPOSING_IN, ITEM_LOG,
    ITEM_SEND_CHAT, ITEM_SEND_RECEIPT, ITEM_SEND_COMPOSING, ITEM_PING,
    ITEM_DROP_LINK, ITEM_CONNECT, ITEM_RETRACT
} item_type_t;

typedef struct item {
    struct item *next;
    item_type_t type;
    char id[COURIER_ID_MAX];
    char peer[COURIER_JID_MAX];
    courier_state_t state;
    courier_kind_t kind;
    courier_link_t link;
    int flag;           /* composing on/off, log level */
    int64_t ts_ms;
    int64_t rid;
    unsigned asked;
    int retract;        /* SEND_RECEIPT: an owed retraction */
    char *text;         /* body or log line, owned */
    char *meta;         /* MESSAGE: its meta, owned (NULL: "") */
} item_t;

/* A send in the commit queue (engine_send). */
typedef struct send_req {
    struct send_req *next;
    core_row_t *row;
    const char *body;
    const char *meta;
    int app_id;  /* the id came from the app */
    int rc;      /* of its INSERT */
    int crc;     /* of the commit that carried it */
    int done;
} send_req_t;

/* A store transaction of the engine's (see txn_begin). */
typedef struct {
    item_t *mark; /* the queue's tail before */
    int open;
    int joined;   /* ran inside the loop turn's batch: no commit of its own */
} txn_t;

struct engine {
    pthread_mutex_t mu;
    courier_config_t cfg;
    char self[COURIER_JID_MAX];
    courier_callbacks_t cb;
    void *ud;
    store_t *store;
    core_t *core;
    core_limits_t lim;
    core_out_t out;
    engine_transport_t tp;
    void *tp_ud;
    engine_clock_fn clock;
    void *clock_ud;
    item_t *head, *tail;
    size_t pending;
    item_t *unmarked;            /* handed, but the store's mark failed */
    item_t *retract_shown;       /* app_confirms: on_retract ran, owed a
                                    courier_confirm (behaviour.md §9) */
    int muted;                   /* courier_close: no more app callbacks */
    int running_item;            /* engine_dispatch is running one */
    atomic_int net_changed;      /* courier_network_changed, not yet fed */
    atomic_int active;           /* courier_set_active (XEP-0352) */
    int wake_fd;                 /* readable while items are queued */
    int wake_wr;                 /* its write end (= wake_fd: eventfd) */
    const codec_msg_t *incoming; /* context of CORE_ACT_DELIVER */
    int64_t incoming_ts;         /* its delay stamp, else its arrival */
    core_stats_t retired;        /* counters of cores rebuilt away */
    txn_t batch;                 /* the loop turn's transaction ... */
    int batch_open;              /* ... while this is set */
    int batch_wanted;            /* a turn is on: BEGIN at its first write */
    int batch_failed;            /* it was committed early and failed */
    int batch_paused;            /* an app call committed it: reopen */
    /* Group commit (engine_send): sends queue here; one of them writes
     * the whole queue in one transaction and commits it with the mutex
     * let go (group_open), while later sends queue for the next group and
     * every other entry point waits on group_cv. */
    send_req_t *sendq, **sendq_tail;
    size_t sendq_len;
    size_t last_group;           /* sends in the previous group */
    int gathering;               /* a leader waits for the group to fill */
    int group_open;
    pthread_cond_t group_cv;     /* a group was committed */
    pthread_cond_t sendq_cv;     /* a send was queued */
    uint64_t received, duplicates;
    /* behaviour.md §11: owed receipts go out through a window. rcpt_out are
     * written and not yet acknowledged; the next ones are the stored
     * receipts with a rid above rcpt_after (both reset at link up). */
    int64_t rcpt_after;
    size_t rcpt_out;
};

_Static_assert(ENGINE_MAX_IN_FLIGHT + ENGINE_RCPT_WINDOW < ENGINE_OUTQ_MAX,
               "messages and receipts fit in the session's queue");

static void engine_lock(engine_t *e);

static core_now_t default_clock(void *ud)
{
    (void)ud;
    core_now_t n = { util_mono_ms(), util_wall_ms() };
    return n;
}

static core_now_t now_of(const engine_t *e)
{
    return e->clock(e->clock_ud);
}

/* ---- the deferred queue -------------------------------------------- */

static item_t *item_new(item_type_t type, const char *id, const char *peer)
{
    item_t *it = util_calloc(1, sizeof(*it));
    if (!it)
        return NULL;
    it->type = type;
    if (id)
        util_strlcpy(it->id, id, sizeof(it->id));
    if (peer)
        util_strlcpy(it->peer, peer, sizeof(it->peer));
    return it;
}

static void item_free(item_t *it)
{
    util_free(it->text);
    util_free(it->meta);
    util_free(it);
}

/* The loop's wake-up: an eventfd on Linux (Android included), a
 * non-blocking self-pipe elsewhere (Darwin: iOS, macOS). */
static int wake_open(engine_t *e)
{
#ifdef HAVE_EVENTFD
    e->wake_fd = e->wake_wr = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return e->wake_fd < 0 ? -1 : 0;
#else
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        if (fl < 0 || fcntl(fds[i], F_SETFL, fl | O_NONBLOCK) != 0 ||
            fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0) {
            close(fds[0]);
            close(fds[1]);
            return -1;
        }
    }
    e->wake_fd = fds[0];
    e->wake_wr = fds[1];
    return 0;
#endif
}

static void wake_close(engine_t *e)
{
    if (e->wake_wr >= 0 && e->wake_wr != e->wake_fd)
        close(e->wake_wr);
    if (e->wake_fd >= 0)
        close(e->wake_fd);
    e->wake_fd = e->wake_wr = -1;
}

/* Consume the wake-ups so far (the queue is then drained). */
static void wake_drain(engine_t *e)
{
    uint64_t v[8];
    ssize_t r;
#ifdef HAVE_EVENTFD
    while ((r = read(e->wake_fd, v, sizeof(v[0]))) < 0 && errno == EINTR)
        ;
#else
    while ((r = read(e->wake_fd, v, sizeof(v))) > 0 ||
           (r < 0 && errno == EINTR))
        ;
#endif
}

static void wake(engine_t *e)
{
    uint64_t one = 1;
    ssize_t r;
    /* A full pipe is already readable: EAGAIN loses nothing. */
    do
        r = write(e->wake_wr, &one, sizeof(one));
    while (r < 0 && errno == EINTR);
}

/* Caller holds the mutex. The item is lost only on ENOMEM, and then the
 * state it reports is still in the store. */
static int enqueue(engine_t *e, item_t *it)
{
    if (!it)
        return COURIER_ENOMEM;
    if (e->tail)
        e->tail->next = it;
    else
        e->head = it;
    e->tail = it;
    if (e->pending++ == 0)
        wake(e);
    return COURIER_OK;
}

/* Caller holds the mutex: after a rolled-back commit, free what was
 * queued after `mark` (NULL: from the head) on the strength of store
 * writes that are gone (app callbacks, stanzas); link, timer and log items
 * stay. */
static void drop_store_items_after(engine_t *e, item_t *mark)
{
    item_t **link = mark ? &mark->next : &e->head;
    item_t *prev = mark;
    while (*link) {
        item_t *it = *link;
        int drop = it->type == ITEM_STATE || it->type == ITEM_MESSAGE ||
                   it->type == ITEM_RETRACT || it->type == ITEM_SEND_CHAT ||
                   it->type == ITEM_SEND_RECEIPT;
        if (drop) {
            *link = it->next;
            item_free(it);
            e->pending--;
        } else {
            prev = it;
            link = &it->next;
        }
    }
    e->tail = prev;
}

static void vlog_locked(engine_t *e, int level, const char *fmt, va_list ap)
{
    char line[512];
    if (!e->cb.on_log)
        return;
    vsnprintf(line, sizeof(line), fmt, ap);
    item_t *it = item_new(ITEM_LOG, NULL, NULL);
    if (!it)
        return;
    it->flag = level;
    it->text = util_strdup(line);
    if (!it->text) {
        util_free(it);
        return;
    }
    enqueue(e, it);
}

static void log_locked(engine_t *e, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void log_locked(engine_t *e, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog_locked(e, level, fmt, ap);
    va_end(ap);
}

void engine_log(engine_t *e, int level, const char *fmt, ...)
{
    va_list ap;
    engine_lock(e);
    va_start(ap, fmt);
    vlog_locked(e, level, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&e->mu);
}

static int queue_state(engine_t *e, const char *id, const char *peer,
                       courier_state_t state)
{
    item_t *it = item_new(ITEM_STATE, id, peer);
    if (it)
        it->state = state;
    return enqueue(e, it);
}

static void promoted(void *ud, const char *id, const char *peer)
{
    queue_state(ud, id, peer, COURIER_DISPLAYED);
}

/* ---- running the core's actions ------------------------------------- */

static int rebuild_core(engine_t *e);

static int queue_receipt(void *ud, const store_rcpt_t *r)
{
    engine_t *e = ud;
    item_t *it = item_new(ITEM_SEND_RECEIPT, r->id, r->peer);
    if (!it)
        return COURIER_ENOMEM;
    it->state = r->state;
    it->asked = r->asked;
    it->rid = r->rid;
    it->retract = r->retract;
    e->rcpt_after = r->rid;
    e->rcpt_out++;
    return enqueue(e, it);
}

/* behaviour.md §11: write owed receipts, oldest first, while the window allows;
 * an ack frees a slot. Read from the store inside the caller's
 * transaction, so they go out after its commit (the dispatch). Caller
 * holds the mutex. */
static int pump_receipts(engine_t *e)
{
    if (!core_link_up(e->core) || e->rcpt_out >= ENGINE_RCPT_WINDOW)
        return COURIER_OK;
    return store_rcpt_each_after(e->store, e->rcpt_after,
                                 ENGINE_RCPT_WINDOW - e->rcpt_out,
                                 queue_receipt, e);
}

static int run_receipt(engine_t *e, const core_act_t *a)
{
    store_rcpt_t r;
    memset(&r, 0, sizeof(r));
    util_strlcpy(r.peer, a->peer, sizeof(r.peer));
    util_strlcpy(r.id, a->id, sizeof(r.id));
    r.state = a->state;
    r.asked = a->asked;
    /* behaviour.md §3: owed receipts are stored until the server has them. */
    int rc = store_rcpt_add(e->store, &r, NULL);
    return rc == COURIER_OK ? pump_receipts(e) : rc;
}

static int run_deliver(engine_t *e, const core_act_t *a)
{
    const codec_msg_t *m = e->incoming;
    if (!m || !m->body)
        return COURIER_EINVAL;
    item_t *it = item_new(ITEM_MESSAGE, a->id, a->peer);
    if (!it)
        return COURIER_ENOMEM;
    it->kind = m->kind;
    it->ts_ms = e->incoming_ts;
    it->text = util_strdup(m->body);
    it->meta = m->meta ? util_strdup(m->meta) : NULL;
    if (!it->text || (m->meta && !it->meta)) {
        item_free(it);
        return COURIER_ENOMEM;
    }
    int rc = enqueue(e, it);
    if (rc == COURIER_OK)
        e->received++;
    return rc;
}

static int run_action(engine_t *e, const core_act_t *a, core_now_t now)
{
    int rc = COURIER_OK, changed = 0;
    switch (a->type) {
    case CORE_ACT_STATE:
        rc = store_out_set_state(e->store, a, &changed);
        /* behaviour.md §1/§5: notify after the state is durable, once. */
        if (rc == COURIER_OK && changed && a->notify)
            rc = queue_state(e, a->id, a->peer, a->state);
        break;
    case CORE_ACT_TRANSMIT:
        rc = store_out_mark_sent(e->store, a->id, a->attempts,
                                 a->last_sent_ms);
        if (rc == COURIER_OK)
            rc = enqueue(e, item_new(ITEM_SEND_CHAT, a->id, a->peer));
        break;
    case CORE_ACT_PROMOTE_DISPLAYED:
        rc = store_out_promote_displayed(
            e->store, a->peer, a->by_created, a->before_ms, now.wall_ms,
            a->by_created ? "displayed-upto" : "implicit-read", promoted, e);
        break;
    case CORE_ACT_DELIVER:
        rc = run_deliver(e, a);
        break;
    case CORE_ACT_RECEIPT:
        rc = run_receipt(e, a);
        break;
    case CORE_ACT_PING:
        rc = enqueue(e, item_new(ITEM_PING, NULL, NULL));
        break;
    case CORE_ACT_DROP_LINK:
        rc = enqueue(e, item_new(ITEM_DROP_LINK, NULL, NULL));
        break;
    case CORE_ACT_CONNECT:
        rc = enqueue(e, item_new(ITEM_CONNECT, NULL, NULL));
        break;
    case CORE_ACT_LINK: {
        item_t *it = item_new(ITEM_LINK, NULL, NULL);
        if (it)
            it->link = a->link;
        rc = enqueue(e, it);
        break;
    }
    }
    return rc;
}

/* The core disagrees with the store (a failed write, no memory): log why
 * and rebuild it from the store, which stays the truth. */
static int resync_locked(engine_t *e, const char *why)
{
    log_locked(e, COURIER_LOG_ERROR, "resync from store after: %s", why);
    int rc = rebuild_core(e);
    if (rc != COURIER_OK)
        log_locked(e, COURIER_LOG_ERROR, "resync failed: %s",
                   store_errmsg(e->store));
    return rc;
}

/* Feed one event and run its actions; caller holds the mutex. If the core
 * or the store fails midway, the core is rebuilt from the store, which
 * stays the truth. */
static int feed_locked(engine_t *e, const core_ev_t *ev)
{
    core_now_t now = now_of(e);
    core_out_reset(&e->out);
    int rc = core_feed(e->core, ev, now, &e->out);
    int run_rc = COURIER_OK;
    for (size_t i = 0; i < e->out.len && run_rc == COURIER_OK; i++)
        run_rc = run_action(e, &e->out.acts[i], now);
    if (core_ignored(e->core))
        log_locked(e, COURIER_LOG_DEBUG, "ignored: %s (id %s, from %s)",
                   core_ignored(e->core), ev->id ? ev->id : "-",
                   ev->peer ? ev->peer : "-");
    if (rc == COURIER_ENOMEM || run_rc != COURIER_OK) {
        int rb = resync_locked(e, run_rc != COURIER_OK
                                      ? store_errmsg(e->store)
                                      : "out of memory");
        if (rb != COURIER_OK)
            return rb;
        return rc != COURIER_OK ? rc : run_rc;
    }
    return rc;
}

static int load_row(void *ud, const core_row_t *row)
{
    return core_load(ud, row);
}

static int build_core(engine_t *e, core_t **out)
{
    core_t *k = NULL;
    int rc = core_new(&k, &e->lim);
    if (rc == COURIER_OK)
        rc = store_out_each_unsettled(e->store, load_row, k);
    if (rc != COURIER_OK) {
        core_free(k);
        k = NULL;
    }
    *out = k;
    return rc;
}

/* The rebuilt core starts offline: the session must drop and reconnect
 * so that the link state and the core agree again. */
static int rebuild_core(engine_t *e)
{
    core_t *k = NULL;
    int rc = build_core(e, &k);
    if (rc != COURIER_OK)
        return rc;
    int was_up = core_link(e->core) != COURIER_LINK_OFFLINE;
    if (core_started(e->core))
        core_restore_started(k, now_of(e).mono_ms);
    core_stats_t st;
    core_get_stats(e->core, &st);
    e->retired.first_writes += st.first_writes;
    for (int i = 0; i < CORE_CAUSE_COUNT; i++)
        e->retired.rewrites[i] += st.rewrites[i];
    e->retired.links_up += st.links_up;
    core_free(e->core);
    e->core = k;
    if (was_up) {
        item_t *it = item_new(ITEM_LINK, NULL, NULL);
        if (it)
            it->link = COURIER_LINK_OFFLINE;
        enqueue(e, it);
        enqueue(e, item_new(ITEM_DROP_LINK, NULL, NULL));
    }
    return COURIER_OK;
}

/* ---- one commit for several store writes ----------------------------- */

/* Each of the engine's entry points below is one SQLite transaction, under
 * the mutex: every state it reports is durable before the mutex drops, and
 * its callbacks and stanzas go out after that (engine_dispatch), so the
 * rule "stored, then told" holds with one commit instead of one per
 * write. */

static void txn_begin(engine_t *e, txn_t *t)
{
    t->joined = 0;
    t->mark = e->tail;
    /* If BEGIN fails each write commits on its own: slower, as safe. */
    t->open = store_begin(e->store) == COURIER_OK;
}

/* A commit failed, so nothing of it happened: take back what it queued
 * and rebuild the core from the store. */
static void txn_failed(engine_t *e, const txn_t *t)
{
    drop_store_items_after(e, t->mark);
    resync_locked(e, "a failed commit");
}

/* Commit; if that fails nothing of it happened: take back what it queued
 * and rebuild the core from the store. Returns `rc`, or the commit's. */
static int txn_end(engine_t *e, txn_t *t, int rc)
{
    if (!t->open || t->joined)
        return rc;
    int crc = store_commit(e->store);
    if (crc == COURIER_OK)
        return rc;
    txn_failed(e, t);
    return crc;
}

/* Session events (a stanza, an ack, a timer, the link) join the loop
 * turn's batch when one is open: the session commits it before anything
 * leaves that depends on it (engine_batch_end before the dispatch,
 * engine_batch_flush before an <a h/>). */
static void txn_join(engine_t *e, txn_t *t)
{
    /* Issue 17: the batch begins at the turn's first write, so a turn (or
     * the part of one after an app call committed it) that writes nothing
     * costs no BEGIN and no COMMIT. */
    if (e->batch_wanted && !e->batch_open) {
        txn_begin(e, &e->batch);
        e->batch_open = e->batch.open;
    }
    if (e->batch_open) {
        t->open = t->joined = 1;
        t->mark = NULL;
    } else {
        txn_begin(e, t);
    }
}

/* The mutex, once no send group is open: its rows are not committed yet,
 * so they must be neither read nor mixed with other writes. */
static void engine_lock(engine_t *e)
{
    pthread_mutex_lock(&e->mu);
    while (e->group_open)
        pthread_cond_wait(&e->group_cv, &e->mu);
}

/* Commit the loop turn's batch if it is open (a failure is kept for
 * engine_batch_end to report); returns whether a batch was on (begun, or
 * still waiting for its first write). Caller holds the mutex. */
static int batch_pause(engine_t *e)
{
    int wanted = e->batch_wanted;
    e->batch_wanted = 0;
    if (!e->batch_open)
        return wanted;
    e->batch_open = 0;
    if (txn_end(e, &e->batch, COURIER_OK) != COURIER_OK)
        e->batch_failed = 1;
    return 1;
}

/* Open the batch again (or for the first time) if `open`: its BEGIN waits
 * for the first write (txn_join). */
static void batch_resume(engine_t *e, int open)
{
    if (open && !e->batch_open)
        e->batch_wanted = 1;
}

/* The app's calls promise durability on return and must not read what a
 * batch has not committed: under the mutex they commit the open batch,
 * run in their own transaction, and open the next batch as they leave. */
static void app_lock(engine_t *e)
{
    engine_lock(e);
    e->batch_paused = batch_pause(e);
}

static void app_unlock(engine_t *e)
{
    batch_resume(e, e->batch_paused);
    e->batch_paused = 0;
    pthread_mutex_unlock(&e->mu);
}

int engine_batch_begin(engine_t *e)
{
    engine_lock(e);
    if (!e->batch_open && !e->batch_wanted)
        e->batch_failed = 0;
    batch_resume(e, 1);
    pthread_mutex_unlock(&e->mu);
    return COURIER_OK;
}

/* Commit the batch; `reopen`: go on with a new one. */
static int batch_commit(engine_t *e, int reopen)
{
    engine_lock(e);
    int was_open = batch_pause(e);
    int rc = e->batch_failed ? COURIER_ESTORE : COURIER_OK;
    e->batch_failed = 0;
    batch_resume(e, reopen && was_open);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int engine_batch_end(engine_t *e)
{
    return batch_commit(e, 0);
}

int engine_batch_flush(engine_t *e)
{
    return batch_commit(e, 1);
}

/* ---- open / close --------------------------------------------------- */

static int copy_str(const char **dst, const char *src)
{
    if (!src) {
        *dst = NULL;
        return COURIER_OK;
    }
    char *d = util_strdup(src);
    if (!d)
        return COURIER_ENOMEM;
    *dst = d;
    return COURIER_OK;
}

static void free_cfg_strings(courier_config_t *c)
{
    util_free((void *)c->jid);
    util_free((void *)c->password);
    util_free((void *)c->host);
    util_free((void *)c->db_path);
    util_free((void *)c->ca_file);
    util_free((void *)c->ca_path);
}

static int validate(const courier_config_t *c, char *self, size_t self_size)
{
    if (c->version != COURIER_CONFIG_VERSION)
        return util_set_error(COURIER_EINVAL,
                              "config version %u: call courier_config_init "
                              "first", c->version);
    if (!c->jid || util_jid_bare(c->jid, self, self_size) != 0 ||
        !strchr(self, '@'))
        return util_set_error(COURIER_EINVAL, "jid: a valid "
                              "local@domain JID is required");
    if (!c->password || !c->password[0])
        return util_set_error(COURIER_EINVAL, "password is required");
    if (!c->db_path || !c->db_path[0])
        return util_set_error(COURIER_EINVAL, "db_path is required");
    if (c->ack_timeout_ms == 0)
        return util_set_error(COURIER_EINVAL, "ack_timeout_ms must be > 0");
    if (c->ping_interval_ms == 0)
        return util_set_error(COURIER_EINVAL,
                              "ping_interval_ms must be > 0");
    if (c->ping_timeout_ms <= c->ping_interval_ms)
        return util_set_error(COURIER_EINVAL,
                              "ping_timeout_ms (%u) must exceed "
                              "ping_interval_ms (%u)", c->ping_timeout_ms,
                              c->ping_interval_ms);
    if (c->reconnect_min_ms == 0 ||
        c->reconnect_max_ms < c->reconnect_min_ms)
        return util_set_error(COURIER_EINVAL,
                              "reconnect_min_ms (%u) must be > 0 and <= "
                              "reconnect_max_ms (%u)", c->reconnect_min_ms,
                              c->reconnect_max_ms);
    if (c->max_in_flight == 0 || c->max_in_flight > ENGINE_MAX_IN_FLIGHT)
        return util_set_error(COURIER_EINVAL,
                              "max_in_flight (%u) must be between 1 and %u: "
                              "the link holds at most %u unacknowledged "
                              "stanzas, receipts and re-sends included",
                              c->max_in_flight, ENGINE_MAX_IN_FLIGHT,
                              ENGINE_OUTQ_MAX);
    if (c->max_body_bytes == 0)
        return util_set_error(COURIER_EINVAL, "max_body_bytes must be > 0");
    if (c->host && !c->host[0])
        return util_set_error(COURIER_EINVAL, "host: empty string (use "
                              "NULL for the JID's domain)");
    return COURIER_OK;
}

static int queue_unhanded(void *ud, const store_in_t *m, const char *body)
{
    engine_t *e = ud;
    /* retracted since it was stored: what the app is owed is on_retract
     * (it may have kept the message before a crash took the mark) */
    if (m->retracted)
        return enqueue(e, item_new(ITEM_RETRACT, m->id, m->peer));
    item_t *it = item_new(ITEM_MESSAGE, m->id, m->peer);
    if (!it)
        return COURIER_ENOMEM;
    it->kind = m->kind;
    it->ts_ms = m->timestamp_ms;
    it->text = util_strdup(body);
    it->meta = m->meta && m->meta[0] ? util_strdup(m->meta) : NULL;
    if (!it->text || (m->meta && m->meta[0] && !it->meta)) {
        item_free(it);
        return COURIER_ENOMEM;
    }
    int rc = enqueue(e, it);
    if (rc == COURIER_OK)
        e->received++;
    return rc;
}

int engine_open(engine_t **out, const courier_config_t *cfg,
                const courier_callbacks_t *cb, void *ud)
{
    char self[COURIER_JID_MAX], err[256] = "";
    *out = NULL;
    int rc = validate(cfg, self, sizeof(self));
    if (rc != COURIER_OK)
        return rc;
    engine_t *e = util_calloc(1, sizeof(*e));
    if (!e)
        return util_set_error(COURIER_ENOMEM, "out of memory");
    e->wake_fd = e->wake_wr = -1;
    pthread_mutex_init(&e->mu, NULL);
    e->sendq_tail = &e->sendq;
    pthread_cond_init(&e->group_cv, NULL);
    pthread_cond_init(&e->sendq_cv, NULL);
    e->clock = default_clock;
    atomic_store(&e->active, 1);
    e->cfg = *cfg;
    e->cfg.jid = e->cfg.password = e->cfg.host = NULL;
    e->cfg.db_path = e->cfg.ca_file = e->cfg.ca_path = NULL;
    if (copy_str(&e->cfg.jid, cfg->jid) || copy_str(&e->cfg.password,
        cfg->password) || copy_str(&e->cfg.host, cfg->host) ||
        copy_str(&e->cfg.db_path, cfg->db_path) ||
        copy_str(&e->cfg.ca_file, cfg->ca_file) ||
        copy_str(&e->cfg.ca_path, cfg->ca_path)) {
        rc = util_set_error(COURIER_ENOMEM, "out of memory");
        goto out;
    }
    util_strlcpy(e->self, self, sizeof(e->self));
    if (cb)
        e->cb = *cb;
    e->ud = ud;
    core_out_init(&e->out);
    e->lim = (core_limits_t){
        .ack_timeout_ms = cfg->ack_timeout_ms,
        .resend_grace_ms = cfg->resend_grace_ms,
        .ping_interval_ms = cfg->ping_interval_ms,
        .ping_timeout_ms = cfg->ping_timeout_ms,
        .reconnect_min_ms = cfg->reconnect_min_ms,
        .reconnect_max_ms = cfg->reconnect_max_ms,
        .max_in_flight = cfg->max_in_flight,
        .max_age_ms = cfg->max_age_ms,
        .implicit_read = cfg->implicit_read,
        .random_seed = (uint64_t)util_mono_ms() ^ (uint64_t)(uintptr_t)e,
    };
    if (wake_open(e) != 0) {
        rc = util_set_error(COURIER_ENOMEM, "wake-up fd: %s", strerror(errno));
        goto out;
    }
    store_opts_t so = { .synchronous_full = cfg->synchronous_full };
    rc = store_open(&e->store, cfg->db_path, &so, err, sizeof(err));
    if (rc != COURIER_OK) {
        util_set_error(rc, "%s", err);
        goto out;
    }
    rc = build_core(e, &e->core);
    if (rc != COURIER_OK) {
        util_set_error(rc, "loading the outbox: %s", store_errmsg(e->store));
        goto out;
    }
    /* A crash between store and on_message: hand those over now. */
    rc = store_in_each_unhanded(e->store, queue_unhanded, e);
    if (rc != COURIER_OK) {
        util_set_error(rc, "loading the inbox: %s", store_errmsg(e->store));
        goto out;
    }
out:
    if (rc != COURIER_OK) {
        engine_close(e);
        return rc;
    }
    *out = e;
    return COURIER_OK;
}

/* behaviour.md §3 exactly once: the app has the message. If the store cannot
 * record that, the mark is retried at every dispatch and at close; only a
 * process that ends before it succeeds hands it again at the next open,
 * and the log says so. Gone from the inbox (deleted) counts as done. */
static int set_handed(engine_t *e, int type, const char *peer,
                      const char *id)
{
    return type == ITEM_RETRACT
               ? store_in_set_retract_handed(e->store, peer, id)
               : store_in_set_handed(e->store, peer, id);
}

static void mark_handed_locked(engine_t *e, int type, const char *peer,
                               const char *id)
{
    int rc = set_handed(e, type, peer, id);
    if (rc == COURIER_OK || rc == COURIER_ENOTFOUND)
        return;
    log_locked(e, COURIER_LOG_ERROR, "marking %s handed: %s; retried, and "
               "handed again at the next open if it never succeeds", id,
               store_errmsg(e->store));
    item_t *it = item_new(type, id, peer);
    if (it) {
        it->next = e->unmarked;
        e->unmarked = it;
    }
}

static void retry_handed_locked(engine_t *e)
{
    item_t **link = &e->unmarked;
    while (*link) {
        item_t *it = *link;
        int rc = set_handed(e, it->type, it->peer, it->id);
        if (rc == COURIER_OK || rc == COURIER_ENOTFOUND) {
            *link = it->next;
            item_free(it);
        } else {
            link = &it->next;
        }
    }
}

void engine_close(engine_t *e)
{
    if (!e)
        return;
    while (e->head) {
        item_t *it = e->head;
        e->head = it->next;
        item_free(it);
    }
    retry_handed_locked(e);
    while (e->unmarked) {
        item_t *it = e->unmarked;
        e->unmarked = it->next;
        item_free(it);
    }
    while (e->retract_shown) {
        item_t *it = e->retract_shown;
        e->retract_shown = it->next;
        item_free(it);
    }
    core_free(e->core);
    core_out_free(&e->out);
    store_close(e->store);
    wake_close(e);
    free_cfg_strings(&e->cfg);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->group_cv);
    pthread_cond_destroy(&e->sendq_cv);
    util_free(e);
}

void engine_set_transport(engine_t *e, const engine_transport_t *tp,
                          void *tp_ud)
{
    engine_lock(e);
    if (tp)
        e->tp = *tp;
    else
        memset(&e->tp, 0, sizeof(e->tp));
    e->tp_ud = tp_ud;
    pthread_mutex_unlock(&e->mu);
}

void engine_set_clock(engine_t *e, engine_clock_fn fn, void *ud)
{
    engine_lock(e);
    e->clock = fn ? fn : default_clock;
    e->clock_ud = ud;
    pthread_mutex_unlock(&e->mu);
}

const courier_config_t *engine_config(const engine_t *e)
{
    return &e->cfg;
}

const char *engine_self(const engine_t *e)
{
    return e->self;
}

int engine_wake_fd(const engine_t *e)
{
    return e->wake_fd;
}

/* ---- app commands ---------------------------------------------------- */

static int check_body(const engine_t *e, const char *body)
{
    if (!body || !body[0])
        return util_set_error(COURIER_EINVAL, "body is empty");
    size_t n = strlen(body);
    if (n > e->cfg.max_body_bytes)
        return util_set_error(COURIER_EINVAL, "body of %zu bytes exceeds "
                              "max_body_bytes (%u)", n,
                              e->cfg.max_body_bytes);
    if (!util_utf8_valid(body))
        return util_set_error(COURIER_EINVAL, "body is not valid UTF-8");
    if (!util_xml_text_valid(body))
        return util_set_error(COURIER_EINVAL, "body has a control character "
                              "XML cannot carry (only tab, LF, CR)");
    return COURIER_OK;
}

static int check_peer(const char *jid, char *bare, size_t size)
{
    if (!jid || util_jid_bare(jid, bare, size) != 0)
        return util_set_error(COURIER_EINVAL, "invalid JID '%.64s'",
                              jid ? jid : "(null)");
    return COURIER_OK;
}

/* A (peer, id) pair from the app: the peer's bare JID into `bare`. */
static int check_peer_id(const char *peer, const char *id, char *bare,
                         size_t size)
{
    int rc = check_peer(peer, bare, size);
    if (rc == COURIER_OK && !util_id_valid(id))
        rc = util_set_error(COURIER_EINVAL, "invalid id");
    return rc;
}

/* A new message: the core decides first, and its decision on the message
 * itself (FAILED "offline", or the first transmission's attempts and
 * time) goes into the INSERT, so a send is one statement; the rest of the
 * actions run after it. `app_id`: the id came from the app and may repeat
 * a settled message the core no longer holds. Caller holds the mutex and
 * an open transaction. */
static int send_locked(engine_t *e, core_row_t *row, const char *body,
                       const char *meta, int app_id, core_now_t now)
{
    core_row_t stored;
    if (app_id && store_out_get(e->store, row->id, &stored, NULL, NULL) ==
                      COURIER_OK)
        return COURIER_ESTATE;
    core_ev_t ev = { .type = CORE_EV_SEND, .row = row };
    core_out_reset(&e->out);
    int rc = core_feed(e->core, &ev, now, &e->out);
    if (rc == COURIER_ESTATE || rc == COURIER_EINVAL)
        return rc; /* the core holds that id unsettled; nothing changed */
    if (rc != COURIER_OK) { /* no memory in the core: store, resync */
        rc = store_out_insert(e->store, row, body, meta);
        if (rc == COURIER_OK)
            resync_locked(e, "out of memory");
        return rc;
    }
    size_t none = e->out.len, st_at = none, tx_at = none;
    int st_changed = 0;
    for (size_t i = 0; i < e->out.len; i++) {
        const core_act_t *a = &e->out.acts[i];
        if (strcmp(a->id, row->id) != 0)
            continue;
        if (a->type == CORE_ACT_STATE && st_at == none) {
            st_at = i;
            st_changed = ((1u << row->state) & a->from_mask) != 0;
            if (st_changed) {
                row->state = a->state;
                row->attempts = a->attempts;
                row->bounces = a->bounces;
                row->last_sent_ms = a->last_sent_ms;
                row->last_change_ms = a->last_change_ms;
                row->permanent = a->permanent;
                util_strlcpy(row->reason, a->reason, sizeof(row->reason));
            }
        } else if (a->type == CORE_ACT_TRANSMIT && tx_at == none) {
            tx_at = i;
            row->attempts = a->attempts;
            row->last_sent_ms = a->last_sent_ms;
        }
    }
    rc = store_out_insert(e->store, row, body, meta);
    if (rc != COURIER_OK) { /* the core holds a message the store refused */
        resync_locked(e, store_errmsg(e->store));
        return rc;
    }
    /* Stored: whatever happens now, it is not lost (a rebuild from the
     * store picks it up). */
    int run_rc = COURIER_OK;
    for (size_t i = 0; i < e->out.len && run_rc == COURIER_OK; i++) {
        const core_act_t *a = &e->out.acts[i];
        if (i == st_at)
            run_rc = st_changed && a->notify
                         ? queue_state(e, a->id, a->peer, a->state)
                         : COURIER_OK;
        else if (i == tx_at)
            run_rc = enqueue(e, item_new(ITEM_SEND_CHAT, a->id, a->peer));
        else
            run_rc = run_action(e, a, now);
    }
    if (run_rc != COURIER_OK)
        resync_locked(e, store_errmsg(e->store));
    return COURIER_OK;
}

/* How long a leader waits for the other senders of the last group. */
#define GATHER_NS 200000

/* Group commit: write every queued send in one transaction (one statement
 * each) and commit it with the mutex let go, so that the sends of other
 * threads queue meanwhile and go in the next group: with several sending
 * threads each commit carries several messages. The connection is ours
 * alone during the commit: every other entry point waits in engine_lock
 * while group_open is set. Caller holds the mutex. */
static void commit_group(engine_t *e)
{
    /* As many threads sent last time: wait (briefly) until as many sends
     * are queued, so that they share this commit too. */
    if (e->sendq_len < e->last_group) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += GATHER_NS;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        e->gathering = 1;
        while (e->sendq_len < e->last_group &&
               pthread_cond_timedwait(&e->sendq_cv, &e->mu, &until) == 0)
            ;
        e->gathering = 0;
    }
    send_req_t *group = e->sendq;
    e->last_group = e->sendq_len;
    e->sendq = NULL;
    e->sendq_tail = &e->sendq;
    e->sendq_len = 0;
    int resume = batch_pause(e); /* the loop turn's batch: commit it first */
    txn_t t;
    txn_begin(e, &t);
    for (send_req_t *r = group; r; r = r->next) {
        core_now_t now = now_of(e);
        r->row->created_ms = r->row->last_change_ms = now.wall_ms;
        r->rc = send_locked(e, r->row, r->body, r->meta, r->app_id, now);
    }
    int crc = COURIER_OK;
    if (t.open) {
        e->group_open = 1;
        pthread_mutex_unlock(&e->mu);
        crc = store_commit(e->store);
        pthread_mutex_lock(&e->mu);
        e->group_open = 0;
        if (crc != COURIER_OK)
            txn_failed(e, &t);
    }
    for (send_req_t *r = group; r; r = r->next) {
        r->crc = crc;
        r->done = 1;
    }
    batch_resume(e, resume);
    pthread_cond_broadcast(&e->group_cv);
}

static int check_meta(const char *meta)
{
    if (!meta)
        return COURIER_OK;
    size_t n = strlen(meta);
    if (n > COURIER_META_MAX - 1)
        return util_set_error(COURIER_EINVAL, "meta of %zu bytes exceeds "
                              "%d", n, COURIER_META_MAX - 1);
    if (!util_utf8_valid(meta))
        return util_set_error(COURIER_EINVAL, "meta is not valid UTF-8");
    if (!util_xml_text_valid(meta))
        return util_set_error(COURIER_EINVAL, "meta has a control character "
                              "XML cannot carry (only tab, LF, CR)");
    return COURIER_OK;
}

int engine_send(engine_t *e, const char *to, courier_kind_t kind,
                const char *app_id, const char *body, const char *meta,
                char id_out[COURIER_ID_MAX])
{
    const char *media_id = app_id;
    core_row_t row;
    memset(&row, 0, sizeof(row));
    int rc = check_peer(to, row.peer, sizeof(row.peer));
    if (rc == COURIER_OK)
        rc = check_body(e, body);
    if (rc == COURIER_OK)
        rc = check_meta(meta);
    if (rc != COURIER_OK)
        return rc;
    if (kind != COURIER_TEXT && kind != COURIER_VOICE && kind != COURIER_IMAGE)
        return util_set_error(COURIER_EINVAL, "unknown kind %d", (int)kind);
    if (media_id) {
        if (!util_id_valid(media_id))
            return util_set_error(COURIER_EINVAL, "invalid id (1..%d "
                                  "bytes of UTF-8, no controls)",
                                  COURIER_ID_MAX - 1);
        util_strlcpy(row.id, media_id, sizeof(row.id));
    } else {
        util_new_id(row.id, sizeof(row.id));
    }
    row.kind = kind;
    row.state = COURIER_QUEUED;

    /* behaviour.md §5: durable before the call returns. */
    send_req_t me = { .row = &row, .body = body,
                      .meta = meta && meta[0] ? meta : NULL,
                      .app_id = media_id != NULL };
    pthread_mutex_lock(&e->mu);
    *e->sendq_tail = &me;
    e->sendq_tail = &me.next;
    e->sendq_len++;
    pthread_cond_signal(&e->sendq_cv);
    while (!me.done) {
        if (e->group_open || e->gathering)
            pthread_cond_wait(&e->group_cv, &e->mu);
        else
            commit_group(e);
    }
    rc = me.rc;
    int crc = me.crc;
    if (rc == COURIER_ESTATE) {
        util_set_error(rc, "a message with id '%s' exists", row.id);
    } else if (rc != COURIER_OK || crc != COURIER_OK) {
        rc = rc != COURIER_OK ? rc : crc;
        util_set_error(rc, "storing the message: %s", store_errmsg(e->store));
    } else if (id_out) {
        util_strlcpy(id_out, row.id, COURIER_ID_MAX);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int engine_retry(engine_t *e, const char *id)
{
    if (!util_id_valid(id))
        return util_set_error(COURIER_EINVAL, "invalid id");
    core_row_t row;
    txn_t t;
    app_lock(e);
    txn_begin(e, &t);
    int rc = store_out_get(e->store, id, &row, NULL, NULL);
    if (rc == COURIER_ENOTFOUND) {
        util_set_error(rc, "no message with id '%s'", id);
    } else if (rc != COURIER_OK) {
        util_set_error(rc, "%s", store_errmsg(e->store));
    } else if (row.state != COURIER_FAILED) {
        rc = util_set_error(COURIER_ESTATE, "message '%s' is %s, not FAILED",
                            id, courier_state_name(row.state));
    } else if (row.cancelled) {
        rc = util_set_error(COURIER_ESTATE, "message '%s' was cancelled, "
                            "retracted or deleted", id);
    } else {
        core_ev_t ev = { .type = CORE_EV_RETRY, .row = &row };
        rc = feed_locked(e, &ev);
    }
    int failed_before = rc != COURIER_OK;
    rc = txn_end(e, &t, rc);
    if (rc != COURIER_OK && !failed_before)
        util_set_error(rc, "retry '%s' failed", id);
    app_unlock(e);
    return rc;
}

/* ---- the app's data contract (behaviour.md §9) ----------------------- */

/* Feed CORE_EV_CANCEL for stored row `row` if it is not confirmed yet and
 * not given up already (`force`: SENT/OFFLINE too). Caller holds the mutex
 * and a transaction. */
static int cancel_locked(engine_t *e, core_row_t *row, int force)
{
    core_ev_t ev = { .type = CORE_EV_CANCEL, .id = row->id, .row = row,
                     .force = force };
    return feed_locked(e, &ev);
}

static int unconfirmed(const core_row_t *row)
{
    return row->state == COURIER_QUEUED || row->state == COURIER_SENT ||
           row->state == COURIER_OFFLINE || row->state == COURIER_FAILED;
}

/* Start an app command on outgoing `id`: lock, open a transaction and
 * read the row. Returns COURIER_OK with both held, or an error (with
 * courier_last_error set) with the lock let go. */
static int out_begin(engine_t *e, const char *id, core_row_t *row, txn_t *t)
{
    if (!util_id_valid(id))
        return util_set_error(COURIER_EINVAL, "invalid id");
    app_lock(e);
    txn_begin(e, t);
    int rc = store_out_get(e->store, id, row, NULL, NULL);
    if (rc == COURIER_OK)
        return rc;
    if (rc == COURIER_ENOTFOUND)
        util_set_error(rc, "no outgoing message with id '%s'", id);
    else
        util_set_error(rc, "%s", store_errmsg(e->store));
    txn_end(e, t, rc);
    app_unlock(e);
    return rc;
}

/* Commit, or on error roll back (`touched`: the core moved too, so it is
 * rebuilt from the store), and let go. */
static int app_end(engine_t *e, txn_t *t, int rc, const char *what,
                   int touched)
{
    int failed_before = rc != COURIER_OK;
    if (failed_before && !touched) {
        rc = txn_end(e, t, rc); /* nothing written: the commit is empty */
        app_unlock(e);
        return rc;
    }
    if (failed_before && t->open && !t->joined) {
        store_rollback(e->store);
        t->open = 0;
        txn_failed(e, t); /* the core may have moved: rebuild it */
    }
    rc = txn_end(e, t, rc);
    if (rc != COURIER_OK && !failed_before)
        util_set_error(rc, "%s: %s", what, store_errmsg(e->store));
    app_unlock(e);
    return rc;
}

int engine_cancel(engine_t *e, const char *id)
{
    core_row_t row;
    txn_t t;
    int rc = out_begin(e, id, &row, &t);
    if (rc != COURIER_OK)
        return rc;
    if (row.cancelled)
        rc = util_set_error(COURIER_ESTATE, "message '%s' was already "
                            "cancelled (or retracted, deleted)", id);
    else if (row.state != COURIER_QUEUED && row.state != COURIER_FAILED)
        rc = util_set_error(COURIER_ESTATE, "message '%s' is %s: the server "
                            "has it (use courier_retract)", id,
                            courier_state_name(row.state));
    else
        return app_end(e, &t, cancel_locked(e, &row, 0), "cancel", 1);
    return app_end(e, &t, rc, "cancel", 0);
}

int engine_retract(engine_t *e, const char *id)
{
    core_row_t row;
    txn_t t;
    int rc = out_begin(e, id, &row, &t);
    if (rc != COURIER_OK)
        return rc;
    if (row.retracted || row.deleted) {
        rc = util_set_error(COURIER_ESTATE, "message '%s' is already %s", id,
                            row.retracted ? "retracted" : "deleted");
        return app_end(e, &t, rc, "retract", 0);
    }
    /* never written again: a resend after the retraction would show it */
    if (unconfirmed(&row) && !row.cancelled)
        rc = cancel_locked(e, &row, 1);
    if (rc == COURIER_OK)
        rc = store_out_mark(e->store, id, 1, 0);
    if (rc == COURIER_OK) {
        /* stored like an owed receipt: sent until the server has it */
        store_rcpt_t r;
        memset(&r, 0, sizeof(r));
        util_strlcpy(r.peer, row.peer, sizeof(r.peer));
        util_strlcpy(r.id, id, sizeof(r.id));
        r.retract = 1;
        rc = store_rcpt_add(e->store, &r, NULL);
        if (rc == COURIER_OK)
            rc = pump_receipts(e);
    }
    return app_end(e, &t, rc, "retract", 1);
}

int engine_delete(engine_t *e, const char *peer, const char *id, int dir)
{
    char bare[COURIER_JID_MAX];
    int rc = check_peer_id(peer, id, bare, sizeof(bare));
    if (rc != COURIER_OK)
        return rc;
    if (dir != ENGINE_DIR_ANY && dir != COURIER_DIR_OUT &&
        dir != COURIER_DIR_IN)
        return util_set_error(COURIER_EINVAL, "dir: %d is no direction", dir);
    core_row_t row;
    store_in_t in;
    txn_t t;
    app_lock(e);
    txn_begin(e, &t);
    /* the peer chose its ids: one may equal one of ours; then the app
     * must say which entry it means */
    int out_found = 0, in_found = 0, out_live = 0, in_live = 0;
    rc = store_out_get(e->store, id, &row, NULL, NULL);
    if (rc == COURIER_OK && strcmp(row.peer, bare) == 0) {
        out_found = dir != COURIER_DIR_IN;
        out_live = out_found && !row.deleted;
    }
    if (rc == COURIER_OK || rc == COURIER_ENOTFOUND)
        rc = store_in_get(e->store, bare, id, &in);
    if (rc == COURIER_OK) {
        in_found = dir != COURIER_DIR_OUT;
        in_live = in_found && !in.deleted;
    }
    if (rc == COURIER_ENOTFOUND)
        rc = COURIER_OK;
    /* deleting again is harmless; a deleted side is not a candidate */
    if (out_live && !in_live)
        in_found = 0;
    else if (in_live && !out_live)
        out_found = 0;
    if (rc == COURIER_OK && out_live && in_live) {
        rc = util_set_error(COURIER_ESTATE, "'%s' names a message in each "
                            "direction with %s: use courier_delete_entry",
                            id, bare);
        return app_end(e, &t, rc, "delete", 0);
    }
    if (rc == COURIER_OK && out_found) {
        if (unconfirmed(&row) && !row.cancelled)
            rc = cancel_locked(e, &row, 1);
        if (rc == COURIER_OK)
            rc = store_out_mark(e->store, id, 0, 1);
    } else if (rc == COURIER_OK && in_found) {
        rc = store_in_delete(e->store, bare, id);
    }
    int found = out_found || in_found;
    if (rc == COURIER_OK && !found)
        rc = util_set_error(COURIER_ENOTFOUND, "no message '%s' with %s", id,
                            bare);
    else if (rc != COURIER_OK)
        util_set_error(rc, "delete: %s", store_errmsg(e->store));
    return app_end(e, &t, rc, "delete", found);
}

static int confirm_retraction_locked(engine_t *e, const char *peer,
                                     const char *id)
{
    for (item_t **link = &e->retract_shown; *link; link = &(*link)->next) {
        item_t *w = *link;
        if (strcmp(w->id, id) != 0 || strcmp(w->peer, peer) != 0)
            continue;
        int rc = store_in_set_retract_handed(e->store, peer, id);
        if (rc == COURIER_OK || rc == COURIER_ENOTFOUND) {
            *link = w->next;
            item_free(w);
            rc = COURIER_OK;
        }
        return rc;
    }
    return COURIER_OK;
}

int engine_confirm(engine_t *e, const char *peer, const char *id)
{
    char bare[COURIER_JID_MAX];
    int rc = check_peer_id(peer, id, bare, sizeof(bare));
    if (rc != COURIER_OK)
        return rc;
    if (!e->cfg.app_confirms)
        return util_set_error(COURIER_ESTATE, "app_confirms is off: a "
                              "message counts as handed when on_message "
                              "returns");
    store_in_t in;
    app_lock(e);
    rc = store_in_get(e->store, bare, id, &in);
    if (rc == COURIER_OK && !in.handed && !in.retracted) {
        rc = store_in_set_handed(e->store, bare, id);
        if (rc == COURIER_ENOTFOUND) /* retracted meanwhile: still owed */
            rc = COURIER_OK;
    } else if (rc == COURIER_OK && !in.handed) {
        /* a retraction is confirmed only after on_retract named it; a
         * confirm of the message itself leaves it owed */
        rc = confirm_retraction_locked(e, bare, id);
    }
    if (rc == COURIER_ENOTFOUND)
        util_set_error(rc, "no message '%s' from %s", id, bare);
    else if (rc != COURIER_OK)
        util_set_error(rc, "confirm: %s", store_errmsg(e->store));
    app_unlock(e);
    return rc;
}

int engine_erase(engine_t *e)
{
    app_lock(e);
    int rc = store_erase(e->store);
    if (rc != COURIER_OK)
        util_set_error(rc, "erase: %s", store_errmsg(e->store));
    /* the core held the outbox: start from the empty store */
    int rb = rebuild_core(e);
    if (rc == COURIER_OK && rb != COURIER_OK)
        rc = util_set_error(rb, "erase: %s", store_errmsg(e->store));
    e->rcpt_after = 0;
    e->rcpt_out = 0;
    app_unlock(e);
    return rc;
}

int engine_read(engine_t *e, engine_read_fn fn, void *ud)
{
    app_lock(e);
    int rc = fn(e->store, ud);
    if (rc < 0 && rc != COURIER_ENOTFOUND)
        util_set_error(rc, "%s", store_errmsg(e->store));
    app_unlock(e);
    return rc;
}

int engine_mark_displayed(engine_t *e, const char *peer, const char *id)
{
    char bare[COURIER_JID_MAX];
    int rc = check_peer_id(peer, id, bare, sizeof(bare));
    if (rc != COURIER_OK)
        return rc;
    store_in_t in;
    txn_t t;
    app_lock(e);
    txn_begin(e, &t);
    rc = store_in_get(e->store, bare, id, &in);
    if (rc == COURIER_OK)
        rc = store_in_set_displayed(e->store, bare, id);
    if (rc == COURIER_ENOTFOUND) {
        util_set_error(rc, "no message '%s' from %s", id, bare);
    } else if (rc != COURIER_OK) {
        util_set_error(rc, "%s", store_errmsg(e->store));
    } else {
        core_ev_t ev = { .type = CORE_EV_MARK_DISPLAYED, .id = id,
                         .peer = bare, .asked = in.asked };
        rc = feed_locked(e, &ev);
    }
    rc = txn_end(e, &t, rc);
    if (rc != COURIER_OK && rc != COURIER_ENOTFOUND)
        util_set_error(rc, "%s", store_errmsg(e->store));
    app_unlock(e);
    return rc;
}

int engine_set_composing(engine_t *e, const char *peer, int on)
{
    char bare[COURIER_JID_MAX];
    int rc = check_peer(peer, bare, sizeof(bare));
    if (rc != COURIER_OK)
        return rc;
    app_lock(e);
    if (!core_link_up(e->core)) {
        rc = util_set_error(COURIER_ENOTCONN, "composing needs the link");
    } else if (!atomic_load(&e->active) && on) {
        /* behaviour.md §10: in background no composing leaves (its end
         * does: a "typing" at the peer must not stick) */
    } else {
        /* behaviour.md §3: XEP-0022 composing names the peer's last message. */
        char last[COURIER_ID_MAX] = "";
        unsigned asked = 0;
        if (store_in_last_id(e->store, bare, last, &asked) != COURIER_OK ||
            !(asked & CORE_ASK_X22_COMPOSING))
            last[0] = '\0'; /* XEP-0022: raise only what was requested */
        item_t *it = item_new(ITEM_SEND_COMPOSING, last, bare);
        if (it)
            it->flag = on != 0;
        rc = enqueue(e, it);
        if (rc != COURIER_OK)
            util_set_error(rc, "out of memory");
    }
    app_unlock(e);
    return rc;
}

int engine_get_info(engine_t *e, const char *id, courier_info_t *out)
{
    if (!util_id_valid(id) || !out)
        return util_set_error(COURIER_EINVAL, "invalid id or NULL output");
    core_row_t row;
    app_lock(e);
    int rc = store_out_get(e->store, id, &row, NULL, NULL);
    if (rc == COURIER_ENOTFOUND)
        util_set_error(rc, "no message with id '%s'", id);
    else if (rc != COURIER_OK)
        util_set_error(rc, "%s", store_errmsg(e->store));
    app_unlock(e);
    if (rc != COURIER_OK)
        return rc;
    memset(out, 0, sizeof(*out));
    out->state = row.state;
    out->attempts = row.attempts;
    out->created_ms = row.created_ms;
    out->last_sent_ms = row.last_sent_ms;
    out->last_change_ms = row.last_change_ms;
    out->permanent = row.state == COURIER_FAILED && row.permanent;
    util_strlcpy(out->reason, row.reason, sizeof(out->reason));
    return COURIER_OK;
}

void engine_get_stats(engine_t *e, courier_stats_t *out)
{
    core_stats_t st;
    engine_lock(e);
    core_get_stats(e->core, &st);
    memset(out, 0, sizeof(*out));
    out->sent = e->retired.first_writes + st.first_writes;
    out->resent_reconnect = e->retired.rewrites[CORE_CAUSE_RECONNECT] +
                            st.rewrites[CORE_CAUSE_RECONNECT];
    out->resent_peer =
        e->retired.rewrites[CORE_CAUSE_PEER] + st.rewrites[CORE_CAUSE_PEER];
    out->resent_retry =
        e->retired.rewrites[CORE_CAUSE_RETRY] + st.rewrites[CORE_CAUSE_RETRY];
    out->received = e->received;
    out->duplicates = e->duplicates;
    out->links_up = e->retired.links_up + st.links_up;
    pthread_mutex_unlock(&e->mu);
}

courier_link_t engine_link(engine_t *e, int *auth_failed)
{
    engine_lock(e);
    courier_link_t l = core_link(e->core);
    if (auth_failed)
        *auth_failed = core_auth_failed(e->core);
    pthread_mutex_unlock(&e->mu);
    return l;
}

int engine_wants_certificates(engine_t *e)
{
    return e->cb.on_certificate != NULL;
}

int engine_ask_certificate(engine_t *e, const char *host, const char *pem)
{
    engine_lock(e);
    int muted = e->muted;
    pthread_mutex_unlock(&e->mu);
    if (muted || !e->cb.on_certificate)
        return 0; /* nobody left to ask: refused */
    return e->cb.on_certificate(e->ud, host, pem) != 0;
}

void engine_mute(engine_t *e)
{
    engine_lock(e);
    e->muted = 1;
    pthread_mutex_unlock(&e->mu);
}

/* ---- session events --------------------------------------------------- */

int engine_feed(engine_t *e, core_ev_type_t type)
{
    core_ev_t ev = { .type = type };
    /* A report from before a start or stop has nothing left to act on. */
    if (type == CORE_EV_START || type == CORE_EV_STOP)
        atomic_store(&e->net_changed, 0);
    txn_t t;
    engine_lock(e);
    txn_join(e, &t);
    int was_up = core_link_up(e->core);
    int rc = feed_locked(e, &ev);
    /* behaviour.md §3: receipts the server never acknowledged go out again, from
     * the oldest, through a fresh window (behaviour.md §11). */
    if (rc == COURIER_OK && !was_up && core_link_up(e->core)) {
        e->rcpt_after = 0;
        e->rcpt_out = 0;
        rc = pump_receipts(e);
    }
    rc = txn_end(e, &t, rc);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int engine_acked_batch(engine_t *e, const engine_ack_t *acks, size_t n)
{
    int rc = COURIER_OK, receipts = 0;
    txn_t t;
    engine_lock(e);
    txn_join(e, &t);
    for (size_t i = 0; i < n; i++) {
        int one;
        if (acks[i].id) {
            core_ev_t ev = { .type = CORE_EV_ACKED, .id = acks[i].id };
            /* behaviour.md §1: the core let go of it (expired): the stored row */
            core_row_t row;
            if (!core_find(e->core, acks[i].id) &&
                store_out_get(e->store, acks[i].id, &row, NULL, NULL) ==
                    COURIER_OK)
                ev.row = &row;
            one = feed_locked(e, &ev);
        } else {
            one = store_rcpt_done(e->store, acks[i].rid);
            if (e->rcpt_out > 0)
                e->rcpt_out--;
            receipts = 1;
        }
        if (rc == COURIER_OK)
            rc = one;
    }
    if (receipts) {
        int one = pump_receipts(e);
        if (rc == COURIER_OK)
            rc = one;
    }
    rc = txn_end(e, &t, rc);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int engine_acked(engine_t *e, const char *id)
{
    engine_ack_t a = { .id = id };
    return engine_acked_batch(e, &a, 1);
}

int engine_receipt_acked(engine_t *e, int64_t rid)
{
    engine_ack_t a = { .rid = rid };
    return engine_acked_batch(e, &a, 1);
}

static int incoming_chat(engine_t *e, const codec_msg_t *m, core_now_t now)
{
    store_in_t in, old;
    memset(&in, 0, sizeof(in));
    util_strlcpy(in.peer, m->from, sizeof(in.peer));
    util_strlcpy(in.id, m->id, sizeof(in.id));
    in.kind = m->kind;
    in.timestamp_ms = m->delay_ms ? m->delay_ms : now.wall_ms;
    in.asked = m->asked;
    in.meta = m->meta;
    int dup = 0;
    /* behaviour.md §3: stored first, then handed over; dedupe on (peer, id). */
    int rc = store_in_insert(e->store, &in, m->body, &dup, &old);
    if (rc != COURIER_OK) {
        log_locked(e, COURIER_LOG_ERROR, "storing message %s from %s: %s",
                   m->id, m->from, store_errmsg(e->store));
        return rc;
    }
    core_ev_t ev = { .type = CORE_EV_MESSAGE, .id = m->id, .peer = m->from,
                     .sent_wall_ms = in.timestamp_ms,
                     .asked = dup ? (old.asked | m->asked) : m->asked,
                     .duplicate = dup,
                     .displayed_before = dup && old.displayed };
    if (dup) {
        e->duplicates++;
        log_locked(e, COURIER_LOG_DEBUG, "duplicate %s from %s dropped",
                   m->id, m->from);
    }
    e->incoming = m;
    e->incoming_ts = in.timestamp_ms;
    rc = feed_locked(e, &ev);
    e->incoming = NULL;
    return rc;
}

/* behaviour.md §9: a retraction is honoured from the message's own sender
 * only: the inbox is keyed by (sender, id), so another peer's retraction
 * can only name a message of its own. */
static int incoming_retract(engine_t *e, const codec_msg_t *m,
                            core_now_t now)
{
    int existed = 0;
    int rc = store_in_retract(e->store, m->from, m->retract_id, now.wall_ms,
                              &existed);
    if (rc != COURIER_OK) {
        log_locked(e, COURIER_LOG_ERROR, "storing the retraction of %s from "
                   "%s: %s", m->retract_id, m->from, store_errmsg(e->store));
        return rc;
    }
    if (!existed) {
        log_locked(e, COURIER_LOG_DEBUG, "retraction of %s from %s: not "
                   "received yet (kept) or already retracted",
                   m->retract_id, m->from);
        return COURIER_OK;
    }
    return enqueue(e, item_new(ITEM_RETRACT, m->retract_id, m->from));
}

int engine_incoming(engine_t *e, const codec_msg_t *m)
{
    int rc = COURIER_OK;
    txn_t t;
    engine_lock(e);
    txn_join(e, &t);
    core_now_t now = now_of(e);
    if (m->cls == CODEC_IGNORE) {
        log_locked(e, COURIER_LOG_DEBUG, "message ignored: %s",
                   m->why ? m->why : "?");
    } else if (strcmp(m->from, e->self) == 0 && m->cls != CODEC_ERROR) {
        /* our own other resources: never events about our messages */
        log_locked(e, COURIER_LOG_DEBUG, "message from our own account "
                   "ignored");
        txn_end(e, &t, COURIER_OK);
        pthread_mutex_unlock(&e->mu);
        return COURIER_OK;
    } else if (m->cls == CODEC_CHAT) {
        rc = incoming_chat(e, m, now);
    } else if (m->cls == CODEC_RETRACT) {
        rc = incoming_retract(e, m, now);
    } else if (m->cls == CODEC_ERROR) {
        core_row_t row;
        int have =
            store_out_get(e->store, m->id, &row, NULL, NULL) == COURIER_OK;
        core_ev_t ev = { .type = CORE_EV_ERROR, .id = m->id, .peer = m->from,
                         .row = have ? &row : NULL, .err_type = m->err_type,
                         .condition = m->condition };
        rc = feed_locked(e, &ev);
    }
    if (m->cls == CODEC_CHAT || m->cls == CODEC_EVENTS) {
        for (size_t i = 0; i < m->n_events && rc == COURIER_OK; i++) {
            const codec_event_t *x = &m->events[i];
            core_row_t row;
            /* The core's row wins when it holds the message (core.c
             * on_event): the store is read only for one it let go of. */
            int have = !core_find(e->core, x->id) &&
                       store_out_get(e->store, x->id, &row, NULL, NULL) ==
                           COURIER_OK;
            core_ev_t ev = { .type = CORE_EV_EVENT, .id = x->id,
                             .peer = m->from, .row = have ? &row : NULL,
                             .kind_state = x->state,
                             .cumulative = x->cumulative };
            rc = feed_locked(e, &ev);
        }
        if (m->composing >= 0 && e->cb.on_composing) {
            item_t *it = item_new(ITEM_COMPOSING_IN, NULL, m->from);
            if (it)
                it->flag = m->composing;
            enqueue(e, it);
        }
    }
    /* Stored and committed before the handler returns, thus before the
     * session counts it in the <a h/> it owes the server. */
    rc = txn_end(e, &t, rc);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int engine_network_changed(engine_t *e)
{
    /* behaviour.md §10: no lock, no store: the loop feeds it at its next
     * turn (engine_tick). Reports that coalesce lose nothing. */
    atomic_store(&e->net_changed, 1);
    wake(e);
    return COURIER_OK;
}

int engine_set_active(engine_t *e, int active)
{
    atomic_store(&e->active, active != 0);
    wake(e);
    return COURIER_OK;
}

int engine_is_active(const engine_t *e)
{
    return atomic_load(&((engine_t *)e)->active);
}

int engine_tick(engine_t *e)
{
    int rc = COURIER_OK;
    engine_lock(e);
    if (atomic_exchange(&e->net_changed, 0)) {
        core_ev_t ev = { .type = CORE_EV_NETWORK_CHANGED };
        txn_t t;
        txn_join(e, &t);
        rc = txn_end(e, &t, feed_locked(e, &ev));
    }
    core_now_t now = now_of(e);
    int64_t d = core_next_deadline(e->core, now);
    if (d >= 0 && d <= now.mono_ms) {
        core_ev_t ev = { .type = CORE_EV_TICK };
        txn_t t;
        txn_join(e, &t);
        rc = txn_end(e, &t, feed_locked(e, &ev));
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int64_t engine_timeout_ms(engine_t *e)
{
    /* A report whose wake-up the dispatch drained is due now. */
    if (atomic_load(&e->net_changed))
        return 0;
    engine_lock(e);
    core_now_t now = now_of(e);
    int64_t d = core_next_deadline(e->core, now);
    pthread_mutex_unlock(&e->mu);
    if (d < 0)
        return -1;
    return d > now.mono_ms ? d - now.mono_ms : 0;
}

/* ---- the loop thread ------------------------------------------------- */

static void run_item(engine_t *e, item_t *it)
{
    engine_lock(e);
    int muted = e->muted;
    pthread_mutex_unlock(&e->mu);
    /* After courier_close no app callback runs; an unhanded message stays
     * unhanded and is handed at the next open. */
    static const courier_callbacks_t none;
    const courier_callbacks_t *cb = muted ? &none : &e->cb;
    if (muted && it->type == ITEM_MESSAGE)
        return;
    const engine_transport_t *tp = &e->tp;
    switch (it->type) {
    case ITEM_STATE:
        if (cb->on_state)
            cb->on_state(e->ud, it->id, it->peer, it->state);
        break;
    case ITEM_MESSAGE: {
        courier_message_t msg = { .id = it->id, .peer = it->peer,
                                  .kind = it->kind, .body = it->text,
                                  .timestamp_ms = it->ts_ms,
                                  .meta = it->meta ? it->meta : "" };
        if (cb->on_message)
            cb->on_message(e->ud, &msg);
        /* behaviour.md §9: with app_confirms, courier_confirm marks it */
        if (!e->cfg.app_confirms) {
            engine_lock(e);
            mark_handed_locked(e, ITEM_MESSAGE, it->peer, it->id);
            pthread_mutex_unlock(&e->mu);
        }
        break;
    }
    case ITEM_RETRACT:
        if (cb->on_retract)
            cb->on_retract(e->ud, it->peer, it->id);
        engine_lock(e);
        if (!e->cfg.app_confirms) {
            mark_handed_locked(e, ITEM_RETRACT, it->peer, it->id);
        } else {
            /* owed until courier_confirm names it after this call */
            item_t *w = item_new(ITEM_RETRACT, it->id, it->peer);
            if (w) {
                w->next = e->retract_shown;
                e->retract_shown = w;
            }
        }
        pthread_mutex_unlock(&e->mu);
        break;
    case ITEM_LINK:
        if (cb->on_link)
            cb->on_link(e->ud, it->link);
        break;
    case ITEM_COMPOSING_IN:
        if (cb->on_composing)
            cb->on_composing(e->ud, it->peer, it->flag);
        break;
    case ITEM_LOG:
        if (cb->on_log)
            cb->on_log(e->ud, it->flag, it->text);
        break;
    case ITEM_SEND_CHAT: {
        core_row_t row;
        char *body = NULL, *meta = NULL;
        engine_lock(e);
        int rc = store_out_get(e->store, it->id, &row, &body, &meta);
        if (rc != COURIER_OK)
            log_locked(e, COURIER_LOG_ERROR, "loading %s to send: %s", it->id,
                       store_errmsg(e->store));
        pthread_mutex_unlock(&e->mu);
        /* cancelled (or retracted, deleted) after this write was queued:
         * behaviour.md §9 "never written again" */
        if (rc == COURIER_OK && !row.cancelled && tp->send_chat)
            tp->send_chat(e->tp_ud, &row, body, meta);
        util_free(body);
        util_free(meta);
        break;
    }
    case ITEM_SEND_RECEIPT:
        if (tp->send_receipt) {
            store_rcpt_t r;
            memset(&r, 0, sizeof(r));
            r.rid = it->rid;
            util_strlcpy(r.peer, it->peer, sizeof(r.peer));
            util_strlcpy(r.id, it->id, sizeof(r.id));
            r.state = it->state;
            r.asked = it->asked;
            r.retract = it->retract;
            tp->send_receipt(e->tp_ud, &r);
        }
        break;
    case ITEM_SEND_COMPOSING:
        if (tp->send_composing)
            tp->send_composing(e->tp_ud, it->peer,
                               it->id[0] ? it->id : NULL, it->flag);
        break;
    case ITEM_PING:
        if (tp->ping)
            tp->ping(e->tp_ud);
        break;
    case ITEM_DROP_LINK:
        if (tp->drop_link)
            tp->drop_link(e->tp_ud);
        break;
    case ITEM_CONNECT:
        if (tp->connect)
            tp->connect(e->tp_ud);
        break;
    }
}

size_t engine_dispatch(engine_t *e)
{
    size_t n = 0;
    wake_drain(e);
    /* What is dispatched reports store writes: they must be committed,
     * and the writes it makes itself (a message marked handed) commit on
     * their own. The session ends its batch before; this makes it a rule.
     * A failed commit is left for engine_batch_end to report. */
    engine_lock(e);
    batch_pause(e);
    retry_handed_locked(e);
    pthread_mutex_unlock(&e->mu);
    for (;;) {
        engine_lock(e);
        item_t *it = e->head;
        if (it) {
            e->head = it->next;
            if (!e->head)
                e->tail = NULL;
            e->pending--;
            e->running_item = 1;
        }
        pthread_mutex_unlock(&e->mu);
        if (!it)
            break;
        run_item(e, it); /* no lock held: callbacks may call the API */
        item_free(it);
        engine_lock(e);
        e->running_item = 0;
        pthread_mutex_unlock(&e->mu);
        n++;
    }
    return n;
}

void engine_wake(engine_t *e)
{
    wake(e);
}

static int count_rcpt(void *ud, const store_rcpt_t *r)
{
    (void)r;
    (*(size_t *)ud)++;
    return 0;
}

int engine_quiet(engine_t *e)
{
    size_t owed = 0;
    engine_lock(e);
    int quiet = core_link_up(e->core) && !core_owes_writes(e->core) &&
                e->rcpt_out == 0 && e->pending == 0 && !e->running_item;
    if (quiet && (store_rcpt_each_after(e->store, 0, 1, count_rcpt,
                                        &owed) != COURIER_OK || owed > 0))
        quiet = 0;
    pthread_mutex_unlock(&e->mu);
    return quiet;
}

size_t engine_pending(engine_t *e)
{
    engine_lock(e);
    size_t n = e->pending;
    pthread_mutex_unlock(&e->mu);
    return n;
}
