/* SPDX-License-Identifier: MIT */
/* The store check after an unclean close, off the caller's thread. */
#include "check.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util.h"

struct check {
    char *path;
    check_report_fn report;
    void *report_ud;
    pthread_mutex_t mu;  /* guards what follows */
    pthread_cond_t cv;   /* done changed */
    courier_check_t status;
    char detail[256];
    sqlite3 *db;         /* the check's connection while it is open */
    int cancel;          /* check_halt asked the thread to stop */
    int done;            /* the thread has nothing left to do */
    int running;         /* a thread was created and not joined */
    pthread_t thread;
};

static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;
static check_hook_fn hook_fn;
static void *hook_ud;

void check_set_hook(check_hook_fn fn, void *ud)
{
    pthread_mutex_lock(&hook_mu);
    hook_fn = fn;
    hook_ud = ud;
    pthread_mutex_unlock(&hook_mu);
}

static void hook(check_ev_t ev)
{
    pthread_mutex_lock(&hook_mu);
    check_hook_fn fn = hook_fn;
    void *ud = hook_ud;
    pthread_mutex_unlock(&hook_mu);
    if (fn)
        fn(ud, ev);
}

static int cancelled(check_t *k)
{
    if (!k)
        return 0;
    pthread_mutex_lock(&k->mu);
    int yes = k->cancel;
    pthread_mutex_unlock(&k->mu);
    return yes;
}

/* A store locked by another process's recovery: wait as the writer
 * would (5 s), but give up at once when halted. */
static int busy(void *ud, int count)
{
    if (cancelled(ud) || count >= 5000)
        return 0;
    struct timespec ms = { 0, 1000000 };
    nanosleep(&ms, NULL);
    return 1;
}

static courier_check_t verdict_of(sqlite3 *db, int rc, char *detail,
                                  size_t size)
{
    snprintf(detail, size, "%s", sqlite3_errmsg(db));
    switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return COURIER_CHECK_DAMAGED;
    default:
        return COURIER_CHECK_FAILED;
    }
}

/* The check; `k` NULL: not interruptible (check_run). Returns RUNNING
 * when halted before its verdict. */
static courier_check_t run(check_t *k, const char *path, char *detail,
                           size_t size)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    courier_check_t v = COURIER_CHECK_FAILED;
    snprintf(detail, size, "%s", "");
    if (cancelled(k))
        return COURIER_CHECK_RUNNING;
    /* Read-only: this connection can never write the store. In WAL mode
     * it shares the -shm of the writer, which has already recovered the
     * WAL left by the crash. */
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY |
                             SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        v = db ? verdict_of(db, rc, detail, size) : COURIER_CHECK_FAILED;
        if (!db)
            snprintf(detail, size, "%s", sqlite3_errstr(rc));
        goto out;
    }
    if (k) {
        pthread_mutex_lock(&k->mu);
        k->db = db;
        pthread_mutex_unlock(&k->mu);
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_handler(db, busy, k);
    /* Pages are read about once: a small cache, so the check does not
     * hold the 2 MiB SQLite would grow by default. */
    sqlite3_exec(db, "PRAGMA cache_size=-256", NULL, NULL, NULL);
    /* One snapshot from here on (the writer goes on meanwhile). */
    rc = sqlite3_exec(db, "BEGIN; SELECT count(*) FROM sqlite_master",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        v = verdict_of(db, rc, detail, size);
        goto out;
    }
    hook(CHECK_EV_READING);
    if (cancelled(k)) {
        v = COURIER_CHECK_RUNNING;
        goto out;
    }
    /* The first problem is enough to call the store damaged. */
    rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        snprintf(detail, size, "%s", r ? r : "");
        v = r && strcmp(r, "ok") == 0 ? COURIER_CHECK_OK
                                       : COURIER_CHECK_DAMAGED;
        if (v == COURIER_CHECK_OK)
            detail[0] = '\0';
    } else {
        v = verdict_of(db, rc, detail, size);
    }
