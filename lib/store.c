/* SPDX-License-Identifier: MIT */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "util.h"

/* ---- schema ------------------------------------------------------ */

/* Version 1, kept verbatim: a new file gets it first, then every
 * migration, so fresh and upgraded stores take the same path. */
static const char schema_v1[] =
    "CREATE TABLE outbox("
    " seq INTEGER PRIMARY KEY,"
    " id TEXT NOT NULL UNIQUE,"
    " peer TEXT NOT NULL,"
    " kind INTEGER NOT NULL,"
    " body TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " last_sent_ms INTEGER NOT NULL DEFAULT 0,"
    " last_change_ms INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " state INTEGER NOT NULL,"
    " permanent INTEGER NOT NULL DEFAULT 0,"
    " reason TEXT NOT NULL DEFAULT '');"
    /* Only unsettled rows, so a restart never walks the history. */
    "CREATE INDEX outbox_unsettled ON outbox(seq)"
    " WHERE state IN (0,1,2) OR (state=5 AND permanent=0);"
    "CREATE INDEX outbox_peer_state ON outbox(peer, state, last_sent_ms);"
    "CREATE TABLE inbox("
    " peer TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " kind INTEGER NOT NULL,"
    " body TEXT NOT NULL,"
    " ts_ms INTEGER NOT NULL,"
    " received_ms INTEGER NOT NULL,"
    " asked INTEGER NOT NULL DEFAULT 0,"
    " displayed INTEGER NOT NULL DEFAULT 0,"
    " handed INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY(peer, id)) WITHOUT ROWID;"
    "CREATE INDEX inbox_unhanded ON inbox(received_ms) WHERE handed=0;"
    "PRAGMA user_version=1;";

static const char migrate_v2[] =
    "ALTER TABLE outbox ADD COLUMN bounces INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE receipts("
    " rid INTEGER PRIMARY KEY,"
    " peer TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " state INTEGER NOT NULL,"
    " asked INTEGER NOT NULL);"
    "PRAGMA user_version=2;";

/* v3: the last message from a peer (XEP-0022 composing names it) without
 * reading that peer's history; AUTOINCREMENT so a late duplicate ack can
 * never delete a newer receipt that reused a rowid. */
static const char migrate_v3[] =
    "CREATE INDEX inbox_peer_recent ON inbox(peer, received_ms);"
    "CREATE TABLE receipts_v3("
    " rid INTEGER PRIMARY KEY AUTOINCREMENT,"
    " peer TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " state INTEGER NOT NULL,"
    " asked INTEGER NOT NULL);"
    "INSERT INTO receipts_v3 SELECT rid, peer, id, state, asked FROM receipts;"
    "DROP TABLE receipts;"
    "ALTER TABLE receipts_v3 RENAME TO receipts;"
    "PRAGMA user_version=3;";

/* v4 (behaviour.md §11): one owed receipt per (peer, id, state). Duplicates
 * collapse into the oldest row, which keeps every form any of them asked
 * for (asked is a mask of CORE_ASK_* bits 0..4). */
static const char migrate_v4[] =
    "CREATE TABLE receipts_v4("
    " rid INTEGER PRIMARY KEY AUTOINCREMENT,"
    " peer TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " state INTEGER NOT NULL,"
    " asked INTEGER NOT NULL,"
    " UNIQUE(peer, id, state));"
    "INSERT INTO receipts_v4 SELECT min(rid), peer, id, state,"
    " max(asked & 1) | max(asked & 2) | max(asked & 4) | max(asked & 8)"
    " | max(asked & 16) FROM receipts GROUP BY peer, id, state;"
    "DROP TABLE receipts;"
    "ALTER TABLE receipts_v4 RENAME TO receipts;"
    "PRAGMA user_version=4;";

/* v5 (issue 17): the unsettled index without a constant IN list. SQLite
 * evaluates `state IN (0,1,2)` through an ephemeral lookup table, built
 * and freed in every statement that maintains the index (each insert and
 * state update): `state <= 2` selects the same rows (states are 0..5). */
static const char migrate_v5[] =
    "DROP INDEX outbox_unsettled;"
    "CREATE INDEX outbox_unsettled ON outbox(seq)"
    " WHERE state <= 2 OR (state = 5 AND permanent = 0);"
    "PRAGMA user_version=5;";

/* migrations[v] takes a store from version v to v + 1. */
static const char *const migrations[] = { schema_v1, migrate_v2,
                                          migrate_v3, migrate_v4,
                                          migrate_v5 };

_Static_assert(UTIL_ARRAY_LEN(migrations) == STORE_SCHEMA_VERSION,
               "one migration per schema version");

/* ---- statements -------------------------------------------------- */

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_OUT_INSERT,
    ST_OUT_GET,
    ST_OUT_SET_STATE,
    ST_OUT_MARK_SENT,
    ST_OUT_PROMOTE_SENT,
    ST_OUT_PROMOTE_CREATED,
    ST_OUT_PROMOTE_ONE,
    ST_OUT_UNSETTLED,
    ST_OUT_COUNT,
    ST_IN_INSERT,
    ST_IN_ASK,
    ST_IN_GET,
    ST_IN_HANDED,
    ST_IN_DISPLAYED,
    ST_IN_UNHANDED,
    ST_IN_LAST,
    ST_RCPT_FIND,
    ST_RCPT_ADD,
    ST_RCPT_DONE,
    ST_RCPT_AFTER,
    ST_COUNT
};

