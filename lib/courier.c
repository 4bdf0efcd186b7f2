/* SPDX-License-Identifier: MIT */
/* Public entry points: validate, record the error, forward. */
/* the exported courier_config_init of the 0.1 ABI, not the header's inline */
#define COURIER_BUILDING_LIBRARY
#include "courier.h"

#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "engine.h"
#include "history.h"
#include "push.h"
#include "session.h"
#include "util.h"

struct courier {
    engine_t *engine;
    session_t *session;
    check_t *check;         /* the store check after an unclean close */
    push_t *push;           /* XEP-0357 registration (lib/push.c) */
    pthread_mutex_t life;   /* start/stop/close from app threads */
    pthread_mutex_t mu;     /* guards the fields below */
    int driving;            /* a thread is inside courier_run_once */
    pthread_t driver;
    int close_pending;      /* courier_close from a callback */
    int shutting;           /* courier_close under way: no new sync */
    int syncing;            /* threads inside courier_sync */
    pthread_cond_t sync_gone; /* signalled when syncing drops to 0 */
};

static void destroy(courier_t *c);

/* courier_close while another thread waits in courier_sync: the waiter
 * sees `shutting` (or close_pending) within its 5 ms poll and leaves;
 * the handle is freed only after the last one has. */
static void wait_syncs_gone(courier_t *c)
{
    push_shutdown(c->push); /* its waiters leave now, not at their timeout */
    pthread_mutex_lock(&c->mu);
    c->shutting = 1;
    while (c->syncing > 0)
        pthread_cond_wait(&c->sync_gone, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

/* The loop thread ends after a courier_close from one of its callbacks:
 * it frees the handle itself, as nobody is left to join it. */
static void loop_exit_hook(void *ud)
{
    courier_t *c = ud;
    pthread_mutex_lock(&c->mu);
    int close_now = c->close_pending;
    pthread_mutex_unlock(&c->mu);
    if (close_now) {
        wait_syncs_gone(c);
        pthread_detach(pthread_self());
        destroy(c);
    }
}

/* What a version-1 caller's structs hold: everything before the members
 * version 2 appended. */
#define CONFIG_V1_SIZE offsetof(courier_config_t, app_confirms)
#define CALLBACKS_V1_SIZE offsetof(courier_callbacks_t, on_retract)

static void config_defaults(courier_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->ack_timeout_ms = 30000;    /* behaviour.md §2 */
    cfg->resend_grace_ms = 10000;
    cfg->ping_interval_ms = 30000;  /* behaviour.md §4 */
    cfg->ping_timeout_ms = 33000;
    cfg->reconnect_min_ms = 1000;
    cfg->reconnect_max_ms = 60000;
    cfg->max_in_flight = 100;
    cfg->max_age_ms = 0;
    cfg->implicit_read = 1;
    cfg->version = COURIER_CONFIG_VERSION;
    cfg->synchronous_full = 0;
    cfg->max_body_bytes = COURIER_BODY_MAX_DEFAULT;
    cfg->app_confirms = 0;
}

/* The function programs built against the 0.1 header call: their struct
 * ends before app_confirms, so only that much is written. */
void courier_config_init(courier_config_t *cfg)
{
    courier_config_init_size(cfg, CONFIG_V1_SIZE);
}

void courier_config_init_size(courier_config_t *cfg, size_t size)
{
    courier_config_t full;
    if (!cfg || size < CONFIG_V1_SIZE)
        return;
    config_defaults(&full);
    if (size < sizeof(full)) {
        full.version = 1;
        memcpy(cfg, &full, CONFIG_V1_SIZE);
    } else {
        *cfg = full;
    }
}

static int read_check_owed(store_t *s, void *ud)
{
    *(int *)ud = store_check_owed(s);
    return COURIER_OK;
}

static int keep_check_owed(store_t *s, void *ud)
{
    (void)ud;
    store_keep_check_owed(s);
    return COURIER_OK;
}

/* On the check thread: the verdict goes to on_log (loop thread). */
static void check_report(void *ud, courier_check_t v, const char *detail)
{
    courier_t *c = ud;
    const char *path = engine_config(c->engine)->db_path;
    if (v == COURIER_CHECK_OK)
        engine_log(c->engine, COURIER_LOG_INFO, "store %s: check after an "
                   "unclean close: ok", path);
    else if (v == COURIER_CHECK_DAMAGED)
        engine_log(c->engine, COURIER_LOG_ERROR, "store %s is damaged (%s): "
                   "courier_check_status() says COURIER_CHECK_DAMAGED",
                   path, detail);
    else
        engine_log(c->engine, COURIER_LOG_WARN, "store %s: the check after "
                   "an unclean close could not run (%s); owed again at the "
                   "next open", path, detail);
}

int courier_open(courier_t **out, const courier_config_t *cfg,
                 const courier_callbacks_t *cb, void *ud)
{
    if (!out)
        return util_set_error(COURIER_EINVAL, "out is NULL");
    *out = NULL;
    if (!cfg)
        return util_set_error(COURIER_EINVAL, "cfg is NULL");
    /* behaviour.md §9: a caller's structs are as long as its header made
     * them; the version says which members exist. */
    courier_config_t full_cfg;
    courier_callbacks_t full_cb;
    if (cfg->version == 1) {
        config_defaults(&full_cfg);
        memcpy(&full_cfg, cfg, CONFIG_V1_SIZE);
        full_cfg.version = COURIER_CONFIG_VERSION;
        memset(&full_cb, 0, sizeof(full_cb));
        if (cb)
            memcpy(&full_cb, cb, CALLBACKS_V1_SIZE);
        cfg = &full_cfg;
        cb = cb ? &full_cb : NULL;
    }
    courier_t *c = util_calloc(1, sizeof(*c));
    if (!c)
        return util_set_error(COURIER_ENOMEM, "out of memory");
    int rc = engine_open(&c->engine, cfg, cb, ud);
    if (rc != COURIER_OK) {
        util_free(c);
        return rc;
    }
    rc = session_new(&c->session, c->engine);
    if (rc != COURIER_OK) {
        engine_close(c->engine);
        util_free(c);
        return util_set_error(rc, "cannot create the XMPP session");
    }
    rc = check_new(&c->check, engine_config(c->engine)->db_path,
                   check_report, c);
    if (rc == COURIER_OK)
        rc = push_new(&c->push, c->engine);
    if (rc != COURIER_OK) {
        check_free(c->check);
        session_free(c->session);
        engine_close(c->engine);
        util_free(c);
        return util_set_error(rc, "out of memory");
    }
    session_set_push(c->session, c->push);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->life, NULL);
    pthread_cond_init(&c->sync_gone, NULL);
    session_set_exit_hook(c->session, loop_exit_hook, c);
    /* behaviour.md §10: after an unclean close the check of every page
     * runs on a thread of its own; open has done what must come first
     * (WAL recovery, schema) and returns. */
    int owed = 0;
    engine_read(c->engine, read_check_owed, &owed);
    if (owed) {
        engine_log(c->engine, COURIER_LOG_INFO, "store %s was not closed "
                   "cleanly: checking it on a thread of its own",
                   engine_config(c->engine)->db_path);
        check_begin(c->check);
    }
    *out = c;
    return COURIER_OK;
}

/* 1 if the calling thread is running this handle's callbacks. */
static int in_loop_thread(courier_t *c)
{
    pthread_mutex_lock(&c->mu);
    int yes = c->driving && pthread_equal(c->driver, pthread_self());
    pthread_mutex_unlock(&c->mu);
    return yes || session_is_loop_thread(c->session);
}

static void destroy(courier_t *c)
{
    check_halt(c->check); /* joined: the store's last reader is gone */
    session_free(c->session); /* stops the loop, closes the link */
    push_free(c->push);
    if (check_owed(c->check)) /* no verdict, or damage: check again */
        engine_read(c->engine, keep_check_owed, NULL);
    engine_close(c->engine);
    check_free(c->check);
    pthread_cond_destroy(&c->sync_gone);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->life);
    util_free(c);
}

