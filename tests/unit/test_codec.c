/* SPDX-License-Identifier: MIT */
/* Unit tests of the codec (behaviour.md §3, §8): table-driven parses of written and
 * hostile stanzas, round trips through every builder, and allocation
 * failure loops. No connection: stanzas come from strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"
#include "util.h"

#define T0 1700000000000LL /* 2023-11-14T22:13:20Z */
#define BIG_LEN 10000
#define ALL_ASKS (CORE_ASK_X22_DELIVERED | CORE_ASK_X22_DISPLAYED | \
                  CORE_ASK_RECEIPT | CORE_ASK_MARKABLE | \
                  CORE_ASK_X22_COMPOSING)

#define NS_EV "xmlns='jabber:x:event'"
#define NS_RC "xmlns='urn:xmpp:receipts'"
#define NS_MK "xmlns='urn:xmpp:chat-markers:0'"
#define NS_CS "xmlns='http://jabber.org/protocol/chatstates'"
#define NS_ST "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'"
#define NS_DL "xmlns='urn:xmpp:delay'"
#define NS_KD "xmlns='" CODEC_NS_KIND "'"
#define BOB "bob@example.com"
#define MSG "<message from='Bob@Example.COM/phone' to='alice@example.com'"
#define DELAY(s) "<delay " NS_DL " stamp='" s "'/>"
#define CHAT_DELAY(s) MSG " id='m1'><body>hi</body>" DELAY(s) "</message>"

/* ---- fixtures and helpers ----------------------------------------------- */

static int setup(void **st)
{
    xmpp_ctx_t *ctx = xmpp_ctx_new(NULL, NULL);
    assert_non_null(ctx);
    *st = ctx;
    return 0;
}

static int teardown(void **st)
{
    xmpp_ctx_free(*st);
    return 0;
}

/* Replace "{BIG}" (10 000 chars), "{BODYMAX}" (exactly the default body
 * limit), "{BODYOVER}" (one byte more), "{ID127}" (the longest valid id)
 * and "{ID128}" (one byte more) in `tpl`. Caller frees. */
