/* SPDX-License-Identifier: MIT */
/*
 * Push (XEP-0357, behaviour.md §10): the registration the app asked for is
 * kept in the store and written again after every login; a replaced or
 * disabled one is owed a <disable/> until the server answers it.
 *
 * Two sides. The app's calls (any thread) validate, store, wake the loop
 * and, when asked to, wait for the server's answer. The loop's side (the
 * session, on the loop thread) writes the IQs once online and takes the
 * answers. They meet under the module's own mutex, never held across I/O,
 * a store call or a callback.
 */
#ifndef COURIER_PUSH_H
#define COURIER_PUSH_H

#include <stddef.h>
#include <strophe.h>

#include "engine.h"
#include "store.h"

#define PUSH_NS "urn:xmpp:push:0"
#define PUSH_FORM_TYPE "http://jabber.org/protocol/pubsub#publish-options"

typedef struct push push_t;

int push_new(push_t **out, engine_t *e);
void push_free(push_t *p); /* NULL-safe; no waiter may be left */
/* courier_close: every caller waiting for the server's answer leaves with
 * COURIER_ECLOSED (the change stays stored). Any thread; NULL-safe. */
void push_shutdown(push_t *p);

/* The app's arguments: COURIER_OK, or COURIER_EINVAL with the detail in
 * courier_last_error(). `secret` may be NULL. */
int push_check_args(const char *service_jid, const char *node,
                    const char *secret);

/* courier_push_enable / courier_push_disable. Stored (committed) first;
 * then, when `wait` and the link is up, the caller waits up to the
 * config's ack_timeout_ms for the server's answer: COURIER_OK (accepted,
 * or not online: written at the next login), COURIER_EREFUSED (an error
 * answer, its condition in courier_last_error()), COURIER_ETIMEDOUT (no
 * answer in time: still stored). Never waits when `wait` is 0 (the loop's
 * own thread, a caller-driven handle). */
int push_enable(push_t *p, const char *service_jid, const char *node,
                const char *secret, int wait);
int push_disable(push_t *p, int wait);

/* ---- the loop's side (loop thread only) ------------------------------ */

/* Writes one stanza to the stream (counted), taking ownership of `st`. */
typedef int (*push_send_fn)(void *ud, xmpp_stanza_t *st);

/* Each loop turn: once `online` (logged in, stream management settled,
 * initial presence written), write what this stream owes: the owed
 * disables, then the enable; again whenever the app changes it. */
void push_pump(push_t *p, xmpp_ctx_t *ctx, int online, push_send_fn send,
               void *ud);
/* The link went down: a new stream owes everything again; a waiting
 * caller returns (COURIER_OK: written at the next login). */
void push_link_down(push_t *p);
/* An iq of type result or error: 1 if it answers one of ours (taken), 0
 * otherwise. */
int push_on_iq(push_t *p, xmpp_stanza_t *st);

/* ---- stanzas (unit-tested) ------------------------------------------- */

/* <iq type='set' id><enable xmlns='urn:xmpp:push:0' jid node>, with an
 * XEP-0004 form (FORM_TYPE publish-options, field secret) when `reg` has
 * a secret. No `to`: it is for our own account. NULL on no memory. */
xmpp_stanza_t *push_build_enable(xmpp_ctx_t *ctx, const char *id,
                                 const store_push_t *reg);
/* <iq type='set' id><disable xmlns='urn:xmpp:push:0' jid node/>. */
xmpp_stanza_t *push_build_disable(xmpp_ctx_t *ctx, const char *id,
                                  const char *service_jid, const char *node);
/* The answer `iq`: COURIER_OK for a result; COURIER_EREFUSED for an error,
 * its RFC 6120 condition (e.g. "feature-not-implemented"; "undefined-
 * condition" when none is given) and text ("" if none) copied to `cond`
 * and `text` (bounded, never overflowing). */
int push_parse_answer(xmpp_stanza_t *iq, char *cond, size_t cond_size,
                      char *text, size_t text_size);

#endif /* COURIER_PUSH_H */