out:
    /* Halted: whatever SQLite said (SQLITE_INTERRUPT, or a result cut
     * short), no verdict. */
    if (cancelled(k))
        v = COURIER_CHECK_RUNNING;
    sqlite3_finalize(st);
    if (k) {
        pthread_mutex_lock(&k->mu);
        k->db = NULL;
        pthread_mutex_unlock(&k->mu);
    }
    sqlite3_close(db); /* ends the read transaction */
    return v;
}

courier_check_t check_run(const char *path, char *detail, size_t size)
{
    return run(NULL, path, detail, size);
}

/* Run the check, publish the verdict, report it. */
static void finish(check_t *k)
{
    char detail[256];
    courier_check_t v = run(k, k->path, detail, sizeof(detail));
    pthread_mutex_lock(&k->mu);
    k->status = v;
    snprintf(k->detail, sizeof(k->detail), "%s", detail);
    pthread_mutex_unlock(&k->mu);
    if (v != COURIER_CHECK_RUNNING && k->report)
        k->report(k->report_ud, v, detail);
    hook(CHECK_EV_DONE);
}

static void *check_main(void *arg)
{
    check_t *k = arg;
    finish(k);
    pthread_mutex_lock(&k->mu);
    k->done = 1;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

int check_new(check_t **out, const char *path, check_report_fn fn, void *ud)
{
    check_t *k = util_calloc(1, sizeof(*k));
    *out = NULL;
    if (!k || !(k->path = util_strdup(path))) {
        util_free(k);
        return COURIER_ENOMEM;
    }
    k->report = fn;
    k->report_ud = ud;
    k->status = COURIER_CHECK_NONE;
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    *out = k;
    return COURIER_OK;
}

void check_begin(check_t *k)
{
    check_halt(k);
    pthread_mutex_lock(&k->mu);
    k->status = COURIER_CHECK_RUNNING;
    k->detail[0] = '\0';
    k->cancel = 0;
    k->done = 0;
    pthread_mutex_unlock(&k->mu);
    if (pthread_create(&k->thread, NULL, check_main, k) == 0) {
        k->running = 1;
        return;
    }
    /* No thread to be had: the check is still owed, so run it here, as
     * open did before it had a thread (slow, but never skipped). */
    finish(k);
}

void check_halt(check_t *k)
{
    if (!k || !k->running)
        return;
    pthread_mutex_lock(&k->mu);
    k->cancel = 1;
    pthread_mutex_unlock(&k->mu);
    hook(CHECK_EV_HALT);
    pthread_mutex_lock(&k->mu);
    /* sqlite3_interrupt() only stops a statement that is running: one
     * that starts just after it clears the flag. So interrupt again every
     * 2 ms until the thread is done; the k->db it is given is never closed
     * meanwhile (the thread clears it under the mutex before closing). */
    while (!k->done) {
        if (k->db)
            sqlite3_interrupt(k->db);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 2000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        int rc = pthread_cond_timedwait(&k->cv, &k->mu, &until);
        (void)rc; /* ETIMEDOUT: interrupt again */
    }
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->thread, NULL);
    k->running = 0;
}

void check_free(check_t *k)
{
    if (!k)
        return;
    check_halt(k);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
    util_free(k->path);
    util_free(k);
}

courier_check_t check_status(check_t *k, char *detail, size_t detail_size)
{
    if (detail && detail_size)
        detail[0] = '\0';
    if (!k)
        return COURIER_CHECK_NONE;
    pthread_mutex_lock(&k->mu);
    courier_check_t v = k->status;
    if (detail && detail_size)
        snprintf(detail, detail_size, "%s", k->detail);
    pthread_mutex_unlock(&k->mu);
    return v;
}

int check_owed(check_t *k)
{
    courier_check_t v = check_status(k, NULL, 0);
    return v != COURIER_CHECK_NONE && v != COURIER_CHECK_OK;
}