#define OUT_COLS                                                          \
    "id, peer, kind, state, attempts, bounces, created_ms, last_sent_ms," \
    " last_change_ms, permanent, reason"
#define IN_COLS "peer, id, kind, ts_ms, asked, displayed, handed"

static const char *const sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT store_op",
    [ST_RELEASE] = "RELEASE store_op",
    [ST_ROLLBACK_TO] = "ROLLBACK TO store_op",
    [ST_OUT_INSERT] =
        "INSERT INTO outbox(id, peer, kind, state, attempts, bounces,"
        " created_ms, last_sent_ms, last_change_ms, permanent, reason, body)"
        " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    /* body last: it is read only when asked for */
    [ST_OUT_GET] = "SELECT " OUT_COLS ", body FROM outbox WHERE id = ?",
    [ST_OUT_SET_STATE] =
        "UPDATE outbox SET state = ?, attempts = ?, bounces = ?,"
        " last_sent_ms = ?, last_change_ms = ?, permanent = ?, reason = ?"
        " WHERE id = ? AND ((1 << state) & ?) != 0",
    [ST_OUT_MARK_SENT] =
        "UPDATE outbox SET attempts = ?, last_sent_ms = ? WHERE id = ?",
    /* The candidates are read first (one index seek, usually no row: then
     * nothing is written), then each moves by its own conditional update.
     * Not UPDATE ... RETURNING: that buffers its rows in an ephemeral
     * table, built and freed on every run. */
    [ST_OUT_PROMOTE_SENT] =
        "SELECT id FROM outbox INDEXED BY outbox_peer_state"
        " WHERE peer = ? AND state = 3 AND last_sent_ms <= ?",
    [ST_OUT_PROMOTE_CREATED] =
        "SELECT id FROM outbox INDEXED BY outbox_peer_state"
        " WHERE peer = ? AND state = 3 AND created_ms <= ?",
    [ST_OUT_PROMOTE_ONE] =
        "UPDATE outbox SET state = 4, last_change_ms = ?, reason = ?"
        " WHERE id = ? AND state = 3",
    /* INDEXED BY makes the prepare fail rather than fall back to a scan;
     * the WHERE is the index's own (schema v5). */
    [ST_OUT_UNSETTLED] =
        "SELECT " OUT_COLS " FROM outbox INDEXED BY outbox_unsettled"
        " WHERE state <= 2 OR (state = 5 AND permanent = 0)"
        " ORDER BY seq",
    [ST_OUT_COUNT] = "SELECT count(*) FROM outbox",
    [ST_IN_INSERT] =
        "INSERT OR IGNORE INTO inbox(peer, id, kind, ts_ms, received_ms,"
        " asked, body) VALUES(?, ?, ?, ?, ?, ?, ?)",
    [ST_IN_ASK] =
        "UPDATE inbox SET asked = asked | ? WHERE peer = ? AND id = ?",
    [ST_IN_GET] = "SELECT " IN_COLS " FROM inbox WHERE peer = ? AND id = ?",
    [ST_IN_LAST] = "SELECT id, asked FROM inbox INDEXED BY inbox_peer_recent"
                   " WHERE peer = ? ORDER BY received_ms DESC LIMIT 1",
    [ST_IN_HANDED] =
        "UPDATE inbox SET handed = 1 WHERE peer = ? AND id = ?",
    [ST_IN_DISPLAYED] =
        "UPDATE inbox SET displayed = 1 WHERE peer = ? AND id = ?",
    [ST_IN_UNHANDED] =
        "SELECT " IN_COLS ", body FROM inbox INDEXED BY inbox_unhanded"
        " WHERE handed = 0 ORDER BY received_ms",
    [ST_RCPT_FIND] = "SELECT rid, asked FROM receipts"
                     " WHERE peer = ? AND id = ? AND state = ?",
    [ST_RCPT_ADD] =
        "INSERT INTO receipts(peer, id, state, asked) VALUES(?, ?, ?, ?)"
        " ON CONFLICT(peer, id, state) DO NOTHING",
    [ST_RCPT_DONE] = "DELETE FROM receipts WHERE rid = ?",
    [ST_RCPT_AFTER] = "SELECT rid, peer, id, state, asked FROM receipts"
                      " WHERE rid > ? ORDER BY rid LIMIT ?",
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    int in_txn; /* inside store_begin() */
    int committing; /* store_commit() runs its COMMIT */
    char errmsg[256];
};

/* ---- errors ------------------------------------------------------ */

static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return COURIER_ECORRUPT;
    default:
        return COURIER_ESTORE;
    }
}

/* Record the failure of `what` and return its COURIER_* code. Copied at
 * once: sqlite3_errmsg() is only good until the next call on `db`. */
static int fail(store_t *s, int rc, const char *what)
{
    const char *msg = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    const char *str = sqlite3_errstr(rc);
    if (strcmp(msg, str) == 0)
        snprintf(s->errmsg, sizeof(s->errmsg), "%s: %s", what, msg);
    else
        snprintf(s->errmsg, sizeof(s->errmsg), "%s: %s (%s)", what, msg,
                 str);
    return map_rc(rc);
}

