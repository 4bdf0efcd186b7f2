/* SPDX-License-Identifier: MIT */
#include "history.h"

#include <string.h>

#include "store.h"
#include "util.h"

/* Pending messages are read this many at a time (seq > the last one). */
#define PENDING_BATCH 256

typedef struct {
    const char *peer;
    int64_t seq;      /* before (history) or after (pending) */
    size_t limit;
    int pending;
    store_entries_t list;
} entries_req_t;

static int read_entries(store_t *s, void *ud)
{
    entries_req_t *r = ud;
    return r->pending ? store_pending(s, r->seq, r->limit, &r->list)
                      : store_history(s, r->peer, r->seq, r->limit, &r->list);
}

/* Hand each entry to `fn`; its non-zero return stops and is returned. */
static int hand_entries(const store_entries_t *l, courier_entry_fn fn,
                        void *ud)
{
    for (size_t i = 0; i < l->len; i++) {
        const store_entry_t *x = &l->v[i];
        courier_entry_t e = {
            .seq = x->seq, .dir = x->dir, .id = x->id, .peer = x->peer,
            .kind = x->kind, .body = x->body, .meta = x->meta,
            .state = x->state, .timestamp_ms = x->timestamp_ms,
            .retracted = x->retracted,
        };
        int rc = fn(ud, &e);
        if (rc != 0)
            return rc;
    }
    return COURIER_OK;
}

int history_page(engine_t *e, const char *peer, int64_t before_seq,
                 unsigned limit, courier_entry_fn fn, void *ud)
{
    char bare[COURIER_JID_MAX];
    if (!fn)
        return util_set_error(COURIER_EINVAL, "fn is NULL");
    if (limit == 0 || limit > HISTORY_PAGE_MAX)
        return util_set_error(COURIER_EINVAL, "limit %u: 1..%d", limit,
                              HISTORY_PAGE_MAX);
    if (before_seq < 0)
        return util_set_error(COURIER_EINVAL, "before_seq is negative");
    if (peer && util_jid_bare(peer, bare, sizeof(bare)) != 0)
        return util_set_error(COURIER_EINVAL, "invalid JID '%.64s'", peer);
    entries_req_t r = { .peer = peer ? bare : NULL, .seq = before_seq,
                        .limit = limit };
    int rc = engine_read(e, read_entries, &r);
    if (rc == COURIER_OK)
        rc = hand_entries(&r.list, fn, ud);
    store_entries_free(&r.list);
    return rc;
}

int history_pending(engine_t *e, courier_entry_fn fn, void *ud)
{
    if (!fn)
        return util_set_error(COURIER_EINVAL, "fn is NULL");
    entries_req_t r = { .limit = PENDING_BATCH, .pending = 1 };
    for (;;) {
        int rc = engine_read(e, read_entries, &r);
        if (rc == COURIER_OK)
            rc = hand_entries(&r.list, fn, ud);
        size_t n = r.list.len;
        if (n)
            r.seq = r.list.v[n - 1].seq;
        store_entries_free(&r.list);
        if (rc != COURIER_OK || n < PENDING_BATCH)
            return rc;
    }
}

typedef struct {
    store_conv_t *v;
    size_t n;
} convs_req_t;

static int read_convs(store_t *s, void *ud)
{
    convs_req_t *r = ud;
    return store_conversations(s, &r->v, &r->n);
}

int history_conversations(engine_t *e, courier_conversation_fn fn, void *ud)
{
    if (!fn)
        return util_set_error(COURIER_EINVAL, "fn is NULL");
    convs_req_t r = { NULL, 0 };
    int rc = engine_read(e, read_convs, &r);
    for (size_t i = 0; rc == COURIER_OK && i < r.n; i++) {
        courier_conversation_t c = { .peer = r.v[i].peer,
                                     .last_seq = r.v[i].last_seq,
                                     .last_ms = r.v[i].last_ms,
                                     .unread = r.v[i].unread };
        rc = fn(ud, &c);
    }
    util_free(r.v);
    return rc;
}