void courier_close(courier_t *c)
{
    if (!c)
        return;
    engine_mute(c->engine); /* no callback touches ud after this */
    if (in_loop_thread(c)) { /* from a callback: after it returns */
        pthread_mutex_lock(&c->mu);
        c->close_pending = 1;
        pthread_mutex_unlock(&c->mu);
        if (session_is_loop_thread(c->session))
            session_request_stop(c->session);
        return;
    }
    wait_syncs_gone(c);
    destroy(c);
}

#define CHECK_HANDLE(c)                                                   \
    do {                                                                  \
        if (!(c))                                                         \
            return util_set_error(COURIER_EINVAL, "handle is NULL");      \
        if (closing(c))                                                   \
            return util_set_error(COURIER_ECLOSED, "handle is closing");  \
    } while (0)

static int closing(courier_t *c)
{
    pthread_mutex_lock(&c->mu);
    int yes = c->close_pending || c->shutting;
    pthread_mutex_unlock(&c->mu);
    return yes;
}

/* Lifecycle calls from app threads are serialised; the loop thread (a
 * callback) never waits for the lock, as its holder may be joining it. */
static int life_lock(courier_t *c)
{
    if (in_loop_thread(c))
        return 0;
    pthread_mutex_lock(&c->life);
    return 1;
}

