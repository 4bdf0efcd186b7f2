/* SPDX-License-Identifier: MIT */
/* Interop with real peers and the server half of the product team's note
 * (docs/behaviour.md, "Why the library exists"), against whichever
 * server the harness started (tests/integration/prosody.sh or ejabberd.sh;
 * COURIER_TEST_SERVER=ejabberd says the latter):
 *  - ejabberd only: its XEP-0022 offline event (OFFLINE, then DELIVERED),
 *    messages pushed through mod_http_api send_message reaching the app
 *    exactly once, also when the recipient was offline, and a silent
 *    session killed by the server's 29 s / 32 s pings with its unacked
 *    message handed to offline storage;
 *  - both: a slixmpp peer (slix_peer.py, /usr/bin/python3) that speaks only
 *    XEP-0184 receipts, XEP-0333 markers and XEP-0085 chat states, and
 *    peers that ask for nothing (slixmpp, a raw libstrophe client).
 * Each test uses fresh stores and ids of its own. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <strophe.h>

#include "courier.h"
#include "relay.h"
#include "spawn.h"

#define SLOTS 1024 /* open addressing, power of two */
#define GOT_MAX 512

typedef struct {
    char id[COURIER_ID_MAX];
    int used;
    int state;     /* last state seen (outgoing) */
    unsigned seen; /* bit per state reported by on_state */
    int count;     /* on_message calls (incoming) */
} slot_t;

typedef struct {
    char peer[COURIER_JID_MAX];
    char id[COURIER_ID_MAX];
    char body[256];
} got_msg_t;

typedef struct {
    char name[16];
    char db[256];
    courier_t *c;
    pthread_mutex_t mu;
    slot_t out[SLOTS], in[SLOTS];
    size_t n_in_distinct, n_in_total;
    got_msg_t got[GOT_MAX]; /* every on_message call, in order */
    size_t n_got;
    courier_link_t link;
    int composing_on, composing_off; /* on_composing calls */
    char composing_peer[COURIER_JID_MAX];
} client_t;

/* ---- environment ------------------------------------------------------ */

static const char *env(const char *k)
{
    const char *v = getenv(k);
    if (!v)
        fail_msg("%s is not set: run through tests/integration/prosody.sh "
                 "or ejabberd.sh", k);
    return v;
}

static unsigned short server_port(void)
{
    return (unsigned short)atoi(env("COURIER_TEST_PORT"));
}

static int on_ejabberd(void)
{
    const char *s = getenv("COURIER_TEST_SERVER");
    return s && strcmp(s, "ejabberd") == 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Slow runs (valgrind) stretch every timeout by this factor. */
static int scale(void)
{
    const char *v = getenv("COURIER_TEST_TIME_SCALE");
    int k = v ? atoi(v) : 1;
    return k > 0 ? k : 1;
}

static int verbose(void)
{
    return getenv("COURIER_TEST_VERBOSE") != NULL;
}

/* ---- libcourier clients (after test_live.c) ---------------------------- */

static slot_t *slot(slot_t *tab, const char *id, int create)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    for (size_t i = 0; i < SLOTS; i++) {
        slot_t *s = &tab[(h + i) & (SLOTS - 1)];
        if (s->used && strcmp(s->id, id) == 0)
            return s;
        if (!s->used) {
            if (!create)
                return NULL;
            s->used = 1;
            snprintf(s->id, sizeof(s->id), "%s", id);
            s->state = -1;
            return s;
        }
    }
    return NULL;
}

static void on_state(void *ud, const char *id, const char *peer,
                     courier_state_t st)
{
    (void)peer;
    client_t *cl = ud;
    pthread_mutex_lock(&cl->mu);
    slot_t *s = slot(cl->out, id, 1);
    if (s) {
        s->state = (int)st;
        s->seen |= 1u << (unsigned)st;
    }
    pthread_mutex_unlock(&cl->mu);
}

static void on_message(void *ud, const courier_message_t *m)
{
    client_t *cl = ud;
    pthread_mutex_lock(&cl->mu);
    slot_t *s = slot(cl->in, m->id, 1);
    if (s) {
        if (s->count++ == 0)
            cl->n_in_distinct++;
        cl->n_in_total++;
    }
    if (cl->n_got < GOT_MAX) {
        got_msg_t *g = &cl->got[cl->n_got++];
        snprintf(g->peer, sizeof(g->peer), "%s", m->peer);
        snprintf(g->id, sizeof(g->id), "%s", m->id);
        snprintf(g->body, sizeof(g->body), "%s", m->body ? m->body : "");
    }
    pthread_mutex_unlock(&cl->mu);
    if (verbose())
        fprintf(stderr, "[%s] message %s from %s: %s\n", cl->name, m->id,
                m->peer, m->body);
}

static void on_link(void *ud, courier_link_t l)
{
    client_t *cl = ud;
    pthread_mutex_lock(&cl->mu);
    cl->link = l;
    pthread_mutex_unlock(&cl->mu);
}

static void on_composing(void *ud, const char *peer, int composing)
{
    client_t *cl = ud;
    pthread_mutex_lock(&cl->mu);
    if (composing)
        cl->composing_on++;
    else
        cl->composing_off++;
    snprintf(cl->composing_peer, sizeof(cl->composing_peer), "%s", peer);
    pthread_mutex_unlock(&cl->mu);
}

static void on_log(void *ud, int level, const char *line)
{
    client_t *cl = ud;
    if (verbose())
        fprintf(stderr, "[%s %d] %s\n", cl->name, level, line);
}

static const courier_callbacks_t callbacks = {
    .on_state = on_state, .on_message = on_message, .on_link = on_link,
    .on_composing = on_composing, .on_log = on_log,
};

/* Clients and peers still open when a test fails are closed by its
 * teardown, so nothing outlives its test. */
