/* SPDX-License-Identifier: MIT */
/* behaviour.md §11 "Hostile input": bounds on what a server can make libstrophe
 * 0.12 do on our threads. libstrophe renders every received stanza
 * recursively for its debug log (whatever the level) and frees stanza
 * trees recursively, joins text with strncat (quadratic) and lets expat
 * expand DTD entities; none of it can be switched off or patched here. So:
 *  - the wire bytes of one stanza are bounded (TCP counters, Linux), which
 *    bounds its depth, and the loop thread's stack is sized for that depth;
 *  - the ctx allocator is ours: it bounds live memory, spots text that
 *    outgrows its wire bytes (DTD entities) and bounds the realloc work of
 *    one stanza (text joining: that stanza is dropped, the link kept);
 *    refused reallocs make libstrophe drop the text, cheaply;
 *  - a parse error (libstrophe only logs it) cuts the link.
 * A trip stops expat (when its parser could be found: hostile_find_parser)
 * and shuts the socket down: libstrophe sees EOF and disconnects. A trip
 * of the memory bound, the one a peer can reach through a stock server,
 * may leave the cut to the session (defer_memory_cut), which first
 * acknowledges the stanza so the server does not send it again. */
#ifndef COURIER_HOSTILE_H
#define COURIER_HOSTILE_H

#include <stddef.h>
#include <stdint.h>

#include "courier.h"

/* Wire bytes one stanza may take. A stock server relays up to 6x its
 * stanza size limit (Prosody escapes ' and " in text as &apos; &quot;):
 * 6 x 512 KiB (s2s_stanza_size_limit, ejabberd s2s max_stanza_size) =
 * 3 MiB. */
#define HOSTILE_STANZA_MAX ((uint64_t)4 << 20)
/* Slack of the wire accounting: one 4 KiB read past the check, a TLS
 * record and a read buffered at the previous stanza's end. */
#define HOSTILE_STANZA_SLACK ((uint64_t)24 << 10)
/* Bytes reallocated to join text while one stanza is parsed (nothing else
 * counts: rendering and expat's buffers never do). libstrophe grows a text
 * node piece by piece (expat hands over each line and each entity
 * reference on its own; strncat rescans from the start each time): this
 * is its cost, quadratic. Past the bound the stanza's text is refused
 * (the growth of the text block being joined and every new block made by
 * realloc get NULL: libstrophe drops the text, cheaply; expat's growth of
 * its own blocks goes on, its NULL would be a parse error) and the stanza is
 * dropped, the link kept: a stock server relays such text (200 000
 * apostrophes arrive as &apos; pieces: ~6.7 GB of reallocs, ~0.15 s of
 * strncat here), and a cut would repeat at every reconnect. The least
 * bound: a body of max_body_bytes in 1-byte pieces costs max^2 / 6
 * (64 KiB: ~0.7 GB), so the bound is the larger of this and max^2 / 2
 * (hostile_set_body_max). */
#define HOSTILE_REALLOC_WORK_MAX ((uint64_t)1 << 30)
/* Text that outgrows the wire bytes it came in can only come from DTD
 * entities (XMPP forbids DTDs; numeric references and UTF-8 shrink):
 * beyond 2 x the stanza's wire bytes + this, the link is cut. (2 x: expat
 * doubles its input buffer, which goes through this allocator for the
 * process's first context.) */
#define HOSTILE_EXPANSION_SLACK ((uint64_t)16 << 10)
/* Bytes live in one libstrophe context. libstrophe spends ~830 bytes on
 * each element (measured here, x86_64): a 512 KiB stanza of empty
 * elements, the most a stock server relays, takes ~110 MB as a tree. This
 * also bounds depth: ~160 000 levels. */
#define HOSTILE_LIVE_MAX ((size_t)128 << 20)
/* Stack of the threads that run libstrophe: the deepest stanza that fits
 * the wire bound, (4 MiB + 24 KiB) / 7 bytes a level ~ 603 000 levels,
 * times 96 bytes a level for xmpp_stanza_to_text's recursion (measured,
 * Debian's x86_64 build; freeing takes 32), plus room for the rest. */
#define HOSTILE_STACK_BYTES COURIER_RUN_ONCE_STACK_BYTES