static void life_unlock(courier_t *c, int locked)
{
    if (locked)
        pthread_mutex_unlock(&c->life);
}

int courier_start(courier_t *c)
{
    CHECK_HANDLE(c);
    int locked = life_lock(c);
    pthread_mutex_lock(&c->mu);
    int driving = c->driving || session_driven(c->session);
    pthread_mutex_unlock(&c->mu);
    int rc = driving ? util_set_error(COURIER_ESTATE, "courier_run_once is "
                                      "driving this handle: courier_stop "
                                      "first")
                     : session_start(c->session);
    life_unlock(c, locked);
    return rc;
}

int courier_stop(courier_t *c)
{
    CHECK_HANDLE(c);
    int locked = life_lock(c);
    int rc = COURIER_OK;
    if (session_running(c->session) ||
        session_is_loop_thread(c->session)) {
        rc = session_stop(c->session);
    } else {
        pthread_mutex_lock(&c->mu);
        int driving = c->driving;
        pthread_mutex_unlock(&c->mu);
        if (driving && !in_loop_thread(c))
            rc = util_set_error(COURIER_ESTATE, "another thread is inside "
                                "courier_run_once");
        else
            session_close_link(c->session); /* caller-driven */
    }
    life_unlock(c, locked);
    return rc;
}

int courier_run_once(courier_t *c, unsigned timeout_ms)
{
    CHECK_HANDLE(c);
    if (session_running(c->session))
        return util_set_error(COURIER_ESTATE, "courier_start owns the loop");
    pthread_mutex_lock(&c->mu);
    if (c->driving) {
        pthread_mutex_unlock(&c->mu);
        return util_set_error(COURIER_ESTATE, "another thread is driving "
                              "this handle");
    }
    c->driving = 1;
    c->driver = pthread_self();
    pthread_mutex_unlock(&c->mu);

    session_begin_driven(c->session);
    int rc = session_step(c->session, timeout_ms);

    pthread_mutex_lock(&c->mu);
    c->driving = 0;
    int close_now = c->close_pending;
    pthread_mutex_unlock(&c->mu);
    if (close_now) {
        destroy(c);
        return util_set_error(COURIER_ECLOSED, "closed from a callback");
    }
    if (rc != COURIER_OK)
        return util_set_error(rc, "timer step failed");
    return COURIER_OK;
}

int courier_send_text(courier_t *c, const char *to, const char *body,
                      char id_out[COURIER_ID_MAX])
{
    CHECK_HANDLE(c);
    return engine_send(c->engine, to, COURIER_TEXT, NULL, body, NULL, id_out);
}