static client_t *live_clients[8];

static void track(client_t *cl, int add)
{
    for (size_t i = 0; i < 8; i++)
        if (add ? live_clients[i] == NULL : live_clients[i] == cl) {
            live_clients[i] = add ? cl : NULL;
            return;
        }
}

/* port 0: the server's own; ping_ms 0: the library's default watchdog. */
static client_t *client_new_via(const char *name, const char *tag,
                                unsigned short port, unsigned ping_ms)
{
    client_t *cl = calloc(1, sizeof(*cl));
    assert_non_null(cl);
    pthread_mutex_init(&cl->mu, NULL);
    snprintf(cl->name, sizeof(cl->name), "%s", name);
    snprintf(cl->db, sizeof(cl->db), "%s/interop-%s-%s.db",
             env("COURIER_TEST_DIR"), name, tag);
    char jid[128], pw[64];
    snprintf(jid, sizeof(jid), "%s@%s", name, env("COURIER_TEST_DOMAIN"));
    snprintf(pw, sizeof(pw), "pw-%s", name);
    courier_config_t cfg;
    courier_config_init(&cfg);
    cfg.jid = jid;
    cfg.password = pw;
    cfg.host = "127.0.0.1";
    cfg.port = port ? port : server_port();
    cfg.ca_file = env("COURIER_TEST_CA");
    cfg.db_path = cl->db;
    cfg.reconnect_min_ms = 100;
    cfg.reconnect_max_ms = 1000;
    if (ping_ms) {
        cfg.ping_interval_ms = ping_ms;
        cfg.ping_timeout_ms = ping_ms + 3000;
    }
    int rc = courier_open(&cl->c, &cfg, &callbacks, cl);
    if (rc != COURIER_OK)
        fail_msg("open %s: %s", name, courier_last_error());
    track(cl, 1);
    return cl;
}

static client_t *client_new(const char *name, const char *tag)
{
    return client_new_via(name, tag, 0, 0);
}

static void client_free(client_t *cl)
{
    if (!cl)
        return;
    track(cl, 0);
    courier_close(cl->c);
    pthread_mutex_destroy(&cl->mu);
    free(cl);
}

static void start(client_t *cl)
{
    assert_int_equal(courier_start(cl->c), COURIER_OK);
}

typedef int (*pred_fn)(void *arg);

static int wait_for(pred_fn pred, void *arg, int timeout_ms)
{
    int64_t until = now_ms() + (int64_t)timeout_ms * scale();
    while (now_ms() < until) {
        if (pred(arg))
            return 1;
        usleep(10000);
    }
    return pred(arg);
}

static int is_online(void *arg)
{
    client_t *cl = arg;
    pthread_mutex_lock(&cl->mu);
    int yes = cl->link == COURIER_LINK_ONLINE;
    pthread_mutex_unlock(&cl->mu);
    return yes;
}

static void wait_online(client_t *cl)
{
    if (!wait_for(is_online, cl, 60000)) /* a ceiling: ASan on a loaded machine */
        fail_msg("%s did not come online", cl->name);
}

static int rank(int s)
{
    return s == COURIER_FAILED || s < 0 ? -1 : s;
}

typedef struct {
    client_t *cl;
    char (*ids)[COURIER_ID_MAX];
    size_t n;
    int min_state;
} all_state_t;

/* Reads the store (courier_get_state): the truth. */
static int all_reached(void *arg)
{
    all_state_t *a = arg;
    for (size_t i = 0; i < a->n; i++) {
        courier_state_t s;
        if (courier_get_state(a->cl->c, a->ids[i], &s) != COURIER_OK ||
            rank((int)s) < a->min_state)
            return 0;
    }
    return 1;
}

static void expect_all(client_t *cl, char (*ids)[COURIER_ID_MAX], size_t n,
                       courier_state_t min, int timeout_ms)
{
    all_state_t a = { cl, ids, n, (int)min };
    if (!wait_for(all_reached, &a, timeout_ms)) {
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            courier_info_t info;
            courier_get_info(cl->c, ids[i], &info);
            if (rank((int)info.state) < (int)min && bad++ < 5)
                fprintf(stderr, "  %s: %s (%s, %u attempts)\n", ids[i],
                        courier_state_name(info.state), info.reason,
                        info.attempts);
        }
        fail_msg("%zu of %zu messages of %s below %s", bad, n, cl->name,
                 courier_state_name(min));
    }
}

typedef struct {
    client_t *cl;
    const char *id;
    courier_state_t state;
} seen_arg_t;

/* on_state reported `state` for `id`. */
static int state_seen(void *arg)
{
    seen_arg_t *a = arg;
    pthread_mutex_lock(&a->cl->mu);
    slot_t *s = slot(a->cl->out, a->id, 0);
    unsigned seen = s ? s->seen : 0;
    pthread_mutex_unlock(&a->cl->mu);
    return (seen & (1u << a->state)) != 0;
}

static courier_state_t state_of(client_t *cl, const char *id)
{
    courier_state_t s;
    assert_int_equal(courier_get_state(cl->c, id, &s), COURIER_OK);
    return s;
}

static int in_count(client_t *cl, const char *id)
{
    pthread_mutex_lock(&cl->mu);
    slot_t *s = slot(cl->in, id, 0);
    int n = s ? s->count : 0;
    pthread_mutex_unlock(&cl->mu);
    return n;
}

typedef struct {
    client_t *cl;
    char (*ids)[COURIER_ID_MAX];
    size_t n;
} got_t;

static int got_all(void *arg)
{
    got_t *g = arg;
    for (size_t i = 0; i < g->n; i++)
        if (in_count(g->cl, g->ids[i]) == 0)
            return 0;
    return 1;
}

