/* SPDX-License-Identifier: MIT */
/* Unit tests of the SQLite store. Each test gets its own temporary
 * directory; the raw sqlite3 API is used only to build old or hostile
 * files and to check the file from outside. Names cite the rule of docs/behaviour.md. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"
#include "util.h"

#define BOB "bob@example.com"
#define CAROL "carol@example.com"
#define DAVE "dave@example.com"
#define T0 1700000000000LL
#define ALL_STATES 0x3Fu
#define BIT(s) (1u << (s))

typedef struct {
    char dir[64];
    char path[128];
    store_t *s;
} fx_t;

/* ---- fixture ------------------------------------------------------- */

static int setup_dir(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->dir, "/tmp/courier-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
    *state = f;
    return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int teardown(void **state)
{
    fx_t *f = *state;
    store_close(f->s);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* cmocka skips the teardown of a failed setup: clean up here. */
static int setup(void **state)
{
    char err[256];
    setup_dir(state);
    fx_t *f = *state;
    if (store_open(&f->s, f->path, NULL, err, sizeof(err)) != COURIER_OK) {
        print_error("store_open: %s\n", err);
        teardown(state);
        return -1;
    }
    return 0;
}

static void reopen(fx_t *f)
{
    char err[256];
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(store_open(&f->s, f->path, NULL, err, sizeof(err)),
                     COURIER_OK);
}

/* ---- helpers ------------------------------------------------------- */

static core_row_t make_row(const char *id, const char *peer,
                           courier_state_t state, int64_t created_ms,
                           int64_t last_sent_ms)
{
    core_row_t r;
    memset(&r, 0, sizeof(r));
    strcpy(r.id, id);
    strcpy(r.peer, peer);
    r.kind = COURIER_TEXT;
    r.state = state;
    r.created_ms = created_ms;
    r.last_sent_ms = last_sent_ms;
    r.last_change_ms = created_ms;
    r.attempts = last_sent_ms ? 1 : 0;
    r.permanent = 0;
    return r;
}

static void put(fx_t *f, const char *id, const char *peer,
                courier_state_t state, int64_t created_ms,
                int64_t last_sent_ms)
{
    core_row_t r = make_row(id, peer, state, created_ms, last_sent_ms);
    assert_int_equal(store_out_insert(f->s, &r, "body", NULL), COURIER_OK);
}

static core_row_t get(fx_t *f, const char *id)
{
    core_row_t r;
    assert_int_equal(store_out_get(f->s, id, &r, NULL, NULL), COURIER_OK);
    return r;
}

static core_act_t make_act(const char *id, courier_state_t to,
                           unsigned from_mask, const char *reason)
{
    core_act_t a;
    memset(&a, 0, sizeof(a));
    a.type = CORE_ACT_STATE;
    strcpy(a.id, id);
    strcpy(a.peer, BOB);
    a.state = to;
    a.from_mask = from_mask;
    a.attempts = 1;
    a.last_sent_ms = T0 + 10;
    a.last_change_ms = T0 + 20;
    strcpy(a.reason, reason);
    a.notify = 1;
    return a;
}

static int set_state(fx_t *f, const core_act_t *a)
{
    int changed = -1;
    assert_int_equal(store_out_set_state(f->s, a, &changed), COURIER_OK);
    return changed;
}

static void assert_rows_equal(const core_row_t *a, const core_row_t *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->peer, b->peer);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->state, b->state);
    assert_int_equal(a->attempts, b->attempts);
    assert_int_equal(a->bounces, b->bounces);
    assert_int_equal(a->created_ms, b->created_ms);
    assert_int_equal(a->last_sent_ms, b->last_sent_ms);
    assert_int_equal(a->last_change_ms, b->last_change_ms);
    assert_int_equal(a->permanent, b->permanent);
    assert_string_equal(a->reason, b->reason);
}

static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    return db;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = raw_open(path);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_close(db);
}

static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = raw_open(path);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void raw_text(const char *path, const char *sql, char *out,
                     size_t size)
{
    sqlite3 *db = raw_open(path);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, size, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static unsigned file_mode(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return sb.st_mode & 0777;
}

/* Records callback arguments. */
typedef struct {
    char ids[16][COURIER_ID_MAX];
    char peers[16][COURIER_JID_MAX];
    store_rcpt_t rcpts[16];
    size_t n;
    int stop_after; /* row callbacks: return 7 after this many (0: never) */
} rec_t;

static void rec_id(void *ud, const char *id, const char *peer)
{
    rec_t *r = ud;
    assert_true(r->n < 16);
    strcpy(r->ids[r->n], id);
    strcpy(r->peers[r->n], peer);
    r->n++;
}

static int rec_row(void *ud, const core_row_t *row)
{
    rec_t *r = ud;
    rec_id(ud, row->id, row->peer);
    return r->stop_after && (int)r->n >= r->stop_after ? 7 : 0;
}

static int rec_in(void *ud, const store_in_t *m, const char *body)
{
    rec_t *r = ud;
    assert_true(r->n < 16);
    strcpy(r->ids[r->n], m->id);
    /* the body stands in for the peer: both are checked by the test */
    snprintf(r->peers[r->n], sizeof(r->peers[0]), "%s", body);
    r->n++;
    return 0;
}

static int rec_rcpt(void *ud, const store_rcpt_t *rc)
{
    rec_t *r = ud;
    assert_true(r->n < 16);
    r->rcpts[r->n++] = *rc;
    return 0;
}

static store_in_t make_in(const char *peer, const char *id, unsigned asked,
                          int64_t ts)
{
    store_in_t m;
    memset(&m, 0, sizeof(m));
    strcpy(m.peer, peer);
    strcpy(m.id, id);
    m.kind = COURIER_TEXT;
    m.timestamp_ms = ts;
    m.asked = asked;
    return m;
}

/* The ids of the incoming messages owed to the app, oldest first. */
static void unhanded_of(fx_t *f, const char *want)
{
    rec_t rec = { .n = 0 };
    char got[512] = "";
    assert_int_equal(store_in_each_unhanded(f->s, rec_in, &rec), COURIER_OK);
    for (size_t i = 0; i < rec.n; i++) {
        strcat(got, i ? " " : "");
        strcat(got, rec.ids[i]);
    }
    assert_string_equal(got, want);
}

/* ---- open, create, file ------------------------------------------- */

/* behaviour.md §5: the store file is created with mode 0600, journal in WAL. */
static void test_create_mode_0600_wal(void **state)
{
    fx_t *f = *state;
    char wal[160], shm[160], mode[16];
    assert_int_equal(file_mode(f->path), 0600);
    put(f, "m1", BOB, COURIER_QUEUED, T0, 0);
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    snprintf(shm, sizeof(shm), "%s-shm", f->path);
    assert_int_equal(file_mode(wal), 0600);
    assert_int_equal(file_mode(shm), 0600);
    raw_text(f->path, "PRAGMA journal_mode", mode, sizeof(mode));
    assert_string_equal(mode, "wal");
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
                     STORE_SCHEMA_VERSION);
}

/* behaviour.md §5 synchronous=FULL by option: opens and works the same. */
static void test_open_synchronous_full(void **state)
{
    fx_t *f = *state;
    store_opts_t o = { .synchronous_full = 1 };
    char err[256];
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(store_open(&f->s, f->path, &o, err, sizeof(err)),
                     COURIER_OK);
    put(f, "m1", BOB, COURIER_QUEUED, T0, 0);
    assert_int_equal(get(f, "m1").state, COURIER_QUEUED);
}

/* ---- outgoing ----------------------------------------------------- */

/* behaviour.md §1/§7: what is stored is what comes back, body byte for byte. */
static void test_out_insert_get_roundtrip(void **state)
{
    fx_t *f = *state;
    const char *body = "你好，世界 — héllo 🎉😀 \xe2\x80\x8d ok";
    core_row_t r = make_row("媒体-1", "bob@例子.example", COURIER_FAILED,
                            T0, T0 + 5);
    r.kind = COURIER_VOICE;
    r.attempts = 4;
    r.bounces = 2;
    r.last_change_ms = T0 + 9;
    r.permanent = 1;
    strcpy(r.reason, "service-unavailable");
    assert_int_equal(store_out_insert(f->s, &r, body, NULL), COURIER_OK);

    core_row_t back;
    char *got = NULL;
    assert_int_equal(store_out_get(f->s, "媒体-1", &back, &got, NULL), COURIER_OK);
    assert_rows_equal(&r, &back);
    assert_non_null(got);
    assert_string_equal(got, body);
    util_free(got);

    assert_int_equal(store_out_get(f->s, "媒体-1", &back, NULL, NULL), COURIER_OK);
    got = (char *)"untouched";
    assert_int_equal(store_out_get(f->s, "nope", &back, &got, NULL),
                     COURIER_ENOTFOUND);
    assert_null(got);

    int64_t n = -1;
    assert_int_equal(store_out_count(f->s, &n), COURIER_OK);
    assert_int_equal(n, 1);
}

/* behaviour.md §7 courier_send_media: an id that exists is COURIER_ESTATE. */
static void test_out_insert_duplicate_id_estate(void **state)
{
    fx_t *f = *state;
    core_row_t r = make_row("m1", BOB, COURIER_QUEUED, T0, 0);
    assert_int_equal(store_out_insert(f->s, &r, "first", NULL), COURIER_OK);
    r.state = COURIER_SENT;
    assert_int_equal(store_out_insert(f->s, &r, "second", NULL), COURIER_ESTATE);
    assert_non_null(strstr(store_errmsg(f->s), "m1"));

    char *body = NULL;
    core_row_t back;
    assert_int_equal(store_out_get(f->s, "m1", &back, &body, NULL), COURIER_OK);
    assert_int_equal(back.state, COURIER_QUEUED);
    assert_string_equal(body, "first");
    util_free(body);
    int64_t n = 0;
    assert_int_equal(store_out_count(f->s, &n), COURIER_OK);
    assert_int_equal(n, 1);
}

/* behaviour.md §1: one conditional update per transition; a late <offline/> after
 * <delivered/> changes nothing. */
static void test_set_state_conditional_never_backwards(void **state)
{
    fx_t *f = *state;
    put(f, "m1", BOB, COURIER_QUEUED, T0, 0);

    core_act_t a = make_act("m1", COURIER_SENT,
                            BIT(COURIER_QUEUED) | BIT(COURIER_FAILED), "");
    assert_int_equal(set_state(f, &a), 1);
    assert_int_equal(get(f, "m1").state, COURIER_SENT);

    a = make_act("m1", COURIER_DELIVERED,
                 BIT(COURIER_SENT) | BIT(COURIER_OFFLINE), "delivered");
    a.bounces = 1;
    assert_int_equal(set_state(f, &a), 1);
    core_row_t r = get(f, "m1");
    assert_int_equal(r.state, COURIER_DELIVERED);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.bounces, 1);
    assert_int_equal(r.last_sent_ms, T0 + 10);
    assert_int_equal(r.last_change_ms, T0 + 20);
    assert_string_equal(r.reason, "delivered");

    a = make_act("m1", COURIER_OFFLINE,
                 BIT(COURIER_QUEUED) | BIT(COURIER_SENT) | BIT(COURIER_FAILED),
                 "late");
    a.attempts = 9;
    assert_int_equal(set_state(f, &a), 0);
    r = get(f, "m1");
    assert_int_equal(r.state, COURIER_DELIVERED);
    assert_int_equal(r.attempts, 1);
    assert_string_equal(r.reason, "delivered");

    /* unknown id: nothing to change, not an error */
    a = make_act("ghost", COURIER_SENT, ALL_STATES, "");
    assert_int_equal(set_state(f, &a), 0);
}

/* behaviour.md §2 error replies: FAILED with its condition, and back to QUEUED on
 * a resend. */
static void test_set_state_failed_and_back(void **state)
{
    fx_t *f = *state;
    put(f, "m1", BOB, COURIER_SENT, T0, T0 + 1);
    core_act_t a = make_act("m1", COURIER_FAILED,
                            BIT(COURIER_QUEUED) | BIT(COURIER_SENT) |
                                BIT(COURIER_OFFLINE),
                            "item-not-found");
    a.permanent = 1;
    assert_int_equal(set_state(f, &a), 1);
    core_row_t r = get(f, "m1");
    assert_int_equal(r.state, COURIER_FAILED);
    assert_int_equal(r.permanent, 1);
    assert_string_equal(r.reason, "item-not-found");

    a = make_act("m1", COURIER_QUEUED, BIT(COURIER_FAILED), "");
    assert_int_equal(set_state(f, &a), 1);
    r = get(f, "m1");
    assert_int_equal(r.state, COURIER_QUEUED);
    assert_int_equal(r.permanent, 0);
    assert_string_equal(r.reason, "");
}

