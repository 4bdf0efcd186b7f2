/* SPDX-License-Identifier: MIT */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "util.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
/* Where ids come from: arc4random_buf on Apple, getrandom (glibc 2.25,
 * Android API 28), else /dev/urandom (older Android; forced by
 * -DCOURIER_URANDOM for make check-portable). */
#if defined(__ANDROID__) && defined(__ANDROID_API__) && __ANDROID_API__ < 28
#define COURIER_URANDOM 1
#endif
#if defined(__APPLE__)
#include <stdlib.h>
#elif defined(COURIER_URANDOM)
#include <fcntl.h>
#include <unistd.h>
#else
#include <sys/random.h>
#endif

#include <utf8proc.h>

#include "courier.h"

/* Fault injection for tests; atomics so threads may allocate too. */
static atomic_ulong alloc_count;
static atomic_ulong alloc_fail_at;

void util_fail_alloc_after(unsigned long n)
{
    atomic_store(&alloc_count, 0);
    atomic_store(&alloc_fail_at, n);
}

unsigned long util_alloc_count(void)
{
    return atomic_load(&alloc_count);
}

static int alloc_should_fail(void)
{
    unsigned long n = atomic_fetch_add(&alloc_count, 1) + 1;
    unsigned long at = atomic_load(&alloc_fail_at);
    return at != 0 && n >= at;
}

