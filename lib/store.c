/* SPDX-License-Identifier: MIT */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
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

/* v6 (issue 14, behaviour.md §9): the store is the app's history. Both
 * tables share one order, `seq`: a new entry, in either direction, takes
 * 1 + the largest seq of both (rows are never removed, only marked, so
 * seqs only grow). Existing rows are numbered by time: outgoing by
 * created_ms (never decreasing along their old seq, so resends keep their
 * order), incoming by arrival, and those that arrived in the same
 * millisecond (a burst of offline messages) by the sender's timestamp.
 * The inbox gets a rowid (its seq) so the largest is one seek; (peer, id)
 * stays unique. New columns: meta (app
 * data sent with the message), cancelled (the app gave up), retracted
 * (XEP-0424), deleted (gone from this device's history; the row stays so
 * a duplicate is still recognised). outbox_peer_state becomes
 * outbox_delivered, holding DELIVERED rows only (the implicit-read
 * candidates): a state change no longer moves an index entry. */
static const char migrate_v6[] =
    "CREATE TEMP TABLE v6_order AS"
    " SELECT dir, k1, k2,"
    "  row_number() OVER (ORDER BY t, dir, o, ts, k1, k2) AS seq"
    " FROM (SELECT 0 AS dir, id AS k1, '' AS k2, o, 0 AS ts,"
    "        max(created_ms) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING)"
    "        AS t"
    "       FROM (SELECT seq, seq AS o, id, created_ms FROM outbox)"
    "       UNION ALL"
    "       SELECT 1, peer, id, 0, ts_ms, received_ms FROM inbox);"
    "CREATE TABLE outbox_v6("
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
    " reason TEXT NOT NULL DEFAULT '',"
    " bounces INTEGER NOT NULL DEFAULT 0,"
    " meta TEXT NOT NULL DEFAULT '',"
    " cancelled INTEGER NOT NULL DEFAULT 0,"
    " retracted INTEGER NOT NULL DEFAULT 0,"
    " deleted INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO outbox_v6(seq, id, peer, kind, body, created_ms,"
    " last_sent_ms, last_change_ms, attempts, state, permanent, reason,"
    " bounces)"
    " SELECT v.seq, o.id, o.peer, o.kind, o.body, o.created_ms,"
    " o.last_sent_ms, o.last_change_ms, o.attempts, o.state, o.permanent,"
    " o.reason, o.bounces"
    " FROM outbox o JOIN v6_order v ON v.dir = 0 AND v.k1 = o.id;"
    "CREATE TABLE inbox_v6("
    " seq INTEGER PRIMARY KEY,"
    " peer TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " kind INTEGER NOT NULL,"
    " body TEXT NOT NULL,"
    " ts_ms INTEGER NOT NULL,"
    " received_ms INTEGER NOT NULL,"
    " asked INTEGER NOT NULL DEFAULT 0,"
    " displayed INTEGER NOT NULL DEFAULT 0,"
    " handed INTEGER NOT NULL DEFAULT 0,"
    " meta TEXT NOT NULL DEFAULT '',"
    " retracted INTEGER NOT NULL DEFAULT 0,"
    " deleted INTEGER NOT NULL DEFAULT 0,"
    " UNIQUE(peer, id));"
    "INSERT INTO inbox_v6(seq, peer, id, kind, body, ts_ms, received_ms,"
    " asked, displayed, handed)"
    " SELECT v.seq, i.peer, i.id, i.kind, i.body, i.ts_ms, i.received_ms,"
    " i.asked, i.displayed, i.handed"
    " FROM inbox i JOIN v6_order v ON v.dir = 1 AND v.k1 = i.peer"
    " AND v.k2 = i.id;"
    "DROP TABLE v6_order;"
    "DROP TABLE outbox;"
    "ALTER TABLE outbox_v6 RENAME TO outbox;"
    "DROP TABLE inbox;"
    "ALTER TABLE inbox_v6 RENAME TO inbox;"
    "CREATE INDEX outbox_unsettled ON outbox(seq)"
    " WHERE state <= 2 OR (state = 5 AND permanent = 0);"
    /* FAILED for good but not given up by the app: courier_pending. */
    "CREATE INDEX outbox_failed ON outbox(seq)"
    " WHERE state = 5 AND permanent = 1 AND cancelled = 0;"
    "CREATE INDEX outbox_delivered ON outbox(peer) WHERE state = 3;"
    "CREATE INDEX outbox_peer_seq ON outbox(peer, seq);"
    "CREATE INDEX inbox_unhanded ON inbox(seq) WHERE handed = 0;"
    "CREATE INDEX inbox_peer_seq ON inbox(peer, seq);"
    /* the newest incoming entry the app marked displayed, per peer: the
     * read mark (unread counts) */
    "CREATE INDEX inbox_read ON inbox(peer, seq) WHERE displayed = 1;"
    "PRAGMA user_version=6;";

/* v7 (issue 15, behaviour.md §10): the push registration (XEP-0357) the
 * app asked for, one row at most (sent again after every login), and the
 * registrations the server may still hold that are owed a <disable/>
 * (one the app disabled or replaced while offline, or whose disable got
 * no answer), oldest first. A NULL secret: none. */
static const char migrate_v7[] =
    "CREATE TABLE push("
    " one INTEGER PRIMARY KEY CHECK(one = 1),"
    " service TEXT NOT NULL,"
    " node TEXT NOT NULL,"
    " secret TEXT);"
    "CREATE TABLE push_off("
    " n INTEGER PRIMARY KEY,"
    " service TEXT NOT NULL,"
    " node TEXT NOT NULL,"
    " UNIQUE(service, node));"
    "PRAGMA user_version=7;";