/* behaviour.md §2 CORE_ACT_TRANSMIT: attempts and last send are recorded. */
static void test_mark_sent(void **state)
{
    fx_t *f = *state;
    put(f, "m1", BOB, COURIER_QUEUED, T0, 0);
    assert_int_equal(store_out_mark_sent(f->s, "m1", 3, T0 + 77),
                     COURIER_OK);
    core_row_t r = get(f, "m1");
    assert_int_equal(r.attempts, 3);
    assert_int_equal(r.last_sent_ms, T0 + 77);
    assert_int_equal(r.state, COURIER_QUEUED);
    assert_int_equal(store_out_mark_sent(f->s, "ghost", 1, T0),
                     COURIER_ENOTFOUND);
}

static void put_promote_fixture(fx_t *f)
{
    /* id, peer, state, created, last sent */
    put(f, "b1", BOB, COURIER_DELIVERED, T0 + 10, T0 + 100);
    put(f, "b2", BOB, COURIER_DELIVERED, T0 + 20, T0 + 300);
    put(f, "b3", BOB, COURIER_SENT, T0 + 5, T0 + 50);
    put(f, "b4", BOB, COURIER_OFFLINE, T0 + 5, T0 + 50);
    put(f, "b5", BOB, COURIER_FAILED, T0 + 5, T0 + 50);
    put(f, "c1", CAROL, COURIER_DELIVERED, T0 + 5, T0 + 50);
}

/* The callback runs once the change is committed: another connection
 * already sees the row DISPLAYED. */
typedef struct {
    const char *path;
    int seen;
} commit_probe_t;

static void probe_committed(void *ud, const char *id, const char *peer)
{
    commit_probe_t *p = ud;
    sqlite3 *db = raw_open(p->path);
    sqlite3_stmt *st = NULL;
    (void)peer;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT state FROM outbox"
                                        " WHERE id = ?", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), COURIER_DISPLAYED);
    sqlite3_finalize(st);
    sqlite3_close(db);
    p->seen++;
}

static void test_promote_displayed_notifies_after_commit(void **state)
{
    fx_t *f = *state;
    commit_probe_t p = { f->path, 0 };
    put_promote_fixture(f);
    assert_int_equal(store_out_promote_displayed(f->s, BOB, 1, T0 + 99,
                                                 T0 + 999, "displayed-upto",
                                                 probe_committed, &p),
                     COURIER_OK);
    assert_int_equal(p.seen, 2);
}

/* behaviour.md §2 peer activity (a): only DELIVERED messages to that peer, last
 * sent before the bound, become DISPLAYED; one callback per message. */