/* The app got each id exactly once, and nothing twice. */
static void expect_received_once(client_t *cl, char (*ids)[COURIER_ID_MAX],
                                 size_t n)
{
    got_t g = { cl, ids, n };
    if (!wait_for(got_all, &g, 30000))
        fail_msg("%s did not receive all %zu messages", cl->name, n);
    usleep(500000 * scale()); /* let a late duplicate show itself */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(in_count(cl, ids[i]), 1);
    pthread_mutex_lock(&cl->mu);
    size_t dup = cl->n_in_total - cl->n_in_distinct;
    pthread_mutex_unlock(&cl->mu);
    assert_int_equal(dup, 0);
}

/* on_message calls whose body contains `token` (and, if given, from
 * `peer`). */
static int body_count(client_t *cl, const char *token, const char *peer)
{
    int n = 0;
    pthread_mutex_lock(&cl->mu);
    for (size_t i = 0; i < cl->n_got; i++)
        if (strstr(cl->got[i].body, token) &&
            (!peer || strcmp(cl->got[i].peer, peer) == 0))
            n++;
    pthread_mutex_unlock(&cl->mu);
    return n;
}

typedef struct {
    client_t *cl;
    const char *token;
} body_t;

static int has_body(void *arg)
{
    body_t *b = arg;
    return body_count(b->cl, b->token, NULL) > 0;
}

static void expect_body_once(client_t *cl, const char *token,
                             const char *peer)
{
    body_t b = { cl, token };
    if (!wait_for(has_body, &b, 20000))
        fail_msg("%s never got a message with '%s'", cl->name, token);
    usleep(1000000 * scale()); /* a duplicate would follow closely */
    assert_int_equal(body_count(cl, token, NULL), 1);
    assert_int_equal(body_count(cl, token, peer), 1);
}

/* Id arrays of the running test; a failing test's are freed by teardown. */
static void *live_ids[8];

static char (*new_ids(size_t n))[COURIER_ID_MAX]
{
    char (*ids)[COURIER_ID_MAX] = calloc(n, COURIER_ID_MAX);
    assert_non_null(ids);
    for (size_t i = 0; i < 8; i++)
        if (!live_ids[i]) {
            live_ids[i] = ids;
            break;
        }
    return ids;
}

static void free_ids(void *ids)
{
    for (size_t i = 0; i < 8; i++)
        if (live_ids[i] == ids)
            live_ids[i] = NULL;
    free(ids);
}

static void send_n(client_t *from, const char *to, char (*ids)[COURIER_ID_MAX],
                   size_t n, const char *text)
{
    char body[64];
    for (size_t i = 0; i < n; i++) {
        snprintf(body, sizeof(body), "%s %zu", text, i);
        int rc = courier_send_text(from->c, to, body, ids[i]);
        if (rc != COURIER_OK)
            fail_msg("send: %s", courier_last_error());
    }
}

static char alice_jid[128], bob_jid[128], carol_jid[128], dave_jid[128];

/* A token unique to this process and call: ids and bodies of one test
 * never meet leftovers of another (servers keep offline messages). */
static void unique(char *buf, size_t cap, const char *tag)
{
    static unsigned seq;
    snprintf(buf, cap, "%s-%ld-%u-%lld", tag, (long)getpid(), ++seq,
             (long long)(now_ms() % 1000000));
}

/* ---- a raw libstrophe client (after test_live.c) ------------------------ */

typedef struct {
    const char **xml;
    int done;
} raw_t;

static void raw_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int err,
                     xmpp_stream_error_t *se, void *ud)
{
    (void)err;
    (void)se;
    raw_t *r = ud;
    if (ev == XMPP_CONN_CONNECT) {
        xmpp_ctx_t *ctx = xmpp_conn_get_context(conn);
        for (const char **x = r->xml; *x; x++) {
            xmpp_stanza_t *st = xmpp_stanza_new_from_string(ctx, *x);
            if (st) {
                xmpp_send(conn, st);
                xmpp_stanza_release(st);
            }
        }
        xmpp_disconnect(conn);
    } else {
        r->done = 1;
    }
}

static void raw_send(const char *user, const char **xml)
{
    char jid[128], pw[64];
    snprintf(jid, sizeof(jid), "%s@%s/raw", user, env("COURIER_TEST_DOMAIN"));
    snprintf(pw, sizeof(pw), "pw-%s", user);
    xmpp_ctx_t *ctx = xmpp_ctx_new(NULL, NULL);
    xmpp_conn_t *conn = xmpp_conn_new(ctx);
    xmpp_conn_set_flags(conn, XMPP_CONN_FLAG_MANDATORY_TLS |
                                  XMPP_CONN_FLAG_DISABLE_SM);
    xmpp_conn_set_jid(conn, jid);
    xmpp_conn_set_pass(conn, pw);
    xmpp_conn_set_cafile(conn, env("COURIER_TEST_CA"));
    raw_t r = { xml, 0 };
    assert_int_equal(xmpp_connect_client(conn, "127.0.0.1", server_port(),
                                         raw_conn, &r), XMPP_EOK);
    int64_t until = now_ms() + 10000 * scale();
    while (!r.done && now_ms() < until)
        xmpp_run_once(ctx, 10);
    assert_true(r.done);
    xmpp_conn_release(conn);
    xmpp_ctx_free(ctx);
}

/* ---- mod_http_api: a tiny HTTP/1.1 client on loopback ------------------ */

/* POST `json` to 127.0.0.1:COURIER_TEST_API_PORT`path`; returns the HTTP
 * status (or -1) and the response body in `resp`. */
