/* SPDX-License-Identifier: MIT */
/*
 * `make demo`: a scripted conversation between alice and bob on a local
 * Prosody (started by tests/integration/prosody.sh), printed as a
 * transcript with the message ticks. Exits 0 only if every message alice's
 * app was told is sent reached bob's app exactly once, the retraction of
 * act 6 reached bob's app and store, and the restart of act 7 drew both
 * screens from the stores.
 */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "courier.h"
#include "../tests/integration/relay.h"

#define MAX_IDS 256

typedef struct {
    const char *name;
    courier_t *c;
    char db[256];
} person_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct timespec t0;
static char ids[MAX_IDS][COURIER_ID_MAX];  /* alice's accepted messages */
static char texts[MAX_IDS][64];
static int n_ids;
static char seen[MAX_IDS][COURIER_ID_MAX]; /* what bob's app was handed */
static int seen_count[MAX_IDS], n_seen, duplicates;
static int quiet_states; /* act 4: summarise instead of printing each */
static char reply_id[COURIER_ID_MAX], reply_text[64]; /* bob's answer */
static int alice_got_reply;
static char retracted_id[COURIER_ID_MAX]; /* act 6 */
static int bob_retractions;

static const char *env(const char *k)
{
    const char *v = getenv(k);
    if (!v) {
        fprintf(stderr, "demo: %s not set (run `make demo`)\n", k);
        exit(2);
    }
    return v;
}

static void say(const char *fmt, ...)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double s = (double)(t.tv_sec - t0.tv_sec) +
               (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
    va_list ap;
    pthread_mutex_lock(&mu);
    printf("  [%6.2fs] ", s);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    pthread_mutex_unlock(&mu);
}

static void act(const char *title)
{
    printf("\n== %s\n", title);
    fflush(stdout);
}

/* The tick of a message to `peer` (a bare JID): whose phone has it. */
static const char *tick(courier_state_t s, const char *peer, char *buf,
                        size_t len)
{
    int name = (int)strcspn(peer, "@");
    switch (s) {
    case COURIER_QUEUED: return "…   sending";
    case COURIER_SENT: return "…✓  sending (the server has it)";
    case COURIER_OFFLINE:
        snprintf(buf, len, "✓   delivered (stored for offline %.*s)", name,
                 peer);
        return buf;
    case COURIER_DELIVERED:
        snprintf(buf, len, "✓✓  delivered to %.*s's phone", name, peer);
        return buf;
    case COURIER_DISPLAYED: return "✓✓  read";
    case COURIER_FAILED: return "✗   failed";
    }
    return "?";
}

static int index_of(const char *id)
{
    for (int i = 0; i < n_ids; i++)
        if (strcmp(ids[i], id) == 0)
            return i;
    return -1;
}

static void on_state(void *ud, const char *id, const char *peer,
                     courier_state_t s)
{
    person_t *p = ud;
    char buf[128];
    pthread_mutex_lock(&mu);
    int i = index_of(id);
    const char *text = i >= 0 ? texts[i]
                       : strcmp(id, reply_id) == 0 ? reply_text : id;
    pthread_mutex_unlock(&mu);
    if (quiet_states && s != COURIER_FAILED)
        return;
    if (s == COURIER_FAILED) {
        courier_info_t info;
        courier_get_info(p->c, id, &info);
        say("%s: \"%s\"  %s (%s)", p->name, text,
            tick(s, peer, buf, sizeof(buf)), info.reason);
    } else {
        say("%s: \"%s\"  %s", p->name, text,
            tick(s, peer, buf, sizeof(buf)));
    }
}