static int fail_with(store_t *s, int code, const char *what)
{
    snprintf(s->errmsg, sizeof(s->errmsg), "%s", what);
    return code;
}

/* ---- statement helpers ------------------------------------------- */

static void finish(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Positional binding that keeps the first error. Values are bound
 * SQLITE_STATIC: every statement is reset before its inputs go away. */
typedef struct {
    sqlite3_stmt *st;
    int i;
    int rc;
} binder_t;

static binder_t bind_start(sqlite3_stmt *st)
{
    binder_t b = { st, 0, SQLITE_OK };
    return b;
}

static void bind_text(binder_t *b, const char *v)
{
    b->i++;
    if (b->rc == SQLITE_OK)
        b->rc = sqlite3_bind_text(b->st, b->i, v, -1, SQLITE_STATIC);
}

static void bind_int(binder_t *b, int64_t v)
{
    b->i++;
    if (b->rc == SQLITE_OK)
        b->rc = sqlite3_bind_int64(b->st, b->i, v);
}

/* Step a statement that returns no row; it is reset on every path. */
static int run(store_t *s, sqlite3_stmt *st, const binder_t *b,
               const char *what)
{
    int rc = b ? b->rc : SQLITE_OK;
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        rc = COURIER_OK;
    else
        rc = fail(s, rc, what);
    finish(st);
    return rc;
}

/* Copy a text column into a fixed buffer; too long means the file was not
 * written by us, and is refused rather than truncated. */
static int col_copy(store_t *s, sqlite3_stmt *st, int col, char *dst,
                    size_t size)
{
    const char *v = (const char *)sqlite3_column_text(st, col);
    if (util_strlcpy(dst, v ? v : "", size) != 0)
        return fail_with(s, COURIER_ECORRUPT, "stored value too long");
    return COURIER_OK;
}

/* Columns in OUT_COLS order. */
static int read_out_row(store_t *s, sqlite3_stmt *st, core_row_t *row)
{
    memset(row, 0, sizeof(*row));
    row->kind = (courier_kind_t)sqlite3_column_int(st, 2);
    row->state = (courier_state_t)sqlite3_column_int(st, 3);
    row->attempts = (unsigned)sqlite3_column_int64(st, 4);
    row->bounces = (unsigned)sqlite3_column_int64(st, 5);
    row->created_ms = sqlite3_column_int64(st, 6);
    row->last_sent_ms = sqlite3_column_int64(st, 7);
    row->last_change_ms = sqlite3_column_int64(st, 8);
    row->permanent = sqlite3_column_int(st, 9);
    if (col_copy(s, st, 0, row->id, sizeof(row->id)) != COURIER_OK ||
        col_copy(s, st, 1, row->peer, sizeof(row->peer)) != COURIER_OK ||
        col_copy(s, st, 10, row->reason, sizeof(row->reason)) != COURIER_OK)
        return COURIER_ECORRUPT;
    return COURIER_OK;
}

/* Columns in IN_COLS order. */
static int read_in_row(store_t *s, sqlite3_stmt *st, store_in_t *m)
{
    memset(m, 0, sizeof(*m));
    m->kind = (courier_kind_t)sqlite3_column_int(st, 2);
    m->timestamp_ms = sqlite3_column_int64(st, 3);
    m->asked = (unsigned)sqlite3_column_int64(st, 4);
    m->displayed = sqlite3_column_int(st, 5);
    m->handed = sqlite3_column_int(st, 6);
    if (col_copy(s, st, 0, m->peer, sizeof(m->peer)) != COURIER_OK ||
        col_copy(s, st, 1, m->id, sizeof(m->id)) != COURIER_OK)
        return COURIER_ECORRUPT;
    return COURIER_OK;
}

/* ---- transactions ------------------------------------------------- */

/* A multi-statement operation runs under a savepoint: its own
 * transaction when standalone, a nested one inside store_begin(). */
static int op_begin(store_t *s)
{
    return run(s, s->st[ST_SAVEPOINT], NULL, "savepoint");
}

/* Undo without overwriting the detail of the failure that led here. An
 * I/O or disk-full error may already have rolled everything back. */
static void op_undo(store_t *s)
{
    if (sqlite3_get_autocommit(s->db))
        return;
    sqlite3_step(s->st[ST_ROLLBACK_TO]);
    finish(s->st[ST_ROLLBACK_TO]);
    sqlite3_step(s->st[ST_RELEASE]);
    finish(s->st[ST_RELEASE]);
    if (!s->in_txn && !sqlite3_get_autocommit(s->db)) {
        sqlite3_step(s->st[ST_ROLLBACK]);
        finish(s->st[ST_ROLLBACK]);
    }
}

static int op_end(store_t *s, int rc)
{
    if (rc == COURIER_OK)
        rc = run(s, s->st[ST_RELEASE], NULL, "commit");
    if (rc != COURIER_OK)
        op_undo(s);
    return rc;
}

int store_begin(store_t *s)
{
    if (s->in_txn)
        return fail_with(s, COURIER_ESTATE, "transaction already open");
    int rc = run(s, s->st[ST_BEGIN], NULL, "begin");
    if (rc == COURIER_OK)
        s->in_txn = 1;
    return rc;
}

void store_rollback(store_t *s)
{
    if (!s)
        return;
    if (!sqlite3_get_autocommit(s->db)) {
        sqlite3_step(s->st[ST_ROLLBACK]);
        finish(s->st[ST_ROLLBACK]);
    }
    s->in_txn = 0;
}

int store_commit(store_t *s)
{
    int rc;
    if (!s->in_txn)
        return fail_with(s, COURIER_ESTATE, "no transaction open");
    if (sqlite3_get_autocommit(s->db)) {
        /* SQLite already rolled it back after an I/O or disk-full error */
        s->in_txn = 0;
        return fail_with(s, COURIER_ESTORE,
                         "transaction rolled back after an earlier error");
    }
    s->committing = 1;
    rc = run(s, s->st[ST_COMMIT], NULL, "commit");
    s->committing = 0;
    if (rc != COURIER_OK)
        store_rollback(s);
    s->in_txn = 0;
    return rc;
}

/* ---- open / close ------------------------------------------------- */

/* One-off statements of open (constant text): first column of the first
 * row as an integer or text. */
static int query_one(store_t *s, const char *q, int64_t *num, char *txt,
                     size_t txt_size)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, q, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (num)
            *num = sqlite3_column_int64(st, 0);
        if (txt) {
            const char *v = (const char *)sqlite3_column_text(st, 0);
            snprintf(txt, txt_size, "%s", v ? v : "");
        }
        rc = COURIER_OK;
    } else {
        rc = fail(s, rc == SQLITE_DONE ? SQLITE_ERROR : rc, q);
    }
    sqlite3_finalize(st);
    return rc;
}