static void test_promote_displayed_by_last_sent(void **state)
{
    fx_t *f = *state;
    rec_t rec = { .n = 0 };
    put_promote_fixture(f);
    assert_int_equal(store_out_promote_displayed(f->s, BOB, 0, T0 + 200,
                                                 T0 + 999, "implicit-read",
                                                 rec_id, &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 1);
    assert_string_equal(rec.ids[0], "b1");
    assert_string_equal(rec.peers[0], BOB);
    core_row_t r = get(f, "b1");
    assert_int_equal(r.state, COURIER_DISPLAYED);
    assert_int_equal(r.last_change_ms, T0 + 999);
    assert_string_equal(r.reason, "implicit-read");
    assert_int_equal(get(f, "b2").state, COURIER_DELIVERED);
    assert_int_equal(get(f, "b3").state, COURIER_SENT);
    assert_int_equal(get(f, "b4").state, COURIER_OFFLINE);
    assert_int_equal(get(f, "b5").state, COURIER_FAILED);
    assert_int_equal(get(f, "c1").state, COURIER_DELIVERED);

    /* the bound is inclusive, and what is DISPLAYED is not called again */
    rec.n = 0;
    assert_int_equal(store_out_promote_displayed(f->s, BOB, 0, T0 + 300,
                                                 T0 + 1000, "implicit-read",
                                                 rec_id, &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 1);
    assert_string_equal(rec.ids[0], "b2");

    /* nothing left: no callback, and a NULL callback is fine */
    rec.n = 0;
    assert_int_equal(store_out_promote_displayed(f->s, BOB, 0, T0 + 9999,
                                                 T0 + 1001, "implicit-read",
                                                 rec_id, &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 0);
    assert_int_equal(store_out_promote_displayed(f->s, CAROL, 0, T0 + 9999,
                                                 T0 + 1001, "implicit-read",
                                                 NULL, NULL),
                     COURIER_OK);
    assert_int_equal(get(f, "c1").state, COURIER_DISPLAYED);
}

/* behaviour.md §1 XEP-0333 displayed covers every earlier message to that peer:
 * bounded by creation time. */
static void test_promote_displayed_by_created(void **state)
{
    fx_t *f = *state;
    rec_t rec = { .n = 0 };
    put_promote_fixture(f);
    assert_int_equal(store_out_promote_displayed(f->s, BOB, 1, T0 + 20,
                                                 T0 + 999, "displayed-upto",
                                                 rec_id, &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 2);
    /* order is not promised */
    int b1 = strcmp(rec.ids[0], "b1") == 0 || strcmp(rec.ids[1], "b1") == 0;
    int b2 = strcmp(rec.ids[0], "b2") == 0 || strcmp(rec.ids[1], "b2") == 0;
    assert_true(b1 && b2);
    assert_int_equal(get(f, "b1").state, COURIER_DISPLAYED);
    assert_int_equal(get(f, "b2").state, COURIER_DISPLAYED);
    assert_string_equal(get(f, "b2").reason, "displayed-upto");
    assert_int_equal(get(f, "b3").state, COURIER_SENT);
    assert_int_equal(get(f, "c1").state, COURIER_DELIVERED);

    rec.n = 0;
    put(f, "b6", BOB, COURIER_DELIVERED, T0 + 21, T0 + 21);
    assert_int_equal(store_out_promote_displayed(f->s, BOB, 1, T0 + 20,
                                                 T0 + 999, "displayed-upto",
                                                 rec_id, &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 0);
    assert_int_equal(get(f, "b6").state, COURIER_DELIVERED);
}

/* behaviour.md §2 reconnect: every unsettled message, oldest accepted first; the
 * settled ones (DELIVERED, DISPLAYED, permanent FAILED) stay out. */
static void test_each_unsettled_oldest_first(void **state)
{
    fx_t *f = *state;
    core_row_t r;
    /* created_ms runs backwards: the order is the order of acceptance */
    put(f, "a", BOB, COURIER_QUEUED, T0 + 70, 0);
    put(f, "b", BOB, COURIER_DELIVERED, T0 + 60, T0);
    put(f, "c", CAROL, COURIER_SENT, T0 + 50, T0);
    r = make_row("d", BOB, COURIER_FAILED, T0 + 40, T0);
    r.permanent = 1;
    assert_int_equal(store_out_insert(f->s, &r, "x", NULL), COURIER_OK);
    put(f, "e", BOB, COURIER_OFFLINE, T0 + 30, T0);
    put(f, "f", BOB, COURIER_DISPLAYED, T0 + 20, T0);
    put(f, "g", CAROL, COURIER_FAILED, T0 + 10, T0);

    rec_t rec = { .n = 0 };
    assert_int_equal(store_out_each_unsettled(f->s, rec_row, &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 4);
    assert_string_equal(rec.ids[0], "a");
    assert_string_equal(rec.ids[1], "c");
    assert_string_equal(rec.ids[2], "e");
    assert_string_equal(rec.ids[3], "g");
    assert_string_equal(rec.peers[1], CAROL);

    core_act_t a = make_act("c", COURIER_DELIVERED, ALL_STATES, "");
    assert_int_equal(set_state(f, &a), 1);
    a = make_act("d", COURIER_QUEUED, BIT(COURIER_FAILED), "");
    assert_int_equal(set_state(f, &a), 1);
    rec.n = 0;
    assert_int_equal(store_out_each_unsettled(f->s, rec_row, &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 4);
    assert_string_equal(rec.ids[0], "a");
    assert_string_equal(rec.ids[1], "d");
    assert_string_equal(rec.ids[2], "e");
    assert_string_equal(rec.ids[3], "g");

    /* a non-zero return stops the walk and is returned */
    rec.n = 0;
    rec.stop_after = 2;
    assert_int_equal(store_out_each_unsettled(f->s, rec_row, &rec), 7);
    assert_int_equal(rec.n, 2);
    /* and the statement was reset: a second walk starts over */
    rec.n = 0;
    rec.stop_after = 0;
    assert_int_equal(store_out_each_unsettled(f->s, rec_row, &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 4);
}

/* behaviour.md §5: a restart loses nothing: every state, attempt and reason. */
static void test_reopen_keeps_everything(void **state)
{
    fx_t *f = *state;
    core_row_t rows[4];
    rows[0] = make_row("q", BOB, COURIER_QUEUED, T0, 0);
    rows[1] = make_row("s", BOB, COURIER_SENT, T0 + 1, T0 + 2);
    rows[1].attempts = 2;
    rows[2] = make_row("x", CAROL, COURIER_FAILED, T0 + 3, T0 + 4);
    rows[2].bounces = 3;
    rows[2].permanent = 1;
    strcpy(rows[2].reason, "service-unavailable");
    rows[3] = make_row("o", CAROL, COURIER_QUEUED, T0 + 5, 0);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(store_out_insert(f->s, &rows[i], "b", NULL), COURIER_OK);
    /* mid-flight changes after the insert */
    core_act_t a = make_act("o", COURIER_OFFLINE, ALL_STATES, "stored");
    a.attempts = 5;
    a.bounces = 1;
    assert_int_equal(set_state(f, &a), 1);
    rows[3].state = COURIER_OFFLINE;
    rows[3].attempts = 5;
    rows[3].bounces = 1;
    rows[3].last_sent_ms = a.last_sent_ms;
    rows[3].last_change_ms = a.last_change_ms;
    strcpy(rows[3].reason, "stored");
    assert_int_equal(store_out_mark_sent(f->s, "q", 1, T0 + 50), COURIER_OK);
    rows[0].attempts = 1;
    rows[0].last_sent_ms = T0 + 50;

    reopen(f);
    for (size_t i = 0; i < 4; i++) {
        core_row_t back = get(f, rows[i].id);
        assert_rows_equal(&rows[i], &back);
    }
    rec_t rec = { .n = 0 };
    assert_int_equal(store_out_each_unsettled(f->s, rec_row, &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 3);
    assert_string_equal(rec.ids[0], "q");
    assert_string_equal(rec.ids[1], "s");
    assert_string_equal(rec.ids[2], "o");
}

/* ---- incoming ----------------------------------------------------- */

/* behaviour.md §3: duplicates are recognised by (peer, id); the receipt forms
 * asked for are accumulated. */
static void test_in_duplicate_detection(void **state)
{
    fx_t *f = *state;
    int dup = -1;
    store_in_t old, got;
    store_in_t m = make_in(BOB, "i1", CORE_ASK_RECEIPT, T0);
    assert_int_equal(store_in_insert(f->s, &m, "hello 👋", &dup, &old),
                     COURIER_OK);
    assert_int_equal(dup, 0);

    store_in_t again = make_in(BOB, "i1", CORE_ASK_MARKABLE, T0 + 500);
    again.kind = COURIER_IMAGE;
    assert_int_equal(store_in_insert(f->s, &again, "changed", &dup, &old),
                     COURIER_OK);
    assert_int_equal(dup, 1);
    assert_string_equal(old.peer, BOB);
    assert_string_equal(old.id, "i1");
    assert_int_equal(old.kind, COURIER_TEXT);
    assert_int_equal(old.timestamp_ms, T0);
    assert_int_equal(old.asked, CORE_ASK_RECEIPT | CORE_ASK_MARKABLE);
    assert_int_equal(old.handed, 0);
    assert_int_equal(old.displayed, 0);

    /* `existing` may be NULL */
    assert_int_equal(store_in_insert(f->s, &again, "x", &dup, NULL),
                     COURIER_OK);
    assert_int_equal(dup, 1);

    /* same id from someone else is another message */
    store_in_t other = make_in(CAROL, "i1", 0, T0);
    assert_int_equal(store_in_insert(f->s, &other, "hi", &dup, &old),
                     COURIER_OK);
    assert_int_equal(dup, 0);

    assert_int_equal(store_in_get(f->s, BOB, "i1", &got), COURIER_OK);
    assert_int_equal(got.asked, CORE_ASK_RECEIPT | CORE_ASK_MARKABLE);
    assert_int_equal(store_in_get(f->s, BOB, "nope", &got),
                     COURIER_ENOTFOUND);

    /* the first body is kept */
    rec_t rec = { .n = 0 };
    assert_int_equal(store_in_each_unhanded(f->s, rec_in, &rec), COURIER_OK);
    assert_int_equal(rec.n, 2);
    assert_string_equal(rec.ids[0], "i1");
    assert_string_equal(rec.peers[0], "hello 👋");
}

/* behaviour.md §3: handed over exactly once, even across a crash between the
 * store and the callback. */
static void test_in_handed_and_each_unhanded(void **state)
{
    fx_t *f = *state;
    int dup;
    const char *ids[] = { "i1", "i2", "i3" };
    for (size_t i = 0; i < 3; i++) {
        store_in_t m = make_in(BOB, ids[i], 0, T0 + (int64_t)i);
        char body[16];
        snprintf(body, sizeof(body), "body %zu", i);
        assert_int_equal(store_in_insert(f->s, &m, body, &dup, NULL),
                         COURIER_OK);
    }
    assert_int_equal(store_in_set_handed(f->s, BOB, "i2"), COURIER_OK);
    assert_int_equal(store_in_set_handed(f->s, BOB, "zz"), COURIER_ENOTFOUND);

    reopen(f);
    rec_t rec = { .n = 0 };
    assert_int_equal(store_in_each_unhanded(f->s, rec_in, &rec), COURIER_OK);
    assert_int_equal(rec.n, 2);
    assert_string_equal(rec.ids[0], "i1");
    assert_string_equal(rec.peers[0], "body 0");
    assert_string_equal(rec.ids[1], "i3");
    assert_string_equal(rec.peers[1], "body 2");

    store_in_t got;
    assert_int_equal(store_in_get(f->s, BOB, "i2", &got), COURIER_OK);
    assert_int_equal(got.handed, 1);
    /* a duplicate of a handed message says so */
    store_in_t m = make_in(BOB, "i2", 0, T0);
    assert_int_equal(store_in_insert(f->s, &m, "again", &dup, &got),
                     COURIER_OK);
    assert_int_equal(dup, 1);
    assert_int_equal(got.handed, 1);
}

/* behaviour.md §3 courier_mark_displayed: remembered, so a later duplicate gets
 * displayed again; unknown messages are ENOTFOUND. */
static void test_in_set_displayed(void **state)
{
    fx_t *f = *state;
    int dup;
    store_in_t m = make_in(BOB, "i1", CORE_ASK_X22_DISPLAYED, T0), got;
    assert_int_equal(store_in_insert(f->s, &m, "b", &dup, NULL), COURIER_OK);
    assert_int_equal(store_in_set_displayed(f->s, BOB, "i1"), COURIER_OK);
    assert_int_equal(store_in_set_displayed(f->s, BOB, "i2"),
                     COURIER_ENOTFOUND);
    assert_int_equal(store_in_set_displayed(f->s, CAROL, "i1"),
                     COURIER_ENOTFOUND);
    assert_int_equal(store_in_insert(f->s, &m, "b", &dup, &got), COURIER_OK);
    assert_int_equal(dup, 1);
    assert_int_equal(got.displayed, 1);
}

/* ---- receipts ----------------------------------------------------- */

/* behaviour.md §3 receipts are reliable: kept until the server has them. */
static void test_receipts_add_each_done(void **state)
{
    fx_t *f = *state;
    int64_t rid[3];
    store_rcpt_t r;
    memset(&r, 0, sizeof(r));
    strcpy(r.peer, BOB);
    for (int i = 0; i < 3; i++) {
        snprintf(r.id, sizeof(r.id), "i%d", i);
        r.state = i == 1 ? COURIER_DISPLAYED : COURIER_DELIVERED;
        r.asked = (unsigned)(i + 1);
        assert_int_equal(store_rcpt_add(f->s, &r, &rid[i]), COURIER_OK);
    }
    assert_true(rid[0] < rid[1] && rid[1] < rid[2]);
    assert_int_equal(store_rcpt_add(f->s, &r, NULL), COURIER_OK);

    assert_int_equal(store_rcpt_done(f->s, rid[1]), COURIER_OK);
    assert_int_equal(store_rcpt_done(f->s, rid[1]), COURIER_OK);
    reopen(f);
    rec_t rec = { .n = 0 };
    assert_int_equal(store_rcpt_each(f->s, rec_rcpt, &rec), COURIER_OK);
    assert_int_equal(rec.n, 2);
    assert_int_equal(rec.rcpts[0].rid, rid[0]);
    assert_string_equal(rec.rcpts[0].peer, BOB);
    assert_string_equal(rec.rcpts[0].id, "i0");
    assert_int_equal(rec.rcpts[0].state, COURIER_DELIVERED);
    assert_int_equal(rec.rcpts[0].asked, 1);
    /* i2 owed again: one row, behind the others (a new rid) */
    assert_string_equal(rec.rcpts[1].id, "i2");
    assert_int_equal(rec.rcpts[1].asked, 3);
    assert_true(rec.rcpts[1].rid > rid[2]);
}

static int64_t rcpt_rows(fx_t *f)
{
    return raw_int(f->path, "SELECT count(*) FROM receipts");
}

/* behaviour.md §11: owed receipts are stored once per (peer, id, state); owed
 * again, the row keeps both requests' forms and moves behind the others,
 * so it goes out again (behaviour.md §3: a duplicate is answered too). */
static void test_receipts_unique_per_peer_id_state(void **state)
{
    fx_t *f = *state;
    store_rcpt_t r;
    memset(&r, 0, sizeof(r));
    strcpy(r.peer, BOB);
    strcpy(r.id, "d1");
    r.state = COURIER_DELIVERED;
    r.asked = CORE_ASK_RECEIPT;
    int64_t first, other, again;
    assert_int_equal(store_rcpt_add(f->s, &r, &first), COURIER_OK);
    strcpy(r.id, "d2");
    assert_int_equal(store_rcpt_add(f->s, &r, &other), COURIER_OK);
    strcpy(r.id, "d1");
    r.asked = CORE_ASK_MARKABLE;
    for (int i = 0; i < 3; i++)
        assert_int_equal(store_rcpt_add(f->s, &r, &again), COURIER_OK);
    assert_int_equal(rcpt_rows(f), 2);
    assert_true(again > other);
    /* another state or another peer is another receipt */
    r.state = COURIER_DISPLAYED;
    assert_int_equal(store_rcpt_add(f->s, &r, NULL), COURIER_OK);
    strcpy(r.peer, CAROL);
    assert_int_equal(store_rcpt_add(f->s, &r, NULL), COURIER_OK);
    assert_int_equal(rcpt_rows(f), 4);

    rec_t rec = { .n = 0 };
    assert_int_equal(store_rcpt_each(f->s, rec_rcpt, &rec), COURIER_OK);
    assert_int_equal(rec.n, 4);
    assert_string_equal(rec.rcpts[0].id, "d2");
    assert_int_equal(rec.rcpts[1].rid, again);
    assert_string_equal(rec.rcpts[1].id, "d1");
    assert_int_equal(rec.rcpts[1].asked,
                     CORE_ASK_RECEIPT | CORE_ASK_MARKABLE);
    /* the old row's late ack removes nothing that is still owed */
    assert_int_equal(store_rcpt_done(f->s, first), COURIER_OK);
    assert_int_equal(rcpt_rows(f), 4);
    /* inside a transaction that rolls back, nothing changes either */
    assert_int_equal(store_begin(f->s), COURIER_OK);
    strcpy(r.peer, BOB);
    r.state = COURIER_DELIVERED;
    assert_int_equal(store_rcpt_add(f->s, &r, NULL), COURIER_OK);
    store_rollback(f->s);
    rec.n = 0;
    assert_int_equal(store_rcpt_each(f->s, rec_rcpt, &rec), COURIER_OK);
    assert_int_equal(rec.rcpts[1].rid, again);
}

/* ---- transactions ------------------------------------------------- */

/* store.h: several calls in one explicit transaction (group commit). */
static void test_begin_commit(void **state)
{
    fx_t *f = *state;
    int dup;
    rec_t rec = { .n = 0 };
    assert_int_equal(store_begin(f->s), COURIER_OK);
    assert_int_equal(store_begin(f->s), COURIER_ESTATE);
    put(f, "m1", BOB, COURIER_DELIVERED, T0, T0);
    put(f, "m2", BOB, COURIER_QUEUED, T0, 0);
    /* a failing call inside leaves the transaction usable */
    core_row_t r = make_row("m1", BOB, COURIER_QUEUED, T0, 0);
    assert_int_equal(store_out_insert(f->s, &r, "x", NULL), COURIER_ESTATE);
    store_in_t m = make_in(BOB, "i1", 0, T0);
    assert_int_equal(store_in_insert(f->s, &m, "b", &dup, NULL), COURIER_OK);
    assert_int_equal(store_out_promote_displayed(f->s, BOB, 0, T0, T0 + 1,
                                                 "implicit-read", rec_id,
                                                 &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 1);
    assert_int_equal(store_commit(f->s), COURIER_OK);
    assert_int_equal(store_commit(f->s), COURIER_ESTATE);

    reopen(f);
    assert_int_equal(get(f, "m1").state, COURIER_DISPLAYED);
    assert_int_equal(get(f, "m2").state, COURIER_QUEUED);
    store_in_t got;
    assert_int_equal(store_in_get(f->s, BOB, "i1", &got), COURIER_OK);
}

static void test_begin_rollback(void **state)
{
    fx_t *f = *state;
    int dup;
    put(f, "m0", BOB, COURIER_DELIVERED, T0, T0);
    assert_int_equal(store_begin(f->s), COURIER_OK);
    put(f, "m1", BOB, COURIER_QUEUED, T0, 0);
    core_act_t a = make_act("m0", COURIER_DISPLAYED, ALL_STATES, "");
    assert_int_equal(set_state(f, &a), 1);
    store_in_t m = make_in(BOB, "i1", 0, T0);
    assert_int_equal(store_in_insert(f->s, &m, "b", &dup, NULL), COURIER_OK);
    store_rollback(f->s);

    core_row_t r;
    assert_int_equal(store_out_get(f->s, "m1", &r, NULL, NULL), COURIER_ENOTFOUND);
    assert_int_equal(get(f, "m0").state, COURIER_DELIVERED);
    store_in_t got;
    assert_int_equal(store_in_get(f->s, BOB, "i1", &got), COURIER_ENOTFOUND);
    /* and the store works on standalone afterwards */
    put(f, "m2", BOB, COURIER_QUEUED, T0, 0);
    reopen(f);
    assert_int_equal(get(f, "m2").state, COURIER_QUEUED);
    int64_t n = 0;
    assert_int_equal(store_out_count(f->s, &n), COURIER_OK);
    assert_int_equal(n, 2);
}

/* ---- schema, migration, hostile files ------------------------------ */

static const char v1_ddl[] =
    "CREATE TABLE outbox(seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
    " peer TEXT NOT NULL, kind INTEGER NOT NULL, body TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL, last_sent_ms INTEGER NOT NULL DEFAULT 0,"
    " last_change_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " state INTEGER NOT NULL, permanent INTEGER NOT NULL DEFAULT 0,"
    " reason TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX outbox_unsettled ON outbox(seq)"
    " WHERE state IN (0,1,2) OR (state=5 AND permanent=0);"
    "CREATE INDEX outbox_peer_state ON outbox(peer, state, last_sent_ms);"
    "CREATE TABLE inbox(peer TEXT NOT NULL, id TEXT NOT NULL,"
    " kind INTEGER NOT NULL, body TEXT NOT NULL, ts_ms INTEGER NOT NULL,"
    " received_ms INTEGER NOT NULL, asked INTEGER NOT NULL DEFAULT 0,"
    " displayed INTEGER NOT NULL DEFAULT 0,"
    " handed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(peer, id))"
    " WITHOUT ROWID;"
    "CREATE INDEX inbox_unhanded ON inbox(received_ms) WHERE handed=0;"
    "INSERT INTO outbox(id, peer, kind, body, created_ms, last_sent_ms,"
    " last_change_ms, attempts, state, permanent, reason)"
    " VALUES('old1', 'bob@example.com', 0, 'from v1', 1700000000000,"
    " 1700000000005, 1700000000006, 2, 5, 0, 'link-lost');"
    "INSERT INTO inbox VALUES('bob@example.com', 'in1', 0, 'hi', 1, 2, 4,"
    " 0, 0);"
    "PRAGMA user_version=1;";

/* behaviour.md §5: forward migrations keep every row. */
static void test_migrate_v1_to_v2(void **state)
{
    fx_t *f = *state;
    char err[256];
    raw_exec(f->path, v1_ddl);
    assert_int_equal(store_open(&f->s, f->path, NULL, err, sizeof(err)),
                     COURIER_OK);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
                     STORE_SCHEMA_VERSION);

    char *body = NULL;
    core_row_t r;
    assert_int_equal(store_out_get(f->s, "old1", &r, &body, NULL), COURIER_OK);
    assert_string_equal(body, "from v1");
    util_free(body);
    assert_int_equal(r.state, COURIER_FAILED);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.bounces, 0);
    assert_int_equal(r.created_ms, T0);
    assert_int_equal(r.last_sent_ms, T0 + 5);
    assert_int_equal(r.last_change_ms, T0 + 6);
    assert_string_equal(r.reason, "link-lost");

    rec_t rec = { .n = 0 };
    assert_int_equal(store_out_each_unsettled(f->s, rec_row, &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 1);
    store_in_t in;
    assert_int_equal(store_in_get(f->s, BOB, "in1", &in), COURIER_OK);
    assert_int_equal(in.asked, 4);

    store_rcpt_t rc;
    memset(&rc, 0, sizeof(rc));
    strcpy(rc.peer, BOB);
    strcpy(rc.id, "in1");
    rc.state = COURIER_DELIVERED;
    rc.asked = CORE_ASK_RECEIPT;
    assert_int_equal(store_rcpt_add(f->s, &rc, NULL), COURIER_OK);
    reopen(f);
    rec.n = 0;
    assert_int_equal(store_rcpt_each(f->s, rec_rcpt, &rec), COURIER_OK);
    assert_int_equal(rec.n, 1);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
                     STORE_SCHEMA_VERSION);
}

/* A store written by the library at schema version 3 (commit 72e831a:
 * tests/fixtures/README.md), copied: the file itself stays as it was. */
static void copy_fixture(fx_t *f, const char *name)
{
    char src[256], buf[4096];
    snprintf(src, sizeof(src), "tests/fixtures/%s", name);
    FILE *in = fopen(src, "rb");
    if (!in)
        fail_msg("%s: run the tests from the source tree's root", src);
    FILE *out = fopen(f->path, "wb");
    assert_non_null(out);
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* behaviour.md §11 / §5: the v3 -> v4 migration collapses duplicate owed receipts
 * (the oldest row stays, with every form asked), and loses nothing else. */
static void test_migrate_v3_file_collapses_duplicate_receipts(void **state)
{
    fx_t *f = *state;
    char err[256];
    copy_fixture(f, "store_v3_dup_receipts.db");
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 3);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM receipts"), 10);
    assert_int_equal(store_open(&f->s, f->path, NULL, err, sizeof(err)),
                     COURIER_OK);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
                     STORE_SCHEMA_VERSION);

    rec_t rec = { .n = 0 };
    assert_int_equal(store_rcpt_each(f->s, rec_rcpt, &rec), COURIER_OK);
    assert_int_equal(rec.n, 5);
    static const struct {
        int64_t rid;
        const char *peer, *id;
        courier_state_t state;
        unsigned asked;
    } want[] = {
        { 1, BOB, "in-1", COURIER_DELIVERED, CORE_ASK_RECEIPT },
        { 4, BOB, "in-2", COURIER_DELIVERED,
          CORE_ASK_X22_DELIVERED | CORE_ASK_MARKABLE },
        { 6, BOB, "in-2", COURIER_DISPLAYED,
          CORE_ASK_X22_DISPLAYED | CORE_ASK_MARKABLE },
        { 9, CAROL, "in-1", COURIER_DELIVERED, CORE_ASK_RECEIPT },
        { 10, BOB, "in-3", COURIER_DELIVERED, CORE_ASK_RECEIPT },
    };
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(rec.rcpts[i].rid, want[i].rid);
        assert_string_equal(rec.rcpts[i].peer, want[i].peer);
        assert_string_equal(rec.rcpts[i].id, want[i].id);
        assert_int_equal(rec.rcpts[i].state, want[i].state);
        assert_int_equal(rec.rcpts[i].asked, want[i].asked);
    }
    /* the rule holds from now on */
    store_rcpt_t r = rec.rcpts[0];
    assert_int_equal(store_rcpt_add(f->s, &r, NULL), COURIER_OK);
    assert_int_equal(rcpt_rows(f), 5);

    /* nothing else lost: the outbox (bodies, states) and the inbox */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM outbox"), 2);
    char *body = NULL;
    core_row_t row;
    assert_int_equal(store_out_get(f->s, "v-1", &row, &body, NULL), COURIER_OK);
    assert_string_equal(body, "https://x.test/v-1.ogg");
    util_free(body);
    assert_int_equal(row.kind, COURIER_VOICE);
    assert_int_equal(row.state, COURIER_FAILED);
    assert_string_equal(row.reason, "offline");
    rec.n = 0;
    assert_int_equal(store_out_each_unsettled(f->s, rec_row, &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 2);
    assert_string_equal(rec.ids[1], "v-1");
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM inbox"), 4);
    store_in_t in;
    assert_int_equal(store_in_get(f->s, BOB, "in-2", &in), COURIER_OK);
    assert_int_equal(in.asked, CORE_ASK_X22_DELIVERED |
                                   CORE_ASK_X22_DISPLAYED |
                                   CORE_ASK_MARKABLE);
    assert_int_equal(in.displayed, 1);
    assert_int_equal(in.handed, 1);
    assert_int_equal(store_in_get(f->s, CAROL, "in-1", &in), COURIER_OK);
    char last[COURIER_ID_MAX];
    unsigned asked = 0;
    assert_int_equal(store_in_last_id(f->s, BOB, last, &asked), COURIER_OK);
    assert_string_equal(last, "in-3");
    char check[64];
    raw_text(f->path, "PRAGMA integrity_check", check, sizeof(check));
    assert_string_equal(check, "ok");
}

/* Issue 17 / behaviour.md §5: the v4 -> v5 migration redefines the unsettled
 * index without a constant IN list; a store written at v4 (commit cb93941,
 * tests/fixtures/README.md) keeps every row, and the index still selects
 * exactly the unsettled messages (behaviour.md §2 reconnect: QUEUED, SENT, OFFLINE
 * and non-permanent FAILED, oldest first). */
static void test_migrate_v4_file_unsettled_index_without_in_list(void **st)
{
    fx_t *f = *st;
    char err[256], sql_v4[256], sql_v5[256];
    copy_fixture(f, "store_v4_all_states.db");
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 4);
    raw_text(f->path, "SELECT sql FROM sqlite_master"
                      " WHERE name = 'outbox_unsettled'",
             sql_v4, sizeof(sql_v4));
    assert_non_null(strstr(sql_v4, "IN (0,1,2)"));
    assert_int_equal(store_open(&f->s, f->path, NULL, err, sizeof(err)),
                     COURIER_OK);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
                     STORE_SCHEMA_VERSION);
    raw_text(f->path, "SELECT sql FROM sqlite_master"
                      " WHERE name = 'outbox_unsettled'",
             sql_v5, sizeof(sql_v5));
    assert_null(strstr(sql_v5, " IN "));

    rec_t rec = { .n = 0 };
    assert_int_equal(store_out_each_unsettled(f->s, rec_row, &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 4);
    assert_string_equal(rec.ids[0], "o-queued");
    assert_string_equal(rec.ids[1], "o-sent");
    assert_string_equal(rec.ids[2], "o-offline");
    assert_string_equal(rec.ids[3], "o-failed");

    /* every row kept, with its body */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM outbox"), 7);
    char *body = NULL;
    core_row_t row;
    assert_int_equal(store_out_get(f->s, "o-failed-perm", &row, &body, NULL),
                     COURIER_OK);
    assert_string_equal(body, "body of o-failed-perm");
    util_free(body);
    assert_int_equal(row.state, COURIER_FAILED);
    assert_int_equal(row.permanent, 1);
    assert_string_equal(row.reason, "item-not-found");
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM inbox"), 2);
    store_in_t in;
    assert_int_equal(store_in_get(f->s, BOB, "in-1", &in), COURIER_OK);
    assert_int_equal(in.handed, 1);
    rec.n = 0;
    assert_int_equal(store_rcpt_each(f->s, rec_rcpt, &rec), COURIER_OK);
    assert_int_equal(rec.n, 1);

    /* the new index follows state changes: DELIVERED leaves it */
    core_act_t a;
    int changed = 0;
    memset(&a, 0, sizeof(a));
    strcpy(a.id, "o-sent");
    a.state = COURIER_DELIVERED;
    a.attempts = 1;
    a.last_sent_ms = row.last_sent_ms;
    a.from_mask = ALL_STATES;
    assert_int_equal(store_out_set_state(f->s, &a, &changed), COURIER_OK);
    assert_int_equal(changed, 1);
    rec.n = 0;
    assert_int_equal(store_out_each_unsettled(f->s, rec_row, &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 3);
    char check[64];
    raw_text(f->path, "PRAGMA integrity_check", check, sizeof(check));
    assert_string_equal(check, "ok");
}

/* ---- the app's history (issue 14, behaviour.md §9) ---------------- */

static void put_in(fx_t *f, const char *peer, const char *id,
                   const char *body, const char *meta)
{
    store_in_t m;
    int dup = 0;
    memset(&m, 0, sizeof(m));
    strcpy(m.peer, peer);
    strcpy(m.id, id);
    m.kind = COURIER_TEXT;
    m.timestamp_ms = 1000;
    m.meta = meta;
    assert_int_equal(store_in_insert(f->s, &m, body, &dup, NULL), COURIER_OK);
    assert_int_equal(dup, 0);
}

static void put_out_meta(fx_t *f, const char *id, const char *peer,
                         courier_state_t state, const char *meta)
{
    core_row_t r = make_row(id, peer, state, 1000, 0);
    assert_int_equal(store_out_insert(f->s, &r, id, meta), COURIER_OK);
}

/* "ids of the page" as one string: "o1 <i1 o2" (< = incoming). */
static void page_ids(const store_entries_t *l, char *out, size_t n)
{
    out[0] = '\0';
    for (size_t i = 0; i < l->len; i++) {
        size_t at = strlen(out);
        snprintf(out + at, n - at, "%s%s%s", i ? " " : "",
                 l->v[i].dir == COURIER_DIR_IN ? "<" : "", l->v[i].id);
    }
}

static void history_of(fx_t *f, const char *peer, int64_t before,
                       size_t limit, const char *want)
{
    store_entries_t l = { 0 };
    char got[512];
    assert_int_equal(store_history(f->s, peer, before, limit, &l),
                     COURIER_OK);
    page_ids(&l, got, sizeof(got));
    store_entries_free(&l);
    assert_string_equal(got, want);
}

/* behaviour.md §9: one order over both directions; pages newest first by
 * peer or for all; deleted entries left out; bodies and meta read back. */
static void test_history_pages_both_directions(void **state)
{
    fx_t *f = *state;
    put_out_meta(f, "o1", BOB, COURIER_DELIVERED, "{\"len\":3}");
    put_in(f, BOB, "i1", "hi", NULL);
    put_out_meta(f, "o2", CAROL, COURIER_SENT, NULL);
    put_in(f, CAROL, "i2", "yo", "m");
    put_out_meta(f, "o3", BOB, COURIER_QUEUED, NULL);
    put_in(f, BOB, "i3", "again", NULL);

    history_of(f, BOB, 0, 50, "<i3 o3 <i1 o1");
    history_of(f, CAROL, 0, 50, "<i2 o2");
    history_of(f, NULL, 0, 50, "<i3 o3 <i2 o2 <i1 o1");
    history_of(f, NULL, 0, 2, "<i3 o3");

    store_entries_t l = { 0 };
    assert_int_equal(store_history(f->s, BOB, 0, 2, &l), COURIER_OK);
    assert_int_equal(l.len, 2);
    assert_true(l.v[0].seq > l.v[1].seq);
    int64_t cursor = l.v[1].seq;
    assert_string_equal(l.v[0].body, "again");
    assert_int_equal(l.v[0].state, COURIER_DELIVERED); /* IN, not marked */
    store_entries_free(&l);
    history_of(f, BOB, cursor, 2, "<i1 o1");
    assert_int_equal(store_history(f->s, BOB, cursor, 2, &l), COURIER_OK);
    assert_string_equal(l.v[1].meta, "{\"len\":3}");
    assert_string_equal(l.v[1].body, "o1");
    assert_int_equal(l.v[1].state, COURIER_DELIVERED);
    store_entries_free(&l);

    /* delete: gone from the history, the id still taken */
    assert_int_equal(store_out_mark(f->s, "o3", 0, 1), COURIER_OK);
    assert_int_equal(store_in_delete(f->s, BOB, "i1"), COURIER_OK);
    assert_int_equal(store_in_delete(f->s, CAROL, "i1"), COURIER_ENOTFOUND);
    history_of(f, BOB, 0, 50, "<i3 o1");
    core_row_t r = make_row("o3", BOB, COURIER_QUEUED, 1, 0);
    assert_int_equal(store_out_insert(f->s, &r, "x", NULL), COURIER_ESTATE);
    store_in_t in;
    memset(&in, 0, sizeof(in));
    strcpy(in.peer, BOB);
    strcpy(in.id, "i1");
    int dup = 0;
    assert_int_equal(store_in_insert(f->s, &in, "hi", &dup, NULL),
                     COURIER_OK);
    assert_int_equal(dup, 1); /* a duplicate, never handed again */

    /* seqs only grow, also after the newest was deleted */
    int64_t top = raw_int(f->path, "SELECT max(seq) FROM inbox");
    assert_int_equal(store_in_delete(f->s, BOB, "i3"), COURIER_OK);
    put_in(f, BOB, "i4", "new", NULL);
    assert_true(raw_int(f->path, "SELECT seq FROM inbox WHERE id = 'i4'") >
                top);
}

/* The paging statements walk their index: a page of 50 costs the same
 * (SQLite virtual-machine steps) from a store of 100 entries and from one
 * of 4000 (the plans, checked for every statement in
 * test_no_statement_builds_an_ephemeral_table, have no sorter). */
static int64_t page_cost(fx_t *f, const char *peer)
{
    store_entries_t l = { 0 };
    store_vm_steps(f->s, 1);
    assert_int_equal(store_history(f->s, peer, 0, 50, &l), COURIER_OK);
    assert_int_equal(l.len, 50);
    int64_t steps = store_vm_steps(f->s, 0);
    store_entries_free(&l);
    return steps;
}

static void fill_history(fx_t *f, int from, int to)
{
    assert_int_equal(store_begin(f->s), COURIER_OK);
    for (int i = from; i < to; i++) {
        char id[32];
        snprintf(id, sizeof(id), "m%d", i);
        if (i % 2)
            put_in(f, i % 4 == 1 ? CAROL : BOB, id, "b", NULL);
        else
            put_out_meta(f, id, i % 4 == 2 ? CAROL : BOB, COURIER_DELIVERED,
                         NULL);
    }
    assert_int_equal(store_commit(f->s), COURIER_OK);
}

static void test_history_page_cost_independent_of_size(void **state)
{
    fx_t *f = *state;
    fill_history(f, 0, 200);
    int64_t small_peer = page_cost(f, BOB), small_all = page_cost(f, NULL);
    fill_history(f, 200, 8000);
    int64_t big_peer = page_cost(f, BOB), big_all = page_cost(f, NULL);
    assert_true(small_peer > 0 && small_all > 0);
    assert_true(big_peer <= small_peer + small_peer / 10);
    assert_true(big_all <= small_all + small_all / 10);
}

/* behaviour.md §9: pending = not confirmed by any device and not given up,
 * oldest first; conversations = one per peer, newest first, unread after
 * the read mark. */
static void test_pending_and_conversations(void **state)
{
    fx_t *f = *state;
    put_out_meta(f, "q", BOB, COURIER_QUEUED, NULL);
    put_out_meta(f, "d", BOB, COURIER_DELIVERED, NULL);
    core_row_t r = make_row("fp", CAROL, COURIER_FAILED, 1000, 0);
    r.permanent = 1;
    assert_int_equal(store_out_insert(f->s, &r, "x", NULL), COURIER_OK);
    r = make_row("fc", CAROL, COURIER_FAILED, 1000, 0);
    r.permanent = 1;
    r.cancelled = 1;
    assert_int_equal(store_out_insert(f->s, &r, "x", NULL), COURIER_OK);
    put_out_meta(f, "s", BOB, COURIER_SENT, NULL);
    store_entries_t l = { 0 };
    char got[256];
    assert_int_equal(store_pending(f->s, 0, 100, &l), COURIER_OK);
    page_ids(&l, got, sizeof(got));
    assert_string_equal(got, "q fp s");
    int64_t after = l.v[0].seq;
    store_entries_free(&l);
    assert_int_equal(store_pending(f->s, after, 1, &l), COURIER_OK);
    page_ids(&l, got, sizeof(got));
    assert_string_equal(got, "fp");
    store_entries_free(&l);

    put_in(f, BOB, "b1", "1", NULL);
    put_in(f, BOB, "b2", "2", NULL);
    put_in(f, BOB, "b3", "3", NULL);
    put_in(f, DAVE, "v1", "1", NULL);
    store_conv_t *c = NULL;
    size_t n = 0;
    assert_int_equal(store_conversations(f->s, &c, &n), COURIER_OK);
    assert_int_equal(n, 3);
    assert_string_equal(c[0].peer, DAVE);
    assert_int_equal(c[0].unread, 1);
    assert_string_equal(c[1].peer, BOB);
    assert_int_equal(c[1].unread, 3);
    assert_string_equal(c[2].peer, CAROL);
    assert_int_equal(c[2].unread, 0);
    assert_true(c[0].last_seq > c[1].last_seq);
    util_free(c);
    /* marking b2 marks b1 too (XEP-0333): one unread left */
    assert_int_equal(store_in_set_displayed(f->s, BOB, "b2"), COURIER_OK);
    /* a retracted message is nothing to read */
    int existed = 0;
    assert_int_equal(store_in_retract(f->s, DAVE, "v1", 5, &existed),
                     COURIER_OK);
    assert_int_equal(existed, 1);
    assert_int_equal(store_conversations(f->s, &c, &n), COURIER_OK);
    assert_int_equal(c[0].unread, 0);
    assert_int_equal(c[1].unread, 1);
    util_free(c);
    history_of(f, BOB, 0, 3, "<b3 <b2 <b1");
    /* the entries say so too: b1 was shown with b2, b3 not yet */
    assert_int_equal(store_history(f->s, BOB, 0, 3, &l), COURIER_OK);
    assert_int_equal(l.v[0].state, COURIER_DELIVERED);
    assert_int_equal(l.v[1].state, COURIER_DISPLAYED);
    assert_int_equal(l.v[2].state, COURIER_DISPLAYED);
    store_entries_free(&l);
    assert_int_equal(store_history(f->s, NULL, 0, 50, &l), COURIER_OK);
    for (size_t i = 0; i < l.len; i++)
        if (!strcmp(l.v[i].id, "b1"))
            assert_int_equal(l.v[i].state, COURIER_DISPLAYED);
    store_entries_free(&l);
    assert_int_equal(store_history(f->s, DAVE, 0, 1, &l), COURIER_OK);
    assert_int_equal(l.v[0].retracted, 1);
    assert_string_equal(l.v[0].body, "");
    store_entries_free(&l);
}

/* XEP-0424 from the sender only, once; a retraction before its message
 * makes the message a duplicate, never handed. */
static void test_incoming_retraction(void **state)
{
    fx_t *f = *state;
    int existed = 0, dup = 0;
    put_in(f, BOB, "m1", "oops", "meta");
    assert_int_equal(store_in_retract(f->s, CAROL, "m1", 5, &existed),
                     COURIER_OK);
    assert_int_equal(existed, 0); /* carol's "m1" is not bob's */
    store_in_t in;
    assert_int_equal(store_in_get(f->s, BOB, "m1", &in), COURIER_OK);
    assert_int_equal(in.retracted, 0);
    assert_int_equal(store_in_retract(f->s, BOB, "m1", 5, &existed),
                     COURIER_OK);
    assert_int_equal(existed, 1);
    assert_int_equal(store_in_retract(f->s, BOB, "m1", 6, &existed),
                     COURIER_OK);
    assert_int_equal(existed, 0); /* once */
    /* carol's tombstone: her m1, when it comes, is never handed */
    memset(&in, 0, sizeof(in));
    strcpy(in.peer, CAROL);
    strcpy(in.id, "m1");
    assert_int_equal(store_in_insert(f->s, &in, "late", &dup, NULL),
                     COURIER_OK);
    assert_int_equal(dup, 1);
    assert_int_equal(store_in_get(f->s, CAROL, "m1", &in), COURIER_OK);
    assert_int_equal(in.handed, 1);
}

/* behaviour.md §9 / §5: the v5 -> v6 migration (a store written by commit
 * bb7c198, tests/fixtures/README.md) keeps every row and orders the
 * history of both directions by time. */
static void test_migrate_v5_file_interleaves_history(void **st)
{
    fx_t *f = *st;
    char err[256];
    copy_fixture(f, "store_v5_history.db");
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 5);
    assert_int_equal(store_open(&f->s, f->path, NULL, err, sizeof(err)),
                     COURIER_OK);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
                     STORE_SCHEMA_VERSION);
    history_of(f, BOB, 0, 50, "o7-queued <i4-unhanded o5-failed <i3 "
                              "o3-sent o2-delivered <i1-shown o1-displayed");
    history_of(f, NULL, 0, 50, "o7-queued <i4-unhanded o6-failed-perm "
                               "o5-failed o4-offline <i3 o3-sent <i2 "
                               "o2-delivered <i1-shown o1-displayed");
    store_entries_t l = { 0 };
    assert_int_equal(store_history(f->s, BOB, 0, 50, &l), COURIER_OK);
    assert_string_equal(l.v[1].body, "body of i4-unhanded");
    assert_string_equal(l.v[1].meta, "");
    assert_int_equal(l.v[6].state, COURIER_DISPLAYED); /* i1-shown marked */
    assert_int_equal(l.v[3].state, COURIER_DELIVERED);
    store_entries_free(&l);
    /* unsettled (resend order kept), pending, unhanded, owed receipt */
    rec_t rec = { .n = 0 };
    assert_int_equal(store_out_each_unsettled(f->s, rec_row, &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 4);
    assert_string_equal(rec.ids[0], "o3-sent");
    assert_string_equal(rec.ids[3], "o7-queued");
    char got[256];
    assert_int_equal(store_pending(f->s, 0, 50, &l), COURIER_OK);
    page_ids(&l, got, sizeof(got));
    store_entries_free(&l);
    assert_string_equal(got, "o3-sent o4-offline o5-failed o6-failed-perm "
                             "o7-queued");
    rec.n = 0;
    assert_int_equal(store_in_each_unhanded(f->s, rec_in, &rec), COURIER_OK);
    assert_int_equal(rec.n, 1);
    assert_string_equal(rec.ids[0], "i4-unhanded");
    rec.n = 0;
    assert_int_equal(store_rcpt_each(f->s, rec_rcpt, &rec), COURIER_OK);
    assert_int_equal(rec.n, 1);
    /* new rows go after the migrated ones */
    put_in(f, BOB, "new", "x", NULL);
    history_of(f, BOB, 0, 1, "<new");
    char last[COURIER_ID_MAX];
    unsigned asked = 0;
    assert_int_equal(store_in_last_id(f->s, BOB, last, &asked), COURIER_OK);
    assert_string_equal(last, "new");
    char check[64];
    raw_text(f->path, "PRAGMA integrity_check", check, sizeof(check));
    assert_string_equal(check, "ok");
}

/* Two incoming messages that arrived in the same millisecond (a burst of
 * offline messages) keep the sender's order through the v5 -> v6
 * migration: the sender's timestamp breaks the tie, not the old table's
 * key order (peer, id). */
static void test_migrate_v5_same_ms_incoming_keep_sender_order(void **st)
{
    fx_t *f = *st;
    char err[256];
    copy_fixture(f, "store_v5_history.db");
    raw_exec(f->path,
             "INSERT INTO inbox(peer, id, kind, body, ts_ms, received_ms,"
             " handed) VALUES"
             " ('dave@example.com', 'z-sent-first', 0, 'a', 100, 5000, 1),"
             " ('dave@example.com', 'm-sent-second', 0, 'b', 200, 5000, 1),"
             " ('dave@example.com', 'a-sent-third', 0, 'c', 300, 5000, 1);");
    assert_int_equal(store_open(&f->s, f->path, NULL, err, sizeof(err)),
                     COURIER_OK);
    history_of(f, "dave@example.com", 0, 50,
               "<a-sent-third <m-sent-second <z-sent-first");
}

/* behaviour.md §10 / §5: the v6 -> v7 migration (a store written by commit
 * 8f6786c, tests/fixtures/README.md) adds the push registration and keeps
 * every row of every kind v6 holds; a migrated store has no registration
 * and owes no disable. */
static int rec_push(void *ud, const store_push_t *p)
{
    rec_t *r = ud;
    assert_true(r->n < 16);
    assert_int_equal(util_strlcpy(r->ids[r->n], p->node, sizeof(r->ids[0])),
                     0);
    assert_int_equal(util_strlcpy(r->peers[r->n], p->service,
                                  sizeof(r->peers[0])), 0);
    r->n++;
    return 0;
}

static void test_migrate_v6_file_adds_push_keeps_history(void **st)
{
    fx_t *f = *st;
    char err[256];
    copy_fixture(f, "store_v6_history.db");
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 6);
    assert_int_equal(store_open(&f->s, f->path, NULL, err, sizeof(err)),
                     COURIER_OK);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
                     STORE_SCHEMA_VERSION);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM outbox"), 7);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM inbox"), 6);
    /* the history as v6 showed it: deleted entries and the tombstone left
     * out, newest first, both directions in one order */
    history_of(f, NULL, 0, 50, "o7-queued <i5-unhanded o6-failed "
                               "<i3-retracted o4-cancelled o3-retracted "
                               "<i2-meta o2-meta <i1-shown o1-displayed");
    store_entries_t l = { 0 };
    assert_int_equal(store_history(f->s, NULL, 0, 50, &l), COURIER_OK);
    assert_int_equal(l.len, 10);
    assert_string_equal(l.v[7].meta, "{\"voice_ms\":1200}");
    assert_string_equal(l.v[6].meta, "{\"reply_to\":\"o2\"}");
    assert_int_equal(l.v[5].retracted, 1);
    assert_string_equal(l.v[5].body, "");
    assert_int_equal(l.v[3].retracted, 1);
    assert_int_equal(l.v[8].state, COURIER_DISPLAYED);
    assert_int_equal(l.v[0].timestamp_ms, 1700000000000LL + 120);
    store_entries_free(&l);
    core_row_t row;
    assert_int_equal(store_out_get(f->s, "o4-cancelled", &row, NULL, NULL),
                     COURIER_OK);
    assert_int_equal(row.cancelled, 1);
    assert_int_equal(row.permanent, 1);
    assert_int_equal(store_out_get(f->s, "o5-deleted", &row, NULL, NULL),
                     COURIER_OK);
    assert_int_equal(row.deleted, 1);
    /* unsettled (o5 SENT although deleted: the server may still confirm
     * it), unhanded (the retraction owed to the app too), owed receipts */
    rec_t rec = { .n = 0 };
    assert_int_equal(store_out_each_unsettled(f->s, rec_row, &rec),
                     COURIER_OK);
    assert_int_equal(rec.n, 3);
    assert_string_equal(rec.ids[0], "o5-deleted");
    assert_string_equal(rec.ids[1], "o6-failed");
    assert_string_equal(rec.ids[2], "o7-queued");
    unhanded_of(f, "i3-retracted i5-unhanded");
    rec.n = 0;
    assert_int_equal(store_rcpt_each(f->s, rec_rcpt, &rec), COURIER_OK);
    assert_int_equal(rec.n, 2);
    assert_int_equal(rec.rcpts[0].retract, 1);
    assert_string_equal(rec.rcpts[0].id, "o3-retracted");
    assert_int_equal(rec.rcpts[1].retract, 0);
    /* a retraction that came first still hides its message */
    int dup = 0;
    store_in_t m = make_in(CAROL, "i9-tombstone", 0, T0);
    assert_int_equal(store_in_insert(f->s, &m, "late", &dup, NULL),
                     COURIER_OK);
    assert_int_equal(dup, 1);
    /* no push registration yet, none owed a disable */
    store_push_t p;
    assert_int_equal(store_push_get(f->s, &p), COURIER_ENOTFOUND);
    rec.n = 0;
    assert_int_equal(store_push_each_owed(f->s, rec_push, &rec), COURIER_OK);
    assert_int_equal(rec.n, 0);
    char check[64];
    raw_text(f->path, "PRAGMA integrity_check", check, sizeof(check));
    assert_string_equal(check, "ok");
}

static store_push_t push_reg(const char *service, const char *node,
                             const char *secret)
{
    store_push_t p;
    memset(&p, 0, sizeof(p));
    strcpy(p.service, service);
    strcpy(p.node, node);
    if (secret) {
        p.has_secret = 1;
        strcpy(p.secret, secret);
    }
    return p;
}

typedef struct {
    const char *node;
    int64_t n;
} owed_find_t;

static int find_owed(void *ud, const store_push_t *p)
{
    owed_find_t *o = ud;
    if (strcmp(p->node, o->node) == 0)
        o->n = p->owed_n;
    return 0;
}

/* The owed row of `node` (0: none). */
static int64_t owed_n_of(fx_t *f, const char *node)
{
    owed_find_t o = { node, 0 };
    assert_int_equal(store_push_each_owed(f->s, find_owed, &o), COURIER_OK);
    return o.n;
}

static void owed_is(fx_t *f, const char *want)
{
    rec_t rec = { .n = 0 };
    char got[256] = "";
    assert_int_equal(store_push_each_owed(f->s, rec_push, &rec), COURIER_OK);
    for (size_t i = 0; i < rec.n; i++)
        snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s/%s",
                 i ? " " : "", rec.peers[i], rec.ids[i]);
    assert_string_equal(got, want);
}

/* behaviour.md §10: the push registration survives close/open; one that
 * replaces another (new service or node) owes the old one a disable, so
 * the server stops pushing to it; forgetting it owes one too; the disable
 * answered is owed no more; erase forgets everything. */
static void test_push_registration_kept_and_replaced_owes_disable(void **st)
{
    fx_t *f = *st;
    store_push_t p = push_reg("push.example.com", "node-a", "s3cret");
    assert_int_equal(store_push_set(f->s, &p), COURIER_OK);
    reopen(f);
    store_push_t got;
    assert_int_equal(store_push_get(f->s, &got), COURIER_OK);
    assert_string_equal(got.service, "push.example.com");
    assert_string_equal(got.node, "node-a");
    assert_int_equal(got.has_secret, 1);
    assert_string_equal(got.secret, "s3cret");
    owed_is(f, "");
    /* the same node again, without a secret: nothing owed */
    p = push_reg("push.example.com", "node-a", NULL);
    assert_int_equal(store_push_set(f->s, &p), COURIER_OK);
    assert_int_equal(store_push_get(f->s, &got), COURIER_OK);
    assert_int_equal(got.has_secret, 0);
    assert_string_equal(got.secret, "");
    owed_is(f, "");
    p = push_reg("push.example.com", "node-b", NULL);
    assert_int_equal(store_push_set(f->s, &p), COURIER_OK);
    owed_is(f, "push.example.com/node-a");
    /* back to a: a is no longer owed a disable, b is */
    p = push_reg("push.example.com", "node-a", "x");
    assert_int_equal(store_push_set(f->s, &p), COURIER_OK);
    owed_is(f, "push.example.com/node-b");
    assert_int_equal(store_push_clear(f->s, &got), COURIER_OK);
    assert_string_equal(got.node, "node-a");
    assert_int_equal(store_push_get(f->s, &got), COURIER_ENOTFOUND);
    assert_int_equal(store_push_clear(f->s, NULL), COURIER_ENOTFOUND);
    reopen(f);
    owed_is(f, "push.example.com/node-b push.example.com/node-a");
    int64_t nb = owed_n_of(f, "node-b");
    assert_int_equal(store_push_owed_done(f->s, nb), COURIER_OK);
    owed_is(f, "push.example.com/node-a");
    /* owed again: a new row, never the settled one's number (a late
     * answer to the old disable must not settle it) */
    p = push_reg("push.example.com", "node-b", NULL);
    assert_int_equal(store_push_set(f->s, &p), COURIER_OK);
    assert_int_equal(store_push_clear(f->s, NULL), COURIER_OK);
    assert_true(owed_n_of(f, "node-b") > nb);
    assert_int_equal(store_push_owed_done(f->s, nb), COURIER_OK);
    owed_is(f, "push.example.com/node-a push.example.com/node-b");
    assert_int_equal(store_push_owed_done(f->s, owed_n_of(f, "node-b")),
                     COURIER_OK);
    owed_is(f, "push.example.com/node-a");
    p = push_reg("other.example.com", "node-c", NULL);
    assert_int_equal(store_push_set(f->s, &p), COURIER_OK);
    assert_int_equal(store_erase(f->s), COURIER_OK);
    assert_int_equal(store_push_get(f->s, &got), COURIER_ENOTFOUND);
    owed_is(f, "");
}

/* ---- schema v8: the unsettled index is swept, not written per send -- */

static void pending_of(fx_t *f, const char *want)
{
    store_entries_t l = { 0 };
    char got[512];
    assert_int_equal(store_pending(f->s, 0, 50, &l), COURIER_OK);
    page_ids(&l, got, sizeof(got));
    store_entries_free(&l);
    assert_string_equal(got, want);
}

static void unsettled_of(fx_t *f, const char *want)
{
    rec_t rec = { .n = 0 };
    char got[512] = "";
    assert_int_equal(store_out_each_unsettled(f->s, rec_row, &rec),
                     COURIER_OK);
    for (size_t i = 0; i < rec.n; i++) {
        strcat(got, i ? " " : "");
        strcat(got, rec.ids[i]);
    }
    assert_string_equal(got, want);
}

/* `n` settled messages to carol, ids d0, d1, ... */
static void put_delivered(fx_t *f, int n)
{
    char id[32];
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "d%d", i);
        put(f, id, CAROL, COURIER_DELIVERED, T0, T0);
    }
}

