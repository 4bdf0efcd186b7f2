/* SPDX-License-Identifier: MIT */
/*
 * courier-bot: an echo bot on libcourier.
 *
 *   courier-bot --jid JID --password PW [--host H] [--port P] [--ca FILE]
 *               [--db FILE] [--plaintext] [--read-delay-ms N] [--count N]
 *
 * Each incoming message is marked displayed after the delay, then answered
 * with "echo: <text>". One line per event on stdout:
 *
 *   recv <peer> <id> <text>      a message (once, ever: the library's word)
 *   read <id>                    courier_mark_displayed done
 *   replied <id> <reply-id>      the answer is stored and queued
 *   reply <reply-id> -> <STATE>  the answer's state changed (behaviour.md §1)
 *
 * With --count N it exits 0 once it has answered N messages and every
 * answer is DELIVERED or DISPLAYED, and 1 after 60 s without that.
 *
 * Callbacks must not block, so on_message only queues the work; the main
 * thread sleeps in short steps and does what is due.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "courier.h"

#define STEP_MS 50
#define CHECK_MS 250
#define COUNT_TIMEOUT_MS 60000
#define ECHO_PREFIX "echo: "

typedef struct job {
    struct job *next;
    int64_t due_ms;
    char peer[COURIER_JID_MAX];
    char id[COURIER_ID_MAX];
    char *text;
} job_t;

typedef struct {
    pthread_mutex_t mu;       /* the queue, counters and stdout */
    courier_t *c;
    unsigned read_delay_ms;
    long count;               /* 0 = run until a signal */
    long accepted;            /* messages queued for an answer */
    job_t *head, **tail;
} bot_t;

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* One-line form: escapes for what would break the line or drive a
 * terminal (C0, DEL, C1). */
static void put_escaped(const char *str)
{
    for (const unsigned char *s = (const unsigned char *)str; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", stdout);
        else if (*s == '\n')
            fputs("\\n", stdout);
        else if (*s == '\r')
            fputs("\\r", stdout);
        else if (*s == '\t')
            fputs("\\t", stdout);
        else if (*s < 0x20 || *s == 0x7f)
            printf("\\x%02x", *s);
        else if (*s == 0xc2 && s[1] >= 0x80 && s[1] < 0xa0)
            printf("\\u%04x", *++s);
        else
            putchar(*s);
    }
}

/* Print one event line; stdout is shared with the library's thread. */
static void say(bot_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(bot_t *b, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&b->mu);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&b->mu);
}

/* Report a failed call; courier_last_error() is read at once, here. */
static void call_failed(bot_t *b, const char *what, const char *id, int rc)
{
    say(b, "error %s %s: %s (%s)", what, id, courier_strerror(rc),
        courier_last_error());
}

/* ---- callbacks (library thread) ------------------------------------- */

static void on_message(void *ud, const courier_message_t *m)
{
    bot_t *b = ud;
    job_t *j = NULL;

    pthread_mutex_lock(&b->mu);
    int take = b->count == 0 || b->accepted < b->count;
    if (take) {
        j = calloc(1, sizeof(*j));
        if (j)
            j->text = strdup(m->body);
        if (j && j->text) {
            j->due_ms = now_ms() + b->read_delay_ms;
            snprintf(j->peer, sizeof(j->peer), "%s", m->peer);
            snprintf(j->id, sizeof(j->id), "%s", m->id);
            *b->tail = j;
            b->tail = &j->next;
            b->accepted++;
        } else {
            if (j)
                free(j);
            j = NULL;
        }
    }
    printf("recv %s %s ", m->peer, m->id);
    put_escaped(m->body);
    if (!take)
        fputs("   (not answered: --count reached)", stdout);
    else if (!j)
        fputs("   (not answered: out of memory)", stdout);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&b->mu);
}

static void on_state(void *ud, const char *id, const char *peer,
                     courier_state_t s)
{
    bot_t *b = ud;
    (void)peer;
    if (s == COURIER_FAILED) {
        courier_info_t info;
        if (courier_get_info(b->c, id, &info) == COURIER_OK) {
            say(b, "reply %s -> %s (%s)", id, courier_state_name(s),
                info.reason);
            return;
        }
    }
    say(b, "reply %s -> %s", id, courier_state_name(s));
}

