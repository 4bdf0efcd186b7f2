/* SPDX-License-Identifier: MIT */
/* Helpers of the benchmark: clocks, rusage, RSS, percentiles, an id map. */
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

double bench_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

double bench_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
}

long bench_rss_kb(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static long status_field(const char *path, const char *key)
{
    char line[256];
    size_t kn = strlen(key);
    long v = -1;
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, kn) == 0 && line[kn] == ':') {
            v = strtol(line + kn + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

long bench_vcsw_other_threads(void)
{
    char path[300];
    long sum = 0, self = (long)gettid();
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9' ||
            strtol(de->d_name, NULL, 10) == self)
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%.32s/status",
                 de->d_name);
        long v = status_field(path, "voluntary_ctxt_switches");
        if (v > 0)
            sum += v;
    }
    closedir(d);
    return sum;
}

double bench_cpu_pid(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* after "pid (comm) ": state is field 3, utime 14, stime 15 */
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                            "%lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

double bench_heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (double)mi.uordblks + (double)mi.hblkhd;
}

void bench_sleep(double s)
{
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_pct(double *v, size_t n, double p)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

double bench_median(const double *v, size_t n)
{
    if (!v || !n)
        return 0;
    double *c = malloc(n * sizeof(*c));
    if (!c)
        bench_die("out of memory");
    memcpy(c, v, n * sizeof(*c));
    qsort(c, n, sizeof(*c), cmp_double);
    double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
    free(c);
    return m;
}

void bench_die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

const char *bench_env(const char *k, const char *dflt)
{
    const char *v = getenv(k);
    return v && v[0] ? v : dflt;
}

long bench_env_long(const char *k, long dflt)
{
    const char *v = getenv(k);
    if (!v || !v[0])
        return dflt;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n <= 0)
        bench_die("%s=%s: a positive integer is expected", k, v);
    return n;
}

void bench_random_id(char out[17])
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[16];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t r = getrandom(raw + got, sizeof(raw) - got, 0);
        if (r > 0)
            got += (size_t)r;
    }
    for (size_t i = 0; i < 16; i++)
        out[i] = alphabet[raw[i] & 63];
    out[16] = '\0';
}

/* ---- id map ------------------------------------------------------------- */

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

void idmap_init(idmap_t *m, size_t n)
{
    m->cap = 16;
    while (m->cap < 2 * n)
        m->cap *= 2;
    m->ids = calloc(m->cap, sizeof(*m->ids));
    m->idx = calloc(m->cap, sizeof(*m->idx));
    if (!m->ids || !m->idx)
        bench_die("out of memory");
}

void idmap_free(idmap_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->ids[i]);
    free(m->ids);
    free(m->idx);
    memset(m, 0, sizeof(*m));
}

void idmap_put(idmap_t *m, const char *id, int idx)
{
    for (size_t i = fnv(id) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->ids[i]) {
            m->ids[i] = strdup(id);
            if (!m->ids[i])
                bench_die("out of memory");
            m->idx[i] = idx;
            return;
        }
        if (strcmp(m->ids[i], id) == 0) {
            m->idx[i] = idx;
            return;
        }
    }
}

int idmap_get(const idmap_t *m, const char *id)
{
    for (size_t i = fnv(id) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->ids[i])
            return -1;
        if (strcmp(m->ids[i], id) == 0)
            return m->idx[i];
    }
}