static char *expand(const char *tpl)
{
    static const struct {
        const char *tok;
        size_t len;
        char fill;
    } toks[] = {
        { "{BIG}", BIG_LEN, 'a' },
        { "{BODYMAX}", COURIER_BODY_MAX_DEFAULT, 'b' },
        { "{BODYOVER}", COURIER_BODY_MAX_DEFAULT + 1, 'b' },
        { "{ID127}", COURIER_ID_MAX - 1, 'i' },
        { "{ID128}", COURIER_ID_MAX, 'i' },
    };
    size_t cap = strlen(tpl) + 1, n = 0;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(toks); i++)
        if (strstr(tpl, toks[i].tok))
            cap += 2 * toks[i].len; /* each token appears at most twice */
    char *out = malloc(cap);
    assert_non_null(out);
    for (const char *p = tpl; *p;) {
        size_t i;
        for (i = 0; i < UTIL_ARRAY_LEN(toks); i++)
            if (strncmp(p, toks[i].tok, strlen(toks[i].tok)) == 0)
                break;
        if (i < UTIL_ARRAY_LEN(toks)) {
            memset(out + n, toks[i].fill, toks[i].len);
            n += toks[i].len;
            p += strlen(toks[i].tok);
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    return out;
}

static xmpp_stanza_t *from_xml(xmpp_ctx_t *ctx, const char *tpl)
{
    char *xml = expand(tpl);
    xmpp_stanza_t *s = xmpp_stanza_new_from_string(ctx, xml);
    free(xml);
    assert_non_null(s);
    return s;
}

/* Serialise a built stanza, parse the text back (as a peer's client
 * would) and stamp it with the sender, as the peer's server does. */
static xmpp_stanza_t *over_the_wire(xmpp_ctx_t *ctx, xmpp_stanza_t *built,
                                    const char *from)
{
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(xmpp_stanza_to_text(built, &buf, &len), XMPP_EOK);
    xmpp_stanza_t *s = xmpp_stanza_new_from_string(ctx, buf);
    xmpp_free(ctx, buf);
    assert_non_null(s);
    if (from)
        assert_int_equal(xmpp_stanza_set_from(s, from), XMPP_EOK);
    return s;
}

static void parse_str(xmpp_ctx_t *ctx, const char *tpl,
                      const codec_limits_t *lim, codec_msg_t *m)
{
    xmpp_stanza_t *s = from_xml(ctx, tpl);
    assert_int_equal(codec_parse_message(s, lim, m), COURIER_OK);
    xmpp_stanza_release(s);
}

static xmpp_stanza_t *child(xmpp_stanza_t *s, const char *name,
                            const char *ns)
{
    return xmpp_stanza_get_child_by_name_and_ns(s, name, ns);
}

/* ---- the parse table -------------------------------------------------- */

enum { CS_NONE, CS_OFF, CS_ON }; /* composing -1, 0, 1 */
#define ID_DIGEST "<digest>"      /* expect codec_digest_id(from, body) */
#define ID_FRESH "<fresh>"        /* no id, no stamp: a new "anon-" id */

typedef struct {
    courier_state_t state;
    const char *id;
    int cumulative;
} want_ev_t;

typedef struct {
    const char *name;
    const char *xml;
    codec_class_t cls;
    const char *why;   /* CODEC_IGNORE */
    const char *id;    /* CHAT, ERROR */
    const char *body;  /* CHAT */
    courier_kind_t kind;
    int64_t delay_ms;
    unsigned asked;
    int cs;
    size_t n_events;
    want_ev_t ev[CODEC_MAX_EVENTS];
    core_err_type_t err_type;
    const char *condition;
} parse_case_t;

static const parse_case_t parse_cases[] = {
    /* behaviour.md §8: our own chat message, every request */
    { "chat with every request",
      MSG " id='m1' type='chat'><body>hello</body><x " NS_EV ">"
      "<offline/><delivered/><displayed/><composing/></x><request " NS_RC
      "/><markable " NS_MK "/><origin-id xmlns='urn:xmpp:sid:0' id='m1'/>"
      "</message>",
      CODEC_CHAT, .id = "m1", .body = "hello", .asked = ALL_ASKS },
    { "chat without type", MSG " id='m1'><body>hi</body></message>",
      CODEC_CHAT, .id = "m1", .body = "hi" },
    { "chat of type normal",
      MSG " id='m1' type='normal'><body>hi</body></message>", CODEC_CHAT,
      .id = "m1", .body = "hi" },
    { "unknown type counts as normal",
      MSG " id='m1' type='shout'><body>hi</body></message>", CODEC_CHAT,
      .id = "m1", .body = "hi" },
    { "body text with entities, nested markup dropped",
      MSG " id='m1'><body>a &amp; <b>x</b>b &lt;3</body></message>",
      CODEC_CHAT, .id = "m1", .body = "a & b <3" },
    { "first body wins",
      MSG " id='m1'><body>one</body><body xml:lang='de'>eins</body>"
      "</message>",
      CODEC_CHAT, .id = "m1", .body = "one" },
    { "XEP-0184 request only",
      MSG " id='m1'><body>hi</body><request " NS_RC "/></message>",
      CODEC_CHAT, .id = "m1", .body = "hi", .asked = CORE_ASK_RECEIPT },
    { "XEP-0022 displayed request only",
      MSG " id='m1'><body>hi</body><x " NS_EV "><displayed/></x></message>",
      CODEC_CHAT, .id = "m1", .body = "hi",
      .asked = CORE_ASK_X22_DISPLAYED },
    { "XEP-0022 request with an empty <id/> is still a request",
      MSG " id='m1'><body>hi</body><x " NS_EV "><delivered/><id/></x>"
      "</message>",
      CODEC_CHAT, .id = "m1", .body = "hi",
      .asked = CORE_ASK_X22_DELIVERED },
    { "request in a wrong namespace asks nothing",
      MSG " id='m1'><body>hi</body><request xmlns='urn:xmpp:receipt'/>"
      "<markable xmlns='urn:xmpp:chat-markers:1'/><x><delivered/></x>"
      "</message>",
      CODEC_CHAT, .id = "m1", .body = "hi" },
    { "chat carrying a chat state",
      MSG " id='m1'><body>hi</body><active " NS_CS "/></message>",
      CODEC_CHAT, .id = "m1", .body = "hi", .cs = CS_OFF },

    /* behaviour.md §3: ids */
    { "origin-id when the stanza has no id",
      MSG "><body>hi</body><origin-id xmlns='urn:xmpp:sid:0' id='o1'/>"
      "</message>",
      CODEC_CHAT, .id = "o1", .body = "hi" },
    { "empty id attribute counts as absent",
      MSG " id=''><body>hi</body><origin-id xmlns='urn:xmpp:sid:0' id='o1'/>"
      "</message>",
      CODEC_CHAT, .id = "o1", .body = "hi" },
    { "stanza id beats origin-id",
      MSG " id='m1'><body>hi</body><origin-id xmlns='urn:xmpp:sid:0' "
      "id='o1'/></message>",
      CODEC_CHAT, .id = "m1", .body = "hi" },
    { "no id and no stamp: a fresh id", MSG "><body>hi</body></message>",
      CODEC_CHAT, .id = ID_FRESH, .body = "hi" },
    { "origin-id in a wrong namespace: a fresh id",
      MSG "><body>hi</body><origin-id xmlns='urn:xmpp:sid:1' id='o1'/>"
      "</message>",
      CODEC_CHAT, .id = ID_FRESH, .body = "hi" },
    { "huge origin-id: a fresh id",
      MSG "><body>hi</body><origin-id xmlns='urn:xmpp:sid:0' id='{BIG}'/>"
      "</message>",
      CODEC_CHAT, .id = ID_FRESH, .body = "hi" },
    { "digest covers the delay stamp",
      MSG "><body>hi</body>" DELAY("2023-11-14T22:13:20Z") "</message>",
      CODEC_CHAT, .id = ID_DIGEST, .body = "hi", .delay_ms = T0 },
    { "huge stanza id refused", MSG " id='{BIG}'><body>hi</body></message>",
      CODEC_IGNORE, .why = "bad id" },
    { "id of 127 bytes kept", MSG " id='{ID127}'><body>hi</body></message>",
      CODEC_CHAT, .id = "{ID127}", .body = "hi" },
    { "id of 128 bytes refused",
      MSG " id='{ID128}'><body>hi</body></message>", CODEC_IGNORE,
      .why = "bad id" },
    { "id with a control character refused",
      MSG " id='a&#9;b'><body>hi</body></message>", CODEC_IGNORE,
      .why = "bad id" },

    /* bodies */
    { "body at the limit", MSG " id='m1'><body>{BODYMAX}</body></message>",
      CODEC_CHAT, .id = "m1", .body = "{BODYMAX}" },
    { "body over the limit",
      MSG " id='m1'><body>{BODYOVER}</body></message>", CODEC_IGNORE,
      .why = "body too big" },
    { "empty body and nothing else", MSG " id='m1'><body/></message>",
      CODEC_IGNORE, .why = "no body, no event" },
    { "body in a foreign namespace is no body",
      MSG " id='m1'><body xmlns='urn:x'>hi</body></message>", CODEC_IGNORE,
      .why = "no body, no event" },

    /* kinds */
    { "voice kind",
      MSG " id='m1'><body>https://x/v.ogg</body><kind " NS_KD ">voice</kind>"
      "</message>",
      CODEC_CHAT, .id = "m1", .body = "https://x/v.ogg",
      .kind = COURIER_VOICE },
    { "image kind",
      MSG " id='m1'><body>pic</body><kind " NS_KD ">image</kind></message>",
      CODEC_CHAT, .id = "m1", .body = "pic", .kind = COURIER_IMAGE },
    { "unknown kind is text",
      MSG " id='m1'><body>v</body><kind " NS_KD ">video</kind></message>",
      CODEC_CHAT, .id = "m1", .body = "v" },
    { "kind in a wrong namespace is text",
      MSG " id='m1'><body>v</body><kind xmlns='urn:x'>voice</kind>"
      "</message>",
      CODEC_CHAT, .id = "m1", .body = "v" },
    { "huge kind is text",
      MSG " id='m1'><body>v</body><kind " NS_KD ">{BIG}</kind></message>",
      CODEC_CHAT, .id = "m1", .body = "v" },

    /* XEP-0203 / XEP-0082 stamps */
    { "delay Z", CHAT_DELAY("2023-11-14T22:13:20Z"), CODEC_CHAT, .id = "m1",
      .body = "hi", .delay_ms = T0 },
    { "delay with ms", CHAT_DELAY("2023-11-14T22:13:20.123Z"), CODEC_CHAT,
      .id = "m1", .body = "hi", .delay_ms = T0 + 123 },
    { "delay with one fraction digit", CHAT_DELAY("2023-11-14T22:13:20.5Z"),
      CODEC_CHAT, .id = "m1", .body = "hi", .delay_ms = T0 + 500 },
    { "delay with microseconds",
      CHAT_DELAY("2023-11-14T22:13:20.123456Z"), CODEC_CHAT, .id = "m1",
      .body = "hi", .delay_ms = T0 + 123 },
    { "delay with +01:00", CHAT_DELAY("2023-11-14T23:13:20+01:00"),
      CODEC_CHAT, .id = "m1", .body = "hi", .delay_ms = T0 },
    { "delay with -05:30", CHAT_DELAY("2023-11-14T16:43:20-05:30"),
      CODEC_CHAT, .id = "m1", .body = "hi", .delay_ms = T0 },
    { "delay on a leap day", CHAT_DELAY("2024-02-29T00:00:00Z"), CODEC_CHAT,
      .id = "m1", .body = "hi", .delay_ms = 1709164800000LL },
    { "delay at the epoch's far end", CHAT_DELAY("9999-12-31T23:59:59Z"),
      CODEC_CHAT, .id = "m1", .body = "hi",
      .delay_ms = 253402300799000LL },
    { "legacy jabber:x:delay",
      MSG " id='m1'><body>hi</body><x xmlns='jabber:x:delay' "
      "stamp='20231114T22:13:20'/></message>",
      CODEC_CHAT, .id = "m1", .body = "hi", .delay_ms = T0 },
    { "earliest of several delays wins",
      MSG " id='m1'><body>hi</body>" DELAY("2023-11-14T22:20:00Z")
      DELAY("2023-11-14T22:13:20Z") "<x xmlns='jabber:x:delay' "
      "stamp='20231114T22:30:00'/></message>",
      CODEC_CHAT, .id = "m1", .body = "hi", .delay_ms = T0 },
    { "delay month 13", CHAT_DELAY("2023-13-14T22:13:20Z"), CODEC_CHAT,
      .id = "m1", .body = "hi" },
    { "delay Feb 30", CHAT_DELAY("2023-02-30T22:13:20Z"), CODEC_CHAT,
      .id = "m1", .body = "hi" },
    { "delay Feb 29 of a common year", CHAT_DELAY("2023-02-29T00:00:00Z"),
      CODEC_CHAT, .id = "m1", .body = "hi" },
    { "delay hour 24", CHAT_DELAY("2023-11-14T24:00:00Z"), CODEC_CHAT,
      .id = "m1", .body = "hi" },
    { "delay without zone", CHAT_DELAY("2023-11-14T22:13:20"), CODEC_CHAT,
      .id = "m1", .body = "hi" },
    { "delay with a space", CHAT_DELAY("2023-11-14 22:13:20Z"), CODEC_CHAT,
      .id = "m1", .body = "hi" },
    { "delay with trailing junk", CHAT_DELAY("2023-11-14T22:13:20Zjunk"),
      CODEC_CHAT, .id = "m1", .body = "hi" },
    { "delay with an empty fraction", CHAT_DELAY("2023-11-14T22:13:20.Z"),
      CODEC_CHAT, .id = "m1", .body = "hi" },
    { "delay with a bad offset", CHAT_DELAY("2023-11-14T22:13:20+1:00"),
      CODEC_CHAT, .id = "m1", .body = "hi" },
    { "delay before 1970", CHAT_DELAY("1969-12-31T23:59:59Z"), CODEC_CHAT,
      .id = "m1", .body = "hi" },
    { "delay truncated", CHAT_DELAY("2023-11"), CODEC_CHAT, .id = "m1",
      .body = "hi" },
    { "delay without stamp",
      MSG " id='m1'><body>hi</body><delay " NS_DL "/></message>",
      CODEC_CHAT, .id = "m1", .body = "hi" },
    { "delay in a wrong namespace",
      MSG " id='m1'><body>hi</body><delay xmlns='urn:xmpp:delayed' "
      "stamp='2023-11-14T22:13:20Z'/></message>",
      CODEC_CHAT, .id = "m1", .body = "hi" },

    /* hostile senders */
    { "missing from",
      "<message id='m1'><body>hi</body></message>", CODEC_IGNORE,
      .why = "no from" },
    { "from a@@b", "<message from='a@@b' id='m1'><body>hi</body></message>",
      CODEC_IGNORE, .why = "bad from" },
    { "from @x", "<message from='@x' id='m1'><body>hi</body></message>",
      CODEC_IGNORE, .why = "bad from" },
    { "from with a space",
      "<message from='bob @example.com' id='m1'><body>hi</body></message>",
      CODEC_IGNORE, .why = "bad from" },
    { "empty from", "<message from='' id='m1'><body>hi</body></message>",
      CODEC_IGNORE, .why = "bad from" },
    { "from with an empty resource",
      "<message from='bob@example.com/' id='m1'><body>hi</body></message>",
      CODEC_IGNORE, .why = "bad from" },
    { "huge from",
      "<message from='{BIG}@example.com' id='m1'><body>hi</body></message>",
      CODEC_IGNORE, .why = "bad from" },
    { "event from a bad from",
      "<message from='a@@b'><received " NS_RC " id='m1'/></message>",
      CODEC_IGNORE, .why = "bad from" },

    /* not for us */
    { "presence", "<presence from='bob@example.com'/>", CODEC_IGNORE,
      .why = "not a message" },
    { "iq", "<iq from='bob@example.com' type='get' id='q'/>", CODEC_IGNORE,
      .why = "not a message" },
    { "groupchat",
      MSG " id='m1' type='groupchat'><body>hi</body></message>",
      CODEC_IGNORE, .why = "not 1:1 chat" },
    { "headline", MSG " id='m1' type='headline'><body>hi</body></message>",
      CODEC_IGNORE, .why = "not 1:1 chat" },
    { "empty message", MSG "/>", CODEC_IGNORE, .why = "no body, no event" },

    /* behaviour.md §1: XEP-0022 events */
    { "x22 offline",
      MSG "><x " NS_EV "><offline/><id>m1</id></x></message>", CODEC_EVENTS,
      .n_events = 1, .ev = { { COURIER_OFFLINE, "m1", 0 } } },
    { "x22 delivered",
      MSG "><x " NS_EV "><delivered/><id>m1</id></x></message>",
      CODEC_EVENTS, .n_events = 1, .ev = { { COURIER_DELIVERED, "m1", 0 } } },
    { "x22 displayed is not cumulative",
      MSG "><x " NS_EV "><displayed/><id>m1</id></x></message>",
      CODEC_EVENTS, .n_events = 1, .ev = { { COURIER_DISPLAYED, "m1", 0 } } },
    { "x22 id before the event",
      MSG "><x " NS_EV "><id>m1</id><delivered/></x></message>",
      CODEC_EVENTS, .n_events = 1, .ev = { { COURIER_DELIVERED, "m1", 0 } } },
    { "x22 several events in one x",
      MSG "><x " NS_EV "><offline/><delivered/><displayed/><id>m1</id></x>"
      "</message>",
      CODEC_EVENTS, .n_events = 3,
      .ev = { { COURIER_OFFLINE, "m1", 0 }, { COURIER_DELIVERED, "m1", 0 },
              { COURIER_DISPLAYED, "m1", 0 } } },
    { "x22 composing", MSG "><x " NS_EV "><composing/><id>m1</id></x>"
      "</message>",
      CODEC_EVENTS, .cs = CS_ON },
    { "x22 cancel composing", MSG "><x " NS_EV "><id>m1</id></x></message>",
      CODEC_EVENTS, .cs = CS_OFF },
    { "x22 event without id is no event",
      MSG "><x " NS_EV "><delivered/></x></message>", CODEC_IGNORE,
      .why = "no body, no event" },
    { "x22 event with an empty id",
      MSG "><x " NS_EV "><delivered/><id/></x></message>", CODEC_IGNORE,
      .why = "no body, no event" },
    { "x22 event with a huge id",
      MSG "><x " NS_EV "><delivered/><id>{BIG}</id></x></message>",
      CODEC_IGNORE, .why = "no body, no event" },
    { "x22 event with a control character in its id",
      MSG "><x " NS_EV "><delivered/><id>m&#9;1</id></x></message>",
      CODEC_IGNORE, .why = "no body, no event" },
    { "x22 x without namespace",
      MSG "><x><delivered/><id>m1</id></x></message>", CODEC_IGNORE,
      .why = "no body, no event" },
    { "x22 event names in a foreign namespace",
      MSG "><x " NS_EV "><delivered xmlns='urn:x'/><id>m1</id></x>"
      "</message>",
      CODEC_EVENTS, .cs = CS_OFF },

    /* XEP-0184 */
    { "0184 received",
      MSG "><received " NS_RC " id='m1'/></message>", CODEC_EVENTS,
      .n_events = 1, .ev = { { COURIER_DELIVERED, "m1", 0 } } },
    { "0184 received, id on the stanza (legacy)",
      MSG " id='m2'><received " NS_RC "/></message>", CODEC_EVENTS,
      .n_events = 1, .ev = { { COURIER_DELIVERED, "m2", 0 } } },
    { "0184 received without any id",
      MSG "><received " NS_RC "/></message>", CODEC_IGNORE,
      .why = "no body, no event" },
    { "0184 received with a huge id",
      MSG "><received " NS_RC " id='{BIG}'/></message>", CODEC_IGNORE,
      .why = "no body, no event" },
    { "received in a wrong namespace is no event",
      MSG "><received xmlns='urn:xmpp:receipt' id='m1'/></message>",
      CODEC_IGNORE, .why = "no body, no event" },
    { "received without namespace is no event",
      MSG "><received id='m1'/></message>", CODEC_IGNORE,
      .why = "no body, no event" },
    { "received in jabber:x:event is no event",
      MSG "><received " NS_EV " id='m1'/></message>", CODEC_IGNORE,
      .why = "no body, no event" },

    /* XEP-0333 */
    { "0333 received", MSG "><received " NS_MK " id='m1'/></message>",
      CODEC_EVENTS, .n_events = 1, .ev = { { COURIER_DELIVERED, "m1", 0 } } },
    { "0333 displayed is cumulative",
      MSG "><displayed " NS_MK " id='m1'/></message>", CODEC_EVENTS,
      .n_events = 1, .ev = { { COURIER_DISPLAYED, "m1", 1 } } },
    { "0333 acknowledged is displayed, cumulative",
      MSG "><acknowledged " NS_MK " id='m1'/></message>", CODEC_EVENTS,
      .n_events = 1, .ev = { { COURIER_DISPLAYED, "m1", 1 } } },
    { "0333 displayed without id",
      MSG " id='m1'><displayed " NS_MK "/></message>", CODEC_IGNORE,
      .why = "no body, no event" },
    { "0333 displayed in a wrong namespace",
      MSG "><displayed xmlns='urn:xmpp:chat-markers:1' id='m1'/></message>",
      CODEC_IGNORE, .why = "no body, no event" },

    /* XEP-0085 */
    { "0085 composing", MSG "><composing " NS_CS "/></message>",
      CODEC_EVENTS, .cs = CS_ON },
    { "0085 paused", MSG "><paused " NS_CS "/></message>", CODEC_EVENTS,
      .cs = CS_OFF },
    { "0085 gone", MSG "><gone " NS_CS "/></message>", CODEC_EVENTS,
      .cs = CS_OFF },
    { "0085 unknown state", MSG "><thinking " NS_CS "/></message>",
      CODEC_IGNORE, .why = "no body, no event" },
    { "0085 wins over x22",
      MSG "><x " NS_EV "><composing/><id>m1</id></x><active " NS_CS "/>"
      "</message>",
      CODEC_EVENTS, .cs = CS_OFF },

    /* several forms, several events */
    { "one event in every form is one event",
      MSG "><x " NS_EV "><delivered/><id>m1</id></x><received " NS_RC
      " id='m1'/><received " NS_MK " id='m1'/></message>",
      CODEC_EVENTS, .n_events = 1, .ev = { { COURIER_DELIVERED, "m1", 0 } } },
    { "x22 and 0333 displayed merge, cumulative",
      MSG "><x " NS_EV "><displayed/><id>m1</id></x><displayed " NS_MK
      " id='m1'/></message>",
      CODEC_EVENTS, .n_events = 1, .ev = { { COURIER_DISPLAYED, "m1", 1 } } },
    { "events about different ids",
      MSG "><received " NS_RC " id='m1'/><displayed " NS_MK " id='m2'/>"
      "</message>",
      CODEC_EVENTS, .n_events = 2,
      .ev = { { COURIER_DELIVERED, "m1", 0 },
              { COURIER_DISPLAYED, "m2", 1 } } },
    { "more than CODEC_MAX_EVENTS events: the first ones kept",
      MSG "><received " NS_RC " id='m1'/><received " NS_RC " id='m2'/>"
      "<received " NS_RC " id='m3'/><received " NS_RC " id='m4'/>"
      "<received " NS_RC " id='m5'/><received " NS_RC " id='m6'/>"
      "</message>",
      CODEC_EVENTS, .n_events = 4,
      .ev = { { COURIER_DELIVERED, "m1", 0 }, { COURIER_DELIVERED, "m2", 0 },
              { COURIER_DELIVERED, "m3", 0 },
              { COURIER_DELIVERED, "m4", 0 } } },
    { "a skipped event makes room",
      MSG "><received " NS_RC " id='{BIG}'/><received " NS_RC " id='m1'/>"
      "</message>",
      CODEC_EVENTS, .n_events = 1, .ev = { { COURIER_DELIVERED, "m1", 0 } } },
    { "empty body with a receipt is an event",
      MSG " id='r1'><body/><received " NS_RC " id='m1'/></message>",
      CODEC_EVENTS, .n_events = 1, .ev = { { COURIER_DELIVERED, "m1", 0 } } },

    /* behaviour.md §2 "Error replies" */
    { "error wait",
      MSG " id='m1' type='error'><body>hi</body><error type='wait'>"
      "<resource-constraint " NS_ST "/></error></message>",
      CODEC_ERROR, .id = "m1", .err_type = CORE_ERR_WAIT,
      .condition = "resource-constraint" },
    { "error cancel, text first",
      MSG " id='m1' type='error'><error type='cancel'><text " NS_ST
      ">User session terminated</text><service-unavailable " NS_ST "/>"
      "</error></message>",
      CODEC_ERROR, .id = "m1", .err_type = CORE_ERR_CANCEL,
      .condition = "service-unavailable" },
    { "error modify",
      MSG " id='m1' type='error'><error type='modify'><bad-request " NS_ST
      "/></error></message>",
      CODEC_ERROR, .id = "m1", .err_type = CORE_ERR_MODIFY,
      .condition = "bad-request" },
    { "error auth",
      MSG " id='m1' type='error'><error type='auth'><forbidden " NS_ST "/>"
      "</error></message>",
      CODEC_ERROR, .id = "m1", .err_type = CORE_ERR_AUTH,
      .condition = "forbidden" },
    { "error continue",
      MSG " id='m1' type='error'><error type='continue'>"
      "<recipient-unavailable " NS_ST "/></error></message>",
      CODEC_ERROR, .id = "m1", .err_type = CORE_ERR_CONTINUE,
      .condition = "recipient-unavailable" },
    { "error without <error>", MSG " id='m1' type='error'/>", CODEC_ERROR,
      .id = "m1", .err_type = CORE_ERR_CANCEL,
      .condition = "undefined-condition" },
    { "error of unknown type, no condition",
      MSG " id='m1' type='error'><error type='bogus'/></message>",
      CODEC_ERROR, .id = "m1", .err_type = CORE_ERR_CANCEL,
      .condition = "undefined-condition" },
    { "error with only text",
      MSG " id='m1' type='error'><error type='wait'><text " NS_ST ">x</text>"
      "</error></message>",
      CODEC_ERROR, .id = "m1", .err_type = CORE_ERR_WAIT,
      .condition = "undefined-condition" },
    { "error condition in a wrong namespace",
      MSG " id='m1' type='error'><error type='wait'><gone-fishing "
      "xmlns='urn:x'/></error></message>",
      CODEC_ERROR, .id = "m1", .err_type = CORE_ERR_WAIT,
      .condition = "undefined-condition" },
    { "error condition too long",
      MSG " id='m1' type='error'><error type='cancel'><a2345678901234567890"
      "12345678901234567890123456789012345678901234567890 " NS_ST "/>"
      "</error></message>",
      CODEC_ERROR, .id = "m1", .err_type = CORE_ERR_CANCEL,
      .condition = "undefined-condition" },
    { "error without id",
      MSG " type='error'><error type='wait'/></message>", CODEC_IGNORE,
      .why = "error without id" },
    { "error with a huge id",
      MSG " id='{BIG}' type='error'><error type='wait'/></message>",
      CODEC_IGNORE, .why = "bad id" },
    { "error with receipts is only an error",
      MSG " id='m1' type='error'><received " NS_RC " id='m2'/></message>",
      CODEC_ERROR, .id = "m1", .err_type = CORE_ERR_CANCEL,
      .condition = "undefined-condition" },
};

static void check_parse(const parse_case_t *c, const codec_msg_t *m)
{
    print_message("case: %s\n", c->name);
    assert_int_equal(m->cls, c->cls);
    if (c->cls == CODEC_IGNORE) {
        assert_non_null(m->why);
        assert_string_equal(m->why, c->why);
        assert_null(m->body);
        assert_int_equal(m->n_events, 0);
        return;
    }
    assert_null(m->why);
    assert_string_equal(m->from, BOB);
    if (c->cls == CODEC_ERROR) {
        assert_string_equal(m->id, c->id);
        assert_int_equal(m->err_type, c->err_type);
        assert_string_equal(m->condition, c->condition);
        assert_null(m->body);
        assert_int_equal(m->n_events, 0);
        return;
    }
    assert_int_equal(m->composing, c->cs - 1);
    assert_int_equal(m->n_events, c->n_events);
    for (size_t i = 0; i < c->n_events; i++) {
        assert_int_equal(m->events[i].state, c->ev[i].state);
        assert_string_equal(m->events[i].id, c->ev[i].id);
        assert_int_equal(m->events[i].cumulative, c->ev[i].cumulative);
    }
    if (c->cls == CODEC_EVENTS) {
        assert_null(m->body);
        return;
    }
    char *body = expand(c->body);
    assert_non_null(m->body);
    assert_string_equal(m->body, body);
    free(body);
    assert_int_equal(m->kind, c->kind);
    assert_int_equal(m->delay_ms, c->delay_ms);
    assert_int_equal(m->asked, c->asked);
    if (strcmp(c->id, ID_DIGEST) == 0) {
        char want[COURIER_ID_MAX];
        codec_digest_id(BOB, m->body, c->delay_ms, want);
        assert_string_equal(m->id, want);
    } else if (strcmp(c->id, ID_FRESH) == 0) {
        assert_memory_equal(m->id, "anon-", 5);
        assert_true(util_id_valid(m->id));
    } else {
        char *id = expand(c->id);
        assert_string_equal(m->id, id);
        free(id);
    }
}

/* behaviour.md §3/§8 and the hostile table above. */
static void test_parse_table(void **st)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(parse_cases); i++) {
        codec_msg_t m;
        parse_str(*st, parse_cases[i].xml, NULL, &m);
        check_parse(&parse_cases[i], &m);
        codec_msg_clear(&m);
    }
}