typedef enum {
    HOSTILE_NONE = 0,
    HOSTILE_STANZA_SIZE,    /* a stanza above HOSTILE_STANZA_MAX */
    HOSTILE_TEXT_WORK,      /* text joining / entity expansion */
    HOSTILE_MEMORY,         /* HOSTILE_LIVE_MAX */
    HOSTILE_BAD_XML,        /* libstrophe logged a parse error */
    HOSTILE_ENTITIES,       /* text beyond the wire: DTD entities */
} hostile_reason_t;

typedef struct {
    int fd;                 /* the socket while connected, else -1 */
    hostile_reason_t tripped;
    int reported;
    int boundary;           /* a stanza ended during this turn */
    int counting;           /* the wire counters work on this socket */
    uint64_t base;          /* bytes consumed when the stanza began */
    uint64_t turn_start;    /* bytes consumed when this turn began */
    uint64_t realloc_work;
    uint64_t work_max;      /* HOSTILE_REALLOC_WORK_MAX or more */
    int text_refused;       /* this stanza's text is past the work bound */
    int damaged;            /* ...so the stanza is incomplete: drop it */
    void *text_block;       /* the text block being joined (the last one
                               a realloc made from NULL, as it grows) */
    size_t live;
    size_t held;            /* live when this socket began (a tree cut
                               half-way stays until libstrophe resets its
                               parser): the bound counts on top of it */
    /* libstrophe's parser object and its expat parser (found once). */
    void *parser_block;
    void *xml_parser;
    int watching;           /* hostile_watch_begin .. hostile_find_parser */
    void *watched[32];
    /* A memory trip: the session acknowledges, then calls hostile_cut. */
    int defer_memory_cut;
    int cut_pending;
    void (*on_trip)(void *ud, hostile_reason_t why); /* at the trip, inside
                               the allocator: record, nothing more */
    void *on_trip_ud;
} hostile_t;

void hostile_init(hostile_t *h);
/* The largest body the app accepts (courier_config_t.max_body_bytes):
 * text that size is never dropped for its joining cost. */
void hostile_set_body_max(hostile_t *h, size_t max_body_bytes);
/* A new socket (or -1 when the link is gone): counters restart. */
void hostile_set_fd(hostile_t *h, int fd);
/* After each xmpp_run_once: checks the stanza in progress against the
 * wire bound; returns the reason once, on the first call after a trip (to
 * log it), else HOSTILE_NONE. */
hostile_reason_t hostile_turn_end(hostile_t *h);
/* A stanza ended (a handler saw it, or libstrophe logged its RECV). */
void hostile_stanza_done(hostile_t *h);
/* 1 if the stanza being handled lost text to the work bound. Read it in
 * the handlers; the last handler clears it (hostile_clear_damage). */
int hostile_damaged(const hostile_t *h);
void hostile_clear_damage(hostile_t *h);
void hostile_trip(hostile_t *h, hostile_reason_t why);
/* The cut a deferred memory trip left (cut_pending): shut the socket. */
void hostile_cut(hostile_t *h);
/* Around xmpp_conn_new: the allocator notes the blocks made meanwhile and
 * hostile_find_parser picks libstrophe's parser object among them (its
 * first word the context, its sixth the connection, its second an expat
 * parser whose user data points back at it: libstrophe 0.9 to 0.14), so
 * that a trip can stop expat at once (XML_StopParser, found with dlsym)
 * instead of letting it build the rest of what it has read. Returns 1 if
 * found. Without it a trip still cuts, one read later. */
void hostile_watch_begin(hostile_t *h);
int hostile_find_parser(hostile_t *h, const void *ctx, const void *conn);
const char *hostile_reason_text(hostile_reason_t why);

/* The allocator handed to xmpp_ctx_new (userdata: the hostile_t). */
void *hostile_alloc(size_t size, void *ud);
void hostile_free(void *p, void *ud);
void *hostile_realloc(void *p, size_t size, void *ud);

/* Run fn(arg) on a thread with HOSTILE_STACK_BYTES of stack and wait for
 * it (inline if no thread can be made). */
void hostile_on_big_stack(void (*fn)(void *), void *arg);

#endif
