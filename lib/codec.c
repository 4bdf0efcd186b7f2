/* SPDX-License-Identifier: MIT */
/*
 * Stanzas <-> structs (behaviour.md §3, §8). Parsing walks every child once and
 * dispatches on (name, namespace), so no order or count of children is
 * trusted; text is read in place (no libstrophe allocation), and only the
 * body is copied, after its size is checked.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "codec.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "util.h"

#define NS_CLIENT "jabber:client"
#define NS_EVENT "jabber:x:event"
#define NS_RECEIPTS "urn:xmpp:receipts"
#define NS_MARKERS "urn:xmpp:chat-markers:0"
#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"
#define NS_SID "urn:xmpp:sid:0"
#define NS_DELAY "urn:xmpp:delay"
#define NS_LEGACY_DELAY "jabber:x:delay"
#define NS_OOB "jabber:x:oob"
#define NS_HINTS "urn:xmpp:hints"
#define NS_PING "urn:xmpp:ping"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_RETRACT "urn:xmpp:message-retract:1"
#define NS_RETRACT_0 "urn:xmpp:message-retract:0" /* XEP-0424 < 0.4 */
#define NS_FASTEN "urn:xmpp:fasten:0"
#define NS_FALLBACK "urn:xmpp:fallback:0"
#define RETRACT_FALLBACK                                                 \
    "This person attempted to retract a previous message, but it's "    \
    "unsupported by your client."

#define COND_UNDEFINED "undefined-condition"

/* ---- reading stanzas ---------------------------------------------------- */

/* `c` itself or the first element sibling after it (text is skipped). */
static xmpp_stanza_t *el_from(xmpp_stanza_t *c)
{
    while (c && !xmpp_stanza_is_tag(c))
        c = xmpp_stanza_get_next(c);
    return c;
}

static xmpp_stanza_t *first_el(xmpp_stanza_t *parent)
{
    return el_from(xmpp_stanza_get_children(parent));
}

static xmpp_stanza_t *next_el(xmpp_stanza_t *el)
{
    return el_from(xmpp_stanza_get_next(el));
}

static int streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* Element `name` in `ns`. A child of a namespaced element inherits its
 * namespace when parsed, but a stanza built in memory leaves it unset:
 * `inherit` accepts that too. ns NULL means the stanza's own namespace. */
static int el_is(xmpp_stanza_t *el, const char *name, const char *ns,
                 int inherit)
{
    const char *el_ns = xmpp_stanza_get_ns(el);
    if (!streq(xmpp_stanza_get_name(el), name))
        return 0;
    if (!ns)
        return !el_ns || streq(el_ns, NS_CLIENT);
    return streq(el_ns, ns) || (inherit && !el_ns);
}

/* The first child element `name` (in the parent's namespace). */
static xmpp_stanza_t *child_in(xmpp_stanza_t *parent, const char *name,
                               const char *ns)
{
    for (xmpp_stanza_t *c = first_el(parent); c; c = next_el(c))
        if (el_is(c, name, ns, 1))
            return c;
    return NULL;
}

/* Bytes of the direct text children of `el` (nested elements ignored:
 * XMPP bodies and ids are plain text). */
static size_t text_len(xmpp_stanza_t *el)
{
    size_t n = 0;
    for (xmpp_stanza_t *c = xmpp_stanza_get_children(el); c;
         c = xmpp_stanza_get_next(c)) {
        const char *t = xmpp_stanza_is_text(c) ? xmpp_stanza_get_text_ptr(c)
                                               : NULL;
        if (t)
            n += strlen(t);
    }
    return n;
}

/* Copy the text of `el` into `dst`; -1 (and "") when it does not fit. */
static int text_copy(xmpp_stanza_t *el, char *dst, size_t size)
{
    size_t n = 0;
    if (size == 0)
        return -1;
    dst[0] = '\0';
    if (text_len(el) >= size)
        return -1;
    for (xmpp_stanza_t *c = xmpp_stanza_get_children(el); c;
         c = xmpp_stanza_get_next(c)) {
        const char *t = xmpp_stanza_is_text(c) ? xmpp_stanza_get_text_ptr(c)
                                               : NULL;
        size_t len = t ? strlen(t) : 0;
        memcpy(dst + n, t ? t : "", len);
        n += len;
    }
    dst[n] = '\0';
    return 0;
}

/* ---- time stamps (XEP-0082) ------------------------------------------- */

/* Howard Hinnant's days_from_civil / civil_from_days: proleptic
 * Gregorian, no time zone or libc involved. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned mdays[12] = { 31, 28, 31, 30, 31, 30,
                                        31, 31, 30, 31, 30, 31 };
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : mdays[m - 1];
}

/* Exactly `n` decimal digits at *p into *v; advances *p. */
static int digits(const char **p, int n, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        char ch = (*p)[i];
        if (ch < '0' || ch > '9')
            return -1;
        *v = *v * 10 + (unsigned)(ch - '0');
    }
    *p += n;
    return 0;
}

