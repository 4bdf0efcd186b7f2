/* SPDX-License-Identifier: MIT */
/*
 * Chaos: alice and bob write to each other (text, voice, image mixed)
 * through fault relays of our own in front of a real Prosody, while a
 * chaos thread cuts connections and blackholes them (silent dead links)
 * at random moments. At the end every accepted message must have reached
 * the other app exactly once and be DELIVERED or DISPLAYED at its sender.
 *
 * Run by tests/integration/prosody.sh. CHAOS_N messages each way (default
 * 1000), CHAOS_SEED for the random choices. Prints its figures and a
 * closing "N passed, N failed" line.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "courier.h"
#include "../integration/relay.h"

#define MAXN 20000
#define SLOTS 65536 /* open addressing, power of two > 2 * MAXN */

typedef struct {
    char id[COURIER_ID_MAX];
    int count;
} slot_t;

typedef struct {
    const char *name;
    char peer[128];
    courier_t *c;
    relay_t *relay;
    pthread_mutex_t mu;
    char (*sent)[COURIER_ID_MAX];
    int n_sent;
    slot_t *seen; /* messages handed to this app */
    int seen_distinct, seen_total;
    atomic_int links_up;
} side_t;

static unsigned seed;
static atomic_int chaos_stop;
static atomic_int cuts, holes, restarts;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *env(const char *k)
{
    const char *v = getenv(k);
    if (!v) {
        fprintf(stderr, "chaos: %s not set (run through prosody.sh)\n", k);
        exit(2);
    }
    return v;
}

static slot_t *slot(slot_t *tab, const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    for (size_t i = 0; i < SLOTS; i++) {
        slot_t *s = &tab[(h + i) & (SLOTS - 1)];
        if (!s->id[0] || strcmp(s->id, id) == 0) {
            if (!s->id[0])
                snprintf(s->id, sizeof(s->id), "%s", id);
            return s;
        }
    }
    return NULL;
}

static void on_message(void *ud, const courier_message_t *m)
{
    side_t *s = ud;
    pthread_mutex_lock(&s->mu);
    slot_t *x = slot(s->seen, m->id);
    if (x && x->count++ == 0)
        s->seen_distinct++;
    s->seen_total++;
    pthread_mutex_unlock(&s->mu);
}

static void on_link(void *ud, courier_link_t l)
{
    side_t *s = ud;
    if (l == COURIER_LINK_ONLINE)
        atomic_fetch_add(&s->links_up, 1);
}

static void open_side(side_t *s, const char *name, const char *peer)
{
    char jid[128], pw[64], db[256];
    s->name = name;
    snprintf(s->peer, sizeof(s->peer), "%s@%s", peer,
             env("COURIER_TEST_DOMAIN"));
    snprintf(jid, sizeof(jid), "%s@%s", name, env("COURIER_TEST_DOMAIN"));
    snprintf(pw, sizeof(pw), "pw-%s", name);
    snprintf(db, sizeof(db), "%s/chaos-%s.db", env("COURIER_TEST_DIR"), name);
    pthread_mutex_init(&s->mu, NULL);
    s->sent = calloc(MAXN, COURIER_ID_MAX);
    s->seen = calloc(SLOTS, sizeof(slot_t));
    s->relay = relay_start((unsigned short)atoi(env("COURIER_TEST_PORT")));
    if (!s->sent || !s->seen || !s->relay)
        exit(2);
    courier_config_t cfg;
    courier_config_init(&cfg);
    cfg.jid = jid;
    cfg.password = pw;
    cfg.host = "127.0.0.1";
    cfg.port = relay_port(s->relay);
    cfg.ca_file = env("COURIER_TEST_CA");
    cfg.db_path = db;
    cfg.ping_interval_ms = 500; /* blackholes are found in ~2 s */
    cfg.ping_timeout_ms = 1500;
    cfg.ack_timeout_ms = 3000;
    cfg.resend_grace_ms = 2000;
    cfg.reconnect_min_ms = 100;
    cfg.reconnect_max_ms = 1000;
    courier_callbacks_t cb = { .on_message = on_message, .on_link = on_link };
    if (courier_open(&s->c, &cfg, &cb, s) != COURIER_OK ||
        courier_start(s->c) != COURIER_OK) {
        fprintf(stderr, "chaos: %s: %s\n", name, courier_last_error());
        exit(2);
    }
}

