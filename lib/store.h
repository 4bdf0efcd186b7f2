/* SPDX-License-Identifier: MIT */
/*
 * The SQLite store: the truth about every message.
 *
 * One connection, used by one thread at a time (the caller serialises).
 * Every statement is prepared once at open and run with bound values.
 * Each function is one transaction unless it runs inside store_begin() /
 * store_commit(). Errors are COURIER_ESTORE (I/O, disk full, busy) or
 * COURIER_ECORRUPT; the SQLite detail is in store_errmsg(). Nothing is ever
 * half-written: a failed function leaves the file as it was.
 */
#ifndef COURIER_STORE_H
#define COURIER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "courier.h"

/* Current schema version (PRAGMA user_version). Version 1 had no
 * `bounces` column and no `receipts` table; version 2 no index for the
 * last message of a peer; version 3 could hold one owed receipt several
 * times; version 4's unsettled index was defined with a constant IN list;
 * version 5 had no common history order (seq) over both directions and no
 * meta / cancelled / retracted / deleted columns; version 6 no push
 * registration; version 7 put every new outgoing message in the
 * unsettled index at its insert; store_open migrates forward. */
#define STORE_SCHEMA_VERSION 8

/* After this many outgoing inserts since the last sweep, the next commit
 * sweeps first (schema v8, lib/store.c), and so do an insert written
 * outside a transaction and an open: it bounds the rows a restart reads
 * beyond the unsettled index. */
#define STORE_SWEEP_EVERY 256

typedef struct store store_t;

typedef struct {
    int synchronous_full; /* 1: synchronous=FULL, else NORMAL */
} store_opts_t;

/* Open or create (mode 0600) the store at `path`, set WAL, migrate.
 * After an unclean close SQLite recovers the WAL here (cheap); the check
 * of every page is left to the caller (store_check_owed). Returns COURIER_OK, COURIER_ENOMEM, COURIER_ESTORE (cannot open/write),
 * COURIER_ECORRUPT (not a database, or a schema newer than this code).
 * On error `*out` is NULL and `err` (if not NULL) holds the reason. */
int store_open(store_t **out, const char *path, const store_opts_t *opts,
               char *err, size_t err_size);
void store_close(store_t *s); /* NULL-safe */

/* 1 if the store was not closed cleanly before this open (its -wal file
 * was left: a crash, or another connection still open), so a check of
 * every page is owed (lib/check.c); open itself no longer runs it. */
int store_check_owed(const store_t *s);

/* Make store_close() leave the -wal file (checkpointed, so nothing is
 * lost), so that the next open owes the check again: for a close that
 * comes before the check's verdict, or after it found damage. */
void store_keep_check_owed(store_t *s);

/* Detail of the last failure on this store (static or inside `s`). */
const char *store_errmsg(const store_t *s);

/* Explicit transaction around several calls (group commit). */
int store_begin(store_t *s);
int store_commit(store_t *s);
void store_rollback(store_t *s);

/* ---- outgoing messages ------------------------------------------- */

/* Insert a new outgoing message, with the next history seq; `meta` may be
 * NULL (""). COURIER_ESTATE if the id exists (also a deleted one). */
int store_out_insert(store_t *s, const core_row_t *row, const char *body,
                     const char *meta);

/* Read message `id`. `body_out` and `meta_out` (may be NULL) receive
 * util_malloc'd copies, which the caller frees with util_free().
 * COURIER_ENOTFOUND when absent. */
int store_out_get(store_t *s, const char *id, core_row_t *row,
                  char **body_out, char **meta_out);

/* Apply a CORE_ACT_STATE: one conditional UPDATE (only if the stored state
 * is in act->from_mask). `*changed` is set to 1 if the row changed, else 0.
 * Writes state, attempts, bounces, last_sent_ms, last_change_ms, permanent
 * and reason from `act`. */
int store_out_set_state(store_t *s, const core_act_t *act, int *changed);

/* Apply a CORE_ACT_TRANSMIT: record attempts and last_sent_ms. */
int store_out_mark_sent(store_t *s, const char *id, unsigned attempts,
                        int64_t last_sent_ms);

/* Apply a CORE_ACT_PROMOTE_DISPLAYED: every message to `peer` in DELIVERED
 * whose created_ms (by_created) or last_sent_ms is <= before_ms becomes
 * DISPLAYED (last_change_ms = now_ms, reason "implicit-read" or
 * "displayed-upto"). `cb` (may be NULL) is called once per changed id,
 * after the change is committed. */
typedef void (*store_id_cb)(void *ud, const char *id, const char *peer);
int store_out_promote_displayed(store_t *s, const char *peer, int by_created,
                                int64_t before_ms, int64_t now_ms,
                                const char *reason, store_id_cb cb, void *ud);

