/* SPDX-License-Identifier: MIT */
/*
 * Chaos: alice and bob write to each other (text, voice, image mixed)
 * through fault relays of our own in front of a real Prosody, while a
 * chaos thread cuts connections, blackholes them (silent dead links) and
 * delays them (0.2-3 s latency spikes) at random moments, alice's process is killed with SIGKILL at random
 * points and restarted on its store, 10 % of the delivered/displayed
 * events are lost on the way, and the server itself is restarted once.
 * At the end every message alice's and bob's stores accepted must have
 * reached the other app exactly once and be DELIVERED or DISPLAYED at its
 * sender.
 *
 * alice runs in a child process (this program again, `--alice-child`),
 * which reports on its stdout what the app saw: "S id" after a send
 * returned OK, "G id" in on_message, "L" on each session, "X" for each
 * event the fault hook dropped, "T a b c" its resend counters, "D" when it
 * wrote its share. After the faults, alice is opened in this process on
 * the same store for the rest of the conversation.
 *
 * Run by tests/integration/prosody.sh. CHAOS_N messages each way (default
 * 1000), CHAOS_SEED for the random choices, CHAOS_KILLS=0 and
 * CHAOS_DROP_EVENTS=0 (percent, default 10) to leave those faults out.
 * Prints its figures and a closing "N passed, N failed" line.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "courier.h"
#include "session.h" /* session_fault_drop_receipt */
#include "../integration/relay.h"
#include "../integration/spawn.h"

#define MAXN 20000
#define MAXSENT (MAXN + 1000) /* + nudges + sends unreported at a kill */
#define SLOTS 65536 /* open addressing, power of two > 2 * MAXSENT */

typedef struct {
    char id[COURIER_ID_MAX];
    int count;
} slot_t;

typedef struct {
    const char *name;
    char peer[128];
    char db[256];
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
static int drop_pct = 10;
static atomic_int chaos_stop;
static atomic_int cuts, holes, delays, restarts, kills, dropped;
static atomic_uint drop_draws;

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

/* The fault hook: drop_pct % of the events, a deterministic draw per
 * event from the seed. */
static int drop_receipt(const char *peer, const char *id, courier_state_t st)
{
    (void)peer;
    (void)id;
    (void)st;
    uint64_t x = (uint64_t)seed * 0x9E3779B97F4A7C15ULL +
                 atomic_fetch_add(&drop_draws, 1) + 1;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    if ((int)(x % 100) >= drop_pct)
        return 0;
    atomic_fetch_add(&dropped, 1);
    return 1;
}

static void fill_config(courier_config_t *cfg, const char *jid, const char *pw,
                        const char *db, unsigned short port)
{
    courier_config_init(cfg);
    cfg->jid = jid;
    cfg->password = pw;
    cfg->host = "127.0.0.1";
    cfg->port = port;
    cfg->ca_file = env("COURIER_TEST_CA");
    cfg->db_path = db;
    cfg->ping_interval_ms = 500; /* blackholes are found in ~2 s */
    cfg->ping_timeout_ms = 1500;
    cfg->ack_timeout_ms = 3000;
    cfg->resend_grace_ms = 2000;
    cfg->reconnect_min_ms = 100;
    cfg->reconnect_max_ms = 1000;
}

/* One message of the mix: 80 % text, 10 % voice, 10 % image. `tag` keeps
 * media ids unique across alice's restarts. */
static int send_one(courier_t *c, const char *name, const char *peer,
                    unsigned *r, int i, const char *tag, char *id)
{
    char body[192], media[96];
    int kind = rand_r(r) % 10;
    if (kind < 8) {
        snprintf(body, sizeof(body), "%s #%d: %s", name, i,
                 i % 7 ? "hello" : "你好 👋");
        return courier_send_text(c, peer, body, id);
    }
    snprintf(media, sizeof(media), "%s-media-%u-%s-%d", name, seed, tag, i);
    snprintf(body, sizeof(body), "https://media.example/%s", media);
    int rc = courier_send_media(c, peer, kind == 8 ? COURIER_VOICE
                                                   : COURIER_IMAGE,
                                media, body);
    snprintf(id, COURIER_ID_MAX, "%s", media);
    return rc;
}

/* ---- alice's process ---------------------------------------------------- */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0 && n < (int)sizeof(line))
        (void)!write(1, line, (size_t)n); /* < PIPE_BUF: atomic */
}

