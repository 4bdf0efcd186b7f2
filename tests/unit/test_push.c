/* SPDX-License-Identifier: MIT */
/* Push (XEP-0357, behaviour.md §10): the arguments courier_push_enable
 * refuses, what it stores while offline (read from the file with sqlite3),
 * the stanzas lib/push.c builds, and how it reads the server's answer. No
 * server: the live tests (tests/integration/test_live.c, "push") cover the
 * wire. Linked with the static library (lib/push.h is internal). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <sqlite3.h>
#include <strophe.h>

#include <pthread.h>

#include "courier.h"
#include "engine.h"
#include "push.h"

typedef struct {
    char dir[64];
    char db[128];
    courier_t *c;
} fx_t;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void open_handle(fx_t *f)
{
    courier_config_t cfg;
    courier_config_init(&cfg);
    cfg.jid = "dave@example.com";
    cfg.password = "pw";
    cfg.db_path = f->db;
    cfg.host = "127.0.0.1";
    cfg.port = 1; /* never started here */
    if (courier_open(&f->c, &cfg, NULL, NULL) != COURIER_OK)
        fail_msg("open: %s", courier_last_error());
}

static int setup(void **st)
{
    fx_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->dir, "/tmp/courier-push-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/store.db", f->dir);
    open_handle(f);
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    fx_t *f = *st;
    char p[160];
    courier_close(f->c);
    const char *ext[] = { "", "-wal", "-shm" };
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", f->db, ext[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* The file as another reader sees it: "service|node|secret" of the
 * registration ("" when none, "NULL" for no secret), then the owed
 * disables, oldest first, "service|node" separated by spaces. */