/* Entries in the b-tree of index `name`, read from its pages (the dbstat
 * table, which Debian's SQLite is built with; a build without
 * SQLITE_ENABLE_DBSTAT_VTAB fails these tests with "no such table"). */
static int64_t index_entries(fx_t *f, const char *name)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(sum(ncell), 0) FROM dbstat"
             " WHERE name = '%s' AND pagetype = 'leaf'", name);
    return raw_int(f->path, sql);
}

/* behaviour.md §5, issue 17: a durable send writes three b-trees (the
 * table, the id, the peer's history), not the unsettled index as well:
 * a message that settles before the next sweep never enters it; the
 * restart still finds it while it is unsettled. */
static void test_send_writes_no_unsettled_index_entry(void **state)
{
    fx_t *f = *state;
    core_row_t r = make_row("m1", BOB, COURIER_QUEUED, T0, 0);
    assert_int_equal(store_begin(f->s), COURIER_OK);
    assert_int_equal(store_out_insert(f->s, &r, "body", NULL), COURIER_OK);
    assert_int_equal(store_commit(f->s), COURIER_OK);
    assert_int_equal(index_entries(f, "outbox_unsettled"), 0);
    reopen(f);
    unsettled_of(f, "m1");
    pending_of(f, "m1");
}

/* behaviour.md §9: one order over both directions, with the outgoing seq
 * kept in memory between inserts (lib/store.c next_out_seq): an incoming
 * message, a retraction's tombstone, a rolled-back send and an erase in
 * between never give two entries one seq nor put one out of order. */