static void child_on_message(void *ud, const courier_message_t *m)
{
    (void)ud;
    say("G %s\n", m->id);
}

static void child_on_link(void *ud, courier_link_t l)
{
    (void)ud;
    if (l == COURIER_LINK_ONLINE)
        say("L\n");
}

static int child_drop(const char *peer, const char *id, courier_state_t st)
{
    int d = drop_receipt(peer, id, st);
    if (d)
        say("X\n");
    return d;
}

static void child_report_stats(courier_t *c)
{
    courier_stats_t s;
    if (courier_get_stats(c, &s) == COURIER_OK)
        say("T %llu %llu %llu\n", (unsigned long long)s.resent_reconnect,
            (unsigned long long)s.resent_peer,
            (unsigned long long)s.resent_retry);
}

static int alice_child(int argc, char **argv)
{
    if (argc < 6)
        return 2;
    int start = atoi(argv[2]), n = atoi(argv[3]);
    unsigned short port = (unsigned short)atoi(argv[4]);
    const char *gen = argv[5];
    seed = (unsigned)strtoul(getenv("CHAOS_SEED_RUN"), NULL, 10);
    drop_pct = atoi(getenv("CHAOS_DROP_RUN"));
    /* a fresh draw sequence per generation */
    atomic_store(&drop_draws, (unsigned)atoi(gen) * 1000003u);
    if (drop_pct > 0)
        session_fault_drop_receipt = child_drop;
    char jid[128], peer[128], db[256];
    snprintf(jid, sizeof(jid), "alice@%s", env("COURIER_TEST_DOMAIN"));
    snprintf(peer, sizeof(peer), "bob@%s", env("COURIER_TEST_DOMAIN"));
    snprintf(db, sizeof(db), "%s/chaos-alice.db", env("COURIER_TEST_DIR"));
    courier_config_t cfg;
    fill_config(&cfg, jid, "pw-alice", db, port);
    courier_callbacks_t cb = { .on_message = child_on_message,
                               .on_link = child_on_link };
    courier_t *c = NULL;
    if (courier_open(&c, &cfg, &cb, NULL) != COURIER_OK ||
        courier_start(c) != COURIER_OK) {
        fprintf(stderr, "chaos: alice: %s\n", courier_last_error());
        return 2;
    }
    unsigned r = seed ^ (unsigned)start ^ (unsigned)atoi(gen) << 16;
    char id[COURIER_ID_MAX];
    for (int i = start; i < n; i++) {
        if (send_one(c, "alice", peer, &r, i, gen, id) != COURIER_OK) {
            fprintf(stderr, "chaos: alice: send: %s\n", courier_last_error());
            return 1;
        }
        say("S %s\n", id);
        if (i % 10 == 9) { /* spread the sends over the faults */
            child_report_stats(c);
            usleep((useconds_t)(rand_r(&r) % 100000));
        }
    }
    child_report_stats(c);
    say("D\n");
    /* Until the parent says "q" (or goes away): receive, count. */
    char cmd[8];
    for (;;) {
        ssize_t k = read(0, cmd, sizeof(cmd));
        if (k <= 0 || cmd[0] == 'q')
            break;
    }
    child_report_stats(c);
    courier_close(c);
    return 0;
}

/* ---- the parent's view of alice's process ------------------------------- */

typedef struct {
    side_t *s;
    pid_t pid;
    int to_child, from_child;
    pthread_t reader;
    int gen;
    atomic_int done;              /* "D" seen from the current child */
    /* resend counters: finished children + the current one's last report */
    unsigned long long base[3], cur[3];
    char last_got[COURIER_ID_MAX]; /* last "G" before a kill */
    char after_kill[COURIER_ID_MAX];
    int expect_first_after_kill;
    int crash_window;             /* handed again across a kill (documented) */
    int child_exit_bad;
} proc_t;

