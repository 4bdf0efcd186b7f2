/* SPDX-License-Identifier: MIT */
/* JNI glue of org.libcourier.Courier: courier.h only.
 *
 * Threads: callbacks arrive on the library's loop thread. It is attached to
 * the JVM the first time (as a daemon, so an unclosed handle never keeps the
 * JVM alive) and stays attached; a pthread key destructor detaches it when
 * the thread ends. Each callback runs in its own local frame, so an
 * attached thread that never returns to Java does not pile up local refs.
 *
 * Strings: the library speaks standard UTF-8, JNI's *StringUTF* functions
 * speak modified UTF-8 (a 4-byte sequence becomes two 3-byte surrogates),
 * so every string crosses here as UTF-16 (NewString / GetStringRegion),
 * converted by the two functions below.
 *
 * Errors: a negative code becomes one CourierException, built at once on
 * the calling thread from courier_strerror() + " : " + courier_last_error().
 * A Java exception thrown by a listener is described and cleared: it never
 * reaches the library and never ends the process (from onCertificate it
 * counts as a refusal). */
#include <jni.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "courier.h"

#define JNI_VERSION JNI_VERSION_1_6
#define PKG "org/libcourier/"

/* Indices of the numeric config fields in the long[] Config.toNative()
 * builds; keep in step with Config.java. */
enum {
    N_PORT, N_ALLOW_PLAINTEXT, N_ACK_TIMEOUT, N_RESEND_GRACE,
    N_PING_INTERVAL, N_PING_TIMEOUT, N_RECONNECT_MIN, N_RECONNECT_MAX,
    N_MAX_IN_FLIGHT, N_MAX_AGE, N_IMPLICIT_READ, N_SYNCHRONOUS_FULL,
    N_MAX_BODY, N_APP_CONFIRMS, N_COUNT
};

/* One per open Courier: the library's ud. */
typedef struct {
    courier_t *c;
    jobject listener;     /* global ref */
    jobject owner;        /* global ref: the Courier, alive while open */
    int free_after_cb;    /* closed from one of its callbacks */
} jc_t;

static JavaVM *g_vm;
static pthread_key_t g_detach_key;
static jclass g_exc_class, g_state_class, g_kind_class, g_link_class,
    g_entry_class, g_conv_class;
static jmethodID g_exc_ctor, g_state_of, g_kind_of, g_link_of, g_entry_ctor,
    g_conv_ctor, g_list_add;
static jmethodID g_on_state, g_on_message, g_on_link, g_on_composing,
    g_on_log, g_on_retract, g_on_certificate;
/* Global refs this file holds for open handles (a test reads it). */
static atomic_long g_live_refs;
/* The handle whose callback runs on this thread, if any. */
static _Thread_local jc_t *tl_in_callback;

/* ---- strings ----------------------------------------------------------- */

/* Standard UTF-8 (NUL-terminated) -> java.lang.String. Ill-formed bytes
 * become U+FFFD. NULL in, NULL out (no exception); NULL with an exception
 * pending on failure. */
static jstring utf8_to_jstring(JNIEnv *env, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    jchar stackbuf[256] = { 0 }; /* "" reaches NewString with k == 0 */
    jchar *u = n <= 256 ? stackbuf : malloc(n * sizeof(jchar));
    if (!u) {
        jclass oom = (*env)->FindClass(env, "java/lang/OutOfMemoryError");
        if (oom)
            (*env)->ThrowNew(env, oom, "courier-jni: string");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, k = 0;
    while (i < n) {
        unsigned b = p[i];
        uint32_t cp;
        size_t len;
        if (b < 0x80) {
            u[k++] = (jchar)b;
            i++;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            cp = b & 0x1F;
            len = 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            cp = b & 0x0F;
            len = 3;
        } else if (b >= 0xF0 && b <= 0xF4) {
            cp = b & 0x07;
            len = 4;
        } else {
            u[k++] = 0xFFFD;
            i++;
            continue;
        }
        size_t j = 1;
        for (; j < len && i + j < n; j++) {
            unsigned cb = p[i + j];
            if ((cb & 0xC0) != 0x80)
                break;
            /* reject overlong 3/4-byte forms, surrogates, > U+10FFFF at
             * the second byte, as a strict decoder does */
            if (j == 1 && ((b == 0xE0 && cb < 0xA0) ||
                           (b == 0xED && cb > 0x9F) ||
                           (b == 0xF0 && cb < 0x90) ||
                           (b == 0xF4 && cb > 0x8F)))
                break;
            cp = (cp << 6) | (cb & 0x3F);
        }
        if (j < len) { /* a maximal ill-formed subpart: one U+FFFD */
            u[k++] = 0xFFFD;
            i += j;
            continue;
        }
        i += len;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            u[k++] = (jchar)(0xD800 + (cp >> 10));
            u[k++] = (jchar)(0xDC00 + (cp & 0x3FF));
        } else {
            u[k++] = (jchar)cp;
        }
    }
    jstring js = (*env)->NewString(env, u, (jsize)k);
    if (u != stackbuf)
        free(u);
    return js; /* NULL: NewString threw */
}

static void throw_glue(JNIEnv *env, int code, const char *detail);

/* java.lang.String -> standard UTF-8, malloc'd, in *out (NULL for a null
 * String). A lone surrogate becomes U+FFFD; U+0000 is refused, as C would
 * silently cut the string there. Returns 0, or -1 with an exception
 * pending. */
