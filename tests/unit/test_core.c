/* SPDX-License-Identifier: MIT */
/* Unit tests of the sans-I/O core: each test feeds events with an explicit
 * clock and checks the exact actions. Names cite the rule of docs/behaviour.md. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core.h"
#include "util.h"

#define WALL0 1700000000000LL
#define BOB "bob@example.com"
#define CAROL "carol@example.com"

typedef struct {
    core_t *k;
    core_out_t out;
    core_limits_t lim;
} fx_t;

static core_limits_t default_limits(void)
{
    core_limits_t l = {
        .ack_timeout_ms = 30000, .resend_grace_ms = 10000,
        .ping_interval_ms = 30000, .ping_timeout_ms = 33000,
        .reconnect_min_ms = 1000, .reconnect_max_ms = 60000,
        .max_in_flight = 100, .max_age_ms = 0, .implicit_read = 1,
        .random_seed = 42,
    };
    return l;
}

static int setup_with(void **st, core_limits_t lim)
{
    fx_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->lim = lim;
    assert_int_equal(core_new(&f->k, &lim), COURIER_OK);
    core_out_init(&f->out);
    *st = f;
    return 0;
}

static int setup(void **st)
{
    return setup_with(st, default_limits());
}

static int teardown(void **st)
{
    fx_t *f = *st;
    core_free(f->k);
    core_out_free(&f->out);
    free(f);
    return 0;
}

static core_now_t at(int64_t t)
{
    core_now_t n = { t, WALL0 + t };
    return n;
}

static int feed_rc(fx_t *f, core_ev_t ev, int64_t t)
{
    core_out_reset(&f->out);
    return core_feed(f->k, &ev, at(t), &f->out);
}

static void feed(fx_t *f, core_ev_t ev, int64_t t)
{
    assert_int_equal(feed_rc(f, ev, t), COURIER_OK);
}

static core_row_t make_row(const char *id, const char *peer, int64_t t)
{
    core_row_t r;
    memset(&r, 0, sizeof(r));
    strcpy(r.id, id);
    strcpy(r.peer, peer);
    r.kind = COURIER_TEXT;
    r.state = COURIER_QUEUED;
    r.created_ms = WALL0 + t;
    r.last_change_ms = WALL0 + t;
    return r;
}

/* EV_SEND needs a row that lives across the call only. */
static void send_msg(fx_t *f, const char *id, const char *peer, int64_t t)
{
    core_row_t r = make_row(id, peer, t);
    core_ev_t ev = { .type = CORE_EV_SEND, .row = &r };
    feed(f, ev, t);
}

static core_ev_t ev_type(core_ev_type_t type)
{
    core_ev_t ev = { .type = type };
    return ev;
}

static core_ev_t ev_acked(const char *id)
{
    core_ev_t ev = { .type = CORE_EV_ACKED, .id = id };
    return ev;
}

static core_ev_t ev_event(const char *id, const char *from,
                          courier_state_t s)
{
    core_ev_t ev = { .type = CORE_EV_EVENT, .id = id, .peer = from,
                     .kind_state = s };
    return ev;
}

static core_ev_t ev_error(const char *id, const char *from,
                          core_err_type_t type, const char *cond)
{
    core_ev_t ev = { .type = CORE_EV_ERROR, .id = id, .peer = from,
                     .err_type = type, .condition = cond };
    return ev;
}

static core_ev_t ev_message(const char *id, const char *from, int64_t t,
                            unsigned asked, int dup)
{
    core_ev_t ev = { .type = CORE_EV_MESSAGE, .id = id, .peer = from,
                     .sent_wall_ms = WALL0 + t, .asked = asked,
                     .duplicate = dup };
    return ev;
}

static size_t count(fx_t *f, core_act_type_t type)
{
    size_t n = 0;
    for (size_t i = 0; i < f->out.len; i++)
        n += f->out.acts[i].type == type;
    return n;
}

static const core_act_t *nth(fx_t *f, core_act_type_t type, size_t idx)
{
    for (size_t i = 0; i < f->out.len; i++)
        if (f->out.acts[i].type == type && idx-- == 0)
            return &f->out.acts[i];
    return NULL;
}

/* The last STATE action for `id` in this feed, or NULL. */
static const core_act_t *state_of(fx_t *f, const char *id)
{
    const core_act_t *found = NULL;
    for (size_t i = 0; i < f->out.len; i++)
        if (f->out.acts[i].type == CORE_ACT_STATE &&
            strcmp(f->out.acts[i].id, id) == 0)
            found = &f->out.acts[i];
    return found;
}

static void assert_state(fx_t *f, const char *id, courier_state_t s)
{
    const core_act_t *a = state_of(f, id);
    assert_non_null(a);
    assert_int_equal(a->state, s);
}

static void assert_transmits(fx_t *f, const char *ids[], size_t n)
{
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(nth(f, CORE_ACT_TRANSMIT, i)->id, ids[i]);
}

static void online(fx_t *f, int64_t t)
{
    feed(f, ev_type(CORE_EV_LINK_UP), t);
}

/* ---- behaviour.md §1 states --------------------------------------------------- */

static void test_send_online_is_queued_and_transmitted(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 5);
    assert_int_equal(f->out.len, 1);
    const core_act_t *a = nth(f, CORE_ACT_TRANSMIT, 0);
    assert_string_equal(a->id, "m1");
    assert_int_equal(a->attempts, 1);
    assert_int_equal(a->last_sent_ms, WALL0 + 5);
    assert_int_equal(core_find(f->k, "m1")->state, COURIER_QUEUED);
    assert_int_equal(core_in_flight(f->k), 1);
}

static void test_server_ack_moves_queued_to_sent(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_acked("m1"), 10);
    assert_state(f, "m1", COURIER_SENT);
    assert_int_equal(state_of(f, "m1")->from_mask, 1u << COURIER_QUEUED);
    assert_int_equal(core_in_flight(f->k), 0);
    /* a second ack changes nothing */
    feed(f, ev_acked("m1"), 11);
    assert_int_equal(f->out.len, 0);
}

static void test_offline_event_reached_and_kept_for_delivery(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_event("m1", BOB, COURIER_OFFLINE), 10);
    assert_state(f, "m1", COURIER_OFFLINE);
    assert_non_null(core_find(f->k, "m1")); /* still unsettled */
    feed(f, ev_event("m1", BOB, COURIER_DELIVERED), 20);
    assert_state(f, "m1", COURIER_DELIVERED);
    assert_null(core_find(f->k, "m1")); /* settled: only in the store */
}

/* behaviour.md §1: a late <offline/> after <delivered/> changes nothing. */
static void test_states_only_move_forward(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_event("m1", BOB, COURIER_DELIVERED), 10);
    core_row_t stored = make_row("m1", BOB, 0);
    stored.state = COURIER_DELIVERED;
    core_ev_t late = ev_event("m1", BOB, COURIER_OFFLINE);
    late.row = &stored;
    feed(f, late, 20);
    assert_int_equal(f->out.len, 0);
    assert_non_null(core_ignored(f->k));
    /* neither does an ack nor a SENT-level event */
    feed(f, ev_acked("m1"), 30);
    assert_int_equal(f->out.len, 0);
}

/* The note's case 5.2: delivered lost, displayed arrives: no repair. */
static void test_case_5_2_displayed_implies_delivered(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_acked("m1"), 5);
    feed(f, ev_event("m1", BOB, COURIER_DISPLAYED), 10);
    assert_state(f, "m1", COURIER_DISPLAYED);
    assert_null(core_find(f->k, "m1"));
    /* the late delivered is not a step back */
    core_row_t stored = make_row("m1", BOB, 0);
    stored.state = COURIER_DISPLAYED;
    core_ev_t late = ev_event("m1", BOB, COURIER_DELIVERED);
    late.row = &stored;
    feed(f, late, 20);
    assert_int_equal(f->out.len, 0);
    /* and a peer message never resends it */
    feed(f, ev_message("p1", BOB, 100000, 0, 0), 100000);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 0);
}

static void test_display_status_mapping_ranks(void **st)
{
    (void)st;
    assert_true(core_state_rank(COURIER_QUEUED) <
                core_state_rank(COURIER_SENT));
    assert_true(core_state_rank(COURIER_SENT) <
                core_state_rank(COURIER_OFFLINE));
    assert_true(core_state_rank(COURIER_OFFLINE) <
                core_state_rank(COURIER_DELIVERED));
    assert_true(core_state_rank(COURIER_DELIVERED) <
                core_state_rank(COURIER_DISPLAYED));
    assert_true(core_state_rank(COURIER_FAILED) < 0);
}