static proc_t alice_proc;
static const char *self_exe;
static int total_n;

static void got_message(side_t *s, const char *id)
{
    slot_t *x = slot(s->seen, id);
    if (x && x->count++ == 0)
        s->seen_distinct++;
    s->seen_total++;
}

static void *reader(void *arg)
{
    proc_t *p = arg;
    side_t *s = p->s;
    FILE *f = fdopen(p->from_child, "r");
    if (!f)
        return NULL;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        const char *arg1 = line[1] == ' ' ? line + 2 : "";
        pthread_mutex_lock(&s->mu);
        switch (line[0]) {
        case 'S':
            if (s->n_sent < MAXSENT)
                snprintf(s->sent[s->n_sent++], COURIER_ID_MAX, "%.*s",
                         COURIER_ID_MAX - 1, arg1);
            break;
        case 'G': {
            slot_t *x = slot(s->seen, arg1);
            /* courier.h: a process killed inside on_message gets that
             * message again at its next open: exactly the first message
             * after the kill, and the last one before it. */
            if (p->expect_first_after_kill && x && x->count > 0 &&
                strcmp(arg1, p->last_got) == 0) {
                p->crash_window++;
            } else {
                got_message(s, arg1);
            }
            p->expect_first_after_kill = 0;
            snprintf(p->last_got, sizeof(p->last_got), "%.*s",
                     (int)sizeof(p->last_got) - 1, arg1);
            break;
        }
        case 'L':
            atomic_fetch_add(&s->links_up, 1);
            break;
        case 'X':
            atomic_fetch_add(&dropped, 1);
            break;
        case 'T':
            sscanf(arg1, "%llu %llu %llu", &p->cur[0], &p->cur[1],
                   &p->cur[2]);
            break;
        case 'D':
            atomic_store(&p->done, 1);
            break;
        default:
            break;
        }
        pthread_mutex_unlock(&s->mu);
    }
    fclose(f);
    return NULL;
}

static void spawn_alice(proc_t *p)
{
    pthread_mutex_lock(&p->s->mu);
    int start = p->s->n_sent;
    pthread_mutex_unlock(&p->s->mu);
    char a_start[16], a_n[16], a_port[16], a_gen[16];
    snprintf(a_start, sizeof(a_start), "%d", start);
    snprintf(a_n, sizeof(a_n), "%d", total_n);
    snprintf(a_port, sizeof(a_port), "%u", relay_port(p->s->relay));
    snprintf(a_gen, sizeof(a_gen), "%d", p->gen);
    char *argv[] = { (char *)self_exe, "--alice-child", a_start, a_n, a_port,
                     a_gen, NULL };
    pid_t pid = spawn_piped(self_exe, argv, &p->to_child, &p->from_child);
    if (pid < 0)
        exit(2);
    p->pid = pid;
    atomic_store(&p->done, 0);
    memset(p->cur, 0, sizeof(p->cur));
    pthread_create(&p->reader, NULL, reader, p);
}

/* Reap the current child: its reader has read everything it wrote. */
static void reap_alice(proc_t *p, int killed)
{
    int st = 0;
    waitpid(p->pid, &st, 0);
    pthread_join(p->reader, NULL);
    close(p->to_child);
    if (!killed && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "chaos: alice's process ended badly (status %d)\n",
                st);
        p->child_exit_bad = 1;
    }
    for (int i = 0; i < 3; i++)
        p->base[i] += p->cur[i];
    memset(p->cur, 0, sizeof(p->cur));
    p->pid = 0;
}

/* SIGKILL at a random point, then again on the same store. */
static void kill_alice(proc_t *p)
{
    if (!p->pid || atomic_load(&p->done))
        return;
    kill(p->pid, SIGKILL);
    reap_alice(p, 1);
    pthread_mutex_lock(&p->s->mu);
    p->expect_first_after_kill = 1;
    pthread_mutex_unlock(&p->s->mu);
    atomic_fetch_add(&kills, 1);
    p->gen++;
    spawn_alice(p);
}

/* ---- bob, in this process ----------------------------------------------- */