static void on_message(void *ud, const courier_message_t *m)
{
    person_t *p = ud;
    if (strcmp(p->name, "alice") == 0) {
        alice_got_reply = 1;
        say("alice's app shows: \"%s\"", m->body);
        return;
    }
    pthread_mutex_lock(&mu);
    int k;
    for (k = 0; k < n_seen && strcmp(seen[k], m->id) != 0; k++)
        ;
    if (k == n_seen && n_seen < MAX_IDS)
        snprintf(seen[n_seen++], COURIER_ID_MAX, "%s", m->id);
    if (k < MAX_IDS && ++seen_count[k] > 1)
        duplicates++;
    pthread_mutex_unlock(&mu);
    if (m->meta[0])
        say("%s's app shows: %s\"%s\"  with meta %s", p->name,
            m->kind == COURIER_VOICE ? "a voice note " : "", m->body,
            m->meta);
    else
        say("%s's app shows: \"%s\"", p->name, m->body);
}

/* XEP-0424: the sender took a message back; the app removes it. */
static void on_retract(void *ud, const char *peer, const char *id)
{
    person_t *p = ud;
    pthread_mutex_lock(&mu);
    int i = index_of(id);
    const char *text = i >= 0 ? texts[i] : id;
    if (strcmp(id, retracted_id) == 0)
        bob_retractions++;
    pthread_mutex_unlock(&mu);
    int name = (int)strcspn(peer, "@");
    say("%s's app: %.*s retracted \"%s\": removed from the screen",
        p->name, name, peer, text);
}

static void on_link(void *ud, courier_link_t l)
{
    person_t *p = ud;
    static const char *names[] = { "offline", "connecting", "online" };
    say("%s is %s", p->name, names[l]);
}

static const courier_callbacks_t cbs = { .on_state = on_state,
                                         .on_message = on_message,
                                         .on_link = on_link,
                                         .on_retract = on_retract };

static void open_person(person_t *p, const char *name, unsigned short port,
                        int quiet)
{
    char jid[128], pw[64];
    p->name = name;
    snprintf(p->db, sizeof(p->db), "%s/%s.db", env("COURIER_TEST_DIR"), name);
    snprintf(jid, sizeof(jid), "%s@%s", name, env("COURIER_TEST_DOMAIN"));
    snprintf(pw, sizeof(pw), "pw-%s", name);
    courier_config_t cfg;
    courier_config_init(&cfg);
    cfg.jid = jid;
    cfg.password = pw;
    cfg.host = "127.0.0.1";
    cfg.port = port;
    cfg.ca_file = env("COURIER_TEST_CA");
    cfg.db_path = p->db;
    cfg.reconnect_min_ms = 200;
    cfg.reconnect_max_ms = 2000;
    courier_callbacks_t cb = cbs;
    if (quiet)
        cb = (courier_callbacks_t){ 0 };
    if (courier_open(&p->c, &cfg, &cb, p) != COURIER_OK) {
        fprintf(stderr, "demo: open %s: %s\n", name, courier_last_error());
        exit(1);
    }
}

static void send_text(person_t *from, const char *to, const char *text)
{
    pthread_mutex_lock(&mu);
    int i = n_ids;
    pthread_mutex_unlock(&mu);
    if (i >= MAX_IDS)
        return;
    snprintf(texts[i], sizeof(texts[i]), "%s", text);
    if (courier_send_text(from->c, to, text, ids[i]) != COURIER_OK) {
        fprintf(stderr, "demo: send: %s\n", courier_last_error());
        exit(1);
    }
    pthread_mutex_lock(&mu);
    n_ids++;
    pthread_mutex_unlock(&mu);
}

/* Act 7: a page of the history, as a chat screen draws it. */
typedef struct {
    courier_entry_t e[8];
    char id[8][COURIER_ID_MAX], body[8][96], meta[8][64];
    int n;
} page_t;

static int take_entry(void *ud, const courier_entry_t *e)
{
    page_t *pg = ud;
    if (pg->n == 8)
        return 1;
    int k = pg->n++;
    pg->e[k] = *e;
    snprintf(pg->id[k], sizeof(pg->id[k]), "%s", e->id);
    snprintf(pg->body[k], sizeof(pg->body[k]), "%s", e->body);
    snprintf(pg->meta[k], sizeof(pg->meta[k]), "%s", e->meta);
    return 0; /* strings are valid only here: copied */
}

/* Print `who`'s newest `limit` (<= 8) messages with `peer`, oldest
 * first, from the store. Returns how many, or -1. */