/* The configured limit replaces the default; 0 means the default. */
static void test_parse_body_limit(void **st)
{
    static const struct {
        size_t max;
        const char *body;
        codec_class_t cls;
    } cases[] = {
        { 5, "hello", CODEC_CHAT },
        { 5, "hello!", CODEC_IGNORE },
        { 5, "h\xc3\xa9llo", CODEC_IGNORE }, /* bytes, not characters */
        { 0, "{BODYMAX}", CODEC_CHAT },
        { 0, "{BODYOVER}", CODEC_IGNORE },
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        char xml[256];
        codec_limits_t lim = { cases[i].max };
        codec_msg_t m;
        snprintf(xml, sizeof(xml), MSG " id='m1'><body>%s</body></message>",
                 cases[i].body);
        parse_str(*st, xml, &lim, &m);
        assert_int_equal(m.cls, cases[i].cls);
        if (m.cls == CODEC_IGNORE)
            assert_string_equal(m.why, "body too big");
        codec_msg_clear(&m);
    }
}

/* behaviour.md §11: a chat message we will not store is refused, not swallowed:
 * the parse names the condition owed to the sender, and the error built
 * from it reaches the sender as a permanent (modify) error on its id. */
static void test_unstored_message_is_refused_to_sender(void **st)
{
    xmpp_ctx_t *ctx = *st;
    static const struct {
        const char *xml;
        const char *why, *refuse;
        const char *id; /* in the error, NULL: none */
    } cases[] = {
        { MSG " id='m1'><body>{BODYOVER}</body></message>", "body too big",
          "policy-violation", "m1" },
        { MSG " id='{ID128}'><body>hi</body></message>", "bad id",
          "bad-request", "{ID128}" },
        { MSG "><body>{BODYOVER}</body></message>", "body too big",
          "policy-violation", NULL },
        /* nothing is owed: errors, events, groupchat, nothing at all */
        { MSG " type='error' id='{ID128}'><body>x</body></message>",
          "bad id", NULL, NULL },
        { MSG " type='groupchat' id='m1'><body>x</body></message>",
          "not 1:1 chat", NULL, NULL },
        { MSG " id='m1'/>", "no body, no event", NULL, NULL },
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        print_message("case %zu\n", i);
        xmpp_stanza_t *in = from_xml(ctx, cases[i].xml);
        codec_msg_t m;
        assert_int_equal(codec_parse_message(in, NULL, &m), COURIER_OK);
        assert_int_equal(m.cls, CODEC_IGNORE);
        assert_string_equal(m.why, cases[i].why);
        if (!cases[i].refuse) {
            assert_null(m.refuse);
            codec_msg_clear(&m);
            xmpp_stanza_release(in);
            continue;
        }
        assert_non_null(m.refuse);
        assert_string_equal(m.refuse, cases[i].refuse);
        xmpp_stanza_t *err = codec_build_refusal(ctx, in, m.refuse, m.why);
        codec_msg_clear(&m);
        assert_non_null(err);
        assert_string_equal(xmpp_stanza_get_type(err), "error");
        assert_string_equal(xmpp_stanza_get_to(err), "Bob@Example.COM/phone");
        assert_null(xmpp_stanza_get_child_by_name(err, "body"));
        /* what the sender's client parses */
        xmpp_stanza_t *back = over_the_wire(ctx, err, "alice@example.com/x");
        xmpp_stanza_release(err);
        if (cases[i].id) {
            char *id = expand(cases[i].id);
            assert_string_equal(xmpp_stanza_get_id(back), id);
            if (strlen(id) < COURIER_ID_MAX) {
                assert_int_equal(codec_parse_message(back, NULL, &m),
                                 COURIER_OK);
                assert_int_equal(m.cls, CODEC_ERROR);
                assert_string_equal(m.id, id);
                assert_string_equal(m.condition, cases[i].refuse);
                assert_int_equal(m.err_type, CORE_ERR_MODIFY);
                codec_msg_clear(&m);
            }
            free(id);
        } else {
            assert_null(xmpp_stanza_get_id(back));
        }
        xmpp_stanza_t *e = xmpp_stanza_get_child_by_name(back, "error");
        assert_non_null(e);
        assert_non_null(child(e, cases[i].refuse,
                              "urn:ietf:params:xml:ns:xmpp-stanzas"));
        xmpp_stanza_t *t = child(e, "text",
                                 "urn:ietf:params:xml:ns:xmpp-stanzas");
        assert_non_null(t);
        char *text = xmpp_stanza_get_text(t);
        assert_string_equal(text, cases[i].why);
        xmpp_free(ctx, text);
        xmpp_stanza_release(back);
        xmpp_stanza_release(in);
    }
    assert_null(codec_build_refusal(ctx, NULL, "bad-request", "x"));
}

