// SPDX-License-Identifier: MIT
package org.libcourier;

import org.jetbrains.annotations.NotNull;

/**
 * Events of one Courier. By default every method runs on the library's
 * loop thread (named "courier-loop"; with {@link Courier#runOnce}, the
 * thread that calls it), never on the thread that called the API: hop to
 * the UI thread yourself, or give {@link Courier#open(Config, Listener,
 * java.util.concurrent.Executor)} an executor (Android:
 * {@code context.getMainExecutor()}), which then runs every call but
 * {@link #onCertificate} (it must answer on the library's thread). On the
 * library's thread methods must not block (nor do disk I/O you can avoid:
 * they hold up every other event). They may call back into the Courier,
 * including {@link Courier#close()}. An exception thrown on the library's
 * thread is logged to stderr and dropped; it never reaches the library.
 * Strings are never null, are valid Java strings (emoji included) and may
 * be kept.
 * Every method has a default that does nothing (onCertificate's refuses):
 * implement the ones you need.
 */
public interface Listener {
    int LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3;

    /** Outgoing message {@code id} to {@code peer} is now {@code state}
     *  (durable first; once per transition, in order). */
    default void onState(@NotNull String id, @NotNull String peer,
                         @NotNull State state) {}

    /** An incoming message, handed over exactly once per (peer, id);
     *  {@code timestampMs} is the original send time (Unix ms). Called by
     *  the default of the six-argument form below: override that one to
     *  get the message's {@code meta}. */
    default void onMessage(@NotNull String id, @NotNull String peer,
                           @NotNull Kind kind, @NotNull String body,
                           long timestampMs) {}

    /** An incoming message with the app data its sender attached
     *  ({@code meta}, "" if none; {@link Outgoing#meta}). The library
     *  calls this form; its default calls the five-argument one, so a
     *  listener written before meta existed still gets every message.
     *  With {@link Config#appConfirms} the message is handed again at
     *  every open until {@link Courier#confirm} (so one queued to the
     *  app's own thread is not lost if the process dies first). */
    default void onMessage(@NotNull String id, @NotNull String peer,
                           @NotNull Kind kind, @NotNull String body,
                           long timestampMs, @NotNull String meta) {
        onMessage(id, peer, kind, body, timestampMs);
    }

    /** {@code peer} retracted its message {@code id} (XEP-0424): the
     *  history entry is marked retracted and its body and meta are gone
     *  (remove them from the app's own copy too). Once per message; never
     *  for a message that was not handed to {@link #onMessage}. */
    default void onRetract(@NotNull String peer, @NotNull String id) {}

    /** The link to the server changed. */
    default void onLink(@NotNull Link link) {}

    /** {@code peer} started (true) or stopped (false) typing. */
    default void onComposing(@NotNull String peer, boolean composing) {}

    /** A log line of the library; {@code level} is one of LOG_*. */
    default void onLog(int level, @NotNull String line) {}

    /**
     * Platform trust (courier_callbacks_t.on_certificate, behaviour.md
     * §10): OpenSSL could not verify the server's certificate with its
     * default paths, {@link Config#caFile} and {@link Config#caPath}
     * (on a phone those paths hold nothing), so the app decides with the
     * platform's trust store (Android: an {@code X509TrustManager}; see
     * the README). {@code host} is the JID's domain; {@code pemChain} the
     * certificates the server presented, as PEM, leaf first (libstrophe
     * 0.12 shows the library the leaf and the certificates OpenSSL
     * reported: for a leaf with one intermediate that is the whole chain).
     * Return true to accept.
     *
     * <p>The library checks the host name itself (X509_check_host) before
     * it asks: a certificate for another name is refused and this is not
     * called. Do not check the name again with rules of your own.
     *
     * <p>Runs on the library's loop thread inside the login, before any
     * credential is sent, <b>even when {@link Courier#open(Config,
     * Listener, java.util.concurrent.Executor)} was given an executor</b>:
     * the answer is needed now. The link waits for it (and, through
     * libstrophe's lock, other Couriers' loops too): answer quickly, well
     * within {@link Config#pingTimeoutMs}, after which the attempt is cut
     * and the next one asks again; never wait for the main thread. An
     * exception thrown here is logged and counts as false (refused).
     *
     * <p>The default (not overridden) leaves the C callback unset: an
     * unverifiable certificate is refused inside the TLS handshake, as
     * without this method.
     */
    default boolean onCertificate(@NotNull String host,
                                  @NotNull String pemChain) {
        return false;
    }
}