static int show_history(person_t *who, const char *peer, unsigned limit,
                        page_t *pg)
{
    memset(pg, 0, sizeof(*pg));
    int rc = courier_history(who->c, peer, 0, limit, take_entry, pg);
    if (rc != COURIER_OK) {
        say("%s: history: %s (%s)", who->name, courier_strerror(rc),
            courier_last_error());
        return -1;
    }
    int name = (int)strcspn(peer, "@");
    say("%s's chat screen, drawn from the store (courier_history, newest "
        "%u, shown oldest first):", who->name, limit);
    for (int k = pg->n - 1; k >= 0; k--) {
        const courier_entry_t *e = &pg->e[k];
        char text[200], buf[128];
        if (e->retracted)
            snprintf(text, sizeof(text), "(retracted)");
        else if (pg->meta[k][0])
            snprintf(text, sizeof(text), "%s%s  %s",
                     e->kind == COURIER_VOICE ? "[voice] " : "",
                     pg->body[k], pg->meta[k]);
        else
            snprintf(text, sizeof(text), "%s", pg->body[k]);
        /* A retracted one keeps the tick it reached: delivered, then
         * taken back. */
        if (e->dir == COURIER_DIR_OUT)
            printf("             seq %-3lld me    > %-48s %s\n",
                   (long long)e->seq, text,
                   tick(e->state, peer, buf, sizeof(buf)));
        else
            printf("             seq %-3lld %-5.*s < %-48s %s\n",
                   (long long)e->seq, name, peer, text,
                   e->retracted ? "(not counted as unread)"
                   : e->state == COURIER_DISPLAYED ? "read" : "unread");
    }
    fflush(stdout);
    return pg->n;
}

static int count_unread(void *ud, const courier_conversation_t *cv)
{
    say("bob's conversation list (courier_conversations): %s, %u unread",
        cv->peer, cv->unread);
    (void)ud;
    return 0;
}

/* The retracted message's entry in `p`'s store: retracted, no body. */
static int find_retracted(void *ud, const courier_entry_t *e)
{
    int *ok = ud;
    if (strcmp(e->id, retracted_id) == 0) {
        *ok = e->retracted && e->body[0] == '\0';
        return 1;
    }
    return 0;
}

static int state_at_least(person_t *p, int from, int to, courier_state_t s)
{
    for (int i = from; i < to; i++) {
        courier_state_t cur;
        if (courier_get_state(p->c, ids[i], &cur) != COURIER_OK ||
            cur == COURIER_FAILED || cur < s)
            return 0;
    }
    return 1;
}

static int wait_states(person_t *p, int from, int to, courier_state_t s,
                       int seconds)
{
    for (int i = 0; i < seconds * 50; i++) {
        if (state_at_least(p, from, to, s))
            return 1;
        usleep(20000);
    }
    return 0;
}

/* The process that is killed in act 5: alice on her own store. */
static int killed_sender(const char *bob)
{
    person_t a;
    open_person(&a, "alice", (unsigned short)atoi(env("COURIER_TEST_PORT")),
                1);
    courier_start(a.c);
    char id[COURIER_ID_MAX], text[64];
    for (int i = 1; i <= 40; i++) {
        snprintf(text, sizeof(text), "after-crash note %d", i);
        if (courier_send_text(a.c, bob, text, id) != COURIER_OK)
            return 1;
        printf("%s %s\n", id, text); /* printed once durable */
        fflush(stdout);
        usleep(20000);
    }
    pause();
    return 0;
}

/* "ID TEXT\n" from the killed sender: a message it was told is stored. */
static int take_accepted(char *line)
{
    char *sp = strchr(line, ' ');
    if (!sp || n_ids >= MAX_IDS)
        return 0;
    *sp = '\0';
    sp[strcspn(sp + 1, "\n") + 1] = '\0';
    snprintf(ids[n_ids], COURIER_ID_MAX, "%.127s", line);
    snprintf(texts[n_ids], sizeof(texts[n_ids]), "%.63s", sp + 1);
    n_ids++;
    return 1;
}

