/* SPDX-License-Identifier: MIT */
/* make bench: shared helpers of the benchmark program (bench.c runs the
 * table, clients.c holds the client processes it forks and execs). */
#ifndef COURIER_BENCH_H
#define COURIER_BENCH_H

#include <stddef.h>
#include <stdint.h>

/* ---- measuring -------------------------------------------------------- */

double bench_mono(void);       /* CLOCK_MONOTONIC, seconds */
double bench_cpu(void);        /* user + sys of the process, seconds */
long bench_rss_kb(void);       /* resident set, KiB (/proc/self/statm) */
/* Voluntary context switches (= times it blocked, so wake-ups) of every
 * thread of this process but the calling one (/proc/self/task). */
long bench_vcsw_other_threads(void);
/* user + sys of another process (/proc/PID/stat), seconds; -1 if gone. */
double bench_cpu_pid(long pid);
/* Heap in use (mallinfo2: arena + mmapped), bytes. */
double bench_heap_bytes(void);
void bench_sleep(double s);

/* Sort `v` in place and return its p-th percentile (0..100), nearest rank;
 * 0 for an empty array. */
double bench_pct(double *v, size_t n, double p);
double bench_median(const double *v, size_t n); /* copies, NULL-safe */

void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2),
                                                    noreturn));
const char *bench_env(const char *k, const char *dflt);
long bench_env_long(const char *k, long dflt);

/* Random id of 16 characters from the same alphabet as the library's. */
void bench_random_id(char out[17]);

/* ---- id -> index map (open addressing, ids copied) ----------------------- */

typedef struct {
    char **ids;
    int *idx;
    size_t cap; /* power of two */
} idmap_t;

void idmap_init(idmap_t *m, size_t n);
void idmap_free(idmap_t *m);
void idmap_put(idmap_t *m, const char *id, int idx);
int idmap_get(const idmap_t *m, const char *id); /* -1 if absent */

/* ---- client modes (clients.c); each returns the process exit code ------- */

int mode_courier_send(int argc, char **argv);
int mode_courier_recv(int argc, char **argv);
int mode_bare_send(int argc, char **argv);
int mode_bare_recv(int argc, char **argv);
int mode_open(int argc, char **argv);
int mode_history(int argc, char **argv);
int mode_unclean(int argc, char **argv);
int mode_crash(int argc, char **argv);
int mode_idle(int argc, char **argv);

#endif /* COURIER_BENCH_H */
