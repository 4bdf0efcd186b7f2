/* SPDX-License-Identifier: MIT */
/*
 * Exactly-once at the app's two seams (docs/behaviour.md §9), under kills.
 *
 * carol (the sender) and dave (the receiver) each run in a child process
 * (this program again, `--sender` / `--receiver`) with an "app database" of
 * their own beside the library's store: a separate SQLite file, as a chat
 * app keeps one. Neither app table has a unique constraint, so a double
 * write would show.
 *
 * carol's app chooses its ids: it commits its row (id, kind, body, meta)
 * first, then calls courier_send with that id. At every start it scans its
 * table and calls courier_send for every row again: COURIER_ESTATE means
 * the library already has it, OK means a kill fell between the row and the
 * send. dave runs with app_confirms = 1: each message handed to on_message
 * is written (inline in the callback or, in other runs of the process, by
 * an app thread the callback queues it to) in the app's own transaction,
 * only if (peer, id) is not in its table yet, and courier_confirm is called
 * after that commit; the row is then marked confirmed. A message handed
 * again after courier_confirm returned OK (and the app recorded that) goes
 * to a second table: a library bug. So does one handed twice in one run.
 *
 * Both processes kill themselves (SIGKILL) at random points, one in
 * ONCE_KILL_PM per mille per point (default 15):
 *   carol  s0: row committed, courier_send not called
 *          s1: courier_send returned
 *   dave   r0: on_message received it, no row written yet
 *          r1: row committed, courier_confirm not called
 *          r2: courier_confirm returned, the app has not marked it
 * and this process kills them from outside at random moments too, while
 * the relays in front of the real server cut, blackhole and delay their
 * links. A killed process is started again on its store and app database.
 * dave writes to carol every few seconds (peer activity repairs what a
 * killed session left with the server, behaviour.md §2). Once carol has
 * written all ONCE_N rows the faults stop and the run waits until every
 * row is settled (DELIVERED or DISPLAYED at carol) and confirmed in dave's
 * table.
 *
 * Checks, from the two app databases: every row of carol's is in dave's
 * (0 lost) exactly once (0 twice), with its body and meta; nothing is in
 * dave's that carol's app does not know (a send that was not written
 * first); 0 handed after confirm, 0 handed twice in one run, 0 left
 * unconfirmed; every row settled at carol.
 *
 * ONCE_BROKEN deliberately breaks an app, to show the check can fail:
 *   confirm-first  dave confirms before writing its row
 *   no-confirms    app_confirms = 0, dave's writes queued to a thread
 *   send-first     carol sends before writing its row
 *
 * Run by tests/integration/prosody.sh. ONCE_N messages (default 200;
 * make check-chaos-once runs 800), CHAOS_SEED for the random choices.
 * Prints its figures and a closing "N passed, N failed" line.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "courier.h"
#include "../integration/relay.h"
#include "../integration/spawn.h"

#define MAXN 20000

enum { BROKEN_NONE, BROKEN_CONFIRM_FIRST, BROKEN_NO_CONFIRMS,
       BROKEN_SEND_FIRST };

static unsigned seed;
static int broken = BROKEN_NONE;
static int kill_pm = 15;

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
        fprintf(stderr, "once: %s not set (run through prosody.sh)\n", k);
        exit(2);
    }
    return v;
}

static void read_env(void)
{
    const char *b = getenv("ONCE_BROKEN");
    if (b && strcmp(b, "confirm-first") == 0)
        broken = BROKEN_CONFIRM_FIRST;
    else if (b && strcmp(b, "no-confirms") == 0)
        broken = BROKEN_NO_CONFIRMS;
    else if (b && strcmp(b, "send-first") == 0)
        broken = BROKEN_SEND_FIRST;
    else if (b && *b) {
        fprintf(stderr, "once: unknown ONCE_BROKEN=%s\n", b);
        exit(2);
    }
    if (getenv("ONCE_KILL_PM"))
        kill_pm = atoi(getenv("ONCE_KILL_PM"));
    if (kill_pm < 0 || kill_pm > 500)
        kill_pm = 15;
}

/* A line to the parent; < PIPE_BUF, so atomic. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0 && n < (int)sizeof(line))
        (void)!write(1, line, (size_t)n);
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

static void app_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/once-%s-app.db", env("COURIER_TEST_DIR"), name);
}

static void die_sql(sqlite3 *db, const char *what)
{
    fprintf(stderr, "once: app db: %s: %s\n", what,
            db ? sqlite3_errmsg(db) : "cannot open");
    exit(1);
}

static void exec_sql(sqlite3 *db, const char *sql)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        die_sql(db, sql);
}

/* The app's own database: WAL, committed rows survive a SIGKILL. */
static sqlite3 *app_open(const char *path, const char *schema)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
                        SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK)
        die_sql(db, path);
    sqlite3_busy_timeout(db, 30000);
    exec_sql(db, "PRAGMA journal_mode=WAL");
    exec_sql(db, "PRAGMA synchronous=NORMAL");
    exec_sql(db, schema);
    return db;
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        die_sql(db, sql);
    return st;
}

