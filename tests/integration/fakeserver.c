/* SPDX-License-Identifier: MIT */
#include "fakeserver.h"

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

#define MAX_CONNS 64

struct fakesrv {
    const fake_script_t *script;
    int lfd;
    unsigned short port;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int conns[MAX_CONNS];   /* open connections (-1: free slot) */
    int active, accepted;
    int64_t payload_at, closed_at;
};

int64_t fake_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int fake_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int say(int fd, const char *s)
{
    return fake_write_all(fd, s, strlen(s));
}

/* Read until `what` appears after *pos in the accumulated input. */
static int wait_for(int fd, char **in, size_t *len, size_t *cap, size_t *pos,
                    const char *what)
{
    for (;;) {
        if (*in) {
            char *hit = strstr(*in + *pos, what);
            if (hit) {
                *pos = (size_t)(hit - *in) + strlen(what);
                return 0;
            }
        }
        if (*len + 4097 > *cap) {
            size_t ncap = *cap ? *cap * 2 : 8192;
            char *n = realloc(*in, ncap);
            if (!n)
                return -1;
            *in = n;
            *cap = ncap;
        }
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 10000) <= 0)
            return -1;
        ssize_t n = recv(fd, *in + *len, 4096, 0);
        if (n <= 0)
            return -1;
        *len += (size_t)n;
        (*in)[*len] = '\0';
    }
}

static const char stream_hdr[] =
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' id='fake' "
    "from='courier.test' version='1.0'>";

static void mark_closed(fakesrv_t *f)
{
    pthread_mutex_lock(&f->mu);
    if (!f->closed_at)
        f->closed_at = fake_now_ms();
    pthread_mutex_unlock(&f->mu);
}

typedef struct {
    fakesrv_t *f;
    int fd;
} conn_arg_t;

