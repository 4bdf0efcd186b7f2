/* SPDX-License-Identifier: MIT */
#include "trust.h"

#include <string.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "util.h"

void trust_init(trust_t *t)
{
    memset(t, 0, sizeof(*t));
}

void trust_reset(trust_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        util_free(t->pem[i]);
    trust_init(t);
}

void trust_note(trust_t *t, const char *pem, const char *why)
{
    if (!t->failed && why &&
        util_strlcpy(t->why, why, sizeof(t->why)) != 0)
        util_strlcpy(t->why, "(error text too long)", sizeof(t->why));
    t->failed = 1;
    if (!pem)
        return;
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->pem[i], pem) == 0)
            return; /* the same certificate, another error */
    if (t->n == TRUST_MAX_CERTS) {
        t->overflow = 1;
        return;
    }
    char *copy = util_strdup(pem);
    if (copy)
        t->pem[t->n++] = copy;
    else
        t->overflow = 1;
}

int trust_pending(const trust_t *t)
{
    return t->failed;
}

static X509 *parse(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    if (!b)
        return NULL;
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    return x;
}

int trust_name_matches(const char *pem, const char *host)
{
    if (!pem || !host || !host[0])
        return 0;
    X509 *x = parse(pem);
    if (!x)
        return 0;
    int ok = X509_check_host(x, host, strlen(host),
                             X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                 X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
                             NULL) == 1;
    X509_free(x);
    return ok;
}

/* Append `pem` (one certificate) to the growing chain text. */
static int append(char **buf, size_t *len, const char *pem)
{
    size_t add = strlen(pem);
    int nl = add > 0 && pem[add - 1] != '\n';
    char *n = util_realloc(*buf, *len + add + (size_t)nl + 1);
    if (!n)
        return -1;
    memcpy(n + *len, pem, add);
    *len += add;
    if (nl)
        n[(*len)++] = '\n';
    n[*len] = '\0';
    *buf = n;
    return 0;
}

/* Leaf first, then each certificate's issuer among the noted ones, then
 * whatever is left (in the order OpenSSL reported it). */
static char *build_chain(const trust_t *t, const char *leaf_pem)
{
    X509 *xs[TRUST_MAX_CERTS];
    int used[TRUST_MAX_CERTS] = { 0 };
    char *buf = NULL;
    size_t len = 0;
    X509 *leaf = parse(leaf_pem), *cur = leaf;
    if (!leaf || append(&buf, &len, leaf_pem) != 0) {
        X509_free(leaf);
        util_free(buf);
        return NULL;
    }
    for (size_t i = 0; i < t->n; i++) {
        xs[i] = parse(t->pem[i]);
        if (!xs[i] || X509_cmp(xs[i], cur) == 0)
            used[i] = 1; /* unreadable, or the leaf again */
    }
    int err = 0;
    for (;;) {
        size_t next = t->n;
        for (size_t i = 0; i < t->n && next == t->n; i++)
            if (!used[i] && X509_check_issued(xs[i], cur) == X509_V_OK)
                next = i;
        if (next == t->n)
            break;
        used[next] = 1;
        cur = xs[next];
        err |= append(&buf, &len, t->pem[next]);
    }
    for (size_t i = 0; i < t->n; i++)
        if (!used[i])
            err |= append(&buf, &len, t->pem[i]);
    for (size_t i = 0; i < t->n; i++)
        X509_free(xs[i]);
    X509_free(leaf);
    if (err) {
        util_free(buf);
        return NULL;
    }
    return buf;
}

trust_verdict_t trust_decide(trust_t *t, const char *leaf_pem,
                             const char *host, trust_ask_fn ask, void *ud)
{
    trust_verdict_t v;
    char *chain = NULL;
    if (!leaf_pem || t->overflow)
        v = TRUST_REFUSE_BROKEN;
    else if (!trust_name_matches(leaf_pem, host))
        v = TRUST_REFUSE_NAME; /* never the app's call */
    else if (!(chain = build_chain(t, leaf_pem)))
        v = TRUST_REFUSE_BROKEN;
    else
        v = ask && ask(ud, host, chain) ? TRUST_ACCEPT : TRUST_REFUSE_APP;
    util_free(chain);
    trust_reset(t);
    return v;
}

const char *trust_verdict_text(trust_verdict_t v)
{
    switch (v) {
    case TRUST_ACCEPT: return "accepted by the app";
    case TRUST_REFUSE_NAME: return "refused: the certificate does not name "
                                   "the JID's domain";
    case TRUST_REFUSE_APP: return "refused by the app";
    case TRUST_REFUSE_BROKEN: return "refused: the chain could not be read";
    }
    return "refused";
}