/* A kill point: SIGKILL, as the OS ends an app, with a probability of
 * kill_pm per mille, unless the run is calm. */
static atomic_int calm;

static void kill_point(unsigned *r, const char *name)
{
    if (atomic_load(&calm) || kill_pm == 0)
        return;
    if ((int)(rand_r(r) % 1000) >= kill_pm)
        return;
    say("K %s\n", name);
    raise(SIGKILL);
}

/* ---- carol: the app writes its row, then sends with its own id ---------- */

static const char *SENDER_SCHEMA =
    "CREATE TABLE IF NOT EXISTS outgoing(n INTEGER, id TEXT, kind INTEGER,"
    " body TEXT, meta TEXT)";

typedef struct {
    int n;
    char id[COURIER_ID_MAX];
    courier_kind_t kind;
    char body[192], meta[64];
} row_t;

/* Row n of the conversation: 80 % text, 10 % voice, 10 % image, with
 * meta on the media ones. The same n always gives the same row. */
static void make_row(row_t *w, int n, int gen)
{
    unsigned r = seed * 2654435761u ^ (unsigned)n;
    int kind = rand_r(&r) % 10;
    w->n = n;
    if (broken == BROKEN_SEND_FIRST) /* an id made at send time */
        snprintf(w->id, sizeof(w->id), "c%u-%d-g%d", seed, n, gen);
    else
        snprintf(w->id, sizeof(w->id), "c%u-%d", seed, n);
    w->meta[0] = '\0';
    if (kind < 8) {
        w->kind = COURIER_TEXT;
        snprintf(w->body, sizeof(w->body), "carol #%d: %s", n,
                 n % 7 ? "hello" : "你好 👋");
    } else {
        w->kind = kind == 8 ? COURIER_VOICE : COURIER_IMAGE;
        snprintf(w->body, sizeof(w->body), "https://media.example/%s", w->id);
        if (kind == 8)
            snprintf(w->meta, sizeof(w->meta), "{\"sec\":%d}", 1 + n % 60);
        else
            snprintf(w->meta, sizeof(w->meta), "{\"w\":640,\"h\":%d}",
                     300 + n % 200);
    }
}

static int send_row(courier_t *c, const char *peer, const row_t *w)
{
    courier_outgoing_t m = { .to = peer, .kind = w->kind, .body = w->body,
                             .id = w->id,
                             .meta = w->meta[0] ? w->meta : NULL };
    char got[COURIER_ID_MAX];
    int rc = courier_send(c, &m, got);
    if (rc == COURIER_OK && strcmp(got, w->id) != 0) {
        fprintf(stderr, "once: carol: courier_send kept id %s as %s\n",
                w->id, got);
        exit(1);
    }
    return rc;
}