static void on_link(void *ud, courier_link_t l)
{
    static const char *const names[] = { "offline", "connecting", "online" };
    bot_t *b = ud;
    say(b, "link %s", (unsigned)l < 3 ? names[l] : "?");
}

static void on_log(void *ud, int level, const char *line)
{
    (void)ud;
    if (level >= COURIER_LOG_WARN)
        fprintf(stderr, "courier-bot: %s\n", line);
}

/* ---- the work (main thread) ----------------------------------------- */

/* "echo: " + text, cut at a character boundary to fit the body limit. */
static char *echo_of(const char *text)
{
    size_t max = COURIER_BODY_MAX_DEFAULT - strlen(ECHO_PREFIX);
    size_t len = strlen(text);
    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)text[len] & 0xc0) == 0x80)
            len--;
    }
    char *out = malloc(strlen(ECHO_PREFIX) + len + 1);
    if (out)
        snprintf(out, strlen(ECHO_PREFIX) + len + 1, "%s%.*s", ECHO_PREFIX,
                 (int)len, text);
    return out;
}

/* Mark displayed, then answer. Returns 1 when an answer was stored. */
static int do_job(bot_t *b, const job_t *j, char reply_id[COURIER_ID_MAX])
{
    int rc = courier_mark_displayed(b->c, j->peer, j->id);
    if (rc == COURIER_OK)
        say(b, "read %s", j->id);
    else
        call_failed(b, "read", j->id, rc);

    char *body = echo_of(j->text);
    if (!body) {
        say(b, "error reply %s: out of memory", j->id);
        return 0;
    }
    rc = courier_send_text(b->c, j->peer, body, reply_id);
    free(body);
    if (rc != COURIER_OK) {
        call_failed(b, "reply", j->id, rc);
        return 0;
    }
    say(b, "replied %s %s", j->id, reply_id);
    return 1;
}

/* Take every job that is due; FIFO with one delay, so they lead. */
static job_t *take_due(bot_t *b, int64_t now)
{
    job_t *due = NULL, **end = &due;
    pthread_mutex_lock(&b->mu);
    while (b->head && b->head->due_ms <= now) {
        job_t *j = b->head;
        b->head = j->next;
        if (!b->head)
            b->tail = &b->head;
        j->next = NULL;
        *end = j;
        end = &j->next;
    }
    pthread_mutex_unlock(&b->mu);
    return due;
}

/* The store is the truth: ask it rather than race on_state. */
static int all_confirmed(bot_t *b, char (*ids)[COURIER_ID_MAX], long n)
{
    for (long i = 0; i < n; i++) {
        courier_state_t s;
        if (courier_get_state(b->c, ids[i], &s) != COURIER_OK)
            return 0;
        if (s != COURIER_DELIVERED && s != COURIER_DISPLAYED)
            return 0;
    }
    return 1;
}

/* ---- main ------------------------------------------------------------- */