/* RFC 7622 3.2: a domain's final dot is stripped before comparing. */
static void test_jid_domain_final_dot_stripped(void **st)
{
    (void)st;
    static const struct {
        const char *in, *want; /* want NULL: refused */
    } cases[] = {
        { "bob@example.com.", "bob@example.com" },
        { "bob@EXAMPLE.com./res", "bob@example.com" },
        { "example.com.", "example.com" },
        { "example.com./r", "example.com" },
        { "bob@example.com..", NULL },
        { "bob@.", NULL },
        { ".", NULL },
        { "bob@.example.com", NULL },
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        char out[COURIER_JID_MAX];
        print_message("case %zu: %s\n", i, cases[i].in);
        int rc = util_jid_bare(cases[i].in, out, sizeof(out));
        if (!cases[i].want) {
            assert_int_equal(rc, -1);
            assert_string_equal(out, "");
        } else {
            assert_int_equal(rc, 0);
            assert_string_equal(out, cases[i].want);
        }
    }
    /* a bound that fits the stripped form fits */
    char small[6];
    assert_int_equal(util_jid_bare("a.bc.", small, sizeof(small)), 0);
    assert_string_equal(small, "a.bc");
}

/* behaviour.md §11, RFC 7622: JIDs are compared as the servers compare them:
 * nodeprep/nameprep-like folding (NFKC + case folding, non-ASCII too,
 * default-ignorables dropped) and a domain's final dot stripped. */
