/* SPDX-License-Identifier: MIT */
/* Push (XEP-0357): see push.h and behaviour.md §10. */
#include "push.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util.h"

#define NS_DATA "jabber:x:data"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
/* IQs of ours awaiting an answer on this stream (a ring: the oldest is
 * forgotten past it, its answer then ignored and its work redone at the
 * next login). At most PUSH_OWED_PER_TURN owed disables go per batch. */
#define PENDING_MAX 16
#define PUSH_OWED_PER_TURN 8

typedef struct {
    int used;
    int enable;                    /* 1: an enable, 0: a disable */
    char id[32];
    unsigned gen;                  /* the app's change it was written for */
    char service[COURIER_JID_MAX];
    char node[STORE_PUSH_NODE_MAX];
    int64_t owed_n;                /* disable: the owed row to settle */
} pending_t;

struct push {
    engine_t *e;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    unsigned want;          /* the app's changes so far */
    unsigned done_gen;      /* the newest change the server answered */
    int done_rc;            /* ... its answer */
    char done_why[200];
    int online;             /* the pump saw the link up */
    unsigned downs;         /* link losses */
    int closing;            /* courier_close: waiters leave (ECLOSED) */
    /* loop thread only */
    unsigned stream_gen;    /* the change written on this stream, 0: none */
    unsigned id_n;
    char final_id[32];      /* the last IQ written for stream_gen */
    pending_t pend[PENDING_MAX];
    size_t pend_next;
};

int push_new(push_t **out, engine_t *e)
{
    push_t *p = util_calloc(1, sizeof(*p));
    *out = NULL;
    if (!p)
        return COURIER_ENOMEM;
    p->e = e;
    p->want = 1; /* the store's registration, owed to the first stream */
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    *out = p;
    return COURIER_OK;
}