static void insert_row(sqlite3 *db, sqlite3_stmt *ins, const row_t *w)
{
    sqlite3_bind_int(ins, 1, w->n);
    sqlite3_bind_text(ins, 2, w->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(ins, 3, (int)w->kind);
    sqlite3_bind_text(ins, 4, w->body, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(ins, 5, w->meta, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(ins) != SQLITE_DONE) /* autocommit: its own commit */
        die_sql(db, "insert outgoing");
    sqlite3_reset(ins);
}

/* Rows DELIVERED or DISPLAYED at carol's library, of all rows. */
static void report_settled(courier_t *c, sqlite3 *db)
{
    sqlite3_stmt *st = prep(db, "SELECT id FROM outgoing");
    int rows = 0, ok = 0, unknown = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        courier_info_t info;
        rows++;
        int rc = courier_get_info(c, (const char *)sqlite3_column_text(st, 0),
                                  &info);
        if (rc == COURIER_ENOTFOUND)
            unknown++;
        else if (rc == COURIER_OK && (info.state == COURIER_DELIVERED ||
                                      info.state == COURIER_DISPLAYED))
            ok++;
    }
    sqlite3_finalize(st);
    say("P %d %d %d\n", ok, rows, unknown);
}

static int sender_child(int argc, char **argv)
{
    if (argc < 6)
        return 2;
    int n = atoi(argv[2]), gen = atoi(argv[5]);
    unsigned short port = (unsigned short)atoi(argv[3]);
    atomic_store(&calm, atoi(argv[4]));
    seed = (unsigned)strtoul(env("ONCE_SEED_RUN"), NULL, 10);
    read_env();
    char jid[128], peer[128], db[256], apath[256];
    snprintf(jid, sizeof(jid), "carol@%s", env("COURIER_TEST_DOMAIN"));
    snprintf(peer, sizeof(peer), "dave@%s", env("COURIER_TEST_DOMAIN"));
    snprintf(db, sizeof(db), "%s/once-carol.db", env("COURIER_TEST_DIR"));
    app_path(apath, sizeof(apath), "carol");
    courier_config_t cfg;
    fill_config(&cfg, jid, "pw-carol", db, port);
    courier_t *c = NULL;
    if (courier_open(&c, &cfg, NULL, NULL) != COURIER_OK ||
        courier_start(c) != COURIER_OK) {
        fprintf(stderr, "once: carol: %s\n", courier_last_error());
        return 2;
    }
    sqlite3 *app = app_open(apath, SENDER_SCHEMA);
    unsigned r = seed ^ 0x9e3779b9u ^ (unsigned)gen << 12;

    /* At start: every row of the app's table is sent again. */
    sqlite3_stmt *st = prep(app, "SELECT n, id, kind, body, meta FROM"
                                 " outgoing ORDER BY rowid");
    int again_ok = 0, again_estate = 0, next = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        row_t w;
        w.n = sqlite3_column_int(st, 0);
        snprintf(w.id, sizeof(w.id), "%s", sqlite3_column_text(st, 1));
        w.kind = (courier_kind_t)sqlite3_column_int(st, 2);
        snprintf(w.body, sizeof(w.body), "%s", sqlite3_column_text(st, 3));
        snprintf(w.meta, sizeof(w.meta), "%s", sqlite3_column_text(st, 4));
        int rc = send_row(c, peer, &w);
        if (rc == COURIER_OK)
            again_ok++;
        else if (rc == COURIER_ESTATE)
            again_estate++;
        else {
            fprintf(stderr, "once: carol: send of %s again: %d %s\n", w.id,
                    rc, courier_last_error());
            return 1;
        }
        if (w.n >= next)
            next = w.n + 1;
    }
    sqlite3_finalize(st);
    say("R %d %d\n", again_ok, again_estate);

    sqlite3_stmt *ins = prep(app, "INSERT INTO outgoing(n, id, kind, body,"
                                  " meta) VALUES (?, ?, ?, ?, ?)");
    for (int i = next; i < n; i++) {
        row_t w;
        make_row(&w, i, gen);
        if (broken == BROKEN_SEND_FIRST) {
            if (send_row(c, peer, &w) != COURIER_OK) {
                fprintf(stderr, "once: carol: send %s: %s\n", w.id,
                        courier_last_error());
                return 1;
            }
            kill_point(&r, "s0");
            insert_row(app, ins, &w);
        } else {
            insert_row(app, ins, &w);
            kill_point(&r, "s0");
            int rc = send_row(c, peer, &w);
            if (rc != COURIER_OK) { /* a new id: ESTATE would be a bug */
                fprintf(stderr, "once: carol: send %s: %d %s\n", w.id, rc,
                        courier_last_error());
                return 1;
            }
        }
        kill_point(&r, "s1");
        if (i % 10 == 9) /* spread the sends over the faults */
            usleep((useconds_t)(rand_r(&r) % 100000));
    }
    sqlite3_finalize(ins);
    say("D\n");
    /* Until the parent says "q" (or goes away): report what settled. */
    for (;;) {
        struct pollfd p = { .fd = 0, .events = POLLIN };
        int k = poll(&p, 1, 1000);
        if (k > 0) {
            char cmd[8];
            ssize_t got = read(0, cmd, sizeof(cmd));
            if (got <= 0 || memchr(cmd, 'q', (size_t)got))
                break;
            if (memchr(cmd, 'c', (size_t)got))
                atomic_store(&calm, 1);
        }
        report_settled(c, app);
    }
    report_settled(c, app);
    courier_close(c);
    sqlite3_close(app);
    return 0;
}

/* ---- dave: app_confirms, the app's own table, confirm after commit ------ */

static const char *RECEIVER_SCHEMA =
    "CREATE TABLE IF NOT EXISTS msgs(peer TEXT, id TEXT, body TEXT,"
    " meta TEXT, confirmed INTEGER);"
    "CREATE INDEX IF NOT EXISTS msgs_key ON msgs(peer, id);"
    /* library bugs, as the app would see them */
    "CREATE TABLE IF NOT EXISTS after_confirm(peer TEXT, id TEXT, gen INT);"
    "CREATE TABLE IF NOT EXISTS twice_in_run(peer TEXT, id TEXT, gen INT);";

typedef struct in_msg {
    struct in_msg *next;
    char *peer, *id, *body, *meta;
    int again; /* handed before in this run */
} in_msg_t;

static struct {
    courier_t *c;
    sqlite3 *app;
    int gen, threaded;
    unsigned r;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    in_msg_t *head, **tail;
    int stop, busy;
    char (*seen)[2 * COURIER_ID_MAX]; /* handed in this run */
    size_t n_seen;
} rx = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

#define SEEN_SLOTS 65536