static int lit(const char **p, char ch)
{
    if (**p != ch)
        return -1;
    (*p)++;
    return 0;
}

/* XEP-0082 "YYYY-MM-DDThh:mm:ss[.s+](Z|+hh:mm|-hh:mm)", or with `legacy`
 * the XEP-0091 "YYYYMMDDThh:mm:ss" (UTC). Unix ms, or 0 when invalid. */
static int64_t parse_stamp(const char *s, int legacy)
{
    unsigned y, mo, d, h, mi, sec, ms = 0, oh = 0, om = 0;
    int sign = 0;
    const char *p = s;

    if (!s)
        return 0;
    if (digits(&p, 4, &y) < 0 || (!legacy && lit(&p, '-') < 0) ||
        digits(&p, 2, &mo) < 0 || (!legacy && lit(&p, '-') < 0) ||
        digits(&p, 2, &d) < 0 || lit(&p, 'T') < 0 ||
        digits(&p, 2, &h) < 0 || lit(&p, ':') < 0 ||
        digits(&p, 2, &mi) < 0 || lit(&p, ':') < 0 ||
        digits(&p, 2, &sec) < 0)
        return 0;
    if (!legacy) {
        if (*p == '.') {
            /* any number of fraction digits; milliseconds are kept */
            int n = 0;
            p++;
            while (*p >= '0' && *p <= '9') {
                if (n < 3)
                    ms = ms * 10 + (unsigned)(*p - '0');
                n++;
                p++;
            }
            if (n == 0)
                return 0;
            for (; n < 3; n++)
                ms *= 10;
        }
        if (*p == 'Z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            sign = *p == '+' ? 1 : -1;
            p++;
            if (digits(&p, 2, &oh) < 0 || lit(&p, ':') < 0 ||
                digits(&p, 2, &om) < 0 || oh > 23 || om > 59)
                return 0;
        } else {
            return 0;
        }
    }
    if (*p != '\0' || y < 1970 || mo < 1 || mo > 12 || d < 1 ||
        d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60)
        return 0;
    int64_t t = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 +
                (int64_t)mi * 60 + sec;
    t -= (int64_t)sign * ((int64_t)oh * 3600 + (int64_t)om * 60);
    t = t * 1000 + ms;
    return t > 0 ? t : 0;
}

/* "YYYY-MM-DDThh:mm:ss.sssZ"; -1 outside years 1970..9999. */
static int format_stamp(int64_t ms, char *buf, size_t size)
{
    int64_t y, days, secs;
    unsigned m, d;
    if (ms <= 0)
        return -1;
    days = ms / 86400000;
    secs = (ms / 1000) % 86400;
    civil_from_days(days, &y, &m, &d);
    if (y > 9999)
        return -1;
    int n = snprintf(buf, size, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ",
                     (long long)y, m, d, (unsigned)(secs / 3600),
                     (unsigned)(secs / 60 % 60), (unsigned)(secs % 60),
                     (unsigned)(ms % 1000));
    return n > 0 && (size_t)n < size ? 0 : -1;
}

/* ---- the digest id (behaviour.md §3) ------------------------------------------ */

/* SHA-256 over "from\0body\0stamp": neither a JID nor XML text can hold a
 * NUL, so the fields cannot run into each other. On failure (OOM inside
 * libcrypto) `out` is "", which the caller reports as ENOMEM: an id that
 * depended on memory pressure would defeat duplicate detection. */