static int exec(store_t *s, const char *script, const char *what)
{
    int rc = sqlite3_exec(s->db, script, NULL, NULL, NULL);
    return rc == SQLITE_OK ? COURIER_OK : fail(s, rc, what);
}

static int check_version(store_t *s, int64_t v)
{
    if (v < 0)
        return fail_with(s, COURIER_ECORRUPT, "invalid store schema version");
    if (v > STORE_SCHEMA_VERSION) {
        snprintf(s->errmsg, sizeof(s->errmsg),
                 "store schema version %lld is newer than this library (%d)",
                 (long long)v, STORE_SCHEMA_VERSION);
        return COURIER_ECORRUPT;
    }
    return COURIER_OK;
}

/* Each step runs in one transaction with its user_version bump; the
 * version is read again under the write lock, so two processes opening
 * the same old file migrate it once. */
static int migrate(store_t *s)
{
    for (;;) {
        int64_t v = 0, tables = 0;
        int rc = exec(s, "BEGIN IMMEDIATE", "begin migration");
        if (rc != COURIER_OK)
            return rc;
        rc = query_one(s, "PRAGMA user_version", &v, NULL, 0);
        if (rc == COURIER_OK)
            rc = check_version(s, v);
        if (rc == COURIER_OK && v == 0)
            rc = query_one(s, "SELECT count(*) FROM sqlite_master", &tables,
                           NULL, 0);
        if (rc == COURIER_OK && tables > 0)
            rc = fail_with(s, COURIER_ECORRUPT,
                           "not a libcourier store (unversioned tables)");
        if (rc == COURIER_OK && v < STORE_SCHEMA_VERSION)
            rc = exec(s, migrations[v], "migration");
        if (rc == COURIER_OK)
            rc = exec(s, "COMMIT", "commit migration");
        if (rc != COURIER_OK) {
            if (!sqlite3_get_autocommit(s->db))
                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        if (v >= STORE_SCHEMA_VERSION)
            return COURIER_OK;
    }
}

/* Create the file ourselves so its mode is exactly 0600 whatever the
 * umask; SQLite gives the -wal and -shm files the mode of the database. */
static int create_file(store_t *s, const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (fchmod(fd, 0600) != 0) {
            snprintf(s->errmsg, sizeof(s->errmsg), "chmod: %s",
                     strerror(errno));
            close(fd);
            return COURIER_ESTORE;
        }
    } else if (errno == EEXIST) {
        fd = open(path, O_RDWR | O_CLOEXEC);
    }
    if (fd < 0) {
        snprintf(s->errmsg, sizeof(s->errmsg), "cannot open: %s",
                 strerror(errno));
        return COURIER_ESTORE;
    }
    close(fd);
    return COURIER_OK;
}

/* A clean close of the last connection checkpoints the WAL and deletes
 * it: a -wal file left at open means a crash (or another open handle). */
static int closed_uncleanly(const char *path)
{
    char wal[4096];
    struct stat sb;
    int n = snprintf(wal, sizeof(wal), "%s-wal", path);
    if (n < 0 || (size_t)n >= sizeof(wal))
        return 1; /* cannot tell: check */
    return stat(wal, &sb) == 0;
}

/* SQLite rolls a transaction back by itself on some I/O errors and
 * disk full; the writes that follow would then commit one by one, and
 * store_commit() could not take them back. Inside store_begin() only
 * store_commit() may commit: any other commit is turned into a rollback
 * (that write fails). */
