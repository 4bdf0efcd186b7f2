/* SPDX-License-Identifier: MIT */
/*
 * Platform trust (behaviour.md §10): when OpenSSL cannot verify the
 * server's certificate, the app's on_certificate decides. libstrophe 0.12
 * calls its certfail handler during the handshake with one certificate per
 * failure (the one OpenSSL was at), not the chain, and cannot wait for
 * the app with the leaf in hand; so a connection notes each failure here
 * (trust_note) and goes on with the handshake, and the session decides
 * (trust_decide) once the handshake is over and before any credential is
 * written: the leaf, then the noted certificates in issuer order, go to
 * the app. The name is checked here, never by the app: a leaf that does
 * not match the JID's domain is refused whatever the app would say.
 * Pure OpenSSL and this struct: no session, no libstrophe.
 */
#ifndef COURIER_TRUST_H
#define COURIER_TRUST_H

#include <stddef.h>

#define TRUST_MAX_CERTS 10

typedef struct {
    char *pem[TRUST_MAX_CERTS]; /* failing certificates, as reported */
    size_t n;
    int failed;                 /* OpenSSL reported a failure */
    int overflow;               /* more than TRUST_MAX_CERTS distinct */
    char why[128];              /* OpenSSL's first error text */
} trust_t;

typedef enum {
    TRUST_ACCEPT = 0,
    TRUST_REFUSE_NAME,    /* the leaf does not name the host */
    TRUST_REFUSE_APP,     /* the app said no (or there is no app) */
    TRUST_REFUSE_BROKEN   /* no leaf, unreadable PEM, no memory */
} trust_verdict_t;

/* The app's answer: non-zero accepts. */
typedef int (*trust_ask_fn)(void *ud, const char *host,
                            const char *pem_chain);

void trust_init(trust_t *t);
/* Forget what was noted (a new connection); frees. */
void trust_reset(trust_t *t);
/* OpenSSL could not verify `pem` (`why`: its error text). */
void trust_note(trust_t *t, const char *pem, const char *why);
/* 1 if a failure was noted and no verdict given since. */
int trust_pending(const trust_t *t);
/* Decide for the handshake that just ended: `leaf_pem` is the server's
 * certificate (may be NULL: refused), `host` the name it must carry. Asks
 * `ask` only when the name matches. Clears the noted failures. */
trust_verdict_t trust_decide(trust_t *t, const char *leaf_pem,
                             const char *host, trust_ask_fn ask, void *ud);
/* 1 if the certificate in `pem` is valid for `host` (X509_check_host, no
 * partial wildcards); 0 otherwise or unreadable. */
int trust_name_matches(const char *pem, const char *host);
const char *trust_verdict_text(trust_verdict_t v);

#endif /* COURIER_TRUST_H */