static void read_file(fx_t *f, char *reg, size_t reg_n, char *owed,
                      size_t owed_n)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY,
                                      NULL), SQLITE_OK);
    reg[0] = owed[0] = '\0';
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT service, node, "
                                        "coalesce(secret, 'NULL') FROM push",
                                        -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        snprintf(reg, reg_n, "%s|%s|%s", sqlite3_column_text(st, 0),
                 sqlite3_column_text(st, 1), sqlite3_column_text(st, 2));
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT service, node FROM "
                                        "push_off ORDER BY n", -1, &st,
                                        NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        size_t len = strlen(owed);
        snprintf(owed + len, owed_n - len, "%s%s|%s", len ? " " : "",
                 sqlite3_column_text(st, 0), sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void expect_einval(courier_t *c, const char *service,
                          const char *node, const char *secret,
                          const char *detail)
{
    assert_int_equal(courier_push_enable(c, service, node, secret),
                     COURIER_EINVAL);
    if (!strstr(courier_last_error(), detail))
        fail_msg("last error \"%s\" does not name \"%s\"",
                 courier_last_error(), detail);
}

/* behaviour.md §10: bad arguments are COURIER_EINVAL, the argument named
 * in courier_last_error(), and nothing is stored. */
static void test_enable_refuses_bad_arguments(void **st)
{
    fx_t *f = *st;
    char big[1100];
    memset(big, 'n', sizeof(big));
    big[1024] = '\0'; /* 1024 bytes: one too many */
    assert_int_equal(courier_push_enable(NULL, "push.example.com", "n",
                                         NULL), COURIER_EINVAL);
    assert_int_equal(courier_push_disable(NULL), COURIER_EINVAL);
    expect_einval(f->c, NULL, "n", NULL, "service_jid is NULL");
    expect_einval(f->c, "", "n", NULL, "service_jid is empty");
    expect_einval(f->c, "push example.com", "n", NULL, "not a JID");
    expect_einval(f->c, "@push.example.com", "n", NULL, "not a JID");
    expect_einval(f->c, "a@b@push.example.com", "n", NULL, "not a JID");
    expect_einval(f->c, "push.example.com\x01", "n", NULL, "service_jid");
    expect_einval(f->c, "push.example.com", NULL, NULL, "node is NULL");
    expect_einval(f->c, "push.example.com", "", NULL, "node is empty");
    expect_einval(f->c, "push.example.com", big, NULL,
                  "node is 1024 bytes, more than 1023");
    expect_einval(f->c, "push.example.com", "to\x01ken", NULL, "node is not");
    expect_einval(f->c, "push.example.com", "\xff\xfe", NULL, "node is not");
    expect_einval(f->c, "push.example.com", "n", "", "secret (NULL for "
                  "none) is empty");
    expect_einval(f->c, "push.example.com", "n", big, "secret");
    expect_einval(f->c, "push.example.com", "n", "s\x02", "secret");
    char jid[COURIER_JID_MAX + 8];
    memset(jid, 'j', sizeof(jid));
    strcpy(jid + COURIER_JID_MAX - 12, ".example.com"); /* 512 bytes */
    expect_einval(f->c, jid, "n", NULL, "service_jid is 512 bytes");
    char reg[2200], owed[256];
    read_file(f, reg, sizeof(reg), owed, sizeof(owed));
    assert_string_equal(reg, "");
    assert_string_equal(owed, "");
    /* the bounds themselves are fine */
    big[1023] = '\0';
    assert_int_equal(courier_push_enable(f->c, "push.example.com", big, big),
                     COURIER_OK);
    assert_int_equal(courier_push_enable(f->c, "app@push.example.com/r",
                                         "n", "s"), COURIER_OK);
}

/* behaviour.md §10: offline the call returns COURIER_OK at once, the
 * registration stored (the secret too, NULL for none); it survives close
 * and open; one that replaces it, or a disable, leaves the old one owed a
 * <disable/>; a disable with nothing remembered does nothing. */
static void test_offline_enable_stored_and_kept_across_open(void **st)
{
    fx_t *f = *st;
    char reg[2200], owed[256];
    int64_t t0 = mono_ms();
    assert_int_equal(courier_push_enable(f->c, "push.example.com", "tok-1",
                                         "s3cret"), COURIER_OK);
    assert_true(mono_ms() - t0 < 1000); /* not online: no wait */
    read_file(f, reg, sizeof(reg), owed, sizeof(owed));
    assert_string_equal(reg, "push.example.com|tok-1|s3cret");
    assert_string_equal(owed, "");

    courier_close(f->c);
    f->c = NULL;
    open_handle(f);
    read_file(f, reg, sizeof(reg), owed, sizeof(owed));
    assert_string_equal(reg, "push.example.com|tok-1|s3cret");

    assert_int_equal(courier_push_enable(f->c, "push.example.com", "tok-2",
                                         NULL), COURIER_OK);
    read_file(f, reg, sizeof(reg), owed, sizeof(owed));
    assert_string_equal(reg, "push.example.com|tok-2|NULL");
    assert_string_equal(owed, "push.example.com|tok-1");

    assert_int_equal(courier_push_disable(f->c), COURIER_OK);
    read_file(f, reg, sizeof(reg), owed, sizeof(owed));
    assert_string_equal(reg, "");
    assert_string_equal(owed, "push.example.com|tok-1 "
                              "push.example.com|tok-2");
    assert_int_equal(courier_push_disable(f->c), COURIER_OK);
    read_file(f, reg, sizeof(reg), owed, sizeof(owed));
    assert_string_equal(owed, "push.example.com|tok-1 "
                              "push.example.com|tok-2");
    /* logout: erase forgets it all */
    assert_int_equal(courier_push_enable(f->c, "push.example.com", "tok-3",
                                         NULL), COURIER_OK);
    assert_int_equal(courier_erase(f->c), COURIER_OK);
    read_file(f, reg, sizeof(reg), owed, sizeof(owed));
    assert_string_equal(reg, "");
    assert_string_equal(owed, "");
}

/* Rendered and parsed again, as the server will read it (libstrophe
 * orders attributes by its hash table: compared by structure). */
static xmpp_stanza_t *reparse(xmpp_ctx_t *ctx, xmpp_stanza_t *st)
{
    char *buf = NULL;
    size_t len = 0;
    assert_non_null(st);
    assert_int_equal(xmpp_stanza_to_text(st, &buf, &len), XMPP_EOK);
    xmpp_stanza_t *back = xmpp_stanza_new_from_string(ctx, buf);
    xmpp_free(ctx, buf);
    xmpp_stanza_release(st);
    assert_non_null(back);
    return back;
}

static int n_children(xmpp_stanza_t *st)
{
    int n = 0;
    for (xmpp_stanza_t *c = xmpp_stanza_get_children(st); c;
         c = xmpp_stanza_get_next(c))
        n++;
    return n;
}

static int n_attributes(xmpp_stanza_t *st)
{
    return xmpp_stanza_get_attribute_count(st);
}

/* The <iq type='set' id> around one <op xmlns='urn:xmpp:push:0' jid node>,
 * and nothing else (no `to`: our own account). */
static xmpp_stanza_t *expect_op(xmpp_stanza_t *iq, const char *id,
                                const char *op, const char *jid,
                                const char *node)
{
    assert_string_equal(xmpp_stanza_get_name(iq), "iq");
    assert_string_equal(xmpp_stanza_get_type(iq), "set");
    assert_string_equal(xmpp_stanza_get_id(iq), id);
    assert_int_equal(n_attributes(iq), 2);
    assert_int_equal(n_children(iq), 1);
    xmpp_stanza_t *el = xmpp_stanza_get_children(iq);
    assert_string_equal(xmpp_stanza_get_name(el), op);
    assert_string_equal(xmpp_stanza_get_ns(el), "urn:xmpp:push:0");
    assert_string_equal(xmpp_stanza_get_attribute(el, "jid"), jid);
    assert_string_equal(xmpp_stanza_get_attribute(el, "node"), node);
    assert_int_equal(n_attributes(el), 3);
    return el;
}

static void expect_field(xmpp_stanza_t *f, const char *var,
                         const char *value)
{
    assert_string_equal(xmpp_stanza_get_name(f), "field");
    assert_string_equal(xmpp_stanza_get_attribute(f, "var"), var);
    assert_int_equal(n_children(f), 1);
    xmpp_stanza_t *v = xmpp_stanza_get_children(f);
    assert_string_equal(xmpp_stanza_get_name(v), "value");
    char *t = xmpp_stanza_get_text(v);
    assert_non_null(t);
    assert_string_equal(t, value);
    xmpp_free(xmpp_stanza_get_context(f), t);
}

/* XEP-0357 §5: the enable and disable the library writes; the secret in
 * an XEP-0004 submit form of FORM_TYPE publish-options; values escaped
 * (they read back the same). */
static void test_enable_and_disable_stanzas(void **st)
{
    (void)st;
    xmpp_ctx_t *ctx = xmpp_ctx_new(NULL, NULL);
    store_push_t reg;
    memset(&reg, 0, sizeof(reg));
    strcpy(reg.service, "push.example.com");
    strcpy(reg.node, "tok<&>'\"1");
    xmpp_stanza_t *s = reparse(ctx, push_build_enable(ctx, "push-1", &reg));
    xmpp_stanza_t *en = expect_op(s, "push-1", "enable", "push.example.com",
                                  "tok<&>'\"1");
    assert_int_equal(n_children(en), 0); /* no secret, no form */
    xmpp_stanza_release(s);

    reg.has_secret = 1;
    strcpy(reg.secret, "s3<cret&");
    s = reparse(ctx, push_build_enable(ctx, "push-2", &reg));
    en = expect_op(s, "push-2", "enable", "push.example.com", "tok<&>'\"1");
    assert_int_equal(n_children(en), 1);
    xmpp_stanza_t *x = xmpp_stanza_get_children(en);
    assert_string_equal(xmpp_stanza_get_name(x), "x");
    assert_string_equal(xmpp_stanza_get_ns(x), "jabber:x:data");
    assert_string_equal(xmpp_stanza_get_type(x), "submit");
    assert_int_equal(n_children(x), 2);
    expect_field(xmpp_stanza_get_children(x), "FORM_TYPE",
                 "http://jabber.org/protocol/pubsub#publish-options");
    expect_field(xmpp_stanza_get_next(xmpp_stanza_get_children(x)),
                 "secret", "s3<cret&");
    xmpp_stanza_release(s);

    s = reparse(ctx, push_build_disable(ctx, "push-3", "push.example.com",
                                        "tok-1"));
    en = expect_op(s, "push-3", "disable", "push.example.com", "tok-1");
    assert_int_equal(n_children(en), 0);
    xmpp_stanza_release(s);
    assert_null(push_build_enable(ctx, "push-4", NULL));
    assert_null(push_build_disable(ctx, NULL, "push.example.com", "n"));
    xmpp_ctx_free(ctx);
}

static int answer(xmpp_ctx_t *ctx, const char *xml, char *cond, char *text)
{
    xmpp_stanza_t *st = xmpp_stanza_new_from_string(ctx, xml);
    assert_non_null(st);
    int rc = push_parse_answer(st, cond, 32, text, 16);
    xmpp_stanza_release(st);
    return rc;
}

/* The server's answer: a result is COURIER_OK; an error is
 * COURIER_EREFUSED with its RFC 6120 condition and text, bounded; an
 * error without a condition says undefined-condition. */
static void test_answers_read(void **st)
{
    (void)st;
    xmpp_ctx_t *ctx = xmpp_ctx_new(NULL, NULL);
    char cond[32], text[16];
    assert_int_equal(answer(ctx, "<iq type='result' id='push-1'/>", cond,
                            text), COURIER_OK);
    assert_string_equal(cond, "");
    assert_int_equal(answer(ctx,
        "<iq type='error' id='push-1'><error type='cancel'>"
        "<feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no push here, "
        "sorry, none at all</text></error></iq>", cond, text),
        COURIER_EREFUSED);
    assert_string_equal(cond, "feature-not-implemented");
    assert_string_equal(text, "no push here, s"); /* bounded: 16 */
    assert_int_equal(answer(ctx, "<iq type='error' id='push-1'><error "
                            "type='cancel'><other xmlns='x'/></error></iq>",
                            cond, text), COURIER_EREFUSED);
    assert_string_equal(cond, "undefined-condition");
    assert_string_equal(text, "");
    assert_int_equal(answer(ctx, "<iq type='error' id='push-1'/>", cond,
                            text), COURIER_EREFUSED);
    assert_string_equal(cond, "undefined-condition");
    /* the server's text goes to on_log and courier_last_error(): cut at a
     * character, never inside one, and no control characters (review) */
    assert_int_equal(answer(ctx,
        "<iq type='error' id='push-1'><error type='cancel'>"
        "<forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>"
        "abcdefghijklmn\xc3\xa9z</text></error></iq>", cond, text),
        COURIER_EREFUSED);
    assert_string_equal(text, "abcdefghijklmn"); /* not half of the é */
    assert_int_equal(answer(ctx,
        "<iq type='error' id='push-1'><error type='cancel'>"
        "<forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>a&#10;b&#9;c"
        "</text></error></iq>", cond, text), COURIER_EREFUSED);
    assert_string_equal(text, "a b c");
    assert_string_equal(courier_strerror(COURIER_EREFUSED),
                        "refused by the server");
    xmpp_ctx_free(ctx);
}

/* ---- a waiting caller, the loop's side driven by hand -------------- */

typedef struct {
    char id[32];
    int n;
} sent_t;

static int keep_id(void *ud, xmpp_stanza_t *st)
{
    sent_t *s = ud;
    const char *id = xmpp_stanza_get_id(st);
    snprintf(s->id, sizeof(s->id), "%s", id ? id : "");
    s->n++;
    xmpp_stanza_release(st);
    return 0;
}

typedef struct {
    push_t *p;
    int rc;
    int64_t ms;
} waiter_t;

static void *enable_and_wait(void *arg)
{
    waiter_t *w = arg;
    int64_t t0 = mono_ms();
    w->rc = push_enable(w->p, "push.example.com", "token-1", NULL, 1);
    w->ms = mono_ms() - t0;
    return NULL;
}

static void wait_written(push_t *p, xmpp_ctx_t *ctx, sent_t *sent)
{
    for (int i = 0; i < 5000 && sent->n == 0; i++) {
        push_pump(p, ctx, 1, keep_id, sent);
        usleep(1000);
    }
    assert_int_equal(sent->n, 1);
}

static xmpp_stanza_t *result_from(xmpp_ctx_t *ctx, const char *id,
                                  const char *from)
{
    xmpp_stanza_t *iq = xmpp_iq_new(ctx, "result", id);
    if (from)
        xmpp_stanza_set_from(iq, from);
    return iq;
}

/* The engine and push state of the fixture's store, driven by hand in
 * place of the session (the handle is closed meanwhile). */
typedef struct {
    engine_t *e;
    push_t *p;
    xmpp_ctx_t *ctx;
} loop_t;

static void loop_open(fx_t *f, loop_t *l, unsigned ack_timeout_ms)
{
    courier_config_t cfg;
    courier_config_init(&cfg);
    cfg.jid = "dave@example.com";
    cfg.password = "pw";
    cfg.db_path = f->db;
    if (ack_timeout_ms)
        cfg.ack_timeout_ms = ack_timeout_ms;
    courier_close(f->c); /* the file, for an engine of our own */
    f->c = NULL;
    memset(l, 0, sizeof(*l));
    assert_int_equal(engine_open(&l->e, &cfg, NULL, NULL), COURIER_OK);
    assert_int_equal(push_new(&l->p, l->e), COURIER_OK);
    l->ctx = xmpp_ctx_new(NULL, NULL);
}

static void loop_close(fx_t *f, loop_t *l)
{
    push_free(l->p);
    xmpp_ctx_free(l->ctx);
    engine_close(l->e);
    open_handle(f); /* for teardown */
}

/* The server's answer, and only the server's, settles a waiting caller:
 * an answer from another device of the account (a full JID) is not taken
 * (review: it could complete or refuse an enable, or drop an owed
 * disable); and courier_close (push_shutdown) makes a waiter leave with
 * COURIER_ECLOSED at once, not after ack_timeout_ms, so the handle can be
 * freed (review: a use-after-free). */
static void test_waiter_settled_by_server_only_and_released_on_close(
    void **st)
{
    fx_t *f = *st;
    loop_t l;
    loop_open(f, &l, 20000);
    push_t *p = l.p;
    xmpp_ctx_t *ctx = l.ctx;
    sent_t sent = { "", 0 };
    push_pump(p, ctx, 1, keep_id, &sent); /* online, nothing stored yet */
    assert_int_equal(sent.n, 0);

    waiter_t w = { p, 1, 0 };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, enable_and_wait, &w), 0);
    wait_written(p, ctx, &sent);
    xmpp_stanza_t *forged = result_from(ctx, sent.id,
                                        "dave@example.com/other-device");
    assert_int_equal(push_on_iq(p, forged), 0);
    xmpp_stanza_release(forged);
    xmpp_stanza_t *real = result_from(ctx, sent.id, NULL);
    assert_int_equal(push_on_iq(p, real), 1);
    xmpp_stanza_release(real);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(w.rc, COURIER_OK);

    /* a second caller, never answered: close releases it */
    sent.n = 0;
    assert_int_equal(pthread_create(&t, NULL, enable_and_wait, &w), 0);
    usleep(100000);
    push_shutdown(p);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(w.rc, COURIER_ECLOSED);
    assert_true(w.ms < 10000);
    loop_close(f, &l);
}