static int commit_guard(void *ud)
{
    const store_t *s = ud;
    return s->in_txn && !s->committing;
}

static int setup(store_t *s, const char *path, const store_opts_t *opts)
{
    int64_t v = 0;
    char res[32];
    int rc = create_file(s, path);
    if (rc != COURIER_OK)
        return rc;
    /* quick_check reads every page (351 ms at 10^6 messages): only after
     * a crash. Otherwise damage surfaces as ECORRUPT when a damaged page
     * is read, and cell_size_check makes that check each page it reads. */
    int check = closed_uncleanly(path);
    rc = sqlite3_open_v2(path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                             SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, "open");
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_commit_hook(s->db, commit_guard, s);
    sqlite3_busy_timeout(s->db, 5000);

    /* The first read: a file that is not a database fails here. */
    rc = query_one(s, "PRAGMA user_version", &v, NULL, 0);
    if (rc == COURIER_OK)
        rc = check_version(s, v);
    if (rc == COURIER_OK && check)
        rc = query_one(s, "PRAGMA quick_check", NULL, res, sizeof(res));
    if (rc == COURIER_OK && check && strcmp(res, "ok") != 0)
        rc = fail_with(s, COURIER_ECORRUPT, "quick_check failed");
    if (rc == COURIER_OK)
        rc = exec(s, "PRAGMA cell_size_check=ON", "cell_size_check");
    if (rc == COURIER_OK)
        rc = query_one(s, "PRAGMA journal_mode=WAL", NULL, res, sizeof(res));
    if (rc == COURIER_OK && strcmp(res, "wal") != 0)
        rc = fail_with(s, COURIER_ESTORE, "cannot use WAL journal mode");
    if (rc == COURIER_OK)
        rc = exec(s, opts && opts->synchronous_full
                         ? "PRAGMA synchronous=FULL"
                         : "PRAGMA synchronous=NORMAL",
                  "synchronous");
    if (rc == COURIER_OK)
        rc = migrate(s);
    for (int i = 0; i < ST_COUNT && rc == COURIER_OK; i++) {
        int src = sqlite3_prepare_v3(s->db, sql[i], -1,
                                     SQLITE_PREPARE_PERSISTENT, &s->st[i],
                                     NULL);
        if (src != SQLITE_OK)
            rc = fail(s, src, "prepare");
    }
    return rc;
}

int store_open(store_t **out, const char *path, const store_opts_t *opts,
               char *err, size_t err_size)
{
    store_t *s = NULL;
    int rc;
    *out = NULL;
    if (err && err_size)
        err[0] = '\0';
    if (!path || !path[0]) {
        if (err && err_size)
            snprintf(err, err_size, "store: no path");
        return COURIER_EINVAL;
    }
    s = util_calloc(1, sizeof(*s));
    if (!s) {
        if (err && err_size)
            snprintf(err, err_size, "store %s: out of memory", path);
        return COURIER_ENOMEM;
    }
    rc = setup(s, path, opts);
    if (rc != COURIER_OK)
        goto out;
    *out = s;
out:
    if (rc != COURIER_OK) {
        if (err && err_size)
            snprintf(err, err_size, "store %s: %s", path, s->errmsg);
        store_close(s);
    }
    return rc;
}

void store_close(store_t *s)
{
    if (!s)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    /* An open store_begin() is rolled back by the close. */
    sqlite3_close(s->db);
    util_free(s);
}

const char *store_errmsg(const store_t *s)
{
    return s ? s->errmsg : "store not open";
}

/* ---- outgoing messages -------------------------------------------- */

int store_out_insert(store_t *s, const core_row_t *row, const char *body)
{
    sqlite3_stmt *st = s->st[ST_OUT_INSERT];
    binder_t b = bind_start(st);
    int rc;
    if (!body)
        return fail_with(s, COURIER_EINVAL, "insert: no body");
    bind_text(&b, row->id);
    bind_text(&b, row->peer);
    bind_int(&b, row->kind);
    bind_int(&b, row->state);
    bind_int(&b, row->attempts);
    bind_int(&b, row->bounces);
    bind_int(&b, row->created_ms);
    bind_int(&b, row->last_sent_ms);
    bind_int(&b, row->last_change_ms);
    bind_int(&b, row->permanent);
    bind_text(&b, row->reason);
    bind_text(&b, body);
    rc = b.rc == SQLITE_OK ? sqlite3_step(st) : b.rc;
    if (rc == SQLITE_DONE) {
        rc = COURIER_OK;
    } else if (rc == SQLITE_CONSTRAINT_UNIQUE ||
               rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        snprintf(s->errmsg, sizeof(s->errmsg),
                 "a message with id %s already exists", row->id);
        rc = COURIER_ESTATE;
    } else {
        rc = fail(s, rc, "insert message");
    }
    finish(st);
    return rc;
}

