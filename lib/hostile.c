/* SPDX-License-Identifier: MIT */
#include "hostile.h"

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#endif

/* Bytes libstrophe has taken from the socket: received by the kernel
 * minus what still waits in its queue. The two counters are read by two
 * calls, and data arriving in between made the difference go backwards
 * (seen: 2 834 bytes, read as a 16 EiB stanza): read the received count
 * on both sides of the queue length and retry until it held still; after
 * that the error is what arrived in a few microseconds, and callers
 * compare with since(), which never wraps. -1 where the counters are
 * missing (not Linux, or a kernel before 4.1). */
static int rx_consumed(int fd, uint64_t *out)
{
#ifdef __linux__
    for (int tries = 0;; tries++) {
        struct tcp_info ti;
        socklen_t len = sizeof(ti);
        int inq = 0;
        memset(&ti, 0, sizeof(ti));
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
            len < offsetof(struct tcp_info, tcpi_bytes_received) +
                      sizeof(ti.tcpi_bytes_received))
            return -1;
        uint64_t before = ti.tcpi_bytes_received;
        if (ioctl(fd, SIOCINQ, &inq) != 0 || inq < 0 ||
            getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
            return -1;
        if (ti.tcpi_bytes_received == before || tries == 3) {
            *out = ti.tcpi_bytes_received - (uint64_t)inq;
            return 0;
        }
    }
#else
    (void)fd;
    (void)out;
    return -1;
#endif
}

#define HDR_BYTES 16 /* the allocator's size header: keeps malloc's
                        16-byte alignment */
#define HDR HDR_BYTES

/* Bytes from `from` to `to` of the consumed count, 0 if it went back. */
static uint64_t since(uint64_t from, uint64_t to)
{
    return to > from ? to - from : 0;
}

void hostile_init(hostile_t *h)
{
    memset(h, 0, sizeof(*h));
    h->fd = -1;
    h->work_max = HOSTILE_REALLOC_WORK_MAX;
}

void hostile_set_body_max(hostile_t *h, size_t max_body_bytes)
{
    uint64_t m = max_body_bytes, need = m * m / 2;
    h->work_max = need > HOSTILE_REALLOC_WORK_MAX ? need
                                                   : HOSTILE_REALLOC_WORK_MAX;
}

void hostile_set_fd(hostile_t *h, int fd)
{
    h->fd = fd;
    h->tripped = HOSTILE_NONE;
    h->cut_pending = 0;
    /* A tree cut half-way on the last socket is freed only when
     * libstrophe resets its parser, after this: not this socket's. */
    h->held = fd >= 0 ? h->live : 0;
    h->reported = 0;
    h->boundary = 0;
    h->realloc_work = 0;
    h->text_refused = h->damaged = 0;
    h->text_block = NULL;
    h->base = h->turn_start = 0;
    h->counting = fd >= 0 && rx_consumed(fd, &h->base) == 0;
    h->turn_start = h->base;
}

/* ---- stopping expat ---------------------------------------------------- */

typedef int (*stop_fn_t)(void *parser, unsigned char resumable);
static stop_fn_t stop_fn;
static pthread_once_t stop_once = PTHREAD_ONCE_INIT;

static void stop_lookup(void)
{
    /* libstrophe's expat, already loaded with it; absent from a static
     * build that does not export it: then no stop, the cut still holds. */
    void *sym = dlsym(RTLD_DEFAULT, "XML_StopParser");
    memcpy(&stop_fn, &sym, sizeof(stop_fn));
}

void hostile_watch_begin(hostile_t *h)
{
    memset(h->watched, 0, sizeof(h->watched));
    h->watching = 1;
}

/* The parser object still holds its expat parser, and that parser's user
 * data (expat's XML_GetUserData: its first word) still points back. */
static int parser_holds(const hostile_t *h)
{
    void *const *b = h->parser_block;
    return b && b[1] == h->xml_parser && h->xml_parser &&
           *(void *const *)h->xml_parser == h->parser_block;
}