void codec_digest_id(const char *from, const char *body, int64_t delay_ms,
                     char out[COURIER_ID_MAX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    char stamp[24];
    EVP_MD_CTX *h = EVP_MD_CTX_new();

    from = from ? from : "";
    body = body ? body : "";
    snprintf(stamp, sizeof(stamp), "%lld", (long long)delay_ms);
    int ok = h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(h, from, strlen(from) + 1) == 1 &&
             EVP_DigestUpdate(h, body, strlen(body) + 1) == 1 &&
             EVP_DigestUpdate(h, stamp, strlen(stamp)) == 1 &&
             EVP_DigestFinal_ex(h, md, &md_len) == 1 && md_len >= 16;
    EVP_MD_CTX_free(h);
    out[0] = '\0';
    if (!ok)
        return;
    memcpy(out, "dgst-", 5);
    for (int i = 0; i < 16; i++) {
        out[5 + 2 * i] = hex[md[i] >> 4];
        out[6 + 2 * i] = hex[md[i] & 15];
    }
    out[37] = '\0';
}

/* ---- parsing ---------------------------------------------------------- */

/* What one pass over a message's children found. */
typedef struct {
    xmpp_stanza_t *body;
    xmpp_stanza_t *origin_id;
    int64_t delay_ms;     /* earliest valid stamp: the original send */
    courier_kind_t kind;
    unsigned asked;
    int x22_composing;    /* -1 none */
    int cs_composing;     /* XEP-0085, -1 none */
    xmpp_stanza_t *meta;  /* CODEC_NS_META */
    const char *retract_id; /* XEP-0424: the message it retracts */
} scan_t;

static int ignore(codec_msg_t *out, const char *why)
{
    out->cls = CODEC_IGNORE;
    out->why = why;
    return COURIER_OK;
}

/* Keep an event about our message `id`; the same (state, id) in several
 * forms (we ask for all of them) is one event. Invalid ids and events
 * past CODEC_MAX_EVENTS are dropped. */
static void add_event(codec_msg_t *out, courier_state_t state,
                      const char *id, int cumulative)
{
    if (!util_id_valid(id))
        return;
    for (size_t i = 0; i < out->n_events; i++) {
        codec_event_t *e = &out->events[i];
        if (e->state == state && strcmp(e->id, id) == 0) {
            e->cumulative |= cumulative;
            return;
        }
    }
    if (out->n_events >= CODEC_MAX_EVENTS)
        return;
    codec_event_t *e = &out->events[out->n_events];
    if (util_strlcpy(e->id, id, sizeof(e->id)) < 0)
        return;
    e->state = state;
    e->cumulative = cumulative;
    out->n_events++;
}

/* XEP-0022: without <id> the <x> requests events; with one it raises
 * them about our message. An empty <id/> counts as absent (lenient to
 * old clients that send one in requests). */
static void scan_x_event(xmpp_stanza_t *x, scan_t *sc, codec_msg_t *out)
{
    static const struct {
        const char *name;
        courier_state_t state;
    } raised[] = {
        { "offline", COURIER_OFFLINE },
        { "delivered", COURIER_DELIVERED },
        { "displayed", COURIER_DISPLAYED },
    };
    char id[COURIER_ID_MAX];
    xmpp_stanza_t *id_el = child_in(x, "id", NS_EVENT);

    if (!id_el || text_len(id_el) == 0) {
        if (child_in(x, "delivered", NS_EVENT))
            sc->asked |= CORE_ASK_X22_DELIVERED;
        if (child_in(x, "displayed", NS_EVENT))
            sc->asked |= CORE_ASK_X22_DISPLAYED;
        if (child_in(x, "composing", NS_EVENT))
            sc->asked |= CORE_ASK_X22_COMPOSING;
        return;
    }
    if (text_copy(id_el, id, sizeof(id)) < 0 || !util_id_valid(id))
        return; /* a hostile id: the whole <x> is dropped */
    int any = 0;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(raised); i++) {
        if (child_in(x, raised[i].name, NS_EVENT)) {
            add_event(out, raised[i].state, id, 0);
            any = 1;
        }
    }
    if (child_in(x, "composing", NS_EVENT))
        sc->x22_composing = 1;
    else if (!any)
        sc->x22_composing = 0; /* XEP-0022 "cancel composing" */
}

static void scan_kind(xmpp_stanza_t *el, scan_t *sc)
{
    char text[16];
    if (text_copy(el, text, sizeof(text)) < 0)
        return;
    if (strcmp(text, "voice") == 0)
        sc->kind = COURIER_VOICE;
    else if (strcmp(text, "image") == 0)
        sc->kind = COURIER_IMAGE;
}

static void scan_delay(xmpp_stanza_t *el, int legacy, scan_t *sc)
{
    int64_t t = parse_stamp(xmpp_stanza_get_attribute(el, "stamp"), legacy);
    if (t > 0 && (sc->delay_ms == 0 || t < sc->delay_ms))
        sc->delay_ms = t;
}