static xmpp_stanza_t *error_of(xmpp_ctx_t *ctx, const char *id,
                                const char *type, const char *cond)
{
    xmpp_stanza_t *iq = xmpp_iq_new(ctx, "error", id);
    xmpp_stanza_t *err = xmpp_stanza_new(ctx);
    xmpp_stanza_set_name(err, "error");
    xmpp_stanza_set_type(err, type);
    xmpp_stanza_t *c = xmpp_stanza_new(ctx);
    xmpp_stanza_set_name(c, cond);
    xmpp_stanza_set_ns(c, "urn:ietf:params:xml:ns:xmpp-stanzas");
    xmpp_stanza_add_child(err, c);
    xmpp_stanza_release(c);
    xmpp_stanza_add_child(iq, err);
    xmpp_stanza_release(err);
    return iq;
}

/* An owed disable the server answers "try later" (an error of type wait)
 * stays owed: the server may still hold the registration and push to an
 * old device token (review: any error forgot it). Any other answer
 * settles it. */
static void test_disable_answered_wait_stays_owed(void **st)
{
    fx_t *f = *st;
    loop_t l;
    loop_open(f, &l, 0);
    push_t *p = l.p;
    xmpp_ctx_t *ctx = l.ctx;
    assert_int_equal(push_enable(p, "push.example.com", "old-token", NULL, 0),
                     COURIER_OK);
    assert_int_equal(push_disable(p, 0), COURIER_OK);
    char reg[256], owed[256];
    read_file(f, reg, sizeof(reg), owed, sizeof(owed));
    assert_string_equal(owed, "push.example.com|old-token");
    sent_t sent = { "", 0 };
    push_pump(p, ctx, 1, keep_id, &sent);
    assert_int_equal(sent.n, 1);
    xmpp_stanza_t *later = error_of(ctx, sent.id, "wait",
                                    "resource-constraint");
    assert_int_equal(push_on_iq(p, later), 1);
    xmpp_stanza_release(later);
    read_file(f, reg, sizeof(reg), owed, sizeof(owed));
    assert_string_equal(owed, "push.example.com|old-token");
    /* the next stream asks again; a final answer settles it */
    push_link_down(p);
    sent.n = 0;
    push_pump(p, ctx, 1, keep_id, &sent);
    assert_int_equal(sent.n, 1);
    xmpp_stanza_t *no = error_of(ctx, sent.id, "cancel", "not-allowed");
    assert_int_equal(push_on_iq(p, no), 1);
    xmpp_stanza_release(no);
    read_file(f, reg, sizeof(reg), owed, sizeof(owed));
    assert_string_equal(owed, "");
    loop_close(f, &l);
}