static int seen_before(const char *peer, const char *id)
{
    char key[2 * COURIER_ID_MAX];
    snprintf(key, sizeof(key), "%.*s/%.*s", COURIER_ID_MAX - 1, peer,
             COURIER_ID_MAX - 1, id);
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    for (size_t i = 0; i < SEEN_SLOTS; i++) {
        char *s = rx.seen[(h + i) & (SEEN_SLOTS - 1)];
        if (!s[0]) {
            if (rx.n_seen + 1 >= SEEN_SLOTS / 2) /* cannot happen at MAXN */
                return 0;
            snprintf(s, sizeof(rx.seen[0]), "%s", key);
            rx.n_seen++;
            return 0;
        }
        if (strcmp(s, key) == 0)
            return 1;
    }
    return 0;
}

static void bind3(sqlite3_stmt *st, const in_msg_t *m)
{
    sqlite3_bind_text(st, 1, m->peer, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, rx.gen);
}

/* The app's one transaction: its row if (peer, id) is new; a handing
 * after a recorded confirm, or twice in one run, noted as a bug. */
static void write_row(const in_msg_t *m)
{
    sqlite3 *db = rx.app;
    exec_sql(db, "BEGIN IMMEDIATE");
    sqlite3_stmt *q = prep(db, "SELECT max(confirmed) FROM msgs"
                               " WHERE peer = ? AND id = ?");
    sqlite3_bind_text(q, 1, m->peer, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, m->id, -1, SQLITE_STATIC);
    int have = 0, confirmed = 0;
    if (sqlite3_step(q) == SQLITE_ROW &&
        sqlite3_column_type(q, 0) != SQLITE_NULL) {
        have = 1;
        confirmed = sqlite3_column_int(q, 0);
    }
    sqlite3_finalize(q);
    if (!have) {
        sqlite3_stmt *ins = prep(db, "INSERT INTO msgs(peer, id, body, meta,"
                                     " confirmed) VALUES (?, ?, ?, ?, 0)");
        sqlite3_bind_text(ins, 1, m->peer, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 2, m->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 3, m->body, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 4, m->meta, -1, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE)
            die_sql(db, "insert msgs");
        sqlite3_finalize(ins);
    } else if (confirmed && broken == BROKEN_NONE) {
        sqlite3_stmt *b = prep(db, "INSERT INTO after_confirm VALUES"
                                   " (?, ?, ?)");
        bind3(b, m);
        if (sqlite3_step(b) != SQLITE_DONE)
            die_sql(db, "insert after_confirm");
        sqlite3_finalize(b);
    }
    if (m->again) {
        sqlite3_stmt *b = prep(db, "INSERT INTO twice_in_run VALUES"
                                   " (?, ?, ?)");
        bind3(b, m);
        if (sqlite3_step(b) != SQLITE_DONE)
            die_sql(db, "insert twice_in_run");
        sqlite3_finalize(b);
    }
    exec_sql(db, "COMMIT");
}

static void confirm(const in_msg_t *m)
{
    if (broken == BROKEN_NO_CONFIRMS)
        return;
    int rc = courier_confirm(rx.c, m->peer, m->id);
    if (rc != COURIER_OK) {
        fprintf(stderr, "once: dave: courier_confirm(%s, %s): %d %s\n",
                m->peer, m->id, rc, courier_last_error());
        exit(1);
    }
}

static void mark_confirmed(const in_msg_t *m)
{
    sqlite3_stmt *u = prep(rx.app, "UPDATE msgs SET confirmed = 1"
                                   " WHERE peer = ? AND id = ?");
    sqlite3_bind_text(u, 1, m->peer, -1, SQLITE_STATIC);
    sqlite3_bind_text(u, 2, m->id, -1, SQLITE_STATIC);
    if (sqlite3_step(u) != SQLITE_DONE)
        die_sql(rx.app, "update msgs");
    sqlite3_finalize(u);
}

static void handle(const in_msg_t *m)
{
    if (broken == BROKEN_CONFIRM_FIRST) {
        confirm(m);
        kill_point(&rx.r, "r1");
        write_row(m);
        mark_confirmed(m);
        return;
    }
    kill_point(&rx.r, "r0");
    write_row(m);
    kill_point(&rx.r, "r1");
    confirm(m);
    kill_point(&rx.r, "r2");
    mark_confirmed(m);
}

static void free_msg(in_msg_t *m)
{
    free(m->peer);
    free(m->id);
    free(m->body);
    free(m->meta);
    free(m);
}

static void rx_on_message(void *ud, const courier_message_t *msg)
{
    (void)ud;
    in_msg_t *m = calloc(1, sizeof(*m));
    if (!m || !(m->peer = strdup(msg->peer)) || !(m->id = strdup(msg->id)) ||
        !(m->body = strdup(msg->body ? msg->body : "")) ||
        !(m->meta = strdup(msg->meta ? msg->meta : ""))) {
        fprintf(stderr, "once: dave: out of memory\n");
        exit(1);
    }
    m->again = seen_before(m->peer, m->id);
    say("G\n");
    if (!rx.threaded) {
        handle(m);
        free_msg(m);
        return;
    }
    pthread_mutex_lock(&rx.mu);
    *rx.tail = m;
    rx.tail = &m->next;
    pthread_cond_signal(&rx.cv);
    pthread_mutex_unlock(&rx.mu);
}