/* v8 (issue 17; and push_off's rows never reused, below): a new outgoing
 * message is not put in outbox_unsettled when it is written. Its insert
 * was the fourth b-tree every durable send
 * wrote, and most messages settle (DELIVERED) within a second, so the
 * entry was nearly always deleted again at once. A row is written with
 * swept = 0; outbox_swept.upto is the largest outbox seq "swept" so far.
 * The invariant: every unsettled row is in outbox_unsettled (swept = 1)
 * or has seq > upto (found by a range of the table's own b-tree). A
 * sweep (after STORE_SWEEP_EVERY inserts: in the next commit, or at once
 * for an insert outside a transaction, or at open) sets swept = 1
 * on the unsettled rows above upto and moves upto to the largest seq;
 * a state change of a row at or below upto sets swept = 1 (a permanent
 * FAILED message retried by the app becomes unsettled again). Existing
 * rows take swept = 1: the index keeps the same rows. */
static const char migrate_v8[] =
    "ALTER TABLE outbox ADD COLUMN swept INTEGER NOT NULL DEFAULT 1;"
    "CREATE TABLE outbox_swept("
    " one INTEGER PRIMARY KEY CHECK(one = 1),"
    " upto INTEGER NOT NULL);"
    "INSERT INTO outbox_swept VALUES(1,"
    " (SELECT coalesce(max(seq), 0) FROM outbox));"
    "DROP INDEX outbox_unsettled;"
    "CREATE INDEX outbox_unsettled ON outbox(seq)"
    " WHERE swept = 1 AND (state <= 2 OR (state = 5 AND permanent = 0));"
    /* An owed disable is settled by its row, which a disable owed again
     * later for the same (service, node) must not reuse: AUTOINCREMENT
     * (a late answer to the first one settled the second). */
    "CREATE TABLE push_off_v8("
    " n INTEGER PRIMARY KEY AUTOINCREMENT,"
    " service TEXT NOT NULL,"
    " node TEXT NOT NULL,"
    " UNIQUE(service, node));"
    "INSERT INTO push_off_v8 SELECT n, service, node FROM push_off;"
    "DROP TABLE push_off;"
    "ALTER TABLE push_off_v8 RENAME TO push_off;"
    "PRAGMA user_version=8;";

/* migrations[v] takes a store from version v to v + 1. */
static const char *const migrations[] = { schema_v1, migrate_v2,
                                          migrate_v3, migrate_v4,
                                          migrate_v5, migrate_v6,
                                          migrate_v7, migrate_v8 };

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
    ST_OUT_SWEEP,
    ST_OUT_SWEPT_UPTO,
    ST_OUT_UNSWEPT,
    ST_OUT_COUNT,
    ST_IN_INSERT,
    ST_IN_ASK,
    ST_IN_GET,
    ST_IN_HANDED,
    ST_IN_DISPLAYED,
    ST_IN_UNHANDED,
    ST_IN_RETRACT_HANDED,
    ST_IN_LAST,
    ST_OUT_APP_MARK,
    ST_IN_RETRACT,
    ST_IN_TOMBSTONE,
    ST_IN_DELETE,
    ST_IN_READ_MARK,
    ST_HIST_OUT,
    ST_HIST_IN,
    ST_HIST_OUT_ALL,
    ST_HIST_IN_ALL,
    ST_PEND_UNSETTLED,
    ST_PEND_FAILED,
    ST_PEER_NEXT_OUT,
    ST_PEER_NEXT_IN,
    ST_PEER_LAST_OUT,
    ST_PEER_LAST_IN,
    ST_PEER_UNREAD,
    ST_RCPT_FIND,
    ST_RCPT_ADD,
    ST_RCPT_DONE,
    ST_RCPT_AFTER,
    ST_PUSH_GET,
    ST_PUSH_SET,
    ST_PUSH_CLEAR,
    ST_PUSH_OWE,
    ST_PUSH_UNOWE,
    ST_PUSH_OWED_DONE,
    ST_PUSH_OWED,
    ST_COUNT
};

#define OUT_COLS                                                          \
    "id, peer, kind, state, attempts, bounces, created_ms, last_sent_ms," \
    " last_change_ms, permanent, reason, cancelled, retracted, deleted, seq"
#define IN_COLS \
    "peer, id, kind, ts_ms, asked, displayed, handed, retracted, deleted, seq"
/* The next history seq (schema v6): both tables' largest, one seek each. */
#define NEXT_SEQ                                                         \
    "1 + max((SELECT coalesce(max(seq), 0) FROM outbox),"                \
    " (SELECT coalesce(max(seq), 0) FROM inbox))"
/* Unsettled outgoing rows (schema v8): those swept into outbox_unsettled
 * (its WHERE, verbatim), and those above the swept mark. */
/* A missing mark row (damage) reads as 0: every row is then above it. */
#define SWEPT_UPTO "coalesce((SELECT upto FROM outbox_swept), 0)"
#define OUT_UNSETTLED_STATE "(state <= 2 OR (state = 5 AND permanent = 0))"
#define OUT_UNSETTLED_SWEPT "swept = 1 AND " OUT_UNSETTLED_STATE
/* swept = 0: a row is found by one arm only, whatever the mark says */
#define OUT_UNSETTLED_UNSWEPT \
    "seq > " SWEPT_UPTO " AND swept = 0 AND " OUT_UNSETTLED_STATE
/* A history entry: seq, id, peer, kind, state, timestamp, retracted,
 * body, meta (store_entry_t). Incoming state: DELIVERED or DISPLAYED;
 * displayed is cumulative (XEP-0333): an entry at or before the peer's
 * read mark (the newest marked displayed) was shown too. One seek of
 * inbox_read per row. */
#define HIST_OUT_COLS \
    "seq, id, peer, kind, state, created_ms, retracted, body, meta"
#define HIST_IN_COLS                                                      \
    "seq, id, peer, kind,"                                                \
    " CASE WHEN displayed OR seq <= (SELECT max(r.seq) FROM inbox AS r"   \
    "  INDEXED BY inbox_read WHERE r.peer = inbox.peer AND r.displayed = 1)" \
    " THEN 4 ELSE 3 END, ts_ms, retracted, body, meta"