/* ---- behaviour.md §2 ack timer ----------------------------------------------- */

static void test_ack_timer_fails_then_late_ack_wins(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    assert_int_equal(core_next_deadline(f->k, at(0)), 30000);
    feed(f, ev_type(CORE_EV_TICK), 29999);
    assert_null(state_of(f, "m1"));
    feed(f, ev_type(CORE_EV_TICK), 30000);
    assert_state(f, "m1", COURIER_FAILED);
    assert_string_equal(state_of(f, "m1")->reason, "ack-timeout");
    assert_int_equal(state_of(f, "m1")->permanent, 0);
    feed(f, ev_acked("m1"), 30500);
    assert_state(f, "m1", COURIER_SENT);
    assert_int_equal(state_of(f, "m1")->from_mask, 1u << COURIER_FAILED);
}

static void test_ack_timer_ignores_confirmed_message(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    send_msg(f, "m2", BOB, 0);
    feed(f, ev_acked("m1"), 100);
    feed(f, ev_event("m2", BOB, COURIER_OFFLINE), 100);
    feed(f, ev_type(CORE_EV_TICK), 40000);
    assert_null(state_of(f, "m1"));
    assert_null(state_of(f, "m2"));
}

/* A late event also rescues a FAILED message (behaviour.md §1). */
static void test_late_event_moves_failed_on(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_type(CORE_EV_TICK), 30000);
    assert_state(f, "m1", COURIER_FAILED);
    feed(f, ev_event("m1", BOB, COURIER_DELIVERED), 31000);
    assert_state(f, "m1", COURIER_DELIVERED);
    assert_int_equal(state_of(f, "m1")->from_mask, 1u << COURIER_FAILED);
}

/* ---- behaviour.md §2 disconnect / reconnect ---------------------------------- */

static void test_disconnect_fails_queued_keeps_sent(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    send_msg(f, "m2", BOB, 0);
    feed(f, ev_acked("m1"), 10);
    feed(f, ev_type(CORE_EV_LINK_DOWN), 20);
    assert_state(f, "m2", COURIER_FAILED);
    assert_string_equal(state_of(f, "m2")->reason, "link-lost");
    assert_null(state_of(f, "m1"));
    assert_int_equal(nth(f, CORE_ACT_LINK, 0)->link, COURIER_LINK_OFFLINE);
    assert_int_equal(core_in_flight(f->k), 0);
}

static void test_disconnect_send_while_offline_fails_at_once(void **st)
{
    fx_t *f = *st;
    send_msg(f, "m1", BOB, 0);
    assert_state(f, "m1", COURIER_FAILED);
    assert_string_equal(state_of(f, "m1")->reason, "offline");
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 0);
}

static void test_reconnect_resends_oldest_first_with_original_id(void **st)
{
    fx_t *f = *st;
    send_msg(f, "m1", BOB, 0);
    send_msg(f, "m2", CAROL, 1);
    send_msg(f, "m3", BOB, 2);
    online(f, 10);
    const char *ids[] = { "m1", "m2", "m3" };
    assert_transmits(f, ids, 3);
    /* each goes FAILED -> QUEUED before its write (persist first) */
    assert_int_equal(f->out.acts[1].type, CORE_ACT_STATE);
    assert_int_equal(f->out.acts[1].state, COURIER_QUEUED);
    assert_int_equal(f->out.acts[2].type, CORE_ACT_TRANSMIT);
    /* a SENT message is with the server: not part of the reconnect */
    feed(f, ev_acked("m1"), 20);
    feed(f, ev_type(CORE_EV_LINK_DOWN), 30);
    online(f, 40);
    const char *again[] = { "m2", "m3" };
    assert_transmits(f, again, 2);
}

static void test_reconnect_backoff_grows_with_jitter_and_resets(void **st)
{
    fx_t *f = *st;
    feed(f, ev_type(CORE_EV_START), 0);
    assert_int_equal(count(f, CORE_ACT_CONNECT), 1);
    int64_t t = 0, prev = 0;
    for (int i = 0; i < 10; i++) {
        feed(f, ev_type(CORE_EV_LINK_DOWN), t);
        int64_t d = core_next_deadline(f->k, at(t));
        int64_t delay = d - t;
        unsigned b = 1000u << (i < 6 ? i : 6);
        if (b > 60000)
            b = 60000;
        assert_true(delay >= b / 2 && delay <= b);
        assert_true(i < 6 ? 1 : delay <= 60000);
        feed(f, ev_type(CORE_EV_TICK), d - 1);
        assert_int_equal(count(f, CORE_ACT_CONNECT), 0);
        feed(f, ev_type(CORE_EV_TICK), d);
        assert_int_equal(count(f, CORE_ACT_CONNECT), 1);
        t = d;
        prev = delay;
    }
    assert_true(prev >= 30000);
    /* a session that held resets it (behaviour.md §4) */
    online(f, t);
    int64_t down = t + 60000;
    feed(f, ev_type(CORE_EV_LINK_DOWN), down);
    assert_true(core_next_deadline(f->k, at(down)) - down <= 1000);
}

/* behaviour.md §11: a link that dies within seconds of coming up does not reset
 * the backoff: a server or peer that kills every session right after
 * login (a flood, a poisonous stanza) gets slower reconnects, not one a
 * second forever. */
static void test_short_lived_link_does_not_reset_backoff(void **st)
{
    fx_t *f = *st;
    feed(f, ev_type(CORE_EV_START), 0);
    int64_t t = 0, delay = 0;
    for (int i = 0; i < 8; i++) {
        online(f, t);
        t += 20; /* dies 20 ms after ONLINE */
        feed(f, ev_type(CORE_EV_LINK_DOWN), t);
        delay = core_next_deadline(f->k, at(t)) - t;
        unsigned b = i < 6 ? 1000u << i : 60000; /* reconnect_max_ms */
        assert_true(delay >= b / 2 && delay <= b);
        t += delay;
        feed(f, ev_type(CORE_EV_TICK), t);
        assert_int_equal(count(f, CORE_ACT_CONNECT), 1);
    }
    assert_true(delay >= 30000);
    /* just short of the threshold still counts as short-lived */
    online(f, t);
    t += 9999;
    feed(f, ev_type(CORE_EV_LINK_DOWN), t);
    assert_true(core_next_deadline(f->k, at(t)) - t >= 30000);
    t = core_next_deadline(f->k, at(t));
    feed(f, ev_type(CORE_EV_TICK), t);
    /* one that held 10 s is a success: back to reconnect_min_ms */
    online(f, t);
    t += 10000;
    feed(f, ev_type(CORE_EV_LINK_DOWN), t);
    assert_true(core_next_deadline(f->k, at(t)) - t <= 1000);
}

static void test_auth_failure_is_not_retried(void **st)
{
    fx_t *f = *st;
    feed(f, ev_type(CORE_EV_START), 0);
    feed(f, ev_type(CORE_EV_AUTH_FAILED), 100);
    assert_int_equal(core_next_deadline(f->k, at(100)), -1);
    feed(f, ev_type(CORE_EV_TICK), 10000000);
    assert_int_equal(count(f, CORE_ACT_CONNECT), 0);
    feed(f, ev_type(CORE_EV_START), 10000001); /* the app fixed it */
    assert_int_equal(count(f, CORE_ACT_CONNECT), 1);
}

static void test_stop_cancels_reconnect(void **st)
{
    fx_t *f = *st;
    feed(f, ev_type(CORE_EV_START), 0);
    feed(f, ev_type(CORE_EV_STOP), 1);
    feed(f, ev_type(CORE_EV_LINK_DOWN), 2);
    assert_int_equal(core_next_deadline(f->k, at(2)), -1);
}

static void test_stalled_connect_is_cut(void **st)
{
    fx_t *f = *st;
    feed(f, ev_type(CORE_EV_START), 0);
    feed(f, ev_type(CORE_EV_TICK), 32999);
    assert_int_equal(count(f, CORE_ACT_DROP_LINK), 0);
    feed(f, ev_type(CORE_EV_TICK), 33000);
    assert_int_equal(count(f, CORE_ACT_DROP_LINK), 1);
    feed(f, ev_type(CORE_EV_TICK), 34000); /* once */
    assert_int_equal(count(f, CORE_ACT_DROP_LINK), 0);
}