int hostile_find_parser(hostile_t *h, const void *ctx, const void *conn)
{
    h->watching = 0;
    h->parser_block = h->xml_parser = NULL;
    for (size_t i = 0; i < sizeof(h->watched) / sizeof(h->watched[0]); i++) {
        void **b = h->watched[i];
        size_t size;
        if (!b)
            continue;
        memcpy(&size, (unsigned char *)b - HDR_BYTES, sizeof(size));
        /* ctx, expat, three callbacks, userdata (the connection), ... */
        if (size < 6 * sizeof(void *) || size > 256 || b[0] != ctx ||
            b[5] != conn || !b[1])
            continue;
        h->parser_block = b;
        h->xml_parser = b[1];
        if (parser_holds(h))
            break;
        h->parser_block = h->xml_parser = NULL;
    }
    memset(h->watched, 0, sizeof(h->watched));
    if (!h->xml_parser)
        return 0;
    pthread_once(&stop_once, stop_lookup);
    return stop_fn != NULL;
}

/* Suspend expat: XML_Parse returns at the end of the handler running now
 * (libstrophe reads "suspended" as success, so it sends no stream error
 * before the session's acknowledgement); whatever it reads later is a
 * parse error, and the next connection resets the parser. */
static void stop_parser(hostile_t *h)
{
    if (stop_fn && parser_holds(h))
        stop_fn(h->xml_parser, 1);
}

void hostile_trip(hostile_t *h, hostile_reason_t why)
{
    if (h->tripped)
        return;
    h->tripped = why;
    stop_parser(h);
    if (h->on_trip)
        h->on_trip(h->on_trip_ud, why);
    if (why == HOSTILE_MEMORY && h->defer_memory_cut && h->fd >= 0) {
        h->cut_pending = 1;
        return;
    }
    /* libstrophe sees EOF on its next read and disconnects. */
    if (h->fd >= 0)
        shutdown(h->fd, SHUT_RDWR);
}

void hostile_cut(hostile_t *h)
{
    h->cut_pending = 0;
    if (h->fd >= 0)
        shutdown(h->fd, SHUT_RDWR);
}

hostile_reason_t hostile_turn_end(hostile_t *h)
{
    uint64_t now;
    if (h->fd >= 0 && h->counting && !h->tripped &&
        rx_consumed(h->fd, &now) == 0) {
        /* turn_start is the previous turn's end: nothing reads between
         * turns. */
        if (h->boundary) {
            /* the stanza in progress began during this turn */
            h->base = h->turn_start;
            h->boundary = 0;
        }
        if (since(h->base, now) > HOSTILE_STANZA_MAX)
            hostile_trip(h, HOSTILE_STANZA_SIZE);
        if (now > h->turn_start)
            h->turn_start = now;
    }
    if (h->tripped && !h->reported) {
        h->reported = 1;
        return h->tripped;
    }
    return HOSTILE_NONE;
}

void hostile_stanza_done(hostile_t *h)
{
    h->boundary = 1;
    h->realloc_work = 0;
    h->text_refused = 0;
}

int hostile_damaged(const hostile_t *h)
{
    return h->damaged;
}

void hostile_clear_damage(hostile_t *h)
{
    h->damaged = 0;
}

const char *hostile_reason_text(hostile_reason_t why)
{
    switch (why) {
    case HOSTILE_NONE:
        return "none";
    case HOSTILE_STANZA_SIZE:
        return "a stanza above the size bound";
    case HOSTILE_TEXT_WORK:
        return "text that costs too much to join";
    case HOSTILE_ENTITIES:
        return "text beyond its wire bytes (DTD entities)";
    case HOSTILE_MEMORY:
        return "the parser's memory bound";
    case HOSTILE_BAD_XML:
        return "invalid XML";
    }
    return "unknown";
}

/* ---- the context's allocator: a size header in front of each block ---- */


void *hostile_alloc(size_t size, void *ud)
{
    hostile_t *h = ud;
    if (size > SIZE_MAX - HDR)
        return NULL;
    unsigned char *p = malloc(size + HDR);
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof(size));
    h->live += size;
    if (h->watching)
        for (size_t i = 0; i < sizeof(h->watched) / sizeof(h->watched[0]);
             i++)
            if (!h->watched[i]) {
                h->watched[i] = p + HDR;
                break;
            }
    if (h->live > HOSTILE_LIVE_MAX + h->held)
        hostile_trip(h, HOSTILE_MEMORY); /* the block is still given */
    return p + HDR;
}

void hostile_free(void *ptr, void *ud)
{
    hostile_t *h = ud;
    if (!ptr)
        return;
    if (ptr == h->text_block)
        h->text_block = NULL;
    if (h->watching)
        for (size_t i = 0; i < sizeof(h->watched) / sizeof(h->watched[0]);
             i++)
            if (h->watched[i] == ptr)
                h->watched[i] = NULL;
    unsigned char *p = (unsigned char *)ptr - HDR;
    size_t size;
    memcpy(&size, p, sizeof(size));
    h->live -= size;
    if (h->held && h->live <= HOSTILE_LIVE_MAX / 2)
        h->held = 0;
    free(p);
}

