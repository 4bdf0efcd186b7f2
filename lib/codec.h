/* SPDX-License-Identifier: MIT */
/*
 * Stanzas <-> structs (behaviour.md §8). Uses libstrophe's xmpp_stanza_* only,
 * never a connection. Parsing never trusts its input: anything malformed is
 * classified CODEC_IGNORE with a reason, never a crash.
 *
 * Namespaces: jabber:x:event (XEP-0022), urn:xmpp:receipts (XEP-0184),
 * urn:xmpp:chat-markers:0 (XEP-0333), http://jabber.org/protocol/chatstates
 * (XEP-0085), urn:xmpp:sid:0 (XEP-0359), urn:xmpp:delay (XEP-0203),
 * jabber:x:oob, and CODEC_NS_KIND for the message kind.
 */
#ifndef COURIER_CODEC_H
#define COURIER_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <strophe.h>

#include "core.h"
#include "courier.h"

#define CODEC_NS_KIND "urn:libcourier:kind:0"
#define CODEC_NS_META "urn:libcourier:meta:0"
#define CODEC_MAX_EVENTS 4

typedef enum {
    CODEC_IGNORE = 0, /* nothing for us (reason in .why) */
    CODEC_CHAT,       /* a chat/normal message with a body */
    CODEC_EVENTS,     /* events/receipts/markers and/or composing only */
    CODEC_ERROR,      /* <message type='error'> */
    CODEC_RETRACT     /* XEP-0424: the sender retracts .retract_id */
} codec_class_t;

typedef struct {
    courier_state_t state;     /* OFFLINE, DELIVERED or DISPLAYED */
    char id[COURIER_ID_MAX];   /* the id of our message it is about */
    int cumulative;            /* XEP-0333 displayed: covers earlier ones */
} codec_event_t;

typedef struct {
    codec_class_t cls;
    const char *why;                  /* static text when CODEC_IGNORE */
    char from[COURIER_JID_MAX];       /* sender, bare, lower case */
    char id[COURIER_ID_MAX];          /* stanza id, else origin-id, else a
                                         digest if stamped, else a fresh
                                         "anon-" id (CODEC_CHAT only) */
    /* CODEC_CHAT */
    char *body;                       /* util_malloc'd; codec_msg_clear */
    char *meta;                       /* CODEC_NS_META text (at most 4 KiB
                                         of UTF-8), util_malloc'd, NULL if
                                         none */
    courier_kind_t kind;
    int64_t delay_ms;                 /* XEP-0203 stamp, 0 if none */
    unsigned asked;                   /* CORE_ASK_* requested by sender */
    /* CODEC_EVENTS (a chat message may carry composing too) */
    codec_event_t events[CODEC_MAX_EVENTS];
    size_t n_events;
    int composing;                    /* -1 none, 0 stopped, 1 composing */
    /* CODEC_ERROR */
    core_err_type_t err_type;
    char condition[64];               /* e.g. "service-unavailable" */
    /* CODEC_IGNORE of a chat message that will not be stored (behaviour.md §11):
     * the RFC 6120 condition owed to its sender (codec_build_refusal),
     * else NULL. Static text. */
    const char *refuse;
    /* CODEC_RETRACT */
    char retract_id[COURIER_ID_MAX];
    /* Forms this message shows its sender's client answering in
     * (CODEC_SHOWN_*): requests in older forms can be left out of what we
     * send to that peer (issue 17, codec_build_chat_for). */
    unsigned shown;
} codec_msg_t;

/* codec_msg_t.shown: an XEP-0184 <received/>, an XEP-0333 <displayed/>
 * (or <acknowledged/>), an XEP-0085 chat state. */
#define CODEC_SHOWN_RECEIPT 1u
#define CODEC_SHOWN_MARKER 2u
#define CODEC_SHOWN_CHATSTATE 4u

typedef struct {
    size_t max_body_bytes;  /* larger bodies: CODEC_IGNORE ("body too big") */
} codec_limits_t;

/* Classify and parse a <message/> stanza. Returns COURIER_OK (see out->cls)
 * or COURIER_ENOMEM. Always call codec_msg_clear() afterwards. */
int codec_parse_message(xmpp_stanza_t *st, const codec_limits_t *lim,
                        codec_msg_t *out);