/* Call `cb` for every unsettled message (QUEUED, SENT, OFFLINE,
 * non-permanent FAILED), oldest accepted first, via an index (never a
 * history scan). A non-zero return from `cb` stops and is returned. */
typedef int (*store_row_cb)(void *ud, const core_row_t *row);
int store_out_each_unsettled(store_t *s, store_row_cb cb, void *ud);

/* Number of outgoing messages stored (any state). */
int store_out_count(store_t *s, int64_t *out);

/* ---- incoming messages (duplicate detection) --------------------- */

typedef struct {
    char peer[COURIER_JID_MAX]; /* bare, lower case */
    char id[COURIER_ID_MAX];
    courier_kind_t kind;
    int64_t timestamp_ms;       /* sender's time (delay) or arrival */
    unsigned asked;             /* CORE_ASK_* */
    int displayed;              /* app marked it displayed */
    int handed;                 /* on_message has returned for it (or, with
                                   app_confirms, courier_confirm) */
    int retracted, deleted;     /* read only */
    int64_t seq;                /* read only: history order */
    const char *meta;           /* insert: NULL = ""; store_in_each_unhanded:
                                   valid during the callback */
} store_in_t;

/* Record an incoming message keyed by (peer, id). If it is new, it is
 * inserted with handed = 0 and `*duplicate` = 0. If it exists,
 * `*duplicate` = 1, `asked` is OR-ed into the stored mask, and `existing`
 * (may be NULL) receives the stored record. */
int store_in_insert(store_t *s, const store_in_t *msg, const char *body,
                    int *duplicate, store_in_t *existing);

/* Read one incoming record; COURIER_ENOTFOUND when absent. */
int store_in_get(store_t *s, const char *peer, const char *id,
                 store_in_t *out);

/* The id of the last message received from `peer` (COURIER_ENOTFOUND when
 * none), via an index. */
int store_in_last_id(store_t *s, const char *peer, char id[COURIER_ID_MAX],
                     unsigned *asked);

/* on_message returned for it (or the app confirmed it). Not for a
 * retracted message: its retraction is still owed (COURIER_ENOTFOUND). */
int store_in_set_handed(store_t *s, const char *peer, const char *id);

/* on_retract returned for it (or the app confirmed that). */
int store_in_set_retract_handed(store_t *s, const char *peer,
                                const char *id);

/* The app marked it displayed. COURIER_ENOTFOUND when absent. */
int store_in_set_displayed(store_t *s, const char *peer, const char *id);

/* Call `cb` for each incoming message not yet handed to the app (a crash
 * between store and callback), oldest first, with its body. */
typedef int (*store_in_cb)(void *ud, const store_in_t *msg, const char *body);
int store_in_each_unhanded(store_t *s, store_in_cb cb, void *ud);

/* ---- receipts owed to peers (behaviour.md §3 "receipts are reliable") ----- */

typedef struct {
    int64_t rid;                /* row id, for store_rcpt_done */
    char peer[COURIER_JID_MAX];
    char id[COURIER_ID_MAX];
    courier_state_t state;      /* DELIVERED or DISPLAYED */
    unsigned asked;             /* CORE_ASK_* forms to send */
    int retract;                /* not a receipt: our XEP-0424 retraction
                                   of our message `id` (state unused) */
} store_rcpt_t;

/* Remember a receipt owed; its row id goes to `*rid_out` (may be NULL).
 * One row per (peer, id, state): a receipt already owed is replaced by
 * one with a new, larger rid and the forms of both (behaviour.md §11). */
int store_rcpt_add(store_t *s, const store_rcpt_t *r, int64_t *rid_out);
/* The server acknowledged the stanza carrying it (a rid no longer
 * stored is no error). */
int store_rcpt_done(store_t *s, int64_t rid);
/* Every receipt still owed, oldest first. */
typedef int (*store_rcpt_cb)(void *ud, const store_rcpt_t *r);
int store_rcpt_each(store_t *s, store_rcpt_cb cb, void *ud);
/* At most `limit` owed receipts with a rid above `after`, oldest first
 * (rids only grow). A non-zero return from `cb` stops and is returned. */
int store_rcpt_each_after(store_t *s, int64_t after, size_t limit,
                          store_rcpt_cb cb, void *ud);

/* ---- the app's history (behaviour.md §9) ---------------------------- */

typedef struct {
    int64_t seq;
    courier_dir_t dir;
    char id[COURIER_ID_MAX];
    char peer[COURIER_JID_MAX];
    courier_kind_t kind;
    courier_state_t state;      /* IN: DELIVERED, or DISPLAYED if marked */
    int64_t timestamp_ms;       /* OUT: created; IN: the sender's time */
    int retracted;
    char *body, *meta;          /* util_malloc'd, freed by
                                   store_entries_free */
} store_entry_t;