static void test_seq_one_order_with_the_outgoing_seq_in_memory(void **state)
{
    fx_t *f = *state;
    int existed = 0;
    put(f, "o1", BOB, COURIER_QUEUED, T0, 0);
    put_in(f, BOB, "i1", "hi", NULL);
    put(f, "o2", BOB, COURIER_QUEUED, T0, 0);
    assert_int_equal(store_in_retract(f->s, CAROL, "t1", T0, &existed),
                     COURIER_OK);
    put(f, "o3", CAROL, COURIER_QUEUED, T0, 0);
    assert_int_equal(store_begin(f->s), COURIER_OK);
    put(f, "gone", BOB, COURIER_QUEUED, T0, 0);
    store_rollback(f->s);
    put_in(f, CAROL, "i2", "yo", NULL);
    put(f, "o4", BOB, COURIER_QUEUED, T0, 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM (SELECT seq"
                                      " FROM outbox UNION ALL SELECT seq"
                                      " FROM inbox)"), 7);
    assert_int_equal(raw_int(f->path, "SELECT count(DISTINCT seq) FROM"
                                      " (SELECT seq FROM outbox UNION ALL"
                                      " SELECT seq FROM inbox)"), 7);
    history_of(f, NULL, 0, 50, "o4 <i2 o3 o2 <i1 o1");
    /* after an erase the seqs start again, in the same order */
    assert_int_equal(store_erase(f->s), COURIER_OK);
    put_in(f, BOB, "i3", "again", NULL);
    put(f, "o5", BOB, COURIER_QUEUED, T0, 0);
    history_of(f, NULL, 0, 50, "o5 <i3");
    assert_int_equal(raw_int(f->path, "SELECT seq FROM outbox"), 2);
}