/* ---- behaviour.md §2 peer activity ------------------------------------------- */

/* The note's case 5.3: delivered arrived, displayed lost: implicit read. */
static void test_case_5_3_peer_activity_implicit_read(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    feed(f, ev_message("p1", BOB, 5000, 0, 0), 6000);
    const core_act_t *a = nth(f, CORE_ACT_PROMOTE_DISPLAYED, 0);
    assert_non_null(a);
    assert_string_equal(a->peer, BOB);
    assert_int_equal(a->by_created, 0); /* compared with last send */
    assert_int_equal(a->before_ms, WALL0 + 5000); /* P's delay stamp */
}

static void test_peer_activity_implicit_read_can_be_off(void **st)
{
    fx_t *f = *st;
    teardown(st);
    core_limits_t l = default_limits();
    l.implicit_read = 0;
    setup_with(st, l);
    f = *st;
    online(f, 0);
    feed(f, ev_message("p1", BOB, 5000, 0, 0), 6000);
    assert_int_equal(count(f, CORE_ACT_PROMOTE_DISPLAYED), 0);
    assert_int_equal(count(f, CORE_ACT_DELIVER), 1);
}

/* The note's cases 5.1 and 5.4: offline, or delivered and displayed, lost:
 * the client resends when the peer writes. */
static void test_case_5_1_and_5_4_peer_activity_resends_unconfirmed(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);         /* SENT, nothing else (5.4) */
    send_msg(f, "m2", BOB, 0);         /* FAILED by ack timer */
    send_msg(f, "m3", BOB, 0);         /* OFFLINE: the server has it */
    send_msg(f, "c1", CAROL, 0);       /* another peer */
    feed(f, ev_acked("m1"), 10);
    feed(f, ev_event("m3", BOB, COURIER_OFFLINE), 10);
    feed(f, ev_type(CORE_EV_TICK), 30000);
    assert_state(f, "m2", COURIER_FAILED);
    feed(f, ev_message("p1", BOB, 40000, 0, 0), 40000);
    const char *ids[] = { "m1", "m2", "m3" };
    assert_transmits(f, ids, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(nth(f, CORE_ACT_TRANSMIT, i)->attempts, 2);
    assert_state(f, "m2", COURIER_QUEUED);
    assert_null(state_of(f, "m1")); /* stays SENT */
}

static void test_peer_activity_respects_resend_grace(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_acked("m1"), 10);
    feed(f, ev_message("p1", BOB, 9999, 0, 0), 9999);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 0);
    feed(f, ev_message("p2", BOB, 10000, 0, 0), 10000);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 1);
}

static void test_peer_activity_duplicate_changes_nothing(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_acked("m1"), 10);
    feed(f, ev_message("p1", BOB, 50000, 0, 1), 50000);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 0);
    assert_int_equal(count(f, CORE_ACT_DELIVER), 0);
    assert_int_equal(count(f, CORE_ACT_PROMOTE_DISPLAYED), 0);
}

static void test_peer_activity_offline_does_not_transmit(void **st)
{
    fx_t *f = *st;
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_message("p1", BOB, 50000, 0, 0), 50000);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 0);
}

/* ---- behaviour.md §2 manual retry ------------------------------------------- */

static void test_manual_retry_sends_failed_at_once(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_type(CORE_EV_TICK), 30000);
    core_ev_t ev = { .type = CORE_EV_RETRY, .row = core_find(f->k, "m1") };
    feed(f, ev, 30001);
    assert_state(f, "m1", COURIER_QUEUED);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 1);
}

/* The note's two phases, told apart: resends are counted by what caused
 * them (courier_get_stats). */
static void test_resends_are_counted_by_cause(void **st)
{
    fx_t *f = *st;
    core_stats_t s;
    send_msg(f, "m0", BOB, 0);         /* offline: FAILED, never written */
    online(f, 0);                      /* first write of m0: not a resend */
    send_msg(f, "m1", BOB, 0);
    send_msg(f, "m2", BOB, 0);
    core_get_stats(f->k, &s);
    assert_int_equal(s.first_writes, 3);
    assert_int_equal(s.rewrites[CORE_CAUSE_RECONNECT], 0);
    assert_int_equal(s.links_up, 1);
    feed(f, ev_type(CORE_EV_LINK_DOWN), 10);   /* all three FAILED */
    online(f, 20);                              /* phase 2: all again */
    core_get_stats(f->k, &s);
    assert_int_equal(s.rewrites[CORE_CAUSE_RECONNECT], 3);
    assert_int_equal(s.links_up, 2);
    feed(f, ev_acked("m0"), 30);
    feed(f, ev_acked("m1"), 30);
    feed(f, ev_message("p1", BOB, 40000, 0, 0), 40000); /* phase 1 */
    core_get_stats(f->k, &s);
    assert_int_equal(s.rewrites[CORE_CAUSE_PEER], 3); /* SENT ones too */
    assert_int_equal(s.first_writes, 3);
}

static void test_manual_retry_is_counted(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_type(CORE_EV_TICK), 30000);
    core_ev_t ev = { .type = CORE_EV_RETRY, .row = core_find(f->k, "m1") };
    feed(f, ev, 30001);
    core_stats_t s;
    core_get_stats(f->k, &s);
    assert_int_equal(s.first_writes, 1);
    assert_int_equal(s.rewrites[CORE_CAUSE_RETRY], 1);
    assert_int_equal(s.rewrites[CORE_CAUSE_PEER] +
                         s.rewrites[CORE_CAUSE_RECONNECT], 0);
}

static void test_manual_retry_refuses_non_failed(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    core_ev_t ev = { .type = CORE_EV_RETRY, .row = core_find(f->k, "m1") };
    assert_int_equal(feed_rc(f, ev, 1), COURIER_ESTATE);
    core_row_t delivered = make_row("old", BOB, 0);
    delivered.state = COURIER_DELIVERED;
    ev.row = &delivered;
    assert_int_equal(feed_rc(f, ev, 1), COURIER_ESTATE);
}

static void test_manual_retry_of_permanent_failure(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    core_row_t row = make_row("m9", BOB, 0);
    row.state = COURIER_FAILED;
    row.permanent = 1;
    row.bounces = 3;
    core_ev_t ev = { .type = CORE_EV_RETRY, .row = &row };
    feed(f, ev, 5);
    assert_state(f, "m9", COURIER_QUEUED);
    assert_int_equal(state_of(f, "m9")->permanent, 0);
    assert_int_equal(state_of(f, "m9")->bounces, 0);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 1);
}

static void test_manual_retry_offline_clears_permanent_quietly(void **st)
{
    fx_t *f = *st;
    core_row_t row = make_row("m9", BOB, 0);
    row.state = COURIER_FAILED;
    row.permanent = 1;
    core_ev_t ev = { .type = CORE_EV_RETRY, .row = &row };
    feed(f, ev, 5);
    assert_state(f, "m9", COURIER_FAILED);
    assert_int_equal(state_of(f, "m9")->permanent, 0);
    assert_int_equal(state_of(f, "m9")->notify, 0);
    online(f, 10); /* now it goes out by itself */
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 1);
}

/* ---- behaviour.md §2 error replies ------------------------------------------- */

static void test_error_cancel_is_permanent_never_resent(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_error("m1", BOB, CORE_ERR_CANCEL, "item-not-found"), 10);
    assert_state(f, "m1", COURIER_FAILED);
    assert_int_equal(state_of(f, "m1")->permanent, 1);
    assert_string_equal(state_of(f, "m1")->reason, "item-not-found");
    assert_null(core_find(f->k, "m1"));
    feed(f, ev_type(CORE_EV_LINK_DOWN), 20);
    online(f, 30);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 0);
    feed(f, ev_message("p1", BOB, 90000, 0, 0), 90000);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 0);
}

static void test_error_wait_is_transient_and_resent(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_error("m1", BOB, CORE_ERR_WAIT, "resource-constraint"), 10);
    assert_state(f, "m1", COURIER_FAILED);
    assert_int_equal(state_of(f, "m1")->permanent, 0);
    feed(f, ev_type(CORE_EV_LINK_DOWN), 20);
    online(f, 30);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 1);
}