/* One child of <message>: dispatch on its name and namespace. */
static void scan_child(xmpp_stanza_t *el, const char *stanza_id, scan_t *sc,
                       codec_msg_t *out)
{
    const char *ns = xmpp_stanza_get_ns(el);
    const char *name = xmpp_stanza_get_name(el);
    const char *id = xmpp_stanza_get_attribute(el, "id");

    if (el_is(el, "body", NULL, 0)) {
        if (!sc->body)
            sc->body = el;
    } else if (el_is(el, "x", NS_EVENT, 0)) {
        scan_x_event(el, sc, out);
    } else if (streq(ns, NS_RECEIPTS)) {
        if (streq(name, "request"))
            sc->asked |= CORE_ASK_RECEIPT;
        else if (streq(name, "received")) {
            /* XEP-0184 1.0 receipts carried the id on the stanza only */
            add_event(out, COURIER_DELIVERED, id ? id : stanza_id, 0);
            out->shown |= CODEC_SHOWN_RECEIPT;
        }
    } else if (streq(ns, NS_MARKERS)) {
        /* XEP-0333: a displayed marker covers every earlier message */
        if (streq(name, "markable"))
            sc->asked |= CORE_ASK_MARKABLE;
        else if (streq(name, "received") && id)
            add_event(out, COURIER_DELIVERED, id, 0);
        else if ((streq(name, "displayed") || streq(name, "acknowledged")) &&
                 id) {
            add_event(out, COURIER_DISPLAYED, id, 1);
            out->shown |= CODEC_SHOWN_MARKER;
        }
    } else if (streq(ns, NS_CHATSTATES)) {
        if (streq(name, "composing"))
            sc->cs_composing = 1;
        else if (streq(name, "active") || streq(name, "paused") ||
                 streq(name, "inactive") || streq(name, "gone"))
            sc->cs_composing = 0;
        if (sc->cs_composing >= 0)
            out->shown |= CODEC_SHOWN_CHATSTATE;
    } else if (el_is(el, "origin-id", NS_SID, 0)) {
        if (!sc->origin_id)
            sc->origin_id = el;
    } else if (el_is(el, "delay", NS_DELAY, 0)) {
        scan_delay(el, 0, sc);
    } else if (el_is(el, "x", NS_LEGACY_DELAY, 0)) {
        scan_delay(el, 1, sc);
    } else if (el_is(el, "kind", CODEC_NS_KIND, 0)) {
        scan_kind(el, sc);
    } else if (el_is(el, "meta", CODEC_NS_META, 0)) {
        if (!sc->meta)
            sc->meta = el;
    } else if (el_is(el, "retract", NS_RETRACT, 0)) {
        if (!sc->retract_id)
            sc->retract_id = id;
    } else if (el_is(el, "apply-to", NS_FASTEN, 0)) {
        /* XEP-0424 before 0.4: <apply-to id><retract/></apply-to> */
        for (xmpp_stanza_t *c = first_el(el); c; c = next_el(c))
            if (el_is(c, "retract", NS_RETRACT_0, 0) && !sc->retract_id)
                sc->retract_id = id;
    }
}

static core_err_type_t err_type_of(const char *type)
{
    static const struct {
        const char *name;
        core_err_type_t type;
    } map[] = {
        { "cancel", CORE_ERR_CANCEL }, { "modify", CORE_ERR_MODIFY },
        { "auth", CORE_ERR_AUTH },     { "wait", CORE_ERR_WAIT },
        { "continue", CORE_ERR_CONTINUE },
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(map); i++)
        if (streq(type, map[i].name))
            return map[i].type;
    return CORE_ERR_CANCEL; /* missing or unknown: the permanent kind */
}

/* behaviour.md §2 "Error replies": the bounced id, the error type and condition. */
static int parse_error(xmpp_stanza_t *st, codec_msg_t *out)
{
    const char *id = xmpp_stanza_get_id(st);
    const char *cond = COND_UNDEFINED;
    xmpp_stanza_t *err = NULL;

    if (!id)
        return ignore(out, "error without id");
    if (!util_id_valid(id))
        return ignore(out, "bad id");
    for (xmpp_stanza_t *c = first_el(st); c && !err; c = next_el(c))
        if (el_is(c, "error", NULL, 0))
            err = c;
    out->err_type = CORE_ERR_CANCEL;
    if (err) {
        out->err_type = err_type_of(xmpp_stanza_get_attribute(err, "type"));
        /* <text/> shares the namespace: never trust it to come last */
        for (xmpp_stanza_t *c = first_el(err); c; c = next_el(c)) {
            if (streq(xmpp_stanza_get_ns(c), NS_STANZAS) &&
                !streq(xmpp_stanza_get_name(c), "text") &&
                xmpp_stanza_get_name(c)) {
                cond = xmpp_stanza_get_name(c);
                break;
            }
        }
    }
    if (util_strlcpy(out->condition, cond, sizeof(out->condition)) < 0)
        util_strlcpy(out->condition, COND_UNDEFINED, sizeof(out->condition));
    util_strlcpy(out->id, id, sizeof(out->id));
    out->cls = CODEC_ERROR;
    return COURIER_OK;
}

/* behaviour.md §3: the stanza id, else the XEP-0359 origin-id, else a digest. A
 * present but invalid id attribute is refused rather than replaced: the
 * sender means an id we cannot keep, and guessing another one could merge
 * or split its duplicates. An empty id='' carries no identity: absent.
 * Only a delay stamp makes an id-less message identifiable (a replay from
 * offline storage); without one, two equal bodies are two messages, so
 * each gets a fresh id (issue 13). */
static int pick_id(xmpp_stanza_t *st, const scan_t *sc, codec_msg_t *out)
{
    const char *id = xmpp_stanza_get_id(st);
    const char *oid = sc->origin_id
                          ? xmpp_stanza_get_attribute(sc->origin_id, "id")
                          : NULL;
    if (id && *id) {
        if (!util_id_valid(id)) {
            out->refuse = "bad-request";
            return ignore(out, "bad id");
        }
        util_strlcpy(out->id, id, sizeof(out->id));
    } else if (util_id_valid(oid)) {
        util_strlcpy(out->id, oid, sizeof(out->id));
    } else if (out->delay_ms) {
        codec_digest_id(out->from, out->body, out->delay_ms, out->id);
        if (!out->id[0])
            return COURIER_ENOMEM;
    } else {
        memcpy(out->id, "anon-", 5);
        util_new_id(out->id + 5, sizeof(out->id) - 5);
    }
    return COURIER_OK;
}