static int http_post(const char *path, const char *json, char *resp,
                     size_t cap)
{
    unsigned short port = (unsigned short)atoi(env("COURIER_TEST_API_PORT"));
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { .tv_sec = 10 * scale() };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     path, port, strlen(json), json);
    if (n <= 0 || (size_t)n >= sizeof(req)) {
        close(fd);
        return -1;
    }
    for (int off = 0; off < n;) {
        ssize_t w = send(fd, req + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (int)w;
    }
    char buf[8192];
    size_t len = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == sizeof(buf) - 1)
            break;
    }
    close(fd);
    buf[len] = '\0';
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    const char *body = strstr(buf, "\r\n\r\n");
    snprintf(resp, cap, "%s", body ? body + 4 : "");
    return status;
}

/* mod_http_api send_message: a chat message from `from` to `to`. */
static void api_send_message(const char *from, const char *to,
                             const char *body)
{
    char json[1024], resp[1024];
    snprintf(json, sizeof(json),
             "{\"type\":\"chat\",\"from\":\"%s\",\"to\":\"%s\","
             "\"subject\":\"\",\"body\":\"%s\"}", from, to, body);
    int status = http_post("/api/send_message", json, resp, sizeof(resp));
    if (status != 200)
        fail_msg("POST /api/send_message: HTTP %d %s", status, resp);
}

/* ---- the slixmpp peer (slix_peer.py) ----------------------------------- */

#define PEER_LINES 4096

typedef struct {
    pid_t pid;
    FILE *cmd;      /* its stdin */
    int out_fd;     /* its stdout */
    char buf[16384];
    size_t len;
    char *lines[PEER_LINES];
    unsigned char claimed[PEER_LINES];
    size_t n_lines;
    int eof;
    char prefix[64]; /* every id of this peer's run starts with it */
} peer_t;

static peer_t *live_peer;
static const char *self_path;

static const char *peer_script(void)
{
    static char path[1024];
    const char *p = getenv("COURIER_TEST_SLIX_PEER");
    if (p)
        return p;
    if (access("tests/integration/slix_peer.py", R_OK) == 0)
        return "tests/integration/slix_peer.py";
    /* next to the sources, seen from build/tests/test_interop */
    const char *slash = self_path ? strrchr(self_path, '/') : NULL;
    int dir = slash ? (int)(slash - self_path) : 1;
    snprintf(path, sizeof(path), "%.*s/../../tests/integration/slix_peer.py",
             dir, slash ? self_path : ".");
    return path;
}

/* Read what the peer printed, waiting at most `timeout_ms`; 0 on EOF. */
static int peer_pump(peer_t *p, int timeout_ms)
{
    if (p->eof)
        return 0;
    struct pollfd pfd = { .fd = p->out_fd, .events = POLLIN };
    int r = poll(&pfd, 1, timeout_ms);
    if (r <= 0)
        return 1;
    ssize_t n = read(p->out_fd, p->buf + p->len, sizeof(p->buf) - 1 - p->len);
    if (n <= 0) {
        p->eof = 1;
        return 0;
    }
    p->len += (size_t)n;
    p->buf[p->len] = '\0';
    char *nl;
    while ((nl = memchr(p->buf, '\n', p->len)) != NULL) {
        *nl = '\0';
        if (verbose())
            fprintf(stderr, "[peer] %s\n", p->buf);
        if (p->n_lines < PEER_LINES)
            p->lines[p->n_lines++] = strdup(p->buf);
        size_t used = (size_t)(nl - p->buf) + 1;
        memmove(p->buf, nl + 1, p->len - used);
        p->len -= used;
    }
    if (p->len == sizeof(p->buf) - 1)
        p->len = 0; /* an absurd line: drop it */
    return 1;
}

static void peer_dump(peer_t *p)
{
    fprintf(stderr, "--- what the slixmpp peer said:\n");
    for (size_t i = 0; i < p->n_lines; i++)
        fprintf(stderr, "  %s\n", p->lines[i]);
}

/* Wait for an unclaimed line that starts with the formatted prefix and
 * claim it; a line that begins with "violation" fails the test at once. */
