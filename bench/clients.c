/* SPDX-License-Identifier: MIT */
/* The client processes of the benchmark, one per side, so that getrusage
 * is per client. Each is started by bench.c (fork + exec of this program
 * with a mode argument), prints "ready" once online when it is a receiver,
 * and prints its figures as "key value" lines on stdout; senders print
 * "mark start" and "mark end" around the measured window (the orchestrator
 * reads the server's CPU time then). Receivers stop at EOF on stdin.
 *
 *   c-send LOCAL PEER DB N WINDOW live|recover   libcourier sender
 *   c-recv LOCAL DB                               libcourier receiver
 *   b-send LOCAL PEER N blast|rtt|sm              bare libstrophe sender
 *                                                 (sm: XEP-0198, at most
 *                                                 100 unacked in flight)
 *   b-recv LOCAL N ECHO [sm]                      bare libstrophe receiver
 *   open DB REPS                                  courier_open+close timing
 *   idle LOCAL DB SECONDS PING_MS                 wake-ups while idle
 *                                                 (PING_MS 0: the default)
 */
#include "bench.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <spawn.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include <strophe.h>

#include "courier.h"

static const char *domain(void)
{
    const char *d = getenv("COURIER_TEST_DOMAIN");
    if (!d)
        bench_die("COURIER_TEST_DOMAIN is not set: run through "
                  "tests/integration/prosody.sh");
    return d;
}

static unsigned short port(void)
{
    const char *p = getenv("COURIER_TEST_PORT");
    if (!p)
        bench_die("COURIER_TEST_PORT is not set");
    return (unsigned short)atoi(p);
}

static double timeout_s(void)
{
    return (double)bench_env_long("BENCH_TIMEOUT", 300);
}

/* "mark start" / "mark end" around the measured window: the orchestrator
 * samples the server's CPU time when it reads them. */
static void mark(const char *what)
{
    printf("mark %s\n", what);
    fflush(stdout);
}

static int parse_int(const char *s, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0 || v > 100000000)
        bench_die("%s: bad number '%s'", what, s);
    return (int)v;
}

/* ======================================================================
 * libcourier clients
 * ====================================================================== */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int online;
    /* sender: per message index */
    int n;
    idmap_t map;
    double *t_send, *t_sent, *t_deliv;
    int n_sent, n_deliv, n_failed;
    /* receiver */
    long msgs;
} cl_t;