int courier_send_media(courier_t *c, const char *to, courier_kind_t kind,
                       const char *media_id, const char *body)
{
    CHECK_HANDLE(c);
    if (kind != COURIER_VOICE && kind != COURIER_IMAGE)
        return util_set_error(COURIER_EINVAL, "kind must be COURIER_VOICE "
                              "or COURIER_IMAGE");
    if (!media_id)
        return util_set_error(COURIER_EINVAL, "media_id is NULL");
    return engine_send(c->engine, to, kind, media_id, body, NULL, NULL);
}

int courier_send(courier_t *c, const courier_outgoing_t *m,
                 char id_out[COURIER_ID_MAX])
{
    CHECK_HANDLE(c);
    if (!m)
        return util_set_error(COURIER_EINVAL, "m is NULL");
    if (m->kind != COURIER_TEXT && !m->id)
        return util_set_error(COURIER_EINVAL, "a voice or image message "
                              "needs its media id in m->id");
    return engine_send(c->engine, m->to, m->kind, m->id, m->body, m->meta,
                       id_out);
}

int courier_history(courier_t *c, const char *peer, int64_t before_seq,
                    unsigned limit, courier_entry_fn fn, void *ud)
{
    CHECK_HANDLE(c);
    return history_page(c->engine, peer, before_seq, limit, fn, ud);
}

int courier_pending(courier_t *c, courier_entry_fn fn, void *ud)
{
    CHECK_HANDLE(c);
    return history_pending(c->engine, fn, ud);
}

int courier_conversations(courier_t *c, courier_conversation_fn fn, void *ud)
{
    CHECK_HANDLE(c);
    return history_conversations(c->engine, fn, ud);
}

int courier_cancel(courier_t *c, const char *id)
{
    CHECK_HANDLE(c);
    return engine_cancel(c->engine, id);
}

int courier_retract(courier_t *c, const char *id)
{
    CHECK_HANDLE(c);
    return engine_retract(c->engine, id);
}

int courier_delete(courier_t *c, const char *peer, const char *id)
{
    CHECK_HANDLE(c);
    return engine_delete(c->engine, peer, id, ENGINE_DIR_ANY);
}

int courier_delete_entry(courier_t *c, const char *peer, const char *id,
                         courier_dir_t dir)
{
    CHECK_HANDLE(c);
    if (dir != COURIER_DIR_OUT && dir != COURIER_DIR_IN)
        return util_set_error(COURIER_EINVAL, "direction %d is neither "
                              "COURIER_DIR_OUT nor COURIER_DIR_IN", (int)dir);
    return engine_delete(c->engine, peer, id, (int)dir);
}

int courier_confirm(courier_t *c, const char *peer, const char *id)
{
    CHECK_HANDLE(c);
    return engine_confirm(c->engine, peer, id);
}

int courier_erase(courier_t *c)
{
    CHECK_HANDLE(c);
    if (in_loop_thread(c))
        return util_set_error(COURIER_ESTATE, "courier_erase from a "
                              "callback: stop the handle first");
    int locked = life_lock(c);
    pthread_mutex_lock(&c->mu);
    int driving = c->driving;
    pthread_mutex_unlock(&c->mu);
    int rc;
    if (session_running(c->session) || driving) {
        rc = util_set_error(COURIER_ESTATE, "the handle is started: "
                            "courier_stop() first");
    } else {
        /* A check holding its snapshot would keep the WAL from being
         * truncated: stop it, erase, and check the rewritten store again
         * if the old one still owed it. */
        check_halt(c->check);
        int owed = check_owed(c->check);
        rc = engine_erase(c->engine);
        if (owed)
            check_begin(c->check);
    }
    life_unlock(c, locked);
    return rc;
}

int courier_check_status(courier_t *c, courier_check_t *out)
{
    char detail[256];
    CHECK_HANDLE(c);
    if (!out)
        return util_set_error(COURIER_EINVAL, "out is NULL");
    *out = check_status(c->check, detail, sizeof(detail));
    if (*out == COURIER_CHECK_DAMAGED)
        return util_set_error(COURIER_ECORRUPT, "store check: %s", detail);
    return COURIER_OK;
}

