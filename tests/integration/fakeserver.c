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
    int conns[MAX_CONNS];
    pthread_t threads[MAX_CONNS];
    int n_conns;
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
    if (say(fd, "<stream:features><bind xmlns='urn:ietf:params:xml:ns:"
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
    if (wait_for(fd, &in, &len, &cap, &pos, "<enable") ||
        say(fd, "<failed xmlns='urn:xmpp:sm:3'/>"))
        goto out;
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
    /* Then read (and drop) until the client closes. */
    for (;;) {
        char sink[4096];
        ssize_t n = recv(fd, sink, sizeof(sink), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            mark_closed(f);
            break;
        }
    }
out:
    free(in);
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
        if (f->n_conns == MAX_CONNS) {
            pthread_mutex_unlock(&f->mu);
            close(fd);
            continue;
        }
        conn_arg_t *a = malloc(sizeof(*a));
        a->f = f;
        a->fd = fd;
        f->conns[f->n_conns] = fd;
        if (pthread_create(&f->threads[f->n_conns], NULL, conn_main, a) ==
            0)
            f->n_conns++;
        else
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
    int v = f->n_conns;
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
    int n = f->n_conns;
    for (int i = 0; i < n; i++)
        shutdown(f->conns[i], SHUT_RDWR); /* unblocks writers and readers */
    pthread_mutex_unlock(&f->mu);
    for (int i = 0; i < n; i++) {
        pthread_join(f->threads[i], NULL);
        close(f->conns[i]);
    }
    close(f->lfd);
    pthread_mutex_destroy(&f->mu);
    free(f);
}