static void test_error_service_unavailable_third_bounce_permanent(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    for (int i = 1; i <= 3; i++) {
        feed(f, ev_error("m1", BOB, CORE_ERR_CANCEL,
                         i == 2 ? "recipient-unavailable"
                                : "service-unavailable"), i * 100);
        assert_state(f, "m1", COURIER_FAILED);
        assert_int_equal(state_of(f, "m1")->bounces, (unsigned)i);
        assert_int_equal(state_of(f, "m1")->permanent, i == 3);
        feed(f, ev_type(CORE_EV_LINK_DOWN), i * 100 + 1);
        online(f, i * 100 + 2);
        assert_int_equal(count(f, CORE_ACT_TRANSMIT), i < 3 ? 1 : 0);
    }
}

/* behaviour.md §2: three bounces make a message FAILED for good only
 * when nothing from the peer came between them: a message from the peer
 * shows its device is there, and the count starts again. (Under chaos,
 * a peer killed again and again bounced what was in flight to it each
 * time; messages it had in fact received ended FAILED for good, never
 * resent, their receipts lost.) */
static void test_bounces_count_again_after_the_peer_writes(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    for (int i = 1; i <= 2; i++) {
        feed(f, ev_error("m1", BOB, CORE_ERR_CANCEL, "recipient-unavailable"),
             i * 100);
        assert_int_equal(state_of(f, "m1")->bounces, (unsigned)i);
        feed(f, ev_type(CORE_EV_LINK_DOWN), i * 100 + 1);
        online(f, i * 100 + 2);
    }
    feed(f, ev_message("p1", BOB, 400, 0, 0), 400);
    feed(f, ev_error("m1", BOB, CORE_ERR_CANCEL, "recipient-unavailable"),
         500);
    assert_state(f, "m1", COURIER_FAILED);
    assert_int_equal(state_of(f, "m1")->permanent, 0);
    assert_int_equal(state_of(f, "m1")->bounces, 1);
    /* still held: the next peer activity sends it again */
    feed(f, ev_message("p2", BOB, 20000, 0, 0), 20000);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 1);
}

/* STYLE "once per transition": a FAILED message bounced again is stored
 * (reason, bounce count) but not reported to the app again. */
static void test_error_again_on_failed_persists_without_notify(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_error("m1", BOB, CORE_ERR_CANCEL, "service-unavailable"), 10);
    assert_int_equal(state_of(f, "m1")->notify, 1);
    feed(f, ev_error("m1", BOB, CORE_ERR_WAIT, "resource-constraint"), 20);
    assert_state(f, "m1", COURIER_FAILED);
    assert_int_equal(state_of(f, "m1")->bounces, 2);
    assert_string_equal(state_of(f, "m1")->reason, "resource-constraint");
    assert_int_equal(state_of(f, "m1")->notify, 0);
    /* the third bounce makes it permanent: still no new transition */
    feed(f, ev_error("m1", BOB, CORE_ERR_CANCEL, "service-unavailable"), 30);
    assert_int_equal(state_of(f, "m1")->permanent, 1);
    assert_int_equal(state_of(f, "m1")->notify, 0);
}

static void test_error_from_sent_and_offline_fails(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    send_msg(f, "m2", BOB, 0);
    feed(f, ev_acked("m1"), 5);
    feed(f, ev_event("m2", BOB, COURIER_OFFLINE), 5);
    /* ejabberd: offline event, then a bounce when the quota is full */
    feed(f, ev_error("m1", BOB, CORE_ERR_CANCEL, "forbidden"), 10);
    assert_state(f, "m1", COURIER_FAILED);
    feed(f, ev_error("m2", "example.com", CORE_ERR_WAIT,
                     "resource-constraint"), 10);
    assert_state(f, "m2", COURIER_FAILED);
    assert_int_equal(state_of(f, "m2")->from_mask, 1u << COURIER_OFFLINE);
}

static void test_error_never_fails_delivered(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_event("m1", BOB, COURIER_DELIVERED), 5);
    feed(f, ev_error("m1", BOB, CORE_ERR_CANCEL, "forbidden"), 10);
    assert_int_equal(f->out.len, 0);
}

static void test_error_from_third_party_ignored(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_error("m1", CAROL, CORE_ERR_CANCEL, "forbidden"), 10);
    assert_int_equal(f->out.len, 0);
    assert_non_null(core_ignored(f->k));
    feed(f, ev_error("m1", "evil.org", CORE_ERR_CANCEL, "forbidden"), 10);
    assert_int_equal(f->out.len, 0);
}

static void test_error_then_late_ack_keeps_failed(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_error("m1", BOB, CORE_ERR_WAIT, "resource-constraint"), 10);
    feed(f, ev_acked("m1"), 11);
    assert_null(state_of(f, "m1"));
}

/* ---- behaviour.md §2 expiry and pacing -------------------------------------- */

static void test_expiry_fails_unsent_permanently(void **st)
{
    fx_t *f = *st;
    teardown(st);
    core_limits_t l = default_limits();
    l.max_age_ms = 60000;
    setup_with(st, l);
    f = *st;
    send_msg(f, "m1", BOB, 0);   /* offline: FAILED */
    assert_int_equal(core_next_deadline(f->k, at(0)), 60000);
    feed(f, ev_type(CORE_EV_TICK), 59999);
    assert_null(state_of(f, "m1"));
    feed(f, ev_type(CORE_EV_TICK), 60000);
    assert_state(f, "m1", COURIER_FAILED);
    assert_string_equal(state_of(f, "m1")->reason, "expired");
    assert_int_equal(state_of(f, "m1")->permanent, 1);
    online(f, 70000);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 0);
}

/* behaviour.md §1: FAILED is not a dead end, "expired" included. A message that
 * was on the wire when it expired and is then acked moves on to SENT (the
 * executor feeds the stored row: the core let go of it), reason cleared,
 * not permanent, and held again like any SENT message. */
static void test_expiry_then_late_ack_moves_on(void **st)
{
    fx_t *f = *st;
    teardown(st);
    core_limits_t l = default_limits();
    l.max_age_ms = 10000;
    setup_with(st, l);
    f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_type(CORE_EV_TICK), 10000);
    assert_state(f, "m1", COURIER_FAILED);
    assert_string_equal(state_of(f, "m1")->reason, "expired");
    assert_null(core_find(f->k, "m1"));
    core_row_t stored = make_row("m1", BOB, 0);
    stored.state = COURIER_FAILED;
    stored.permanent = 1;
    stored.attempts = 1;
    stored.last_sent_ms = WALL0;
    strcpy(stored.reason, "expired");
    core_ev_t ack = ev_acked("m1");
    ack.row = &stored;
    feed(f, ack, 11000);
    assert_state(f, "m1", COURIER_SENT);
    assert_int_equal(state_of(f, "m1")->from_mask, 1u << COURIER_FAILED);
    assert_int_equal(state_of(f, "m1")->permanent, 0);
    assert_string_equal(state_of(f, "m1")->reason, "");
    assert_int_equal(state_of(f, "m1")->notify, 1);
    assert_non_null(core_find(f->k, "m1"));
    assert_int_equal(core_find(f->k, "m1")->state, COURIER_SENT);
    /* SENT is never expired again */
    feed(f, ev_type(CORE_EV_TICK), 30000);
    assert_null(state_of(f, "m1"));
    /* a bounce outranks an ack: a row failed by an error is not moved */
    stored.state = COURIER_FAILED;
    strcpy(stored.id, "m2");
    strcpy(stored.reason, "item-not-found");
    core_ev_t ack2 = ev_acked("m2");
    ack2.row = &stored;
    feed(f, ack2, 31000);
    assert_int_equal(f->out.len, 0);
}

/* behaviour.md §1: a late OFFLINE event after expiry moves it on, and the core
 * holds it again (OFFLINE is unsettled: peer activity may resend it). */
static void test_expiry_then_late_offline_event_holds_it_again(void **st)
{
    fx_t *f = *st;
    teardown(st);
    core_limits_t l = default_limits();
    l.max_age_ms = 10000;
    setup_with(st, l);
    f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_type(CORE_EV_TICK), 10000);
    assert_null(core_find(f->k, "m1"));
    core_row_t stored = make_row("m1", BOB, 0);
    stored.state = COURIER_FAILED;
    stored.permanent = 1;
    stored.attempts = 1;
    stored.last_sent_ms = WALL0;
    strcpy(stored.reason, "expired");
    core_ev_t ev = ev_event("m1", BOB, COURIER_OFFLINE);
    ev.row = &stored;
    feed(f, ev, 11000);
    assert_state(f, "m1", COURIER_OFFLINE);
    assert_int_equal(state_of(f, "m1")->permanent, 0);
    assert_non_null(core_find(f->k, "m1"));
    feed(f, ev_message("p1", BOB, 30000, 0, 0), 30000);
    const char *ids[] = { "m1" };
    assert_transmits(f, ids, 1);
}

