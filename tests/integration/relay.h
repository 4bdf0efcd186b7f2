/* SPDX-License-Identifier: MIT */
/* A TCP relay of the tests' own between a client and the real server, on
 * 127.0.0.1: it can cut every connection (a dead link the kernel reports),
 * blackhole them (a silent dead link: sockets stay open, nothing moves) or
 * delay them (everything arrives, late).
 * New connections always pass. */
#ifndef COURIER_TEST_RELAY_H
#define COURIER_TEST_RELAY_H

typedef struct relay relay_t;

/* Listen on 127.0.0.1 (an ephemeral port) and forward to 127.0.0.1:to. */
relay_t *relay_start(unsigned short to);
unsigned short relay_port(const relay_t *r);
/* Close every current connection (both sides). */
void relay_cut(relay_t *r);
/* Stop forwarding on every current connection, keep the sockets open.
 * Returns once the relay has applied it. */
void relay_blackhole(relay_t *r);
/* Hold all traffic for `ms` (a latency spike): nothing is lost, it moves
 * on late, in order. Connections opened meanwhile wait too. */
void relay_delay(relay_t *r, int ms);
/* From now on, a connection whose server side sends `pattern` (e.g.
 * "<proceed") is blackholed right after that chunk: a server that stalls
 * the TLS handshake. NULL turns it off. */
void relay_stall_after(relay_t *r, const char *pattern);
/* Connections accepted so far. */
int relay_accepted(relay_t *r);
void relay_stop(relay_t *r);

#endif