static void test_jid_folded_like_the_servers(void **st)
{
    static const struct {
        const char *in, *want; /* want NULL: refused */
    } cases[] = {
        { "Bob@Example.COM/phone", "bob@example.com" },
        { "\xc3\x84rger@courier.test", "\xc3\xa4rger@courier.test" },
        { "\xc3\x84RGER@Courier.Test/r", "\xc3\xa4rger@courier.test" },
        { "stra\xc3\x9f" "e@example.com", "strasse@example.com" },
        { "\xef\xbd\x82ob@example.com", "bob@example.com" }, /* fullwidth b */
        { "bob\xc2\xad@example.com", "bob@example.com" },     /* soft hyphen */
        { "e\xcc\x81@example.com", "\xc3\xa9@example.com" },  /* NFC */
        { "\xce\xa3\xce\xa9@example.com", "\xcf\x83\xcf\x89@example.com" },
        { "bob@\xc3\x84.example", "bob@\xc3\xa4.example" },
        /* folding must not make separators or forbidden characters */
        { "a\xef\xbc\xa0" "b@example.com", NULL },  /* fullwidth @ */
        { "a\xef\xbc\x8f" "b@example.com", NULL },  /* fullwidth / */
        { "a\xef\xbc\x9a" "b@example.com", NULL },  /* fullwidth : */
        { "\xc2\xad@example.com", NULL },           /* empty once folded */
        { "bob\xc2\xa0x@example.com", NULL },       /* NBSP -> space */
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        char out[COURIER_JID_MAX];
        print_message("case %zu: %s\n", i, cases[i].in);
        int rc = util_jid_bare(cases[i].in, out, sizeof(out));
        if (!cases[i].want) {
            assert_int_equal(rc, -1);
            assert_string_equal(out, "");
        } else {
            assert_int_equal(rc, 0);
            assert_string_equal(out, cases[i].want);
        }
    }
    /* folding can grow the text: the bound is on the result */
    char small[8];
    assert_int_equal(util_jid_bare("\xc3\x9f\xc3\x9f@a.b", small,
                                   sizeof(small)), -1);
    assert_int_equal(util_jid_bare("\xc3\x9f@a.b", small, sizeof(small)), 0);
    assert_string_equal(small, "ss@a.b");
    /* the codec keys incoming events by the folded sender */
    codec_msg_t m;
    parse_str(*st, "<message from='\xc3\x84rger@Courier.Test./x'><received "
              NS_RC " id='m1'/></message>", NULL, &m);
    assert_int_equal(m.cls, CODEC_EVENTS);
    assert_string_equal(m.from, "\xc3\xa4rger@courier.test");
    codec_msg_clear(&m);
}

/* Invalid UTF-8 never gets through expat; a stanza built in memory can
 * still carry it, so the codec checks for itself. */
static void test_parse_body_not_utf8(void **st)
{
    xmpp_ctx_t *ctx = *st;
    codec_msg_t m;
    assert_null(xmpp_stanza_new_from_string(
        ctx, "<message from='bob@example.com'><body>\xff</body></message>"));
    xmpp_stanza_t *s = codec_build_chat(ctx, "alice@example.com", "m1",
                                        COURIER_TEXT, "ok \xc0\xaf", 0,
                                        NULL, 0);
    assert_non_null(s);
    assert_int_equal(xmpp_stanza_set_from(s, BOB), XMPP_EOK);
    assert_int_equal(codec_parse_message(s, NULL, &m), COURIER_OK);
    assert_int_equal(m.cls, CODEC_IGNORE);
    assert_string_equal(m.why, "body not utf-8");
    assert_null(m.body);
    codec_msg_clear(&m);
    xmpp_stanza_release(s);
}

/* Misuse and lifetimes: out is always initialised, clear is idempotent. */
static void test_parse_misuse_and_clear(void **st)
{
    codec_msg_t m;
    memset(&m, 0x5a, sizeof(m));
    assert_int_equal(codec_parse_message(NULL, NULL, &m), COURIER_OK);
    assert_int_equal(m.cls, CODEC_IGNORE);
    assert_null(m.body);
    assert_int_equal(m.composing, -1);
    assert_int_equal(m.n_events, 0);
    codec_msg_clear(&m);
    codec_msg_clear(&m);
    codec_msg_clear(NULL);
    assert_int_equal(codec_parse_message(NULL, NULL, NULL), COURIER_EINVAL);

    parse_str(*st, MSG " id='m1'><body>hi</body></message>", NULL, &m);
    assert_non_null(m.body);
    codec_msg_clear(&m);
    assert_null(m.body);
    assert_int_equal(m.composing, -1);
    codec_msg_clear(&m);
}

/* behaviour.md §3: a message without an id gets a stable digest of sender, body
 * and delay stamp. */
static void test_digest_id_stable_and_distinct(void **st)
{
    (void)st;
    char a[COURIER_ID_MAX], b[COURIER_ID_MAX];
    codec_digest_id(BOB, "hello", T0, a);
    assert_int_equal(strlen(a), 5 + 32);
    assert_memory_equal(a, "dgst-", 5);
    assert_true(util_id_valid(a));
    for (size_t i = 5; i < strlen(a); i++)
        assert_non_null(strchr("0123456789abcdef", a[i]));
    codec_digest_id(BOB, "hello", T0, b);
    assert_string_equal(a, b);
    codec_digest_id(BOB, "hello!", T0, b);
    assert_string_not_equal(a, b);
    codec_digest_id("carol@example.com", "hello", T0, b);
    assert_string_not_equal(a, b);
    codec_digest_id(BOB, "hello", T0 + 1, b);
    assert_string_not_equal(a, b);
    codec_digest_id(BOB, "hello", 0, b);
    assert_string_not_equal(a, b);
    /* fields cannot slide into each other */
    codec_digest_id("a", "bc", 0, a);
    codec_digest_id("ab", "c", 0, b);
    assert_string_not_equal(a, b);
    /* the same message replayed by offline storage: same id */
    codec_msg_t m1, m2;
    parse_str(*st, MSG "><body>same</body>" DELAY("2023-11-14T22:13:20Z")
              "</message>", NULL, &m1);
    parse_str(*st, "<message from='bob@example.com/tablet'><body>same</body>"
              DELAY("2023-11-14T22:13:20.000Z") "</message>", NULL, &m2);
    assert_string_equal(m1.id, m2.id);
    codec_msg_clear(&m1);
    codec_msg_clear(&m2);
}

/* behaviour.md §3 (issue 13, item 7): without an id and without a delay stamp
 * nothing tells two identical messages from one replayed: two genuine
 * "ok"s are two messages, each with its own id. */
static void test_idless_without_stamp_is_never_merged(void **st)
{
    codec_msg_t m1, m2;
    parse_str(*st, MSG "><body>ok</body></message>", NULL, &m1);
    parse_str(*st, MSG "><body>ok</body></message>", NULL, &m2);
    assert_int_equal(m1.cls, CODEC_CHAT);
    assert_int_equal(m2.cls, CODEC_CHAT);
    assert_true(util_id_valid(m1.id));
    assert_true(util_id_valid(m2.id));
    assert_string_not_equal(m1.id, m2.id);
    codec_msg_clear(&m1);
    codec_msg_clear(&m2);
}

/* ---- round trips ------------------------------------------------------- */

typedef struct {
    const char *name;
    courier_kind_t kind;
    const char *body;
    int64_t created_ms;
    unsigned attempts;
    const char *stamp; /* NULL: no <delay/> */
    int oob;
} chat_case_t;

static const chat_case_t chat_cases[] = {
    { "text, first send", COURIER_TEXT, "hello", T0 + 123, 0, NULL, 0 },
    { "text, resend keeps the time", COURIER_TEXT, "hello", T0 + 123, 1,
      "2023-11-14T22:13:20.123Z", 0 },
    { "text, resend, whole second", COURIER_TEXT, "x", T0, 3,
      "2023-11-14T22:13:20.000Z", 0 },
    { "text, resend without a time", COURIER_TEXT, "x", 0, 1, NULL, 0 },
    { "text URL is no oob", COURIER_TEXT, "https://x/y", T0, 0, NULL, 0 },
    { "voice URL", COURIER_VOICE, "https://media.example.com/v.ogg", T0, 0,
      NULL, 1 },
    { "voice http URL, resend", COURIER_VOICE, "http://m/v.ogg", T0, 2,
      "2023-11-14T22:13:20.000Z", 1 },
    { "image URL", COURIER_IMAGE, "HTTPS://m/p.jpg", T0, 0, NULL, 1 },
    { "image description", COURIER_IMAGE, "a cat <3 & more", T0, 0, NULL,
      0 },
    { "leap day stamp", COURIER_TEXT, "x", 1709164800999LL, 1,
      "2024-02-29T00:00:00.999Z", 0 },
};

/* behaviour.md §8: our chat message parses back to what we sent, with every
 * receipt form requested. */
/* behaviour.md §9: meta travels in our namespace; a retraction (XEP-0424
 * v1, and the apply-to form before 0.4) is its own class, its fallback
 * body never a message. */