static int peer_wait_at(int line, peer_t *p, int timeout_ms,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define peer_wait(...) peer_wait_at(__LINE__, __VA_ARGS__)

static int peer_wait_at(int line, peer_t *p, int timeout_ms,
                        const char *fmt, ...)
{
    char want[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof(want), fmt, ap);
    va_end(ap);
    size_t wl = strlen(want);
    int64_t until = now_ms() + (int64_t)timeout_ms * scale();
    for (;;) {
        for (size_t i = 0; i < p->n_lines; i++) {
            if (strncmp(p->lines[i], "violation", 9) == 0) {
                peer_dump(p);
                fail_msg("line %d: the slixmpp peer saw a protocol "
                         "violation: %s", line, p->lines[i]);
            }
            if (!p->claimed[i] && strncmp(p->lines[i], want, wl) == 0) {
                p->claimed[i] = 1;
                return 1;
            }
        }
        int64_t left = until - now_ms();
        if (left <= 0 || p->eof)
            break;
        peer_pump(p, (int)(left < 100 ? left : 100));
    }
    peer_dump(p);
    fail_msg("line %d: the slixmpp peer did not say '%s'", line, want);
    return 0;
}

/* Lines so far (claimed or not) that start with the formatted prefix. */
static size_t peer_count(peer_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static size_t peer_count(peer_t *p, const char *fmt, ...)
{
    char want[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof(want), fmt, ap);
    va_end(ap);
    while (peer_pump(p, 0) && !p->eof) {
        struct pollfd pfd = { .fd = p->out_fd, .events = POLLIN };
        if (poll(&pfd, 1, 0) <= 0)
            break;
    }
    size_t n = 0;
    for (size_t i = 0; i < p->n_lines; i++)
        n += strncmp(p->lines[i], want, strlen(want)) == 0;
    return n;
}

static void peer_cmd(peer_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void peer_cmd(peer_t *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->cmd, fmt, ap);
    va_end(ap);
    fputc('\n', p->cmd);
    fflush(p->cmd);
}

static void peer_kill(peer_t *p)
{
    if (!p)
        return;
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
    }
    if (p->cmd)
        fclose(p->cmd);
    close(p->out_fd);
    for (size_t i = 0; i < p->n_lines; i++)
        free(p->lines[i]);
    if (live_peer == p)
        live_peer = NULL;
    free(p);
}

/* Start slix_peer.py as `user` talking to alice; wait until it is online. */
static peer_t *peer_start(const char *user, const char *tag, int auto_mode)
{
    peer_t *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    unique(p->prefix, sizeof(p->prefix), tag);
    char jid[128], pw[64], port[16];
    snprintf(jid, sizeof(jid), "%s@%s/slix", user,
             env("COURIER_TEST_DOMAIN"));
    snprintf(pw, sizeof(pw), "pw-%s", user);
    snprintf(port, sizeof(port), "%u", server_port());
    const char *python = getenv("COURIER_TEST_PYTHON");
    if (!python)
        python = "/usr/bin/python3"; /* Debian's, with python3-slixmpp */
    const char *script = peer_script();
    const char *ca = env("COURIER_TEST_CA");
    const char *argv[] = { python, script, "--jid", jid, "--password", pw,
                           "--peer", alice_jid, "--host", "127.0.0.1",
                           "--port", port, "--ca", ca, "--prefix", p->prefix,
                           auto_mode ? "--auto" : NULL, NULL };
    int to_child = -1;
    p->pid = spawn_piped(python, (char *const *)argv, &to_child, &p->out_fd);
    assert_true(p->pid > 0);
    p->cmd = fdopen(to_child, "w");
    assert_non_null(p->cmd);
    live_peer = p;
    peer_wait(p, 30000, "ready");
    return p;
}

/* Ask the peer to finish; its exit status says whether everything that
 * came back to it was correct (0) or not. */
static int peer_quit(peer_t *p)
{
    peer_cmd(p, "quit");
    int64_t until = now_ms() + 15000 * scale();
    int status = -1, st;
    while (now_ms() < until) {
        peer_pump(p, 100);
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            p->pid = 0;
            break;
        }
    }
    while (peer_pump(p, 100) && !p->eof)
        ;
    if (status != 0)
        peer_dump(p);
    peer_kill(p);
    return status;
}

/* ---- fixtures --------------------------------------------------------- */

static int teardown(void **st)
{
    (void)st;
    peer_kill(live_peer);
    for (size_t i = 0; i < 8; i++)
        if (live_clients[i])
            client_free(live_clients[i]);
    for (size_t i = 0; i < 8; i++)
        if (live_ids[i])
            free_ids(live_ids[i]);
    return 0;
}

static int setup_names(void **st)
{
    (void)st;
    const char *d = env("COURIER_TEST_DOMAIN");
    snprintf(alice_jid, sizeof(alice_jid), "alice@%s", d);
    snprintf(bob_jid, sizeof(bob_jid), "bob@%s", d);
    snprintf(carol_jid, sizeof(carol_jid), "carol@%s", d);
    snprintf(dave_jid, sizeof(dave_jid), "dave@%s", d);
    return 0;
}

static void need_ejabberd(void)
{
    if (!on_ejabberd()) {
        print_message("    (ejabberd only: COURIER_TEST_SERVER is not "
                      "ejabberd)\n");
        skip();
    }
}

/* ---- (a) ejabberd: XEP-0022 offline event, then delivered -------------- */

static void test_ejabberd_offline_event_then_delivered(void **st)
{
    (void)st;
    need_ejabberd();
    client_t *a = client_new("alice", "a1");
    start(a);
    wait_online(a);
    size_t n = 3;
    char (*ids)[COURIER_ID_MAX] = new_ids(n);
    send_n(a, bob_jid, ids, n, "stored for bob"); /* bob is offline */
    expect_all(a, ids, n, COURIER_OFFLINE, 10000);
    assert_string_equal(courier_display_status(COURIER_OFFLINE),
                        "delivered");
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(state_of(a, ids[i]), COURIER_OFFLINE);
        /* on_state says so too: stored first, then told (the callback
         * may come a moment after the store shows it) */
        seen_arg_t sa = { a, ids[i], COURIER_OFFLINE };
        assert_true(wait_for(state_seen, &sa, 5000));
    }
    client_t *b = client_new("bob", "a1");
    start(b);
    expect_all(a, ids, n, COURIER_DELIVERED, 20000);
    expect_received_once(b, ids, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(state_of(a, ids[i]), COURIER_DELIVERED);
    free_ids(ids);
    client_free(a);
    client_free(b);
}

/* ---- (b) ejabberd: mod_http_api send_message pushes -------------------- */

static void test_ejabberd_api_push_reaches_online_app_once(void **st)
{
    (void)st;
    need_ejabberd();
    client_t *b = client_new("bob", "b1");
    start(b);
    wait_online(b);
    usleep(300000 * scale()); /* initial presence on its way */
    char token[96];
    unique(token, sizeof(token), "pushed-online");
    api_send_message(carol_jid, bob_jid, token);
    expect_body_once(b, token, carol_jid);
    client_free(b);
}

static void test_ejabberd_api_push_to_offline_app_once(void **st)
{
    (void)st;
    need_ejabberd();
    char token[96];
    unique(token, sizeof(token), "pushed-offline");
    api_send_message(carol_jid, bob_jid, token); /* bob is offline */
    client_t *b = client_new("bob", "b2");
    start(b);
    expect_body_once(b, token, carol_jid);
    /* Again on the same store: neither the server nor the library hands
     * it over a second time. */
    client_free(b);
    b = client_new("bob", "b2");
    start(b);
    wait_online(b);
    usleep(1500000 * scale());
    assert_int_equal(body_count(b, token, NULL), 0);
    client_free(b);
}