typedef struct {
    store_entry_t *v;
    size_t len, cap;
} store_entries_t;

/* Free the entries' strings and the array; `l` is left empty. */
void store_entries_free(store_entries_t *l);

/* Append to `out` at most `limit` entries of `peer` (NULL: every peer),
 * not deleted, with seq < before_seq (<= 0: from the newest), newest
 * first. Each direction is read backwards through its (peer, seq) index
 * as far as the page reaches: a page costs the same in any size of
 * store. */
int store_history(store_t *s, const char *peer, int64_t before_seq,
                  size_t limit, store_entries_t *out);

/* Append to `out` at most `limit` outgoing messages with seq > after_seq
 * that no device confirmed and the app did not cancel (QUEUED, SENT,
 * OFFLINE, FAILED), oldest first. */
int store_pending(store_t *s, int64_t after_seq, size_t limit,
                  store_entries_t *out);

typedef struct {
    char peer[COURIER_JID_MAX];
    int64_t last_seq, last_ms;  /* the newest entry not deleted */
    unsigned unread;            /* incoming after the read mark (the newest
                                   marked displayed), not retracted */
} store_conv_t;

/* Every peer with an entry not deleted, the most recent first, in a
 * util_malloc'd array (`*out`, NULL when none) of `*n`. */
int store_conversations(store_t *s, store_conv_t **out, size_t *n);

/* Mark outgoing `id` retracted and/or deleted (a mark is never taken
 * back) and drop its body and meta. COURIER_ENOTFOUND when absent. */
int store_out_mark(store_t *s, const char *id, int retracted, int deleted);

/* The sender `peer` retracted its message `id`: mark it, drop its
 * content and make the retraction owed to the app (handed = 0;
 * `*existed` = 1: it was stored, not deleted and not yet retracted), or,
 * if it is not here yet, store a hidden tombstone (deleted) so that it is
 * never handed. */
int store_in_retract(store_t *s, const char *peer, const char *id,
                     int64_t now_ms, int *existed);

/* Delete incoming (peer, id) from the history: content dropped, counted
 * as handed; the row stays so a duplicate is still recognised.
 * COURIER_ENOTFOUND when absent. */
int store_in_delete(store_t *s, const char *peer, const char *id);

/* Remove every message, receipt and mark, then rebuild the file
 * (secure_delete, VACUUM, WAL truncated). Not inside store_begin(). */
int store_erase(store_t *s);

/* ---- push registration (XEP-0357, behaviour.md §10) ----------------- */

/* Bounds of what is stored, NUL included (lib/push.c validates). */
#define STORE_PUSH_NODE_MAX 1024
#define STORE_PUSH_SECRET_MAX 1024

typedef struct {
    char service[COURIER_JID_MAX]; /* the app server's JID, as given */
    char node[STORE_PUSH_NODE_MAX];
    char secret[STORE_PUSH_SECRET_MAX];
    int has_secret;                /* 0: no secret (NULL in the store) */
    int64_t owed_n;                /* store_push_each_owed: the owed row
                                      (never reused, schema v8) */
} store_push_t;

/* The registration the app asked for; COURIER_ENOTFOUND when none. */
int store_push_get(store_t *s, store_push_t *out);
/* Remember `p` (one transaction). One it replaces for another service or
 * node becomes owed a disable; `p` itself is owed none any more. */
int store_push_set(store_t *s, const store_push_t *p);
/* Forget the registration, which becomes owed a disable; its copy goes
 * to `old` (may be NULL). COURIER_ENOTFOUND when there was none. */
int store_push_clear(store_t *s, store_push_t *old);
/* Every registration owed a disable, oldest first (secret unused). A
 * non-zero return from `cb` stops and is returned. */
typedef int (*store_push_cb)(void *ud, const store_push_t *p);
int store_push_each_owed(store_t *s, store_push_cb cb, void *ud);
/* The server answered the disable written for owed row `owed_n`: owed no
 * more. A disable owed again since for the same service and node is
 * another row and stays owed. */
int store_push_owed_done(store_t *s, int64_t owed_n);

/* ---- tests --------------------------------------------------------- */

/* The SQL of prepared statement `i` (0, 1, ...), NULL past the last: the
 * unit tests check the plan of every statement the store runs. */
const char *store_stmt_sql(const store_t *s, size_t i);

/* SQLite virtual-machine steps run by the store's statements since the
 * last reset (`reset`: start counting again): the unit tests compare the
 * cost of the same query on stores of different sizes. */
int64_t store_vm_steps(store_t *s, int reset);

#endif /* COURIER_STORE_H */