static const char *const sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT store_op",
    [ST_RELEASE] = "RELEASE store_op",
    [ST_ROLLBACK_TO] = "ROLLBACK TO store_op",
    [ST_OUT_INSERT] =
        "INSERT INTO outbox(seq, id, peer, kind, state, attempts, bounces,"
        " created_ms, last_sent_ms, last_change_ms, permanent, reason, body,"
        " meta, cancelled, swept)"
        " VALUES(" NEXT_SEQ ", ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
    /* body last: it is read only when asked for */
    [ST_OUT_GET] =
        "SELECT " OUT_COLS ", body, meta FROM outbox WHERE id = ?",
    [ST_OUT_SET_STATE] =
        "UPDATE outbox SET state = ?, attempts = ?, bounces = ?,"
        " last_sent_ms = ?, last_change_ms = ?, permanent = ?, reason = ?,"
        " cancelled = ?, swept = swept OR seq <= " SWEPT_UPTO
        " WHERE id = ? AND ((1 << state) & ?) != 0",
    [ST_OUT_MARK_SENT] =
        "UPDATE outbox SET attempts = ?, last_sent_ms = ? WHERE id = ?",
    /* The candidates are read first (one index seek, usually no row: then
     * nothing is written), then each moves by its own conditional update.
     * Not UPDATE ... RETURNING: that buffers its rows in an ephemeral
     * table, built and freed on every run. */
    [ST_OUT_PROMOTE_SENT] =
        "SELECT id FROM outbox INDEXED BY outbox_delivered"
        " WHERE peer = ? AND state = 3 AND last_sent_ms <= ?",
    [ST_OUT_PROMOTE_CREATED] =
        "SELECT id FROM outbox INDEXED BY outbox_delivered"
        " WHERE peer = ? AND state = 3 AND created_ms <= ?",
    [ST_OUT_PROMOTE_ONE] =
        "UPDATE outbox SET state = 4, last_change_ms = ?, reason = ?"
        " WHERE id = ? AND state = 3",
    /* INDEXED BY makes the prepare fail rather than fall back to a scan;
     * the WHERE is the index's own. The rows not swept yet follow, from
     * the table's own b-tree (schema v8); SQLite merges the two ordered
     * arms without a sorter. */
    [ST_OUT_UNSETTLED] =
        "SELECT " OUT_COLS " FROM outbox INDEXED BY outbox_unsettled"
        " WHERE " OUT_UNSETTLED_SWEPT
        " UNION ALL SELECT " OUT_COLS " FROM outbox"
        " WHERE " OUT_UNSETTLED_UNSWEPT " ORDER BY seq",
    [ST_OUT_SWEEP] = "UPDATE outbox SET swept = 1 WHERE "
                     OUT_UNSETTLED_UNSWEPT,
    [ST_OUT_SWEPT_UPTO] =
        "INSERT OR REPLACE INTO outbox_swept(one, upto)"
        " VALUES(1, (SELECT coalesce(max(seq), 0) FROM outbox))",
    [ST_OUT_UNSWEPT] =
        "SELECT count(*) FROM outbox WHERE seq > " SWEPT_UPTO,
    [ST_OUT_COUNT] = "SELECT count(*) FROM outbox",
    [ST_IN_INSERT] =
        "INSERT OR IGNORE INTO inbox(seq, peer, id, kind, ts_ms,"
        " received_ms, asked, body, meta)"
        " VALUES(" NEXT_SEQ ", ?, ?, ?, ?, ?, ?, ?, ?)",
    [ST_IN_ASK] =
        "UPDATE inbox SET asked = asked | ? WHERE peer = ? AND id = ?",
    [ST_IN_GET] = "SELECT " IN_COLS " FROM inbox WHERE peer = ? AND id = ?",
    [ST_IN_LAST] = "SELECT id, asked FROM inbox INDEXED BY inbox_peer_seq"
                   " WHERE peer = ? ORDER BY seq DESC LIMIT 1",
    /* the message was handed; a retraction since is still owed */
    [ST_IN_HANDED] =
        "UPDATE inbox SET handed = 1 WHERE peer = ? AND id = ?"
        " AND retracted = 0",
    [ST_IN_RETRACT_HANDED] =
        "UPDATE inbox SET handed = 1 WHERE peer = ? AND id = ?",
    [ST_IN_DISPLAYED] =
        "UPDATE inbox SET displayed = 1 WHERE peer = ? AND id = ?",
    [ST_IN_UNHANDED] =
        "SELECT " IN_COLS ", body, meta FROM inbox INDEXED BY inbox_unhanded"
        " WHERE handed = 0 ORDER BY seq",
    /* app marks (behaviour.md §9): cancel is a state change (ST_OUT_SET_STATE);
     * retract and delete keep the row (its id stays taken, a late event
     * still finds it) and drop the content */
    [ST_OUT_APP_MARK] =
        "UPDATE outbox SET retracted = retracted OR ?, deleted = deleted OR ?,"
        " body = '', meta = '' WHERE id = ?",
    /* handed = 0 makes the retraction owed to the app (behaviour.md §9):
     * on_retract, not on_message, at the next open until marked */
    [ST_IN_RETRACT] =
        "UPDATE inbox SET retracted = 1, handed = 0, body = '', meta = ''"
        " WHERE peer = ? AND id = ? AND retracted = 0 AND deleted = 0",
    /* a retraction that arrives before its message (or after the app
     * deleted it): the message, when it comes, is a duplicate and never
     * handed; deleted = 1 keeps the tombstone out of every list */
    [ST_IN_TOMBSTONE] =
        "INSERT OR IGNORE INTO inbox(seq, peer, id, kind, ts_ms, received_ms,"
        " body, handed, retracted, deleted)"
        " VALUES(" NEXT_SEQ ", ?, ?, 0, ?, ?, '', 1, 1, 1)",
    [ST_IN_DELETE] =
        "UPDATE inbox SET deleted = 1, handed = 1, body = '', meta = ''"
        " WHERE peer = ? AND id = ?",
    [ST_IN_READ_MARK] =
        "SELECT max(seq) FROM inbox INDEXED BY inbox_read"
        " WHERE peer = ? AND displayed = 1",
    /* history pages: each direction walks its (peer, seq) index backwards
     * and the two are merged in C (no sorter) */
    [ST_HIST_OUT] =
        "SELECT " HIST_OUT_COLS " FROM outbox INDEXED BY outbox_peer_seq"
        " WHERE peer = ? AND seq < ? AND deleted = 0 ORDER BY seq DESC",
    [ST_HIST_IN] =
        "SELECT " HIST_IN_COLS " FROM inbox INDEXED BY inbox_peer_seq"
        " WHERE peer = ? AND seq < ? AND deleted = 0 ORDER BY seq DESC",
    [ST_HIST_OUT_ALL] =
        "SELECT " HIST_OUT_COLS " FROM outbox"
        " WHERE seq < ? AND deleted = 0 ORDER BY seq DESC",
    [ST_HIST_IN_ALL] =
        "SELECT " HIST_IN_COLS " FROM inbox"
        " WHERE seq < ? AND deleted = 0 ORDER BY seq DESC",
    /* pending: unsettled and not given up, plus FAILED for good */
    [ST_PEND_UNSETTLED] =
        "SELECT " HIST_OUT_COLS " FROM outbox INDEXED BY outbox_unsettled"
        " WHERE " OUT_UNSETTLED_SWEPT " AND cancelled = 0 AND seq > ?1"
        " UNION ALL SELECT " HIST_OUT_COLS " FROM outbox"
        " WHERE " OUT_UNSETTLED_UNSWEPT " AND cancelled = 0 AND seq > ?1"
        " ORDER BY seq",
    [ST_PEND_FAILED] =
        "SELECT " HIST_OUT_COLS " FROM outbox INDEXED BY outbox_failed"
        " WHERE state = 5 AND permanent = 1 AND cancelled = 0 AND seq > ?"
        " ORDER BY seq",
    /* conversations: skip from peer to peer through the indexes */
    [ST_PEER_NEXT_OUT] = "SELECT peer FROM outbox INDEXED BY outbox_peer_seq"
                         " WHERE peer > ? ORDER BY peer LIMIT 1",
    [ST_PEER_NEXT_IN] = "SELECT peer FROM inbox INDEXED BY inbox_peer_seq"
                        " WHERE peer > ? ORDER BY peer LIMIT 1",
    [ST_PEER_LAST_OUT] =
        "SELECT seq, created_ms FROM outbox INDEXED BY outbox_peer_seq"
        " WHERE peer = ? AND deleted = 0 ORDER BY seq DESC LIMIT 1",
    [ST_PEER_LAST_IN] =
        "SELECT seq, ts_ms FROM inbox INDEXED BY inbox_peer_seq"
        " WHERE peer = ? AND deleted = 0 ORDER BY seq DESC LIMIT 1",
    [ST_PEER_UNREAD] =
        "SELECT count(*) FROM inbox INDEXED BY inbox_peer_seq"
        " WHERE peer = ? AND seq > ? AND deleted = 0 AND retracted = 0",
    [ST_RCPT_FIND] = "SELECT rid, asked FROM receipts"
                     " WHERE peer = ? AND id = ? AND state = ?",
    [ST_RCPT_ADD] =
        "INSERT INTO receipts(peer, id, state, asked) VALUES(?, ?, ?, ?)"
        " ON CONFLICT(peer, id, state) DO NOTHING",
    [ST_RCPT_DONE] = "DELETE FROM receipts WHERE rid = ?",
    [ST_RCPT_AFTER] = "SELECT rid, peer, id, state, asked FROM receipts"
                      " WHERE rid > ? ORDER BY rid LIMIT ?",
    /* push (schema v7, behaviour.md §10) */
    [ST_PUSH_GET] = "SELECT service, node, secret FROM push WHERE one = 1",
    [ST_PUSH_SET] = "INSERT OR REPLACE INTO push(one, service, node, secret)"
                    " VALUES(1, ?, ?, ?)",
    [ST_PUSH_CLEAR] = "DELETE FROM push",
    /* a new row goes last (REPLACE deletes the old one first) */
    [ST_PUSH_OWE] = "INSERT OR REPLACE INTO push_off(service, node)"
                    " VALUES(?, ?)",
    [ST_PUSH_UNOWE] = "DELETE FROM push_off WHERE service = ? AND node = ?",
    [ST_PUSH_OWED_DONE] = "DELETE FROM push_off WHERE n = ?",
    [ST_PUSH_OWED] = "SELECT n, service, node FROM push_off ORDER BY n",
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    int in_txn; /* inside store_begin() */
    int committing; /* store_commit() runs its COMMIT */
    int check_owed; /* the last close was not clean (store_check_owed) */
    int64_t unswept; /* outbox rows above the swept mark, about (v8) */
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
    row->cancelled = sqlite3_column_int(st, 11);
    row->retracted = sqlite3_column_int(st, 12);
    row->deleted = sqlite3_column_int(st, 13);
    row->seq = sqlite3_column_int64(st, 14);
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
    m->retracted = sqlite3_column_int(st, 7);
    m->deleted = sqlite3_column_int(st, 8);
    m->seq = sqlite3_column_int64(st, 9);
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