static void test_expiry_spares_sent_messages(void **st)
{
    fx_t *f = *st;
    teardown(st);
    core_limits_t l = default_limits();
    l.max_age_ms = 60000;
    setup_with(st, l);
    f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_acked("m1"), 10);
    feed(f, ev_type(CORE_EV_TICK), 120000);
    assert_null(state_of(f, "m1"));
}

static void test_pacing_max_in_flight_keeps_order(void **st)
{
    fx_t *f = *st;
    teardown(st);
    core_limits_t l = default_limits();
    l.max_in_flight = 2;
    setup_with(st, l);
    f = *st;
    const char *ids[] = { "a", "b", "c", "d", "e" };
    for (int i = 0; i < 5; i++)
        send_msg(f, ids[i], BOB, i);
    online(f, 10);
    assert_transmits(f, ids, 2);
    assert_int_equal(core_in_flight(f->k), 2);
    feed(f, ev_acked("a"), 20);
    assert_transmits(f, ids + 2, 1);
    feed(f, ev_event("b", BOB, COURIER_DELIVERED), 30);
    assert_transmits(f, ids + 3, 1);
    feed(f, ev_acked("c"), 40);
    assert_transmits(f, ids + 4, 1);
    feed(f, ev_acked("d"), 41);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 0);
}

/* behaviour.md §2 ack timer: it starts at the send, also for a message still
 * waiting for a window slot. */
static void test_ack_timer_runs_while_waiting_for_a_slot(void **st)
{
    fx_t *f = *st;
    teardown(st);
    core_limits_t l = default_limits();
    l.max_in_flight = 1;
    setup_with(st, l);
    f = *st;
    online(f, 0);
    send_msg(f, "a", BOB, 0);
    send_msg(f, "b", BOB, 0);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 0); /* b waits */
    feed(f, ev_type(CORE_EV_TICK), 30000);
    assert_state(f, "a", COURIER_FAILED);
    assert_state(f, "b", COURIER_FAILED);
    assert_string_equal(state_of(f, "b")->reason, "ack-timeout");
}

/* A core rebuilt from the store after a failure keeps connecting. */
static void test_restored_core_reconnects(void **st)
{
    fx_t *f = *st;
    assert_int_equal(core_started(f->k), 0);
    core_restore_started(f->k, 500);
    assert_int_equal(core_started(f->k), 1);
    assert_int_equal(core_next_deadline(f->k, at(500)), 500);
    feed(f, ev_type(CORE_EV_TICK), 500);
    assert_int_equal(count(f, CORE_ACT_CONNECT), 1);
}

/* ---- behaviour.md §3 events and incoming ------------------------------------ */

static void test_event_only_from_the_recipient(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_event("m1", CAROL, COURIER_DELIVERED), 5);
    assert_int_equal(f->out.len, 0);
    feed(f, ev_event("m1", "example.com", COURIER_DELIVERED), 5);
    assert_int_equal(f->out.len, 0);
    feed(f, ev_event("nope", BOB, COURIER_DELIVERED), 5);
    assert_int_equal(f->out.len, 0);
    assert_string_equal(core_ignored(f->k), "event for an unknown id");
    /* another peer's id named by bob */
    send_msg(f, "c1", CAROL, 0);
    feed(f, ev_event("c1", BOB, COURIER_DISPLAYED), 6);
    assert_int_equal(f->out.len, 0);
    assert_int_equal(core_find(f->k, "m1")->state, COURIER_QUEUED);
}

static void test_malformed_event_is_einval(void **st)
{
    fx_t *f = *st;
    core_ev_t ev = ev_event("m1", BOB, COURIER_FAILED);
    assert_int_equal(feed_rc(f, ev, 0), COURIER_EINVAL);
    ev = ev_event(NULL, BOB, COURIER_DELIVERED);
    assert_int_equal(feed_rc(f, ev, 0), COURIER_EINVAL);
    core_ev_t m = ev_message("", BOB, 0, 0, 0);
    assert_int_equal(feed_rc(f, m, 0), COURIER_EINVAL);
}

static void test_incoming_handed_once_receipt_also_for_duplicate(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    unsigned asked = CORE_ASK_X22_DELIVERED | CORE_ASK_X22_DISPLAYED |
                     CORE_ASK_RECEIPT | CORE_ASK_MARKABLE;
    feed(f, ev_message("p1", BOB, 0, asked, 0), 0);
    assert_int_equal(count(f, CORE_ACT_DELIVER), 1);
    const core_act_t *r = nth(f, CORE_ACT_RECEIPT, 0);
    assert_non_null(r);
    assert_int_equal(r->state, COURIER_DELIVERED);
    assert_int_equal(r->asked, CORE_ASK_X22_DELIVERED | CORE_ASK_RECEIPT |
                                   CORE_ASK_MARKABLE);
    /* deliver precedes the receipt (stored, then handed, then owed) */
    assert_int_equal(f->out.acts[0].type, CORE_ACT_DELIVER);
    feed(f, ev_message("p1", BOB, 0, asked, 1), 100);
    assert_int_equal(count(f, CORE_ACT_DELIVER), 0);
    assert_int_equal(count(f, CORE_ACT_RECEIPT), 1);
}

static void test_incoming_without_requests_gets_no_receipt(void **st)
{
    fx_t *f = *st;
    feed(f, ev_message("p1", BOB, 0, 0, 0), 0);
    assert_int_equal(count(f, CORE_ACT_DELIVER), 1);
    assert_int_equal(count(f, CORE_ACT_RECEIPT), 0);
}

static void test_mark_displayed_then_duplicate_gets_displayed_again(void **st)
{
    fx_t *f = *st;
    unsigned asked = CORE_ASK_X22_DISPLAYED | CORE_ASK_MARKABLE |
                     CORE_ASK_RECEIPT;
    core_ev_t md = { .type = CORE_EV_MARK_DISPLAYED, .id = "p1", .peer = BOB,
                     .asked = asked };
    feed(f, md, 0);
    const core_act_t *r = nth(f, CORE_ACT_RECEIPT, 0);
    assert_int_equal(r->state, COURIER_DISPLAYED);
    assert_int_equal(r->asked, CORE_ASK_X22_DISPLAYED | CORE_ASK_MARKABLE);
    core_ev_t dup = ev_message("p1", BOB, 0, asked, 1);
    dup.displayed_before = 1;
    feed(f, dup, 10);
    assert_int_equal(count(f, CORE_ACT_RECEIPT), 2);
    assert_int_equal(nth(f, CORE_ACT_RECEIPT, 1)->state, COURIER_DISPLAYED);
    /* a sender that asked only for delivery gets no displayed event */
    md.asked = CORE_ASK_RECEIPT;
    feed(f, md, 20);
    assert_int_equal(count(f, CORE_ACT_RECEIPT), 0);
}

static void test_xep0333_displayed_covers_earlier_messages(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    send_msg(f, "c1", CAROL, 1);
    send_msg(f, "m2", BOB, 2);
    send_msg(f, "m3", BOB, 3);
    feed(f, ev_acked("m1"), 5); /* behaviour.md §11: the server has it */
    core_ev_t ev = ev_event("m2", BOB, COURIER_DISPLAYED);
    ev.cumulative = 1;
    feed(f, ev, 10);
    assert_state(f, "m2", COURIER_DISPLAYED);
    assert_state(f, "m1", COURIER_DISPLAYED);
    assert_null(state_of(f, "c1"));
    assert_null(state_of(f, "m3"));
    const core_act_t *p = nth(f, CORE_ACT_PROMOTE_DISPLAYED, 0);
    assert_non_null(p);
    assert_int_equal(p->by_created, 1);
    assert_int_equal(p->before_ms, WALL0 + 2);
}

/* behaviour.md §11 (issue 13, item 2): a and b go to bob; bob's old session
 * vanishes and the server bounces a; b reaches bob's new session and bob
 * reads it. The cumulative displayed must not settle a: it goes out again. */