/* ---- (b2) ejabberd: server pings 29 s / 32 s, unacked to offline ------- */

/* Sessions of `user` the server holds now (ejabberdctl connected_users). */
static int sessions_of(const char *user)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s connected_users 2>&1",
             env("COURIER_TEST_EJABBERDCTL"));
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[512], want[160];
    snprintf(want, sizeof(want), "%s@", user);
    int n = 0;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, want, strlen(want)) == 0)
            n++;
    int st = pclose(f);
    if (st != 0)
        fail_msg("ejabberdctl connected_users failed (status %d)", st);
    return n;
}

static int log_mentions(void *arg)
{
    const char *needle = arg;
    char path[1024];
    snprintf(path, sizeof(path), "%s/ejabberd.log", env("COURIER_TEST_DIR"));
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* The note's server half: bob's link goes silent (the relay blackholes it,
 * the socket stays open, bob's own watchdog is set far away). mod_ping
 * pings him 29 s after his last stanza and kills the session 32 s later;
 * a message alice sent into the dead session meanwhile was never acked by
 * bob, so mod_stream_mgmt hands it to offline storage, and mod_offline
 * tells alice (OFFLINE) without alice resending anything. When bob comes
 * back he gets it from offline storage, once. */
static void test_ejabberd_ping_kills_silent_session_unacked_go_offline(
    void **st)
{
    (void)st;
    need_ejabberd();
    if (scale() > 1)
        skip(); /* the server's clock does not stretch */
    relay_t *r = relay_start(server_port());
    assert_non_null(r);
    client_t *a = client_new("alice", "p1");
    client_t *b = client_new_via("bob", "p1", relay_port(r), 600000);
    start(a);
    start(b);
    wait_online(a);
    wait_online(b);
    usleep(500000); /* bob's initial presence and SM enable settle */
    assert_int_equal(sessions_of("bob"), 1);
    relay_blackhole(r);
    int64_t t0 = now_ms();

    /* Past the ping, before its timeout: the session is still there. */
    usleep(36000 * 1000);
    assert_int_equal(sessions_of("bob"), 1);
    char (*ids)[COURIER_ID_MAX] = new_ids(2);
    send_n(a, bob_jid, ids, 1, "into a dead session");
    expect_all(a, ids, 1, COURIER_SENT, 5000);
    assert_int_equal(state_of(a, ids[0]), COURIER_SENT); /* bob "online" */

    /* Killed by the ping timeout: at most 29 + 32 s after bob's last
     * stanza (and well before mod_stream_mgmt's own 60 s ack timeout for
     * the message above would end it). */
    int64_t gone = -1;
    while (now_ms() - t0 < 90000) {
        if (sessions_of("bob") == 0) {
            gone = now_ms() - t0;
            break;
        }
        usleep(500000);
    }
    if (gone < 0)
        fail_msg("bob's silent session still alive after 90 s");
    print_message("    silent session killed %.1f s after the link went "
                  "silent\n", (double)gone / 1000);
    assert_true(gone >= 40000 && gone <= 66000);
    /* ejabberd writes its log from another process, up to a second or so
     * after the event on a loaded machine: wait for the line. */
    if (!wait_for(log_mentions, "Connection failed: ping_timeout", 10000))
        fail_msg("ejabberd.log never said ping_timeout");

    /* The unacked message went to offline storage and alice was told. */
    expect_all(a, ids, 1, COURIER_OFFLINE, 10000);
    assert_int_equal(state_of(a, ids[0]), COURIER_OFFLINE);
    send_n(a, bob_jid, ids + 1, 1, "after the kill");
    expect_all(a, ids + 1, 1, COURIER_OFFLINE, 10000);
    for (size_t i = 0; i < 2; i++) {
        courier_info_t info;
        assert_int_equal(courier_get_info(a->c, ids[i], &info), COURIER_OK);
        assert_int_equal(info.attempts, 1); /* the server carried it */
    }

    /* bob's link comes back: both from offline storage, once each. */
    relay_cut(r);
    expect_all(a, ids, 2, COURIER_DELIVERED, 30000);
    expect_received_once(b, ids, 2);
    free_ids(ids);
    client_free(b);
    client_free(a);
    relay_stop(r);
}

/* ---- (c) the slixmpp peer: XEP-0184 / XEP-0333 / XEP-0085 only --------- */

/* Our messages reach DELIVERED through its 0184 receipt or its 0333
 * <received/>, and DISPLAYED through its 0333 <displayed/>, which covers
 * the earlier messages too. */
static void test_slix_receipts_and_markers_drive_states(void **st)
{
    (void)st;
    client_t *a = client_new("alice", "c1");
    start(a);
    wait_online(a);
    peer_t *p = peer_start("dave", "c1", 0);
    size_t n = 3;
    char (*ids)[COURIER_ID_MAX] = new_ids(n);
    send_n(a, dave_jid, ids, n, "to a modern client");
    for (size_t i = 0; i < n; i++) /* it sees our 0184/0333 requests */
        peer_wait(p, 15000, "msg %s r184=1 m333=1 ", ids[i]);
    expect_all(a, ids, n, COURIER_SENT, 10000);
    peer_cmd(p, "receipt %s", ids[0]);
    expect_all(a, ids, 1, COURIER_DELIVERED, 10000);
    peer_cmd(p, "marker received %s", ids[1]);
    expect_all(a, ids + 1, 1, COURIER_DELIVERED, 10000);
    usleep(300000 * scale());
    assert_int_equal(state_of(a, ids[0]), COURIER_DELIVERED);
    assert_int_equal(state_of(a, ids[1]), COURIER_DELIVERED);
    assert_true(rank((int)state_of(a, ids[2])) < COURIER_DELIVERED);
    peer_cmd(p, "marker displayed %s", ids[2]);
    expect_all(a, ids, n, COURIER_DISPLAYED, 10000);
    assert_int_equal(peer_quit(p), 0);
    free_ids(ids);
    client_free(a);
}

/* A client that answers as most do (a receipt and a <received/> marker on
 * arrival): a burst goes DELIVERED, one <displayed/> reads them all. */
static void test_slix_auto_client_burst_delivered_then_displayed(void **st)
{
    (void)st;
    client_t *a = client_new("alice", "c2");
    start(a);
    wait_online(a);
    peer_t *p = peer_start("dave", "c2", 1);
    size_t n = 50;
    char (*ids)[COURIER_ID_MAX] = new_ids(n);
    send_n(a, dave_jid, ids, n, "burst");
    expect_all(a, ids, n, COURIER_DELIVERED, 20000);
    for (size_t i = 0; i < n; i++)
        peer_wait(p, 5000, "msg %s ", ids[i]);
    peer_cmd(p, "marker displayed %s", ids[n - 1]);
    expect_all(a, ids, n, COURIER_DISPLAYED, 10000);
    assert_int_equal(peer_quit(p), 0);
    free_ids(ids);
    client_free(a);
}

/* Its messages asking for 0184 and/or 0333 get one of those forms back
 * (issue 17: 0184 for delivered when both were asked, 0333 for
 * displayed), with the right ids (checked on its side), the app sees each
 * once, a resend with the same id is answered again, and a remembered
 * displayed goes out again for it. */
static void test_slix_gets_correct_receipts_and_markers(void **st)
{
    (void)st;
    client_t *a = client_new("alice", "c3");
    start(a);
    wait_online(a);
    peer_t *p = peer_start("dave", "c3", 0);
    char (*ids)[COURIER_ID_MAX] = new_ids(3);
    snprintf(ids[0], COURIER_ID_MAX, "%s-r", p->prefix);  /* 0184 only */
    snprintf(ids[1], COURIER_ID_MAX, "%s-m", p->prefix);  /* 0333 only */
    snprintf(ids[2], COURIER_ID_MAX, "%s-rm", p->prefix); /* both */
    peer_cmd(p, "send %s receipt wants a receipt", ids[0]);
    peer_cmd(p, "send %s markable wants markers", ids[1]);
    peer_cmd(p, "send %s receipt,markable wants both", ids[2]);
    expect_received_once(a, ids, 3);
    peer_cmd(p, "expect receipt %s 1 10", ids[0]);
    peer_wait(p, 12000, "ok receipt %s", ids[0]);
    peer_cmd(p, "expect marker received %s 1 10", ids[1]);
    peer_wait(p, 12000, "ok marker received %s", ids[1]);
    peer_cmd(p, "expect receipt %s 1 10", ids[2]);
    peer_wait(p, 12000, "ok receipt %s", ids[2]);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(courier_mark_displayed(a->c, dave_jid, ids[i]),
                         COURIER_OK);
    peer_cmd(p, "expect marker displayed %s 1 10", ids[1]);
    peer_wait(p, 12000, "ok marker displayed %s", ids[1]);
    peer_cmd(p, "expect marker displayed %s 1 10", ids[2]);
    peer_wait(p, 12000, "ok marker displayed %s", ids[2]);
    /* The same message again (a resend): answered again, shown once. */
    peer_cmd(p, "send %s receipt,markable wants both", ids[2]);
    peer_cmd(p, "expect receipt %s 2 10", ids[2]);
    peer_wait(p, 12000, "ok receipt %s", ids[2]);
    peer_cmd(p, "expect marker displayed %s 2 10", ids[2]);
    peer_wait(p, 12000, "ok marker displayed %s", ids[2]);
    usleep(500000 * scale());
    assert_int_equal(in_count(a, ids[2]), 1);
    /* one form per receipt: no <received/> marker beside the 0184 one */
    assert_int_equal(peer_count(p, "marker received %s", ids[2]), 0);
    /* 0184 has no displayed form, and nothing asked for 0184 on ids[1]:
     * the peer counts any such stanza as a violation (exit status). */
    assert_int_equal(peer_quit(p), 0);
    free_ids(ids);
    client_free(a);
}

typedef struct {
    client_t *cl;
    int on; /* wait for a composing (1) or a stop (0) */
} composing_t;

static int saw_composing(void *arg)
{
    composing_t *c = arg;
    pthread_mutex_lock(&c->cl->mu);
    int yes = (c->on ? c->cl->composing_on : c->cl->composing_off) > 0 &&
              strcmp(c->cl->composing_peer, dave_jid) == 0;
    pthread_mutex_unlock(&c->cl->mu);
    return yes;
}

/* XEP-0085 both ways: our composing/active reach it, its composing/paused
 * reach on_composing. */
static void test_slix_chat_states_both_ways(void **st)
{
    (void)st;
    client_t *a = client_new("alice", "c4");
    start(a);
    wait_online(a);
    peer_t *p = peer_start("dave", "c4", 0);
    assert_int_equal(courier_set_composing(a->c, dave_jid, 1), COURIER_OK);
    peer_wait(p, 10000, "state composing");
    assert_int_equal(courier_set_composing(a->c, dave_jid, 0), COURIER_OK);
    peer_wait(p, 10000, "state active");
    peer_cmd(p, "state composing");
    composing_t on = { a, 1 };
    if (!wait_for(saw_composing, &on, 10000))
        fail_msg("its composing did not reach on_composing");
    peer_cmd(p, "state paused");
    composing_t off = { a, 0 };
    if (!wait_for(saw_composing, &off, 10000))
        fail_msg("its paused did not reach on_composing(0)");
    assert_int_equal(peer_quit(p), 0);
    client_free(a);
}

/* It wrote to us asking for 0184 and 0333 only: what we send back about
 * its message -- delivered, displayed, composing a reply to it -- comes in
 * those forms (and XEP-0085), never as XEP-0022 events it did not ask for
 * ("it would be inappropriate to respond or generate events when not
 * requested"). The peer counts an unasked XEP-0022 event as a violation. */
static void test_slix_gets_no_xep0022_it_did_not_ask_for(void **st)
{
    (void)st;
    client_t *a = client_new("alice", "c5");
    start(a);
    wait_online(a);
    peer_t *p = peer_start("dave", "c5", 0);
    char (*ids)[COURIER_ID_MAX] = new_ids(1);
    snprintf(ids[0], COURIER_ID_MAX, "%s-hi", p->prefix);
    peer_cmd(p, "send %s receipt,markable hi alice", ids[0]);
    expect_received_once(a, ids, 1);
    assert_int_equal(courier_mark_displayed(a->c, dave_jid, ids[0]),
                     COURIER_OK);
    peer_cmd(p, "expect marker displayed %s 1 10", ids[0]);
    peer_wait(p, 12000, "ok marker displayed %s", ids[0]);
    assert_int_equal(courier_set_composing(a->c, dave_jid, 1), COURIER_OK);
    peer_wait(p, 10000, "state composing");
    assert_int_equal(courier_set_composing(a->c, dave_jid, 0), COURIER_OK);
    peer_wait(p, 10000, "state active");
    usleep(300000 * scale());
    assert_int_equal(peer_count(p, "x22 "), 0);
    assert_int_equal(peer_quit(p), 0);
    free_ids(ids);
    client_free(a);
}

/* ---- (d) peers that ask for nothing ------------------------------------ */

/* slixmpp: the same plain message twice (same id): shown once, and nothing
 * comes back that it did not ask for. */
static void test_plain_slix_message_twice_shown_once(void **st)
{
    (void)st;
    client_t *a = client_new("alice", "d1");
    start(a);
    wait_online(a);
    peer_t *p = peer_start("dave", "d1", 0);
    char (*ids)[COURIER_ID_MAX] = new_ids(1);
    snprintf(ids[0], COURIER_ID_MAX, "%s-plain", p->prefix);
    peer_cmd(p, "send %s none plain and simple", ids[0]);
    peer_cmd(p, "send %s none plain and simple", ids[0]);
    expect_received_once(a, ids, 1);
    usleep(1000000 * scale()); /* room for an unasked receipt to arrive */
    assert_int_equal(peer_count(p, "receipt %s", ids[0]), 0);
    assert_int_equal(peer_count(p, "marker "), 0);
    assert_int_equal(peer_count(p, "x22 %s", ids[0]), 0);
    assert_int_equal(peer_quit(p), 0);
    free_ids(ids);
    client_free(a);
}

/* A raw libstrophe client: a chat and a type-less message, each sent twice
 * in one session and once more in another: each shown once. */
static void test_plain_raw_messages_resent_shown_once(void **st)
{
    (void)st;
    client_t *a = client_new("alice", "d2");
    start(a);
    wait_online(a);
    char (*ids)[COURIER_ID_MAX] = new_ids(2);
    unique(ids[0], COURIER_ID_MAX, "raw-chat");
    unique(ids[1], COURIER_ID_MAX, "raw-normal");
    char chat[512], normal[512];
    snprintf(chat, sizeof(chat), "<message to='%s' type='chat' id='%s'>"
             "<body>plain chat</body></message>", alice_jid, ids[0]);
    snprintf(normal, sizeof(normal), "<message to='%s' id='%s'>"
             "<body>plain, no type</body></message>", alice_jid, ids[1]);
    const char *twice[] = { chat, chat, normal, normal, NULL };
    raw_send("carol", twice);
    const char *again[] = { chat, normal, NULL };
    raw_send("carol", again);
    expect_received_once(a, ids, 2);
    assert_int_equal(body_count(a, "plain", carol_jid), 2);
    free_ids(ids);
    client_free(a);
}

int main(int argc, char **argv)
{
    (void)argc;
    self_path = argv[0];
    signal(SIGPIPE, SIG_IGN); /* a dead peer's stdin */
    if (getenv("COURIER_TEST_FILTER")) /* e.g. "*slix*" */
        cmocka_set_test_filter(getenv("COURIER_TEST_FILTER"));
    fprintf(stderr, "interop against %s\n",
            on_ejabberd() ? "ejabberd" : "prosody");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ejabberd_offline_event_then_delivered, teardown),
        cmocka_unit_test_teardown(test_ejabberd_api_push_reaches_online_app_once, teardown),
        cmocka_unit_test_teardown(test_ejabberd_api_push_to_offline_app_once, teardown),
        cmocka_unit_test_teardown(
            test_ejabberd_ping_kills_silent_session_unacked_go_offline,
            teardown),
        cmocka_unit_test_teardown(test_slix_receipts_and_markers_drive_states, teardown),
        cmocka_unit_test_teardown(test_slix_auto_client_burst_delivered_then_displayed, teardown),
        cmocka_unit_test_teardown(test_slix_gets_correct_receipts_and_markers, teardown),
        cmocka_unit_test_teardown(test_slix_chat_states_both_ways, teardown),
        cmocka_unit_test_teardown(test_slix_gets_no_xep0022_it_did_not_ask_for, teardown),
        cmocka_unit_test_teardown(test_plain_slix_message_twice_shown_once, teardown),
        cmocka_unit_test_teardown(test_plain_raw_messages_resent_shown_once, teardown),
    };
    return cmocka_run_group_tests(tests, setup_names, NULL);
}
