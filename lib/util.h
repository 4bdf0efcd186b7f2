/* SPDX-License-Identifier: MIT */
/* Small helpers shared by every module: allocation, bounded strings,
 * clocks, JID and UTF-8 checks, ids. libc, and utf8proc for JIDs. */
#ifndef COURIER_UTIL_H
#define COURIER_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Allocation goes through these so tests can fail allocation N. */
void *util_malloc(size_t n);
void *util_calloc(size_t n, size_t size);
void *util_realloc(void *p, size_t n);
char *util_strdup(const char *s);
void util_free(void *p);

/* Fault injection: allocation number `n` (1-based, counted from this call)
 * and every later one fail; 0 turns it off. Returns allocations counted. */
void util_fail_alloc_after(unsigned long n);
unsigned long util_alloc_count(void);

/* Copy `src` into `dst` of `size` bytes. Returns 0, or -1 when it does not
 * fit (then `dst` is left as an empty string): never truncates silently. */
int util_strlcpy(char *dst, const char *src, size_t size);

/* 1 if the NUL-terminated `s` is valid UTF-8 (no overlongs, surrogates or
 * code points above U+10FFFF). */
int util_utf8_valid(const char *s);

/* 1 if `s` is valid UTF-8 that XML 1.0 can carry: no control characters
 * other than tab, LF and CR, no U+FFFE/U+FFFF. A body outside this would
 * make the server close the stream, on every resend. */
int util_xml_text_valid(const char *s);

/* Normalise a JID to its bare form into `out` (`size` bytes), compared
 * as the servers compare it: each part NFKC + case folded (non-ASCII too,
 * utf8proc; nodeprep/nameprep-like), a domain's final dot stripped.
 * Accepts "local@domain[/resource]" or "domain[/resource]". Returns 0, or
 * -1 for an empty, oversized or malformed JID (spaces, controls, '@' or
 * '/' misplaced, also once folded; invalid UTF-8). */
int util_jid_bare(const char *jid, char *out, size_t size);

/* The domain part of a bare JID (pointer into `bare`). */
const char *util_jid_domain(const char *bare);

/* 1 if an answer to one of our own requests (an iq with no `to`) comes
 * from our server: no `from`, our domain, or our account's bare JID
 * (`self`, bare). A full JID is a client, the account's other devices
 * included: 0. */
int util_from_own_server(const char *from, const char *self);

/* 1 if `id` is a usable message id: 1..COURIER_ID_MAX-1 bytes of valid
 * UTF-8 without control characters. */
int util_id_valid(const char *id);

/* Clocks in milliseconds. util_mono_ms() is every timer's clock (the
 * engine's and the session's): it counts time the device sleeps
 * (CLOCK_BOOTTIME on Linux/Android, see util.c for Apple), and
 * util_mono_clock() names the clock it reads. */
int64_t util_mono_ms(void);
clockid_t util_mono_clock(void);
int64_t util_wall_ms(void);

/* A fresh random message id: 16 URL-safe characters (96 random bits from
 * getrandom()), NUL-terminated, in `out` of at least 17 bytes. */
void util_new_id(char *out, size_t size);

/* 64-bit FNV-1a, chained: pass the previous hash as `h`
 * (UTIL_FNV_INIT to start). */
#define UTIL_FNV_INIT 0xcbf29ce484222325ULL
uint64_t util_fnv1a(uint64_t h, const void *data, size_t len);

/* Record `code`'s detail for courier_last_error() in this thread's fixed
 * buffer (no allocation, so OOM can be reported). Returns `code`. */
int util_set_error(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *util_last_error(void);
void util_clear_error(void);

#define UTIL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif /* COURIER_UTIL_H */
