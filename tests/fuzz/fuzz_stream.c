/* SPDX-License-Identifier: MIT */
/* Fuzz target for the whole path (issue 13 item 8): arbitrary server bytes
 * through a real TCP stream into the whole library — libstrophe's parser
 * (expat), the session, codec, core, store and callbacks. A fake server of
 * the tests' own (tests/integration/fakeserver.c, plaintext, 127.0.0.1)
 * logs a libcourier client in, then sends the input.
 * Input format: bytes before the first NUL (if any) are a prolog, sent
 * where an XML declaration and a DOCTYPE may stand (before the post-login
 * stream header); the rest is sent once the client is online.
 * `make check` (asan) replays tests/fuzz/stream_corpus through replay.c;
 * `make fuzz` runs it under libFuzzer. Besides what the sanitizers catch,
 * courier_close must return within 5 s whatever was sent (behaviour.md §11). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "courier.h"
#include "fakeserver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fakesrv_t *srv;
static fake_script_t script;
static char db[256];
static char *prolog_buf;

static void on_log(void *ud, int level, const char *line)
{
    (void)ud;
    if (getenv("COURIER_FUZZ_VERBOSE"))
        fprintf(stderr, "[%d] %s\n", level, line);
}

static void setup(void)
{
    if (srv)
        return;
    const char *dir = getenv("TMPDIR");
    snprintf(db, sizeof(db), "%s/courier-fuzz-stream-%ld.db",
             dir ? dir : "/tmp", (long)getpid());
    script.no_settle = 1;
    srv = fakesrv_start(&script);
    if (!srv)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    const uint8_t *nul = memchr(data, '\0', size);
    free(prolog_buf);
    prolog_buf = NULL;
    if (nul) {
        size_t n = (size_t)(nul - data);
        prolog_buf = malloc(n + 1);
        if (!prolog_buf)
            abort();
        memcpy(prolog_buf, data, n);
        prolog_buf[n] = '\0';
        script.prolog = prolog_buf;
        script.payload = nul + 1;
        script.payload_len = size - n - 1;
    } else {
        script.prolog = NULL;
        script.payload = data;
        script.payload_len = size;
    }

    courier_config_t cfg;
    courier_config_init(&cfg);
    cfg.db_path = db;
    cfg.jid = "alice@courier.test";
    cfg.password = "pw";
    cfg.host = "127.0.0.1";
    cfg.port = fakesrv_port(srv);
    cfg.allow_plaintext = 1;
    cfg.reconnect_min_ms = 10000; /* one connection per input */
    cfg.reconnect_max_ms = 20000;
    courier_callbacks_t cb = { .on_log = on_log };
    courier_t *c = NULL;
    if (courier_open(&c, &cfg, &cb, NULL) != COURIER_OK)
        abort();
    int accepted = fakesrv_accepted(srv);
    int64_t t0 = fake_now_ms();
    courier_start(c);
    /* Until the input went out and the client cut the link or had 150 ms
     * to chew on it (a prolog the client refuses ends the login early). */
    int64_t sent_at = 0;
    while (fake_now_ms() - t0 < 3000) {
        if (fakesrv_accepted(srv) > accepted) {
            int64_t p = fakesrv_payload_at(srv);
            if (p && !sent_at)
                sent_at = fake_now_ms();
            if (p && fakesrv_closed_at(srv))
                break;
            if (sent_at && fake_now_ms() - sent_at > 150)
                break;
        }
        usleep(2000);
    }
    int64_t t1 = fake_now_ms();
    courier_close(c);
    int64_t close_ms = fake_now_ms() - t1;
    if (close_ms > 5000) {
        fprintf(stderr, "courier_close took %lld ms\n", (long long)close_ms);
        abort();
    }
    return 0;
}