int courier_mark_displayed(courier_t *c, const char *peer, const char *id)
{
    CHECK_HANDLE(c);
    return engine_mark_displayed(c->engine, peer, id);
}

int courier_set_composing(courier_t *c, const char *peer, int composing)
{
    CHECK_HANDLE(c);
    return engine_set_composing(c->engine, peer, composing);
}

int courier_retry(courier_t *c, const char *id)
{
    CHECK_HANDLE(c);
    return engine_retry(c->engine, id);
}

int courier_network_changed(courier_t *c)
{
    CHECK_HANDLE(c);
    return engine_network_changed(c->engine);
}

/* A caller that may wait (courier_sync, courier_push_*) is counted, so a
 * courier_close on another thread frees the handle only after it left. */
static int waiter_enter(courier_t *c)
{
    pthread_mutex_lock(&c->mu);
    int gone = c->shutting || c->close_pending;
    if (!gone)
        c->syncing++;
    pthread_mutex_unlock(&c->mu);
    return gone ? util_set_error(COURIER_ECLOSED, "handle is closing")
                : COURIER_OK;
}

static void waiter_leave(courier_t *c)
{
    pthread_mutex_lock(&c->mu);
    if (--c->syncing == 0)
        pthread_cond_broadcast(&c->sync_gone);
    pthread_mutex_unlock(&c->mu);
}

static int sync_wait(courier_t *c, unsigned timeout_ms);

int courier_sync(courier_t *c, unsigned timeout_ms)
{
    CHECK_HANDLE(c);
    if (in_loop_thread(c))
        return util_set_error(COURIER_ESTATE, "courier_sync from a "
                              "callback would wait for itself");
    int rc = waiter_enter(c);
    if (rc != COURIER_OK)
        return rc;
    rc = sync_wait(c, timeout_ms);
    waiter_leave(c);
    return rc;
}

/* courier_sync's work, counted in c->syncing so a courier_close on
 * another thread waits for it to leave before freeing the handle. */
static int sync_wait(courier_t *c, unsigned timeout_ms)
{
    int64_t until = util_mono_ms() + (int64_t)timeout_ms;
    int locked = life_lock(c);
    pthread_mutex_lock(&c->mu);
    int driving = c->driving || session_driven(c->session);
    pthread_mutex_unlock(&c->mu);
    int rc = COURIER_OK;
    if (driving)
        rc = util_set_error(COURIER_ESTATE, "courier_run_once drives this "
                            "handle: courier_sync needs courier_start's "
                            "loop");
    else if (!session_running(c->session))
        rc = session_start(c->session); /* connect if needed */
    else if (engine_link(c->engine, NULL) != COURIER_LINK_ONLINE)
        engine_network_changed(c->engine); /* now, not after the backoff */
    life_unlock(c, locked);
    if (rc != COURIER_OK)
        return rc;
    unsigned n = session_sync_request(c->session);
    for (;;) {
        int refused = 0;
        engine_link(c->engine, &refused);
        if (refused)
            return util_set_error(COURIER_EAUTH, "the server refused the "
                                  "login for this account");
        if (session_stop_asked(c->session) || closing(c))
            return util_set_error(COURIER_ECLOSED, "stopped during "
                                  "courier_sync");
        if (session_sync_done(c->session, n) && engine_quiet(c->engine))
            return COURIER_OK;
        int64_t left = until - util_mono_ms();
        if (left <= 0)
            return util_set_error(COURIER_ETIMEDOUT, "courier_sync: "
                                  "something still in flight after %u ms",
                                  timeout_ms);
        usleep(left < 5 ? (useconds_t)left * 1000 : 5000);
    }
}

/* behaviour.md §10: the caller waits for the server's answer only where
 * waiting cannot stall the loop that brings it: not on the loop thread (a
 * callback), not on a handle driven by courier_run_once. */