int store_out_get(store_t *s, const char *id, core_row_t *row,
                  char **body_out)
{
    sqlite3_stmt *st = s->st[ST_OUT_GET];
    binder_t b = bind_start(st);
    int rc;
    if (body_out)
        *body_out = NULL;
    bind_text(&b, id);
    rc = b.rc == SQLITE_OK ? sqlite3_step(st) : b.rc;
    if (rc == SQLITE_DONE) {
        rc = fail_with(s, COURIER_ENOTFOUND, "no such message");
        goto out;
    }
    if (rc != SQLITE_ROW) {
        rc = fail(s, rc, "read message");
        goto out;
    }
    rc = read_out_row(s, st, row);
    if (rc == COURIER_OK && body_out) {
        const unsigned char *v = sqlite3_column_text(st, 11);
        size_t n = (size_t)sqlite3_column_bytes(st, 11);
        char *body = util_malloc(n + 1);
        if (!body) {
            rc = fail_with(s, COURIER_ENOMEM, "read message: out of memory");
            goto out;
        }
        if (n)
            memcpy(body, v, n);
        body[n] = '\0';
        *body_out = body;
    }
out:
    finish(st);
    return rc;
}

int store_out_set_state(store_t *s, const core_act_t *act, int *changed)
{
    sqlite3_stmt *st = s->st[ST_OUT_SET_STATE];
    binder_t b = bind_start(st);
    int rc;
    *changed = 0;
    bind_int(&b, act->state);
    bind_int(&b, act->attempts);
    bind_int(&b, act->bounces);
    bind_int(&b, act->last_sent_ms);
    bind_int(&b, act->last_change_ms);
    bind_int(&b, act->permanent);
    bind_text(&b, act->reason);
    bind_text(&b, act->id);
    bind_int(&b, act->from_mask);
    rc = run(s, st, &b, "update state");
    if (rc == COURIER_OK)
        *changed = sqlite3_changes(s->db) > 0;
    return rc;
}

int store_out_mark_sent(store_t *s, const char *id, unsigned attempts,
                        int64_t last_sent_ms)
{
    sqlite3_stmt *st = s->st[ST_OUT_MARK_SENT];
    binder_t b = bind_start(st);
    int rc;
    bind_int(&b, attempts);
    bind_int(&b, last_sent_ms);
    bind_text(&b, id);
    rc = run(s, st, &b, "mark sent");
    if (rc == COURIER_OK && sqlite3_changes(s->db) == 0)
        rc = fail_with(s, COURIER_ENOTFOUND, "mark sent: no such message");
    return rc;
}

/* Ids gathered under the transaction, NUL-separated, so that the
 * callbacks run only once the change is committed. */
typedef struct {
    char *buf;
    size_t len, cap;
} idlist_t;

static int idlist_add(idlist_t *l, const char *id, size_t n)
{
    if (l->len + n + 1 > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        while (cap < l->len + n + 1)
            cap *= 2;
        char *p = util_realloc(l->buf, cap);
        if (!p)
            return COURIER_ENOMEM;
        l->buf = p;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, id, n);
    l->buf[l->len + n] = '\0';
    l->len += n + 1;
    return COURIER_OK;
}

/* The ids of the messages that can be promoted, read without writing. */
static int promote_candidates(store_t *s, sqlite3_stmt *st, const char *peer,
                              int64_t before_ms, idlist_t *ids)
{
    binder_t b = bind_start(st);
    int rc;
    bind_text(&b, peer);
    bind_int(&b, before_ms);
    rc = b.rc == SQLITE_OK ? sqlite3_step(st) : b.rc;
    while (rc == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        if (idlist_add(ids, id ? id : "", n) != COURIER_OK) {
            rc = fail_with(s, COURIER_ENOMEM, "promote: out of memory");
            goto out;
        }
        rc = sqlite3_step(st);
    }
    rc = rc == SQLITE_DONE ? COURIER_OK : fail(s, rc, "promote displayed");
out:
    finish(st);
    return rc;
}

/* behaviour.md §1: each transition is one conditional update. A candidate that
 * is no longer DELIVERED is dropped from `ids` (no callback for it). */
static int promote(store_t *s, idlist_t *ids, int64_t now_ms,
                   const char *reason)
{
    sqlite3_stmt *st = s->st[ST_OUT_PROMOTE_ONE];
    size_t keep = 0;
    for (size_t off = 0; off < ids->len;) {
        const char *id = ids->buf + off;
        size_t n = strlen(id) + 1;
        binder_t b = bind_start(st);
        bind_int(&b, now_ms);
        bind_text(&b, reason);
        bind_text(&b, id);
        int rc = run(s, st, &b, "promote displayed");
        if (rc != COURIER_OK)
            return rc;
        if (sqlite3_changes(s->db) > 0) {
            memmove(ids->buf + keep, id, n);
            keep += n;
        }
        off += n;
    }
    ids->len = keep;
    return COURIER_OK;
}

/* Inside store_begin() the callbacks run once the savepoint is released;
 * the final commit is the caller's. Nothing to promote writes nothing. */
