/* SPDX-License-Identifier: MIT */
/* lib/hostile.c against a real loopback TCP socket: the wire accounting
 * must not mistake a busy, honest stream for an oversized stanza
 * (behaviour.md §11). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <strophe.h>

#include "hostile.h"

typedef struct {
    int fd;
    size_t total;
} writer_t;

static void *writer(void *arg)
{
    writer_t *w = arg;
    /* A reader that stopped (the bound tripped) must not leave this
     * thread blocked in send(): give up after 2 s without progress. */
    struct timeval tv = { 2, 0 };
    setsockopt(w->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    static char buf[65536];
    memset(buf, 'x', sizeof(buf));
    size_t sent = 0;
    while (sent < w->total) {
        ssize_t n = send(w->fd, buf, sizeof(buf), MSG_NOSIGNAL);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    shutdown(w->fd, SHUT_WR);
    return NULL;
}

/* A connected loopback TCP pair: fds[0] writes, fds[1] reads. */
static void tcp_pair(int fds[2])
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(ls >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(ls, 1), 0);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &alen), 0);
    fds[0] = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fds[0], (struct sockaddr *)&a, sizeof(a)), 0);
    fds[1] = accept(ls, NULL, NULL);
    assert_true(fds[1] >= 0);
    close(ls);
}

/* A sender that never pauses, read 4 KiB at a time, each read ending a
 * stanza (small stanzas, as a burst of messages or receipts): data keeps
 * arriving between the two counters the accounting reads, which once
 * made the consumed count go backwards and tripped the 4 MiB bound on a
 * stream of 400-byte stanzas (seen under load, 1 run in 10). */
static void test_busy_stream_of_small_stanzas_never_trips(void **st)
{
    (void)st;
    int fds[2];
    tcp_pair(fds);
    int wr = fds[0], rd = fds[1];

    hostile_t h;
    hostile_init(&h);
    hostile_set_fd(&h, rd);
    if (!h.counting) { /* no TCP counters here (qemu-user, not Linux) */
        close(rd);
        close(wr);
        skip();
    }
    writer_t w = { wr, (size_t)64 << 20 }; /* 16 x the bound */
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer, &w), 0);
    char buf[4096];
    size_t got = 0;
    hostile_reason_t why = HOSTILE_NONE;
    for (;;) {
        ssize_t n = read(rd, buf, sizeof(buf));
        if (n <= 0)
            break;
        got += (size_t)n;
        hostile_stanza_done(&h);
        why = hostile_turn_end(&h);
        if (why != HOSTILE_NONE)
            break;
    }
    shutdown(rd, SHUT_RDWR); /* a writer still sending stops */
    pthread_join(th, NULL);
    close(rd);
    close(wr);
    if (why != HOSTILE_NONE)
        fail_msg("tripped (%s) after %zu honest bytes",
                 hostile_reason_text(why), got);
    assert_true(got > ((size_t)4 << 20));
}

/* The bound still holds: one stanza that never ends is cut past 4 MiB. */
static void test_endless_stanza_trips_the_bound(void **st)
{
    (void)st;
    int sv[2];
    tcp_pair(sv);

    hostile_t h;
    hostile_init(&h);
    hostile_set_fd(&h, sv[1]);
    if (!h.counting) { /* no TCP counters here (qemu-user, not Linux) */
        close(sv[0]);
        close(sv[1]);
        skip();
    }
    writer_t w = { sv[0], (size_t)16 << 20 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer, &w), 0);
    char buf[4096];
    size_t got = 0;
    hostile_reason_t why = HOSTILE_NONE;
    while (why == HOSTILE_NONE) {
        ssize_t n = read(sv[1], buf, sizeof(buf));
        if (n <= 0)
            break;
        got += (size_t)n;
        why = hostile_turn_end(&h); /* no stanza ever ends */
    }
    shutdown(sv[1], SHUT_RDWR); /* the writer sees EPIPE and stops */
    pthread_join(th, NULL);
    close(sv[1]);
    close(sv[0]);
    assert_int_equal(why, HOSTILE_STANZA_SIZE);
    assert_true(got > HOSTILE_STANZA_MAX - 65536);
    assert_true(got <= HOSTILE_STANZA_MAX + HOSTILE_STANZA_SLACK + 65536);
}


/* Review M2: the bound on text joining counted every realloc of the
 * context, rendering included: an outgoing stanza over 1 KiB rendered
 * while an incoming stanza's text neared the bound took the realloc that
 * crossed it, failed to render (xmpp_send drops it silently) and was
 * counted as sent. Only text joining (a block realloc makes from NULL and
 * grows) is counted and refused now. */
static void test_rendering_never_refused_by_the_text_bound(void **st)
{
    (void)st;
    hostile_t h;
    hostile_init(&h);
    xmpp_mem_t mem = { hostile_alloc, hostile_free, hostile_realloc, &h };
    xmpp_initialize();
    xmpp_ctx_t *ctx = xmpp_ctx_new(&mem, NULL);
    assert_non_null(ctx);
    /* an incoming text being joined, its work just under the bound */
    char *text = hostile_realloc(NULL, 64, &h);
    assert_non_null(text);
    h.realloc_work = h.work_max - 16;
    /* our own stanza of 2 KiB, rendered in that window */
    xmpp_stanza_t *m = xmpp_message_new(ctx, "chat", "bob@example.com", "x1");
    char body[2048];
    memset(body, 'b', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    assert_int_equal(xmpp_message_set_body(m, body), XMPP_EOK);
    char *buf = NULL;
    size_t len = 0;
    int rc = xmpp_stanza_to_text(m, &buf, &len);
    if (rc == XMPP_EOK)
        xmpp_free(ctx, buf);
    xmpp_stanza_release(m);
    /* the text itself is still refused past the bound */
    char *grown = hostile_realloc(text, 4096, &h);
    if (grown)
        text = grown;
    hostile_free(text, &h);
    xmpp_ctx_free(ctx);
    assert_int_equal(rc, XMPP_EOK);
    assert_true(len > 2047);
    assert_null(grown);
    assert_int_equal(h.text_refused, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_busy_stream_of_small_stanzas_never_trips),
        cmocka_unit_test(test_endless_stanza_trips_the_bound),
        cmocka_unit_test(test_rendering_never_refused_by_the_text_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