/* The invariant of schema v8 (lib/store.c migrate_v8): every unsettled
 * row is in the index or above the swept mark, through a sweep, a retry
 * of a message swept past while it was settled, a restart and an erase. */
static void test_sweep_keeps_every_unsettled_message_found(void **state)
{
    fx_t *f = *state;
    core_row_t r = make_row("u1", BOB, COURIER_QUEUED, T0, 0);
    assert_int_equal(store_begin(f->s), COURIER_OK);
    assert_int_equal(store_out_insert(f->s, &r, "body", NULL), COURIER_OK);
    r = make_row("p1", BOB, COURIER_FAILED, T0, T0);
    r.permanent = 1;
    assert_int_equal(store_out_insert(f->s, &r, "body", NULL), COURIER_OK);
    put_delivered(f, STORE_SWEEP_EVERY - 2);
    /* this commit sweeps: u1 enters the index, the settled rows do not */
    assert_int_equal(store_commit(f->s), COURIER_OK);
    assert_int_equal(raw_int(f->path, "SELECT upto FROM outbox_swept"),
                     STORE_SWEEP_EVERY);
    assert_int_equal(index_entries(f, "outbox_unsettled"), 1);
    put(f, "u2", BOB, COURIER_QUEUED, T0, 0); /* above the mark */
    unsettled_of(f, "u1 u2");
    /* the app retries p1, swept past while FAILED for good */
    core_act_t a = make_act("p1", COURIER_QUEUED, BIT(COURIER_FAILED), "");
    assert_int_equal(set_state(f, &a), 1);
    assert_int_equal(index_entries(f, "outbox_unsettled"), 2);
    reopen(f);
    unsettled_of(f, "u1 p1 u2");
    pending_of(f, "u1 p1 u2");
    /* settled rows leave the index as before */
    a = make_act("u1", COURIER_DELIVERED, ALL_STATES, "");
    assert_int_equal(set_state(f, &a), 1);
    assert_int_equal(index_entries(f, "outbox_unsettled"), 1);
    unsettled_of(f, "p1 u2");
    /* an erase starts the seqs again, and the mark with them */
    assert_int_equal(store_erase(f->s), COURIER_OK);
    put(f, "n1", BOB, COURIER_QUEUED, T0, 0);
    reopen(f);
    unsettled_of(f, "n1");
    pending_of(f, "n1");
}