static int parse_chat(xmpp_stanza_t *st, const codec_limits_t *lim,
                      const scan_t *sc, codec_msg_t *out)
{
    size_t max = lim && lim->max_body_bytes ? lim->max_body_bytes
                                            : COURIER_BODY_MAX_DEFAULT;
    size_t len = text_len(sc->body);
    int rc;

    /* behaviour.md §11: what we will not store is refused to the sender, so it
     * does not stay SENT (or resend) forever. */
    if (len > max) {
        out->refuse = "policy-violation";
        return ignore(out, "body too big");
    }
    out->body = util_malloc(len + 1);
    if (!out->body)
        return COURIER_ENOMEM;
    text_copy(sc->body, out->body, len + 1);
    if (!util_utf8_valid(out->body)) {
        out->refuse = "not-acceptable";
        return ignore(out, "body not utf-8");
    }
    if (sc->meta) { /* behaviour.md §9: app data, bounded like the API's */
        size_t mlen = text_len(sc->meta);
        if (mlen > COURIER_META_MAX - 1) {
            out->refuse = "policy-violation";
            return ignore(out, "meta too big");
        }
        out->meta = util_malloc(mlen + 1);
        if (!out->meta)
            return COURIER_ENOMEM;
        text_copy(sc->meta, out->meta, mlen + 1);
        if (!util_utf8_valid(out->meta)) {
            out->refuse = "not-acceptable";
            return ignore(out, "meta not utf-8");
        }
    }
    out->kind = sc->kind;
    out->delay_ms = sc->delay_ms;
    out->asked = sc->asked;
    rc = pick_id(st, sc, out);
    if (rc == COURIER_OK && !out->why)
        out->cls = CODEC_CHAT;
    return rc;
}

static void msg_init(codec_msg_t *m)
{
    memset(m, 0, sizeof(*m));
    m->cls = CODEC_IGNORE;
    m->kind = COURIER_TEXT;
    m->composing = -1;
    m->err_type = CORE_ERR_CANCEL;
}

static int parse(xmpp_stanza_t *st, const codec_limits_t *lim,
                 codec_msg_t *out)
{
    const char *type, *from;
    scan_t sc = { .kind = COURIER_TEXT, .x22_composing = -1,
                  .cs_composing = -1 };

    if (!st || !xmpp_stanza_is_tag(st) ||
        !streq(xmpp_stanza_get_name(st), "message"))
        return ignore(out, "not a message");
    from = xmpp_stanza_get_from(st);
    if (!from)
        return ignore(out, "no from");
    if (util_jid_bare(from, out->from, sizeof(out->from)) < 0)
        return ignore(out, "bad from");
    type = xmpp_stanza_get_type(st);
    if (streq(type, "error"))
        return parse_error(st, out);
    /* behaviour.md: 1:1 chat only. Unknown types count as normal (RFC 6121). */
    if (streq(type, "groupchat") || streq(type, "headline"))
        return ignore(out, "not 1:1 chat");

    for (xmpp_stanza_t *c = first_el(st); c; c = next_el(c))
        scan_child(c, xmpp_stanza_get_id(st), &sc, out);
    out->composing = sc.cs_composing >= 0 ? sc.cs_composing
                                          : sc.x22_composing;
    /* XEP-0424: its body is the fallback for other clients, not a
     * message of its own */
    if (sc.retract_id) {
        if (!util_id_valid(sc.retract_id))
            return ignore(out, "retraction of a bad id");
        util_strlcpy(out->retract_id, sc.retract_id, sizeof(out->retract_id));
        out->cls = CODEC_RETRACT;
        return COURIER_OK;
    }
    if (sc.body && text_len(sc.body) > 0)
        return parse_chat(st, lim, &sc, out);
    if (out->n_events > 0 || out->composing >= 0) {
        out->cls = CODEC_EVENTS;
        return COURIER_OK;
    }
    return ignore(out, "no body, no event");
}

int codec_parse_message(xmpp_stanza_t *st, const codec_limits_t *lim,
                        codec_msg_t *out)
{
    if (!out)
        return COURIER_EINVAL;
    msg_init(out);
    int rc = parse(st, lim, out);
    if (rc != COURIER_OK) {
        codec_msg_clear(out);
        out->cls = CODEC_IGNORE;
        out->why = "out of memory";
    } else if (out->cls == CODEC_IGNORE) {
        /* an ignored message keeps nothing but its reason, sender and
         * the refusal owed */
        const char *why = out->why, *refuse = out->refuse;
        char from[COURIER_JID_MAX];
        memcpy(from, out->from, sizeof(from));
        codec_msg_clear(out);
        memcpy(out->from, from, sizeof(from));
        out->why = why;
        out->refuse = refuse;
    }
    return rc;
}