/* The app's writer thread: what on_message queued, in order. */
static void *rx_worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&rx.mu);
    for (;;) {
        while (!rx.head && !rx.stop)
            pthread_cond_wait(&rx.cv, &rx.mu);
        if (!rx.head)
            break;
        in_msg_t *m = rx.head;
        rx.head = m->next;
        if (!rx.head)
            rx.tail = &rx.head;
        pthread_mutex_unlock(&rx.mu);
        handle(m);
        free_msg(m);
        pthread_mutex_lock(&rx.mu);
    }
    pthread_mutex_unlock(&rx.mu);
    return NULL;
}

static void rx_on_link(void *ud, courier_link_t l)
{
    (void)ud;
    if (l == COURIER_LINK_ONLINE)
        say("L\n");
}

static int receiver_child(int argc, char **argv)
{
    if (argc < 6)
        return 2;
    unsigned short port = (unsigned short)atoi(argv[3]);
    atomic_store(&calm, atoi(argv[4]));
    rx.gen = atoi(argv[5]);
    seed = (unsigned)strtoul(env("ONCE_SEED_RUN"), NULL, 10);
    read_env();
    rx.r = seed ^ 0x85ebca6bu ^ (unsigned)rx.gen << 12;
    /* Half the runs write in the callback, half on an app thread. */
    rx.threaded = broken == BROKEN_NO_CONFIRMS || rand_r(&rx.r) % 2;
    rx.tail = &rx.head;
    rx.seen = calloc(SEEN_SLOTS, sizeof(rx.seen[0]));
    char jid[128], peer[128], db[256], apath[256];
    snprintf(jid, sizeof(jid), "dave@%s", env("COURIER_TEST_DOMAIN"));
    snprintf(peer, sizeof(peer), "carol@%s", env("COURIER_TEST_DOMAIN"));
    snprintf(db, sizeof(db), "%s/once-dave.db", env("COURIER_TEST_DIR"));
    app_path(apath, sizeof(apath), "dave");
    if (!rx.seen)
        return 2;
    rx.app = app_open(apath, RECEIVER_SCHEMA);
    pthread_t worker;
    if (rx.threaded)
        pthread_create(&worker, NULL, rx_worker, NULL);
    say("M %d\n", rx.threaded);
    courier_config_t cfg;
    fill_config(&cfg, jid, "pw-dave", db, port);
    cfg.app_confirms = broken != BROKEN_NO_CONFIRMS;
    courier_callbacks_t cb = { .on_message = rx_on_message,
                               .on_link = rx_on_link };
    if (courier_open(&rx.c, &cfg, &cb, NULL) != COURIER_OK ||
        courier_start(rx.c) != COURIER_OK) {
        fprintf(stderr, "once: dave: %s\n", courier_last_error());
        return 2;
    }
    /* dave writes back every few seconds until told to quit. */
    int nudges = 0;
    for (;;) {
        struct pollfd p = { .fd = 0, .events = POLLIN };
        int k = poll(&p, 1, 3000);
        if (k > 0) {
            char cmd[8];
            ssize_t got = read(0, cmd, sizeof(cmd));
            if (got <= 0 || memchr(cmd, 'q', (size_t)got))
                break;
            if (memchr(cmd, 'c', (size_t)got))
                atomic_store(&calm, 1);
            continue;
        }
        char body[64], id[COURIER_ID_MAX];
        snprintf(body, sizeof(body), "still there? (%d.%d)", rx.gen, nudges++);
        if (courier_send_text(rx.c, peer, body, id) != COURIER_OK) {
            fprintf(stderr, "once: dave: send: %s\n", courier_last_error());
            return 1;
        }
    }
    /* The app thread finishes its queue before the handle goes. */
    if (rx.threaded) {
        pthread_mutex_lock(&rx.mu);
        rx.stop = 1;
        pthread_cond_signal(&rx.cv);
        pthread_mutex_unlock(&rx.mu);
        pthread_join(worker, NULL);
    }
    courier_close(rx.c);
    while (rx.head) {
        in_msg_t *m = rx.head;
        rx.head = m->next;
        free_msg(m);
    }
    sqlite3_close(rx.app);
    free(rx.seen);
    return 0;
}

/* ---- the parent: both processes, the faults, the checks ---------------- */

typedef struct {
    const char *role, *name;
    relay_t *relay;
    pid_t pid;
    int to_child, from_child;
    pthread_t reader;
    atomic_int eof;
    int gen;
    /* from the lines */
    pthread_mutex_t mu;
    int done, settled, rows, unknown, got_p;
    int again_ok, again_estate, handed, links, threaded_runs;
    int kp[3]; /* self-kills by point */
    int ext_kills, bad_exits;
} proc_t;

static proc_t snd = { .role = "--sender", .name = "carol",
                      .mu = PTHREAD_MUTEX_INITIALIZER };