static void cl_on_state(void *ud, const char *id, const char *peer,
                        courier_state_t s)
{
    (void)peer;
    cl_t *c = ud;
    double now = bench_mono();
    pthread_mutex_lock(&c->mu);
    int i = c->n ? idmap_get(&c->map, id) : -1;
    if (i >= 0) {
        /* States only move forward: a receipt may overtake the ack, then
         * DELIVERED also means "the server had it". */
        if (s == COURIER_SENT || s == COURIER_OFFLINE ||
            s == COURIER_DELIVERED || s == COURIER_DISPLAYED) {
            if (c->t_sent[i] == 0) {
                c->t_sent[i] = now;
                c->n_sent++;
            }
        }
        if (s == COURIER_DELIVERED || s == COURIER_DISPLAYED) {
            if (c->t_deliv[i] == 0) {
                c->t_deliv[i] = now;
                c->n_deliv++;
            }
        }
        if (s == COURIER_FAILED)
            c->n_failed++;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

static void cl_on_message(void *ud, const courier_message_t *m)
{
    (void)m;
    cl_t *c = ud;
    pthread_mutex_lock(&c->mu);
    c->msgs++;
    pthread_mutex_unlock(&c->mu);
}

static void cl_on_link(void *ud, courier_link_t l)
{
    cl_t *c = ud;
    pthread_mutex_lock(&c->mu);
    c->online = l == COURIER_LINK_ONLINE;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void cl_on_log(void *ud, int level, const char *line)
{
    (void)ud;
    if (level >= COURIER_LOG_WARN || getenv("BENCH_VERBOSE"))
        fprintf(stderr, "[courier %.4f %d] %s\n", bench_mono(), level, line);
}

static const courier_callbacks_t cl_cb = {
    .on_state = cl_on_state, .on_message = cl_on_message,
    .on_link = cl_on_link, .on_log = cl_on_log,
};

static void cl_init(cl_t *c, int n)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->n = n;
    if (n) {
        idmap_init(&c->map, (size_t)n);
        c->t_send = calloc((size_t)n, sizeof(double));
        c->t_sent = calloc((size_t)n, sizeof(double));
        c->t_deliv = calloc((size_t)n, sizeof(double));
        if (!c->t_send || !c->t_sent || !c->t_deliv)
            bench_die("out of memory");
    }
}

static void cl_free(cl_t *c)
{
    if (c->n)
        idmap_free(&c->map);
    free(c->t_send);
    free(c->t_sent);
    free(c->t_deliv);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

static courier_t *cl_open_ping(cl_t *c, const char *local, const char *db,
                               unsigned ping_ms)
{
    char jid[256], pw[64];
    snprintf(jid, sizeof(jid), "%s@%s", local, domain());
    snprintf(pw, sizeof(pw), "pw-%s", local);
    courier_config_t cfg;
    courier_config_init(&cfg);
    cfg.jid = jid;
    cfg.password = pw;
    cfg.host = "127.0.0.1";
    cfg.port = port();
    cfg.ca_file = getenv("COURIER_TEST_CA");
    cfg.db_path = db;
    cfg.reconnect_min_ms = 100;
    cfg.reconnect_max_ms = 1000;
    if (ping_ms) { /* the timeout keeps its default margin of 10 % */
        cfg.ping_interval_ms = ping_ms;
        cfg.ping_timeout_ms = ping_ms + ping_ms / 10;
    }
    courier_t *h = NULL;
    if (courier_open(&h, &cfg, &cl_cb, c) != COURIER_OK)
        bench_die("courier_open %s: %s", db, courier_last_error());
    return h;
}

static courier_t *cl_open(cl_t *c, const char *local, const char *db)
{
    return cl_open_ping(c, local, db, 0);
}

/* Wait (mutex held) until *field >= target; 0 on timeout. */
static int cl_wait(cl_t *c, const int *field, int target, double deadline)
{
    while (*field < target) {
        double left = deadline - bench_mono();
        if (left <= 0)
            return 0;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double until = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 +
                       (left < 0.5 ? left : 0.5);
        ts.tv_sec = (time_t)until;
        ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    return 1;
}

/* With c->mu held: wait until all n are SENT, then all DELIVERED; the
 * times since t0. Returns 0 on the deadline. */
static int cl_wait_settled(cl_t *c, int n, double t0, double deadline,
                           double *t_sent, double *t_deliv)
{
    int ok = cl_wait(c, &c->n_sent, n, deadline);
    *t_sent = bench_mono() - t0;
    ok = ok && cl_wait(c, &c->n_deliv, n, deadline);
    *t_deliv = bench_mono() - t0;
    return ok;
}

static int cl_wait_online(cl_t *c, double secs)
{
    pthread_mutex_lock(&c->mu);
    int ok = cl_wait(c, &c->online, 1, bench_mono() + secs);
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static void print_lat(const char *key, const double *from, const double *to,
                      int n)
{
    double *v = malloc((size_t)(n ? n : 1) * sizeof(*v));
    size_t k = 0;
    if (!v)
        bench_die("out of memory");
    for (int i = 0; i < n; i++)
        if (from[i] > 0 && to[i] > 0)
            v[k++] = (to[i] - from[i]) * 1e3;
    printf("%s_p50_ms %.4f\n", key, bench_pct(v, k, 50));
    printf("%s_p99_ms %.4f\n", key, bench_pct(v, k, 99));
    free(v);
}

int mode_courier_send(int argc, char **argv)
{
    if (argc != 7)
        bench_die("usage: c-send LOCAL PEER DB N WINDOW live|recover");
    int n = parse_int(argv[4], "N"), window = parse_int(argv[5], "WINDOW");
    int recover = strcmp(argv[6], "recover") == 0;
    char peer[256], body[64], id[COURIER_ID_MAX];
    snprintf(peer, sizeof(peer), "%s@%s", argv[2], domain());
    cl_t c;
    cl_init(&c, n);
    courier_t *h = cl_open(&c, argv[1], argv[3]);
    double deadline, t0, c0, t_online = 0, t_sent = 0, t_deliv = 0;
    int ok = 1;

    if (recover) {
        /* Queued while offline (never started): stored, reported FAILED
         * "offline", sent by themselves once the link is up. */
        for (int i = 0; i < n; i++) {
            snprintf(body, sizeof(body), "benchmark message %d", i);
            pthread_mutex_lock(&c.mu);
            if (courier_send_text(h, peer, body, id) != COURIER_OK)
                bench_die("send: %s", courier_last_error());
            idmap_put(&c.map, id, i);
            pthread_mutex_unlock(&c.mu);
        }
        mark("start");
        t0 = bench_mono();
        c0 = bench_cpu();
        for (int i = 0; i < n; i++)
            c.t_send[i] = t0;
        if (courier_start(h) != COURIER_OK)
            bench_die("courier_start: %s", courier_last_error());
        deadline = t0 + timeout_s();
        pthread_mutex_lock(&c.mu);
        ok = cl_wait(&c, &c.online, 1, deadline);
        t_online = bench_mono() - t0;
        ok = ok && cl_wait_settled(&c, n, t0, deadline, &t_sent, &t_deliv);
        pthread_mutex_unlock(&c.mu);
        mark("end");
        printf("online_s %.4f\nsent_s %.4f\ndelivered_s %.4f\n", t_online,
               t_sent, t_deliv);
    } else {
        if (courier_start(h) != COURIER_OK)
            bench_die("courier_start: %s", courier_last_error());
        if (!cl_wait_online(&c, 30))
            bench_die("%s never came online", argv[1]);
        mark("start");
        t0 = bench_mono();
        c0 = bench_cpu();
        deadline = t0 + timeout_s();
        double t_loop = 0;
        for (int i = 0; i < n && ok; i++) {
            snprintf(body, sizeof(body), "benchmark message %d", i);
            pthread_mutex_lock(&c.mu);
            /* window W: at most W messages not yet DELIVERED */
            if (window > 0)
                ok = cl_wait(&c, &c.n_deliv, i - window + 1, deadline);
            /* the lock covers the send, so no state of this id can be
             * reported before its index is known */
            c.t_send[i] = bench_mono();
            if (courier_send_text(h, peer, body, id) != COURIER_OK)
                bench_die("send: %s", courier_last_error());
            idmap_put(&c.map, id, i);
            pthread_mutex_unlock(&c.mu);
        }
        t_loop = bench_mono() - t0;
        pthread_mutex_lock(&c.mu);
        ok = ok && cl_wait_settled(&c, n, t0, deadline, &t_sent, &t_deliv);
        pthread_mutex_unlock(&c.mu);
        mark("end");
        printf("send_loop_s %.4f\nsent_s %.4f\ndelivered_s %.4f\n", t_loop,
               t_sent, t_deliv);
        printf("rate %.2f\n", t_deliv > 0 ? n / t_deliv : 0);
    }
    double cpu = bench_cpu() - c0;
    pthread_mutex_lock(&c.mu);
    printf("n %d\nsent %d\ndelivered %d\nfailed_events %d\n", n, c.n_sent,
           c.n_deliv, c.n_failed);
    pthread_mutex_unlock(&c.mu);
    printf("cpu_s %.4f\ncpu_per_msg_us %.3f\n", cpu, cpu / n * 1e6);
    print_lat("sent", c.t_send, c.t_sent, n);
    print_lat("delivered", c.t_send, c.t_deliv, n);
    if (!ok)
        printf("timeout 1\n");
    fflush(stdout);
    courier_stop(h);
    courier_close(h);
    cl_free(&c);
    return ok ? 0 : 1;
}

/* Block until EOF on stdin (the orchestrator closes it). */
static void wait_stdin_eof(void)
{
    char buf[256];
    for (;;) {
        ssize_t r = read(0, buf, sizeof(buf));
        if (r == 0 || (r < 0 && errno != EINTR))
            return;
    }
}

int mode_courier_recv(int argc, char **argv)
{
    if (argc != 3)
        bench_die("usage: c-recv LOCAL DB");
    cl_t c;
    cl_init(&c, 0);
    courier_t *h = cl_open(&c, argv[1], argv[2]);
    if (courier_start(h) != COURIER_OK)
        bench_die("courier_start: %s", courier_last_error());
    if (!cl_wait_online(&c, 30))
        bench_die("%s never came online", argv[1]);
    double c0 = bench_cpu();
    printf("ready\n");
    fflush(stdout);
    wait_stdin_eof();
    double cpu = bench_cpu() - c0;
    pthread_mutex_lock(&c.mu);
    long got = c.msgs;
    pthread_mutex_unlock(&c.mu);
    courier_stop(h);
    courier_close(h);
    printf("recv %ld\ncpu_s %.4f\n", got, cpu);
    cl_free(&c);
    return 0;
}

/* ======================================================================
 * Bare libstrophe pair: no store, no receipts, no stream management; TLS
 * verified against the same CA, TCP_NODELAY, the same kind of loop as the
 * library's (poll on the socket, then xmpp_run_once(ctx, 0) while stanzas
 * keep coming, for TLS-buffered input).
 * ====================================================================== */

typedef struct {
    xmpp_ctx_t *ctx;
    xmpp_conn_t *conn;
    int fd, online, closed, receiver, echo;
    unsigned long handled;
    long n, got;
    int done, waiting;
    char wait_id[32];
    /* XEP-0198 done by hand, as the library does it (NOTES: libstrophe
     * 0.12.2's own loses messages): <enable/> first, our stanzas counted
     * after it, the server's after <enabled/>. */
    int sm, sm_enabled, r_out;
    unsigned long sm_sent, sm_acked, sm_in;
} bare_t;

static bare_t B = { .fd = -1 };

static int bare_sockopt(xmpp_conn_t *conn, void *sock)
{
    int fd = *(int *)sock, one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    B.fd = fd;
    return xmpp_sockopt_cb_keepalive(conn, sock);
}

static void bare_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int err,
                      xmpp_stream_error_t *se, void *ud)
{
    (void)conn;
    (void)err;
    (void)se;
    (void)ud;
    if (ev == XMPP_CONN_CONNECT) {
        if (B.sm)
            xmpp_send_raw_string(B.conn, "<enable xmlns='urn:xmpp:sm:3'/>");
        xmpp_stanza_t *p = xmpp_presence_new(B.ctx);
        xmpp_send(B.conn, p);
        xmpp_stanza_release(p);
        B.sm_sent += B.sm;
        B.online = 1;
    } else if (ev != XMPP_CONN_RAW_CONNECT) {
        B.online = 0;
        B.closed = 1;
    }
}

static int bare_any(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    (void)conn;
    (void)ud;
    const char *name = xmpp_stanza_get_name(st);
    B.handled++;
    if (B.sm_enabled && name &&
        (strcmp(name, "message") == 0 || strcmp(name, "presence") == 0 ||
         strcmp(name, "iq") == 0))
        B.sm_in++;
    return 1;
}

/* <enabled/>, the server's <r/> (answered) and <a h/> (counted). */
static int bare_sm(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    (void)conn;
    (void)ud;
    const char *name = xmpp_stanza_get_name(st);
    char a[64];
    if (!name)
        return 1;
    if (strcmp(name, "enabled") == 0) {
        B.sm_enabled = 1;
    } else if (strcmp(name, "r") == 0) {
        snprintf(a, sizeof(a), "<a xmlns='urn:xmpp:sm:3' h='%lu'/>",
                 B.sm_in);
        xmpp_send_raw_string(B.conn, "%s", a);
    } else if (strcmp(name, "a") == 0) {
        const char *h = xmpp_stanza_get_attribute(st, "h");
        if (h)
            B.sm_acked = strtoul(h, NULL, 10);
        B.r_out = 0;
    } else if (strcmp(name, "failed") == 0) {
        bench_die("bare: the server refused stream management");
    }
    return 1;
}

static void bare_send_msg(const char *to, const char *id, const char *body)
{
    xmpp_stanza_t *m = xmpp_message_new(B.ctx, "chat", to, id);
    xmpp_message_set_body(m, body);
    xmpp_send(B.conn, m);
    xmpp_stanza_release(m);
    B.sm_sent += B.sm;
}

static int bare_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    (void)conn;
    (void)ud;
    const char *type = xmpp_stanza_get_type(st);
    const char *from = xmpp_stanza_get_from(st);
    const char *id = xmpp_stanza_get_id(st);
    if (type && strcmp(type, "error") == 0) {
        fprintf(stderr, "bare: error bounce for %s\n", id ? id : "?");
        return 1;
    }
    char *body = xmpp_message_get_body(st);
    if (!body)
        return 1;
    if (B.receiver) {
        B.got++;
        if (B.echo && from)
            bare_send_msg(from, id, body);
        else if (B.got == B.n && from)
            bare_send_msg(from, "done", "done");
    } else if (strcmp(body, "done") == 0) {
        B.done = 1;
    } else if (B.waiting && id && strcmp(id, B.wait_id) == 0) {
        B.waiting = 0;
    }
    xmpp_free(B.ctx, body);
    return 1;
}

static int bare_iq(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    (void)conn;
    (void)ud;
    const char *type = xmpp_stanza_get_type(st);
    const char *id = xmpp_stanza_get_id(st);
    if (B.waiting && type && id && strcmp(id, B.wait_id) == 0 &&
        (strcmp(type, "result") == 0 || strcmp(type, "error") == 0))
        B.waiting = 0;
    return 1;
}

static void bare_connect(const char *local)
{
    char jid[256], pw[64];
    snprintf(jid, sizeof(jid), "%s@%s", local, domain());
    snprintf(pw, sizeof(pw), "pw-%s", local);
    xmpp_initialize();
    B.ctx = xmpp_ctx_new(NULL, NULL);
    B.conn = xmpp_conn_new(B.ctx);
    if (!B.conn)
        bench_die("xmpp_conn_new failed");
    xmpp_conn_set_flags(B.conn, XMPP_CONN_FLAG_MANDATORY_TLS |
                                    XMPP_CONN_FLAG_DISABLE_SM);
    xmpp_conn_set_jid(B.conn, jid);
    xmpp_conn_set_pass(B.conn, pw);
    if (getenv("COURIER_TEST_CA"))
        xmpp_conn_set_cafile(B.conn, getenv("COURIER_TEST_CA"));
    xmpp_conn_set_sockopt_callback(B.conn, bare_sockopt);
    xmpp_handler_add(B.conn, bare_any, NULL, NULL, NULL, NULL);
    xmpp_handler_add(B.conn, bare_message, NULL, "message", NULL, NULL);
    xmpp_handler_add(B.conn, bare_iq, NULL, "iq", NULL, NULL);
    xmpp_handler_add(B.conn, bare_sm, "urn:xmpp:sm:3", NULL, NULL, NULL);
    if (xmpp_connect_client(B.conn, "127.0.0.1", port(), bare_conn, NULL) !=
        XMPP_EOK)
        bench_die("bare %s: connect failed", local);
    double deadline = bench_mono() + 30;
    while (!B.online && !B.closed && bench_mono() < deadline)
        xmpp_run_once(B.ctx, 10);
    if (!B.online)
        bench_die("bare %s: login failed", local);
}

/* One turn of the loop; sets *eof at EOF on stdin when watch_stdin. */
static void bare_step(int timeout_ms, int watch_stdin, int *eof)
{
    struct pollfd p[2] = {
        { .fd = B.fd, .events = POLLIN },
        { .fd = 0, .events = POLLIN },
    };
    if (xmpp_conn_send_queue_len(B.conn) > 0)
        p[0].events |= POLLOUT;
    if (poll(p, watch_stdin ? 2 : 1, timeout_ms) > 0 && watch_stdin &&
        p[1].revents) {
        char buf[64];
        ssize_t r = read(0, buf, sizeof(buf));
        if (r <= 0)
            *eof = 1;
    }
    for (int i = 0; i < 64; i++) {
        unsigned long before = B.handled;
        xmpp_run_once(B.ctx, 0);
        if (B.handled == before)
            break;
    }
}

static void bare_close(void)
{
    xmpp_disconnect(B.conn);
    double until = bench_mono() + 2;
    while (!B.closed && bench_mono() < until)
        xmpp_run_once(B.ctx, 10);
    xmpp_conn_release(B.conn);
    xmpp_ctx_free(B.ctx);
    xmpp_shutdown();
}

static void bare_wait_reply(const char *what, double deadline)
{
    while (B.waiting && !B.closed && bench_mono() < deadline)
        bare_step(20, 0, NULL);
    if (B.waiting)
        bench_die("bare: no %s reply", what);
}

/* At most `window` messages the server has not acked, one <r/> out at a
 * time, asked for when the window is full or nothing more is to send. */
static void bare_send_windowed(const char *peer, int n, int window,
                               double deadline)
{
    char id[32], body[64];
    int i = 0;
    while (!B.closed && bench_mono() < deadline && (i < n || !B.done)) {
        while (i < n && B.sm_sent - B.sm_acked < (unsigned long)window) {
            snprintf(id, sizeof(id), "b%d", i);
            snprintf(body, sizeof(body), "benchmark message %d", i);
            bare_send_msg(peer, id, body);
            i++;
        }
        if (!B.r_out && B.sm_sent > B.sm_acked) {
            xmpp_send_raw_string(B.conn, "<r xmlns='urn:xmpp:sm:3'/>");
            B.r_out = 1;
        }
        bare_step(20, 0, NULL);
    }
}

int mode_bare_send(int argc, char **argv)
{
    if (argc != 5)
        bench_die("usage: b-send LOCAL PEER N blast|rtt|sm");
    int n = parse_int(argv[3], "N");
    char peer[256], id[32], body[64];
    snprintf(peer, sizeof(peer), "%s@%s", argv[2], domain());
    B.sm = strcmp(argv[4], "sm") == 0;
    bare_connect(argv[1]);
    double deadline = bench_mono() + timeout_s();
    if (strcmp(argv[4], "rtt") == 0) {
        /* One at a time: an XEP-0199 ping to the server (the reference for
         * send -> SENT) and a message the receiver echoes (the reference
         * for send -> DELIVERED). */
        double *ping = malloc((size_t)n * sizeof(double));
        double *echo = malloc((size_t)n * sizeof(double));
        if (!ping || !echo)
            bench_die("out of memory");
        for (int i = 0; i < n; i++) {
            snprintf(B.wait_id, sizeof(B.wait_id), "p%d", i);
            xmpp_stanza_t *iq = xmpp_iq_new(B.ctx, "get", B.wait_id);
            xmpp_stanza_t *pg = xmpp_stanza_new(B.ctx);
            xmpp_stanza_set_name(pg, "ping");
            xmpp_stanza_set_ns(pg, "urn:xmpp:ping");
            xmpp_stanza_add_child(iq, pg);
            xmpp_stanza_release(pg);
            xmpp_stanza_set_to(iq, domain());
            double t = bench_mono();
            B.waiting = 1;
            xmpp_send(B.conn, iq);
            xmpp_stanza_release(iq);
            bare_wait_reply("ping", deadline);
            ping[i] = (bench_mono() - t) * 1e3;
        }
        for (int i = 0; i < n; i++) {
            snprintf(B.wait_id, sizeof(B.wait_id), "e%d", i);
            snprintf(body, sizeof(body), "benchmark message %d", i);
            double t = bench_mono();
            B.waiting = 1;
            bare_send_msg(peer, B.wait_id, body);
            bare_wait_reply("echo", deadline);
            echo[i] = (bench_mono() - t) * 1e3;
        }
        printf("ping_p50_ms %.4f\n", bench_pct(ping, (size_t)n, 50));
        printf("ping_p99_ms %.4f\n", bench_pct(ping, (size_t)n, 99));
        printf("echo_p50_ms %.4f\n", bench_pct(echo, (size_t)n, 50));
        printf("echo_p99_ms %.4f\n", bench_pct(echo, (size_t)n, 99));
        free(ping);
        free(echo);
    } else {
        if (B.sm) { /* wait for <enabled/> before counting anything */
            double until = bench_mono() + 10;
            while (!B.sm_enabled && !B.closed && bench_mono() < until)
                bare_step(20, 0, NULL);
            if (!B.sm_enabled)
                bench_die("bare: no <enabled/> from the server");
        }
        mark("start");
        double t0 = bench_mono(), c0 = bench_cpu();
        if (B.sm) {
            bare_send_windowed(peer, n, 100, deadline);
        } else {
            for (int i = 0; i < n; i++) {
                snprintf(id, sizeof(id), "b%d", i);
                snprintf(body, sizeof(body), "benchmark message %d", i);
                bare_send_msg(peer, id, body);
            }
        }
        while (!B.done && !B.closed && bench_mono() < deadline)
            bare_step(20, 0, NULL);
        double t = bench_mono() - t0, cpu = bench_cpu() - c0;
        mark("end");
        if (!B.done)
            printf("timeout 1\n");
        printf("n %d\ndelivered_s %.4f\nrate %.2f\ncpu_s %.4f\n"
               "cpu_per_msg_us %.3f\n", n, t, n / t, cpu, cpu / n * 1e6);
    }
    fflush(stdout);
    bare_close();
    return 0;
}

int mode_bare_recv(int argc, char **argv)
{
    if (argc != 4 && !(argc == 5 && strcmp(argv[4], "sm") == 0))
        bench_die("usage: b-recv LOCAL N ECHO [sm]");
    B.sm = argc == 5;
    B.receiver = 1;
    B.n = parse_int(argv[2], "N");
    B.echo = parse_int(argv[3], "ECHO");
    bare_connect(argv[1]);
    double c0 = bench_cpu();
    printf("ready\n");
    fflush(stdout);
    int eof = 0;
    while (!eof && !B.closed)
        bare_step(1000, 1, &eof);
    double cpu = bench_cpu() - c0;
    printf("recv %ld\ncpu_s %.4f\n", B.got, cpu);
    fflush(stdout);
    bare_close();
    return 0;
}

/* ======================================================================
 * Store scale and idle cost
 * ====================================================================== */

static courier_t *offline_open(const char *db)
{
    courier_config_t cfg;
    courier_config_init(&cfg);
    cfg.jid = "alice@courier.test";
    cfg.password = "x";
    cfg.host = "127.0.0.1";
    cfg.port = 1;
    cfg.db_path = db;
    courier_t *h = NULL;
    if (courier_open(&h, &cfg, NULL, NULL) != COURIER_OK)
        bench_die("courier_open %s: %s", db, courier_last_error());
    return h;
}

/* In a fresh process: what the first courier_open costs in memory (RSS,
 * heap, and SQLite's share of the heap: its page cache and schema), then
 * the median time of REPS open+close. */
int mode_open(int argc, char **argv)
{
    if (argc != 3)
        bench_die("usage: open DB REPS");
    int reps = parse_int(argv[2], "REPS");
    if (reps < 1)
        reps = 1;
    double *t = calloc((size_t)reps, sizeof(double));
    if (!t)
        bench_die("out of memory");
    /* SQLite's global state (mutexes, memstatus) before the baseline */
    sqlite3_initialize();
    long rss0 = bench_rss_kb();
    double heap0 = bench_heap_bytes();
    double sql0 = (double)sqlite3_memory_used();
    double t0 = bench_mono();
    courier_t *h = offline_open(argv[1]);
    double t_open = bench_mono() - t0;
    long rss1 = bench_rss_kb();
    double heap1 = bench_heap_bytes();
    double sql1 = (double)sqlite3_memory_used();
    courier_close(h);
    for (int i = 0; i < reps; i++) {
        t0 = bench_mono();
        courier_close(offline_open(argv[1]));
        t[i] = bench_mono() - t0;
    }
    printf("first_open_ms %.3f\nopen_close_ms %.3f\nrss_delta_kb %ld\n"
           "heap_delta_b %.0f\nsqlite_delta_b %.0f\n",
           t_open * 1e3, bench_median(t, (size_t)reps) * 1e3, rss1 - rss0,
           heap1 - heap0, sql1 - sql0);
    free(t);
    return 0;
}

/* An app killed in the background: a process opens the store, sends one
 * message and dies without courier_close, so the -wal stays and holds
 * what SQLite must recover at the next open. */
int mode_crash(int argc, char **argv)
{
    if (argc != 2)
        bench_die("usage: crash DB");
    courier_t *h = offline_open(argv[1]);
    char id[COURIER_ID_MAX];
    if (courier_send_text(h, "bob@courier.test", "killed", id) != COURIER_OK)
        _exit(1);
    _exit(0);
}

/* posix_spawn, not fork: a fork would leave this process's pages
 * copy-on-write, and the open timed next would pay their faults. */
static void crash_child(const char *db)
{
    extern char **environ;
    char *argv[] = { "/proc/self/exe", "crash", (char *)db, NULL };
    pid_t pid;
    int st = 0;
    if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ))
        bench_die("posix_spawn: %s", strerror(errno));
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
        bench_die("crash child failed");
}

/* Issue 15 (behaviour.md §10): REPS times, after an unclean exit, the
 * time courier_open makes its caller wait, the time until the check's
 * verdict (its thread, PRAGMA quick_check: what open used to wait for),
 * and, after another unclean exit, the time courier_close takes when it
 * stops a check under way; then a clean open of the same store, for
 * reference. Medians, in ms. */
int mode_unclean(int argc, char **argv)
{
    if (argc != 3)
        bench_die("usage: unclean DB REPS");
    int reps = parse_int(argv[2], "REPS");
    if (reps < 1)
        reps = 1;
    double *to = calloc((size_t)reps * 4, sizeof(double));
    if (!to)
        bench_die("out of memory");
    double *tv = to + reps, *tc = tv + reps, *tk = tc + reps;
    for (int i = 0; i < reps; i++) {
        crash_child(argv[1]);
        double t0 = bench_mono();
        courier_t *h = offline_open(argv[1]);
        to[i] = bench_mono() - t0;
        courier_check_t v = COURIER_CHECK_RUNNING;
        while (v == COURIER_CHECK_RUNNING) {
            struct timespec ms = { 0, 200000 };
            nanosleep(&ms, NULL);
            courier_check_status(h, &v);
        }
        tv[i] = bench_mono() - t0;
        if (v != COURIER_CHECK_OK)
            bench_die("check: %d (%s)", (int)v, courier_last_error());
        courier_close(h);
        /* the verdict was ok: this close was clean */
        t0 = bench_mono();
        h = offline_open(argv[1]);
        tk[i] = bench_mono() - t0;
        courier_check_status(h, &v);
        if (v != COURIER_CHECK_NONE)
            bench_die("a check after a clean close: %d", (int)v);
        courier_close(h);
        crash_child(argv[1]);
        h = offline_open(argv[1]);
        struct timespec ms = { 0, 20000000 }; /* the check is reading */
        nanosleep(&ms, NULL);
        t0 = bench_mono();
        courier_close(h);
        tc[i] = bench_mono() - t0;
        h = offline_open(argv[1]); /* owed again: run it out */
        for (v = COURIER_CHECK_RUNNING; v == COURIER_CHECK_RUNNING;) {
            nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
            courier_check_status(h, &v);
        }
        courier_close(h);
    }
    printf("unclean_open_ms %.3f\nverdict_ms %.3f\nclose_in_check_ms %.3f\n"
           "clean_open_ms %.3f\n",
           bench_median(to, (size_t)reps) * 1e3,
           bench_median(tv, (size_t)reps) * 1e3,
           bench_median(tc, (size_t)reps) * 1e3,
           bench_median(tk, (size_t)reps) * 1e3);
    free(to);
    return 0;
}

static int count_entry(void *ud, const courier_entry_t *e)
{
    int64_t *last = ud;
    *last = e->seq;
    return 0;
}

/* behaviour.md §9: the median time of REPS history pages of 50 (the newest
 * page, then the page before it, alternately), in microseconds. */
int mode_history(int argc, char **argv)
{
    if (argc != 3 && argc != 4)
        bench_die("usage: history DB REPS [DB2]");
    int reps = parse_int(argv[2], "REPS");
    int n_db = argc == 4 ? 2 : 1;
    if (reps < 1)
        reps = 1;
    double *t = calloc((size_t)reps * 2, sizeof(double));
    if (!t)
        bench_die("out of memory");
    /* With DB2 both stores are paged in this one process, in turns (the
     * first of each turn alternating): a process's own speed, which
     * differs by up to 1.7x between fresh processes here, then cancels
     * out of their ratio. */
    courier_t *h[2] = { offline_open(argv[1]),
                        n_db == 2 ? offline_open(argv[3]) : NULL };
    int64_t last[2] = { 0, 0 }, before[2] = { 0, 0 };
    for (int i = 0; i < reps; i++) {
        for (int k = 0; k < n_db; k++) {
            int d = (i + k) % n_db;
            double t0 = bench_mono();
            int rc = courier_history(h[d], "bob@courier.test",
                                     i % 2 ? before[d] : 0, 50, count_entry,
                                     &last[d]);
            t[d * reps + i] = bench_mono() - t0;
            if (rc != COURIER_OK)
                bench_die("courier_history: %s", courier_last_error());
            if (i % 2 == 0)
                before[d] = last[d];
        }
    }
    for (int d = 0; d < n_db; d++)
        courier_close(h[d]);
    printf("page_us %.3f\n", bench_median(t, (size_t)reps) * 1e6);
    if (n_db == 2)
        printf("page2_us %.3f\n", bench_median(t + reps, (size_t)reps) * 1e6);
    free(t);
    return 0;
}

/* Wake-ups of the library's threads (the loop thread and its stall
 * guard) while online and idle: their voluntary context switches, i.e.
 * the times they blocked, over SECONDS once the login has settled. The
 * calling thread only sleeps and is not counted. */
int mode_idle(int argc, char **argv)
{
    if (argc != 5)
        bench_die("usage: idle LOCAL DB SECONDS PING_MS");
    int secs = parse_int(argv[3], "SECONDS");
    int ping_ms = parse_int(argv[4], "PING_MS");
    cl_t c;
    cl_init(&c, 0);
    courier_t *h = cl_open_ping(&c, argv[1], argv[2], (unsigned)ping_ms);
    if (courier_start(h) != COURIER_OK)
        bench_die("courier_start: %s", courier_last_error());
    if (!cl_wait_online(&c, 30))
        bench_die("%s never came online", argv[1]);
    bench_sleep(2.0); /* let the login settle (presence, acks) */
    long w0 = bench_vcsw_other_threads();
    double c0 = bench_cpu();
    bench_sleep(secs);
    long w1 = bench_vcsw_other_threads();
    double cpu = bench_cpu() - c0;
    pthread_mutex_lock(&c.mu);
    int online = c.online;
    pthread_mutex_unlock(&c.mu);
    printf("idle_s %d\nwakeups %ld\nwakeups_per_min %.2f\ncpu_ms %.3f\n"
           "online_at_end %d\n", secs, w1 - w0,
           (double)(w1 - w0) * 60.0 / secs, cpu * 1e3, online);
    fflush(stdout);
    courier_stop(h);
    courier_close(h);
    cl_free(&c);
    return online ? 0 : 1;
}