static int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *s == '-' || *end || errno || v > max)
        return -1;
    *out = v;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: courier-bot --jid JID --password PW [--host H] "
            "[--port P]\n"
            "                   [--ca FILE] [--db FILE] [--plaintext]\n"
            "                   [--read-delay-ms N] [--count N]\n"
            "The password may come from $COURIER_PASSWORD instead; the db\n"
            "defaults to ./<local-part>.db.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "jid", required_argument, NULL, 'j' },
        { "password", required_argument, NULL, 'w' },
        { "host", required_argument, NULL, 'H' },
        { "port", required_argument, NULL, 'p' },
        { "ca", required_argument, NULL, 'c' },
        { "db", required_argument, NULL, 'd' },
        { "plaintext", no_argument, NULL, 'P' },
        { "read-delay-ms", required_argument, NULL, 'r' },
        { "count", required_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    static bot_t bot = { .mu = PTHREAD_MUTEX_INITIALIZER,
                         .read_delay_ms = 1000 };
    bot_t *b = &bot;
    courier_config_t cfg;
    char db[COURIER_JID_MAX + 8];
    unsigned long v;
    int opt;

    b->tail = &b->head;
    courier_config_init(&cfg);
    cfg.password = getenv("COURIER_PASSWORD");
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'j': cfg.jid = optarg; break;
        case 'w': cfg.password = optarg; break;
        case 'H': cfg.host = optarg; break;
        case 'c': cfg.ca_file = optarg; break;
        case 'd': cfg.db_path = optarg; break;
        case 'P': cfg.allow_plaintext = 1; break;
        case 'p':
            if (parse_ulong(optarg, 65535, &v) < 0 || v == 0) {
                fprintf(stderr, "courier-bot: bad port %s\n", optarg);
                return 2;
            }
            cfg.port = (unsigned short)v;
            break;
        case 'r':
            if (parse_ulong(optarg, 3600000, &v) < 0) {
                fprintf(stderr, "courier-bot: bad delay %s\n", optarg);
                return 2;
            }
            b->read_delay_ms = (unsigned)v;
            break;
        case 'n':
            if (parse_ulong(optarg, 1000000, &v) < 0 || v == 0) {
                fprintf(stderr, "courier-bot: bad count %s\n", optarg);
                return 2;
            }
            b->count = (long)v;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!cfg.jid || !cfg.password || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!cfg.db_path) {
        const char *at = strchr(cfg.jid, '@');
        int local = at ? (int)(at - cfg.jid) : (int)strlen(cfg.jid);
        snprintf(db, sizeof(db), "./%.*s.db", local, cfg.jid);
        cfg.db_path = db;
    }

    /* The answers of this run, checked against the store for --count. */
    char (*replies)[COURIER_ID_MAX] = NULL;
    long n_replies = 0;
    if (b->count) {
        replies = calloc((size_t)b->count, COURIER_ID_MAX);
        if (!replies) {
            fprintf(stderr, "courier-bot: out of memory\n");
            return 1;
        }
    }

    /* Blocked before the library makes its thread (it inherits the mask);
     * the main loop's short sleep is a sigtimedwait that takes them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    courier_callbacks_t cb = { .on_state = on_state, .on_message = on_message,
                               .on_link = on_link, .on_log = on_log };
    int rc = courier_open(&b->c, &cfg, &cb, b);
    if (rc != COURIER_OK) {
        fprintf(stderr, "courier-bot: open %s: %s (%s)\n", cfg.db_path,
                courier_strerror(rc), courier_last_error());
        free(replies);
        return 1;
    }
    rc = courier_start(b->c);
    if (rc != COURIER_OK) {
        fprintf(stderr, "courier-bot: start: %s (%s)\n", courier_strerror(rc),
                courier_last_error());
        courier_close(b->c);
        free(replies);
        return 1;
    }

    int64_t t0 = now_ms(), last_check = 0;
    int status = -1;
    while (status < 0) {
        struct timespec step = { 0, STEP_MS * 1000000L };
        int sig = sigtimedwait(&sigs, NULL, &step);
        if (sig > 0) {
            say(b, "signal %d: closing", sig);
            status = b->count ? 1 : 0; /* --count not met */
            break;
        }

        int64_t now = now_ms();
        job_t *j = take_due(b, now);
        while (j) {
            job_t *next = j->next;
            char id[COURIER_ID_MAX];
            if (do_job(b, j, id) && replies && n_replies < b->count)
                snprintf(replies[n_replies++], COURIER_ID_MAX, "%s", id);
            free(j->text);
            free(j);
            j = next;
        }

        if (now - last_check >= CHECK_MS) {
            last_check = now;
            courier_link_t link;
            if (courier_get_link(b->c, &link) == COURIER_EAUTH) {
                say(b, "error login refused for %s", cfg.jid);
                status = 1;
            } else if (b->count && n_replies == b->count &&
                       all_confirmed(b, replies, n_replies)) {
                say(b, "done: %ld answers delivered", n_replies);
                status = 0;
            } else if (b->count && now - t0 > COUNT_TIMEOUT_MS) {
                say(b, "timeout: %ld of %ld answers sent, not all "
                    "delivered", n_replies, b->count);
                status = 1;
            }
        }
    }

    /* Clean close: acknowledges what we received (behaviour.md §3). After it no
     * callback runs, so the queue is ours alone. */
    courier_close(b->c);
    while (b->head) {
        job_t *j = b->head;
        b->head = j->next;
        free(j->text);
        free(j);
    }
    free(replies);
    return status;
}