static proc_t rcv = { .role = "--receiver", .name = "dave",
                      .mu = PTHREAD_MUTEX_INITIALIZER };
static const char *self_exe = "/proc/self/exe";
static int total_n, is_calm;

static void *reader(void *arg)
{
    proc_t *p = arg;
    FILE *f = fdopen(p->from_child, "r");
    if (!f) {
        atomic_store(&p->eof, 1);
        return NULL;
    }
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        int a = 0, b = 0, c = 0;
        pthread_mutex_lock(&p->mu);
        switch (line[0]) {
        case 'K': /* K s0 / K r1 ... */
            if (line[2] && line[3] >= '0' && line[3] <= '2')
                p->kp[line[3] - '0']++;
            break;
        case 'R':
            if (sscanf(line + 1, "%d %d", &a, &b) == 2) {
                p->again_ok += a;
                p->again_estate += b;
            }
            break;
        case 'D':
            p->done = 1;
            break;
        case 'P':
            if (sscanf(line + 1, "%d %d %d", &a, &b, &c) == 3) {
                p->settled = a;
                p->rows = b;
                p->unknown = c;
                p->got_p = 1;
            }
            break;
        case 'G':
            p->handed++;
            break;
        case 'L':
            p->links++;
            break;
        case 'M':
            p->threaded_runs += line[2] == '1';
            break;
        default:
            break;
        }
        pthread_mutex_unlock(&p->mu);
    }
    fclose(f);
    atomic_store(&p->eof, 1);
    return NULL;
}

static void spawn_proc(proc_t *p)
{
    char a_n[16], a_port[16], a_calm[8], a_gen[16];
    snprintf(a_n, sizeof(a_n), "%d", total_n);
    snprintf(a_port, sizeof(a_port), "%u", relay_port(p->relay));
    snprintf(a_calm, sizeof(a_calm), "%d", is_calm);
    snprintf(a_gen, sizeof(a_gen), "%d", p->gen);
    char *argv[] = { (char *)self_exe, (char *)p->role, a_n, a_port, a_calm,
                     a_gen, NULL };
    pid_t pid = spawn_piped(self_exe, argv, &p->to_child, &p->from_child);
    if (pid < 0) {
        perror("once: spawn");
        exit(2);
    }
    p->pid = pid;
    atomic_store(&p->eof, 0);
    pthread_mutex_lock(&p->mu);
    p->done = 0;
    p->got_p = 0;
    pthread_mutex_unlock(&p->mu);
    pthread_create(&p->reader, NULL, reader, p);
}

/* The child is gone (its stdout closed): reap it. */
static void reap_proc(proc_t *p)
{
    int st = 0;
    waitpid(p->pid, &st, 0);
    pthread_join(p->reader, NULL);
    close(p->to_child);
    p->pid = 0;
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
        return; /* a kill point or ours */
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "once: %s's process ended badly (status %d)\n",
                p->name, st);
        p->bad_exits++;
    }
}

/* Restarts a child that died (killed, at a kill point or by us). */
static void keep_alive(proc_t *p)
{
    if (p->pid && atomic_load(&p->eof)) {
        reap_proc(p);
        p->gen++;
        spawn_proc(p);
    }
}

static void tell(proc_t *p, const char *cmd)
{
    if (p->pid)
        (void)!write(p->to_child, cmd, strlen(cmd));
}

/* The two app databases and dave's library store (the truth of what the
 * library still owes the app: inbox.handed), read here while the children
 * write (WAL). */
static sqlite3 *open_all(void)
{
    char rpath[256], spath[256], lpath[256];
    app_path(rpath, sizeof(rpath), "dave");
    app_path(spath, sizeof(spath), "carol");
    snprintf(lpath, sizeof(lpath), "%s/once-dave.db", env("COURIER_TEST_DIR"));
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(rpath, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 30000);
    const char *paths[2] = { spath, lpath }, *names[2] = { "s", "lib" };
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *st = NULL;
        char sql[64];
        snprintf(sql, sizeof(sql), "ATTACH DATABASE ? AS %s", names[i]);
        int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(st, 1, paths[i], -1, SQLITE_STATIC);
            rc = sqlite3_step(st);
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) {
            sqlite3_close(db);
            return NULL;
        }
    }
    return db;
}

static long count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    long v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* carol's rows in dave's table, and those dave's library still owes the
 * app (stored, not confirmed); -1 while not readable. */
static void progress(long *in_app, long *owed)
{
    *in_app = *owed = -1;
    sqlite3 *db = open_all();
    if (!db)
        return;
    *in_app = count(db, "SELECT count(*) FROM s.outgoing o WHERE EXISTS"
                        " (SELECT 1 FROM msgs m WHERE m.id = o.id)");
    *owed = count(db, "SELECT count(*) FROM lib.inbox WHERE handed = 0");
    sqlite3_close(db);
}