void push_shutdown(push_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->closing = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void push_free(push_t *p)
{
    if (!p)
        return;
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    util_free(p);
}

/* ---- arguments ------------------------------------------------------- */

static int check_text(const char *what, const char *v, size_t max)
{
    if (!v)
        return util_set_error(COURIER_EINVAL, "%s is NULL", what);
    size_t n = strlen(v);
    if (n == 0)
        return util_set_error(COURIER_EINVAL, "%s is empty", what);
    if (n > max)
        return util_set_error(COURIER_EINVAL, "%s is %zu bytes, more than "
                              "%zu", what, n, max);
    if (!util_xml_text_valid(v))
        return util_set_error(COURIER_EINVAL, "%s is not UTF-8 text XML "
                              "can carry", what);
    return COURIER_OK;
}

int push_check_args(const char *service_jid, const char *node,
                    const char *secret)
{
    char bare[COURIER_JID_MAX];
    int rc = check_text("service_jid", service_jid, COURIER_JID_MAX - 1);
    if (rc != COURIER_OK)
        return rc;
    if (util_jid_bare(service_jid, bare, sizeof(bare)) != 0)
        return util_set_error(COURIER_EINVAL, "service_jid '%.64s' is not "
                              "a JID", service_jid);
    rc = check_text("node", node, STORE_PUSH_NODE_MAX - 1);
    if (rc == COURIER_OK && secret)
        rc = check_text("secret (NULL for none)", secret,
                        STORE_PUSH_SECRET_MAX - 1);
    return rc;
}

/* ---- the app's side ------------------------------------------------- */

static int write_reg(store_t *s, void *ud)
{
    return store_push_set(s, ud);
}

static int clear_reg(store_t *s, void *ud)
{
    return store_push_clear(s, ud);
}

/* The change is stored: tell the loop, and wait for its answer if asked
 * and online. */
static int announce(push_t *p, int wait, const char *what)
{
    pthread_mutex_lock(&p->mu);
    unsigned my = ++p->want;
    int online = p->online;
    unsigned downs = p->downs;
    pthread_mutex_unlock(&p->mu);
    engine_wake(p->e);
    if (!wait || !online)
        return COURIER_OK; /* written at the next login */
    unsigned ms = engine_config(p->e)->ack_timeout_ms;
    /* The deadline is on the library's clock (util_mono_ms), never the
     * wall clock a phone may step; the condition variable's own clock
     * (CLOCK_REALTIME: Apple has no pthread_condattr_setclock) only paces
     * slices of at most 50 ms, so a step costs at most one slice. */
    int64_t deadline = util_mono_ms() + (int64_t)ms;
    int rc = COURIER_OK, timed_out = 0;
    char why[sizeof(p->done_why)];
    pthread_mutex_lock(&p->mu);
    while ((int)(p->done_gen - my) < 0 && p->downs == downs &&
           !p->closing && !timed_out) {
        int64_t left = deadline - util_mono_ms();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct timespec slice;
        clock_gettime(CLOCK_REALTIME, &slice);
        slice.tv_nsec += (long)(left < 50 ? left : 50) * 1000000L;
        if (slice.tv_nsec >= 1000000000L) {
            slice.tv_sec++;
            slice.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->cv, &p->mu, &slice);
    }
    if (p->closing && (int)(p->done_gen - my) < 0) {
        pthread_mutex_unlock(&p->mu);
        return util_set_error(COURIER_ECLOSED, "push %s: the handle was "
                              "closed while waiting; stored", what);
    }
    if ((int)(p->done_gen - my) >= 0) {
        rc = p->done_rc;
        util_strlcpy(why, p->done_why, sizeof(why));
    } else if (p->downs == downs) {
        rc = COURIER_ETIMEDOUT;
    }
    pthread_mutex_unlock(&p->mu);
    if (rc == COURIER_ETIMEDOUT)
        return util_set_error(rc, "push %s: no answer from the server in "
                              "%u ms; stored, written again at the next "
                              "login", what, ms);
    if (rc != COURIER_OK)
        return util_set_error(rc, "push %s: %s", what, why);
    return COURIER_OK;
}

int push_enable(push_t *p, const char *service_jid, const char *node,
                const char *secret, int wait)
{
    int rc = push_check_args(service_jid, node, secret);
    if (rc != COURIER_OK)
        return rc;
    store_push_t *reg = util_calloc(1, sizeof(*reg));
    if (!reg)
        return util_set_error(COURIER_ENOMEM, "out of memory");
    util_strlcpy(reg->service, service_jid, sizeof(reg->service));
    util_strlcpy(reg->node, node, sizeof(reg->node));
    if (secret) {
        reg->has_secret = 1;
        util_strlcpy(reg->secret, secret, sizeof(reg->secret));
    }
    rc = engine_read(p->e, write_reg, reg);
    util_free(reg);
    if (rc != COURIER_OK)
        return rc; /* engine_read recorded the store's detail */
    return announce(p, wait, "enable");
}

int push_disable(push_t *p, int wait)
{
    store_push_t *old = util_calloc(1, sizeof(*old));
    if (!old)
        return util_set_error(COURIER_ENOMEM, "out of memory");
    int rc = engine_read(p->e, clear_reg, old);
    util_free(old);
    if (rc == COURIER_ENOTFOUND)
        return COURIER_OK; /* nothing to disable */
    if (rc != COURIER_OK)
        return rc;
    return announce(p, wait, "disable");
}

/* ---- stanzas -------------------------------------------------------- */

static xmpp_stanza_t *add_child(xmpp_stanza_t *parent, const char *name,
                                const char *ns)
{
    xmpp_stanza_t *el = xmpp_stanza_new(xmpp_stanza_get_context(parent));
    if (!el)
        return NULL;
    int bad = xmpp_stanza_set_name(el, name) != XMPP_EOK ||
              (ns && xmpp_stanza_set_ns(el, ns) != XMPP_EOK) ||
              xmpp_stanza_add_child_ex(parent, el, 0) != XMPP_EOK;
    if (bad) {
        xmpp_stanza_release(el);
        return NULL;
    }
    return el; /* owned by parent */
}

static int add_field(xmpp_stanza_t *x, const char *var, const char *value)
{
    xmpp_stanza_t *f = add_child(x, "field", NULL);
    xmpp_stanza_t *v = f ? add_child(f, "value", NULL) : NULL;
    xmpp_stanza_t *t = v ? xmpp_stanza_new(xmpp_stanza_get_context(x))
                         : NULL;
    if (!t)
        return -1;
    if (xmpp_stanza_set_attribute(f, "var", var) != XMPP_EOK ||
        xmpp_stanza_set_text(t, value) != XMPP_EOK ||
        xmpp_stanza_add_child_ex(v, t, 0) != XMPP_EOK) {
        xmpp_stanza_release(t);
        return -1;
    }
    return 0;
}

static xmpp_stanza_t *build(xmpp_ctx_t *ctx, const char *id, const char *op,
                            const char *service, const char *node,
                            xmpp_stanza_t **op_out)
{
    if (!ctx || !id || !service || !node)
        return NULL;
    xmpp_stanza_t *iq = xmpp_iq_new(ctx, "set", id);
    xmpp_stanza_t *el = iq ? add_child(iq, op, PUSH_NS) : NULL;
    if (!el || xmpp_stanza_set_attribute(el, "jid", service) != XMPP_EOK ||
        xmpp_stanza_set_attribute(el, "node", node) != XMPP_EOK) {
        if (iq)
            xmpp_stanza_release(iq);
        return NULL;
    }
    if (op_out)
        *op_out = el;
    return iq;
}

xmpp_stanza_t *push_build_enable(xmpp_ctx_t *ctx, const char *id,
                                 const store_push_t *reg)
{
    xmpp_stanza_t *en = NULL;
    if (!reg)
        return NULL;
    xmpp_stanza_t *iq = build(ctx, id, "enable", reg->service, reg->node,
                              &en);
    if (!iq || !reg->has_secret)
        return iq;
    /* XEP-0357 §5: publish options the app server checks */
    xmpp_stanza_t *x = add_child(en, "x", NS_DATA);
    if (!x || xmpp_stanza_set_type(x, "submit") != XMPP_EOK ||
        add_field(x, "FORM_TYPE", PUSH_FORM_TYPE) != 0 ||
        add_field(x, "secret", reg->secret) != 0) {
        xmpp_stanza_release(iq);
        return NULL;
    }
    return iq;
}

xmpp_stanza_t *push_build_disable(xmpp_ctx_t *ctx, const char *id,
                                  const char *service_jid, const char *node)
{
    return build(ctx, id, "disable", service_jid, node, NULL);
}

/* The server's words go to on_log and courier_last_error(): no control
 * characters (a newline would fake a log line), and a copy cut short
 * ends before a character, not inside one. */
static void clean_text(char *t)
{
    size_t n = strlen(t);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] < 0x20 || t[i] == 0x7f)
            t[i] = ' ';
    size_t lead = n;
    for (size_t k = 0; k < 4 && lead > 0; k++) {
        lead--;
        if (((unsigned char)t[lead] & 0xc0) != 0x80)
            break;
    }
    unsigned char c = (unsigned char)t[lead];
    size_t want = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    if (lead < n && lead + want > n)
        t[lead] = '\0';
}