void codec_msg_clear(codec_msg_t *m)
{
    if (!m)
        return;
    util_free(m->body);
    util_free(m->meta);
    msg_init(m);
}

/* ---- building --------------------------------------------------------- */

/* A new element `name` (in `ns` if non-NULL) appended to `parent`, which
 * owns it; NULL on ENOMEM. */
static xmpp_stanza_t *add_el(xmpp_stanza_t *parent, const char *name,
                             const char *ns)
{
    xmpp_stanza_t *el = xmpp_stanza_new(xmpp_stanza_get_context(parent));
    if (!el)
        return NULL;
    if (xmpp_stanza_set_name(el, name) != XMPP_EOK ||
        (ns && xmpp_stanza_set_ns(el, ns) != XMPP_EOK)) {
        xmpp_stanza_release(el);
        return NULL;
    }
    xmpp_stanza_add_child_ex(parent, el, 0);
    return el;
}

static int add_text(xmpp_stanza_t *parent, const char *text)
{
    xmpp_stanza_t *t = xmpp_stanza_new(xmpp_stanza_get_context(parent));
    if (!t)
        return -1;
    if (xmpp_stanza_set_text(t, text) != XMPP_EOK) {
        xmpp_stanza_release(t);
        return -1;
    }
    xmpp_stanza_add_child_ex(parent, t, 0);
    return 0;
}

/* <name xmlns=ns>text</name> under `parent`; NULL on ENOMEM. */
static xmpp_stanza_t *add_text_el(xmpp_stanza_t *parent, const char *name,
                                  const char *ns, const char *text)
{
    xmpp_stanza_t *el = add_el(parent, name, ns);
    return el && add_text(el, text) == 0 ? el : NULL;
}

/* An element with attribute `attr`=`value` under `parent`. */
static xmpp_stanza_t *add_attr_el(xmpp_stanza_t *parent, const char *name,
                                  const char *ns, const char *attr,
                                  const char *value)
{
    xmpp_stanza_t *el = add_el(parent, name, ns);
    if (el && xmpp_stanza_set_attribute(el, attr, value) != XMPP_EOK)
        return NULL;
    return el;
}

/* A top-level stanza; `to`, `id` may be NULL. */
static xmpp_stanza_t *new_stanza(xmpp_ctx_t *ctx, const char *name,
                                 const char *type, const char *to,
                                 const char *id)
{
    xmpp_stanza_t *st = xmpp_stanza_new(ctx);
    if (!st)
        return NULL;
    if (xmpp_stanza_set_name(st, name) != XMPP_EOK ||
        (type && xmpp_stanza_set_type(st, type) != XMPP_EOK) ||
        (to && xmpp_stanza_set_to(st, to) != XMPP_EOK) ||
        (id && xmpp_stanza_set_id(st, id) != XMPP_EOK)) {
        xmpp_stanza_release(st);
        return NULL;
    }
    return st;
}

static int is_url(const char *s)
{
    return strncasecmp(s, "http://", 7) == 0 ||
           strncasecmp(s, "https://", 8) == 0;
}

/* XEP-0203 <delay/> with our original send time, so a resend is
 * recognisably the same message (behaviour.md §2 "Idempotence"). */
static int add_delay(xmpp_stanza_t *msg, int64_t created_ms,
                     const char *from)
{
    char stamp[32];
    xmpp_stanza_t *d;
    if (format_stamp(created_ms, stamp, sizeof(stamp)) < 0)
        return 0; /* no meaningful time to state */
    d = add_attr_el(msg, "delay", NS_DELAY, "stamp", stamp);
    if (!d)
        return -1;
    if (from && xmpp_stanza_set_attribute(d, "from", from) != XMPP_EOK)
        return -1;
    return 0;
}

static int add_media(xmpp_stanza_t *msg, courier_kind_t kind,
                     const char *body)
{
    xmpp_stanza_t *x;
    if (kind != COURIER_VOICE && kind != COURIER_IMAGE)
        return 0;
    if (!add_text_el(msg, "kind", CODEC_NS_KIND,
                     kind == COURIER_VOICE ? "voice" : "image"))
        return -1;
    if (!is_url(body))
        return 0;
    x = add_el(msg, "x", NS_OOB);
    return x && add_text_el(x, "url", NULL, body) ? 0 : -1;
}

xmpp_stanza_t *codec_build_chat(xmpp_ctx_t *ctx, const char *to,
                                const char *id, courier_kind_t kind,
                                const char *body, int64_t created_ms,
                                const char *from, unsigned attempts)
{
    return codec_build_chat_for(ctx, to, id, kind, body, created_ms, from,
                                attempts, 0);
}

