/* SPDX-License-Identifier: MIT */
/* A hostile XMPP server of the tests' own on 127.0.0.1, plaintext: it logs
 * a client in (SASL PLAIN, bind, refuses stream management) and then sends
 * what the test asks for — things no real server sends (behaviour.md §11). Used by
 * the hostile-input suite and the whole-path fuzz harness. */
#ifndef COURIER_TEST_FAKESERVER_H
#define COURIER_TEST_FAKESERVER_H

#include <stddef.h>
#include <stdint.h>

typedef struct fakesrv fakesrv_t;

/* Writes the hostile part to `fd` once the client is online; returns when
 * done or when a write fails (the client cut the link). Blocking writes
 * with MSG_NOSIGNAL; return -1 to stop on error. */
typedef int (*fake_gen_fn)(int fd, void *ud);

typedef struct {
    const char *prolog;     /* sent before the post-login stream header
                               (a DOCTYPE, say), or NULL */
    const void *payload;    /* sent once the client is online, or NULL */
    size_t payload_len;
    fake_gen_fn gen;        /* then this, if set */
    void *gen_ud;
    int no_settle;          /* 1: no 100 ms pause before the payload */
    const char *features_extra; /* inside the post-login stream features
                                   (before login completes), or NULL */
} fake_script_t;

/* Listen on 127.0.0.1 (ephemeral port); every connection plays `script`
 * (copied by reference: keep it alive until fakesrv_stop). */
fakesrv_t *fakesrv_start(const fake_script_t *script);
unsigned short fakesrv_port(const fakesrv_t *f);
/* Monotonic ms when the hostile part started on the latest connection
 * (0 = not yet), and when that connection was closed by the client
 * (EOF or reset seen; 0 = still open). */
int64_t fakesrv_payload_at(fakesrv_t *f);
int64_t fakesrv_closed_at(fakesrv_t *f);
int fakesrv_accepted(fakesrv_t *f);
void fakesrv_stop(fakesrv_t *f);

int64_t fake_now_ms(void);
/* Write all of buf (MSG_NOSIGNAL); -1 once the peer is gone. */
int fake_write_all(int fd, const void *buf, size_t len);

#endif
