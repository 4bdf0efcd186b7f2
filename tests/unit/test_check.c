/* SPDX-License-Identifier: MIT */
/* The store check after an unclean close (behaviour.md §10, issue 15):
 * courier_open returns before it, it still finds damage, and close and
 * erase stop it cleanly. The order is made observable by lib/check.c's
 * test hook, which holds the check thread with its snapshot taken: no test
 * sleeps or depends on timing (waits have a 30 s limit so a broken build
 * fails instead of hanging). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include <sqlite3.h>

#include "check.h"
#include "courier.h"

#define BOB "bob@example.com"
#define WAIT_S 30

typedef struct {
    char dir[64];
    char db[128];
    char wal[140];
    courier_config_t cfg;
    courier_t *c;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* the hook */
    int block;      /* hold the first `block` checks at CHECK_EV_READING */
    int released;   /* let it go on */
    int reading;    /* CHECK_EV_READING seen, times */
    int halted;     /* CHECK_EV_HALT seen, times */
    int done;       /* CHECK_EV_DONE seen, times */
    int timed_out;  /* the hook waited WAIT_S for nothing */
    /* on_log */
    char logs[32][512];
    int log_levels[32];
    int n_logs;
} fx_t;

static void until_of(struct timespec *t, int secs)
{
    clock_gettime(CLOCK_REALTIME, t);
    t->tv_sec += secs;
}