static int jstring_to_utf8(JNIEnv *env, jstring js, const char *what,
                           char **out)
{
    *out = NULL;
    if (!js)
        return 0;
    jsize n = (*env)->GetStringLength(env, js);
    if ((*env)->ExceptionCheck(env))
        return -1;
    jchar stackbuf[256];
    jchar *u = n <= 256 ? stackbuf : malloc((size_t)n * sizeof(jchar));
    char *s = malloc((size_t)n * 3 + 1); /* a unit is at most 3 bytes */
    if (!u || !s) {
        if (u != stackbuf)
            free(u);
        free(s);
        throw_glue(env, COURIER_ENOMEM, what);
        return -1;
    }
    (*env)->GetStringRegion(env, js, 0, n, u);
    if ((*env)->ExceptionCheck(env)) {
        if (u != stackbuf)
            free(u);
        free(s);
        return -1;
    }
    size_t k = 0;
    for (jsize i = 0; i < n; i++) {
        uint32_t cp = u[i];
        if (cp == 0) {
            char msg[96];
            snprintf(msg, sizeof(msg), "%s contains U+0000", what);
            if (u != stackbuf)
                free(u);
            free(s);
            throw_glue(env, COURIER_EINVAL, msg);
            return -1;
        }
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 1 < n &&
            u[i + 1] >= 0xDC00 && u[i + 1] <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (u[i + 1] - 0xDC00);
            i++;
        } else if (cp >= 0xD800 && cp <= 0xDFFF) {
            cp = 0xFFFD;
        }
        if (cp < 0x80) {
            s[k++] = (char)cp;
        } else if (cp < 0x800) {
            s[k++] = (char)(0xC0 | (cp >> 6));
            s[k++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            s[k++] = (char)(0xE0 | (cp >> 12));
            s[k++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            s[k++] = (char)(0x80 | (cp & 0x3F));
        } else {
            s[k++] = (char)(0xF0 | (cp >> 18));
            s[k++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            s[k++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            s[k++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    s[k] = '\0';
    if (u != stackbuf)
        free(u);
    *out = s;
    return 0;
}

/* ---- exceptions -------------------------------------------------------- */

static void throw_text(JNIEnv *env, int code, const char *text)
{
    if ((*env)->ExceptionCheck(env))
        return; /* keep the first one */
    jstring msg = utf8_to_jstring(env, text);
    if (!msg)
        return;
    jobject ex = (*env)->NewObject(env, g_exc_class, g_exc_ctor, (jint)code,
                                   msg);
    if (ex)
        (*env)->Throw(env, (jthrowable)ex);
    (*env)->DeleteLocalRef(env, msg);
    if (ex)
        (*env)->DeleteLocalRef(env, ex);
}

/* A failed courier_* call: its detail is read at once, on this thread. */
static void throw_code(JNIEnv *env, int rc)
{
    char text[512];
    snprintf(text, sizeof(text), "%s : %s", courier_strerror(rc),
             courier_last_error());
    throw_text(env, rc, text);
}

/* A failure found by the glue itself, in the same form. */
static void throw_glue(JNIEnv *env, int code, const char *detail)
{
    char text[512];
    snprintf(text, sizeof(text), "%s : %s", courier_strerror(code), detail);
    throw_text(env, code, text);
}

/* ---- the loop thread ----------------------------------------------------- */

static void detach_thread(void *vm)
{
    (*(JavaVM *)vm)->DetachCurrentThread((JavaVM *)vm);
}

/* JNIEnv of this thread, attaching it (once) if needed; NULL if that fails. */
static JNIEnv *thread_env(void)
{
    JNIEnv *env = NULL;
    jint r = (*g_vm)->GetEnv(g_vm, (void **)&env, JNI_VERSION);
    if (r == JNI_OK)
        return env;
    if (r != JNI_EDETACHED)
        return NULL;
    JavaVMAttachArgs args = { JNI_VERSION, (char *)"courier-loop", NULL };
#ifdef __ANDROID__
    /* Android's jni.h: AttachCurrentThreadAsDaemon(JavaVM*, JNIEnv**, ...) */
    r = (*g_vm)->AttachCurrentThreadAsDaemon(g_vm, &env, &args);
#else
    /* OpenJDK's jni.h: AttachCurrentThreadAsDaemon(JavaVM*, void**, ...) */
    r = (*g_vm)->AttachCurrentThreadAsDaemon(g_vm, (void **)&env, &args);
#endif
    if (r != JNI_OK)
        return NULL;
    /* stays attached; detached by the key's destructor at thread exit */
    if (pthread_setspecific(g_detach_key, g_vm) != 0) {
        (*g_vm)->DetachCurrentThread(g_vm);
        return NULL;
    }
    return env;
}

static void free_handle_refs(JNIEnv *env, jc_t *jc)
{
    if (jc->listener) {
        (*env)->DeleteGlobalRef(env, jc->listener);
        atomic_fetch_sub(&g_live_refs, 1);
    }
    if (jc->owner) {
        (*env)->DeleteGlobalRef(env, jc->owner);
        atomic_fetch_sub(&g_live_refs, 1);
    }
    free(jc);
}

typedef struct {
    JNIEnv *env;
    jc_t *prev;
} cb_scope_t;

/* Enter a callback: an env and a local frame of its own. */
static JNIEnv *cb_begin(jc_t *jc, cb_scope_t *sc)
{
    JNIEnv *env = thread_env();
    if (!env)
        return NULL;
    if ((*env)->PushLocalFrame(env, 16) < 0) {
        (*env)->ExceptionClear(env);
        return NULL;
    }
    sc->env = env;
    sc->prev = tl_in_callback;
    tl_in_callback = jc;
    return env;
}

/* Leave it: log and clear whatever the listener threw, drop the frame,
 * and free the handle if the listener closed it. */
static void cb_end_as(jc_t *jc, cb_scope_t *sc, const char *what,
                      const char *outcome)
{
    JNIEnv *env = sc->env;
    if ((*env)->ExceptionCheck(env)) {
        fprintf(stderr, "courier-jni: Listener.%s threw (%s):\n", what,
                outcome);
        (*env)->ExceptionDescribe(env);
        (*env)->ExceptionClear(env);
    }
    (*env)->PopLocalFrame(env, NULL);
    tl_in_callback = sc->prev;
    if (jc->free_after_cb)
        free_handle_refs(env, jc); /* the library is muted: no callback
                                      touches ud any more */
}

static void cb_end(jc_t *jc, cb_scope_t *sc, const char *what)
{
    cb_end_as(jc, sc, what, "ignored");
}

static jobject enum_of(JNIEnv *env, jclass cls, jmethodID of, int v)
{
    jobject o = (*env)->CallStaticObjectMethod(env, cls, of, (jint)v);
    return (*env)->ExceptionCheck(env) ? NULL : o;
}

static void on_state(void *ud, const char *id, const char *peer,
                     courier_state_t state)
{
    jc_t *jc = ud;
    cb_scope_t sc;
    JNIEnv *env = cb_begin(jc, &sc);
    if (!env)
        return;
    jstring jid = utf8_to_jstring(env, id);
    jstring jpeer = jid ? utf8_to_jstring(env, peer) : NULL;
    jobject js = jpeer ? enum_of(env, g_state_class, g_state_of, state) : NULL;
    if (js)
        (*env)->CallVoidMethod(env, jc->listener, g_on_state, jid, jpeer, js);
    cb_end(jc, &sc, "onState");
}

static void on_message(void *ud, const courier_message_t *m)
{
    jc_t *jc = ud;
    cb_scope_t sc;
    JNIEnv *env = cb_begin(jc, &sc);
    if (!env)
        return;
    jstring jid = utf8_to_jstring(env, m->id);
    jstring jpeer = jid ? utf8_to_jstring(env, m->peer) : NULL;
    jstring jbody = jpeer ? utf8_to_jstring(env, m->body ? m->body : "")
                          : NULL;
    jstring jmeta = jbody ? utf8_to_jstring(env, m->meta ? m->meta : "")
                          : NULL;
    jobject jk = jmeta ? enum_of(env, g_kind_class, g_kind_of, m->kind) : NULL;
    if (jk) /* the six-argument form: its default calls the old one */
        (*env)->CallVoidMethod(env, jc->listener, g_on_message, jid, jpeer,
                               jk, jbody, (jlong)m->timestamp_ms, jmeta);
    cb_end(jc, &sc, "onMessage");
}

static void on_retract(void *ud, const char *peer, const char *id)
{
    jc_t *jc = ud;
    cb_scope_t sc;
    JNIEnv *env = cb_begin(jc, &sc);
    if (!env)
        return;
    jstring jpeer = utf8_to_jstring(env, peer);
    jstring jid = jpeer ? utf8_to_jstring(env, id) : NULL;
    if (jid)
        (*env)->CallVoidMethod(env, jc->listener, g_on_retract, jpeer, jid);
    cb_end(jc, &sc, "onRetract");
}

/* Platform trust (behaviour.md §10): the listener's answer, now, on the
 * loop thread (never through the executor: ExecutorListener calls the
 * app's listener directly). No env, a failed conversion or an exception
 * refuse the certificate. Only registered when the listener overrides
 * onCertificate (Courier.decidesCertificates). */
static int on_certificate(void *ud, const char *host, const char *pem_chain)
{
    jc_t *jc = ud;
    cb_scope_t sc;
    JNIEnv *env = cb_begin(jc, &sc);
    if (!env)
        return 0;
    jboolean ok = JNI_FALSE;
    jstring jhost = utf8_to_jstring(env, host ? host : "");
    jstring jpem = jhost ? utf8_to_jstring(env, pem_chain ? pem_chain : "")
                         : NULL;
    if (jpem) {
        ok = (*env)->CallBooleanMethod(env, jc->listener, g_on_certificate,
                                       jhost, jpem);
        if ((*env)->ExceptionCheck(env))
            ok = JNI_FALSE;
    }
    cb_end_as(jc, &sc, "onCertificate", "certificate refused");
    return ok ? 1 : 0;
}

static void on_link(void *ud, courier_link_t link)
{
    jc_t *jc = ud;
    cb_scope_t sc;
    JNIEnv *env = cb_begin(jc, &sc);
    if (!env)
        return;
    jobject jl = enum_of(env, g_link_class, g_link_of, link);
    if (jl)
        (*env)->CallVoidMethod(env, jc->listener, g_on_link, jl);
    cb_end(jc, &sc, "onLink");
}

static void on_composing(void *ud, const char *peer, int composing)
{
    jc_t *jc = ud;
    cb_scope_t sc;
    JNIEnv *env = cb_begin(jc, &sc);
    if (!env)
        return;
    jstring jpeer = utf8_to_jstring(env, peer);
    if (jpeer)
        (*env)->CallVoidMethod(env, jc->listener, g_on_composing, jpeer,
                               (jboolean)(composing != 0));
    cb_end(jc, &sc, "onComposing");
}

static void on_log(void *ud, int level, const char *line)
{
    jc_t *jc = ud;
    cb_scope_t sc;
    JNIEnv *env = cb_begin(jc, &sc);
    if (!env)
        return;
    jstring jline = utf8_to_jstring(env, line ? line : "");
    if (jline)
        (*env)->CallVoidMethod(env, jc->listener, g_on_log, (jint)level,
                               jline);
    cb_end(jc, &sc, "onLog");
}

/* ---- native methods ------------------------------------------------------ */

static jc_t *handle_of(JNIEnv *env, jlong h)
{
    if (h == 0)
        throw_glue(env, COURIER_ECLOSED, "the Courier is closed");
    return (jc_t *)(intptr_t)h;
}

static jlongArray n_defaults(JNIEnv *env, jclass cls)
{
    (void)cls;
    courier_config_t cfg;
    courier_config_init(&cfg);
    jlong v[N_COUNT];
    v[N_PORT] = cfg.port;
    v[N_ALLOW_PLAINTEXT] = cfg.allow_plaintext;
    v[N_ACK_TIMEOUT] = cfg.ack_timeout_ms;
    v[N_RESEND_GRACE] = cfg.resend_grace_ms;
    v[N_PING_INTERVAL] = cfg.ping_interval_ms;
    v[N_PING_TIMEOUT] = cfg.ping_timeout_ms;
    v[N_RECONNECT_MIN] = cfg.reconnect_min_ms;
    v[N_RECONNECT_MAX] = cfg.reconnect_max_ms;
    v[N_MAX_IN_FLIGHT] = cfg.max_in_flight;
    v[N_MAX_AGE] = (jlong)cfg.max_age_ms;
    v[N_IMPLICIT_READ] = cfg.implicit_read;
    v[N_SYNCHRONOUS_FULL] = cfg.synchronous_full;
    v[N_MAX_BODY] = cfg.max_body_bytes;
    v[N_APP_CONFIRMS] = cfg.app_confirms;
    jlongArray a = (*env)->NewLongArray(env, N_COUNT);
    if (!a)
        return NULL;
    (*env)->SetLongArrayRegion(env, a, 0, N_COUNT, v);
    return (*env)->ExceptionCheck(env) ? NULL : a;
}

/* An unsigned config field from Java: 0..max, else EINVAL naming it. */
static int unsigned_field(JNIEnv *env, const jlong *v, int i, const char *name,
                          jlong max, unsigned *out)
{
    if (v[i] < 0 || v[i] > max) {
        char msg[128];
        snprintf(msg, sizeof(msg), "%s (%lld) out of range 0..%lld", name,
                 (long long)v[i], (long long)max);
        throw_glue(env, COURIER_EINVAL, msg);
        return -1;
    }
    *out = (unsigned)v[i];
    return 0;
}

static jlong n_open(JNIEnv *env, jclass cls, jobject owner, jobject listener,
                    jstring jjid, jstring jpw, jstring jhost, jstring jdb,
                    jstring jca, jstring jcapath, jboolean certificates,
                    jlongArray jnums)
{
    (void)cls;
    jlong h = 0;
    char *jid = NULL, *pw = NULL, *host = NULL, *db = NULL, *ca = NULL,
         *capath = NULL;
    jc_t *jc = NULL;
    if (!jnums || (*env)->GetArrayLength(env, jnums) != N_COUNT) {
        throw_glue(env, COURIER_EINVAL, "config numbers");
        return 0;
    }
    jlong v[N_COUNT];
    (*env)->GetLongArrayRegion(env, jnums, 0, N_COUNT, v);
    if ((*env)->ExceptionCheck(env))
        return 0;
    if (jstring_to_utf8(env, jjid, "jid", &jid) < 0 ||
        jstring_to_utf8(env, jpw, "password", &pw) < 0 ||
        jstring_to_utf8(env, jhost, "host", &host) < 0 ||
        jstring_to_utf8(env, jdb, "dbPath", &db) < 0 ||
        jstring_to_utf8(env, jca, "caFile", &ca) < 0 ||
        jstring_to_utf8(env, jcapath, "caPath", &capath) < 0)
        goto out;

    courier_config_t cfg;
    courier_config_init(&cfg);
    cfg.jid = jid;
    cfg.password = pw;
    cfg.host = host;
    cfg.db_path = db;
    cfg.ca_file = ca;
    cfg.ca_path = capath;
    unsigned port, max_body;
    if (unsigned_field(env, v, N_PORT, "port", 65535, &port) < 0 ||
        unsigned_field(env, v, N_ACK_TIMEOUT, "ackTimeoutMs", UINT32_MAX,
                       &cfg.ack_timeout_ms) < 0 ||
        unsigned_field(env, v, N_RESEND_GRACE, "resendGraceMs", UINT32_MAX,
                       &cfg.resend_grace_ms) < 0 ||
        unsigned_field(env, v, N_PING_INTERVAL, "pingIntervalMs", UINT32_MAX,
                       &cfg.ping_interval_ms) < 0 ||
        unsigned_field(env, v, N_PING_TIMEOUT, "pingTimeoutMs", UINT32_MAX,
                       &cfg.ping_timeout_ms) < 0 ||
        unsigned_field(env, v, N_RECONNECT_MIN, "reconnectMinMs", UINT32_MAX,
                       &cfg.reconnect_min_ms) < 0 ||
        unsigned_field(env, v, N_RECONNECT_MAX, "reconnectMaxMs", UINT32_MAX,
                       &cfg.reconnect_max_ms) < 0 ||
        unsigned_field(env, v, N_MAX_IN_FLIGHT, "maxInFlight", UINT32_MAX,
                       &cfg.max_in_flight) < 0 ||
        unsigned_field(env, v, N_MAX_BODY, "maxBodyBytes", UINT32_MAX,
                       &max_body) < 0)
        goto out;
    if (v[N_MAX_AGE] < 0) {
        throw_glue(env, COURIER_EINVAL, "maxAgeMs is negative");
        goto out;
    }
    cfg.port = (unsigned short)port;
    cfg.max_body_bytes = max_body;
    cfg.max_age_ms = (uint64_t)v[N_MAX_AGE];
    cfg.allow_plaintext = v[N_ALLOW_PLAINTEXT] != 0;
    cfg.implicit_read = v[N_IMPLICIT_READ] != 0;
    cfg.synchronous_full = v[N_SYNCHRONOUS_FULL] != 0;
    cfg.app_confirms = v[N_APP_CONFIRMS] != 0;

    jc = calloc(1, sizeof(*jc));
    if (!jc) {
        throw_glue(env, COURIER_ENOMEM, "handle");
        goto out;
    }
    jc->listener = (*env)->NewGlobalRef(env, listener);
    if (jc->listener)
        atomic_fetch_add(&g_live_refs, 1);
    jc->owner = (*env)->NewGlobalRef(env, owner);
    if (jc->owner)
        atomic_fetch_add(&g_live_refs, 1);
    if (!jc->listener || !jc->owner) {
        throw_glue(env, COURIER_ENOMEM, "global reference");
        goto out;
    }
    courier_callbacks_t cb = {
        .on_state = on_state, .on_message = on_message, .on_link = on_link,
        .on_composing = on_composing, .on_log = on_log,
        .on_retract = on_retract,
        .on_certificate = certificates ? on_certificate : NULL,
    };
    int rc = courier_open(&jc->c, &cfg, &cb, jc);
    if (rc < 0) {
        throw_code(env, rc);
        goto out;
    }
    h = (jlong)(intptr_t)jc;
    jc = NULL;
out:
    if (jc)
        free_handle_refs(env, jc);
    free(jid);
    free(pw);
    free(host);
    free(db);
    free(ca);
    free(capath);
    return h;
}

static void n_close(JNIEnv *env, jclass cls, jlong h)
{
    (void)cls;
    jc_t *jc = (jc_t *)(intptr_t)h;
    if (!jc)
        return;
    courier_close(jc->c); /* mutes callbacks; joins the loop, or defers */
    if (tl_in_callback == jc)
        jc->free_after_cb = 1; /* its callback is still on the stack */
    else
        free_handle_refs(env, jc);
}

/* A call that takes only the handle: a negative code becomes an
 * exception. */
static void n_handle_call(JNIEnv *env, jlong h, int (*fn)(courier_t *))
{
    jc_t *jc = handle_of(env, h);
    if (!jc)
        return;
    int rc = fn(jc->c);
    if (rc < 0)
        throw_code(env, rc);
}

static void n_start(JNIEnv *env, jclass cls, jlong h)
{
    (void)cls;
    n_handle_call(env, h, courier_start);
}

static void n_stop(JNIEnv *env, jclass cls, jlong h)
{
    (void)cls;
    n_handle_call(env, h, courier_stop);
}

static void n_network_changed(JNIEnv *env, jclass cls, jlong h)
{
    (void)cls;
    n_handle_call(env, h, courier_network_changed);
}

static void n_set_active(JNIEnv *env, jclass cls, jlong h, jboolean active)
{
    (void)cls;
    jc_t *jc = handle_of(env, h);
    if (!jc)
        return;
    int rc = courier_set_active(jc->c, active ? 1 : 0);
    if (rc < 0)
        throw_code(env, rc);
}

/* courier_sync on the calling (Java) thread: it only waits; the loop
 * thread does the work and runs the callbacks meanwhile. */
static void n_sync(JNIEnv *env, jclass cls, jlong h, jint timeout_ms)
{
    (void)cls;
    jc_t *jc = handle_of(env, h);
    if (!jc)
        return;
    if (timeout_ms < 0) {
        throw_glue(env, COURIER_EINVAL, "timeoutMs is negative");
        return;
    }
    int rc = courier_sync(jc->c, (unsigned)timeout_ms);
    if (rc < 0)
        throw_code(env, rc);
}

/* courier_push_enable: the strings go as given (a null secret is NULL:
 * none; a null serviceJid or node is the library's EINVAL, naming it).
 * Commits, then, online, waits on this thread for the server's answer up
 * to ackTimeoutMs; the loop thread writes the request meanwhile. */
static void n_push_enable(JNIEnv *env, jclass cls, jlong h, jstring jservice,
                          jstring jnode, jstring jsecret)
{
    (void)cls;
    char *service = NULL, *node = NULL, *secret = NULL;
    jc_t *jc = handle_of(env, h);
    if (!jc || jstring_to_utf8(env, jservice, "serviceJid", &service) < 0 ||
        jstring_to_utf8(env, jnode, "node", &node) < 0 ||
        jstring_to_utf8(env, jsecret, "secret", &secret) < 0)
        goto out;
    int rc = courier_push_enable(jc->c, service, node, secret);
    if (rc < 0)
        throw_code(env, rc);
out:
    free(service);
    free(node);
    free(secret);
}

static void n_push_disable(JNIEnv *env, jclass cls, jlong h)
{
    (void)cls;
    n_handle_call(env, h, courier_push_disable);
}

/* The check's state as its C value; DAMAGED comes as ECORRUPT (thrown,
 * with SQLite's finding in the message), as the C call returns it. */
static jint n_check_status(JNIEnv *env, jclass cls, jlong h)
{
    (void)cls;
    jc_t *jc = handle_of(env, h);
    if (!jc)
        return -1;
    courier_check_t st = COURIER_CHECK_NONE;
    int rc = courier_check_status(jc->c, &st);
    if (rc < 0) {
        throw_code(env, rc);
        return -1;
    }
    return (jint)st;
}

static jstring n_send_text(JNIEnv *env, jclass cls, jlong h, jstring jto,
                           jstring jbody)
{
    (void)cls;
    jstring res = NULL;
    char *to = NULL, *body = NULL;
    jc_t *jc = handle_of(env, h);
    if (!jc || jstring_to_utf8(env, jto, "to", &to) < 0 ||
        jstring_to_utf8(env, jbody, "body", &body) < 0)
        goto out;
    char id[COURIER_ID_MAX];
    int rc = courier_send_text(jc->c, to, body, id);
    if (rc < 0)
        throw_code(env, rc);
    else
        res = utf8_to_jstring(env, id);
out:
    free(to);
    free(body);
    return res;
}

static void n_send_media(JNIEnv *env, jclass cls, jlong h, jstring jto,
                         jint kind, jstring jmid, jstring jbody)
{
    (void)cls;
    char *to = NULL, *mid = NULL, *body = NULL;
    jc_t *jc = handle_of(env, h);
    if (!jc || jstring_to_utf8(env, jto, "to", &to) < 0 ||
        jstring_to_utf8(env, jmid, "mediaId", &mid) < 0 ||
        jstring_to_utf8(env, jbody, "body", &body) < 0)
        goto out;
    int rc = courier_send_media(jc->c, to, (courier_kind_t)kind, mid, body);
    if (rc < 0)
        throw_code(env, rc);
out:
    free(to);
    free(mid);
    free(body);
}

static void n_mark_displayed(JNIEnv *env, jclass cls, jlong h, jstring jpeer,
                             jstring jid)
{
    (void)cls;
    char *peer = NULL, *id = NULL;
    jc_t *jc = handle_of(env, h);
    if (!jc || jstring_to_utf8(env, jpeer, "peer", &peer) < 0 ||
        jstring_to_utf8(env, jid, "id", &id) < 0)
        goto out;
    int rc = courier_mark_displayed(jc->c, peer, id);
    if (rc < 0)
        throw_code(env, rc);
out:
    free(peer);
    free(id);
}

static void n_set_composing(JNIEnv *env, jclass cls, jlong h, jstring jpeer,
                            jboolean on)
{
    (void)cls;
    char *peer = NULL;
    jc_t *jc = handle_of(env, h);
    if (!jc || jstring_to_utf8(env, jpeer, "peer", &peer) < 0)
        goto out;
    int rc = courier_set_composing(jc->c, peer, on ? 1 : 0);
    if (rc < 0)
        throw_code(env, rc);
out:
    free(peer);
}

static void n_retry(JNIEnv *env, jclass cls, jlong h, jstring jid)
{
    (void)cls;
    char *id = NULL;
    jc_t *jc = handle_of(env, h);
    if (!jc || jstring_to_utf8(env, jid, "id", &id) < 0)
        goto out;
    int rc = courier_retry(jc->c, id);
    if (rc < 0)
        throw_code(env, rc);
out:
    free(id);
}

static jint n_get_state(JNIEnv *env, jclass cls, jlong h, jstring jid)
{
    (void)cls;
    char *id = NULL;
    jint res = -1;
    jc_t *jc = handle_of(env, h);
    if (!jc || jstring_to_utf8(env, jid, "id", &id) < 0)
        goto out;
    courier_state_t s;
    int rc = courier_get_state(jc->c, id, &s);
    if (rc < 0)
        throw_code(env, rc);
    else
        res = (jint)s;
out:
    free(id);
    return res;
}

static jint n_get_link(JNIEnv *env, jclass cls, jlong h)
{
    (void)cls;
    jc_t *jc = handle_of(env, h);
    if (!jc)
        return -1;
    courier_link_t l;
    int rc = courier_get_link(jc->c, &l);
    if (rc < 0) {
        throw_code(env, rc);
        return -1;
    }
    return (jint)l;
}

/* Indices of the long[] MessageInfo and Stats read; keep in step with
 * MessageInfo.java and Stats.java. */
enum {
    I_STATE, I_ATTEMPTS, I_CREATED, I_LAST_SENT, I_LAST_CHANGE, I_PERMANENT,
    I_COUNT
};
enum {
    S_SENT, S_RESENT_RECONNECT, S_RESENT_PEER, S_RESENT_RETRY, S_RECEIVED,
    S_DUPLICATES, S_LINKS_UP, S_COUNT
};

/* A long[] of exactly `n` from Java, else an EINVAL for the glue's caller. */
static int check_out_array(JNIEnv *env, jlongArray a, jsize n)
{
    if (!a || (*env)->GetArrayLength(env, a) != n) {
        throw_glue(env, COURIER_EINVAL, "output array");
        return -1;
    }
    return 0;
}

/* courier_get_info: the numbers into `out`, the reason returned. */
static jstring n_get_info(JNIEnv *env, jclass cls, jlong h, jstring jid,
                          jlongArray out)
{
    (void)cls;
    char *id = NULL;
    jstring res = NULL;
    jc_t *jc = handle_of(env, h);
    if (!jc || check_out_array(env, out, I_COUNT) < 0 ||
        jstring_to_utf8(env, jid, "id", &id) < 0)
        goto out;
    courier_info_t info;
    int rc = courier_get_info(jc->c, id, &info);
    if (rc < 0) {
        throw_code(env, rc);
        goto out;
    }
    jlong v[I_COUNT];
    v[I_STATE] = info.state;
    v[I_ATTEMPTS] = info.attempts;
    v[I_CREATED] = info.created_ms;
    v[I_LAST_SENT] = info.last_sent_ms;
    v[I_LAST_CHANGE] = info.last_change_ms;
    v[I_PERMANENT] = info.permanent != 0;
    (*env)->SetLongArrayRegion(env, out, 0, I_COUNT, v);
    if ((*env)->ExceptionCheck(env))
        goto out;
    info.reason[sizeof(info.reason) - 1] = '\0';
    res = utf8_to_jstring(env, info.reason);
out:
    free(id);
    return res;
}

static void n_get_stats(JNIEnv *env, jclass cls, jlong h, jlongArray out)
{
    (void)cls;
    jc_t *jc = handle_of(env, h);
    if (!jc || check_out_array(env, out, S_COUNT) < 0)
        return;
    courier_stats_t st;
    int rc = courier_get_stats(jc->c, &st);
    if (rc < 0) {
        throw_code(env, rc);
        return;
    }
    jlong v[S_COUNT];
    v[S_SENT] = (jlong)st.sent;
    v[S_RESENT_RECONNECT] = (jlong)st.resent_reconnect;
    v[S_RESENT_PEER] = (jlong)st.resent_peer;
    v[S_RESENT_RETRY] = (jlong)st.resent_retry;
    v[S_RECEIVED] = (jlong)st.received;
    v[S_DUPLICATES] = (jlong)st.duplicates;
    v[S_LINKS_UP] = (jlong)st.links_up;
    (*env)->SetLongArrayRegion(env, out, 0, S_COUNT, v);
}

/* courier_run_once on the calling (Java) thread: callbacks run here, in
 * their own local frames, through the same code as on the loop thread. */
static void n_run_once(JNIEnv *env, jclass cls, jlong h, jint timeout_ms)
{
    (void)cls;
    jc_t *jc = handle_of(env, h);
    if (!jc)
        return;
    if (timeout_ms < 0) {
        throw_glue(env, COURIER_EINVAL, "timeoutMs is negative");
        return;
    }
    /* jc may be freed by a close from one of the callbacks (cb_end): only
     * the code is used after the call. */
    int rc = courier_run_once(jc->c, (unsigned)timeout_ms);
    if (rc < 0)
        throw_code(env, rc);
}

static jstring n_display_status(JNIEnv *env, jclass cls, jint state)
{
    (void)cls;
    return utf8_to_jstring(env, courier_display_status((courier_state_t)state));
}

static jstring n_version(JNIEnv *env, jclass cls)
{
    (void)cls;
    return utf8_to_jstring(env, courier_version());
}

/* ---- the app's data contract (courier.h, behaviour.md §9) ---------------- */

static jstring n_send(JNIEnv *env, jclass cls, jlong h, jstring jto,
                      jint kind, jstring jbody, jstring jid, jstring jmeta)
{
    (void)cls;
    jstring res = NULL;
    char *to = NULL, *body = NULL, *id = NULL, *meta = NULL;
    jc_t *jc = handle_of(env, h);
    if (!jc || jstring_to_utf8(env, jto, "to", &to) < 0 ||
        jstring_to_utf8(env, jbody, "body", &body) < 0 ||
        jstring_to_utf8(env, jid, "id", &id) < 0 ||
        jstring_to_utf8(env, jmeta, "meta", &meta) < 0)
        goto out;
    courier_outgoing_t m = {
        .to = to, .kind = (courier_kind_t)kind, .body = body, .id = id,
        .meta = meta,
    };
    char new_id[COURIER_ID_MAX];
    int rc = courier_send(jc->c, &m, new_id);
    if (rc < 0)
        throw_code(env, rc);
    else
        res = utf8_to_jstring(env, new_id);
out:
    free(to);
    free(body);
    free(id);
    free(meta);
    return res;
}

/* A walk into a java.util.List: each row in a local frame of its own (a
 * walk has no bound on its rows: pending). On a Java exception the walk
 * stops (returns 1) with the exception pending. */
typedef struct {
    JNIEnv *env;
    jobject list;
} walk_t;

static int walk_entry(void *ud, const courier_entry_t *e)
{
    walk_t *w = ud;
    JNIEnv *env = w->env;
    if ((*env)->PushLocalFrame(env, 8) < 0)
        return 1;
    jstring id = utf8_to_jstring(env, e->id ? e->id : "");
    jstring peer = id ? utf8_to_jstring(env, e->peer ? e->peer : "") : NULL;
    jstring body = peer ? utf8_to_jstring(env, e->body ? e->body : "") : NULL;
    jstring meta = body ? utf8_to_jstring(env, e->meta ? e->meta : "") : NULL;
    jobject o = meta ? (*env)->NewObject(env, g_entry_class, g_entry_ctor,
                                         (jlong)e->seq, (jint)e->dir, id,
                                         peer, (jint)e->kind, body, meta,
                                         (jint)e->state,
                                         (jlong)e->timestamp_ms,
                                         (jboolean)(e->retracted != 0))
                     : NULL;
    if (o && !(*env)->ExceptionCheck(env))
        (*env)->CallBooleanMethod(env, w->list, g_list_add, o);
    (*env)->PopLocalFrame(env, NULL);
    return (*env)->ExceptionCheck(env) ? 1 : 0;
}

static int walk_conversation(void *ud, const courier_conversation_t *c)
{
    walk_t *w = ud;
    JNIEnv *env = w->env;
    if ((*env)->PushLocalFrame(env, 4) < 0)
        return 1;
    jstring peer = utf8_to_jstring(env, c->peer ? c->peer : "");
    jobject o = peer ? (*env)->NewObject(env, g_conv_class, g_conv_ctor, peer,
                                         (jlong)c->last_seq,
                                         (jlong)c->last_ms,
                                         (jlong)c->unread)
                     : NULL;
    if (o && !(*env)->ExceptionCheck(env))
        (*env)->CallBooleanMethod(env, w->list, g_list_add, o);
    (*env)->PopLocalFrame(env, NULL);
    return (*env)->ExceptionCheck(env) ? 1 : 0;
}

/* After a walk: a negative code is thrown; a stop by walk_* left its
 * exception pending. */
static void walk_done(JNIEnv *env, int rc)
{
    if (rc < 0)
        throw_code(env, rc);
}

static void n_history(JNIEnv *env, jclass cls, jlong h, jstring jpeer,
                      jlong before_seq, jint limit, jobject list)
{
    (void)cls;
    char *peer = NULL;
    jc_t *jc = handle_of(env, h);
    if (!jc || jstring_to_utf8(env, jpeer, "peer", &peer) < 0)
        goto out;
    if (limit < 1 || limit > 1000) {
        char msg[64];
        snprintf(msg, sizeof(msg), "limit (%d) out of range 1..1000",
                 (int)limit);
        throw_glue(env, COURIER_EINVAL, msg);
        goto out;
    }
    walk_t w = { env, list };
    walk_done(env, courier_history(jc->c, peer, (int64_t)before_seq,
                                   (unsigned)limit, walk_entry, &w));
out:
    free(peer);
}

static void n_pending(JNIEnv *env, jclass cls, jlong h, jobject list)
{
    (void)cls;
    jc_t *jc = handle_of(env, h);
    if (!jc)
        return;
    walk_t w = { env, list };
    walk_done(env, courier_pending(jc->c, walk_entry, &w));
}

static void n_conversations(JNIEnv *env, jclass cls, jlong h, jobject list)
{
    (void)cls;
    jc_t *jc = handle_of(env, h);
    if (!jc)
        return;
    walk_t w = { env, list };
    walk_done(env, courier_conversations(jc->c, walk_conversation, &w));
}

/* The calls that take an id (and a peer, when jpeer_opt is not NULL). */
static void n_id_call(JNIEnv *env, jlong h, jstring jpeer, jstring jid,
                      int (*one)(courier_t *, const char *),
                      int (*two)(courier_t *, const char *, const char *))
{
    char *peer = NULL, *id = NULL;
    jc_t *jc = handle_of(env, h);
    if (!jc || (two && jstring_to_utf8(env, jpeer, "peer", &peer) < 0) ||
        jstring_to_utf8(env, jid, "id", &id) < 0)
        goto out;
    int rc = two ? two(jc->c, peer, id) : one(jc->c, id);
    if (rc < 0)
        throw_code(env, rc);
out:
    free(peer);
    free(id);
}

static void n_cancel(JNIEnv *env, jclass cls, jlong h, jstring jid)
{
    (void)cls;
    n_id_call(env, h, NULL, jid, courier_cancel, NULL);
}

static void n_retract(JNIEnv *env, jclass cls, jlong h, jstring jid)
{
    (void)cls;
    n_id_call(env, h, NULL, jid, courier_retract, NULL);
}

static void n_delete(JNIEnv *env, jclass cls, jlong h, jstring jpeer,
                     jstring jid)
{
    (void)cls;
    n_id_call(env, h, jpeer, jid, NULL, courier_delete);
}

static void n_delete_entry(JNIEnv *env, jclass cls, jlong h, jstring jpeer,
                           jstring jid, jint dir)
{
    (void)cls;
    char *peer = NULL, *id = NULL;
    jc_t *jc = handle_of(env, h);
    if (!jc || jstring_to_utf8(env, jpeer, "peer", &peer) < 0 ||
        jstring_to_utf8(env, jid, "id", &id) < 0)
        goto out;
    int rc = courier_delete_entry(jc->c, peer, id, (courier_dir_t)dir);
    if (rc < 0)
        throw_code(env, rc);
out:
    free(peer);
    free(id);
}

static void n_confirm(JNIEnv *env, jclass cls, jlong h, jstring jpeer,
                      jstring jid)
{
    (void)cls;
    n_id_call(env, h, jpeer, jid, NULL, courier_confirm);
}

static void n_erase(JNIEnv *env, jclass cls, jlong h)
{
    (void)cls;
    n_handle_call(env, h, courier_erase);
}

/* Test hooks: Java -> UTF-8 -> Java, UTF-8 bytes both ways, and the count
 * of global refs held for open handles. */
static jstring n_echo(JNIEnv *env, jclass cls, jstring s)
{
    (void)cls;
    char *u = NULL;
    if (jstring_to_utf8(env, s, "s", &u) < 0)
        return NULL;
    jstring r = utf8_to_jstring(env, u);
    free(u);
    return r;
}

static jbyteArray n_to_utf8(JNIEnv *env, jclass cls, jstring s)
{
    (void)cls;
    char *u = NULL;
    if (jstring_to_utf8(env, s, "s", &u) < 0 || !u)
        return NULL;
    jsize n = (jsize)strlen(u);
    jbyteArray a = (*env)->NewByteArray(env, n);
    if (a)
        (*env)->SetByteArrayRegion(env, a, 0, n, (const jbyte *)u);
    free(u);
    return (*env)->ExceptionCheck(env) ? NULL : a;
}

static jstring n_from_utf8(JNIEnv *env, jclass cls, jbyteArray b)
{
    (void)cls;
    if (!b)
        return NULL;
    jsize n = (*env)->GetArrayLength(env, b);
    char *u = malloc((size_t)n + 1);
    if (!u) {
        throw_glue(env, COURIER_ENOMEM, "bytes");
        return NULL;
    }
    (*env)->GetByteArrayRegion(env, b, 0, n, (jbyte *)u);
    if ((*env)->ExceptionCheck(env)) {
        free(u);
        return NULL;
    }
    u[n] = '\0';
    jstring r = utf8_to_jstring(env, u);
    free(u);
    return r;
}

static jlong n_live_refs(JNIEnv *env, jclass cls)
{
    (void)env;
    (void)cls;
    return (jlong)atomic_load(&g_live_refs);
}

#define SIG_S "Ljava/lang/String;"
#define SIG_LIST "Ljava/util/List;"
static const JNINativeMethod g_methods[] = {
    { "nativeDefaults", "()[J", (void *)n_defaults },
    { "nativeOpen",
      "(L" PKG "Courier;L" PKG "Listener;" SIG_S SIG_S SIG_S SIG_S SIG_S
      SIG_S "Z[J)J",
      (void *)n_open },
    { "nativeClose", "(J)V", (void *)n_close },
    { "nativeStart", "(J)V", (void *)n_start },
    { "nativeStop", "(J)V", (void *)n_stop },
    { "nativeSendText", "(J" SIG_S SIG_S ")" SIG_S, (void *)n_send_text },
    { "nativeSendMedia", "(J" SIG_S "I" SIG_S SIG_S ")V",
      (void *)n_send_media },
    { "nativeMarkDisplayed", "(J" SIG_S SIG_S ")V", (void *)n_mark_displayed },
    { "nativeSetComposing", "(J" SIG_S "Z)V", (void *)n_set_composing },
    { "nativeRetry", "(J" SIG_S ")V", (void *)n_retry },
    { "nativeGetState", "(J" SIG_S ")I", (void *)n_get_state },
    { "nativeGetLink", "(J)I", (void *)n_get_link },
    { "nativeVersion", "()" SIG_S, (void *)n_version },
    { "echoForTest", "(" SIG_S ")" SIG_S, (void *)n_echo },
    { "utf8ForTest", "(" SIG_S ")[B", (void *)n_to_utf8 },
    { "fromUtf8ForTest", "([B)" SIG_S, (void *)n_from_utf8 },
    { "liveGlobalRefsForTest", "()J", (void *)n_live_refs },
    { "nativeNetworkChanged", "(J)V", (void *)n_network_changed },
    { "nativeGetInfo", "(J" SIG_S "[J)" SIG_S, (void *)n_get_info },
    { "nativeGetStats", "(J[J)V", (void *)n_get_stats },
    { "nativeRunOnce", "(JI)V", (void *)n_run_once },
    { "nativeDisplayStatus", "(I)" SIG_S, (void *)n_display_status },
    { "nativeSend", "(J" SIG_S "I" SIG_S SIG_S SIG_S ")" SIG_S,
      (void *)n_send },
    { "nativeHistory", "(J" SIG_S "JI" SIG_LIST ")V", (void *)n_history },
    { "nativePending", "(J" SIG_LIST ")V", (void *)n_pending },
    { "nativeConversations", "(J" SIG_LIST ")V", (void *)n_conversations },
    { "nativeCancel", "(J" SIG_S ")V", (void *)n_cancel },
    { "nativeRetract", "(J" SIG_S ")V", (void *)n_retract },
    { "nativeDelete", "(J" SIG_S SIG_S ")V", (void *)n_delete },
    { "nativeConfirm", "(J" SIG_S SIG_S ")V", (void *)n_confirm },
    { "nativeErase", "(J)V", (void *)n_erase },
    { "nativeDeleteEntry", "(J" SIG_S SIG_S "I)V", (void *)n_delete_entry },
    { "nativeSetActive", "(JZ)V", (void *)n_set_active },
    { "nativeSync", "(JI)V", (void *)n_sync },
    { "nativeCheckStatus", "(J)I", (void *)n_check_status },
    { "nativePushEnable", "(J" SIG_S SIG_S SIG_S ")V",
      (void *)n_push_enable },
    { "nativePushDisable", "(J)V", (void *)n_push_disable },
};

/* ---- load / unload ------------------------------------------------------- */

/* Classes are looked up here, on a Java thread: FindClass on the attached
 * loop thread would use the system class loader (Android: not the app's). */
static jclass global_class(JNIEnv *env, const char *name)
{
    jclass local = (*env)->FindClass(env, name);
    if (!local)
        return NULL;
    jclass g = (*env)->NewGlobalRef(env, local);
    (*env)->DeleteLocalRef(env, local);
    return g;
}

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM *vm, void *reserved)
{
    (void)reserved;
    JNIEnv *env = NULL;
    if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION) != JNI_OK)
        return JNI_ERR;
    g_vm = vm;
    if (pthread_key_create(&g_detach_key, detach_thread) != 0)
        return JNI_ERR;
    jclass courier = (*env)->FindClass(env, PKG "Courier");
    jclass listener = courier ? (*env)->FindClass(env, PKG "Listener") : NULL;
    if (!listener)
        return JNI_ERR;
    g_exc_class = global_class(env, PKG "CourierException");
    g_state_class = g_exc_class ? global_class(env, PKG "State") : NULL;
    g_kind_class = g_state_class ? global_class(env, PKG "Kind") : NULL;
    g_link_class = g_kind_class ? global_class(env, PKG "Link") : NULL;
    g_entry_class = g_link_class ? global_class(env, PKG "Entry") : NULL;
    g_conv_class = g_entry_class ? global_class(env, PKG "Conversation")
                                 : NULL;
    jclass list = g_conv_class ? (*env)->FindClass(env, "java/util/List")
                               : NULL;
    if (!list)
        return JNI_ERR;
#define GET(var, how, cls, name, sig)                                   \
    do {                                                                \
        var = (*env)->how(env, cls, name, sig);                         \
        if (!var)                                                       \
            return JNI_ERR;                                             \
    } while (0)
    GET(g_exc_ctor, GetMethodID, g_exc_class, "<init>", "(I" SIG_S ")V");
    GET(g_state_of, GetStaticMethodID, g_state_class, "fromCode",
        "(I)L" PKG "State;");
    GET(g_kind_of, GetStaticMethodID, g_kind_class, "fromCode",
        "(I)L" PKG "Kind;");
    GET(g_link_of, GetStaticMethodID, g_link_class, "fromCode",
        "(I)L" PKG "Link;");
    GET(g_entry_ctor, GetMethodID, g_entry_class, "<init>",
        "(JI" SIG_S SIG_S "I" SIG_S SIG_S "IJZ)V");
    GET(g_conv_ctor, GetMethodID, g_conv_class, "<init>",
        "(" SIG_S "JJJ)V");
    GET(g_list_add, GetMethodID, list, "add", "(Ljava/lang/Object;)Z");
    GET(g_on_state, GetMethodID, listener, "onState",
        "(" SIG_S SIG_S "L" PKG "State;)V");
    GET(g_on_message, GetMethodID, listener, "onMessage",
        "(" SIG_S SIG_S "L" PKG "Kind;" SIG_S "J" SIG_S ")V");
    GET(g_on_retract, GetMethodID, listener, "onRetract",
        "(" SIG_S SIG_S ")V");
    GET(g_on_link, GetMethodID, listener, "onLink", "(L" PKG "Link;)V");
    GET(g_on_composing, GetMethodID, listener, "onComposing",
        "(" SIG_S "Z)V");
    GET(g_on_log, GetMethodID, listener, "onLog", "(I" SIG_S ")V");
    GET(g_on_certificate, GetMethodID, listener, "onCertificate",
        "(" SIG_S SIG_S ")Z");
#undef GET
    if ((*env)->RegisterNatives(env, courier, g_methods,
                                sizeof(g_methods) / sizeof(g_methods[0])) != 0)
        return JNI_ERR;
    (*env)->DeleteLocalRef(env, list);
    (*env)->DeleteLocalRef(env, listener);
    (*env)->DeleteLocalRef(env, courier);
    return JNI_VERSION;
}

JNIEXPORT void JNICALL JNI_OnUnload(JavaVM *vm, void *reserved)
{
    (void)reserved;
    JNIEnv *env = NULL;
    if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION) != JNI_OK)
        return;
    jclass *cls[] = { &g_exc_class, &g_state_class, &g_kind_class,
                      &g_link_class, &g_entry_class, &g_conv_class };
    for (size_t i = 0; i < sizeof(cls) / sizeof(cls[0]); i++) {
        if (*cls[i])
            (*env)->DeleteGlobalRef(env, *cls[i]);
        *cls[i] = NULL;
    }
    pthread_key_delete(g_detach_key);
}
