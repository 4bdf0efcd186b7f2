/* SPDX-License-Identifier: MIT */
/* Fuzz target: arbitrary bytes -> libstrophe stanza -> codec -> core.
 * Built with clang -fsanitize=fuzzer,address,undefined by `make fuzz`;
 * `make check` replays the corpus through replay.c with the normal build.
 * Anything the codec accepts is fed to a core holding messages to
 * bob@example.com with ids m1..m4, so events and errors can match. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <strophe.h>

#include "codec.h"
#include "core.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static xmpp_ctx_t *ctx;

static void feed_core(const codec_msg_t *m)
{
    core_limits_t lim = {
        .ack_timeout_ms = 30000, .resend_grace_ms = 10000,
        .ping_interval_ms = 30000, .ping_timeout_ms = 33000,
        .reconnect_min_ms = 1000, .reconnect_max_ms = 60000,
        .max_in_flight = 2, .max_age_ms = 60000, .implicit_read = 1,
        .random_seed = 1,
    };
    core_t *k;
    if (core_new(&k, &lim) != COURIER_OK)
        return;
    core_out_t out;
    core_out_init(&out);
    core_now_t now = { 0, 1700000000000LL };
    core_ev_t up = { .type = CORE_EV_LINK_UP };
    core_feed(k, &up, now, &out);
    static const char *ids[] = { "m1", "m2", "m3", "m4" };
    for (size_t i = 0; i < 4; i++) {
        core_row_t r;
        memset(&r, 0, sizeof(r));
        util_strlcpy(r.id, ids[i], sizeof(r.id));
        util_strlcpy(r.peer, "bob@example.com", sizeof(r.peer));
        r.created_ms = now.wall_ms;
        core_ev_t ev = { .type = CORE_EV_SEND, .row = &r };
        core_feed(k, &ev, now, &out);
    }
    now.mono_ms = now.wall_ms = 50000; /* past the grace */
    if (m->cls == CODEC_CHAT) {
        core_ev_t ev = { .type = CORE_EV_MESSAGE, .id = m->id,
                         .peer = m->from, .sent_wall_ms = m->delay_ms,
                         .asked = m->asked };
        core_feed(k, &ev, now, &out);
    } else if (m->cls == CODEC_ERROR) {
        core_ev_t ev = { .type = CORE_EV_ERROR, .id = m->id, .peer = m->from,
                         .err_type = m->err_type, .condition = m->condition };
        core_feed(k, &ev, now, &out);
    }
    for (size_t i = 0; i < m->n_events; i++) {
        core_ev_t ev = { .type = CORE_EV_EVENT, .id = m->events[i].id,
                         .peer = m->from, .kind_state = m->events[i].state,
                         .cumulative = m->events[i].cumulative };
        core_feed(k, &ev, now, &out);
    }
    core_ev_t tick = { .type = CORE_EV_TICK };
    now.mono_ms = 100000;
    core_feed(k, &tick, now, &out);
    core_out_free(&out);
    core_free(k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx) {
        xmpp_initialize();
        ctx = xmpp_ctx_new(NULL, NULL);
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    xmpp_stanza_t *st = xmpp_stanza_new_from_string(ctx, text);
    free(text);
    if (!st)
        return 0;
    codec_limits_t lim = { 4096 };
    codec_msg_t m;
    if (codec_parse_message(st, &lim, &m) == COURIER_OK)
        feed_core(&m);
    codec_msg_clear(&m);
    xmpp_stanza_t *reply = codec_build_iq_reply(ctx, st);
    if (reply)
        xmpp_stanza_release(reply);
    xmpp_stanza_release(st);
    return 0;
}