static void on_message(void *ud, const courier_message_t *m)
{
    side_t *s = ud;
    pthread_mutex_lock(&s->mu);
    got_message(s, m->id);
    pthread_mutex_unlock(&s->mu);
}

static void on_link(void *ud, courier_link_t l)
{
    side_t *s = ud;
    if (l == COURIER_LINK_ONLINE)
        atomic_fetch_add(&s->links_up, 1);
}

static void init_side(side_t *s, const char *name, const char *peer)
{
    s->name = name;
    snprintf(s->peer, sizeof(s->peer), "%s@%s", peer,
             env("COURIER_TEST_DOMAIN"));
    snprintf(s->db, sizeof(s->db), "%s/chaos-%s.db", env("COURIER_TEST_DIR"),
             name);
    pthread_mutex_init(&s->mu, NULL);
    s->sent = calloc(MAXSENT, COURIER_ID_MAX);
    s->seen = calloc(SLOTS, sizeof(slot_t));
    s->relay = relay_start((unsigned short)atoi(env("COURIER_TEST_PORT")));
    if (!s->sent || !s->seen || !s->relay)
        exit(2);
}

static void open_side(side_t *s)
{
    char jid[128], pw[64];
    snprintf(jid, sizeof(jid), "%s@%s", s->name, env("COURIER_TEST_DOMAIN"));
    snprintf(pw, sizeof(pw), "pw-%s", s->name);
    courier_config_t cfg;
    fill_config(&cfg, jid, pw, s->db, relay_port(s->relay));
    courier_callbacks_t cb = { .on_message = on_message, .on_link = on_link };
    if (courier_open(&s->c, &cfg, &cb, s) != COURIER_OK ||
        courier_start(s->c) != COURIER_OK) {
        fprintf(stderr, "chaos: %s: %s\n", s->name, courier_last_error());
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
    unsigned r = seed ^ 0x5bd1e995u;
    for (int i = 0; i < w->n; i++) {
        char *id = s->sent[i];
        if (send_one(s->c, s->name, s->peer, &r, i, "0", id) != COURIER_OK) {
            fprintf(stderr, "chaos: send: %s\n", courier_last_error());
            exit(1);
        }
        pthread_mutex_lock(&s->mu);
        s->n_sent = i + 1;
        pthread_mutex_unlock(&s->mu);
        if (i % 10 == 9)
            usleep((useconds_t)(rand_r(&r) % 100000));
    }
    return NULL;
}

/* ---- faults ------------------------------------------------------------- */

/* Half-way through, the server itself is restarted once (prosody.sh
 * restarts it on SIGUSR1, same port and data). */
static void maybe_restart_server(side_t *bob)
{
    const char *harness = getenv("COURIER_TEST_HARNESS_PID");
    if (atomic_load(&restarts) || !harness)
        return;
    pthread_mutex_lock(&bob->mu);
    int sent = bob->n_sent;
    pthread_mutex_unlock(&bob->mu);
    if (sent >= total_n / 2 && kill((pid_t)atoi(harness), SIGUSR1) == 0)
        atomic_store(&restarts, 1);
}

static int kills_on = 1;

static void *chaos(void *arg)
{
    side_t **sides = arg;
    unsigned r = seed;
    int64_t next_kill = now_ms() + 1000 + rand_r(&r) % 2000;
    while (!atomic_load(&chaos_stop)) {
        maybe_restart_server(sides[1]);
        usleep(200000 + (useconds_t)(rand_r(&r) % 600000));
        if (kills_on && now_ms() >= next_kill) {
            kill_alice(&alice_proc);
            next_kill = now_ms() + 1000 + rand_r(&r) % 2500;
            continue;
        }
        side_t *s = sides[rand_r(&r) % 2];
        switch (rand_r(&r) % 4) {
        case 0:
            relay_cut(s->relay);
            atomic_fetch_add(&cuts, 1);
            break;
        case 1:
            relay_blackhole(s->relay); /* the watchdog has to notice */
            atomic_fetch_add(&holes, 1);
            break;
        case 2:
            /* 0.2-3 s: shorter ones are late acks (ack timer 3 s), longer
             * ones trip the watchdog while the data is still on its way */
            relay_delay(s->relay, 200 + (int)(rand_r(&r) % 2800));
            atomic_fetch_add(&delays, 1);
            break;
        default:
            break;
        }
    }
    return NULL;
}

/* ---- checks ------------------------------------------------------------- */

/* What alice's store holds (the truth: every send that returned OK is in
 * it, including one whose "S" line a kill cut off). Adds those to
 * alice's list; returns how many reported sends the store lacks. */
static int adopt_store(side_t *s, int *unreported)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    slot_t *mine = calloc(SLOTS, sizeof(slot_t));
    int lost = -1;
    *unreported = 0;
    if (!mine || sqlite3_open_v2(s->db, &db, SQLITE_OPEN_READONLY, NULL) ||
        sqlite3_prepare_v2(db, "SELECT id FROM outbox ORDER BY seq", -1, &st,
                           NULL)) {
        fprintf(stderr, "chaos: reading %s: %s\n", s->db,
                db ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    for (int i = 0; i < s->n_sent; i++)
        slot(mine, s->sent[i])->count = 1;
    int in_store = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        slot_t *x = slot(mine, id);
        if (x->count == 1) {
            x->count = 2;
            in_store++;
        } else if (x->count == 0 && s->n_sent < MAXSENT) {
            x->count = 2;
            snprintf(s->sent[s->n_sent++], COURIER_ID_MAX, "%s", id);
            (*unreported)++;
        }
    }
    lost = s->n_sent - *unreported - in_store;
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(mine);
    return lost;
}

/* Counts one side's messages by state (store truth) and resends. */
static int settled(side_t *s, int *by_state, long *resends)
{
    int ok = 0;
    for (int i = 0; i < s->n_sent; i++) {
        courier_info_t info;
        if (courier_get_info(s->c, s->sent[i], &info) != COURIER_OK)
            continue;
        if (by_state) {
            /* what kept a message from settling: shown for the first few */
            if (info.state == COURIER_FAILED && by_state[COURIER_FAILED] < 5)
                printf("         %s %s FAILED%s: %s, %u attempts\n",
                       s->name, s->sent[i],
                       info.permanent ? " (permanent)" : "", info.reason,
                       info.attempts);
            by_state[info.state]++;
        }
        if (resends && info.attempts > 1)
            *resends += info.attempts - 1;
        ok += info.state == COURIER_DELIVERED ||
              info.state == COURIER_DISPLAYED;
    }
    return ok;
}

/* Every message the sender's store accepted reached the peer's app. */
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

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && strcmp(argv[1], "--alice-child") == 0)
        return alice_child(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    self_exe = "/proc/self/exe";
    int n = getenv("CHAOS_N") ? atoi(getenv("CHAOS_N")) : 1000;
    if (n < 1 || n > MAXN)
        n = 1000;
    seed = getenv("CHAOS_SEED") ? (unsigned)atoi(getenv("CHAOS_SEED"))
                                : (unsigned)time(NULL);
    if (getenv("CHAOS_DROP_EVENTS"))
        drop_pct = atoi(getenv("CHAOS_DROP_EVENTS"));
    if (drop_pct < 0 || drop_pct > 100)
        drop_pct = 10;
    kills_on = !getenv("CHAOS_KILLS") || atoi(getenv("CHAOS_KILLS")) != 0;
    char buf[32];
    snprintf(buf, sizeof(buf), "%u", seed);
    setenv("CHAOS_SEED_RUN", buf, 1);
    snprintf(buf, sizeof(buf), "%d", drop_pct);
    setenv("CHAOS_DROP_RUN", buf, 1);
    printf("chaos: %d messages each way, seed %u, %d %% of events dropped, "
           "alice killed %s\n", n, seed, drop_pct,
           kills_on ? "at random" : "never");
    total_n = n;
    if (drop_pct > 0)
        session_fault_drop_receipt = drop_receipt;
    static side_t alice, bob;
    init_side(&alice, "alice", "bob");
    init_side(&bob, "bob", "alice");
    side_t *sides[2] = { &alice, &bob };
    alice_proc.s = &alice;
    open_side(&bob);
    spawn_alice(&alice_proc);

    int64_t t0 = now_ms();
    pthread_t ct, wb;
    writer_t b = { &bob, n };
    pthread_create(&ct, NULL, chaos, sides);
    pthread_create(&wb, NULL, writer, &b);
    pthread_join(wb, NULL);
    while (!atomic_load(&alice_proc.done)) {
        if (now_ms() - t0 > 600000) {
            fprintf(stderr, "chaos: alice's process never finished its "
                    "share\n");
            return 1;
        }
        usleep(50000);
    }
    int64_t t_sent = now_ms();
    usleep(3000000); /* chaos goes on a little after the last send */
    atomic_store(&chaos_stop, 1);
    pthread_join(ct, NULL);
    int64_t t_calm = now_ms();

    /* alice's process ends cleanly; alice goes on in this process, on the
     * same store, with every send it accepted. */
    (void)!write(alice_proc.to_child, "q", 1);
    reap_alice(&alice_proc, 0);
    int unreported = 0;
    int lost_sends = adopt_store(&alice, &unreported);
    open_side(&alice);

    /* behaviour.md §2 peer activity: a message the server acknowledged and then
     * lost (a restart, a vanished session, an event lost on the way) is
     * repaired when the peer writes again, so the two keep chatting until
     * everything settled: every few seconds each side writes once. */
    int converged = 0, nudges = 0;
    int64_t last_nudge = now_ms();
    while (now_ms() - t_calm < 180000) {
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
                pthread_mutex_lock(&s->mu);
                int k = s->n_sent;
                pthread_mutex_unlock(&s->mu);
                if (k < MAXSENT &&
                    courier_send_text(s->c, s->peer, "still there?",
                                      s->sent[k]) == COURIER_OK) {
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
        courier_stats_t st;
        courier_get_stats(s->c, &st);
        unsigned long long by_cause[3] = { st.resent_reconnect,
                                           st.resent_peer, st.resent_retry };
        if (s == &alice)
            for (int j = 0; j < 3; j++)
                by_cause[j] += alice_proc.base[j];
        printf("%-8s %8d %8d %8d %8ld %8d %8d\n", s->name, s->n_sent, got,
               dups, resends, atomic_load(&s->links_up), ok);
        printf("         states: QUEUED %d SENT %d OFFLINE %d DELIVERED %d "
               "DISPLAYED %d FAILED %d\n", by_state[0], by_state[1],
               by_state[2], by_state[3], by_state[4], by_state[5]);
        printf("         resends by cause: %llu on reconnect (phase 2, "
               "earliest delivery), %llu on peer activity (phase 1, "
               "eventual delivery)%s\n", by_cause[0], by_cause[1],
               s == &alice && kills_on ? "; a killed process's last "
               "half-second is not counted" : "");
        if (got == s->n_sent && dups == 0 && ok == s->n_sent)
            passed++;
        else
            failed++;
    }
    printf("alice's process: %d kills, %d sends accepted but unreported at "
           "a kill (found in the store), %d reported sends missing from the "
           "store, %d handed again across a kill inside on_message "
           "(courier.h's one crash window)\n", atomic_load(&kills),
           unreported, lost_sends, alice_proc.crash_window);
    if (lost_sends != 0 || alice_proc.child_exit_bad) {
        passed = passed > 0 ? passed - 1 : 0;
        failed++;
    }
    printf("events dropped on the way: %d\n", atomic_load(&dropped));
    printf("conversation after the faults: %d messages\n", nudges);
    printf("faults: %d cuts, %d blackholes, %d delays, %d server restart, "
           "%d kills; sending took %.1f s, converged %.1f s after the "
           "faults stopped%s\n", atomic_load(&cuts), atomic_load(&holes),
           atomic_load(&delays), atomic_load(&restarts), atomic_load(&kills),
           (double)(t_sent - t0) / 1000.0, (double)(t_done - t_calm) / 1000.0,
           converged ? "" : " (DID NOT CONVERGE)");
    courier_close(alice.c);
    courier_close(bob.c);
    relay_stop(alice.relay);
    relay_stop(bob.relay);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
