/* SPDX-License-Identifier: MIT */
/*
 * courier-chat: a terminal chat with one peer, on libcourier.
 *
 *   courier-chat --jid JID --password PW [--host H] [--port P] [--ca FILE]
 *                [--db FILE] [--plaintext] PEER
 *
 * It starts with the conversation as the store keeps it (courier_history:
 * the newest 20, retracted ones marked; courier_pending: what is still
 * unconfirmed). On a terminal it redraws the conversation in place with the
 * ticks of behaviour.md §1; when stdout is not a terminal it prints one line
 * per event (see examples/README.md), for scripts. The library runs its own thread
 * and calls back on it, so everything the screen shows sits behind `mu`.
 * No courier_* call is made while holding `mu`: a callback waiting for it
 * must never wait for us.
 */
#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "courier.h"

#define HIST_MAX 512    /* messages kept in memory (the store keeps all) */
#define SHOW_MAX 20     /* messages on screen, and read at start */
#define KEEP_MAX 1024   /* bytes of a message kept for display */
#define META_KEEP 256   /* bytes of its meta kept for display */
#define STATUS_MAX 320
#define SCREEN_MAX (128 * 1024)
#define COLS_MAX 400
/* Room for the longest body the library takes, plus "\r\n". */
#define LINE_CAP (COURIER_BODY_MAX_DEFAULT + 2)

typedef struct {
    int mine;
    int read_sent;            /* peer's: courier_mark_displayed done */
    int text_known;           /* mine: 0 until courier_send_text returned */
    int retracted;            /* its sender retracted it (XEP-0424) */
    int num;                  /* "#N" on screen: what /cancel #N names */
    unsigned born, touched;   /* chat_t.clock when added / last changed */
    char id[COURIER_ID_MAX];
    time_t when;
    courier_state_t state;
    char reason[64];
    char text[KEEP_MAX];
    char meta[META_KEEP];
} entry_t;

typedef struct {
    pthread_mutex_t mu;
    courier_t *c;
    int tty;
    const char *me;
    char peer[COURIER_JID_MAX];
    courier_link_t link;
    int auth_refused;
    int peer_typing;
    entry_t hist[HIST_MAX];   /* oldest first */
    int n;
    int next_num;             /* the last "#N" given */
    int view_max;             /* messages on screen at most (/history N) */
    unsigned clock;           /* counts changes to hist, for /history */
    char status[STATUS_MAX];
} chat_t;

static chat_t app = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* ---- text helpers ----------------------------------------------------- */