typedef struct {
    side_t *s;
    int n;
} writer_t;

/* Writes n messages in small bursts: text, voice and image mixed. */
static void *writer(void *arg)
{
    writer_t *w = arg;
    side_t *s = w->s;
    unsigned r = seed ^ (unsigned)(uintptr_t)s;
    char body[192], media[64];
    for (int i = 0; i < w->n; i++) {
        int kind = rand_r(&r) % 10;
        int rc;
        char *id = s->sent[i];
        if (kind < 8) {
            snprintf(body, sizeof(body), "%s #%d: %s", s->name, i,
                     i % 7 ? "hello" : "你好 👋");
            rc = courier_send_text(s->c, s->peer, body, id);
        } else {
            snprintf(media, sizeof(media), "%s-media-%u-%d", s->name, seed, i);
            snprintf(body, sizeof(body), "https://media.example/%s", media);
            rc = courier_send_media(s->c, s->peer, kind == 8 ? COURIER_VOICE
                                                             : COURIER_IMAGE,
                                    media, body);
            snprintf(id, COURIER_ID_MAX, "%s", media);
        }
        if (rc != COURIER_OK) {
            fprintf(stderr, "chaos: send: %s\n", courier_last_error());
            exit(1);
        }
        pthread_mutex_lock(&s->mu);
        s->n_sent = i + 1;
        pthread_mutex_unlock(&s->mu);
        if (i % 10 == 9) /* spread the sends over the faults */
            usleep((useconds_t)(rand_r(&r) % 100000));
    }
    return NULL;
}

/* Half-way through, the server itself is restarted once (prosody.sh
 * restarts it on SIGUSR1, same port and data). */
static void maybe_restart_server(side_t **sides, int n)
{
    const char *harness = getenv("COURIER_TEST_HARNESS_PID");
    if (atomic_load(&restarts) || !harness)
        return;
    pthread_mutex_lock(&sides[0]->mu);
    int sent = sides[0]->n_sent;
    pthread_mutex_unlock(&sides[0]->mu);
    if (sent >= n / 2 && kill((pid_t)atoi(harness), SIGUSR1) == 0)
        atomic_store(&restarts, 1);
}

static int total_n;

static void *chaos(void *arg)
{
    side_t **sides = arg;
    unsigned r = seed;
    while (!atomic_load(&chaos_stop)) {
        maybe_restart_server(sides, total_n);
        usleep(200000 + (useconds_t)(rand_r(&r) % 600000));
        side_t *s = sides[rand_r(&r) % 2];
        switch (rand_r(&r) % 3) {
        case 0:
            relay_cut(s->relay);
            atomic_fetch_add(&cuts, 1);
            break;
        case 1:
            relay_blackhole(s->relay); /* the watchdog has to notice */
            atomic_fetch_add(&holes, 1);
            break;
        default:
            break;
        }
    }
    return NULL;
}

/* Counts one side's messages by state (store truth) and resends. */
static int settled(side_t *s, int *by_state, long *resends)
{
    int ok = 0;
    for (int i = 0; i < s->n_sent; i++) {
        courier_info_t info;
        if (courier_get_info(s->c, s->sent[i], &info) != COURIER_OK)
            continue;
        if (by_state)
            by_state[info.state]++;
        if (resends && info.attempts > 1)
            *resends += info.attempts - 1;
        ok += info.state == COURIER_DELIVERED ||
              info.state == COURIER_DISPLAYED;
    }
    return ok;
}