int store_out_promote_displayed(store_t *s, const char *peer, int by_created,
                                int64_t before_ms, int64_t now_ms,
                                const char *reason, store_id_cb cb, void *ud)
{
    sqlite3_stmt *st = s->st[by_created ? ST_OUT_PROMOTE_CREATED
                                        : ST_OUT_PROMOTE_SENT];
    idlist_t ids = { NULL, 0, 0 };
    int rc = promote_candidates(s, st, peer, before_ms, &ids);
    if (rc != COURIER_OK || ids.len == 0)
        goto out;
    rc = op_begin(s);
    if (rc != COURIER_OK)
        goto out;
    rc = op_end(s, promote(s, &ids, now_ms, reason ? reason : ""));
    if (rc == COURIER_OK && cb) {
        for (size_t off = 0; off < ids.len; off += strlen(ids.buf + off) + 1)
            cb(ud, ids.buf + off, peer);
    }
out:
    util_free(ids.buf);
    return rc;
}

int store_out_each_unsettled(store_t *s, store_row_cb cb, void *ud)
{
    sqlite3_stmt *st = s->st[ST_OUT_UNSETTLED];
    core_row_t row;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int crc = read_out_row(s, st, &row);
        if (crc == COURIER_OK)
            crc = cb(ud, &row);
        if (crc != 0) {
            rc = crc;
            goto out;
        }
    }
    rc = rc == SQLITE_DONE ? COURIER_OK : fail(s, rc, "read outbox");
out:
    finish(st);
    return rc;
}

int store_out_count(store_t *s, int64_t *out)
{
    sqlite3_stmt *st = s->st[ST_OUT_COUNT];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = COURIER_OK;
    } else {
        rc = fail(s, rc == SQLITE_DONE ? SQLITE_ERROR : rc, "count");
    }
    finish(st);
    return rc;
}

/* ---- incoming messages -------------------------------------------- */

static int in_key_run(store_t *s, int which, const char *peer,
                      const char *id, const char *what)
{
    sqlite3_stmt *st = s->st[which];
    binder_t b = bind_start(st);
    int rc;
    bind_text(&b, peer);
    bind_text(&b, id);
    rc = run(s, st, &b, what);
    if (rc == COURIER_OK && sqlite3_changes(s->db) == 0)
        rc = fail_with(s, COURIER_ENOTFOUND, "no such incoming message");
    return rc;
}

int store_in_get(store_t *s, const char *peer, const char *id,
                 store_in_t *out)
{
    sqlite3_stmt *st = s->st[ST_IN_GET];
    binder_t b = bind_start(st);
    int rc;
    bind_text(&b, peer);
    bind_text(&b, id);
    rc = b.rc == SQLITE_OK ? sqlite3_step(st) : b.rc;
    if (rc == SQLITE_ROW)
        rc = read_in_row(s, st, out);
    else if (rc == SQLITE_DONE)
        rc = fail_with(s, COURIER_ENOTFOUND, "no such incoming message");
    else
        rc = fail(s, rc, "read incoming message");
    finish(st);
    return rc;
}

int store_in_last_id(store_t *s, const char *peer, char id[COURIER_ID_MAX],
                     unsigned *asked)
{
    sqlite3_stmt *st = s->st[ST_IN_LAST];
    binder_t b = bind_start(st);
    int rc;
    bind_text(&b, peer);
    rc = b.rc == SQLITE_OK ? sqlite3_step(st) : b.rc;
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        rc = v && util_strlcpy(id, v, COURIER_ID_MAX) == 0
                 ? COURIER_OK
                 : fail_with(s, COURIER_ECORRUPT, "bad incoming id");
        if (asked)
            *asked = (unsigned)sqlite3_column_int64(st, 1);
    } else if (rc == SQLITE_DONE) {
        rc = fail_with(s, COURIER_ENOTFOUND, "nothing from that peer");
    } else {
        rc = fail(s, rc, "read last incoming id");
    }
    finish(st);
    return rc;
}

static int in_insert(store_t *s, const store_in_t *msg, const char *body,
                     int *duplicate, store_in_t *existing)
{
    sqlite3_stmt *st = s->st[ST_IN_INSERT];
    binder_t b = bind_start(st);
    int rc;
    bind_text(&b, msg->peer);
    bind_text(&b, msg->id);
    bind_int(&b, msg->kind);
    bind_int(&b, msg->timestamp_ms);
    bind_int(&b, util_wall_ms());
    bind_int(&b, msg->asked);
    bind_text(&b, body);
    rc = run(s, st, &b, "insert incoming message");
    if (rc != COURIER_OK || sqlite3_changes(s->db) > 0)
        return rc;
    *duplicate = 1;
    st = s->st[ST_IN_ASK];
    b = bind_start(st);
    bind_int(&b, msg->asked);
    bind_text(&b, msg->peer);
    bind_text(&b, msg->id);
    rc = run(s, st, &b, "update incoming message");
    if (rc == COURIER_OK && existing)
        rc = store_in_get(s, msg->peer, msg->id, existing);
    return rc;
}

int store_in_insert(store_t *s, const store_in_t *msg, const char *body,
                    int *duplicate, store_in_t *existing)
{
    int rc;
    *duplicate = 0;
    if (!body)
        return fail_with(s, COURIER_EINVAL, "insert: no body");
    rc = op_begin(s);
    if (rc != COURIER_OK)
        return rc;
    rc = op_end(s, in_insert(s, msg, body, duplicate, existing));
    if (rc != COURIER_OK)
        *duplicate = 0;
    return rc;
}

