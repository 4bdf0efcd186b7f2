/* SPDX-License-Identifier: MIT */
/*
 * The app's reads of its history (behaviour.md §9): courier_history,
 * courier_pending and courier_conversations. Each reads a batch from the
 * store under the handle's lock (engine_read), then lets go and hands the
 * batch to the app's function on the calling thread, which may call back
 * into the API.
 */
#ifndef COURIER_HISTORY_H
#define COURIER_HISTORY_H

#include "courier.h"
#include "engine.h"

/* At most this many entries per courier_history call. */
#define HISTORY_PAGE_MAX 1000

int history_page(engine_t *e, const char *peer, int64_t before_seq,
                 unsigned limit, courier_entry_fn fn, void *ud);
int history_pending(engine_t *e, courier_entry_fn fn, void *ud);
int history_conversations(engine_t *e, courier_conversation_fn fn, void *ud);

#endif /* COURIER_HISTORY_H */