static void hook(void *ud, check_ev_t ev)
{
    fx_t *f = ud;
    struct timespec until;
    until_of(&until, WAIT_S);
    pthread_mutex_lock(&f->mu);
    switch (ev) {
    case CHECK_EV_READING:
        f->reading++;
        pthread_cond_broadcast(&f->cv);
        while (f->reading <= f->block && !f->released && !f->halted &&
               !f->timed_out)
            if (pthread_cond_timedwait(&f->cv, &f->mu, &until) == ETIMEDOUT)
                f->timed_out = 1;
        break;
    case CHECK_EV_HALT:
        f->halted++;
        break;
    case CHECK_EV_DONE:
        f->done++;
        break;
    }
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* Wait until *counter >= n; 0 on timeout. */
static int wait_count(fx_t *f, const int *counter, int n)
{
    struct timespec until;
    until_of(&until, WAIT_S);
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    while (*counter < n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&f->cv, &f->mu, &until);
    int ok = *counter >= n;
    pthread_mutex_unlock(&f->mu);
    return ok;
}

static int count(fx_t *f, const int *counter)
{
    pthread_mutex_lock(&f->mu);
    int n = *counter;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static void set_block(fx_t *f, int block)
{
    pthread_mutex_lock(&f->mu);
    f->block = block;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void release(fx_t *f)
{
    pthread_mutex_lock(&f->mu);
    f->released = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void on_log(void *ud, int level, const char *line)
{
    fx_t *f = ud;
    pthread_mutex_lock(&f->mu);
    if (f->n_logs < 32) {
        snprintf(f->logs[f->n_logs], sizeof(f->logs[0]), "%s", line);
        f->log_levels[f->n_logs++] = level;
    }
    pthread_mutex_unlock(&f->mu);
}

static const courier_callbacks_t callbacks = { .on_log = on_log };

/* The level of the first log line containing `text`, or -1. */
static int logged(fx_t *f, const char *text)
{
    int level = -1;
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->n_logs && level < 0; i++)
        if (strstr(f->logs[i], text))
            level = f->log_levels[i];
    pthread_mutex_unlock(&f->mu);
    return level;
}

static int setup(void **st)
{
    fx_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    strcpy(f->dir, "/tmp/courier-check-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/store.db", f->dir);
    snprintf(f->wal, sizeof(f->wal), "%s-wal", f->db);
    courier_config_init(&f->cfg);
    f->cfg.jid = "alice@example.com/phone";
    f->cfg.password = "secret";
    f->cfg.db_path = f->db;
    f->cfg.host = "127.0.0.1"; /* a closed port: run_once stays offline */
    f->cfg.port = 1;
    check_set_hook(hook, f);
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    fx_t *f = *st;
    char cmd[128];
    release(f);
    courier_close(f->c);
    check_set_hook(NULL, NULL);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
    return 0;
}

static void sql(sqlite3 *db, const char *q)
{
    char *err = NULL;
    if (sqlite3_exec(db, q, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", q, err ? err : "?");
}

/* A store with `n` settled messages (history that open never reads),
 * closed cleanly. */
static void make_store(fx_t *f, int n)
{
    courier_t *c = NULL;
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL;
    assert_int_equal(courier_open(&c, &f->cfg, NULL, NULL), COURIER_OK);
    courier_close(c);
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sql(db, "BEGIN");
    assert_int_equal(sqlite3_prepare_v2(db,
        "INSERT INTO outbox(id, peer, kind, body, created_ms, last_sent_ms,"
        " last_change_ms, attempts, state, permanent, reason, seq)"
        " VALUES(?, ?, 0, ?, ?, ?, ?, 1, ?, 0, '', ?)", -1, &ins, NULL),
        SQLITE_OK);
    for (int i = 0; i < n; i++) {
        char id[32], body[200];
        snprintf(id, sizeof(id), "h%06d", i);
        snprintf(body, sizeof(body), "history message %06d %0150d", i, 0);
        sqlite3_bind_text(ins, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 2, BOB, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 3, body, -1, SQLITE_TRANSIENT);
        for (int k = 4; k <= 6; k++)
            sqlite3_bind_int64(ins, k, 1700000000000LL + i);
        sqlite3_bind_int(ins, 7, COURIER_DELIVERED);
        sqlite3_bind_int64(ins, 8, i + 1);
        assert_int_equal(sqlite3_step(ins), SQLITE_DONE);
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    sql(db, "COMMIT");
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    assert_int_not_equal(access(f->wal, F_OK), 0); /* closed cleanly */
}

/* An app killed with its handle open, right after a send: the -wal
 * stays (a crash). */
static void crash_after_send(fx_t *f)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        courier_t *c = NULL;
        courier_outgoing_t m = { .to = BOB, .id = "zz-last", .body = "b" };
        check_set_hook(NULL, NULL);
        if (courier_open(&c, &f->cfg, NULL, NULL) != COURIER_OK ||
            courier_send(c, &m, NULL) != COURIER_OK)
            _exit(1);
        _exit(0); /* no courier_close */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(access(f->wal, F_OK), 0);
}

/* Junk over one page in the middle of the file: a leaf of the history,
 * which open does not read. */
static void damage_middle_page(fx_t *f)
{
    char junk[4096];
    int fd = open(f->db, O_RDWR);
    assert_true(fd >= 0);
    off_t size = lseek(fd, 0, SEEK_END);
    assert_true(size > 40 * 4096);
    memset(junk, 0x5A, sizeof(junk));
    off_t at = (size / 2 / 4096) * 4096;
    assert_int_equal(pwrite(fd, junk, sizeof(junk), at),
                     (ssize_t)sizeof(junk));
    close(fd);
}

static courier_check_t status_of(courier_t *c)
{
    courier_check_t v = (courier_check_t)-1;
    int rc = courier_check_status(c, &v);
    assert_true(rc == COURIER_OK || rc == COURIER_ECORRUPT);
    assert_int_equal(rc == COURIER_ECORRUPT, v == COURIER_CHECK_DAMAGED);
    return v;
}

static int64_t rows_with_id(fx_t *f, const char *id)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM outbox "
                                        "WHERE id = ?", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* ---- the tests ---------------------------------------------------- */

/* behaviour.md §10: after a clean close nothing is owed and no check
 * thread runs. */
static void test_clean_close_owes_no_check(void **st)
{
    fx_t *f = *st;
    make_store(f, 10);
    assert_int_equal(courier_open(&f->c, &f->cfg, &callbacks, f), COURIER_OK);
    assert_int_equal(status_of(f->c), COURIER_CHECK_NONE);
    courier_close(f->c);
    f->c = NULL;
    assert_int_equal(count(f, &f->reading), 0);
    assert_int_equal(courier_check_status(NULL, NULL), COURIER_EINVAL);
}

/* behaviour.md §10: after an unclean close courier_open returns while the
 * check is held with its snapshot taken (it ran inside open before issue
 * 15: the held hook would then have held open); sends meanwhile are
 * durable on return; then the check ends OK and says so through on_log,
 * and a clean close owes nothing any more. */
static void test_open_returns_before_the_check_finishes(void **st)
{
    fx_t *f = *st;
    make_store(f, 100);
    crash_after_send(f);
    set_block(f, 1);
    assert_int_equal(courier_open(&f->c, &f->cfg, &callbacks, f), COURIER_OK);
    /* open has returned; the check is under way and cannot finish */
    assert_true(wait_count(f, &f->reading, 1));
    assert_int_equal(status_of(f->c), COURIER_CHECK_RUNNING);
    assert_int_equal(count(f, &f->done), 0);
    /* the store is the truth meanwhile: the send is in SQLite on return */
    courier_outgoing_t m = { .to = BOB, .id = "during-check", .body = "x" };
    assert_int_equal(courier_send(f->c, &m, NULL), COURIER_OK);
    assert_int_equal(rows_with_id(f, "during-check"), 1);
    assert_int_equal(status_of(f->c), COURIER_CHECK_RUNNING);
    release(f);
    assert_true(wait_count(f, &f->done, 1));
    assert_int_equal(count(f, &f->timed_out), 0);
    assert_int_equal(status_of(f->c), COURIER_CHECK_OK);
    courier_run_once(f->c, 0); /* dispatches on_log */
    assert_int_equal(logged(f, "not closed cleanly"), COURIER_LOG_INFO);
    assert_int_equal(logged(f, "check after an unclean close: ok"),
                     COURIER_LOG_INFO);
    courier_close(f->c);
    f->c = NULL;
    assert_int_not_equal(access(f->wal, F_OK), 0); /* nothing owed */
    assert_int_equal(courier_open(&f->c, &f->cfg, &callbacks, f), COURIER_OK);
    assert_int_equal(status_of(f->c), COURIER_CHECK_NONE);
    assert_int_equal(rows_with_id(f, "zz-last"), 1); /* the crashed send */
}

/* Damage in pages open never reads (it reads the unsettled outbox and the
 * unhanded inbox through their indexes) is still found: check_run on the
 * caller's thread, and the handle's check after open, which reports it
 * through courier_check_status (ECORRUPT, DAMAGED), on_log (error) and
 * keeps the check owed at close. */
static void test_damage_is_still_found_and_reported(void **st)
{
    fx_t *f = *st;
    char detail[256];
    make_store(f, 3000);
    assert_int_equal(check_run(f->db, detail, sizeof(detail)),
                     COURIER_CHECK_OK);
    crash_after_send(f);
    damage_middle_page(f);
    /* open does not see it: its reads do not touch that page */
    assert_int_equal(courier_open(&f->c, &f->cfg, &callbacks, f), COURIER_OK);
    assert_true(wait_count(f, &f->done, 1));
    courier_check_t v = (courier_check_t)-1;
    assert_int_equal(courier_check_status(f->c, &v), COURIER_ECORRUPT);
    assert_int_equal(v, COURIER_CHECK_DAMAGED);
    assert_non_null(strstr(courier_last_error(), "store check: "));
    assert_true(strlen(courier_last_error()) > strlen("store check: "));
    courier_run_once(f->c, 0);
    assert_int_equal(logged(f, "is damaged"), COURIER_LOG_ERROR);
    /* still owed: the close keeps the -wal, the next open checks again */
    courier_close(f->c);
    f->c = NULL;
    assert_int_equal(access(f->wal, F_OK), 0);
    assert_int_equal(check_run(f->db, detail, sizeof(detail)),
                     COURIER_CHECK_DAMAGED);
    assert_true(strlen(detail) > 0);
    assert_int_equal(courier_open(&f->c, &f->cfg, &callbacks, f), COURIER_OK);
    assert_true(wait_count(f, &f->done, 2));
    assert_int_equal(status_of(f->c), COURIER_CHECK_DAMAGED);
}

/* courier_close while the check runs: the check is told to stop, joined
 * before close returns (ASan/LSan: nothing leaked, nothing touched after
 * free), no verdict is reported, and the check stays owed: the -wal is
 * kept and the next open runs it to the end. */
static void test_close_during_check_is_joined_and_check_stays_owed(void **st)
{
    fx_t *f = *st;
    make_store(f, 100);
    crash_after_send(f);
    set_block(f, 1);
    assert_int_equal(courier_open(&f->c, &f->cfg, &callbacks, f), COURIER_OK);
    assert_true(wait_count(f, &f->reading, 1));
    courier_close(f->c); /* the hook lets go at CHECK_EV_HALT */
    f->c = NULL;
    assert_int_equal(count(f, &f->halted), 1);
    assert_int_equal(count(f, &f->done), 1);     /* the thread ended before close did */
    assert_int_equal(count(f, &f->timed_out), 0);
    assert_int_equal(access(f->wal, F_OK), 0);
    set_block(f, 0);
    assert_int_equal(courier_open(&f->c, &f->cfg, &callbacks, f), COURIER_OK);
    assert_true(wait_count(f, &f->done, 2));
    assert_int_equal(status_of(f->c), COURIER_CHECK_OK);
}

/* courier_erase while the check runs: the check is stopped first (its
 * snapshot would keep the WAL from being truncated), the store is erased,
 * and the rewritten store is checked again. */
static void test_erase_during_check_stops_it_and_checks_again(void **st)
{
    fx_t *f = *st;
    make_store(f, 100);
    crash_after_send(f);
    set_block(f, 1);
    assert_int_equal(courier_open(&f->c, &f->cfg, &callbacks, f), COURIER_OK);
    assert_true(wait_count(f, &f->reading, 1));
    /* the first check is held until the erase halts it; the second one,
     * after the erase, runs through */
    assert_int_equal(courier_erase(f->c), COURIER_OK);
    assert_int_equal(count(f, &f->halted), 1);
    assert_true(wait_count(f, &f->done, 2));
    assert_int_equal(status_of(f->c), COURIER_CHECK_OK);
    assert_int_equal(rows_with_id(f, "zz-last"), 0);
    courier_close(f->c);
    f->c = NULL;
    assert_int_not_equal(access(f->wal, F_OK), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_clean_close_owes_no_check),
        T(test_open_returns_before_the_check_finishes),
        T(test_damage_is_still_found_and_reported),
        T(test_close_during_check_is_joined_and_check_stays_owed),
        T(test_erase_during_check_stops_it_and_checks_again),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