/* A rollback may have undone a sweep: sweep at the next chance. */
static void sweep_soon(store_t *s)
{
    if (s->unswept < STORE_SWEEP_EVERY)
        s->unswept = STORE_SWEEP_EVERY;
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
    sweep_soon(s);
}

/* Put the unsettled rows written since the last sweep into
 * outbox_unsettled and move the mark (schema v8): both or neither, in the
 * caller's transaction or one of its own. */
static int sweep(store_t *s)
{
    int rc = op_begin(s);
    if (rc == COURIER_OK)
        rc = run(s, s->st[ST_OUT_SWEEP], NULL, "sweep outbox");
    if (rc == COURIER_OK)
        rc = run(s, s->st[ST_OUT_SWEPT_UPTO], NULL, "sweep outbox");
    rc = op_end(s, rc);
    if (rc == COURIER_OK)
        s->unswept = 0;
    return rc;
}

/* A sweep nobody waits for (after an insert of its own, at open): a
 * failure is tried again later and leaves the last error as it was. */
static void sweep_quietly(store_t *s)
{
    char keep[sizeof(s->errmsg)];
    memcpy(keep, s->errmsg, sizeof(keep));
    if (sweep(s) != COURIER_OK)
        memcpy(s->errmsg, keep, sizeof(keep));
}