/* Review of schema v8: sends written outside a transaction (the engine's
 * fallback when BEGIN fails, or a direct caller) are swept too, so the
 * rows a restart and courier_pending read above the mark stay bounded. */
static void test_sweep_bounded_without_transactions(void **state)
{
    fx_t *f = *state;
    put_delivered(f, 1000);
    put(f, "q1", BOB, COURIER_QUEUED, T0, 0);
    /* swept by the inserts themselves, before any reopen */
    assert_true(raw_int(f->path, "SELECT count(*) FROM outbox WHERE seq >"
                                 " (SELECT upto FROM outbox_swept)") <
                STORE_SWEEP_EVERY);
    reopen(f);
    unsettled_of(f, "q1");
}

/* Review of schema v8: a store whose mark row is gone (damage, or an
 * edit by hand) still finds every unsettled message, and the next sweep
 * writes the row again. */
static void test_sweep_mark_row_missing_finds_everything(void **state)
{
    fx_t *f = *state;
    put(f, "q1", BOB, COURIER_QUEUED, T0, 0);
    core_row_t r = make_row("f1", BOB, COURIER_FAILED, T0, T0);
    r.permanent = 1;
    assert_int_equal(store_out_insert(f->s, &r, "body", NULL), COURIER_OK);
    store_close(f->s);
    f->s = NULL;
    raw_exec(f->path, "DELETE FROM outbox_swept");
    reopen(f);
    unsettled_of(f, "q1");
    pending_of(f, "q1 f1");
    core_act_t a = make_act("f1", COURIER_QUEUED, BIT(COURIER_FAILED), "");
    assert_int_equal(set_state(f, &a), 1);
    unsettled_of(f, "q1 f1");
    assert_int_equal(store_begin(f->s), COURIER_OK);
    put_delivered(f, STORE_SWEEP_EVERY);
    assert_int_equal(store_commit(f->s), COURIER_OK);
    assert_int_equal(raw_int(f->path, "SELECT upto FROM outbox_swept"),
                     STORE_SWEEP_EVERY + 2);
    reopen(f);
    unsettled_of(f, "q1 f1");
}

/* behaviour.md §5 / §10: the v7 -> v8 migration (a store written by
 * commit 25d7926, tests/fixtures/README.md) keeps every row, the same
 * unsettled messages (now found through the swept index), the push
 * registration and the disable owed (its row number too, in a table
 * whose numbers are never reused); a message sent after it is found
 * above the mark. */
static void test_migrate_v7_file_keeps_unsettled_and_push(void **st)
{
    fx_t *f = *st;
    char err[256];
    copy_fixture(f, "store_v7_push.db");
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 7);
    int64_t old_n = raw_int(f->path, "SELECT n FROM push_off");
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM outbox"
                                      " INDEXED BY outbox_unsettled"
                                      " WHERE state <= 2 OR"
                                      " (state = 5 AND permanent = 0)"), 4);
    assert_int_equal(store_open(&f->s, f->path, NULL, err, sizeof(err)),
                     COURIER_OK);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
                     STORE_SCHEMA_VERSION);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM outbox"), 9);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM inbox"), 6);
    assert_int_equal(raw_int(f->path, "SELECT upto FROM outbox_swept"),
                     raw_int(f->path, "SELECT max(seq) FROM outbox"));
    assert_int_equal(index_entries(f, "outbox_unsettled"), 4);
    unsettled_of(f, "o5-deleted o6-failed o7-queued o9-sent");
    pending_of(f, "o5-deleted o6-failed o7-queued o8-gave-up o9-sent");
    history_of(f, NULL, 0, 4, "o9-sent o8-gave-up o7-queued <i5-unhanded");
    core_row_t row;
    assert_int_equal(store_out_get(f->s, "o4-cancelled", &row, NULL, NULL),
                     COURIER_OK);
    assert_int_equal(row.cancelled, 1);
    unhanded_of(f, "i3-retracted i5-unhanded");
    rec_t rec = { .n = 0 };
    assert_int_equal(store_rcpt_each(f->s, rec_rcpt, &rec), COURIER_OK);
    assert_int_equal(rec.n, 2);
    store_push_t p;
    assert_int_equal(store_push_get(f->s, &p), COURIER_OK);
    assert_string_equal(p.node, "device-node");
    assert_int_equal(p.has_secret, 1);
    assert_string_equal(p.secret, "s3cret");
    rec.n = 0;
    assert_int_equal(store_push_each_owed(f->s, rec_push, &rec), COURIER_OK);
    assert_int_equal(rec.n, 1);
    assert_string_equal(rec.ids[0], "old-node");
    /* the owed row keeps its number; numbers are never reused now */
    assert_int_equal(owed_n_of(f, "old-node"), old_n);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master"
                                      " WHERE name = 'push_off' AND"
                                      " sql LIKE '%AUTOINCREMENT%'"), 1);
    /* sent after the migration; the app retries o8 */
    put(f, "n1", BOB, COURIER_QUEUED, T0, 0);
    core_act_t a = make_act("o8-gave-up", COURIER_QUEUED,
                            BIT(COURIER_FAILED), "");
    assert_int_equal(set_state(f, &a), 1);
    reopen(f);
    unsettled_of(f, "o5-deleted o6-failed o7-queued o8-gave-up o9-sent n1");
    char check[64];
    raw_text(f->path, "PRAGMA integrity_check", check, sizeof(check));
    assert_string_equal(check, "ok");
}

/* Issue 17: no statement of the store builds a temporary b-tree or an
 * ephemeral table (a constant IN list of three or more, UPDATE ...
 * RETURNING, a sort or DISTINCT without an index). Each is built and freed
 * per run, and glibc hands the freed memory back to the kernel and faults
 * it in again: per message, that was a third of the clients' CPU. */
static void plan_has(sqlite3 *db, const char *prefix, const char *sql,
                     int col, const char *what, char *found, size_t n)
{
    char q[2048];
    sqlite3_stmt *st = NULL;
    snprintf(q, sizeof(q), "%s %s", prefix, sql);
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", q, sqlite3_errmsg(db));
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, col);
        if (v && strstr(v, what) && !found[0])
            snprintf(found, n, "%s (%s)", sql, v);
    }
    sqlite3_finalize(st);
}

static void test_no_statement_builds_an_ephemeral_table(void **state)
{
    fx_t *f = *state;
    sqlite3 *db = raw_open(f->path);
    char found[1024] = "";
    size_t i = 0;
    for (const char *q; (q = store_stmt_sql(f->s, i)) != NULL; i++) {
        plan_has(db, "EXPLAIN", q, 1, "OpenEphemeral", found, sizeof(found));
        plan_has(db, "EXPLAIN QUERY PLAN", q, 3, "TEMP B-TREE", found,
                 sizeof(found));
    }
    sqlite3_close(db);
    if (found[0])
        fail_msg("builds an ephemeral table: %s", found);
    assert_true(i > 20); /* every prepared statement was seen */
}

/* behaviour.md §7 courier_open: a store written by a newer version is refused. */
static void test_newer_schema_ecorrupt(void **state)
{
    fx_t *f = *state;
    char err[256] = "";
    raw_exec(f->path, "CREATE TABLE future(x); PRAGMA user_version=99;");
    assert_int_equal(store_open(&f->s, f->path, NULL, err, sizeof(err)),
                     COURIER_ECORRUPT);
    assert_null(f->s);
    assert_non_null(strstr(err, "99"));
    assert_non_null(strstr(err, "newer"));
    assert_non_null(strstr(err, f->path));
    /* untouched */
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 99);
}

/* behaviour.md §7 courier_open: "not a store" is ECORRUPT, and nothing crashes. */
static void test_garbage_file_ecorrupt(void **state)
{
    fx_t *f = *state;
    char err[256] = "", junk[8192];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 7 + 13);
    int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    assert_int_equal(store_open(&f->s, f->path, NULL, err, sizeof(err)),
                     COURIER_ECORRUPT);
    assert_null(f->s);
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "not a database"));
}

/* A database of someone else's (unversioned tables) is not ours. */
static void test_foreign_database_ecorrupt(void **state)
{
    fx_t *f = *state;
    char err[256] = "";
    raw_exec(f->path, "CREATE TABLE contacts(name TEXT);");
    assert_int_equal(store_open(&f->s, f->path, NULL, err, sizeof(err)),
                     COURIER_ECORRUPT);
    assert_null(f->s);
    assert_non_null(strstr(err, "not a libcourier store"));
}