xmpp_stanza_t *codec_build_chat_for(xmpp_ctx_t *ctx, const char *to,
                                    const char *id, courier_kind_t kind,
                                    const char *body, int64_t created_ms,
                                    const char *from, unsigned attempts,
                                    unsigned shown)
{
    /* XEP-0022 requests; each but <offline/> (the server's half of the
     * note: only XEP-0022 has it) has a newer form the peer may answer. */
    static const struct {
        const char *name;
        unsigned newer; /* left out once the peer has shown this */
    } requests[] = {
        { "offline", 0 },
        { "delivered", CODEC_SHOWN_RECEIPT },
        { "displayed", CODEC_SHOWN_MARKER },
        { "composing", CODEC_SHOWN_CHATSTATE },
    };
    xmpp_stanza_t *msg, *x;

    if (!ctx || !to || !id || !body)
        return NULL;
    msg = new_stanza(ctx, "message", "chat", to, id);
    if (!msg)
        return NULL;
    if (!add_text_el(msg, "body", NULL, body))
        goto fail;
    /* behaviour.md §8: ask for every event, in every form we understand,
     * except the XEP-0022 forms of those the peer answers in newer ones */
    x = add_el(msg, "x", NS_EVENT);
    if (!x)
        goto fail;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(requests); i++)
        if (!(requests[i].newer & shown) && !add_el(x, requests[i].name, NULL))
            goto fail;
    if (!add_el(msg, "request", NS_RECEIPTS) ||
        !add_el(msg, "markable", NS_MARKERS) ||
        !add_attr_el(msg, "origin-id", NS_SID, "id", id))
        goto fail;
    if (attempts > 0 && add_delay(msg, created_ms, from) < 0)
        goto fail;
    if (add_media(msg, kind, body) < 0)
        goto fail;
    return msg;
fail:
    xmpp_stanza_release(msg);
    return NULL;
}

int codec_add_meta(xmpp_stanza_t *msg, const char *meta)
{
    if (!meta || !meta[0])
        return 0;
    return add_text_el(msg, "meta", CODEC_NS_META, meta) ? 0 : -1;
}

xmpp_stanza_t *codec_build_retraction(xmpp_ctx_t *ctx, const char *to,
                                      const char *retracted_id)
{
    char id[COURIER_ID_MAX];
    xmpp_stanza_t *msg, *fb;
    if (!ctx || !to || !retracted_id)
        return NULL;
    util_new_id(id, sizeof(id));
    msg = new_stanza(ctx, "message", "chat", to, id);
    if (!msg)
        return NULL;
    fb = add_el(msg, "fallback", NS_FALLBACK);
    if (!add_attr_el(msg, "retract", NS_RETRACT, "id", retracted_id) || !fb ||
        xmpp_stanza_set_attribute(fb, "for", NS_RETRACT) != XMPP_EOK ||
        !add_text_el(msg, "body", NULL, RETRACT_FALLBACK) ||
        !add_el(msg, "store", NS_HINTS)) {
        xmpp_stanza_release(msg);
        return NULL;
    }
    return msg;
}

/* XEP-0022 raised event: <x><NAME/><id>ID</id></x> (NAME may be NULL). */
static int add_x22_event(xmpp_stanza_t *msg, const char *name,
                         const char *id)
{
    xmpp_stanza_t *x = add_el(msg, "x", NS_EVENT);
    if (!x || (name && !add_el(x, name, NULL)) ||
        !add_text_el(x, "id", NULL, id))
        return -1;
    return 0;
}

/* Issue 17: one form per receipt, the one the asker understands best
 * among those it asked for. Servers keep a hinted XEP-0184 or XEP-0333
 * receipt in offline storage for an absent sender but drop a body-less
 * XEP-0022 event (behaviour.md §3), so those come first; XEP-0022 answers only a
 * peer that asked for nothing else. DELIVERED: 0184 <received/>, else
 * 0333 <received/>, else 0022 <delivered/>. DISPLAYED: 0333 <displayed/>
 * (which the sender takes as covering every earlier message, as it did
 * when both came), else 0022 <displayed/>; 0184 has no displayed form. */
typedef enum { FORM_NONE, FORM_X22, FORM_RECEIPT, FORM_MARKER } form_t;

static form_t receipt_form(courier_state_t state, unsigned asked)
{
    if (state == COURIER_DELIVERED) {
        if (asked & CORE_ASK_RECEIPT)
            return FORM_RECEIPT;
        if (asked & CORE_ASK_MARKABLE)
            return FORM_MARKER;
        if (asked & CORE_ASK_X22_DELIVERED)
            return FORM_X22;
    } else if (state == COURIER_DISPLAYED) {
        if (asked & CORE_ASK_MARKABLE)
            return FORM_MARKER;
        if (asked & CORE_ASK_X22_DISPLAYED)
            return FORM_X22;
    }
    return FORM_NONE;
}