static int64_t rnd_ms(unsigned *r, int lo, int span)
{
    return now_ms() + lo + (int64_t)(rand_r(r) % (unsigned)span);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && strcmp(argv[1], "--sender") == 0)
        return sender_child(argc, argv);
    if (argc > 1 && strcmp(argv[1], "--receiver") == 0)
        return receiver_child(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    read_env();
    int n = getenv("ONCE_N") ? atoi(getenv("ONCE_N")) : 200;
    if (n < 1 || n > MAXN)
        n = 200;
    total_n = n;
    seed = getenv("CHAOS_SEED") ? (unsigned)atoi(getenv("CHAOS_SEED"))
                                : (unsigned)time(NULL);
    char buf[32];
    snprintf(buf, sizeof(buf), "%u", seed);
    setenv("ONCE_SEED_RUN", buf, 1);
    const char *b = getenv("ONCE_BROKEN");
    printf("once: %d messages carol -> dave, seed %u, kill points %d per "
           "mille each%s%s\n", n, seed, kill_pm,
           b && *b ? ", DELIBERATELY BROKEN app: " : "", b && *b ? b : "");
    unsigned short port = (unsigned short)atoi(env("COURIER_TEST_PORT"));
    snd.relay = relay_start(port);
    rcv.relay = relay_start(port);
    if (!snd.relay || !rcv.relay)
        return 2;
    spawn_proc(&rcv);
    spawn_proc(&snd);

    /* Faults until carol has written every row, and 3 s more. */
    unsigned r = seed;
    int cuts = 0, holes = 0, delays = 0;
    int64_t t0 = now_ms(), t_done = 0;
    int64_t next_fault = rnd_ms(&r, 200, 800), next_kill = rnd_ms(&r, 1000,
                                                                  2500);
    for (;;) {
        keep_alive(&snd);
        keep_alive(&rcv);
        pthread_mutex_lock(&snd.mu);
        int done = snd.done;
        pthread_mutex_unlock(&snd.mu);
        if (!done)
            t_done = 0;
        else if (!t_done)
            t_done = now_ms();
        if (t_done && now_ms() - t_done > 3000)
            break;
        if (now_ms() - t0 > 900000) {
            fprintf(stderr, "once: carol never wrote all its rows\n");
            return 1;
        }
        if (now_ms() >= next_kill) {
            proc_t *p = rand_r(&r) % 2 ? &snd : &rcv;
            if (p->pid && !atomic_load(&p->eof)) {
                kill(p->pid, SIGKILL);
                p->ext_kills++;
            }
            next_kill = rnd_ms(&r, 1000, 2500);
        }
        if (now_ms() >= next_fault) {
            relay_t *rl = rand_r(&r) % 2 ? snd.relay : rcv.relay;
            switch (rand_r(&r) % 4) {
            case 0:
                relay_cut(rl);
                cuts++;
                break;
            case 1:
                relay_blackhole(rl);
                holes++;
                break;
            case 2:
                relay_delay(rl, 200 + (int)(rand_r(&r) % 2800));
                delays++;
                break;
            default:
                break;
            }
            next_fault = rnd_ms(&r, 200, 800);
        }
        usleep(20000);
    }
    int64_t t_sent = now_ms();

    /* Calm: no kill points, no faults; wait until every row is settled at
     * carol and confirmed in dave's table. */
    is_calm = 1;
    tell(&snd, "c");
    tell(&rcv, "c");
    int converged = 0;
    long in_app = 0, owed = 0;
    int settled = 0, rows = 0;
    /* Until done, or nothing moved for 90 s (a broken app never gets
     * there), or 300 s. */
    long last[3] = { -2, -2, -2 };
    int64_t t_moved = now_ms();
    while (now_ms() - t_sent < 300000 && now_ms() - t_moved < 90000) {
        keep_alive(&snd);
        keep_alive(&rcv);
        usleep(500000);
        progress(&in_app, &owed);
        pthread_mutex_lock(&snd.mu);
        int got_p = snd.got_p;
        settled = snd.settled;
        rows = snd.rows;
        pthread_mutex_unlock(&snd.mu);
        if (got_p && rows == n && settled == rows && in_app == rows &&
            owed == 0) {
            converged = 1;
            break;
        }
        if (in_app != last[0] || owed != last[1] || settled != last[2]) {
            last[0] = in_app;
            last[1] = owed;
            last[2] = settled;
            t_moved = now_ms();
        }
    }
    int64_t t_conv = now_ms();
    usleep(1000000); /* a late handing would show now */
    tell(&snd, "q");
    tell(&rcv, "q");
    for (int i = 0; i < 2; i++) {
        proc_t *p = i ? &rcv : &snd;
        int64_t t = now_ms();
        while (p->pid && !atomic_load(&p->eof) && now_ms() - t < 60000)
            usleep(20000);
        if (p->pid && !atomic_load(&p->eof)) {
            fprintf(stderr, "once: %s's process did not quit\n", p->name);
            kill(p->pid, SIGKILL);
            p->bad_exits++;
        }
        if (p->pid)
            reap_proc(p);
    }
    settled = snd.settled;
    rows = snd.rows;

    /* The checks, from the two app databases. */
    sqlite3 *db = open_all();
    if (!db) {
        fprintf(stderr, "once: cannot read the app databases\n");
        return 1;
    }
    long s_rows = count(db, "SELECT count(*) FROM s.outgoing");
    long s_twice = count(db, "SELECT count(*) FROM (SELECT id FROM"
                             " s.outgoing GROUP BY id HAVING count(*) > 1)");
    long r_rows = count(db, "SELECT count(*) FROM msgs");
    long lost = count(db, "SELECT count(*) FROM s.outgoing o WHERE NOT"
                          " EXISTS (SELECT 1 FROM msgs m WHERE m.id = o.id)");
    long twice = count(db, "SELECT count(*) FROM (SELECT peer, id FROM msgs"
                           " GROUP BY peer, id HAVING count(*) > 1)");
    long unknown = count(db, "SELECT count(*) FROM msgs m WHERE NOT EXISTS"
                             " (SELECT 1 FROM s.outgoing o"
                             " WHERE o.id = m.id)");
    long mangled = count(db, "SELECT count(*) FROM msgs m JOIN s.outgoing o"
                             " ON o.id = m.id WHERE m.body IS NOT o.body OR"
                             " m.meta IS NOT o.meta");
    /* rows the app never marked: a kill between courier_confirm and its
     * mark (r2, or one of ours); each leaves at most one */
    long unmarked = count(db, "SELECT count(*) FROM msgs m WHERE confirmed"
                              " = 0 AND EXISTS (SELECT 1 FROM lib.inbox i"
                              " WHERE i.peer = m.peer AND i.id = m.id AND"
                              " i.handed = 1)");
    /* stored by the library, never confirmed by the app */
    long unconfirmed = count(db, "SELECT count(*) FROM lib.inbox"
                                 " WHERE handed = 0");
    long after = count(db, "SELECT count(*) FROM after_confirm");
    long again_in_run = count(db, "SELECT count(*) FROM twice_in_run");
    sqlite3_close(db);

    int passed = 0, failed = 0;
    int snd_ok = s_rows == n && s_twice == 0 && settled == s_rows &&
                 rows == s_rows && snd.unknown == 0 && unknown == 0 &&
                 snd.bad_exits == 0;
    int rcv_ok = lost == 0 && twice == 0 && mangled == 0 &&
                 unconfirmed == 0 && after == 0 && again_in_run == 0 &&
                 unmarked <= rcv.kp[2] + rcv.ext_kills && converged &&
                 rcv.bad_exits == 0;
    printf("\ncarol (own ids, row first): %ld rows in its app db (%ld twice), "
           "%d settled (DELIVERED/DISPLAYED), %d unknown to its library; "
           "at restarts %d sent again with OK (a kill between row and "
           "send), %d ESTATE (already stored)\n", s_rows, s_twice, settled,
           snd.unknown, snd.again_ok, snd.again_estate);
    printf("carol's kills: %d between row and send (s0), %d after send (s1), "
           "%d from outside; %d generations\n", snd.kp[0], snd.kp[1],
           snd.ext_kills, snd.gen + 1);
    printf("dave (app_confirms, its own table): %ld rows; lost %ld, twice "
           "%ld, not carol's %ld, body/meta differ %ld, never confirmed %ld, "
           "handed after confirm %ld, handed twice in one run %ld; %ld "
           "confirmed but not marked by the app (a kill right after "
           "courier_confirm)\n", r_rows, lost, twice, unknown, mangled,
           unconfirmed, after, again_in_run, unmarked);
    printf("dave's kills: %d before its row (r0), %d between row and "
           "confirm (r1), %d between confirm and the app's mark (r2), %d "
           "from outside; %d generations (%d writing on an app thread); "
           "%d handings for %ld messages\n", rcv.kp[0], rcv.kp[1], rcv.kp[2],
           rcv.ext_kills, rcv.gen + 1, rcv.threaded_runs, rcv.handed, s_rows);
    if (broken == BROKEN_CONFIRM_FIRST)
        printf("(confirm-first: r1 falls between courier_confirm and the "
               "row)\n");
    printf("faults: %d cuts, %d blackholes, %d delays; sending took %.1f s, "
           "converged %.1f s after the faults stopped%s\n", cuts, holes,
           delays, (double)(t_sent - t0) / 1000.0,
           (double)(t_conv - t_sent) / 1000.0,
           converged ? "" : " (DID NOT CONVERGE)");
    printf("sender seam: %s\n", snd_ok ? "ok" : "FAILED");
    printf("receiver seam: %s\n", rcv_ok ? "ok" : "FAILED");
    passed = snd_ok + rcv_ok;
    failed = 2 - passed;
    relay_stop(snd.relay);
    relay_stop(rcv.relay);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