int push_parse_answer(xmpp_stanza_t *iq, char *cond, size_t cond_size,
                      char *text, size_t text_size)
{
    if (cond_size)
        cond[0] = '\0';
    if (text_size)
        text[0] = '\0';
    const char *type = iq ? xmpp_stanza_get_type(iq) : NULL;
    if (type && strcmp(type, "result") == 0)
        return COURIER_OK;
    snprintf(cond, cond_size, "undefined-condition");
    xmpp_stanza_t *err = iq ? xmpp_stanza_get_child_by_name(iq, "error")
                            : NULL;
    for (xmpp_stanza_t *c = err ? xmpp_stanza_get_children(err) : NULL; c;
         c = xmpp_stanza_get_next(c)) {
        const char *name = xmpp_stanza_get_name(c);
        const char *ns = xmpp_stanza_get_ns(c);
        if (!xmpp_stanza_is_tag(c) || !name || !ns ||
            strcmp(ns, NS_STANZAS) != 0)
            continue;
        if (strcmp(name, "text") == 0) {
            char *t = xmpp_stanza_get_text(c);
            if (t) {
                snprintf(text, text_size, "%s", t);
                xmpp_free(xmpp_stanza_get_context(c), t);
                if (text_size)
                    clean_text(text);
            }
        } else {
            snprintf(cond, cond_size, "%s", name);
            if (cond_size)
                clean_text(cond);
        }
    }
    return COURIER_EREFUSED;
}