static void test_meta_and_retraction(void **st)
{
    xmpp_ctx_t *ctx = *st;
    codec_msg_t m;
    xmpp_stanza_t *b = codec_build_chat(ctx, "bob@example.com", "m-1",
                                        COURIER_TEXT, "hi", 0, NULL, 0);
    assert_non_null(b);
    assert_int_equal(codec_add_meta(b, "{\"w\":640,\"h\":480}"), 0);
    xmpp_stanza_t *w = over_the_wire(ctx, b, "alice@example.com/x");
    assert_int_equal(codec_parse_message(w, NULL, &m), COURIER_OK);
    assert_int_equal(m.cls, CODEC_CHAT);
    assert_string_equal(m.meta, "{\"w\":640,\"h\":480}");
    codec_msg_clear(&m);
    xmpp_stanza_release(w);
    xmpp_stanza_release(b);

    parse_str(ctx, "<message from='a@x/r' id='m2'><body>x</body>"
                   "<meta xmlns='urn:libcourier:meta:0'>{BIG}</meta>"
                   "</message>", NULL, &m);
    assert_int_equal(m.cls, CODEC_IGNORE);
    assert_string_equal(m.refuse, "policy-violation");
    codec_msg_clear(&m);

    b = codec_build_retraction(ctx, "bob@example.com", "m-1");
    assert_non_null(b);
    w = over_the_wire(ctx, b, "alice@example.com/x");
    assert_non_null(xmpp_stanza_get_child_by_name(w, "body"));
    assert_non_null(child(w, "store", "urn:xmpp:hints"));
    assert_int_equal(codec_parse_message(w, NULL, &m), COURIER_OK);
    assert_int_equal(m.cls, CODEC_RETRACT);
    assert_string_equal(m.retract_id, "m-1");
    assert_string_equal(m.from, "alice@example.com");
    assert_null(m.body);
    codec_msg_clear(&m);
    xmpp_stanza_release(w);
    xmpp_stanza_release(b);

    parse_str(ctx, "<message from='a@x/r' id='r1'>"
                   "<apply-to xmlns='urn:xmpp:fasten:0' id='old-1'>"
                   "<retract xmlns='urn:xmpp:message-retract:0'/></apply-to>"
                   "<body>fallback</body></message>", NULL, &m);
    assert_int_equal(m.cls, CODEC_RETRACT);
    assert_string_equal(m.retract_id, "old-1");
    codec_msg_clear(&m);
    parse_str(ctx, "<message from='a@x/r'><retract id='{ID128}' "
                   "xmlns='urn:xmpp:message-retract:1'/></message>", NULL,
              &m);
    assert_int_equal(m.cls, CODEC_IGNORE);
    codec_msg_clear(&m);
}

/* Issue 17, behaviour.md §8: a message shows which forms its sender's
 * client answers in (an XEP-0184 receipt, an XEP-0333 displayed marker,
 * an XEP-0085 chat state); XEP-0022 events and 0333 <received/> show
 * nothing. */
static void test_parse_notes_forms_shown(void **st)
{
    xmpp_ctx_t *ctx = *st;
    static const struct {
        const char *xml;
        unsigned shown;
    } rows[] = {
        { MSG "><received " NS_RC " id='m1'/></message>",
          CODEC_SHOWN_RECEIPT },
        { MSG "><displayed " NS_MK " id='m1'/></message>",
          CODEC_SHOWN_MARKER },
        { MSG "><acknowledged " NS_MK " id='m1'/></message>",
          CODEC_SHOWN_MARKER },
        { MSG "><received " NS_MK " id='m1'/></message>", 0 },
        { MSG "><active " NS_CS "/></message>", CODEC_SHOWN_CHATSTATE },
        { MSG " id='c1'><body>hi</body><composing " NS_CS "/>"
              "<request " NS_RC "/></message>", CODEC_SHOWN_CHATSTATE },
        { MSG "><x " NS_EV "><delivered/><id>m1</id></x></message>", 0 },
        { MSG " id='c2'><body>hi</body><x " NS_EV "><delivered/>"
              "<displayed/><composing/></x></message>", 0 },
        { MSG " id='c3'><body>hi</body></message>", 0 },
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(rows); i++) {
        codec_msg_t m;
        parse_str(ctx, rows[i].xml, NULL, &m);
        assert_int_not_equal(m.cls, CODEC_IGNORE);
        if (m.shown != rows[i].shown)
            fail_msg("row %zu: shown %u, expected %u", i, m.shown,
                     rows[i].shown);
        codec_msg_clear(&m);
    }
}

/* Issue 17, behaviour.md §8: to a peer whose client has shown the newer
 * forms, the XEP-0022 requests they replace are left out; <offline/> (the
 * server's half of the note), the 0184 request, the marker and the
 * origin-id stay, and our own parser still sees the receipt and marker
 * requests (so the receipt goes in the same form as before). */
static void test_build_chat_for_leaves_out_replaced_requests(void **st)
{
    xmpp_ctx_t *ctx = *st;
    static const struct {
        unsigned shown;
        unsigned asked; /* what the peer's parser reads */
    } rows[] = {
        { 0, ALL_ASKS },
        { CODEC_SHOWN_RECEIPT, ALL_ASKS & ~CORE_ASK_X22_DELIVERED },
        { CODEC_SHOWN_MARKER, ALL_ASKS & ~CORE_ASK_X22_DISPLAYED },
        { CODEC_SHOWN_CHATSTATE, ALL_ASKS & ~CORE_ASK_X22_COMPOSING },
        { CODEC_SHOWN_RECEIPT | CODEC_SHOWN_MARKER | CODEC_SHOWN_CHATSTATE,
          CORE_ASK_RECEIPT | CORE_ASK_MARKABLE },
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(rows); i++) {
        xmpp_stanza_t *b = codec_build_chat_for(
            ctx, "bob@example.com", "m-1", COURIER_TEXT, "hi", 0, NULL, 0,
            rows[i].shown);
        assert_non_null(b);
        xmpp_stanza_t *w = over_the_wire(ctx, b, "alice@example.com/x");
        xmpp_stanza_t *x = child(w, "x", "jabber:x:event");
        assert_non_null(x);
        assert_non_null(child(x, "offline", "jabber:x:event"));
        assert_non_null(child(w, "request", "urn:xmpp:receipts"));
        assert_non_null(child(w, "markable", "urn:xmpp:chat-markers:0"));
        assert_non_null(child(w, "origin-id", "urn:xmpp:sid:0"));
        codec_msg_t m;
        assert_int_equal(codec_parse_message(w, NULL, &m), COURIER_OK);
        assert_int_equal(m.cls, CODEC_CHAT);
        if (m.asked != rows[i].asked)
            fail_msg("row %zu: asked %u, expected %u", i, m.asked,
                     rows[i].asked);
        codec_msg_clear(&m);
        xmpp_stanza_release(w);
        xmpp_stanza_release(b);
    }
}

static void test_roundtrip_chat(void **st)
{
    xmpp_ctx_t *ctx = *st;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(chat_cases); i++) {
        const chat_case_t *c = &chat_cases[i];
        codec_msg_t m;
        print_message("case: %s\n", c->name);
        xmpp_stanza_t *b = codec_build_chat(ctx, "bob@example.com", "m-1",
                                            c->kind, c->body, c->created_ms,
                                            "alice@example.com", c->attempts);
        assert_non_null(b);
        assert_string_equal(xmpp_stanza_get_type(b), "chat");
        assert_string_equal(xmpp_stanza_get_to(b), "bob@example.com");
        assert_string_equal(xmpp_stanza_get_id(b), "m-1");
        xmpp_stanza_t *s = over_the_wire(ctx, b, "Alice@example.com/phone");
        xmpp_stanza_t *d = child(s, "delay", "urn:xmpp:delay");
        if (c->stamp) {
            assert_non_null(d);
            assert_string_equal(xmpp_stanza_get_attribute(d, "stamp"),
                                c->stamp);
            assert_string_equal(xmpp_stanza_get_attribute(d, "from"),
                                "alice@example.com");
        } else {
            assert_null(d);
        }
        xmpp_stanza_t *x = child(s, "x", "jabber:x:oob");
        if (c->oob) {
            assert_non_null(x);
            char *url = xmpp_stanza_get_text(child(x, "url", "jabber:x:oob"));
            assert_string_equal(url, c->body);
            xmpp_free(ctx, url);
        } else {
            assert_null(x);
        }
        xmpp_stanza_t *ev = child(s, "x", "jabber:x:event");
        assert_non_null(ev);
        assert_non_null(child(ev, "offline", "jabber:x:event"));
        assert_non_null(child(ev, "composing", "jabber:x:event"));
        assert_null(child(ev, "id", "jabber:x:event"));
        assert_int_equal(c->kind != COURIER_TEXT,
                         child(s, "kind", CODEC_NS_KIND) != NULL);
        assert_int_equal(codec_parse_message(s, NULL, &m), COURIER_OK);
        assert_int_equal(m.cls, CODEC_CHAT);
        assert_string_equal(m.from, "alice@example.com");
        assert_string_equal(m.id, "m-1");
        assert_string_equal(m.body, c->body);
        assert_int_equal(m.kind, c->kind);
        assert_int_equal(m.delay_ms, c->stamp ? c->created_ms : 0);
        assert_int_equal(m.asked, ALL_ASKS);
        assert_int_equal(m.n_events, 0);
        assert_int_equal(m.composing, -1);
        codec_msg_clear(&m);
        xmpp_stanza_release(s);
        xmpp_stanza_release(b);
    }
}

/* The builder needs its arguments; a missing one is NULL, not a crash. */
static void test_build_chat_rejects_missing(void **st)
{
    xmpp_ctx_t *ctx = *st;
    assert_null(codec_build_chat(NULL, BOB, "m1", COURIER_TEXT, "x", 0,
                                 NULL, 0));
    assert_null(codec_build_chat(ctx, NULL, "m1", COURIER_TEXT, "x", 0,
                                 NULL, 0));
    assert_null(codec_build_chat(ctx, BOB, NULL, COURIER_TEXT, "x", 0,
                                 NULL, 0));
    assert_null(codec_build_chat(ctx, BOB, "m1", COURIER_TEXT, NULL, 0,
                                 NULL, 0));
    /* a resend without our JID still states the time */
    xmpp_stanza_t *s = codec_build_chat(ctx, BOB, "m1", COURIER_TEXT, "x",
                                        T0, NULL, 1);
    assert_non_null(s);
    xmpp_stanza_t *d = child(s, "delay", "urn:xmpp:delay");
    assert_non_null(d);
    assert_null(xmpp_stanza_get_attribute(d, "from"));
    xmpp_stanza_release(s);
}