/* Text of the stanza in progress beyond what its wire bytes can hold:
 * DTD entities. The bound is checked cheaply first (consumed at the last
 * turn's end, plus one read and a TLS record), then exactly. */
static int beyond_wire(hostile_t *h, size_t size)
{
    if (h->fd < 0 || !h->counting || size <= HOSTILE_EXPANSION_SLACK)
        return 0;
    uint64_t wire = since(h->base, h->turn_start) + HOSTILE_STANZA_SLACK;
    if (size <= 2 * wire + HOSTILE_EXPANSION_SLACK)
        return 0;
    uint64_t now;
    if (rx_consumed(h->fd, &now) != 0)
        return 0;
    wire = since(h->base, now) + HOSTILE_STANZA_SLACK;
    return size > 2 * wire + HOSTILE_EXPANSION_SLACK;
}

/* libstrophe 0.12 joins text (parser_expat.c, _characters) by growing one
 * block with realloc, from NULL for each new text; refused, it frees the
 * block and starts from NULL at the next piece. Only that is text joining:
 * a block realloc makes from NULL, and its growth (text_block). Its work is
 * counted; past the bound, and after a trip, every such realloc is
 * refused, so the stanza's text stops costing anything. Every other
 * realloc goes on, never counted: rendering (xmpp_stanza_to_text allocs
 * 1024 bytes, then reallocs: review M2, an outgoing stanza must never fail
 * to render for an incoming one's sake) and expat's buffers for the
 * process's first context (a NULL there is "out of memory", a parse error
 * that would cut the link). (expat makes one block from NULL, its
 * prefixed-attribute table, the first time a stanza has prefixed
 * attributes: refused during such a stanza, that is a cut.) */
void *hostile_realloc(void *ptr, size_t size, void *ud)
{
    hostile_t *h = ud;
    int text = !ptr || ptr == h->text_block;
    if (text) {
        if (h->tripped || h->text_refused)
            return NULL;
        h->realloc_work += size;
        if (h->realloc_work > h->work_max) {
            h->text_refused = h->damaged = 1;
            return NULL;
        }
    }
    if (!ptr) {
        void *p = hostile_alloc(size, ud);
        h->text_block = p;
        return p;
    }
    if (size > SIZE_MAX - HDR)
        return NULL;
    unsigned char *p = (unsigned char *)ptr - HDR;
    size_t old;
    memcpy(&old, p, sizeof(old));
    /* Rendering may take a stanza beyond its wire (escaping): only text. */
    if (text && beyond_wire(h, size)) {
        hostile_trip(h, HOSTILE_ENTITIES);
        return NULL;
    }
    unsigned char *n = realloc(p, size + HDR);
    if (!n)
        return NULL;
    memcpy(n, &size, sizeof(size));
    h->live = h->live - old + size;
    if (ptr == h->text_block)
        h->text_block = n + HDR;
    if (h->watching)
        for (size_t i = 0; i < sizeof(h->watched) / sizeof(h->watched[0]);
             i++)
            if (h->watched[i] == ptr)
                h->watched[i] = n + HDR;
    if (h->live > HOSTILE_LIVE_MAX + h->held)
        hostile_trip(h, HOSTILE_MEMORY);
    return n + HDR;
}

typedef struct {
    void (*fn)(void *);
    void *arg;
} big_call_t;

static void *big_main(void *arg)
{
    big_call_t *c = arg;
    /* libstrophe runs here (a close's last writes): a thread of ours,
     * SIGPIPE blocked for its short life (see session.c) */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    c->fn(c->arg);
    return NULL;
}

void hostile_on_big_stack(void (*fn)(void *), void *arg)
{
    big_call_t c = { fn, arg };
    pthread_attr_t a;
    pthread_t t;
    int made = 0;
    if (pthread_attr_init(&a) == 0) {
        made = pthread_attr_setstacksize(&a, HOSTILE_STACK_BYTES) == 0 &&
               pthread_create(&t, &a, big_main, &c) == 0;
        pthread_attr_destroy(&a);
    }
    if (made)
        pthread_join(t, NULL);
    else
        fn(arg);
}
