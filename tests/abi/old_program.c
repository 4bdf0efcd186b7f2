/* SPDX-License-Identifier: MIT */
/*
 * A program built against the 0.1 header (tests/abi/v0_1/courier.h, the
 * header as of commit bb7c198, before behaviour.md §9 appended app_confirms,
 * meta and on_retract), run against today's library: the public ABI only
 * grows. Its structs are shorter than today's; canaries after them catch
 * a library that writes past them (courier_config_init), and under ASan a
 * read past them (courier_open copying callbacks) is an error too.
 * Usage: old_program DIR (a writable temporary directory).
 */
#include <stdio.h>
#include <string.h>

#include "courier.h" /* the 0.1 header: built with -Itests/abi/v0_1 only */

#define CANARY 0xA5

static struct {
    courier_config_t cfg;
    unsigned char canary[256];
} c_cfg;

static int logs;

static void on_log(void *ud, int level, const char *line)
{
    (void)ud;
    (void)level;
    (void)line;
    logs++;
}

static int canary_intact(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != CANARY)
            return 0;
    return 1;
}

int main(int argc, char **argv)
{
    char db[512];
    if (argc != 2)
        return 2;
    snprintf(db, sizeof(db), "%s/old.db", argv[1]);
    memset(&c_cfg, CANARY, sizeof(c_cfg));
    courier_config_init(&c_cfg.cfg);
    if (!canary_intact(c_cfg.canary, sizeof(c_cfg.canary))) {
        fprintf(stderr, "courier_config_init wrote past a 0.1 config\n");
        return 1;
    }
    if (c_cfg.cfg.version != 1 || c_cfg.cfg.max_in_flight != 100) {
        fprintf(stderr, "config version %u, max_in_flight %u\n",
                c_cfg.cfg.version, c_cfg.cfg.max_in_flight);
        return 1;
    }
    c_cfg.cfg.jid = "alice@example.com";
    c_cfg.cfg.password = "x";
    c_cfg.cfg.db_path = db;
    c_cfg.cfg.host = "127.0.0.1";
    c_cfg.cfg.port = 1;
    /* on_log is the last member the 0.1 header has; the library must not
     * read a callback after it */
    courier_callbacks_t cb = { .on_log = on_log };
    courier_t *c = NULL;
    int rc = courier_open(&c, &c_cfg.cfg, &cb, NULL);
    if (rc != COURIER_OK) {
        fprintf(stderr, "open: %s (%s)\n", courier_strerror(rc),
                courier_last_error());
        return 1;
    }
    char id[COURIER_ID_MAX];
    courier_info_t info;
    rc = courier_send_text(c, "bob@example.com", "hello", id);
    if (rc == COURIER_OK)
        rc = courier_get_info(c, id, &info);
    if (rc == COURIER_OK)
        rc = courier_run_once(c, 0); /* callbacks dispatched: on_log only */
    courier_close(c);
    if (rc != COURIER_OK) {
        fprintf(stderr, "%s (%s)\n", courier_strerror(rc),
                courier_last_error());
        return 1;
    }
    printf("old program: ok (message %s is %s, %d log lines)\n", id,
           courier_state_name(info.state), logs);
    return 0;
}