static void fill_and_damage(fx_t *f, int crash)
{
    char junk[8192];
    for (int i = 0; i < 200; i++) {
        char id[16];
        snprintf(id, sizeof(id), "m%03d", i);
        put(f, id, BOB, COURIER_QUEUED, T0 + i, 0);
    }
    store_close(f->s); /* checkpoints the WAL into the file */
    f->s = NULL;
    if (crash) { /* a process that dies with the store open */
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            store_t *s = NULL;
            core_row_t row;
            memset(&row, 0, sizeof(row));
            strcpy(row.id, "last");
            strcpy(row.peer, BOB);
            row.state = COURIER_QUEUED;
            if (store_open(&s, f->path, NULL, NULL, 0) != COURIER_OK ||
                store_out_insert(s, &row, "b", NULL) != COURIER_OK)
                _exit(1);
            _exit(0); /* no store_close: the -wal stays */
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    memset(junk, 0x5A, sizeof(junk));
    int fd = open(f->path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, junk, sizeof(junk), 4096),
                     (ssize_t)sizeof(junk));
    close(fd);
}

/* After a crash open recovers the WAL and owes the check of every page,
 * which it no longer runs itself (behaviour.md §10: lib/check.c runs it
 * off the caller's thread; tests/unit/test_check.c shows it finds this
 * damage). A clean close owes nothing. */
static void test_damaged_pages_after_crash_owe_a_check(void **state)
{
    fx_t *f = *state;
    char err[256] = "";
    fill_and_damage(f, 1);
    assert_int_equal(store_open(&f->s, f->path, NULL, err, sizeof(err)),
                     COURIER_OK);
    assert_int_equal(store_check_owed(f->s), 1);
    /* a close before the check's verdict keeps it owed ... */
    store_keep_check_owed(f->s);
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(store_open(&f->s, f->path, NULL, err, sizeof(err)),
                     COURIER_OK);
    assert_int_equal(store_check_owed(f->s), 1);
    /* ... and a plain clean close does not */
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(store_open(&f->s, f->path, NULL, err, sizeof(err)),
                     COURIER_OK);
    assert_int_equal(store_check_owed(f->s), 0);
}

static int count_row(void *ud, const core_row_t *row)
{
    (void)row;
    ++*(int *)ud;
    return COURIER_OK;
}

/* After a clean close open does not read every page (it would cost
 * O(history)); the damage is ECORRUPT as soon as a damaged page is read,
 * which the start-up load of unsettled messages does. */
static void test_damaged_pages_ecorrupt_when_read(void **state)
{
    fx_t *f = *state;
    char err[256] = "";
    int n = 0;
    char wal[512];
    fill_and_damage(f, 0);
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_int_not_equal(access(wal, F_OK), 0); /* the close was clean */
    int rc = store_open(&f->s, f->path, NULL, err, sizeof(err));
    if (rc == COURIER_OK)
        rc = store_out_each_unsettled(f->s, count_row, &n);
    assert_int_equal(rc, COURIER_ECORRUPT);
}

/* behaviour.md §7 courier_open: cannot open or write the file -> ESTORE. */
static void test_unwritable_path_estore(void **state)
{
    fx_t *f = *state;
    char err[256] = "", path[192];
    snprintf(path, sizeof(path), "%s/no/such/dir/store.db", f->dir);
    assert_int_equal(store_open(&f->s, path, NULL, err, sizeof(err)),
                     COURIER_ESTORE);
    assert_null(f->s);
    assert_non_null(strstr(err, path));

    /* the path is a directory */
    assert_int_equal(store_open(&f->s, f->dir, NULL, err, sizeof(err)),
                     COURIER_ESTORE);
    assert_null(f->s);
    assert_non_null(strstr(err, f->dir));

    assert_int_equal(store_open(&f->s, "", NULL, err, sizeof(err)),
                     COURIER_EINVAL);
    assert_null(f->s);
}

/* behaviour.md §5 / STYLE fault tests: the disk fills up mid-stream. Every insert
 * that returned OK survives, the failing one is absent, and the file
 * passes integrity_check. The limit is set in a child, which opens its own
 * connection (SQLite connections must not cross a fork). */
typedef struct {
    int ok;        /* inserts that returned COURIER_OK */
    int rc;        /* the first failure */
    char msg[256]; /* store_errmsg() then */
} fill_result_t;

static int count_in(void *ud, const store_in_t *m, const char *body)
{
    (void)m;
    assert_int_equal(strlen(body), 2047);
    ++*(int *)ud;
    return 0;
}

static off_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? sb.st_size : 0;
}

static void fill_child(const char *path, int fd)
{
    fill_result_t res;
    char err[256], wal[160], shm[160], body[2048];
    store_t *s = NULL;
    memset(&res, 0, sizeof(res));
    res.rc = store_open(&s, path, NULL, err, sizeof(err));
    if (res.rc != COURIER_OK) {
        snprintf(res.msg, sizeof(res.msg), "%s", err);
        goto out;
    }
    snprintf(wal, sizeof(wal), "%s-wal", path);
    snprintf(shm, sizeof(shm), "%s-shm", path);
    off_t lim = file_size(path);
    if (file_size(wal) > lim)
        lim = file_size(wal);
    if (file_size(shm) > lim)
        lim = file_size(shm);
    struct rlimit rl = { .rlim_cur = (rlim_t)lim + 256 * 1024,
                         .rlim_max = (rlim_t)lim + 256 * 1024 };
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) {
        res.rc = 1;
        goto out;
    }
    memset(body, 'z', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    /* odd ones go to the inbox: a multi-statement operation */
    for (res.ok = 0; res.ok < 100000; res.ok++) {
        char id[16];
        int dup;
        snprintf(id, sizeof(id), "m%05d", res.ok);
        core_row_t r = make_row(id, BOB, COURIER_QUEUED, T0 + res.ok, 0);
        store_in_t m = make_in(BOB, id, 0, T0 + res.ok);
        res.rc = res.ok % 2 ? store_in_insert(s, &m, body, &dup, NULL)
                            : store_out_insert(s, &r, body, NULL);
        if (res.rc != COURIER_OK) {
            snprintf(res.msg, sizeof(res.msg), "%s", store_errmsg(s));
            break;
        }
    }
out:
    store_close(s);
    if (write(fd, &res, sizeof(res)) != (ssize_t)sizeof(res))
        _exit(3);
    _exit(0);
}

/* behaviour.md §9: the v5 -> v6 migration rewrites both tables in one
 * transaction, so it needs free disk of about the store's size. Without
 * it (a file size limit in a child process stands in for a full disk)
 * open fails with COURIER_ESTORE and the old store is left whole, still
 * version 5; with room, the next open migrates it. */
static void test_migration_without_room_leaves_old_store(void **state)
{
    fx_t *f = *state;
    int fds[2], status = 0;
    copy_fixture(f, "store_v5_history.db");
    raw_exec(f->path,
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
             " WHERE i < 3000)"
             " INSERT INTO inbox(peer, id, kind, body, ts_ms, received_ms,"
             " handed) SELECT 'dave@example.com', 'pad' || i, 0,"
             " zeroblob(1000) || 'x', i, i, 1 FROM n;"
             "PRAGMA wal_checkpoint(TRUNCATE);");
    assert_true(file_size(f->path) > 3000 * 1000);
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        fill_result_t res;
        char err[256] = "";
        store_t *s = NULL;
        memset(&res, 0, sizeof(res));
        rlim_t lim = (rlim_t)file_size(f->path) + 64 * 1024;
        struct rlimit rl = { .rlim_cur = lim, .rlim_max = lim };
        signal(SIGXFSZ, SIG_IGN);
        res.rc = setrlimit(RLIMIT_FSIZE, &rl) != 0
                     ? 1
                     : store_open(&s, f->path, NULL, err, sizeof(err));
        snprintf(res.msg, sizeof(res.msg), "%s", err);
        store_close(s);
        if (write(fds[1], &res, sizeof(res)) != (ssize_t)sizeof(res))
            _exit(3);
        _exit(0);
    }
    close(fds[1]);
    fill_result_t res;
    ssize_t got = read(fds[0], &res, sizeof(res));
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(got, (ssize_t)sizeof(res));
    if (res.rc != COURIER_ESTORE)
        fail_msg("open without room: rc %d: %s", res.rc, res.msg);
    assert_true(res.msg[0] != '\0');
    char check[64];
    raw_text(f->path, "PRAGMA integrity_check", check, sizeof(check));
    assert_string_equal(check, "ok");
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 5);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM inbox"), 3004);
    char err[256];
    assert_int_equal(store_open(&f->s, f->path, NULL, err, sizeof(err)),
                     COURIER_OK);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
                     STORE_SCHEMA_VERSION);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM inbox"), 3004);
    history_of(f, BOB, 0, 2, "o7-queued <i4-unhanded");
}

static void test_disk_full_leaves_store_intact(void **state)
{
    fx_t *f = *state;
    fill_result_t res;
    int fds[2], status = 0;
    char check[64];

    put(f, "before", BOB, COURIER_QUEUED, T0, 0);
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        fill_child(f->path, fds[1]);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], &res, sizeof(res));
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(got, (ssize_t)sizeof(res));

    if (res.rc != COURIER_ESTORE)
        fail_msg("rc %d after %d inserts: %s", res.rc, res.ok, res.msg);
    assert_true(res.ok > 0);
    assert_true(res.msg[0] != '\0');

    raw_text(f->path, "PRAGMA integrity_check", check, sizeof(check));
    assert_string_equal(check, "ok");

    reopen(f);
    int64_t n = 0;
    assert_int_equal(store_out_count(f->s, &n), COURIER_OK);
    assert_int_equal(n, (res.ok + 1) / 2 + 1);
    get(f, "before");
    for (int i = 0; i <= res.ok; i++) {
        char id[16], *body = NULL;
        core_row_t r;
        store_in_t m;
        int want = i < res.ok ? COURIER_OK : COURIER_ENOTFOUND;
        snprintf(id, sizeof(id), "m%05d", i);
        if (i % 2) {
            assert_int_equal(store_in_get(f->s, BOB, id, &m), want);
            continue;
        }
        assert_int_equal(store_out_get(f->s, id, &r, &body, NULL), want);
        if (body)
            assert_int_equal(strlen(body), 2047);
        util_free(body);
    }
    int unhanded = 0;
    assert_int_equal(store_in_each_unhanded(f->s, count_in, &unhanded),
                     COURIER_OK);
    assert_int_equal(unhanded, res.ok / 2);
    /* and the store takes writes again */
    put(f, "after", BOB, COURIER_QUEUED, T0, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_mode_0600_wal, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_synchronous_full, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_out_insert_get_roundtrip, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_out_insert_duplicate_id_estate,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_set_state_conditional_never_backwards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_state_failed_and_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mark_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_promote_displayed_by_last_sent,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_promote_displayed_by_created,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_promote_displayed_notifies_after_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_unsettled_oldest_first,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_everything, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_in_duplicate_detection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_in_handed_and_each_unhanded,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_set_displayed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_receipts_add_each_done, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_receipts_unique_per_peer_id_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_v1_to_v2, setup_dir,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_migrate_v3_file_collapses_duplicate_receipts, setup_dir,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_migrate_v4_file_unsettled_index_without_in_list, setup_dir,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_no_statement_builds_an_ephemeral_table, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_send_writes_no_unsettled_index_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_sweep_keeps_every_unsettled_message_found, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_sweep_bounded_without_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_sweep_mark_row_missing_finds_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_seq_one_order_with_the_outgoing_seq_in_memory, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_migrate_v7_file_keeps_unsettled_and_push, setup_dir,
            teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_ecorrupt, setup_dir,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_garbage_file_ecorrupt, setup_dir,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_history_pages_both_directions,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_history_page_cost_independent_of_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_and_conversations,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_incoming_retraction, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_migrate_v5_file_interleaves_history, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(
            test_migrate_v5_same_ms_incoming_keep_sender_order, setup_dir,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_migrate_v6_file_adds_push_keeps_history, setup_dir,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_push_registration_kept_and_replaced_owes_disable, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_foreign_database_ecorrupt,
                                        setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_pages_ecorrupt_when_read,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_damaged_pages_after_crash_owe_a_check, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_path_estore,
                                        setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full_leaves_store_intact,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_migration_without_room_leaves_old_store, setup_dir,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