/* Every message the sender was told is stored reached the peer's app. */
static int received_all(side_t *from, side_t *to)
{
    int got = 0;
    pthread_mutex_lock(&to->mu);
    for (int i = 0; i < from->n_sent; i++) {
        slot_t *x = slot(to->seen, from->sent[i]);
        got += x && x->count > 0;
    }
    pthread_mutex_unlock(&to->mu);
    return got;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    int n = getenv("CHAOS_N") ? atoi(getenv("CHAOS_N")) : 1000;
    if (n < 1 || n > MAXN)
        n = 1000;
    seed = getenv("CHAOS_SEED") ? (unsigned)atoi(getenv("CHAOS_SEED"))
                                : (unsigned)time(NULL);
    printf("chaos: %d messages each way, seed %u\n", n, seed);
    total_n = n;
    static side_t alice, bob;
    open_side(&alice, "alice", "bob");
    open_side(&bob, "bob", "alice");
    side_t *sides[2] = { &alice, &bob };

    int64_t t0 = now_ms();
    pthread_t ct, wa, wb;
    writer_t a = { &alice, n }, b = { &bob, n };
    pthread_create(&ct, NULL, chaos, sides);
    pthread_create(&wa, NULL, writer, &a);
    pthread_create(&wb, NULL, writer, &b);
    pthread_join(wa, NULL);
    pthread_join(wb, NULL);
    int64_t t_sent = now_ms();
    usleep(3000000); /* chaos goes on a little after the last send */
    atomic_store(&chaos_stop, 1);
    pthread_join(ct, NULL);
    int64_t t_calm = now_ms();

    /* SPEC §2 peer activity: a message the server acknowledged and then
     * lost (a restart, a vanished session) is repaired when the peer
     * writes again, so the two keep chatting until everything settled:
     * every few seconds each side that still waits writes once. */
    int converged = 0, nudges = 0;
    int64_t last_nudge = now_ms();
    while (now_ms() - t_calm < 120000) {
        if (settled(&alice, NULL, NULL) == alice.n_sent &&
            settled(&bob, NULL, NULL) == bob.n_sent &&
            received_all(&alice, &bob) == alice.n_sent &&
            received_all(&bob, &alice) == bob.n_sent) {
            converged = 1;
            break;
        }
        if (now_ms() - last_nudge >= 3000) {
            for (int i = 0; i < 2; i++) {
                side_t *s = sides[i];
                if (s->n_sent < MAXN &&
                    courier_send_text(s->c, s->peer, "still there?",
                                      s->sent[s->n_sent]) == COURIER_OK) {
                    pthread_mutex_lock(&s->mu);
                    s->n_sent++;
                    pthread_mutex_unlock(&s->mu);
                    nudges++;
                }
            }
            last_nudge = now_ms();
        }
        usleep(100000);
    }
    int64_t t_done = now_ms();
    usleep(500000); /* a late duplicate would show now */

    int failed = 0, passed = 0;
    printf("\n%-8s %8s %8s %8s %8s %8s %8s\n", "side", "accepted",
           "peer-got", "dups", "resends", "links", "settled");
    for (int i = 0; i < 2; i++) {
        side_t *s = sides[i], *o = sides[1 - i];
        int by_state[6] = { 0 };
        long resends = 0;
        int ok = settled(s, by_state, &resends);
        int got = received_all(s, o);
        pthread_mutex_lock(&o->mu);
        int dups = o->seen_total - o->seen_distinct;
        pthread_mutex_unlock(&o->mu);
        printf("%-8s %8d %8d %8d %8ld %8d %8d\n", s->name, s->n_sent, got,
               dups, resends, atomic_load(&s->links_up), ok);
        printf("         states: QUEUED %d SENT %d OFFLINE %d DELIVERED %d "
               "DISPLAYED %d FAILED %d\n", by_state[0], by_state[1],
               by_state[2], by_state[3], by_state[4], by_state[5]);
        if (got == s->n_sent && dups == 0 && ok == s->n_sent)
            passed++;
        else
            failed++;
    }
    printf("conversation after the faults: %d messages\n", nudges);
    printf("faults: %d cuts, %d blackholes, %d server restart; sending took %.1f s, converged "
           "%.1f s after the faults stopped%s\n", atomic_load(&cuts),
           atomic_load(&holes), atomic_load(&restarts), (double)(t_sent - t0) / 1000.0,
           (double)(t_done - t_calm) / 1000.0,
           converged ? "" : " (DID NOT CONVERGE)");
    courier_close(alice.c);
    courier_close(bob.c);
    relay_stop(alice.relay);
    relay_stop(bob.relay);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