typedef struct {
    const char *name;
    courier_state_t state;
    unsigned asked;
    int x22, receipt, marker; /* forms expected on the wire */
    int cumulative;
} receipt_case_t;

static const receipt_case_t receipt_cases[] = {
    /* one form: the asker of all three is a libcourier peer */
    { "delivered, every form asked: 0184", COURIER_DELIVERED, ALL_ASKS, 0,
      1, 0, 0 },
    { "delivered, x22 and 0333 asked: 0333", COURIER_DELIVERED,
      CORE_ASK_X22_DELIVERED | CORE_ASK_MARKABLE, 0, 0, 1, 0 },
    { "delivered, 0184 and 0333 asked: 0184", COURIER_DELIVERED,
      CORE_ASK_RECEIPT | CORE_ASK_MARKABLE, 0, 1, 0, 0 },
    { "delivered, x22 and 0184 asked: 0184", COURIER_DELIVERED,
      CORE_ASK_X22_DELIVERED | CORE_ASK_RECEIPT, 0, 1, 0, 0 },
    { "delivered, x22 only", COURIER_DELIVERED, CORE_ASK_X22_DELIVERED, 1,
      0, 0, 0 },
    { "delivered, 0184 only", COURIER_DELIVERED, CORE_ASK_RECEIPT, 0, 1, 0,
      0 },
    { "delivered, 0333 only", COURIER_DELIVERED, CORE_ASK_MARKABLE, 0, 0, 1,
      0 },
    { "displayed, every form asked: 0333, cumulative", COURIER_DISPLAYED,
      ALL_ASKS, 0, 0, 1, 1 },
    { "displayed, x22 and 0184 asked: x22", COURIER_DISPLAYED,
      CORE_ASK_X22_DISPLAYED | CORE_ASK_RECEIPT, 1, 0, 0, 0 },
    { "displayed, x22 only: not cumulative", COURIER_DISPLAYED,
      CORE_ASK_X22_DISPLAYED, 1, 0, 0, 0 },
    { "displayed, 0333 only: cumulative", COURIER_DISPLAYED,
      CORE_ASK_MARKABLE, 0, 0, 1, 1 },
    { "delivered, only displayed asked", COURIER_DELIVERED,
      CORE_ASK_X22_DISPLAYED, 0, 0, 0, 0 },
    { "displayed, only 0184 asked", COURIER_DISPLAYED,
      CORE_ASK_RECEIPT | CORE_ASK_X22_DELIVERED, 0, 0, 0, 0 },
    { "nothing asked", COURIER_DELIVERED, 0, 0, 0, 0, 0 },
    { "offline is never sent", COURIER_OFFLINE, ALL_ASKS, 0, 0, 0, 0 },
    { "queued is never sent", COURIER_QUEUED, ALL_ASKS, 0, 0, 0, 0 },
};

/* behaviour.md §3 / issue 17: a receipt goes out in one form asked for (one that
 * servers store offline before XEP-0022), and parses back. */
static void test_roundtrip_receipts(void **st)
{
    xmpp_ctx_t *ctx = *st;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(receipt_cases); i++) {
        const receipt_case_t *c = &receipt_cases[i];
        const char *marker = c->state == COURIER_DELIVERED ? "received"
                                                           : "displayed";
        print_message("case: %s\n", c->name);
        xmpp_stanza_t *b = codec_build_receipt(ctx, "alice@example.com",
                                               "m1", c->state, c->asked);
        if (!c->x22 && !c->receipt && !c->marker) {
            assert_null(b);
            continue;
        }
        assert_non_null(b);
        xmpp_stanza_t *s = over_the_wire(ctx, b, "bob@example.com/phone");
        const char *sid = xmpp_stanza_get_id(s);
        assert_true(util_id_valid(sid));
        assert_string_not_equal(sid, "m1");
        assert_string_equal(xmpp_stanza_get_to(s), "alice@example.com");
        assert_string_equal(xmpp_stanza_get_type(s), "chat");
        assert_non_null(child(s, "store", "urn:xmpp:hints"));
        assert_null(xmpp_stanza_get_child_by_name(s, "body"));
        xmpp_stanza_t *x = child(s, "x", "jabber:x:event");
        assert_int_equal(x != NULL, c->x22);
        xmpp_stanza_t *r = child(s, "received", "urn:xmpp:receipts");
        assert_int_equal(r != NULL, c->receipt);
        if (r)
            assert_string_equal(xmpp_stanza_get_attribute(r, "id"), "m1");
        xmpp_stanza_t *mk = child(s, marker, "urn:xmpp:chat-markers:0");
        assert_int_equal(mk != NULL, c->marker);
        if (mk)
            assert_string_equal(xmpp_stanza_get_attribute(mk, "id"), "m1");

        codec_msg_t m;
        assert_int_equal(codec_parse_message(s, NULL, &m), COURIER_OK);
        assert_int_equal(m.cls, CODEC_EVENTS);
        assert_string_equal(m.from, BOB);
        assert_int_equal(m.n_events, 1);
        assert_int_equal(m.events[0].state, c->state);
        assert_string_equal(m.events[0].id, "m1");
        assert_int_equal(m.events[0].cumulative, c->cumulative);
        assert_int_equal(m.composing, -1);
        codec_msg_clear(&m);
        xmpp_stanza_release(s);
        xmpp_stanza_release(b);
    }
}

/* Receipt ids are fresh every time; a bad id or peer builds nothing. */
static void test_build_receipt_ids(void **st)
{
    xmpp_ctx_t *ctx = *st;
    xmpp_stanza_t *a = codec_build_receipt(ctx, BOB, "m1", COURIER_DELIVERED,
                                           CORE_ASK_RECEIPT);
    xmpp_stanza_t *b = codec_build_receipt(ctx, BOB, "m1", COURIER_DELIVERED,
                                           CORE_ASK_RECEIPT);
    assert_non_null(a);
    assert_non_null(b);
    assert_string_not_equal(xmpp_stanza_get_id(a), xmpp_stanza_get_id(b));
    xmpp_stanza_release(a);
    xmpp_stanza_release(b);
    assert_null(codec_build_receipt(ctx, NULL, "m1", COURIER_DELIVERED,
                                    ALL_ASKS));
    assert_null(codec_build_receipt(ctx, BOB, NULL, COURIER_DELIVERED,
                                    ALL_ASKS));
    assert_null(codec_build_receipt(ctx, BOB, "", COURIER_DELIVERED,
                                    ALL_ASKS));
}

typedef struct {
    const char *name;
    const char *last_id;
    int on;
    int x22; /* an XEP-0022 <x> expected */
} composing_case_t;

static const composing_case_t composing_cases[] = {
    { "composing with last id", "m1", 1, 1 },
    { "stopped with last id", "m1", 0, 1 },
    { "composing without id", NULL, 1, 0 },
    { "stopped without id", NULL, 0, 0 },
};

/* behaviour.md §3 composing: XEP-0022 with the last id plus XEP-0085. */
static void test_roundtrip_composing(void **st)
{
    xmpp_ctx_t *ctx = *st;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(composing_cases); i++) {
        const composing_case_t *c = &composing_cases[i];
        print_message("case: %s\n", c->name);
        xmpp_stanza_t *b = codec_build_composing(ctx, BOB, c->last_id, c->on);
        assert_non_null(b);
        xmpp_stanza_t *s = over_the_wire(ctx, b, "alice@example.com/x");
        assert_string_equal(xmpp_stanza_get_type(s), "chat");
        assert_string_equal(xmpp_stanza_get_to(s), BOB);
        assert_non_null(child(s, "no-store", "urn:xmpp:hints"));
        assert_non_null(child(s, c->on ? "composing" : "active",
                              "http://jabber.org/protocol/chatstates"));
        xmpp_stanza_t *x = child(s, "x", "jabber:x:event");
        assert_int_equal(x != NULL, c->x22);
        if (x) {
            char *id = xmpp_stanza_get_text(child(x, "id", "jabber:x:event"));
            assert_string_equal(id, c->last_id);
            xmpp_free(ctx, id);
            assert_int_equal(child(x, "composing", "jabber:x:event") != NULL,
                             c->on);
        }
        codec_msg_t m;
        assert_int_equal(codec_parse_message(s, NULL, &m), COURIER_OK);
        assert_int_equal(m.cls, CODEC_EVENTS);
        assert_string_equal(m.from, "alice@example.com");
        assert_int_equal(m.composing, c->on);
        assert_int_equal(m.n_events, 0);
        codec_msg_clear(&m);
        xmpp_stanza_release(s);
        xmpp_stanza_release(b);
    }
    assert_null(codec_build_composing(ctx, NULL, "m1", 1));
}

/* behaviour.md §4: our XEP-0199 ping. */
static void test_build_ping(void **st)
{
    xmpp_ctx_t *ctx = *st;
    xmpp_stanza_t *p = codec_build_ping(ctx, "example.com", "ping-1");
    assert_non_null(p);
    assert_string_equal(xmpp_stanza_get_name(p), "iq");
    assert_string_equal(xmpp_stanza_get_type(p), "get");
    assert_string_equal(xmpp_stanza_get_to(p), "example.com");
    assert_string_equal(xmpp_stanza_get_id(p), "ping-1");
    assert_non_null(child(p, "ping", "urn:xmpp:ping"));
    xmpp_stanza_release(p);
    assert_null(codec_build_ping(ctx, NULL, "x"));
    assert_null(codec_build_ping(ctx, "example.com", NULL));
}

