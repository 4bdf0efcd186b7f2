/* SPDX-License-Identifier: MIT */
/*
 * The live link on libstrophe: connect (TLS verified), stream management
 * acks run by us (libstrophe's own is off: behaviour.md §1), pings, and every
 * libstrophe event turned into engine events. Only the loop thread touches
 * a session; the engine is the only way in from other threads.
 */
#ifndef COURIER_SESSION_H
#define COURIER_SESSION_H

#include "engine.h"

typedef struct session session_t;

int session_new(session_t **out, engine_t *e);
/* Closes the link first if it is up (acknowledging what we received). */
void session_free(session_t *s);

/* Run the loop on a thread of our own until session_stop(). */
int session_start(session_t *s);
/* Close the link politely (bounded time), join the thread. */
int session_stop(session_t *s);
int session_running(const session_t *s);
/* 1 if the caller is the session's own loop thread. */
int session_is_loop_thread(const session_t *s);
/* Ask the loop thread to end without joining it (from a callback). */
void session_request_stop(session_t *s);
/* 1 once a stop was asked (session_stop, session_request_stop) and no
 * start since: any thread. */
int session_stop_asked(session_t *s);
/* Called on the loop thread just before it ends (after the link closed). */
void session_set_exit_hook(session_t *s, void (*fn)(void *ud), void *ud);
/* Feed CORE_EV_START once for a caller-driven loop. */
void session_begin_driven(session_t *s);
/* 1 while courier_run_once drives the link (until session_close_link). */
int session_driven(const session_t *s);

/* One loop iteration on the caller's thread (courier_run_once): wait at
 * most `timeout_ms` for the socket, the wake-up fd or a timer. */
int session_step(session_t *s, unsigned timeout_ms);

/* courier_sync: ask for a round trip to the server once online (a ping
 * written after login and presence: its answer comes after what the
 * server had waiting for us). Returns the request's number; any thread. */
unsigned session_sync_request(session_t *s);
/* 1 once the answer to request `n` (or a later one) came. */
int session_sync_done(session_t *s, unsigned n);

/* Push (behaviour.md §10): the session writes what `p` owes after every
 * login and hands it the answers (lib/push.c). Set once, before start. */
struct push;
void session_set_push(session_t *s, struct push *p);

/* Close the link politely now (used by courier_run_once users on close). */
void session_close_link(session_t *s);

/* Fault injection for the chaos suite (tests/chaos) only: when set and it
 * returns 1, a receipt is treated as written and acknowledged by the
 * server, then lost on the way, as a server or a dropped session can lose
 * an event. Hidden from the shared library; NULL in every app. Set it
 * before the first handle opens. */
extern int (*session_fault_drop_receipt)(const char *peer, const char *id,
                                         courier_state_t state);

#endif /* COURIER_SESSION_H */