static void *conn_main(void *arg)
{
    conn_arg_t *a = arg;
    fakesrv_t *f = a->f;
    int fd = a->fd;
    free(a);
    const fake_script_t *sc = f->script;
    char *in = NULL;
    size_t len = 0, cap = 0, pos = 0;
    char buf[512];
    if (wait_for(fd, &in, &len, &cap, &pos, "<stream:stream") ||
        say(fd, stream_hdr) ||
        say(fd, "<stream:features><mechanisms xmlns='urn:ietf:params:xml:"
                "ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>"
                "</stream:features>") ||
        wait_for(fd, &in, &len, &cap, &pos, "</auth>") ||
        say(fd, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>") ||
        wait_for(fd, &in, &len, &cap, &pos, "<stream:stream"))
        goto out;
    if (sc->prolog) {
        /* The prolog goes where an XML declaration may: first. */
        if (say(fd, sc->prolog) || say(fd, stream_hdr + 21))
            goto out;
    } else if (say(fd, stream_hdr)) {
        goto out;
    }
    if (say(fd, "<stream:features>") ||
        (sc->features_extra && say(fd, sc->features_extra)) ||
        say(fd, "<bind xmlns='urn:ietf:params:xml:ns:"
                "xmpp-bind'/></stream:features>") ||
        wait_for(fd, &in, &len, &cap, &pos, "<iq"))
        goto out;
    {
        /* The bind request's id, echoed in the result. */
        char id[128] = "";
        const char *p = strstr(in + pos, "id=");
        size_t idpos = pos;
        if (wait_for(fd, &in, &len, &cap, &pos, "</iq>"))
            goto out;
        p = strstr(in + idpos, "id=");
        if (p && (p[3] == '"' || p[3] == '\'')) {
            const char *e = strchr(p + 4, p[3]);
            if (e && (size_t)(e - p - 4) < sizeof(id)) {
                memcpy(id, p + 4, (size_t)(e - p - 4));
                id[e - p - 4] = '\0';
            }
        }
        snprintf(buf, sizeof(buf), "<iq type='result' id='%s'><bind xmlns="
                 "'urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@courier.test"
                 "/fake</jid></bind></iq>", id);
        if (say(fd, buf))
            goto out;
    }
    /* No stream management offered: a client that asks anyway (it sends
     * <enable/> before its presence) is refused. */
    {
        size_t from = pos;
        if (wait_for(fd, &in, &len, &cap, &pos, "<presence"))
            goto out;
        if (strstr(in + from, "<enable") &&
            say(fd, "<failed xmlns='urn:xmpp:sm:3'/>"))
            goto out;
    }
    if (!sc->no_settle)
        usleep(100000); /* let the client settle online */
    pthread_mutex_lock(&f->mu);
    f->payload_at = fake_now_ms();
    f->closed_at = 0;
    pthread_mutex_unlock(&f->mu);
    if (sc->payload && fake_write_all(fd, sc->payload, sc->payload_len)) {
        mark_closed(f);
        goto out;
    }
    if (sc->gen && sc->gen(fd, sc->gen_ud) < 0) {
        mark_closed(f);
        goto out;
    }
    /* Then read until the client closes; a polite close is answered. */
    {
        char sink[4096 + 16];
        size_t keep = 0;
        for (;;) {
            ssize_t n = recv(fd, sink + keep, 4096, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                mark_closed(f);
                break;
            }
            size_t have = keep + (size_t)n;
            if (memmem(sink, have, "</stream:stream>", 16)) {
                say(fd, "</stream:stream>");
                shutdown(fd, SHUT_WR);
            }
            keep = have < 16 ? have : 16; /* a tag split across reads */
            memmove(sink, sink + have - keep, keep);
        }
    }
out:
    free(in);
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < MAX_CONNS; i++)
        if (f->conns[i] == fd)
            f->conns[i] = -1;
    close(fd);
    f->active--;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

static void *listen_main(void *arg)
{
    fakesrv_t *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = { .fd = f->lfd, .events = POLLIN };
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&f->mu);
        int slot = -1;
        for (int i = 0; i < MAX_CONNS && slot < 0; i++)
            if (f->conns[i] < 0)
                slot = i;
        conn_arg_t *a = slot >= 0 ? malloc(sizeof(*a)) : NULL;
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (a) {
            a->f = f;
            a->fd = fd;
            f->conns[slot] = fd;
            f->accepted++;
            f->active++;
            f->payload_at = f->closed_at = 0; /* the latest connection's */
            if (pthread_create(&t, &at, conn_main, a) != 0) {
                f->conns[slot] = -1;
                f->active--;
                free(a);
                a = NULL;
            }
        }
        pthread_attr_destroy(&at);
        if (!a)
            close(fd);
        pthread_mutex_unlock(&f->mu);
    }
    return NULL;
}

fakesrv_t *fakesrv_start(const fake_script_t *script)
{
    fakesrv_t *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->script = script;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    for (int i = 0; i < MAX_CONNS; i++)
        f->conns[i] = -1;
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
        listen(f->lfd, 16) ||
        getsockname(f->lfd, (struct sockaddr *)&sa, &sl)) {
        if (f->lfd >= 0)
            close(f->lfd);
        free(f);
        return NULL;
    }
    f->port = ntohs(sa.sin_port);
    pthread_create(&f->thread, NULL, listen_main, f);
    return f;
}

unsigned short fakesrv_port(const fakesrv_t *f)
{
    return f->port;
}

int64_t fakesrv_payload_at(fakesrv_t *f)
{
    pthread_mutex_lock(&f->mu);
    int64_t v = f->payload_at;
    pthread_mutex_unlock(&f->mu);
    return v;
}

int64_t fakesrv_closed_at(fakesrv_t *f)
{
    pthread_mutex_lock(&f->mu);
    int64_t v = f->closed_at;
    pthread_mutex_unlock(&f->mu);
    return v;
}

int fakesrv_accepted(fakesrv_t *f)
{
    pthread_mutex_lock(&f->mu);
    int v = f->accepted;
    pthread_mutex_unlock(&f->mu);
    return v;
}

void fakesrv_stop(fakesrv_t *f)
{
    if (!f)
        return;
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < MAX_CONNS; i++)
        if (f->conns[i] >= 0) /* unblocks writers and readers */
            shutdown(f->conns[i], SHUT_RDWR);
    while (f->active > 0)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    close(f->lfd);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}