int main(int argc, char **argv)
{
    char bob[128];
    clock_gettime(CLOCK_MONOTONIC, &t0);
    snprintf(bob, sizeof(bob), "bob@%s", env("COURIER_TEST_DOMAIN"));
    if (argc == 2 && strcmp(argv[1], "--killed-sender") == 0)
        return killed_sender(bob);
    signal(SIGPIPE, SIG_IGN);
    unsigned short port = (unsigned short)atoi(env("COURIER_TEST_PORT"));
    relay_t *relay = relay_start(port); /* to cut alice's link in act 4 */
    if (!relay)
        return 1;
    printf("libcourier demo: alice and bob on a local Prosody "
           "(127.0.0.1:%u, TLS verified against a private CA).\n"
           "Ticks: …  sending   …✓ server has it   ✓✓ delivered   "
           "✓✓ read   ✗ failed\n", port);

    person_t alice, b;
    open_person(&alice, "alice", relay_port(relay), 0);
    open_person(&b, "bob", port, 0);

    courier_start(alice.c);
    for (int i = 0; i < 500; i++) {
        courier_link_t l;
        if (courier_get_link(alice.c, &l) == COURIER_OK &&
            l == COURIER_LINK_ONLINE)
            break;
        usleep(20000);
    }

    act("1. bob is offline; alice writes to him");
    send_text(&alice, bob, "Hi Bob, are you there?");
    send_text(&alice, bob, "Lunch at noon?");
    send_text(&alice, bob, "I'll book the table.");
    int ok = wait_states(&alice, 0, 3, COURIER_SENT, 15);

    act("2. bob comes online: delivered, each shown once");
    courier_start(b.c);
    ok &= wait_states(&alice, 0, 3, COURIER_DELIVERED, 15);

    act("3. bob reads the second message, then answers");
    char alice_jid[128];
    snprintf(alice_jid, sizeof(alice_jid), "alice@%s",
             env("COURIER_TEST_DOMAIN"));
    courier_mark_displayed(b.c, alice_jid, ids[1]);
    ok &= wait_states(&alice, 0, 2, COURIER_DISPLAYED, 10);
    say("(a chat marker for the second message covers the first one too)");
    snprintf(reply_text, sizeof(reply_text), "Yes! Noon works.");
    courier_send_text(b.c, alice_jid, reply_text, reply_id);
    ok &= wait_states(&alice, 2, 3, COURIER_DISPLAYED, 10);
    say("bob answered, so what his phone had is read too (implicit read)");
    for (int i = 0; i < 250 && !alice_got_reply; i++)
        usleep(20000);

    act("4. the link under alice is cut in the middle of a burst of 20");
    quiet_states = 1;
    int burst = n_ids;
    char text[64];
    for (int i = 1; i <= 20; i++) {
        snprintf(text, sizeof(text), "burst message %d", i);
        send_text(&alice, bob, text);
        if (i == 8) {
            relay_cut(relay);
            say("-- network cut (alice's TCP connection killed) --");
        }
    }
    ok &= wait_states(&alice, burst, n_ids, COURIER_DELIVERED, 30);
    quiet_states = 0;
    say("all 20 burst messages delivered (failed ones were resent with "
        "their original ids)");

    act("5. alice's app is killed (SIGKILL) while sending, then restarted");
    courier_close(alice.c);
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execl(argv[0], argv[0], "--killed-sender", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *in = fdopen(fds[0], "r");
    char line[256];
    int before = n_ids, accepted = 0;
    while (accepted < 12 && fgets(line, sizeof(line), in))
        accepted += take_accepted(line);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* lines written before the kill landed were accepted too */
    while (fgets(line, sizeof(line), in))
        take_accepted(line);
    fclose(in);
    say("-- killed after %d messages were accepted --", n_ids - before);
    quiet_states = 1;
    open_person(&alice, "alice", relay_port(relay), 0);
    courier_start(alice.c);
    ok &= wait_states(&alice, before, n_ids, COURIER_DELIVERED, 30);
    quiet_states = 0;
    say("restarted on the same store: all %d delivered", n_ids - before);

    act("6. alice sends a voice note with meta, then retracts a message");
    /* courier_send: the app's own id (here the media id) and meta. */
    char voice_id[COURIER_ID_MAX];
    courier_outgoing_t voice = {
        .to = bob, .kind = COURIER_VOICE,
        .body = "https://cdn.test/42.opus", .id = "voice-42",
        .meta = "{\"seconds\":4}"
    };
    pthread_mutex_lock(&mu);
    int vi = n_ids;
    snprintf(texts[vi], sizeof(texts[vi]), "[voice] 42.opus");
    pthread_mutex_unlock(&mu);
    if (courier_send(alice.c, &voice, voice_id) != COURIER_OK) {
        fprintf(stderr, "demo: send: %s\n", courier_last_error());
        return 1;
    }
    pthread_mutex_lock(&mu);
    snprintf(ids[vi], COURIER_ID_MAX, "%s", voice_id);
    n_ids++;
    pthread_mutex_unlock(&mu);
    int ri = n_ids;
    send_text(&alice, bob, "The door code is 4711");
    ok &= wait_states(&alice, vi, n_ids, COURIER_DELIVERED, 15);
    say("alice: that was meant for someone else: courier_retract()");
    pthread_mutex_lock(&mu);
    snprintf(retracted_id, sizeof(retracted_id), "%s", ids[ri]);
    pthread_mutex_unlock(&mu);
    int rrc = courier_retract(alice.c, ids[ri]);
    if (rrc != COURIER_OK) {
        say("alice: retract: %s (%s)", courier_strerror(rrc),
            courier_last_error());
        ok = 0;
    }
    int got_retract = 0;
    for (int i = 0; i < 500 && !got_retract; i++) {
        pthread_mutex_lock(&mu);
        got_retract = bob_retractions;
        pthread_mutex_unlock(&mu);
        if (!got_retract)
            usleep(20000);
    }
    int marked = 0;
    courier_history(b.c, alice_jid, 0, 10, find_retracted, &marked);
    say("bob's store: the entry is marked retracted, its text is gone: %s",
        marked ? "yes" : "NO");
    rrc = courier_retract(alice.c, ids[ri]);
    say("alice retracts it again: %s (%s)", courier_strerror(rrc),
        courier_last_error());
    ok &= got_retract == 1 && marked && rrc == COURIER_ESTATE;

    act("7. both apps restart: the chat screens come from the store");
    courier_close(alice.c);
    courier_close(b.c);
    say("-- both handles closed; opened again, offline --");
    open_person(&alice, "alice", relay_port(relay), 0);
    open_person(&b, "bob", port, 0);
    page_t pg;
    int shown = show_history(&alice, bob, 4, &pg);
    ok &= shown == 4 && pg.e[0].retracted &&
          strcmp(pg.id[1], voice_id) == 0;
    shown = show_history(&b, alice_jid, 4, &pg);
    ok &= shown == 4 && pg.e[0].retracted &&
          strcmp(pg.meta[1], "{\"seconds\":4}") == 0;
    courier_conversations(b.c, count_unread, NULL);

    usleep(500000); /* a late duplicate would show up now */
    int delivered = 0, shown_once = 0;
    for (int i = 0; i < n_ids; i++) {
        courier_state_t s;
        if (courier_get_state(alice.c, ids[i], &s) == COURIER_OK &&
            (s == COURIER_DELIVERED || s == COURIER_DISPLAYED))
            delivered++;
        pthread_mutex_lock(&mu);
        for (int k = 0; k < n_seen; k++)
            if (strcmp(seen[k], ids[i]) == 0 && seen_count[k] == 1)
                shown_once++;
        pthread_mutex_unlock(&mu);
    }
    courier_close(alice.c);
    courier_close(b.c);
    relay_stop(relay);
    ok &= delivered == n_ids && shown_once == n_ids && duplicates == 0;
    printf("\nsummary: %d sent, %d delivered, %d shown to bob exactly once, "
           "%d duplicates, %d lost -> %s\n", n_ids, delivered, shown_once,
           duplicates, n_ids - delivered, ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
}
