/* SPDX-License-Identifier: MIT */
#include "relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAIRS 64

typedef struct {
    int a, b;          /* client side, server side; -1 when closed */
    int blackholed;
} pair_t;

struct relay {
    int lfd;
    unsigned short port, to;
    pthread_t th;
    pthread_mutex_t mu;
    pair_t pairs[MAX_PAIRS];
    atomic_int stop, cut, hole, accepted, holes_done;
    atomic_llong hold_until; /* CLOCK_MONOTONIC ms: no forwarding before */
    char stall[32];
};

static int connect_to(unsigned short port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void close_pair(pair_t *p)
{
    if (p->a >= 0)
        close(p->a);
    if (p->b >= 0)
        close(p->b);
    p->a = p->b = -1;
    p->blackholed = 0;
}

/* Returns -1 on EOF/error, 1 if the chunk matched the stall pattern. */
static int forward(int from, int to, const char *stall)
{
    char buf[16385];
    ssize_t n = read(from, buf, sizeof(buf) - 1);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    int matched = stall[0] && strstr(buf, stall) != NULL;
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        off += w;
    }
    return matched;
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *relay_main(void *arg)
{
    relay_t *r = arg;
    while (!atomic_load(&r->stop)) {
        int held = mono_ms() < atomic_load(&r->hold_until);
        if (atomic_exchange(&r->cut, 0))
            for (int i = 0; i < MAX_PAIRS; i++)
                if (r->pairs[i].a >= 0)
                    close_pair(&r->pairs[i]);
        if (atomic_exchange(&r->hole, 0)) {
            for (int i = 0; i < MAX_PAIRS; i++)
                if (r->pairs[i].a >= 0)
                    r->pairs[i].blackholed = 1;
            atomic_fetch_add(&r->holes_done, 1);
        }
        struct pollfd p[1 + 2 * MAX_PAIRS];
        int map[1 + 2 * MAX_PAIRS];
        int n = 0;
        p[n].fd = r->lfd;
        p[n].events = POLLIN;
        map[n++] = -1;
        for (int i = 0; i < MAX_PAIRS && !held; i++) {
            if (r->pairs[i].a < 0 || r->pairs[i].blackholed)
                continue;
            p[n].fd = r->pairs[i].a;
            p[n].events = POLLIN;
            map[n++] = i;
            p[n].fd = r->pairs[i].b;
            p[n].events = POLLIN;
            map[n++] = i;
        }
        if (poll(p, (nfds_t)n, 20) <= 0)
            continue;
        if (p[0].revents & POLLIN) {
            int a = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
            int b = a >= 0 ? connect_to(r->to) : -1;
            int slot = -1;
            for (int i = 0; i < MAX_PAIRS && slot < 0; i++)
                if (r->pairs[i].a < 0)
                    slot = i;
            if (a >= 0 && b >= 0 && slot >= 0) {
                r->pairs[slot].a = a;
                r->pairs[slot].b = b;
                atomic_fetch_add(&r->accepted, 1);
            } else {
                if (a >= 0)
                    close(a);
                if (b >= 0)
                    close(b);
            }
        }
        for (int k = 1; k < n; k++) {
            pair_t *pp = &r->pairs[map[k]];
            if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR)) || pp->a < 0)
                continue;
            int from = p[k].fd, to = from == pp->a ? pp->b : pp->a;
            pthread_mutex_lock(&r->mu);
            char stall[32];
            memcpy(stall, r->stall, sizeof(stall));
            pthread_mutex_unlock(&r->mu);
            int rc = forward(from, to, from == pp->b ? stall : "");
            if (rc < 0)
                close_pair(pp);
            else if (rc > 0)
                pp->blackholed = 1;
        }
    }
    for (int i = 0; i < MAX_PAIRS; i++)
        close_pair(&r->pairs[i]);
    return NULL;
}

relay_t *relay_start(unsigned short to)
{
    relay_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    for (int i = 0; i < MAX_PAIRS; i++)
        r->pairs[i].a = r->pairs[i].b = -1;
    r->to = to;
    r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    if (r->lfd < 0 || bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
        listen(r->lfd, 16) ||
        getsockname(r->lfd, (struct sockaddr *)&sa, &len)) {
        if (r->lfd >= 0)
            close(r->lfd);
        free(r);
        return NULL;
    }
    r->port = ntohs(sa.sin_port);
    pthread_mutex_init(&r->mu, NULL);
    pthread_create(&r->th, NULL, relay_main, r);
    return r;
}

unsigned short relay_port(const relay_t *r)
{
    return r->port;
}

void relay_cut(relay_t *r)
{
    atomic_store(&r->cut, 1);
}

void relay_blackhole(relay_t *r)
{
    /* Returns once applied (bounded), so nothing sent after it slips
     * through before the relay thread's next poll. */
    int done = atomic_load(&r->holes_done);
    atomic_store(&r->hole, 1);
    long long until = mono_ms() + 5000;
    while (atomic_load(&r->holes_done) == done && mono_ms() < until)
        usleep(1000);
}

void relay_delay(relay_t *r, int ms)
{
    atomic_store(&r->hold_until, mono_ms() + ms);
}

void relay_stall_after(relay_t *r, const char *pattern)
{
    pthread_mutex_lock(&r->mu);
    snprintf(r->stall, sizeof(r->stall), "%s", pattern ? pattern : "");
    pthread_mutex_unlock(&r->mu);
}

int relay_accepted(relay_t *r)
{
    return atomic_load(&r->accepted);
}

void relay_stop(relay_t *r)
{
    if (!r)
        return;
    atomic_store(&r->stop, 1);
    pthread_join(r->th, NULL);
    close(r->lfd);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