typedef enum { R_NONE, R_RESULT, R_UNAVAILABLE } reply_t;

typedef struct {
    const char *name;
    const char *xml;
    reply_t reply;
    const char *to; /* expected 'to' of the reply, NULL: none */
} iq_case_t;

static const iq_case_t iq_cases[] = {
    { "server ping",
      "<iq from='example.com' type='get' id='s1'><ping "
      "xmlns='urn:xmpp:ping'/></iq>",
      R_RESULT, "example.com" },
    { "ping without from",
      "<iq type='get' id='s1'><ping xmlns='urn:xmpp:ping'/></iq>", R_RESULT,
      NULL },
    { "peer ping",
      "<iq from='bob@example.com/x' to='alice@example.com/y' type='get' "
      "id='s1'><ping xmlns='urn:xmpp:ping'/></iq>",
      R_RESULT, "bob@example.com/x" },
    { "unknown get",
      "<iq from='bob@example.com/x' type='get' id='v1'><query "
      "xmlns='jabber:iq:version'/></iq>",
      R_UNAVAILABLE, "bob@example.com/x" },
    { "unknown set",
      "<iq from='example.com' type='set' id='v1'><query "
      "xmlns='jabber:iq:roster'/></iq>",
      R_UNAVAILABLE, "example.com" },
    { "ping in a wrong namespace",
      "<iq from='example.com' type='get' id='v1'><ping "
      "xmlns='urn:xmpp:pong'/></iq>",
      R_UNAVAILABLE, "example.com" },
    { "empty get", "<iq from='example.com' type='get' id='v1'/>",
      R_UNAVAILABLE, "example.com" },
    { "result", "<iq from='example.com' type='result' id='p1'/>", R_NONE,
      NULL },
    { "error",
      "<iq from='example.com' type='error' id='p1'><error type='cancel'>"
      "<service-unavailable " NS_ST "/></error></iq>",
      R_NONE, NULL },
    { "get without id",
      "<iq from='example.com' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
      R_NONE, NULL },
    { "iq without type",
      "<iq from='example.com' id='x'><ping xmlns='urn:xmpp:ping'/></iq>",
      R_NONE, NULL },
    { "not an iq", "<message from='example.com' type='get' id='x'/>", R_NONE,
      NULL },
};

/* behaviour.md §4: pings answered, unknown get/set refused, results never. */
static void test_iq_replies(void **st)
{
    xmpp_ctx_t *ctx = *st;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(iq_cases); i++) {
        const iq_case_t *c = &iq_cases[i];
        print_message("case: %s\n", c->name);
        xmpp_stanza_t *iq = from_xml(ctx, c->xml);
        xmpp_stanza_t *r = codec_build_iq_reply(ctx, iq);
        if (c->reply == R_NONE) {
            assert_null(r);
            xmpp_stanza_release(iq);
            continue;
        }
        assert_non_null(r);
        assert_string_equal(xmpp_stanza_get_name(r), "iq");
        assert_string_equal(xmpp_stanza_get_id(r), xmpp_stanza_get_id(iq));
        assert_null(xmpp_stanza_get_from(r));
        if (c->to)
            assert_string_equal(xmpp_stanza_get_to(r), c->to);
        else
            assert_null(xmpp_stanza_get_to(r));
        if (c->reply == R_RESULT) {
            assert_string_equal(xmpp_stanza_get_type(r), "result");
            assert_null(xmpp_stanza_get_children(r));
        } else {
            assert_string_equal(xmpp_stanza_get_type(r), "error");
            xmpp_stanza_t *e = xmpp_stanza_get_child_by_name(r, "error");
            assert_non_null(e);
            assert_string_equal(xmpp_stanza_get_attribute(e, "type"),
                                "cancel");
            assert_non_null(child(e, "service-unavailable",
                                  "urn:ietf:params:xml:ns:xmpp-stanzas"));
        }
        xmpp_stanza_release(r);
        xmpp_stanza_release(iq);
    }
    assert_null(codec_build_iq_reply(ctx, NULL));
}

/* ---- allocation failures ----------------------------------------------- */

/* Fail libstrophe allocation N and later (0 = never). */
static unsigned long xalloc_n, xalloc_fail_at;

static void *xalloc(size_t size, void *ud)
{
    (void)ud;
    if (xalloc_fail_at && ++xalloc_n >= xalloc_fail_at)
        return NULL;
    return malloc(size);
}

static void xfree(void *p, void *ud)
{
    (void)ud;
    free(p);
}

static void *xrealloc(void *p, size_t size, void *ud)
{
    (void)ud;
    if (xalloc_fail_at && ++xalloc_n >= xalloc_fail_at)
        return NULL;
    return realloc(p, size);
}

static const xmpp_mem_t failing_mem = { xalloc, xfree, xrealloc, NULL };

static xmpp_stanza_t *build_nth(xmpp_ctx_t *ctx, int which,
                                xmpp_stanza_t *iq, xmpp_stanza_t *msg)
{
    switch (which) {
    case 0:
        return codec_build_chat(ctx, BOB, "m1", COURIER_VOICE, "https://x/v",
                                T0, "alice@example.com", 1);
    case 1:
        return codec_build_receipt(ctx, BOB, "m1", COURIER_DELIVERED,
                                   ALL_ASKS);
    case 2:
        return codec_build_composing(ctx, BOB, "m1", 1);
    case 3:
        return codec_build_ping(ctx, "example.com", "p1");
    case 4:
        return codec_build_refusal(ctx, msg, "policy-violation",
                                   "body too big");
    default:
        return codec_build_iq_reply(ctx, iq);
    }
}

/* SQLite-style fault loop: every builder returns NULL on any failed
 * allocation, leaks nothing (ASan/valgrind), then succeeds. */
static void test_builders_survive_alloc_failures(void **st)
{
    (void)st;
    xmpp_ctx_t *ctx = xmpp_ctx_new(&failing_mem, NULL);
    assert_non_null(ctx);
    /* parsed before failures start: libstrophe's own parser crashes on
     * a failed allocation (its bug, not ours) */
    xmpp_stanza_t *iq = xmpp_stanza_new_from_string(
        ctx, "<iq from='bob@example.com' type='get' id='q'><query "
             "xmlns='jabber:iq:version'/></iq>");
    assert_non_null(iq);
    xmpp_stanza_t *msg = xmpp_stanza_new_from_string(
        ctx, "<message from='bob@example.com/a' id='m1'><body>x</body>"
             "</message>");
    assert_non_null(msg);
    for (int which = 0; which < 6; which++) {
        unsigned long n;
        for (n = 1; n < 10000; n++) {
            xalloc_n = 0;
            xalloc_fail_at = n;
            xmpp_stanza_t *s = build_nth(ctx, which, iq, msg);
            xalloc_fail_at = 0;
            if (s) {
                xmpp_stanza_release(s);
                break;
            }
        }
        assert_true(n > 1 && n < 10000);
    }
    xmpp_stanza_release(msg);
    xmpp_stanza_release(iq);
    xmpp_ctx_free(ctx);
}

/* The same for parsing: ENOMEM, nothing kept, then success. */
static void test_parse_survives_alloc_failures(void **st)
{
    static const char *const xml[] = {
        MSG " id='m1'><body>hello</body></message>",
        MSG "><body>no id: digest</body></message>",
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(xml); i++) {
        xmpp_stanza_t *s = from_xml(*st, xml[i]);
        unsigned long n;
        codec_msg_t m;
        for (n = 1; n < 100; n++) {
            util_fail_alloc_after(n);
            int rc = codec_parse_message(s, NULL, &m);
            util_fail_alloc_after(0);
            if (rc == COURIER_OK)
                break;
            assert_int_equal(rc, COURIER_ENOMEM);
            assert_int_equal(m.cls, CODEC_IGNORE);
            assert_null(m.body);
            codec_msg_clear(&m);
        }
        assert_true(n > 1 && n < 100);
        assert_int_equal(m.cls, CODEC_CHAT);
        codec_msg_clear(&m);
        xmpp_stanza_release(s);
    }
}

/* Answers to our own requests (pings, push): only our server counts, as
 * the domain or our bare JID, never a full JID (another device of the
 * account could forge acks by ping, a sync's end, a push answer). */
static void test_from_own_server(void **st)
{
    (void)st;
    const char *self = "dave@example.com";
    assert_true(util_from_own_server(NULL, self));
    assert_true(util_from_own_server("example.com", self));
    assert_true(util_from_own_server("Example.COM.", self));
    assert_true(util_from_own_server("dave@example.com", self));
    assert_false(util_from_own_server("dave@example.com/other", self));
    assert_false(util_from_own_server("example.com/x", self));
    assert_false(util_from_own_server("eve@example.com", self));
    assert_false(util_from_own_server("example.org", self));
    assert_false(util_from_own_server("not a jid", self));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_body_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_unstored_message_is_refused_to_sender, setup, teardown),
        cmocka_unit_test(test_jid_domain_final_dot_stripped),
        cmocka_unit_test(test_from_own_server),
        cmocka_unit_test_setup_teardown(test_jid_folded_like_the_servers,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_body_not_utf8, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_parse_misuse_and_clear, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_idless_without_stamp_is_never_merged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_id_stable_and_distinct,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_chat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meta_and_retraction, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_build_chat_rejects_missing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_receipts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_build_receipt_ids, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_composing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_build_ping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_notes_forms_shown, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_build_chat_for_leaves_out_replaced_requests, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_iq_replies, setup, teardown),
        cmocka_unit_test(test_builders_survive_alloc_failures),
        cmocka_unit_test_setup_teardown(test_parse_survives_alloc_failures,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