static void test_xep0333_displayed_skips_bounced_and_resends_it(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "a", BOB, 0);
    send_msg(f, "b", BOB, 1);
    feed(f, ev_acked("a"), 5);
    feed(f, ev_acked("b"), 5);
    feed(f, ev_error("a", BOB, CORE_ERR_CANCEL, "recipient-unavailable"),
         100);
    assert_state(f, "a", COURIER_FAILED);
    feed(f, ev_event("b", BOB, COURIER_DELIVERED), 200);
    assert_null(core_find(f->k, "b"));
    core_row_t stored = make_row("b", BOB, 1);
    stored.state = COURIER_DELIVERED;
    stored.attempts = 1;
    stored.last_sent_ms = WALL0 + 1;
    core_ev_t ev = ev_event("b", BOB, COURIER_DISPLAYED);
    ev.row = &stored;
    ev.cumulative = 1;
    feed(f, ev, 300);
    assert_state(f, "b", COURIER_DISPLAYED);
    assert_state(f, "a", COURIER_QUEUED); /* FAILED -> QUEUED: resent */
    assert_int_equal(state_of(f, "a")->from_mask, 1u << COURIER_FAILED);
    const char *ids[] = { "a" };
    assert_transmits(f, ids, 1);
    assert_non_null(core_find(f->k, "a"));
    feed(f, ev_event("a", BOB, COURIER_DELIVERED), 400);
    assert_state(f, "a", COURIER_DELIVERED);
}

/* behaviour.md §11: only SENT/OFFLINE written before the marked message count; a
 * held marked message (no DELIVERED first) takes the same rule. */
static void test_xep0333_displayed_covers_only_what_was_written_before(
    void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "a", BOB, 0);
    send_msg(f, "q", BOB, 0);  /* still QUEUED: the server has not got it */
    send_msg(f, "b", BOB, 1);
    send_msg(f, "c", BOB, 2);
    feed(f, ev_acked("a"), 5);
    feed(f, ev_error("a", BOB, CORE_ERR_WAIT, "resource-constraint"), 10);
    core_row_t retry = *core_find(f->k, "a");
    core_ev_t r = { .type = CORE_EV_RETRY, .row = &retry };
    feed(f, r, 20);            /* a is written again after b */
    feed(f, ev_acked("a"), 25);
    assert_state(f, "a", COURIER_SENT);
    feed(f, ev_acked("b"), 25);
    feed(f, ev_acked("c"), 25);
    core_ev_t ev = ev_event("c", BOB, COURIER_DISPLAYED);
    ev.cumulative = 1;
    feed(f, ev, 30);
    assert_state(f, "c", COURIER_DISPLAYED);
    assert_state(f, "b", COURIER_DISPLAYED);
    assert_null(state_of(f, "a"));
    assert_null(state_of(f, "q"));
    assert_int_equal(core_find(f->k, "a")->state, COURIER_SENT);
    assert_int_equal(core_find(f->k, "q")->state, COURIER_QUEUED);
}

/* ---- behaviour.md §4 watchdog ----------------------------------------------- */

static void test_watchdog_pings_after_silence_drops_after_timeout(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    assert_int_equal(core_next_deadline(f->k, at(0)), 30000);
    feed(f, ev_type(CORE_EV_TICK), 29999);
    assert_int_equal(count(f, CORE_ACT_PING), 0);
    feed(f, ev_type(CORE_EV_TICK), 30000);
    assert_int_equal(count(f, CORE_ACT_PING), 1);
    assert_int_equal(core_next_deadline(f->k, at(30000)), 60000);
    feed(f, ev_type(CORE_EV_TICK), 60000); /* silence lasts: ping again */
    assert_int_equal(count(f, CORE_ACT_PING), 1);
    assert_int_equal(core_next_deadline(f->k, at(60000)), 63000);
    feed(f, ev_type(CORE_EV_TICK), 62999);
    assert_int_equal(count(f, CORE_ACT_DROP_LINK), 0);
    feed(f, ev_type(CORE_EV_TICK), 63000); /* two pings unanswered */
    assert_int_equal(count(f, CORE_ACT_DROP_LINK), 1);
}

static void test_watchdog_any_inbound_data_is_an_answer(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    feed(f, ev_type(CORE_EV_TICK), 30000);
    assert_int_equal(count(f, CORE_ACT_PING), 1);
    feed(f, ev_type(CORE_EV_INBOUND), 31000);
    assert_int_equal(core_next_deadline(f->k, at(31000)), 61000);
    feed(f, ev_type(CORE_EV_TICK), 60999);
    assert_int_equal(f->out.len, 0);
    feed(f, ev_type(CORE_EV_TICK), 63000); /* the first ping was answered */
    assert_int_equal(count(f, CORE_ACT_DROP_LINK), 0);
    assert_int_equal(count(f, CORE_ACT_PING), 1);
}

/* ---- behaviour.md §10 network changes -------------------------------------- */

/* A link that is up is probed at once: the ping goes out on the call, not
 * after ping_interval_ms of silence, and a dead link is cut
 * ping_timeout_ms after the call. */
static void test_network_change_online_pings_at_once_cut_after_timeout(
    void **st)
{
    fx_t *f = *st;
    feed(f, ev_type(CORE_EV_START), 0);
    online(f, 100);
    feed(f, ev_type(CORE_EV_NETWORK_CHANGED), 5000);
    assert_int_equal(f->out.len, 1);
    assert_int_equal(count(f, CORE_ACT_PING), 1);
    assert_int_equal(core_next_deadline(f->k, at(5000)), 5000 + 30000);
    feed(f, ev_type(CORE_EV_TICK), 35000); /* the interval's own ping */
    assert_int_equal(count(f, CORE_ACT_PING), 1);
    assert_int_equal(core_next_deadline(f->k, at(35000)), 5000 + 33000);
    feed(f, ev_type(CORE_EV_TICK), 37999);
    assert_int_equal(count(f, CORE_ACT_DROP_LINK), 0);
    feed(f, ev_type(CORE_EV_TICK), 38000);
    assert_int_equal(count(f, CORE_ACT_DROP_LINK), 1);
}

/* The probe's answer (any inbound data) keeps the link. */
static void test_network_change_answered_probe_keeps_link(void **st)
{
    fx_t *f = *st;
    feed(f, ev_type(CORE_EV_START), 0);
    online(f, 100);
    feed(f, ev_type(CORE_EV_NETWORK_CHANGED), 5000);
    feed(f, ev_type(CORE_EV_INBOUND), 5040);
    assert_int_equal(core_next_deadline(f->k, at(5040)), 5040 + 30000);
    feed(f, ev_type(CORE_EV_TICK), 35039);
    assert_int_equal(f->out.len, 0);
    feed(f, ev_type(CORE_EV_TICK), 38000);
    assert_int_equal(count(f, CORE_ACT_DROP_LINK), 0);
}

/* A ping already unanswered keeps its earlier deadline: a second probe
 * never postpones the cut. */
static void test_network_change_keeps_earlier_ping_deadline(void **st)
{
    fx_t *f = *st;
    feed(f, ev_type(CORE_EV_START), 0);
    online(f, 0);
    feed(f, ev_type(CORE_EV_TICK), 30000); /* the watchdog's ping */
    feed(f, ev_type(CORE_EV_NETWORK_CHANGED), 40000);
    assert_int_equal(count(f, CORE_ACT_PING), 1);
    assert_int_equal(core_next_deadline(f->k, at(40000)), 63000);
    feed(f, ev_type(CORE_EV_TICK), 63000);
    assert_int_equal(count(f, CORE_ACT_DROP_LINK), 1);
}

/* A link that is down reconnects now instead of waiting out its backoff,
 * and the backoff starts over from reconnect_min_ms. */
static void test_network_change_offline_reconnects_now(void **st)
{
    fx_t *f = *st;
    feed(f, ev_type(CORE_EV_START), 0);
    int64_t t = 0;
    for (int i = 0; i < 7; i++) { /* grow the backoff to its 60 s ceiling */
        feed(f, ev_type(CORE_EV_LINK_DOWN), t);
        t = core_next_deadline(f->k, at(t));
        feed(f, ev_type(CORE_EV_TICK), t);
    }
    feed(f, ev_type(CORE_EV_LINK_DOWN), t);
    assert_true(core_next_deadline(f->k, at(t)) - t >= 30000);
    feed(f, ev_type(CORE_EV_NETWORK_CHANGED), t + 10);
    assert_int_equal(count(f, CORE_ACT_CONNECT), 1);
    assert_int_equal(count(f, CORE_ACT_LINK), 1);
    assert_int_equal(nth(f, CORE_ACT_LINK, 0)->link,
                     COURIER_LINK_CONNECTING);
    feed(f, ev_type(CORE_EV_LINK_DOWN), t + 20); /* the new network fails */
    assert_true(core_next_deadline(f->k, at(t + 20)) - (t + 20) <= 1000);
}

