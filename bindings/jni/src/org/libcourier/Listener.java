// SPDX-License-Identifier: MIT
package org.libcourier;

import org.jetbrains.annotations.NotNull;

/**
 * Events of one Courier. By default every method runs on the library's
 * loop thread (named "courier-loop"; with {@link Courier#runOnce}, the
 * thread that calls it), never on the thread that called the API: hop to
 * the UI thread yourself, or give {@link Courier#open(Config, Listener,
 * java.util.concurrent.Executor)} an executor (Android:
 * {@code context.getMainExecutor()}), which then runs every call. On the
 * library's thread methods must not block (nor do disk I/O you can avoid:
 * they hold up every other event). They may call back into the Courier,
 * including {@link Courier#close()}. An exception thrown on the library's
 * thread is logged to stderr and dropped; it never reaches the library.
 * Strings are never null, are valid Java strings (emoji included) and may
 * be kept.
 * Every method has an empty default: implement the ones you need.
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
}
