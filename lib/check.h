/* SPDX-License-Identifier: MIT */
/*
 * The store check owed after an unclean close (behaviour.md §10, issue 15):
 * PRAGMA quick_check reads every page (0.2-0.4 s per million messages on
 * a desktop), so it runs on a thread of its own, on a read-only SQLite
 * connection of its own, and courier_open does not wait for it. The store's
 * writer connection is not touched: in WAL mode a reader never blocks it,
 * and the check reads one snapshot.
 *
 * check_begin/check_halt/check_free are called by the handle's lifecycle
 * (courier_open, courier_erase, courier_close), never at the same time;
 * check_status may be called from any thread at any time.
 */
#ifndef COURIER_CHECK_H
#define COURIER_CHECK_H

#include <stddef.h>

#include "courier.h"

typedef struct check check_t;

/* Called once on the check thread when a check ends with a verdict (OK,
 * DAMAGED or FAILED; not when it is halted). `detail` is SQLite's first
 * message (or "ok"). Must not block for long and must not call check_*. */
typedef void (*check_report_fn)(void *ud, courier_check_t status,
                                const char *detail);

/* A checker for the store at `path` (copied); status COURIER_CHECK_NONE.
 * COURIER_OK or COURIER_ENOMEM. */
int check_new(check_t **out, const char *path, check_report_fn fn, void *ud);

/* Start a check (status COURIER_CHECK_RUNNING). If no thread can be
 * created the check runs on the caller's thread before this returns. */
void check_begin(check_t *k);

/* Stop a check under way and join its thread: bounded (SQLite is
 * interrupted, about a millisecond). A check stopped before its verdict
 * leaves the status COURIER_CHECK_RUNNING: still owed. No-op when no
 * thread runs. */
void check_halt(check_t *k);

/* Halt, then free. NULL-safe. */
void check_free(check_t *k);

/* The status; `detail` (may be NULL) receives SQLite's message for
 * DAMAGED and FAILED, "" otherwise. NULL `k`: COURIER_CHECK_NONE. */
courier_check_t check_status(check_t *k, char *detail, size_t detail_size);

/* 1 if the store still owes a check: one is running, was halted, could
 * not run, or found damage. */
int check_owed(check_t *k);

/* One check on the caller's thread, without a check_t: what the thread
 * runs. */
courier_check_t check_run(const char *path, char *detail,
                          size_t detail_size);

/* ---- tests -------------------------------------------------------- */

typedef enum {
    CHECK_EV_READING, /* check thread: its snapshot is held, quick_check next */
    CHECK_EV_HALT,    /* halting thread: check_halt was called */
    CHECK_EV_DONE,    /* check thread: the status is final, reported */
} check_ev_t;

/* A process-wide hook for tests (NULL: none); it may block the check
 * thread at CHECK_EV_READING to make the order observable. Set it only
 * while no check runs. */
typedef void (*check_hook_fn)(void *ud, check_ev_t ev);
void check_set_hook(check_hook_fn fn, void *ud);

#endif
