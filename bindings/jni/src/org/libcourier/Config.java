// SPDX-License-Identifier: MIT
package org.libcourier;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/**
 * Account configuration, mirroring courier_config_t. A new Config holds
 * the library's own defaults (from courier_config_init()); set the fields
 * you need. {@link Courier#open} copies it, so it may be changed or
 * dropped afterwards. Unsigned C fields are ints here: a negative value is
 * refused with CourierException EINVAL at open.
 */
public final class Config {
    /** Required: the account, e.g. "alice@example.com". The strings are
     *  nullable so that a new Config can start empty; open() refuses a
     *  required one left null (EINVAL). */
    @Nullable public String jid;
    /** Required. */
    @Nullable public String password;
    /** Optional server host; null = from the JID (SRV). */
    @Nullable public String host;
    /** 0 = default. */
    public int port;
    /** Required: the SQLite file (created mode 0600). */
    @Nullable public String dbPath;
    /** Optional CA bundle (PEM file) trusted for TLS besides OpenSSL's
     *  default paths: a private CA. On a phone, where those paths hold
     *  nothing, the public CAs come from the platform through
     *  {@link Listener#onCertificate} (or from a bundle shipped here). */
    @Nullable public String caFile;
    /** Optional directory of hashed CA files (OpenSSL's c_rehash layout),
     *  trusted as {@link #caFile} is (courier_config_t.ca_path,
     *  behaviour.md §10). */
    @Nullable public String caPath;
    /** false = TLS required. */
    public boolean allowPlaintext;
    public int ackTimeoutMs, resendGraceMs;
    public int pingIntervalMs, pingTimeoutMs;
    public int reconnectMinMs, reconnectMaxMs;
    public int maxInFlight;
    /** 0 = never expire. */
    public long maxAgeMs;
    public boolean implicitRead;
    /** SQLite synchronous=FULL. */
    public boolean synchronousFull;
    public int maxBodyBytes;
    /** true: an incoming message counts as handed only once the app calls
     *  {@link Courier#confirm} (after writing it to its own database);
     *  until then it is handed again at every open. false (the default):
     *  when {@link Listener#onMessage} returns. */
    public boolean appConfirms;

    // Order of the numbers exchanged with the glue (courier_jni.c, N_*).
    private static final int N_PORT = 0, N_ALLOW_PLAINTEXT = 1,
        N_ACK_TIMEOUT = 2, N_RESEND_GRACE = 3, N_PING_INTERVAL = 4,
        N_PING_TIMEOUT = 5, N_RECONNECT_MIN = 6, N_RECONNECT_MAX = 7,
        N_MAX_IN_FLIGHT = 8, N_MAX_AGE = 9, N_IMPLICIT_READ = 10,
        N_SYNCHRONOUS_FULL = 11, N_MAX_BODY = 12, N_APP_CONFIRMS = 13,
        N_COUNT = 14;

    /** The defaults of courier_config_init(); strings null. */
    public Config() {
        long[] v = Courier.nativeDefaults();
        port = (int) v[N_PORT];
        allowPlaintext = v[N_ALLOW_PLAINTEXT] != 0;
        ackTimeoutMs = (int) v[N_ACK_TIMEOUT];
        resendGraceMs = (int) v[N_RESEND_GRACE];
        pingIntervalMs = (int) v[N_PING_INTERVAL];
        pingTimeoutMs = (int) v[N_PING_TIMEOUT];
        reconnectMinMs = (int) v[N_RECONNECT_MIN];
        reconnectMaxMs = (int) v[N_RECONNECT_MAX];
        maxInFlight = (int) v[N_MAX_IN_FLIGHT];
        maxAgeMs = v[N_MAX_AGE];
        implicitRead = v[N_IMPLICIT_READ] != 0;
        synchronousFull = v[N_SYNCHRONOUS_FULL] != 0;
        maxBodyBytes = (int) v[N_MAX_BODY];
        appConfirms = v[N_APP_CONFIRMS] != 0;
    }

    @NotNull
    long[] toNative() {
        long[] v = new long[N_COUNT];
        v[N_PORT] = port;
        v[N_ALLOW_PLAINTEXT] = allowPlaintext ? 1 : 0;
        v[N_ACK_TIMEOUT] = ackTimeoutMs;
        v[N_RESEND_GRACE] = resendGraceMs;
        v[N_PING_INTERVAL] = pingIntervalMs;
        v[N_PING_TIMEOUT] = pingTimeoutMs;
        v[N_RECONNECT_MIN] = reconnectMinMs;
        v[N_RECONNECT_MAX] = reconnectMaxMs;
        v[N_MAX_IN_FLIGHT] = maxInFlight;
        v[N_MAX_AGE] = maxAgeMs;
        v[N_IMPLICIT_READ] = implicitRead ? 1 : 0;
        v[N_SYNCHRONOUS_FULL] = synchronousFull ? 1 : 0;
        v[N_MAX_BODY] = maxBodyBytes;
        v[N_APP_CONFIRMS] = appConfirms ? 1 : 0;
        return v;
    }
}