/* ---- the loop's side ------------------------------------------------ */

/* What a stream owes, read in one go (the IQs are written after the
 * store's lock is let go: writing may log, which takes it). */
typedef struct {
    store_push_t owed[PUSH_OWED_PER_TURN];
    size_t n_owed;
    store_push_t reg;
    int have;
} owed_t;

static int collect_owed(void *ud, const store_push_t *reg)
{
    owed_t *o = ud;
    if (o->n_owed == PUSH_OWED_PER_TURN)
        return 1; /* the rest at the next login */
    o->owed[o->n_owed++] = *reg;
    return 0;
}

static int read_all(store_t *s, void *ud)
{
    owed_t *o = ud;
    int rc = store_push_each_owed(s, collect_owed, o);
    if (rc > 0)
        rc = COURIER_OK;
    if (rc == COURIER_OK) {
        rc = store_push_get(s, &o->reg);
        o->have = rc == COURIER_OK;
        if (rc == COURIER_ENOTFOUND)
            rc = COURIER_OK;
    }
    return rc;
}

static pending_t *pend_new(push_t *p, int enable, unsigned gen,
                           const store_push_t *reg)
{
    pending_t *x = &p->pend[p->pend_next];
    p->pend_next = (p->pend_next + 1) % PENDING_MAX;
    memset(x, 0, sizeof(*x));
    x->used = 1;
    x->enable = enable;
    x->gen = gen;
    util_strlcpy(x->service, reg->service, sizeof(x->service));
    util_strlcpy(x->node, reg->node, sizeof(x->node));
    x->owed_n = reg->owed_n;
    snprintf(x->id, sizeof(x->id), "push-%u", ++p->id_n);
    return x;
}

/* 0, or -1 when the IQ could not be written (no memory to build or
 * render it): then it is owed at the next login. */
static int write_iq(push_t *p, pending_t *x, xmpp_stanza_t *st,
                    push_send_fn send, void *ud)
{
    if (!st || send(ud, st) != COURIER_OK) {
        x->used = 0;
        return -1;
    }
    util_strlcpy(p->final_id, x->id, sizeof(p->final_id));
    return 0;
}

/* The server answered the last IQ written for change `gen` (or it could
 * not be written): wake whoever waits for it. */