void codec_msg_clear(codec_msg_t *m);

/* The stable id of a message without one: "dgst-" + hex of a 128-bit
 * digest of (from, body, delay stamp). Same input, same id. */
void codec_digest_id(const char *from, const char *body, int64_t delay_ms,
                     char out[COURIER_ID_MAX]);

/* Build our outgoing chat message (behaviour.md §8): body, XEP-0022 requests,
 * XEP-0184 request, XEP-0333 markable, XEP-0359 origin-id, XEP-0203 delay
 * with `created_ms` and `from` (our bare JID) when `attempts` > 0 (a
 * resend), jabber:x:oob when the body of a VOICE/IMAGE message is a URL,
 * and the kind in CODEC_NS_KIND for VOICE/IMAGE. NULL on ENOMEM. */
xmpp_stanza_t *codec_build_chat(xmpp_ctx_t *ctx, const char *to,
                                const char *id, courier_kind_t kind,
                                const char *body, int64_t created_ms,
                                const char *from, unsigned attempts);

/* The same, for a peer whose client has shown the forms in `shown`
 * (CODEC_SHOWN_*, from its earlier messages): the XEP-0022 request for an
 * event it answers in a newer form is left out (<delivered/> once it sent
 * an XEP-0184 receipt, <displayed/> once an XEP-0333 displayed marker,
 * <composing/> once an XEP-0085 chat state). <offline/>, the XEP-0184
 * request, the marker and the origin-id always stay. shown = 0 is
 * codec_build_chat. */
xmpp_stanza_t *codec_build_chat_for(xmpp_ctx_t *ctx, const char *to,
                                    const char *id, courier_kind_t kind,
                                    const char *body, int64_t created_ms,
                                    const char *from, unsigned attempts,
                                    unsigned shown);

/* Append the app's `meta` (behaviour.md §9) to a chat message built by
 * codec_build_chat: <meta xmlns=CODEC_NS_META>. Nothing for NULL or "".
 * 0, or -1 on ENOMEM. */
int codec_add_meta(xmpp_stanza_t *msg, const char *meta);

/* An XEP-0424 retraction of our message `retracted_id` to `to`: <retract
 * id/>, the fallback indication and body for clients that do not know it,
 * and a store hint (so offline storage keeps it). A fresh stanza id.
 * NULL on ENOMEM. */
xmpp_stanza_t *codec_build_retraction(xmpp_ctx_t *ctx, const char *to,
                                      const char *retracted_id);

/* Build one receipt stanza for message `id` to `to`, in the one form of
 * `asked` that fits `state` and that servers store offline first
 * (DELIVERED: XEP-0184 received, else XEP-0333 received, else XEP-0022
 * delivered; DISPLAYED: XEP-0333 displayed, else XEP-0022 displayed).
 * NULL if no form applies or on ENOMEM. */
xmpp_stanza_t *codec_build_receipt(xmpp_ctx_t *ctx, const char *to,
                                   const char *id, courier_state_t state,
                                   unsigned asked);

/* XEP-0022 composing (with `last_id`, may be NULL, as its <id>) plus
 * XEP-0085 <composing/> (on) or <active/> (off). */
xmpp_stanza_t *codec_build_composing(xmpp_ctx_t *ctx, const char *to,
                                     const char *last_id, int on);

/* The error owed to the sender of `msg`, a message we will not store
 * (behaviour.md §11): <message type='error'> to its full `from`, with its id (if
 * any, verbatim), <error type='modify'> with `condition` and `text`. NULL
 * without a `from`, or on ENOMEM. */
xmpp_stanza_t *codec_build_refusal(xmpp_ctx_t *ctx, xmpp_stanza_t *msg,
                                   const char *condition, const char *text);

/* XEP-0199 ping iq to `domain` with `id`. */
xmpp_stanza_t *codec_build_ping(xmpp_ctx_t *ctx, const char *domain,
                                const char *id);

/* Reply to an incoming iq get/set: an empty result for an XEP-0199 ping,
 * `service-unavailable` for anything else. NULL for result/error iqs (no
 * reply is due), a missing id, or ENOMEM. */
xmpp_stanza_t *codec_build_iq_reply(xmpp_ctx_t *ctx, xmpp_stanza_t *iq);

#endif /* COURIER_CODEC_H */