xmpp_stanza_t *codec_build_receipt(xmpp_ctx_t *ctx, const char *to,
                                   const char *id, courier_state_t state,
                                   unsigned asked)
{
    char sid[COURIER_ID_MAX];
    xmpp_stanza_t *msg;
    form_t form;

    if (!ctx || !to || !util_id_valid(id))
        return NULL;
    form = receipt_form(state, asked);
    if (form == FORM_NONE)
        return NULL;
    util_new_id(sid, sizeof(sid));
    msg = new_stanza(ctx, "message", "chat", to, sid);
    if (!msg)
        return NULL;
    const char *ev = state == COURIER_DELIVERED ? "delivered" : "displayed";
    if (form == FORM_X22 && add_x22_event(msg, ev, id) < 0)
        goto fail;
    if (form == FORM_RECEIPT &&
        !add_attr_el(msg, "received", NS_RECEIPTS, "id", id))
        goto fail;
    if (form == FORM_MARKER &&
        !add_attr_el(msg, state == COURIER_DELIVERED ? "received"
                                                     : "displayed",
                     NS_MARKERS, "id", id))
        goto fail;
    /* behaviour.md §3: servers keep hinted receipts offline for an absent sender */
    if (!add_el(msg, "store", NS_HINTS))
        goto fail;
    return msg;
fail:
    xmpp_stanza_release(msg);
    return NULL;
}

xmpp_stanza_t *codec_build_composing(xmpp_ctx_t *ctx, const char *to,
                                     const char *last_id, int on)
{
    xmpp_stanza_t *msg;

    if (!ctx || !to)
        return NULL;
    msg = new_stanza(ctx, "message", "chat", to, NULL);
    if (!msg)
        return NULL;
    /* XEP-0022 composing names the message being answered; an <x> with
     * just the <id> cancels it. Without an id there is no 0022 form. */
    if (last_id && add_x22_event(msg, on ? "composing" : NULL, last_id) < 0)
        goto fail;
    if (!add_el(msg, on ? "composing" : "active", NS_CHATSTATES) ||
        !add_el(msg, "no-store", NS_HINTS))
        goto fail;
    return msg;
fail:
    xmpp_stanza_release(msg);
    return NULL;
}

xmpp_stanza_t *codec_build_ping(xmpp_ctx_t *ctx, const char *domain,
                                const char *id)
{
    xmpp_stanza_t *iq;
    if (!ctx || !domain || !id)
        return NULL;
    iq = new_stanza(ctx, "iq", "get", domain, id);
    if (iq && !add_el(iq, "ping", NS_PING)) {
        xmpp_stanza_release(iq);
        return NULL;
    }
    return iq;
}

/* behaviour.md §4 / RFC 6120 §8.2.3: every get/set iq gets a result or an error;
 * a result or error iq must never be answered (no loops). */
xmpp_stanza_t *codec_build_iq_reply(xmpp_ctx_t *ctx, xmpp_stanza_t *iq)
{
    const char *type, *id;
    xmpp_stanza_t *reply, *err;
    int ping;

    if (!ctx || !iq || !xmpp_stanza_is_tag(iq) ||
        !streq(xmpp_stanza_get_name(iq), "iq"))
        return NULL;
    type = xmpp_stanza_get_type(iq);
    id = xmpp_stanza_get_id(iq);
    if (!id || !*id || !(streq(type, "get") || streq(type, "set")))
        return NULL;
    ping = streq(type, "get") &&
           xmpp_stanza_get_child_by_name_and_ns(iq, "ping", NS_PING);
    reply = new_stanza(ctx, "iq", ping ? "result" : "error",
                       xmpp_stanza_get_from(iq), id);
    if (!reply || ping)
        return reply;
    err = add_attr_el(reply, "error", NULL, "type", "cancel");
    if (!err || !add_el(err, "service-unavailable", NS_STANZAS)) {
        xmpp_stanza_release(reply);
        return NULL;
    }
    return reply;
}

xmpp_stanza_t *codec_build_refusal(xmpp_ctx_t *ctx, xmpp_stanza_t *msg,
                                   const char *condition, const char *text)
{
    const char *from, *id;
    xmpp_stanza_t *reply, *err;

    if (!ctx || !msg || !condition || !xmpp_stanza_is_tag(msg))
        return NULL;
    from = xmpp_stanza_get_from(msg);
    if (!from || !*from)
        return NULL;
    id = xmpp_stanza_get_id(msg);
    /* RFC 6120 8.3.1: the error carries the original id, whatever it is:
     * it is how the sender finds its message. No payload: it was too big
     * or unusable. */
    reply = new_stanza(ctx, "message", "error", from, id && *id ? id : NULL);
    if (!reply)
        return NULL;
    err = add_attr_el(reply, "error", NULL, "type", "modify");
    if (!err || !add_el(err, condition, NS_STANZAS) ||
        (text && !add_text_el(err, "text", NS_STANZAS, text))) {
        xmpp_stanza_release(reply);
        return NULL;
    }
    return reply;
}