static void settle(push_t *p, unsigned gen, int rc, const char *why)
{
    pthread_mutex_lock(&p->mu);
    if ((int)(gen - p->done_gen) > 0) {
        p->done_gen = gen;
        p->done_rc = rc;
        util_strlcpy(p->done_why, why ? why : "", sizeof(p->done_why));
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void push_pump(push_t *p, xmpp_ctx_t *ctx, int online, push_send_fn send,
               void *ud)
{
    if (!online)
        return;
    pthread_mutex_lock(&p->mu);
    p->online = 1;
    unsigned want = p->want;
    pthread_mutex_unlock(&p->mu);
    if (p->stream_gen == want)
        return;
    owed_t *o = util_calloc(1, sizeof(*o));
    if (!o)
        return; /* again next turn */
    p->stream_gen = want;
    p->final_id[0] = '\0';
    int rc = engine_read(p->e, read_all, o);
    int last_failed = 0;
    /* Disables first, then the enable: the registration the app wants
     * has the last word whatever the server does with the others. */
    for (size_t i = 0; rc == COURIER_OK && i < o->n_owed; i++) {
        pending_t *x = pend_new(p, 0, want, &o->owed[i]);
        last_failed = write_iq(p, x, push_build_disable(ctx, x->id,
                                                        x->service, x->node),
                               send, ud);
    }
    if (rc == COURIER_OK && o->have) {
        pending_t *x = pend_new(p, 1, want, &o->reg);
        last_failed = write_iq(p, x, push_build_enable(ctx, x->id, &o->reg),
                               send, ud);
    }
    util_free(o);
    if (rc != COURIER_OK) {
        engine_log(p->e, COURIER_LOG_ERROR, "push: cannot read the "
                   "registration from the store (%s)", courier_strerror(rc));
        settle(p, want, rc, "cannot read the store");
    } else if (last_failed) {
        /* The app's own request did not leave: say so (the store keeps
         * it; the next login writes it). */
        engine_log(p->e, COURIER_LOG_WARN, "push: the request could not be "
                   "written (out of memory): written again at the next "
                   "login");
        settle(p, want, COURIER_ENOMEM, "the request could not be written "
               "(out of memory); written again at the next login");
    } else if (!p->final_id[0]) {
        settle(p, want, COURIER_OK, ""); /* nothing to write */
    }
}

void push_link_down(push_t *p)
{
    p->stream_gen = 0;
    p->final_id[0] = '\0';
    memset(p->pend, 0, sizeof(p->pend));
    pthread_mutex_lock(&p->mu);
    if (p->online) {
        p->online = 0;
        p->downs++;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
}

/* Only our own account (or its server) answers an IQ without a `to`. */
static int from_us(push_t *p, xmpp_stanza_t *st)
{
    return util_from_own_server(xmpp_stanza_get_from(st), engine_self(p->e));
}

static int owed_done(store_t *s, void *ud)
{
    const pending_t *x = ud;
    return store_push_owed_done(s, x->owed_n);
}

int push_on_iq(push_t *p, xmpp_stanza_t *st)
{
    const char *id = xmpp_stanza_get_id(st);
    if (!id || strncmp(id, "push-", 5) != 0)
        return 0;
    pending_t *x = NULL;
    for (size_t i = 0; i < PENDING_MAX && !x; i++)
        if (p->pend[i].used && strcmp(p->pend[i].id, id) == 0)
            x = &p->pend[i];
    if (!x || !from_us(p, st))
        return 0;
    x->used = 0;
    char cond[64], text[96], why[200];
    int rc = push_parse_answer(st, cond, sizeof(cond), text, sizeof(text));
    snprintf(why, sizeof(why), "refused by the server: %s%s%s", cond,
             text[0] ? ": " : "", text);
    if (x->enable) {
        if (rc == COURIER_OK)
            engine_log(p->e, COURIER_LOG_INFO, "push (XEP-0357): enable at "
                       "%s accepted by the server", x->service);
        else
            engine_log(p->e, COURIER_LOG_WARN, "push (XEP-0357): enable at "
                       "%s %s; kept, asked again at the next login",
                       x->service, why);
    } else {
        /* Answered: nothing more to ask the server, unless it said "try
         * later" (an error of type wait): then it may still hold the
         * registration, and the disable stays owed for the next login. A
         * disable of a registration it no longer holds is no failure. */
        if (rc != COURIER_OK && strcmp(cond, "item-not-found") == 0)
            rc = COURIER_OK;
        xmpp_stanza_t *err = xmpp_stanza_get_child_by_name(st, "error");
        const char *etype = err ? xmpp_stanza_get_type(err) : NULL;
        int again = rc != COURIER_OK && etype && strcmp(etype, "wait") == 0;
        engine_log(p->e, rc == COURIER_OK ? COURIER_LOG_INFO
                                          : COURIER_LOG_WARN,
                   "push (XEP-0357): disable at %s %s%s", x->service,
                   rc == COURIER_OK ? "done" : why,
                   rc == COURIER_OK ? ""
                   : again ? "; asked again at the next login"
                           : "; forgotten");
        int src = again ? COURIER_OK : engine_read(p->e, owed_done, x);
        if (src != COURIER_OK)
            engine_log(p->e, COURIER_LOG_ERROR, "push: cannot settle the "
                       "owed disable in the store (%s): sent again at the "
                       "next login", courier_strerror(src));
    }
    if (strcmp(id, p->final_id) == 0)
        settle(p, x->gen, rc, why);
    return 1;
}