void *util_malloc(size_t n)
{
    if (alloc_should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *util_calloc(size_t n, size_t size)
{
    if (alloc_should_fail())
        return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

void *util_realloc(void *p, size_t n)
{
    if (alloc_should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

char *util_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = util_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void util_free(void *p)
{
    free(p);
}

int util_strlcpy(char *dst, const char *src, size_t size)
{
    size_t n;
    if (size == 0)
        return -1;
    n = strlen(src);
    if (n >= size) {
        dst[0] = '\0';
        return -1;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

int util_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t cp;
        int extra;
        if (*p < 0x80) {
            p++;
            continue;
        } else if ((*p & 0xE0) == 0xC0) {
            cp = *p & 0x1F;
            extra = 1;
        } else if ((*p & 0xF0) == 0xE0) {
            cp = *p & 0x0F;
            extra = 2;
        } else if ((*p & 0xF8) == 0xF0) {
            cp = *p & 0x07;
            extra = 3;
        } else {
            return 0;
        }
        p++;
        for (int i = 0; i < extra; i++, p++) {
            if ((*p & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (*p & 0x3F);
        }
        if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) ||
            (extra == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
    }
    return 1;
}

int util_xml_text_valid(const char *s)
{
    if (!util_utf8_valid(s))
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r')
            return 0;
        /* U+FFFE / U+FFFF are EF BF BE / EF BF BF */
        if (p[0] == 0xEF && p[1] == 0xBF && (p[2] == 0xBE || p[2] == 0xBF))
            return 0;
    }
    return 1;
}

static int jid_char_ok(unsigned char ch)
{
    /* RFC 7622 forbids these in a localpart; spaces and controls nowhere. */
    return ch > 0x20 && ch != 0x7F && ch != '"' && ch != '&' && ch != '\'' &&
           ch != ':' && ch != '<' && ch != '>' && ch != '@' && ch != '/';
}

/* Fold one part of a JID as the servers' nodeprep/nameprep do (RFC 3491
 * B.1 and B.2, NFKC): utf8proc's NFKC_Casefold, non-ASCII included,
 * default-ignorables dropped. Without allocating: a stack buffer of code
 * points, re-encoded in place. Writes `out` (NUL-terminated, < size bytes);
 * returns its length, or -1 (folds to nothing, too long, or to a forbidden
 * character such as U+FF20 -> '@'). */
static long fold_part(const char *s, size_t len, char *out, size_t size)
{
    utf8proc_int32_t cp[2 * COURIER_JID_MAX + 1];
    /* utf8proc_NFKC_Casefold()'s options; both steps take them all, as
     * utf8proc_map() does (decompose maps nothing without COMPOSE) */
    const utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPAT |
                                  UTF8PROC_COMPOSE | UTF8PROC_CASEFOLD |
                                  UTF8PROC_IGNORE;
    if (len > COURIER_JID_MAX)
        return -1;
    utf8proc_ssize_t n = utf8proc_decompose(
        (const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, cp,
        2 * COURIER_JID_MAX, opt);
    if (n <= 0 || n > 2 * COURIER_JID_MAX)
        return -1;
    /* 4 bytes per code point at most: the UTF-8 fits in place */
    n = utf8proc_reencode(cp, n, opt);
    if (n <= 0 || (size_t)n >= size)
        return -1;
    const unsigned char *u = (const unsigned char *)cp;
    for (utf8proc_ssize_t i = 0; i < n; i++)
        if (!jid_char_ok(u[i]))
            return -1;
    memcpy(out, u, (size_t)n + 1);
    return (long)n;
}

int util_jid_bare(const char *jid, char *out, size_t size)
{
    const char *slash, *at, *end;
    size_t pos = 0;
    long n;

    if (!jid || !out || size == 0 || !util_utf8_valid(jid))
        goto bad;
    slash = strchr(jid, '/');
    end = slash ? slash : jid + strlen(jid);
    if (slash && slash[1] == '\0')
        goto bad; /* empty resource */
    at = memchr(jid, '@', (size_t)(end - jid));
    if (at && (at == jid || at + 1 == end))
        goto bad; /* empty localpart or domain */
    if (at && memchr(at + 1, '@', (size_t)(end - at - 1)))
        goto bad;
    if (at) {
        n = fold_part(jid, (size_t)(at - jid), out, size - 1);
        if (n < 0)
            goto bad;
        pos = (size_t)n;
        out[pos++] = '@';
    }
    {
        const char *d = at ? at + 1 : jid;
        n = fold_part(d, (size_t)(end - d), out + pos, size - pos);
        if (n < 0)
            goto bad;
        char *dom = out + pos;
        size_t dl = (size_t)n;
        /* RFC 7622 3.2: a domain's final dot is stripped before comparing */
        if (dl > 1 && dom[dl - 1] == '.')
            dom[--dl] = '\0';
        if (dom[0] == '.' || dom[dl - 1] == '.')
            goto bad;
    }
    return 0;
bad:
    if (out && size)
        out[0] = '\0';
    return -1;
}

int util_from_own_server(const char *from, const char *self)
{
    char bare[COURIER_JID_MAX];
    if (!from)
        return 1;
    if (strchr(from, '/') || util_jid_bare(from, bare, sizeof(bare)) != 0)
        return 0;
    return strcmp(bare, self) == 0 ||
           strcmp(bare, util_jid_domain(self)) == 0;
}

const char *util_jid_domain(const char *bare)
{
    const char *at = strchr(bare, '@');
    return at ? at + 1 : bare;
}

int util_id_valid(const char *id)
{
    size_t n;
    if (!id)
        return 0;
    n = strlen(id);
    if (n == 0 || n >= COURIER_ID_MAX || !util_utf8_valid(id))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7F)
            return 0;
    return 1;
}

/* behaviour.md §10: timers measure time that passes while the device
 * sleeps, so a 30 s ping is 30 s of the user's time.
 * - Linux/Android: CLOCK_MONOTONIC stops during suspend; CLOCK_BOOTTIME
 *   is the same clock plus the time suspended.
 * - Apple: clock_gettime(3) says CLOCK_MONOTONIC keeps counting while the
 *   system is asleep and CLOCK_UPTIME_RAW (mach_absolute_time) does not;
 *   Apple's documentation of mach_continuous_time, the clock that counts
 *   sleep, names clock_gettime_nsec_np(CLOCK_MONOTONIC_RAW) as its
 *   equivalent. CLOCK_MONOTONIC_RAW is that clock, read from the commpage
 *   without a system call, and not slewed by NTP.
 * - Elsewhere: CLOCK_MONOTONIC. */
#if defined(__APPLE__)
#define MONO_CLOCK CLOCK_MONOTONIC_RAW
#elif defined(CLOCK_BOOTTIME)
#define MONO_CLOCK CLOCK_BOOTTIME
#else
#define MONO_CLOCK CLOCK_MONOTONIC
#endif

clockid_t util_mono_clock(void)
{
    return MONO_CLOCK;
}

int64_t util_mono_ms(void)
{
    struct timespec ts;
    /* A kernel older than 2.6.39 has no CLOCK_BOOTTIME: it fails on every
     * call alike, so the fallback never mixes two clocks. */
    if (clock_gettime(MONO_CLOCK, &ts) != 0)
        clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#if !defined(__APPLE__)
static ssize_t random_fill(unsigned char *buf, size_t len)
{
#if defined(COURIER_URANDOM)
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t r = read(fd, buf, len);
    close(fd);
    return r;
#else
    return getrandom(buf, len, 0);
#endif
}
#endif

void util_new_id(char *out, size_t size)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[16];
#if defined(__APPLE__)
    arc4random_buf(raw, sizeof(raw)); /* cannot fail */
#else
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t r = random_fill(raw + got, sizeof(raw) - got);
        if (r > 0) {
            got += (size_t)r;
        } else {
            /* getrandom cannot fail for 16 bytes once seeded (nor
             * /dev/urandom, unless fds ran out); fall back to the clock
             * so an id is still unique per process. */
            uint64_t h = util_fnv1a(UTIL_FNV_INIT, &got, sizeof(got));
            int64_t t = util_mono_ms();
            h = util_fnv1a(h, &t, sizeof(t));
            raw[got++] = (unsigned char)h;
        }
    }
#endif
    size_t n = 0;
    for (size_t i = 0; i < sizeof(raw) && n + 1 < size; i++)
        out[n++] = alphabet[raw[i] & 63];
    /* 16 chars of 6 bits = 96 bits of randomness */
    if (size)
        out[n < size ? n : size - 1] = '\0';
}

uint64_t util_fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static _Thread_local char last_error[256];

int util_set_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    return code;
}

const char *util_last_error(void)
{
    return last_error;
}

void util_clear_error(void)
{
    last_error[0] = '\0';
}