int store_commit(store_t *s)
{
    int rc;
    if (!s->in_txn)
        return fail_with(s, COURIER_ESTATE, "no transaction open");
    if (sqlite3_get_autocommit(s->db)) {
        /* SQLite already rolled it back after an I/O or disk-full error */
        s->in_txn = 0;
        sweep_soon(s);
        return fail_with(s, COURIER_ESTORE,
                         "transaction rolled back after an earlier error");
    }
    rc = s->unswept >= STORE_SWEEP_EVERY ? sweep(s) : COURIER_OK;
    if (rc != COURIER_OK) {
        store_rollback(s);
        return rc;
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
    int off = 0;
    int rc = create_file(s, path);
    if (rc != COURIER_OK)
        return rc;
    /* A check of every page is owed only after a crash; it costs 0.2-0.4 s
     * at 10^6 messages, so the caller of open does not run it: lib/check.c
     * does, on a thread and connection of its own (store_check_owed).
     * Meanwhile, and after a clean close, damage surfaces as ECORRUPT when
     * a damaged page is read: cell_size_check checks each page read. */
    s->check_owed = closed_uncleanly(path);
    rc = sqlite3_open_v2(path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                             SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc != SQLITE_OK)
        return fail(s, rc, "open");
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_commit_hook(s->db, commit_guard, s);
    sqlite3_busy_timeout(s->db, 5000);
    /* The -wal file must go at a clean close: its presence is how the
     * next open knows a check is owed (store_keep_check_owed). */
    sqlite3_file_control(s->db, "main", SQLITE_FCNTL_PERSIST_WAL, &off);

    /* The first read: a file that is not a database fails here. */
    rc = query_one(s, "PRAGMA user_version", &v, NULL, 0);
    if (rc == COURIER_OK)
        rc = check_version(s, v);
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
    if (rc == COURIER_OK) {
        sqlite3_stmt *st = s->st[ST_OUT_UNSWEPT];
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            s->unswept = sqlite3_column_int64(st, 0);
        else
            rc = fail(s, src, "read outbox");
        finish(st);
    }
    /* written on their own by the last run, or left by a crash: swept
     * now, so what open reads next stays bounded (a failure is retried
     * at the first commit) */
    if (rc == COURIER_OK && s->unswept >= STORE_SWEEP_EVERY)
        sweep_quietly(s);
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

int store_check_owed(const store_t *s)
{
    return s->check_owed;
}

void store_keep_check_owed(store_t *s)
{
    int on = 1;
    /* The WAL is still checkpointed into the file at close, but the file
     * stays: the next open sees it and checks. */
    sqlite3_file_control(s->db, "main", SQLITE_FCNTL_PERSIST_WAL, &on);
}

const char *store_errmsg(const store_t *s)
{
    return s ? s->errmsg : "store not open";
}

/* ---- outgoing messages -------------------------------------------- */

int store_out_insert(store_t *s, const core_row_t *row, const char *body,
                     const char *meta)
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
    bind_text(&b, meta ? meta : "");
    bind_int(&b, row->cancelled);
    rc = b.rc == SQLITE_OK ? sqlite3_step(st) : b.rc;
    if (rc == SQLITE_DONE) {
        rc = COURIER_OK;
        s->unswept++;
        /* written on its own (no store_begin): no commit of ours follows
         * to sweep; a failed sweep is tried again at the next write */
        if (s->unswept >= STORE_SWEEP_EVERY && sqlite3_get_autocommit(s->db))
            sweep_quietly(s);
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

/* A util_malloc'd copy of a text column ("" for NULL). */
static int col_dup(store_t *s, sqlite3_stmt *st, int col, char **out)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    char *copy = util_malloc(n + 1);
    *out = NULL;
    if (!copy)
        return fail_with(s, COURIER_ENOMEM, "read message: out of memory");
    if (n)
        memcpy(copy, v, n);
    copy[n] = '\0';
    *out = copy;
    return COURIER_OK;
}

int store_out_get(store_t *s, const char *id, core_row_t *row,
                  char **body_out, char **meta_out)
{
    sqlite3_stmt *st = s->st[ST_OUT_GET];
    binder_t b = bind_start(st);
    int rc;
    if (body_out)
        *body_out = NULL;
    if (meta_out)
        *meta_out = NULL;
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
    if (rc == COURIER_OK && body_out)
        rc = col_dup(s, st, 15, body_out);
    if (rc == COURIER_OK && meta_out)
        rc = col_dup(s, st, 16, meta_out);
    if (rc != COURIER_OK && body_out) {
        util_free(*body_out);
        *body_out = NULL;
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
    bind_int(&b, act->cancelled);
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
    bind_text(&b, msg->meta ? msg->meta : "");
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

int store_in_set_retract_handed(store_t *s, const char *peer, const char *id)
{
    return in_key_run(s, ST_IN_RETRACT_HANDED, peer, id, "mark retraction "
                      "handed");
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
        const char *body = (const char *)sqlite3_column_text(st, 10);
        int crc = read_in_row(s, st, &m);
        m.meta = (const char *)sqlite3_column_text(st, 11);
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

/* An owed retraction is a row of its own kind in the receipts table: the
 * same window, acknowledgement and resend after every login. */
#define RCPT_STATE_RETRACT 6

static int rcpt_state(const store_rcpt_t *r)
{
    return r->retract ? RCPT_STATE_RETRACT : (int)r->state;
}

static int rcpt_insert(store_t *s, const store_rcpt_t *r, unsigned asked)
{
    sqlite3_stmt *st = s->st[ST_RCPT_ADD];
    binder_t b = bind_start(st);
    bind_text(&b, r->peer);
    bind_text(&b, r->id);
    bind_int(&b, rcpt_state(r));
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
    bind_int(&b, rcpt_state(r));
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
        int state = sqlite3_column_int(st, 3);
        r.retract = state == RCPT_STATE_RETRACT;
        r.state = r.retract ? COURIER_DELIVERED : (courier_state_t)state;
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

/* ---- the app's history (behaviour.md §9) --------------------------- */

void store_entries_free(store_entries_t *l)
{
    for (size_t i = 0; i < l->len; i++) {
        util_free(l->v[i].body);
        util_free(l->v[i].meta);
    }
    util_free(l->v);
    memset(l, 0, sizeof(*l));
}

/* Append the current row (HIST_*_COLS order) of `st` to `l`. */
static int entry_add(store_t *s, sqlite3_stmt *st, courier_dir_t dir,
                     store_entries_t *l)
{
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        store_entry_t *v = util_realloc(l->v, cap * sizeof(*v));
        if (!v)
            return fail_with(s, COURIER_ENOMEM, "history: out of memory");
        l->v = v;
        l->cap = cap;
    }
    store_entry_t *e = &l->v[l->len];
    memset(e, 0, sizeof(*e));
    e->seq = sqlite3_column_int64(st, 0);
    e->dir = dir;
    e->kind = (courier_kind_t)sqlite3_column_int(st, 3);
    e->state = (courier_state_t)sqlite3_column_int(st, 4);
    e->timestamp_ms = sqlite3_column_int64(st, 5);
    e->retracted = sqlite3_column_int(st, 6);
    int rc = col_copy(s, st, 1, e->id, sizeof(e->id));
    if (rc == COURIER_OK)
        rc = col_copy(s, st, 2, e->peer, sizeof(e->peer));
    if (rc == COURIER_OK)
        rc = col_dup(s, st, 7, &e->body);
    if (rc == COURIER_OK)
        rc = col_dup(s, st, 8, &e->meta);
    if (rc != COURIER_OK) {
        util_free(e->body);
        util_free(e->meta);
        return rc;
    }
    l->len++;
    return COURIER_OK;
}

/* Step `st`: 1 with a row, 0 at the end, < 0 an error code. */
static int step_row(store_t *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : fail(s, rc, what);
}

/* Merge two cursors ordered by seq (descending when `desc`) into `out`,
 * at most `limit` rows: each index is read only as far as the page
 * reaches, whatever the size of the store. */
static int merge(store_t *s, sqlite3_stmt *a, sqlite3_stmt *b, int desc,
                 size_t limit, store_entries_t *out)
{
    int ha = step_row(s, a, "read history");
    int hb = ha < 0 ? 0 : step_row(s, b, "read history");
    int rc = ha < 0 ? ha : hb < 0 ? hb : COURIER_OK;
    while (rc == COURIER_OK && (ha || hb) && out->len < limit) {
        int take_a = ha && (!hb || (desc ? sqlite3_column_int64(a, 0) >
                                               sqlite3_column_int64(b, 0)
                                         : sqlite3_column_int64(a, 0) <
                                               sqlite3_column_int64(b, 0)));
        sqlite3_stmt *st = take_a ? a : b;
        rc = entry_add(s, st, take_a ? COURIER_DIR_OUT : COURIER_DIR_IN, out);
        if (rc != COURIER_OK)
            break;
        int more = step_row(s, st, "read history");
        if (more < 0)
            rc = more;
        else if (take_a)
            ha = more;
        else
            hb = more;
    }
    finish(a);
    finish(b);
    return rc;
}

int store_history(store_t *s, const char *peer, int64_t before_seq,
                  size_t limit, store_entries_t *out)
{
    sqlite3_stmt *o = s->st[peer ? ST_HIST_OUT : ST_HIST_OUT_ALL];
    sqlite3_stmt *i = s->st[peer ? ST_HIST_IN : ST_HIST_IN_ALL];
    int64_t before = before_seq > 0 ? before_seq : INT64_MAX;
    binder_t bo = bind_start(o), bi = bind_start(i);
    if (peer) {
        bind_text(&bo, peer);
        bind_text(&bi, peer);
    }
    bind_int(&bo, before);
    bind_int(&bi, before);
    if (bo.rc != SQLITE_OK || bi.rc != SQLITE_OK) {
        int rc = fail(s, bo.rc != SQLITE_OK ? bo.rc : bi.rc, "read history");
        finish(o);
        finish(i);
        return rc;
    }
    return merge(s, o, i, 1, limit, out);
}

int store_pending(store_t *s, int64_t after_seq, size_t limit,
                  store_entries_t *out)
{
    sqlite3_stmt *a = s->st[ST_PEND_UNSETTLED], *b = s->st[ST_PEND_FAILED];
    binder_t ba = bind_start(a), bb = bind_start(b);
    bind_int(&ba, after_seq);
    bind_int(&bb, after_seq);
    if (ba.rc != SQLITE_OK || bb.rc != SQLITE_OK) {
        int rc = fail(s, ba.rc != SQLITE_OK ? ba.rc : bb.rc, "read pending");
        finish(a);
        finish(b);
        return rc;
    }
    /* both are outgoing: merge() labels the second cursor IN */
    size_t first = out->len;
    int rc = merge(s, a, b, 0, limit, out);
    for (size_t k = first; k < out->len; k++)
        out->v[k].dir = COURIER_DIR_OUT;
    return rc;
}

/* The smallest peer above `after` in `st`'s index ("" = none left). */
static int next_peer(store_t *s, int which, const char *after,
                     char peer[COURIER_JID_MAX])
{
    sqlite3_stmt *st = s->st[which];
    binder_t b = bind_start(st);
    bind_text(&b, after);
    int rc = b.rc == SQLITE_OK ? step_row(s, st, "read peers")
                               : fail(s, b.rc, "read peers");
    peer[0] = '\0';
    if (rc == 1)
        rc = col_copy(s, st, 0, peer, COURIER_JID_MAX);
    finish(st);
    return rc < 0 ? rc : COURIER_OK;
}

/* The first row of a keyed query: two integers, found = 0 when none. */
static int peer_ints(store_t *s, int which, const char *peer, int64_t arg,
                     int with_arg, int64_t *x, int64_t *y, int *found)
{
    sqlite3_stmt *st = s->st[which];
    binder_t b = bind_start(st);
    bind_text(&b, peer);
    if (with_arg)
        bind_int(&b, arg);
    int rc = b.rc == SQLITE_OK ? step_row(s, st, "read conversation")
                               : fail(s, b.rc, "read conversation");
    *found = rc == 1 && sqlite3_column_type(st, 0) != SQLITE_NULL;
    if (*found) {
        *x = sqlite3_column_int64(st, 0);
        if (y)
            *y = sqlite3_column_int64(st, 1);
    }
    finish(st);
    return rc < 0 ? rc : COURIER_OK;
}

static int conv_fill(store_t *s, store_conv_t *c)
{
    int64_t so = 0, mo = 0, si = 0, mi = 0, mark = 0, unread = 0;
    int fo, fi, fm, fu;
    int rc = peer_ints(s, ST_PEER_LAST_OUT, c->peer, 0, 0, &so, &mo, &fo);
    if (rc == COURIER_OK)
        rc = peer_ints(s, ST_PEER_LAST_IN, c->peer, 0, 0, &si, &mi, &fi);
    /* read mark: marking one displayed marks the earlier ones (XEP-0333) */
    if (rc == COURIER_OK)
        rc = peer_ints(s, ST_IN_READ_MARK, c->peer, 0, 0, &mark, NULL, &fm);
    if (rc == COURIER_OK)
        rc = peer_ints(s, ST_PEER_UNREAD, c->peer, fm ? mark : 0, 1,
                       &unread, NULL, &fu);
    if (rc != COURIER_OK)
        return rc;
    c->last_seq = !fo ? si : !fi ? so : so > si ? so : si;
    c->last_ms = !fo ? mi : !fi ? mo : so > si ? mo : mi;
    c->unread = fu && unread > 0 ? (unsigned)unread : 0;
    return fo || fi ? COURIER_OK : COURIER_ENOTFOUND;
}

static int conv_cmp(const void *a, const void *b)
{
    const store_conv_t *x = a, *y = b;
    return x->last_seq < y->last_seq ? 1 : x->last_seq > y->last_seq ? -1 : 0;
}

int store_conversations(store_t *s, store_conv_t **out, size_t *n_out)
{
    char po[COURIER_JID_MAX] = "", pi[COURIER_JID_MAX] = "";
    char last[COURIER_JID_MAX] = "";
    store_conv_t *v = NULL;
    size_t n = 0, cap = 0;
    int rc = next_peer(s, ST_PEER_NEXT_OUT, "", po);
    if (rc == COURIER_OK)
        rc = next_peer(s, ST_PEER_NEXT_IN, "", pi);
    *out = NULL;
    *n_out = 0;
    /* the union of both tables' peers, in order, one seek per peer */
    while (rc == COURIER_OK && (po[0] || pi[0])) {
        const char *p = !po[0] ? pi : !pi[0] ? po
                                             : strcmp(po, pi) <= 0 ? po : pi;
        util_strlcpy(last, p, sizeof(last));
        if (n == cap) {
            size_t c2 = cap ? cap * 2 : 16;
            store_conv_t *v2 = util_realloc(v, c2 * sizeof(*v2));
            if (!v2) {
                rc = fail_with(s, COURIER_ENOMEM, "conversations: out of memory");
                break;
            }
            v = v2;
            cap = c2;
        }
        memset(&v[n], 0, sizeof(v[n]));
        util_strlcpy(v[n].peer, last, sizeof(v[n].peer));
        rc = conv_fill(s, &v[n]);
        if (rc == COURIER_OK)
            n++;
        else if (rc == COURIER_ENOTFOUND) /* every entry deleted */
            rc = COURIER_OK;
        if (rc == COURIER_OK && strcmp(po, last) == 0)
            rc = next_peer(s, ST_PEER_NEXT_OUT, last, po);
        if (rc == COURIER_OK && strcmp(pi, last) == 0)
            rc = next_peer(s, ST_PEER_NEXT_IN, last, pi);
    }
    if (rc != COURIER_OK) {
        util_free(v);
        return rc;
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), conv_cmp);
    *out = v;
    *n_out = n;
    return COURIER_OK;
}

int store_out_mark(store_t *s, const char *id, int retracted, int deleted)
{
    sqlite3_stmt *st = s->st[ST_OUT_APP_MARK];
    binder_t b = bind_start(st);
    bind_int(&b, retracted ? 1 : 0);
    bind_int(&b, deleted ? 1 : 0);
    bind_text(&b, id);
    int rc = run(s, st, &b, "mark message");
    if (rc == COURIER_OK && sqlite3_changes(s->db) == 0)
        rc = fail_with(s, COURIER_ENOTFOUND, "no such message");
    return rc;
}

int store_in_retract(store_t *s, const char *peer, const char *id,
                     int64_t now_ms, int *existed)
{
    binder_t b = bind_start(s->st[ST_IN_RETRACT]);
    *existed = 0;
    bind_text(&b, peer);
    bind_text(&b, id);
    int rc = run(s, s->st[ST_IN_RETRACT], &b, "retract message");
    if (rc != COURIER_OK)
        return rc;
    if (sqlite3_changes(s->db) > 0) {
        *existed = 1;
        return COURIER_OK;
    }
    /* already retracted, or not here yet: a tombstone (ignored if the
     * row exists) makes the message a duplicate when it comes */
    b = bind_start(s->st[ST_IN_TOMBSTONE]);
    bind_text(&b, peer);
    bind_text(&b, id);
    bind_int(&b, now_ms);
    bind_int(&b, now_ms);
    return run(s, s->st[ST_IN_TOMBSTONE], &b, "store retraction");
}

int store_in_delete(store_t *s, const char *peer, const char *id)
{
    int rc = in_key_run(s, ST_IN_DELETE, peer, id, "delete message");
    if (rc == COURIER_OK && sqlite3_changes(s->db) == 0)
        rc = fail_with(s, COURIER_ENOTFOUND, "no such message");
    return rc;
}

int store_erase(store_t *s)
{
    if (s->in_txn)
        return fail_with(s, COURIER_ESTATE, "erase inside a transaction");
    /* secure_delete overwrites the freed content; VACUUM then rebuilds
     * the file without free pages, and the WAL is truncated, so no
     * message text is left in any file of the store */
    int rc = exec(s, "PRAGMA secure_delete=ON;"
                     "BEGIN IMMEDIATE;"
                     "DELETE FROM outbox; DELETE FROM inbox;"
                     "DELETE FROM receipts;"
                     "DELETE FROM push; DELETE FROM push_off;"
                     "UPDATE outbox_swept SET upto = 0;"
                     "COMMIT;", "erase");
    if (rc != COURIER_OK && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    if (rc == COURIER_OK)
        s->unswept = 0;
    if (rc == COURIER_OK)
        rc = exec(s, "VACUUM", "erase: vacuum");
    if (rc == COURIER_OK)
        rc = exec(s, "PRAGMA wal_checkpoint(TRUNCATE)", "erase: checkpoint");
    sqlite3_exec(s->db, "PRAGMA secure_delete=OFF", NULL, NULL, NULL);
    return rc;
}

/* ---- push registration (schema v7) -------------------------------- */

static int push_read(store_t *s, sqlite3_stmt *st, int col, store_push_t *p)
{
    memset(p, 0, sizeof(*p));
    int rc = col_copy(s, st, col, p->service, sizeof(p->service));
    if (rc == COURIER_OK)
        rc = col_copy(s, st, col + 1, p->node, sizeof(p->node));
    if (rc == COURIER_OK && sqlite3_column_type(st, col + 2) != SQLITE_NULL) {
        p->has_secret = 1;
        rc = col_copy(s, st, col + 2, p->secret, sizeof(p->secret));
    }
    return rc;
}

int store_push_get(store_t *s, store_push_t *out)
{
    sqlite3_stmt *st = s->st[ST_PUSH_GET];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = push_read(s, st, 0, out);
    else if (rc == SQLITE_DONE)
        rc = fail_with(s, COURIER_ENOTFOUND, "no push registration");
    else
        rc = fail(s, rc, "read push registration");
    finish(st);
    return rc;
}

static int push_owe(store_t *s, int stmt, const char *service,
                    const char *node)
{
    binder_t b = bind_start(s->st[stmt]);
    bind_text(&b, service);
    bind_text(&b, node);
    return run(s, s->st[stmt], &b, "push: owed disable");
}

int store_push_set(store_t *s, const store_push_t *p)
{
    store_push_t old;
    int rc = op_begin(s);
    if (rc != COURIER_OK)
        return rc;
    int had = store_push_get(s, &old);
    rc = had == COURIER_ENOTFOUND ? COURIER_OK : had;
    if (had == COURIER_OK && (strcmp(old.service, p->service) != 0 ||
                              strcmp(old.node, p->node) != 0))
        rc = push_owe(s, ST_PUSH_OWE, old.service, old.node);
    if (rc == COURIER_OK)
        rc = push_owe(s, ST_PUSH_UNOWE, p->service, p->node);
    if (rc == COURIER_OK) {
        sqlite3_stmt *st = s->st[ST_PUSH_SET];
        binder_t b = bind_start(st);
        bind_text(&b, p->service);
        bind_text(&b, p->node);
        bind_text(&b, p->has_secret ? p->secret : NULL);
        rc = run(s, st, &b, "store push registration");
    }
    return op_end(s, rc);
}

int store_push_clear(store_t *s, store_push_t *old)
{
    store_push_t cur;
    int rc = op_begin(s);
    if (rc != COURIER_OK)
        return rc;
    rc = store_push_get(s, &cur);
    if (rc == COURIER_OK)
        rc = push_owe(s, ST_PUSH_OWE, cur.service, cur.node);
    if (rc == COURIER_OK)
        rc = run(s, s->st[ST_PUSH_CLEAR], NULL, "forget push registration");
    rc = op_end(s, rc);
    if (rc == COURIER_OK && old)
        *old = cur;
    return rc;
}

int store_push_each_owed(store_t *s, store_push_cb cb, void *ud)
{
    sqlite3_stmt *st = s->st[ST_PUSH_OWED];
    store_push_t p;
    int rc, src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&p, 0, sizeof(p));
        p.owed_n = sqlite3_column_int64(st, 0);
        rc = col_copy(s, st, 1, p.service, sizeof(p.service));
        if (rc == COURIER_OK)
            rc = col_copy(s, st, 2, p.node, sizeof(p.node));
        if (rc == COURIER_OK)
            rc = cb(ud, &p);
        if (rc != COURIER_OK) {
            finish(st);
            return rc;
        }
    }
    rc = src == SQLITE_DONE ? COURIER_OK
                            : fail(s, src, "read owed push disables");
    finish(st);
    return rc;
}

int store_push_owed_done(store_t *s, int64_t owed_n)
{
    sqlite3_stmt *st = s->st[ST_PUSH_OWED_DONE];
    binder_t b = bind_start(st);
    bind_int(&b, owed_n);
    return run(s, st, &b, "push: owed disable done");
}

/* ---- tests --------------------------------------------------------- */

int64_t store_vm_steps(store_t *s, int reset)
{
    int64_t n = 0;
    for (int i = 0; i < ST_COUNT; i++)
        if (s->st[i])
            n += sqlite3_stmt_status(s->st[i], SQLITE_STMTSTATUS_VM_STEP,
                                     reset);
    return n;
}

const char *store_stmt_sql(const store_t *s, size_t i)
{
    return i < ST_COUNT && s->st[i] ? sqlite3_sql(s->st[i]) : NULL;
}