int store_in_set_handed(store_t *s, const char *peer, const char *id)
{
    return in_key_run(s, ST_IN_HANDED, peer, id, "mark handed");
}

int store_in_set_displayed(store_t *s, const char *peer, const char *id)
{
    return in_key_run(s, ST_IN_DISPLAYED, peer, id, "mark displayed");
}

int store_in_each_unhanded(store_t *s, store_in_cb cb, void *ud)
{
    sqlite3_stmt *st = s->st[ST_IN_UNHANDED];
    store_in_t m;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *body = (const char *)sqlite3_column_text(st, 7);
        int crc = read_in_row(s, st, &m);
        if (crc == COURIER_OK)
            crc = cb(ud, &m, body ? body : "");
        if (crc != 0) {
            rc = crc;
            goto out;
        }
    }
    rc = rc == SQLITE_DONE ? COURIER_OK : fail(s, rc, "read inbox");
out:
    finish(st);
    return rc;
}

/* ---- receipts ------------------------------------------------------ */

static int rcpt_insert(store_t *s, const store_rcpt_t *r, unsigned asked)
{
    sqlite3_stmt *st = s->st[ST_RCPT_ADD];
    binder_t b = bind_start(st);
    bind_text(&b, r->peer);
    bind_text(&b, r->id);
    bind_int(&b, r->state);
    bind_int(&b, asked);
    return run(s, st, &b, "add receipt");
}

/* A receipt owed again: the old row goes, and a new one with the forms
 * of both takes a fresh rid behind the others. */
static int rcpt_replace(store_t *s, const store_rcpt_t *r)
{
    sqlite3_stmt *st = s->st[ST_RCPT_FIND];
    binder_t b = bind_start(st);
    int64_t old = 0;
    unsigned asked = r->asked;
    int rc = op_begin(s);
    if (rc != COURIER_OK)
        return rc;
    bind_text(&b, r->peer);
    bind_text(&b, r->id);
    bind_int(&b, r->state);
    rc = b.rc == SQLITE_OK ? sqlite3_step(st) : b.rc;
    if (rc == SQLITE_ROW) {
        old = sqlite3_column_int64(st, 0);
        asked |= (unsigned)sqlite3_column_int64(st, 1);
        rc = COURIER_OK;
    } else {
        rc = fail(s, rc == SQLITE_DONE ? SQLITE_ERROR : rc, "find receipt");
    }
    finish(st);
    if (rc == COURIER_OK)
        rc = store_rcpt_done(s, old);
    if (rc == COURIER_OK)
        rc = rcpt_insert(s, r, asked);
    return op_end(s, rc);
}

/* The usual case, a receipt not owed yet, is the one INSERT. */
int store_rcpt_add(store_t *s, const store_rcpt_t *r, int64_t *rid_out)
{
    int rc = rcpt_insert(s, r, r->asked);
    if (rc == COURIER_OK && sqlite3_changes(s->db) == 0)
        rc = rcpt_replace(s, r);
    if (rc == COURIER_OK && rid_out)
        *rid_out = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int store_rcpt_done(store_t *s, int64_t rid)
{
    sqlite3_stmt *st = s->st[ST_RCPT_DONE];
    binder_t b = bind_start(st);
    bind_int(&b, rid);
    return run(s, st, &b, "remove receipt");
}

int store_rcpt_each_after(store_t *s, int64_t after, size_t limit,
                          store_rcpt_cb cb, void *ud)
{
    sqlite3_stmt *st = s->st[ST_RCPT_AFTER];
    binder_t b = bind_start(st);
    store_rcpt_t r;
    int rc;
    bind_int(&b, after);
    /* LIMIT is a signed 64-bit; -1 means none. Only a 64-bit size_t can
     * exceed it (the test is a type-limits error on 32-bit ARM). */
#if SIZE_MAX > INT64_MAX
    bind_int(&b, limit > INT64_MAX ? -1 : (int64_t)limit);
#else
    bind_int(&b, (int64_t)limit);
#endif
    if (b.rc != SQLITE_OK) {
        rc = fail(s, b.rc, "read receipts");
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int crc;
        memset(&r, 0, sizeof(r));
        r.rid = sqlite3_column_int64(st, 0);
        r.state = (courier_state_t)sqlite3_column_int(st, 3);
        r.asked = (unsigned)sqlite3_column_int64(st, 4);
        crc = col_copy(s, st, 1, r.peer, sizeof(r.peer));
        if (crc == COURIER_OK)
            crc = col_copy(s, st, 2, r.id, sizeof(r.id));
        if (crc == COURIER_OK)
            crc = cb(ud, &r);
        if (crc != 0) {
            rc = crc;
            goto out;
        }
    }
    rc = rc == SQLITE_DONE ? COURIER_OK : fail(s, rc, "read receipts");
out:
    finish(st);
    return rc;
}

int store_rcpt_each(store_t *s, store_rcpt_cb cb, void *ud)
{
    return store_rcpt_each_after(s, 0, SIZE_MAX, cb, ud);
}

/* ---- tests --------------------------------------------------------- */

const char *store_stmt_sql(const store_t *s, size_t i)
{
    return i < ST_COUNT && s->st[i] ? sqlite3_sql(s->st[i]) : NULL;
}
