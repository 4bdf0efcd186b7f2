/* SPDX-License-Identifier: MIT */
#include "hostile.h"

#include <pthread.h>
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
    h->reported = 0;
    h->boundary = 0;
    h->realloc_work = 0;
    h->text_refused = h->damaged = 0;
    h->refused_block = NULL;
    h->base = h->turn_start = 0;
    h->counting = fd >= 0 && rx_consumed(fd, &h->base) == 0;
    h->turn_start = h->base;
}

void hostile_trip(hostile_t *h, hostile_reason_t why)
{
    if (h->tripped)
        return;
    h->tripped = why;
    /* libstrophe sees EOF on its next read and disconnects. */
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
    h->refused_block = NULL;
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

#define HDR 16 /* keeps malloc's 16-byte alignment */

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
    if (h->live > HOSTILE_LIVE_MAX)
        hostile_trip(h, HOSTILE_MEMORY); /* the block is still given */
    return p + HDR;
}

void hostile_free(void *ptr, void *ud)
{
    hostile_t *h = ud;
    if (!ptr)
        return;
    if (ptr == h->refused_block)
        h->refused_block = NULL; /* its address may serve expat next */
    unsigned char *p = (unsigned char *)ptr - HDR;
    size_t size;
    memcpy(&size, p, sizeof(size));
    h->live -= size;
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
 * block and starts from NULL at the next piece. Once the work bound trips,
 * that block and every block realloc would make from NULL are refused, so
 * the stanza's text stops costing anything; the other reallocs (expat's
 * buffers for the process's first context: namespace bindings, long
 * names, its pools; rendering) go on, since expat reads a NULL as out of
 * memory, a parse error that would cut the link. (expat makes one block
 * from NULL, its prefixed-attribute table, the first time a stanza has
 * prefixed attributes: refused during such a stanza, that is a cut.) */
void *hostile_realloc(void *ptr, size_t size, void *ud)
{
    hostile_t *h = ud;
    if (h->tripped)
        return NULL;
    if (h->text_refused) {
        if (!ptr || ptr == h->refused_block)
            return NULL;
    } else {
        h->realloc_work += size;
        if (h->realloc_work > h->work_max) {
            h->text_refused = h->damaged = 1;
            h->refused_block = ptr;
            return NULL;
        }
    }
    if (!ptr)
        return hostile_alloc(size, ud);
    if (size > SIZE_MAX - HDR)
        return NULL;
    unsigned char *p = (unsigned char *)ptr - HDR;
    size_t old;
    memcpy(&old, p, sizeof(old));
    /* xmpp_stanza_to_text renders into 1024 bytes, then reallocs to the
     * stanza's size: escaping may take it beyond the wire. Not text. */
    if (old != 1024 && beyond_wire(h, size)) {
        hostile_trip(h, HOSTILE_ENTITIES);
        return NULL;
    }
    unsigned char *n = realloc(p, size + HDR);
    if (!n)
        return NULL;
    memcpy(n, &size, sizeof(size));
    h->live = h->live - old + size;
    if (h->live > HOSTILE_LIVE_MAX)
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