/* During a connect attempt the attempt runs on (a burst of OS reports does
 * not churn it); if it fails, the next one goes at once. */
static void test_network_change_while_connecting_retries_at_once(void **st)
{
    fx_t *f = *st;
    feed(f, ev_type(CORE_EV_START), 0);
    assert_int_equal(count(f, CORE_ACT_CONNECT), 1);
    feed(f, ev_type(CORE_EV_NETWORK_CHANGED), 10);
    feed(f, ev_type(CORE_EV_NETWORK_CHANGED), 11);
    assert_int_equal(f->out.len, 0);
    feed(f, ev_type(CORE_EV_LINK_DOWN), 50);
    assert_int_equal(core_next_deadline(f->k, at(50)), 50);
    feed(f, ev_type(CORE_EV_TICK), 50);
    assert_int_equal(count(f, CORE_ACT_CONNECT), 1);
    /* only that once: the next failure backs off again */
    feed(f, ev_type(CORE_EV_LINK_DOWN), 60);
    assert_true(core_next_deadline(f->k, at(60)) > 60);
}

/* Connects in 60 s against a server that cuts every attempt at once, with
 * a courier_network_changed every `every_ms` (0: never). */
static size_t connects_in_a_minute(fx_t *f, int64_t every_ms)
{
    size_t connects = 0;
    feed(f, ev_type(CORE_EV_START), 0);
    for (int64_t t = 0; t <= 60000; t += 50) {
        if (t > 0)
            feed(f, ev_type(CORE_EV_TICK), t);
        size_t c = count(f, CORE_ACT_CONNECT);
        if (!c && every_ms && t % every_ms == 0) {
            feed(f, ev_type(CORE_EV_NETWORK_CHANGED), t);
            c = count(f, CORE_ACT_CONNECT);
        }
        connects += c;
        if (c)
            feed(f, ev_type(CORE_EV_LINK_DOWN), t); /* cut at once */
    }
    return connects;
}

/* Review L3: each network change skipped the backoff, so an app (or a
 * flapping network) calling courier_network_changed in a loop made a
 * reconnect storm against a server that cuts every link. The backoff is
 * skipped at most once per skip period, which grows like the backoff
 * (reconnect_min_ms doubling to reconnect_max_ms) until a link holds. */
static void test_network_change_loop_makes_no_reconnect_storm(void **st)
{
    fx_t *f = *st;
    size_t looped = connects_in_a_minute(f, 50);
    fx_t *g;
    setup((void **)&g);
    size_t quiet = connects_in_a_minute(g, 0);
    teardown((void **)&g);
    print_message("connects in 60 s: %zu with a network change every 50 ms, "
                  "%zu without\n", looped, quiet);
    assert_true(quiet >= 5 && quiet <= 8);
    assert_true(looped <= 2 * quiet + 8);
}

/* A link that held resets the skip period: the next change skips at
 * once again. */
static void test_network_change_skips_again_after_a_stable_link(void **st)
{
    fx_t *f = *st;
    feed(f, ev_type(CORE_EV_START), 0);
    feed(f, ev_type(CORE_EV_LINK_DOWN), 10);
    feed(f, ev_type(CORE_EV_NETWORK_CHANGED), 20);
    assert_int_equal(count(f, CORE_ACT_CONNECT), 1);
    feed(f, ev_type(CORE_EV_LINK_DOWN), 30);
    feed(f, ev_type(CORE_EV_NETWORK_CHANGED), 40); /* within the period */
    assert_int_equal(count(f, CORE_ACT_CONNECT), 0);
    int64_t t = core_next_deadline(f->k, at(40));
    assert_true(t > 40);
    feed(f, ev_type(CORE_EV_TICK), t);
    assert_int_equal(count(f, CORE_ACT_CONNECT), 1);
    online(f, t + 10);
    feed(f, ev_type(CORE_EV_LINK_DOWN), t + 10 + 20000); /* it held */
    feed(f, ev_type(CORE_EV_NETWORK_CHANGED), t + 10 + 20010);
    assert_int_equal(count(f, CORE_ACT_CONNECT), 1);
}

/* Stopped, or the login refused: a network change connects nothing. */
static void test_network_change_stopped_or_refused_does_nothing(void **st)
{
    fx_t *f = *st;
    feed(f, ev_type(CORE_EV_NETWORK_CHANGED), 0);
    assert_int_equal(f->out.len, 0);
    assert_int_equal(core_next_deadline(f->k, at(0)), -1);
    feed(f, ev_type(CORE_EV_START), 10);
    feed(f, ev_type(CORE_EV_AUTH_FAILED), 20);
    feed(f, ev_type(CORE_EV_NETWORK_CHANGED), 30);
    assert_int_equal(f->out.len, 0);
    assert_int_equal(core_next_deadline(f->k, at(30)), -1);
    assert_non_null(core_ignored(f->k));
}

/* ---- start-up and memory -------------------------------------------- */

static void test_load_adopts_unsettled_only_and_resends(void **st)
{
    fx_t *f = *st;
    core_row_t rows[4];
    rows[0] = make_row("q", BOB, 0);
    rows[1] = make_row("d", BOB, 1);
    rows[1].state = COURIER_DELIVERED;
    rows[2] = make_row("f", BOB, 2);
    rows[2].state = COURIER_FAILED;
    rows[2].attempts = 4;
    rows[3] = make_row("p", BOB, 3);
    rows[3].state = COURIER_FAILED;
    rows[3].permanent = 1;
    for (int i = 0; i < 4; i++)
        assert_int_equal(core_load(f->k, &rows[i]), COURIER_OK);
    assert_int_equal(core_unsettled(f->k), 2);
    online(f, 10);
    const char *ids[] = { "q", "f" };
    assert_transmits(f, ids, 2);
    assert_int_equal(nth(f, CORE_ACT_TRANSMIT, 1)->attempts, 5);
}

/* Memory is bounded by the unsettled messages, not the history. */
static void test_memory_bounded_by_unsettled(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "m%d", i);
        send_msg(f, id, BOB, i);
        feed(f, ev_event(id, BOB, COURIER_DELIVERED), i);
    }
    assert_int_equal(core_unsettled(f->k), 0);
    assert_int_equal(core_in_flight(f->k), 0);
}

/* Fault loop (nghttp2/SQLite style): fail allocation N until the scenario
 * completes; every failure is a clean ENOMEM, never a crash or a leak. */
static void scenario(core_t *k, int *rc_out)
{
    core_out_t out;
    core_out_init(&out);
    core_ev_t up = { .type = CORE_EV_LINK_UP };
    int rc = core_feed(k, &up, at(0), &out);
    char id[16];
    for (int i = 0; rc == COURIER_OK && i < 80; i++) {
        snprintf(id, sizeof(id), "m%d", i);
        core_row_t r = make_row(id, BOB, i);
        core_ev_t ev = { .type = CORE_EV_SEND, .row = &r };
        core_out_reset(&out);
        rc = core_feed(k, &ev, at(i), &out);
    }
    if (rc == COURIER_OK) {
        core_ev_t m = ev_message("p1", BOB, 100000, CORE_ASK_RECEIPT, 0);
        core_out_reset(&out);
        rc = core_feed(k, &m, at(100000), &out);
    }
    core_out_free(&out);
    *rc_out = rc;
}

static void test_fault_loop_allocation_failures(void **st)
{
    (void)st;
    core_limits_t lim = default_limits();
    int completed = 0;
    for (unsigned long n = 1; n < 2000 && !completed; n++) {
        core_t *k = NULL;
        util_fail_alloc_after(n);
        int rc = core_new(&k, &lim);
        if (rc == COURIER_OK) {
            scenario(k, &rc);
            core_free(k);
        }
        util_fail_alloc_after(0);
        assert_true(rc == COURIER_OK || rc == COURIER_ENOMEM);
        completed = rc == COURIER_OK;
    }
    assert_true(completed);
}

/* behaviour.md §2: only wait / service-unavailable / recipient-unavailable are
 * transient; modify and auth are permanent like cancel. */