/* A late answer to a disable settles the row it was written for, not a
 * newer one owed for the same service and node: the app enabled that node
 * again (the enable went out) and disabled it again before the first
 * answer came. Settling by (service, node) dropped the newer disable, and
 * the server kept pushing to a node the app had disabled (a known limit
 * of the last stop's note). */
static void test_stale_disable_answer_keeps_a_newer_owed_disable(void **st)
{
    fx_t *f = *st;
    loop_t l;
    loop_open(f, &l, 0);
    push_t *p = l.p;
    xmpp_ctx_t *ctx = l.ctx;
    char reg[256], owed[256], first[32];
    assert_int_equal(push_enable(p, "push.example.com", "tok", NULL, 0),
                     COURIER_OK);
    assert_int_equal(push_disable(p, 0), COURIER_OK);
    sent_t sent = { "", 0 };
    push_pump(p, ctx, 1, keep_id, &sent); /* the first disable */
    assert_int_equal(sent.n, 1);
    snprintf(first, sizeof(first), "%s", sent.id);
    assert_int_equal(push_enable(p, "push.example.com", "tok", NULL, 0),
                     COURIER_OK);
    sent.n = 0;
    push_pump(p, ctx, 1, keep_id, &sent); /* the enable */
    assert_int_equal(sent.n, 1);
    assert_int_equal(push_disable(p, 0), COURIER_OK);
    read_file(f, reg, sizeof(reg), owed, sizeof(owed));
    assert_string_equal(owed, "push.example.com|tok");
    xmpp_stanza_t *late = result_from(ctx, first, NULL);
    assert_int_equal(push_on_iq(p, late), 1);
    xmpp_stanza_release(late);
    read_file(f, reg, sizeof(reg), owed, sizeof(owed));
    assert_string_equal(owed, "push.example.com|tok");
    /* the newer disable, once written and answered, is settled */
    sent.n = 0;
    push_link_down(p);
    push_pump(p, ctx, 1, keep_id, &sent);
    assert_int_equal(sent.n, 1);
    xmpp_stanza_t *ok = result_from(ctx, sent.id, NULL);
    assert_int_equal(push_on_iq(p, ok), 1);
    xmpp_stanza_release(ok);
    read_file(f, reg, sizeof(reg), owed, sizeof(owed));
    assert_string_equal(owed, "");
    loop_close(f, &l);
}

int main(void)
{
    xmpp_initialize();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_enable_refuses_bad_arguments,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_offline_enable_stored_and_kept_across_open, setup,
            teardown),
        cmocka_unit_test(test_enable_and_disable_stanzas),
        cmocka_unit_test(test_answers_read),
        cmocka_unit_test_setup_teardown(
            test_waiter_settled_by_server_only_and_released_on_close, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_disable_answered_wait_stays_owed,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_stale_disable_answer_keeps_a_newer_owed_disable, setup,
            teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    xmpp_shutdown();
    return rc;
}
