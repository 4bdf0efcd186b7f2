/* SPDX-License-Identifier: MIT */
/* lib/trust.c alone (behaviour.md §10): the library's own name check and
 * the chain handed to on_certificate, on certificates made here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "trust.h"

static EVP_PKEY *key;

static int make_key(void **st)
{
    (void)st;
    key = EVP_EC_gen("P-256");
    return key ? 0 : -1;
}

static int free_key(void **st)
{
    (void)st;
    EVP_PKEY_free(key);
    return 0;
}

/* A self-signed certificate with subject CN `cn` and, if `san` is not
 * NULL, a subjectAltName such as "DNS:a.example,DNS:b.example", as PEM
 * (malloc'd). */
static char *cert(const char *cn, const char *san)
{
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    if (san) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        X509_EXTENSION *e =
            X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
        assert_non_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *data = NULL;
    long len = BIO_get_mem_data(b, &data);
    char *pem = malloc((size_t)len + 1);
    memcpy(pem, data, (size_t)len);
    pem[len] = '\0';
    BIO_free(b);
    X509_free(x);
    return pem;
}

static int name_ok(const char *cn, const char *san, const char *host)
{
    char *pem = cert(cn, san);
    int ok = trust_name_matches(pem, host);
    free(pem);
    return ok;
}

/* The names the library accepts for a host: the subjectAltName's, whole
 * labels only; never the subject's CN (Android and iOS ignore it too). */
static void test_name_check(void **st)
{
    (void)st;
    assert_true(name_ok("x", "DNS:example.com", "example.com"));
    assert_true(name_ok("x", "DNS:example.com", "EXAMPLE.com"));
    assert_false(name_ok("x", "DNS:example.com", "evil.com"));
    assert_false(name_ok("x", "DNS:example.com", "sub.example.com"));
    assert_true(name_ok("x", "DNS:*.example.com", "chat.example.com"));
    assert_false(name_ok("x", "DNS:*.example.com", "example.com"));
    assert_false(name_ok("x", "DNS:*.example.com", "a.b.example.com"));
    assert_false(name_ok("x", "DNS:c*.example.com", "chat.example.com"));
    assert_false(name_ok("x", "DNS:*.com", "example.com"));
    /* CN only, no subjectAltName: refused */
    assert_false(name_ok("example.com", NULL, "example.com"));
    assert_false(trust_name_matches("not a certificate", "example.com"));
    assert_false(trust_name_matches(NULL, "example.com"));
}

static int asked;
static char seen_host[64];
static char *seen_chain;

static int ask(void *ud, const char *host, const char *pem_chain)
{
    asked++;
    snprintf(seen_host, sizeof(seen_host), "%s", host);
    free(seen_chain);
    seen_chain = strdup(pem_chain);
    return ud != NULL;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* The verdicts: the name first (the app is not asked for a wrong one),
 * then the app; the chain is the leaf, then what was noted; a
 * certificate noted twice is given once; decide clears what was noted. */
static void test_decide(void **st)
{
    (void)st;
    int yes = 1;
    char *leaf = cert("leaf", "DNS:example.com");
    char *ca = cert("ca", NULL);
    trust_t t;
    trust_init(&t);
    assert_false(trust_pending(&t));
    trust_note(&t, leaf, "self-signed");
    trust_note(&t, ca, "unable to get issuer");
    trust_note(&t, ca, "another error");
    assert_true(trust_pending(&t));
    asked = 0;
    assert_int_equal(trust_decide(&t, leaf, "evil.com", ask, &yes),
                     TRUST_REFUSE_NAME);
    assert_int_equal(asked, 0);
    assert_false(trust_pending(&t));

    trust_note(&t, leaf, "self-signed");
    trust_note(&t, ca, "unable to get issuer");
    trust_note(&t, ca, "again");
    assert_int_equal(trust_decide(&t, leaf, "example.com", ask, &yes),
                     TRUST_ACCEPT);
    assert_int_equal(asked, 1);
    assert_string_equal(seen_host, "example.com");
    assert_int_equal(count(seen_chain, "BEGIN CERTIFICATE"), 2);
    assert_ptr_equal(strstr(seen_chain, leaf), seen_chain); /* leaf first */

    trust_note(&t, leaf, "self-signed");
    assert_int_equal(trust_decide(&t, leaf, "example.com", ask, NULL),
                     TRUST_REFUSE_APP);
    trust_note(&t, leaf, "self-signed");
    assert_int_equal(trust_decide(&t, leaf, "example.com", NULL, NULL),
                     TRUST_REFUSE_APP);
    trust_note(&t, leaf, "self-signed");
    assert_int_equal(trust_decide(&t, NULL, "example.com", ask, &yes),
                     TRUST_REFUSE_BROKEN);
    free(seen_chain);
    seen_chain = NULL;
    free(leaf);
    free(ca);
}

/* More distinct certificates than it keeps: refused, never a partial
 * chain. */
static void test_too_many_certificates_refused(void **st)
{
    (void)st;
    int yes = 1;
    char *leaf = cert("leaf", "DNS:example.com");
    trust_t t;
    trust_init(&t);
    for (int i = 0; i <= TRUST_MAX_CERTS; i++) {
        char cn[16];
        snprintf(cn, sizeof(cn), "ca%d", i);
        char *c = cert(cn, NULL);
        trust_note(&t, c, "x");
        free(c);
    }
    asked = 0;
    assert_int_equal(trust_decide(&t, leaf, "example.com", ask, &yes),
                     TRUST_REFUSE_BROKEN);
    assert_int_equal(asked, 0);
    free(leaf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_check),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_too_many_certificates_refused),
    };
    return cmocka_run_group_tests(tests, make_key, free_key);
}