static int may_wait(courier_t *c)
{
    if (in_loop_thread(c))
        return 0;
    pthread_mutex_lock(&c->mu);
    int driving = c->driving || session_driven(c->session);
    pthread_mutex_unlock(&c->mu);
    return !driving;
}

int courier_push_enable(courier_t *c, const char *service_jid,
                        const char *node, const char *secret)
{
    CHECK_HANDLE(c);
    int rc = waiter_enter(c);
    if (rc != COURIER_OK)
        return rc;
    rc = push_enable(c->push, service_jid, node, secret, may_wait(c));
    waiter_leave(c);
    return rc;
}

int courier_push_disable(courier_t *c)
{
    CHECK_HANDLE(c);
    int rc = waiter_enter(c);
    if (rc != COURIER_OK)
        return rc;
    rc = push_disable(c->push, may_wait(c));
    waiter_leave(c);
    return rc;
}

int courier_set_active(courier_t *c, int active)
{
    CHECK_HANDLE(c);
    return engine_set_active(c->engine, active);
}

int courier_get_state(courier_t *c, const char *id, courier_state_t *out)
{
    courier_info_t info;
    CHECK_HANDLE(c);
    if (!out)
        return util_set_error(COURIER_EINVAL, "out is NULL");
    int rc = engine_get_info(c->engine, id, &info);
    if (rc == COURIER_OK)
        *out = info.state;
    return rc;
}

int courier_get_info(courier_t *c, const char *id, courier_info_t *out)
{
    CHECK_HANDLE(c);
    return engine_get_info(c->engine, id, out);
}

int courier_get_stats(courier_t *c, courier_stats_t *out)
{
    CHECK_HANDLE(c);
    if (!out)
        return util_set_error(COURIER_EINVAL, "out is NULL");
    engine_get_stats(c->engine, out);
    return COURIER_OK;
}

int courier_get_link(courier_t *c, courier_link_t *out)
{
    CHECK_HANDLE(c);
    if (!out)
        return util_set_error(COURIER_EINVAL, "out is NULL");
    int refused = 0;
    *out = engine_link(c->engine, &refused);
    if (refused) /* behaviour.md §4: a refused login is not "unreachable" */
        return util_set_error(COURIER_EAUTH, "the server refused the login "
                              "for this account");
    return COURIER_OK;
}

const char *courier_display_status(courier_state_t s)
{
    switch (s) {
    case COURIER_QUEUED:
    case COURIER_SENT: return "sending";
    case COURIER_OFFLINE:
    case COURIER_DELIVERED: return "delivered";
    case COURIER_DISPLAYED: return "read";
    case COURIER_FAILED: return "failed";
    }
    return "unknown";
}

const char *courier_state_name(courier_state_t s)
{
    switch (s) {
    case COURIER_QUEUED: return "QUEUED";
    case COURIER_SENT: return "SENT";
    case COURIER_OFFLINE: return "OFFLINE";
    case COURIER_DELIVERED: return "DELIVERED";
    case COURIER_DISPLAYED: return "DISPLAYED";
    case COURIER_FAILED: return "FAILED";
    }
    return "UNKNOWN";
}

const char *courier_strerror(int code)
{
    switch ((courier_error_t)code) {
    case COURIER_OK: return "success";
    case COURIER_EINVAL: return "invalid argument";
    case COURIER_ENOMEM: return "out of memory";
    case COURIER_ENOTFOUND: return "no such message";
    case COURIER_ESTATE: return "not allowed in the current state";
    case COURIER_ENOTCONN: return "not connected";
    case COURIER_ESTORE: return "message store failure";
    case COURIER_ECORRUPT: return "message store corrupt or too new";
    case COURIER_ECLOSED: return "handle closed";
    case COURIER_EAUTH: return "login refused by the server";
    case COURIER_ENOTSUP: return "not supported by this build";
    case COURIER_ETIMEDOUT: return "timed out";
    case COURIER_EREFUSED: return "refused by the server";
    }
    return "unknown error code";
}

const char *courier_last_error(void)
{
    return util_last_error();
}

const char *courier_version(void)
{
    return COURIER_VERSION;
}