/* Length of the valid UTF-8 sequence at `s` (1..4), 0 if it is invalid. */
static size_t utf8_len(const unsigned char *s)
{
    size_t n;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4;
    else
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* Copy at most cap-1 bytes of `src`, never splitting a character. */
static void copy_utf8(char *dst, size_t cap, const char *src)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t len = 0;
    while (s[len]) {
        size_t n = utf8_len(s + len);
        if (n == 0)
            n = 1;
        if (len + n > cap - 1)
            break;
        len += n;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* Terminal columns of the character at `s` (of n bytes; 0 = invalid). */
static size_t char_cols(const unsigned char *s, size_t n)
{
    static const unsigned char mask[] = { 0, 0x7f, 0x1f, 0x0f, 0x07 };
    if (n == 0 || (n == 1 && (*s < 0x20 || *s == 0x7f)))
        return 1; /* drawn as '?' or ' ' */
    wchar_t cp = s[0] & mask[n];
    for (size_t i = 1; i < n; i++)
        cp = (wchar_t)((cp << 6) | (s[i] & 0x3f));
    int w = wcwidth(cp); /* 2 for CJK, 0 for combining marks */
    return w < 0 ? 1 : (size_t)w;
}

static size_t utf8_cols(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t cols = 0;
    while (*s) {
        size_t n = utf8_len(s);
        cols += char_cols(s, n);
        s += n ? n : 1;
    }
    return cols;
}

typedef struct {
    char *p;
    size_t len, cap;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (n > b->cap - 1 - b->len)
        n = b->cap - 1 - b->len;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_printf(sbuf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len += (size_t)n < b->cap - b->len ? (size_t)n
                                              : b->cap - 1 - b->len;
}

/*
 * Append `str` in at most `max_cols` columns, ending in "…" when cut.
 * Control characters (C0 and C1) become spaces and broken UTF-8 becomes
 * '?': a peer must not be able to send escape sequences to our terminal.
 */
static void sb_text(sbuf_t *b, const char *str, size_t max_cols)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t total = utf8_cols(str);
    size_t room = total <= max_cols ? total : max_cols ? max_cols - 1 : 0;
    size_t cols = 0;
    while (*s) {
        size_t n = utf8_len(s), w = char_cols(s, n);
        if (cols + w > room)
            break;
        if (n == 0)
            sb_add(b, "?", 1);
        else if (n == 1 && (*s < 0x20 || *s == 0x7f))
            sb_add(b, " ", 1);
        else if (n == 2 && s[0] == 0xc2 && s[1] < 0xa0)
            sb_add(b, " ", 1);
        else
            sb_add(b, (const char *)s, n);
        cols += w;
        s += n ? n : 1;
    }
    if (total > max_cols && max_cols > 0)
        sb_add(b, "…", strlen("…"));
}

/* One-line form for scripts: escapes for what would break the line or
 * drive a terminal (C0, DEL, C1). */
static void put_escaped(FILE *f, const char *str)
{
    for (const unsigned char *s = (const unsigned char *)str; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else if (*s == '\r')
            fputs("\\r", f);
        else if (*s == '\t')
            fputs("\\t", f);
        else if (*s < 0x20 || *s == 0x7f)
            fprintf(f, "\\x%02x", *s);
        else if (*s == 0xc2 && s[1] >= 0x80 && s[1] < 0xa0)
            fprintf(f, "\\u%04x", *++s);
        else
            fputc(*s, f);
    }
}

/* ---- the conversation --------------------------------------------------- */

static entry_t *find_entry(chat_t *a, const char *id, int mine)
{
    for (int i = a->n - 1; i >= 0; i--)
        if (a->hist[i].mine == mine && strcmp(a->hist[i].id, id) == 0)
            return &a->hist[i];
    return NULL;
}

static entry_t *find_num(chat_t *a, int num)
{
    for (int i = 0; i < a->n; i++)
        if (a->hist[i].num == num)
            return &a->hist[i];
    return NULL;
}

/* Mark `e` changed (caller holds a->mu): /history keeps what changed
 * while it read the store. */
static void touch(chat_t *a, entry_t *e)
{
    e->touched = ++a->clock;
}

static entry_t *add_entry(chat_t *a)
{
    if (a->n == HIST_MAX) {
        /* Forget the oldest: this is a view, the store keeps all. */
        memmove(&a->hist[0], &a->hist[1], (HIST_MAX - 1) * sizeof(entry_t));
        a->n--;
    }
    entry_t *e = &a->hist[a->n++];
    memset(e, 0, sizeof(*e));
    e->num = ++a->next_num;
    e->born = e->touched = ++a->clock;
    return e;
}

/* Text of an entry: the body behind a [voice]/[image] mark. */
static void set_text(entry_t *e, courier_kind_t kind, const char *body)
{
    const char *mark = kind == COURIER_VOICE ? "[voice] "
                       : kind == COURIER_IMAGE ? "[image] " : "";
    char b[KEEP_MAX - 8]; /* room for the mark */
    copy_utf8(b, sizeof(b), body);
    snprintf(e->text, sizeof(e->text), "%s%s", mark, b);
}

static const char *link_name(courier_link_t l)
{
    switch (l) {
    case COURIER_LINK_OFFLINE: return "offline";
    case COURIER_LINK_CONNECTING: return "connecting";
    case COURIER_LINK_ONLINE: return "online";
    }
    return "?";
}

/* behaviour.md §1 display mapping, with the ticks a chat app would draw. */
static void tick_text(const entry_t *e, char *out, size_t cap)
{
    const char *word = courier_display_status(e->state);
    if (e->retracted) {
        snprintf(out, cap, "↶ retracted");
        return;
    }
    switch (e->state) {
    case COURIER_QUEUED:
    case COURIER_SENT:
        snprintf(out, cap, "… %s", word);
        return;
    case COURIER_OFFLINE:
        snprintf(out, cap, "✓ %s (stored on server)", word);
        return;
    case COURIER_DELIVERED:
    case COURIER_DISPLAYED:
        snprintf(out, cap, "✓✓ %s", word);
        return;
    case COURIER_FAILED:
        snprintf(out, cap, "✗ %s: %s", word,
                 e->reason[0] ? e->reason : "unknown");
        return;
    }
    snprintf(out, cap, "%s", word);
}

/* The same as one word, for scripts: mine sending|delivered|read|
 * failed:<reason>, the peer's received|read; retracted for both. */
static void tick_word(const entry_t *e, char *out, size_t cap)
{
    if (e->retracted)
        snprintf(out, cap, "retracted");
    else if (!e->mine)
        snprintf(out, cap, "%s", e->read_sent ? "read" : "received");
    else if (e->state == COURIER_FAILED)
        snprintf(out, cap, "failed:%s", e->reason[0] ? e->reason : "unknown");
    else
        snprintf(out, cap, "%s", courier_display_status(e->state));
}

/* "history in|out <id> <tick> <text>" and, if it carries any,
 * "meta <id> <meta>" (scripts; caller holds a->mu). */
static void print_entry(const entry_t *e)
{
    char word[96];
    tick_word(e, word, sizeof(word));
    printf("history %s %s %s", e->mine ? "out" : "in", e->id, word);
    if (!e->retracted) {
        fputc(' ', stdout);
        put_escaped(stdout, e->text_known || !e->mine
                                ? e->text : "(from an earlier session)");
    }
    fputc('\n', stdout);
    if (e->meta[0]) {
        printf("meta %s ", e->id);
        put_escaped(stdout, e->meta);
        fputc('\n', stdout);
    }
}

static void term_size(size_t *cols, size_t *rows)
{
    struct winsize ws;
    *cols = 80;
    *rows = 24;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
        *cols = ws.ws_col < COLS_MAX ? ws.ws_col : COLS_MAX;
        *rows = ws.ws_row;
    }
}

static void rule(sbuf_t *b, size_t cols)
{
    for (size_t i = 0; i < cols; i++)
        sb_add(b, "─", strlen("─"));
    sb_add(b, "\n", 1);
}

/* Clear and draw everything; caller holds a->mu. No-op off a terminal. */
static void redraw_locked(chat_t *a)
{
    static char screen[SCREEN_MAX];
    sbuf_t b = { screen, 0, sizeof(screen) };
    size_t cols, rows;
    char line[COURIER_JID_MAX * 2 + 128];

    if (!a->tty)
        return;
    term_size(&cols, &rows);
    sb_add(&b, "\033[H\033[2J", strlen("\033[H\033[2J"));

    /* Most telling first: a narrow terminal cuts the end. */
    snprintf(line, sizeof(line), "link: %s%s   peer: %s%s   me: %s",
             link_name(a->link), a->auth_refused ? " (login refused)" : "",
             a->peer, a->peer_typing ? " (typing…)" : "", a->me);
    sb_text(&b, line, cols);
    sb_add(&b, "\n", 1);
    rule(&b, cols);

    /* Six lines are ours: header, two rules, help, status, prompt. */
    int show = rows > 7 ? (int)rows - 6 : 1;
    if (show > a->view_max)
        show = a->view_max;
    int first = a->n > show ? a->n - show : 0;
    for (int i = first; i < a->n; i++) {
        const entry_t *e = &a->hist[i];
        char hms[16], num[16], tick[128], text[KEEP_MAX + META_KEEP + 16];
        struct tm tm;
        localtime_r(&e->when, &tm);
        strftime(hms, sizeof(hms), "%H:%M:%S", &tm);
        snprintf(num, sizeof(num), "#%-3d", e->num);
        if (e->retracted)
            snprintf(text, sizeof(text), "(retracted)");
        else
            snprintf(text, sizeof(text), "%s%s%s",
                     e->mine && !e->text_known ? "(from an earlier session)"
                                               : e->text,
                     e->meta[0] ? "   · meta " : "", e->meta);
        size_t prefix = strlen(hms) + strlen(num) + strlen("  peer < ") + 1;
        if (e->mine) {
            tick_text(e, tick, sizeof(tick));
            size_t fixed = prefix + 4 + utf8_cols(tick);
            size_t room = cols > fixed + 10 ? cols - fixed : 10;
            sb_printf(&b, "%s %s  me   > ", hms, num);
            sb_text(&b, text, room);
            sb_add(&b, "   [", 4);
            sb_text(&b, tick, cols);
            sb_add(&b, "]\n", 2);
        } else {
            size_t room = cols > prefix + 10 ? cols - prefix : 10;
            sb_printf(&b, "%s %s  peer < ", hms, num);
            sb_text(&b, text, room);
            sb_add(&b, "\n", 1);
        }
    }

    rule(&b, cols);
    sb_text(&b, "Enter sends · /cancel /retract /delete #N · /history [N] · "
            "/retry · /read · /net off|on · /netchange · /background "
            "/foreground · /quit", cols);
    sb_add(&b, "\n", 1);
    sb_text(&b, a->status, cols);
    sb_add(&b, "\n> ", 3);
    fwrite(b.p, 1, b.len, stdout);
    fflush(stdout);
}

/* Show `text` on the status line (terminal) or as an event (scripts). */
static void status_locked(chat_t *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void status_locked(chat_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->status, sizeof(a->status), fmt, ap);
    va_end(ap);
    if (a->tty) {
        redraw_locked(a);
    } else {
        fputs("info ", stdout);
        put_escaped(stdout, a->status);
        fputc('\n', stdout);
        fflush(stdout);
    }
}

/* Report a failed call; read courier_last_error() at once, on this thread. */
static void call_failed(chat_t *a, const char *what, int rc)
{
    char detail[256];
    snprintf(detail, sizeof(detail), "%s", courier_last_error());
    pthread_mutex_lock(&a->mu);
    if (a->tty) {
        snprintf(a->status, sizeof(a->status), "%s: %s%s%s", what,
                 courier_strerror(rc), detail[0] ? " — " : "", detail);
        redraw_locked(a);
    } else {
        printf("error %s %s ", what, courier_strerror(rc));
        put_escaped(stdout, detail);
        fputc('\n', stdout);
        fflush(stdout);
    }
    pthread_mutex_unlock(&a->mu);
}

/* ---- callbacks (library thread) ------------------------------------------ */

static void on_state(void *ud, const char *id, const char *peer,
                     courier_state_t s)
{
    chat_t *a = ud;
    courier_info_t info;
    int have_info = courier_get_info(a->c, id, &info) == COURIER_OK;

    pthread_mutex_lock(&a->mu);
    if (strcmp(peer, a->peer) == 0) {
        entry_t *e = find_entry(a, id, 1);
        if (!e) {
            /* Ours but unknown: from an earlier run (the store resends
             * it), or courier_send_text has not returned yet. */
            e = add_entry(a);
            e->mine = 1;
            snprintf(e->id, sizeof(e->id), "%s", id);
            e->when = have_info ? (time_t)(info.created_ms / 1000)
                                : time(NULL);
        }
        e->state = s;
        snprintf(e->reason, sizeof(e->reason), "%s",
                 s == COURIER_FAILED && have_info ? info.reason : "");
        touch(a, e);
        redraw_locked(a);
    }
    if (!a->tty) {
        printf("state %s %s %s", id, courier_display_status(s),
               courier_state_name(s));
        if (s == COURIER_FAILED && have_info)
            printf(" %s", info.reason);
        fputc('\n', stdout);
        fflush(stdout);
    }
    pthread_mutex_unlock(&a->mu);
}

static void on_message(void *ud, const courier_message_t *m)
{
    chat_t *a = ud;
    const char *kind = m->kind == COURIER_VOICE ? "[voice] "
                       : m->kind == COURIER_IMAGE ? "[image] " : "";

    pthread_mutex_lock(&a->mu);
    if (strcmp(m->peer, a->peer) == 0) {
        /* The library hands each message once, ever; but one a previous
         * run stored and never handed is also in the history read at
         * start, so it may be on screen already. */
        entry_t *e = find_entry(a, m->id, 0);
        if (!e) {
            e = add_entry(a);
            snprintf(e->id, sizeof(e->id), "%s", m->id);
        }
        e->when = (time_t)(m->timestamp_ms / 1000);
        set_text(e, m->kind, m->body);
        copy_utf8(e->meta, sizeof(e->meta), m->meta);
        touch(a, e);
        a->peer_typing = 0; /* a message ends the typing */
        redraw_locked(a);
    } else if (a->tty) {
        /* Not this conversation: a note, so it is not missed. */
        snprintf(a->status, sizeof(a->status), "from %s: %s%s", m->peer,
                 kind, m->body);
        redraw_locked(a);
    }
    if (!a->tty) {
        printf("message %s %s %s", m->peer, m->id, kind);
        put_escaped(stdout, m->body);
        fputc('\n', stdout);
        if (m->meta[0]) {
            printf("meta %s ", m->id);
            put_escaped(stdout, m->meta);
            fputc('\n', stdout);
        }
        fflush(stdout);
    }
    pthread_mutex_unlock(&a->mu);
}

/* The peer retracted one of its messages (XEP-0424): the library has
 * already dropped its body and meta from the store; do the same here. */
static void on_retract(void *ud, const char *peer, const char *id)
{
    chat_t *a = ud;
    pthread_mutex_lock(&a->mu);
    entry_t *e = strcmp(peer, a->peer) == 0 ? find_entry(a, id, 0) : NULL;
    if (e) {
        e->retracted = 1;
        e->text[0] = e->meta[0] = '\0';
        touch(a, e);
    }
    if (a->tty) {
        if (e)
            snprintf(a->status, sizeof(a->status),
                     "%s retracted message #%d", peer, e->num);
        else
            snprintf(a->status, sizeof(a->status),
                     "%s retracted a message (%.40s)", peer, id);
        redraw_locked(a);
    } else {
        printf("retracted %s %s\n", peer, id);
        fflush(stdout);
    }
    pthread_mutex_unlock(&a->mu);
}

static void on_link(void *ud, courier_link_t l)
{
    chat_t *a = ud;
    courier_link_t now;
    int refused = l == COURIER_LINK_OFFLINE &&
                  courier_get_link(a->c, &now) == COURIER_EAUTH;

    pthread_mutex_lock(&a->mu);
    a->link = l;
    a->auth_refused = refused;
    if (l != COURIER_LINK_ONLINE)
        a->peer_typing = 0;
    if (a->tty) {
        redraw_locked(a);
    } else {
        printf("link %s%s\n", link_name(l), refused ? " login-refused" : "");
        fflush(stdout);
    }
    pthread_mutex_unlock(&a->mu);
}

static void on_composing(void *ud, const char *peer, int composing)
{
    chat_t *a = ud;
    pthread_mutex_lock(&a->mu);
    if (!a->tty) {
        printf("typing %s %s\n", peer, composing ? "on" : "off");
        fflush(stdout);
    } else if (strcmp(peer, a->peer) == 0) {
        a->peer_typing = composing;
        redraw_locked(a);
    }
    pthread_mutex_unlock(&a->mu);
}

static void on_log(void *ud, int level, const char *text)
{
    chat_t *a = ud;
    if (level < COURIER_LOG_WARN)
        return;
    pthread_mutex_lock(&a->mu);
    if (a->tty) {
        snprintf(a->status, sizeof(a->status), "%s", text);
        redraw_locked(a);
    } else {
        /* stderr: keeps stdout to the event lines. */
        fprintf(stderr, "courier-chat: %s\n", text);
    }
    pthread_mutex_unlock(&a->mu);
}

/* ---- commands (main thread) ---------------------------------------------- */

static void send_line(chat_t *a, const char *text)
{
    char id[COURIER_ID_MAX];
    int rc = courier_send_text(a->c, a->peer, text, id);
    if (rc != COURIER_OK) {
        call_failed(a, "send", rc);
        return;
    }
    /* Durable now. Its state may already have been reported (or not,
     * after /net off), so ask the store for a starting point. */
    courier_info_t info;
    if (courier_get_info(a->c, id, &info) != COURIER_OK) {
        memset(&info, 0, sizeof(info));
        info.state = COURIER_QUEUED;
    }

    pthread_mutex_lock(&a->mu);
    entry_t *e = find_entry(a, id, 1);
    if (!e) {
        e = add_entry(a);
        e->mine = 1;
        snprintf(e->id, sizeof(e->id), "%s", id);
        e->state = info.state;
        if (info.state == COURIER_FAILED)
            snprintf(e->reason, sizeof(e->reason), "%s", info.reason);
    }
    e->when = time(NULL);
    e->text_known = 1;
    copy_utf8(e->text, sizeof(e->text), text);
    touch(a, e);
    if (a->tty) {
        redraw_locked(a);
    } else {
        printf("sent %s ", id);
        put_escaped(stdout, text);
        fputc('\n', stdout);
        fflush(stdout);
    }
    pthread_mutex_unlock(&a->mu);

    /* We never announce typing from a line-buffered stdin, but a sent
     * message ends it. Offline (ENOTCONN) there is nobody to tell. */
    rc = courier_set_composing(a->c, a->peer, 0);
    if (rc != COURIER_OK && rc != COURIER_ENOTCONN)
        call_failed(a, "composing", rc);
}

/* Copy the ids of our FAILED messages (failed_mine) or of the peer's
 * unread ones, so the API is called without holding the lock. */
static int snapshot(chat_t *a, int failed_mine, char ids[][COURIER_ID_MAX])
{
    int k = 0;
    pthread_mutex_lock(&a->mu);
    for (int i = 0; i < a->n; i++) {
        const entry_t *e = &a->hist[i];
        /* A cancelled or retracted message stays given up. */
        if (failed_mine ? e->mine && e->state == COURIER_FAILED &&
                              !e->retracted &&
                              strcmp(e->reason, "cancelled") != 0
                        : !e->mine && !e->read_sent && !e->retracted)
            snprintf(ids[k++], COURIER_ID_MAX, "%s", e->id);
    }
    pthread_mutex_unlock(&a->mu);
    return k;
}

static void do_retry(chat_t *a)
{
    static char ids[HIST_MAX][COURIER_ID_MAX];
    int n = snapshot(a, 1, ids), ok = 0;
    for (int i = 0; i < n; i++) {
        int rc = courier_retry(a->c, ids[i]);
        if (rc == COURIER_OK)
            ok++;
        else if (rc != COURIER_ESTATE) /* ESTATE: it moved on meanwhile */
            call_failed(a, "retry", rc);
    }
    pthread_mutex_lock(&a->mu);
    if (n)
        status_locked(a, "retrying %d failed message(s)", ok);
    else
        status_locked(a, "no failed message to retry");
    pthread_mutex_unlock(&a->mu);
}

static void do_read(chat_t *a)
{
    static char ids[HIST_MAX][COURIER_ID_MAX];
    int n = snapshot(a, 0, ids), ok = 0;
    for (int i = 0; i < n; i++) {
        int rc = courier_mark_displayed(a->c, a->peer, ids[i]);
        if (rc != COURIER_OK) {
            call_failed(a, "read", rc);
            continue;
        }
        ok++;
        pthread_mutex_lock(&a->mu);
        entry_t *e = find_entry(a, ids[i], 0);
        if (e) {
            e->read_sent = 1;
            touch(a, e);
        }
        pthread_mutex_unlock(&a->mu);
    }
    pthread_mutex_lock(&a->mu);
    status_locked(a, "marked %d message(s) read", ok);
    pthread_mutex_unlock(&a->mu);
}

/* ---- the store: history, pending, cancel, retract, delete ---------------- */

typedef struct {
    chat_t *a;
    entry_t *v;               /* newest first, as the store walks */
    int n, cap;
    int64_t seq[HIST_MAX];
    int pending, failed, elsewhere;
} load_t;

/* A store entry as a view entry (no lock needed: `e` is ours alone). */
static void from_store(chat_t *a, entry_t *e, const courier_entry_t *h)
{
    memset(e, 0, sizeof(*e));
    e->mine = h->dir == COURIER_DIR_OUT;
    e->read_sent = !e->mine && h->state == COURIER_DISPLAYED;
    e->text_known = 1;
    e->retracted = h->retracted;
    snprintf(e->id, sizeof(e->id), "%s", h->id);
    e->when = (time_t)(h->timestamp_ms / 1000);
    e->state = h->state;
    set_text(e, h->kind, h->body);
    copy_utf8(e->meta, sizeof(e->meta), h->meta);
    courier_info_t info;
    if (e->mine && h->state == COURIER_FAILED &&
        courier_get_info(a->c, h->id, &info) == COURIER_OK)
        snprintf(e->reason, sizeof(e->reason), "%s", info.reason);
}

/* courier_history's callback: runs on our thread, no library lock held. */
static int take_history(void *ud, const courier_entry_t *h)
{
    load_t *l = ud;
    if (l->n == l->cap)
        return 1; /* a full view: stop the walk */
    l->seq[l->n] = h->seq;
    from_store(l->a, &l->v[l->n++], h);
    return 0;
}

/* courier_pending's callback, oldest first: count them, and add those of
 * this conversation that the page of history did not reach. */
static int take_pending(void *ud, const courier_entry_t *h)
{
    load_t *l = ud;
    chat_t *a = l->a;
    if (strcmp(h->peer, a->peer) != 0) {
        l->elsewhere++;
    } else {
        l->pending++;
        l->failed += h->state == COURIER_FAILED;
        int have = 0;
        for (int i = 0; i < l->n && !have; i++)
            have = l->v[i].mine && strcmp(l->v[i].id, h->id) == 0;
        if (!have && l->n < l->cap) { /* older than the page */
            l->seq[l->n] = h->seq;
            from_store(a, &l->v[l->n++], h);
        }
    }
    return 0;
}

/* Scripts: one "pending <peer> <id> <tick> <text>" line each, every
 * peer's. */
static int print_pending(void *ud, const courier_entry_t *h)
{
    chat_t *a = ud;
    static entry_t e;
    char word[96];
    from_store(a, &e, h);
    tick_word(&e, word, sizeof(word));
    pthread_mutex_lock(&a->mu);
    printf("pending %s %s %s ", h->peer, h->id, word);
    put_escaped(stdout, e.text);
    fputc('\n', stdout);
    fflush(stdout);
    pthread_mutex_unlock(&a->mu);
    return 0;
}

/* Sort the view oldest first (pending ones older than the page were
 * added after it, so only those can be out of place). */
static void sort_page(load_t *l)
{
    static entry_t tmp;
    for (int i = 1; i < l->n; i++)
        for (int j = i; j > 0 && l->seq[j - 1] > l->seq[j]; j--) {
            int64_t s = l->seq[j];
            l->seq[j] = l->seq[j - 1];
            l->seq[j - 1] = s;
            tmp = l->v[j];
            l->v[j] = l->v[j - 1];
            l->v[j - 1] = tmp;
        }
}

/*
 * Draw the conversation from the store: its `limit` newest messages
 * (courier_history) plus, at start, the unconfirmed ones
 * (courier_pending). Replaces the view; what callbacks changed or added
 * while the store was read is kept. Returns 0, or the failed call's code
 * (reported).
 */
static int load_view(chat_t *a, unsigned limit, int with_pending)
{
    static entry_t page[HIST_MAX];
    static load_t l;
    memset(&l, 0, sizeof(l));
    l.a = a;
    l.v = page;
    l.cap = HIST_MAX;

    pthread_mutex_lock(&a->mu);
    unsigned mark = a->clock;
    pthread_mutex_unlock(&a->mu);

    int rc = courier_history(a->c, a->peer, 0, limit, take_history, &l);
    if (rc < 0) {
        call_failed(a, "history", rc);
        return rc;
    }
    if (with_pending) {
        rc = courier_pending(a->c, take_pending, &l);
        if (rc < 0) {
            call_failed(a, "pending", rc);
            return rc;
        }
    }
    /* The walks gave newest first (then older pending ones); the view is
     * oldest first. */
    for (int i = 0, j = l.n - 1; i < j; i++, j--) {
        entry_t t = page[i];
        int64_t s = l.seq[i];
        page[i] = page[j];
        l.seq[i] = l.seq[j];
        page[j] = t;
        l.seq[j] = s;
    }
    sort_page(&l);

    pthread_mutex_lock(&a->mu);
    static entry_t old[HIST_MAX];
    int n_old = a->n;
    memcpy(old, a->hist, (size_t)n_old * sizeof(entry_t));
    a->n = 0;
    a->next_num = 0;
    for (int i = 0; i < l.n; i++) {
        entry_t *o = NULL;
        for (int k = 0; k < n_old && !o; k++)
            if (old[k].mine == page[i].mine &&
                strcmp(old[k].id, page[i].id) == 0)
                o = &old[k];
        entry_t *e = add_entry(a);
        int num = e->num;
        *e = o && o->touched > mark ? *o : page[i]; /* newer than the read */
        e->num = num;
        e->born = o ? o->born : e->born;
        e->touched = o ? o->touched : e->touched;
        if (o)
            o->id[0] = '\0'; /* taken */
    }
    for (int k = 0; k < n_old; k++)
        if (old[k].id[0] && old[k].born > mark) { /* arrived meanwhile */
            entry_t *e = add_entry(a);
            int num = e->num;
            *e = old[k];
            e->num = num;
        }
    a->view_max = limit < HIST_MAX ? (int)limit : HIST_MAX;
    if (a->tty) {
        if (with_pending && l.pending)
            snprintf(a->status, sizeof(a->status),
                     "%d unconfirmed from earlier (%d failed): /retry "
                     "resends, /cancel #N gives up%s", l.pending, l.failed,
                     l.elsewhere ? "; more to other peers" : "");
        else
            snprintf(a->status, sizeof(a->status),
                     "%d message(s) from the store", a->n);
        redraw_locked(a);
    } else {
        for (int i = 0; i < a->n; i++)
            print_entry(&a->hist[i]);
        fflush(stdout);
    }
    pthread_mutex_unlock(&a->mu);
    if (with_pending && !a->tty) {
        rc = courier_pending(a->c, print_pending, a);
        if (rc < 0)
            call_failed(a, "pending", rc);
    }
    return 0;
}

/* The id `arg` names: "#N" is the message shown as #N, anything else is
 * passed to the library as it is (so it judges bad ids). 0 if none. */
static int resolve_id(chat_t *a, const char *what, const char *arg,
                      char id[COURIER_ID_MAX])
{
    while (*arg == ' ')
        arg++;
    if (*arg == '\0') {
        pthread_mutex_lock(&a->mu);
        status_locked(a, "usage: /%s #N or /%s ID", what, what);
        pthread_mutex_unlock(&a->mu);
        return 0;
    }
    if (arg[0] == '#' && arg[1] >= '0' && arg[1] <= '9') {
        int num = atoi(arg + 1);
        pthread_mutex_lock(&a->mu);
        entry_t *e = find_num(a, num);
        if (e)
            snprintf(id, COURIER_ID_MAX, "%s", e->id);
        else
            status_locked(a, "no message #%d on screen", num);
        pthread_mutex_unlock(&a->mu);
        return e != NULL;
    }
    snprintf(id, COURIER_ID_MAX, "%s", arg);
    return 1;
}

static void do_cancel(chat_t *a, const char *arg)
{
    char id[COURIER_ID_MAX];
    if (!resolve_id(a, "cancel", arg, id))
        return;
    int rc = courier_cancel(a->c, id);
    if (rc != COURIER_OK) {
        call_failed(a, "cancel", rc);
        return;
    }
    /* on_state says FAILED only if it was not already: read the store. */
    courier_info_t info;
    int have = courier_get_info(a->c, id, &info) == COURIER_OK;
    pthread_mutex_lock(&a->mu);
    entry_t *e = find_entry(a, id, 1);
    if (e && have) {
        e->state = info.state;
        snprintf(e->reason, sizeof(e->reason), "%s", info.reason);
        touch(a, e);
    }
    status_locked(a, "cancelled %s: it is never sent again", id);
    pthread_mutex_unlock(&a->mu);
}

static void do_retract(chat_t *a, const char *arg)
{
    char id[COURIER_ID_MAX];
    if (!resolve_id(a, "retract", arg, id))
        return;
    int rc = courier_retract(a->c, id);
    if (rc != COURIER_OK) {
        call_failed(a, "retract", rc);
        return;
    }
    pthread_mutex_lock(&a->mu);
    entry_t *e = find_entry(a, id, 1);
    if (e) {
        e->retracted = 1;
        e->text[0] = e->meta[0] = '\0';
        touch(a, e);
    }
    status_locked(a, "retracted %s: the peer's app is told to remove it", id);
    pthread_mutex_unlock(&a->mu);
}

static void do_delete(chat_t *a, const char *arg)
{
    char id[COURIER_ID_MAX];
    if (!resolve_id(a, "delete", arg, id))
        return;
    int rc = courier_delete(a->c, a->peer, id);
    if (rc != COURIER_OK) {
        call_failed(a, "delete", rc);
        return;
    }
    pthread_mutex_lock(&a->mu);
    for (int i = a->n - 1; i >= 0; i--)
        if (strcmp(a->hist[i].id, id) == 0) {
            memmove(&a->hist[i], &a->hist[i + 1],
                    (size_t)(a->n - i - 1) * sizeof(entry_t));
            a->n--;
        }
    status_locked(a, "deleted %s from this device (nothing is sent)", id);
    pthread_mutex_unlock(&a->mu);
}

/* "/history [N]": the N newest (default SHOW_MAX) again, from the store;
 * the library judges N (1..1000). */
static void do_history(chat_t *a, const char *arg)
{
    while (*arg == ' ')
        arg++;
    unsigned long n = SHOW_MAX;
    if (*arg) {
        char *end;
        errno = 0;
        n = strtoul(arg, &end, 10);
        if (*arg < '0' || *arg > '9' || *end || errno) {
            pthread_mutex_lock(&a->mu);
            status_locked(a, "usage: /history [N]");
            pthread_mutex_unlock(&a->mu);
            return;
        }
        if (n > 1000000)
            n = 1000000; /* still too many: the library says so */
    }
    load_view(a, (unsigned)n, 0);
}

static void do_net(chat_t *a, int on)
{
    int rc = on ? courier_start(a->c) : courier_stop(a->c);
    if (rc != COURIER_OK) {
        call_failed(a, on ? "net on" : "net off", rc);
        return;
    }
    pthread_mutex_lock(&a->mu);
    if (!on) {
        /* The loop has ended: no on_link will say so. */
        a->link = COURIER_LINK_OFFLINE;
        a->peer_typing = 0;
    }
    status_locked(a, on ? "network on: reconnecting, failed messages go "
                          "out again" : "network off: new messages are "
                          "stored and reported failed");
    pthread_mutex_unlock(&a->mu);
}

/* What an app calls from the OS's network callback (behaviour.md §10). */
/* What an app calls from its lifecycle callbacks (behaviour.md §10):
 * XEP-0352 CSI, remembered across reconnects; no composing in background. */
static void do_active(chat_t *a, int active)
{
    int rc = courier_set_active(a->c, active);
    if (rc != COURIER_OK) {
        call_failed(a, active ? "foreground" : "background", rc);
        return;
    }
    pthread_mutex_lock(&a->mu);
    status_locked(a, active ? "foreground: the server is told <active/>"
                            : "background: the server is told <inactive/> "
                              "(again after every login); no composing "
                              "is sent");
    pthread_mutex_unlock(&a->mu);
}

static void do_netchange(chat_t *a)
{
    int rc = courier_network_changed(a->c);
    if (rc != COURIER_OK) {
        call_failed(a, "netchange", rc);
        return;
    }
    pthread_mutex_lock(&a->mu);
    status_locked(a, "network changed: a link that is up is probed with a "
                  "ping, one that is down reconnects now");
    pthread_mutex_unlock(&a->mu);
}

/* Returns 1 when the user asked to quit. */
static int handle_line(chat_t *a, char *line)
{
    size_t len = strlen(line);
    if (len && line[len - 1] == '\r')
        line[--len] = '\0';

    pthread_mutex_lock(&a->mu);
    a->status[0] = '\0';
    pthread_mutex_unlock(&a->mu);

    if (len == 0) {
        pthread_mutex_lock(&a->mu);
        redraw_locked(a);
        pthread_mutex_unlock(&a->mu);
    } else if (strcmp(line, "/quit") == 0) {
        return 1;
    } else if (strcmp(line, "/retry") == 0) {
        do_retry(a);
    } else if (strcmp(line, "/read") == 0) {
        do_read(a);
    } else if (strcmp(line, "/net off") == 0) {
        do_net(a, 0);
    } else if (strcmp(line, "/net on") == 0) {
        do_net(a, 1);
    } else if (strcmp(line, "/netchange") == 0) {
        do_netchange(a);
    } else if (strcmp(line, "/background") == 0) {
        do_active(a, 0);
    } else if (strcmp(line, "/foreground") == 0) {
        do_active(a, 1);
    } else if (strncmp(line, "/cancel", 7) == 0 && (!line[7] || line[7] == ' ')) {
        do_cancel(a, line + 7);
    } else if (strncmp(line, "/retract", 8) == 0 &&
               (!line[8] || line[8] == ' ')) {
        do_retract(a, line + 8);
    } else if (strncmp(line, "/delete", 7) == 0 && (!line[7] || line[7] == ' ')) {
        do_delete(a, line + 7);
    } else if (strncmp(line, "/history", 8) == 0 &&
               (!line[8] || line[8] == ' ')) {
        do_history(a, line + 8);
    } else if (strncmp(line, "//", 2) == 0) {
        send_line(a, line + 1); /* "//x" sends "/x" */
    } else if (line[0] == '/') {
        pthread_mutex_lock(&a->mu);
        status_locked(a, "unknown command %.40s (a line starting with // "
                      "sends it as text)", line);
        pthread_mutex_unlock(&a->mu);
    } else {
        send_line(a, line);
    }
    return 0;
}

/* ---- input loop ------------------------------------------------------- */

typedef struct {
    char buf[LINE_CAP + 1];
    size_t len;
    int skipping;             /* inside a line that was too long */
} reader_t;

/* Read what stdin has and run every complete line. Returns 1 to quit. */
static int read_input(chat_t *a, reader_t *r)
{
    ssize_t got = read(STDIN_FILENO, r->buf + r->len, LINE_CAP - r->len);
    if (got < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : 1;
    if (got == 0) {
        /* EOF: a last line without its newline still counts. */
        if (r->len && !r->skipping) {
            r->buf[r->len] = '\0';
            handle_line(a, r->buf);
        }
        return 1;
    }
    r->len += (size_t)got;

    size_t start = 0;
    char *nl;
    while ((nl = memchr(r->buf + start, '\n', r->len - start))) {
        *nl = '\0';
        if (r->skipping)
            r->skipping = 0;
        else if (handle_line(a, r->buf + start))
            return 1;
        start = (size_t)(nl - r->buf) + 1;
    }
    memmove(r->buf, r->buf + start, r->len - start);
    r->len -= start;
    if (r->len == LINE_CAP) {
        /* Never cut a message silently: refuse the whole line. */
        r->len = 0;
        if (!r->skipping) {
            r->skipping = 1;
            pthread_mutex_lock(&a->mu);
            status_locked(a, "line longer than %d bytes: not sent",
                          COURIER_BODY_MAX_DEFAULT);
            pthread_mutex_unlock(&a->mu);
        }
    }
    return 0;
}

/* ---- main ------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: courier-chat --jid JID --password PW [--host H] "
            "[--port P]\n"
            "                    [--ca FILE] [--db FILE] [--plaintext] "
            "PEER\n"
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
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    static reader_t reader;
    chat_t *a = &app;
    courier_config_t cfg;
    char db[COURIER_JID_MAX + 8];
    int opt;

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
        case 'p': {
            char *end;
            long port = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || port < 1 || port > 65535) {
                fprintf(stderr, "courier-chat: bad port %s\n", optarg);
                return 2;
            }
            cfg.port = (unsigned short)port;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!cfg.jid || !cfg.password || optind != argc - 1) {
        usage(stderr);
        return 2;
    }

    /* Bare JIDs compare in lower case (on_message gives them so). */
    snprintf(a->peer, sizeof(a->peer), "%s", argv[optind]);
    for (char *p = a->peer; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    if (!strchr(a->peer, '@') || strchr(a->peer, '/')) {
        fprintf(stderr, "courier-chat: PEER must be a bare JID "
                "(user@domain)\n");
        return 2;
    }
    a->me = cfg.jid;
    if (!cfg.db_path) {
        const char *at = strchr(cfg.jid, '@');
        int local = at ? (int)(at - cfg.jid) : (int)strlen(cfg.jid);
        snprintf(db, sizeof(db), "./%.*s.db", local, cfg.jid);
        cfg.db_path = db;
    }
    a->tty = isatty(STDOUT_FILENO);
    setlocale(LC_CTYPE, ""); /* for wcwidth(): column counts */

    /* Block the signals before the library makes its thread (it inherits
     * the mask), then take them synchronously through a signalfd. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGWINCH);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    if (sfd < 0) {
        perror("courier-chat: signalfd");
        return 1;
    }

    courier_callbacks_t cb = {
        .on_state = on_state, .on_message = on_message, .on_link = on_link,
        .on_composing = on_composing, .on_log = on_log,
        .on_retract = on_retract
    };
    int rc = courier_open(&a->c, &cfg, &cb, a);
    if (rc != COURIER_OK) {
        fprintf(stderr, "courier-chat: open %s: %s (%s)\n", cfg.db_path,
                courier_strerror(rc), courier_last_error());
        return 1;
    }
    /* The conversation so far, from the store, before the loop starts
     * (so no callback races with it): the newest SHOW_MAX, and what is
     * still unconfirmed. */
    pthread_mutex_lock(&a->mu);
    a->link = COURIER_LINK_CONNECTING;
    a->view_max = SHOW_MAX;
    pthread_mutex_unlock(&a->mu);
    load_view(a, SHOW_MAX, 1);
    rc = courier_start(a->c);
    if (rc != COURIER_OK)
        call_failed(a, "start", rc);

    int quit = 0;
    while (!quit) {
        struct pollfd pfd[2] = {
            { .fd = STDIN_FILENO, .events = POLLIN },
            { .fd = sfd, .events = POLLIN },
        };
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGWINCH) {
                    pthread_mutex_lock(&a->mu);
                    redraw_locked(a);
                    pthread_mutex_unlock(&a->mu);
                } else {
                    quit = 1;
                }
            }
        }
        if (!quit && pfd[0].revents & (POLLIN | POLLHUP | POLLERR))
            quit = read_input(a, &reader);
    }

    /* After courier_close no callback runs: the screen is ours again. */
    courier_close(a->c);
    if (a->tty)
        fputs("\nbye\n", stdout);
    else
        fputs("closed\n", stdout);
    fflush(stdout);
    close(sfd);
    return 0;
}