static void test_error_modify_and_auth_are_permanent(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    send_msg(f, "m2", BOB, 0);
    feed(f, ev_error("m1", BOB, CORE_ERR_MODIFY, "bad-request"), 10);
    assert_state(f, "m1", COURIER_FAILED);
    assert_int_equal(state_of(f, "m1")->permanent, 1);
    feed(f, ev_error("m2", BOB, CORE_ERR_AUTH, "forbidden"), 10);
    assert_state(f, "m2", COURIER_FAILED);
    assert_int_equal(state_of(f, "m2")->permanent, 1);
    feed(f, ev_type(CORE_EV_LINK_DOWN), 20);
    online(f, 30);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 0);
}

/* behaviour.md §2: wait-type bounces count too; the third is permanent. */
static void test_error_wait_third_bounce_permanent(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    for (int i = 1; i <= 3; i++) {
        feed(f, ev_error("m1", BOB, CORE_ERR_WAIT, "resource-constraint"),
             i * 100);
        assert_int_equal(state_of(f, "m1")->bounces, (unsigned)i);
        assert_int_equal(state_of(f, "m1")->permanent, i == 3);
        feed(f, ev_type(CORE_EV_LINK_DOWN), i * 100 + 1);
        online(f, i * 100 + 2);
        assert_int_equal(count(f, CORE_ACT_TRANSMIT), i < 3 ? 1 : 0);
    }
}

/* behaviour.md §2: never FAILED from DELIVERED/DISPLAYED, even when the engine
 * feeds the stored row of the settled message. */
static void test_error_never_fails_settled_stored_row(void **st)
{
    fx_t *f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_event("m1", BOB, COURIER_DELIVERED), 5);
    core_row_t stored = make_row("m1", BOB, 0);
    stored.state = COURIER_DELIVERED;
    core_ev_t err = ev_error("m1", BOB, CORE_ERR_CANCEL, "forbidden");
    err.row = &stored;
    feed(f, err, 10);
    assert_int_equal(f->out.len, 0);
    stored.state = COURIER_DISPLAYED;
    feed(f, err, 20);
    assert_int_equal(f->out.len, 0);
}

/* behaviour.md §2 expiry and ack timer concern unconfirmed messages only: a SENT
 * message resent by peer activity long after max_age neither expires nor
 * times out. */
static void test_sent_resent_by_peer_neither_expires_nor_times_out(void **st)
{
    fx_t *f = *st;
    teardown(st);
    core_limits_t l = default_limits();
    l.max_age_ms = 60000;
    setup_with(st, l);
    f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_acked("m1"), 10);
    feed(f, ev_message("p1", BOB, 70000, 0, 0), 70000);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 1);
    assert_null(state_of(f, "m1"));
    feed(f, ev_type(CORE_EV_TICK), 100000);
    assert_null(state_of(f, "m1"));
    assert_int_equal(core_find(f->k, "m1")->state, COURIER_SENT);
}

/* A manual retry restarts the expiry clock: a retried message is not
 * expired moments after the user asked for it. */
static void test_manual_retry_restarts_expiry_clock(void **st)
{
    fx_t *f = *st;
    teardown(st);
    core_limits_t l = default_limits();
    l.max_age_ms = 60000;
    setup_with(st, l);
    f = *st;
    online(f, 0);
    send_msg(f, "m1", BOB, 0);
    feed(f, ev_type(CORE_EV_TICK), 30000);
    assert_state(f, "m1", COURIER_FAILED);
    core_ev_t ev = { .type = CORE_EV_RETRY, .row = core_find(f->k, "m1") };
    feed(f, ev, 50000);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 1);
    feed(f, ev_type(CORE_EV_TICK), 60000);
    assert_null(state_of(f, "m1"));
    feed(f, ev_acked("m1"), 61000);
    assert_state(f, "m1", COURIER_SENT);
}

/* behaviour.md §2 pacing: a bounced message leaves the wire and frees its slot. */
static void test_transient_error_frees_window_slot(void **st)
{
    fx_t *f = *st;
    teardown(st);
    core_limits_t l = default_limits();
    l.max_in_flight = 1;
    setup_with(st, l);
    f = *st;
    online(f, 0);
    send_msg(f, "a", BOB, 0);
    send_msg(f, "b", BOB, 1);
    assert_int_equal(count(f, CORE_ACT_TRANSMIT), 0);
    feed(f, ev_error("a", BOB, CORE_ERR_WAIT, "resource-constraint"), 10);
    assert_state(f, "a", COURIER_FAILED);
    const char *ids[] = { "b" };
    assert_transmits(f, ids, 1);
    assert_int_equal(core_in_flight(f->k), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_send_online_is_queued_and_transmitted),
        T(test_server_ack_moves_queued_to_sent),
        T(test_offline_event_reached_and_kept_for_delivery),
        T(test_states_only_move_forward),
        T(test_case_5_2_displayed_implies_delivered),
        T(test_display_status_mapping_ranks),
        T(test_ack_timer_fails_then_late_ack_wins),
        T(test_ack_timer_ignores_confirmed_message),
        T(test_late_event_moves_failed_on),
        T(test_disconnect_fails_queued_keeps_sent),
        T(test_disconnect_send_while_offline_fails_at_once),
        T(test_reconnect_resends_oldest_first_with_original_id),
        T(test_reconnect_backoff_grows_with_jitter_and_resets),
        T(test_short_lived_link_does_not_reset_backoff),
        T(test_auth_failure_is_not_retried),
        T(test_stop_cancels_reconnect),
        T(test_stalled_connect_is_cut),
        T(test_case_5_3_peer_activity_implicit_read),
        T(test_peer_activity_implicit_read_can_be_off),
        T(test_case_5_1_and_5_4_peer_activity_resends_unconfirmed),
        T(test_peer_activity_respects_resend_grace),
        T(test_peer_activity_duplicate_changes_nothing),
        T(test_peer_activity_offline_does_not_transmit),
        T(test_manual_retry_sends_failed_at_once),
        T(test_resends_are_counted_by_cause),
        T(test_manual_retry_is_counted),
        T(test_manual_retry_refuses_non_failed),
        T(test_manual_retry_of_permanent_failure),
        T(test_manual_retry_offline_clears_permanent_quietly),
        T(test_error_cancel_is_permanent_never_resent),
        T(test_error_wait_is_transient_and_resent),
        T(test_error_service_unavailable_third_bounce_permanent),
        T(test_bounces_count_again_after_the_peer_writes),
        T(test_error_again_on_failed_persists_without_notify),
        T(test_error_from_sent_and_offline_fails),
        T(test_error_never_fails_delivered),
        T(test_error_from_third_party_ignored),
        T(test_error_then_late_ack_keeps_failed),
        T(test_expiry_fails_unsent_permanently),
        T(test_expiry_spares_sent_messages),
        T(test_expiry_then_late_ack_moves_on),
        T(test_expiry_then_late_offline_event_holds_it_again),
        T(test_pacing_max_in_flight_keeps_order),
        T(test_ack_timer_runs_while_waiting_for_a_slot),
        T(test_restored_core_reconnects),
        T(test_event_only_from_the_recipient),
        T(test_malformed_event_is_einval),
        T(test_incoming_handed_once_receipt_also_for_duplicate),
        T(test_incoming_without_requests_gets_no_receipt),
        T(test_mark_displayed_then_duplicate_gets_displayed_again),
        T(test_xep0333_displayed_covers_earlier_messages),
        T(test_xep0333_displayed_skips_bounced_and_resends_it),
        T(test_xep0333_displayed_covers_only_what_was_written_before),
        T(test_watchdog_pings_after_silence_drops_after_timeout),
        T(test_watchdog_any_inbound_data_is_an_answer),
        T(test_network_change_online_pings_at_once_cut_after_timeout),
        T(test_network_change_answered_probe_keeps_link),
        T(test_network_change_keeps_earlier_ping_deadline),
        T(test_network_change_offline_reconnects_now),
        T(test_network_change_while_connecting_retries_at_once),
        T(test_network_change_loop_makes_no_reconnect_storm),
        T(test_network_change_skips_again_after_a_stable_link),
        T(test_network_change_stopped_or_refused_does_nothing),
        T(test_load_adopts_unsettled_only_and_resends),
        T(test_memory_bounded_by_unsettled),
        T(test_error_modify_and_auth_are_permanent),
        T(test_error_wait_third_bounce_permanent),
        T(test_error_never_fails_settled_stored_row),
        T(test_sent_resent_by_peer_neither_expires_nor_times_out),
        T(test_manual_retry_restarts_expiry_clock),
        T(test_transient_error_frees_window_slot),
        cmocka_unit_test(test_fault_loop_allocation_failures),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
