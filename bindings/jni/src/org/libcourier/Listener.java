// SPDX-License-Identifier: MIT
package org.libcourier;

/**
 * Events of one Courier. Every method runs on the library's loop thread
 * (named "courier-loop"), never on the thread that called the API: hop to
 * the UI thread yourself (on Android, {@code Handler.post} or
 * {@code runOnUiThread}). Methods must not block. They may call back into
 * the Courier, including {@link Courier#close()}. An exception thrown here
 * is logged to stderr and dropped; it never reaches the library. Strings
 * are valid Java strings (emoji included) and may be kept.
 * Every method has an empty default: implement the ones you need.
 */
public interface Listener {
    int LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3;

    /** Outgoing message {@code id} to {@code peer} is now {@code state}
     *  (durable first; once per transition, in order). */
    default void onState(String id, String peer, State state) {}

    /** An incoming message, handed over exactly once per (peer, id);
     *  {@code timestampMs} is the original send time (Unix ms). */
    default void onMessage(String id, String peer, Kind kind, String body,
                           long timestampMs) {}

    /** The link to the server changed. */
    default void onLink(Link link) {}

    /** {@code peer} started (true) or stopped (false) typing. */
    default void onComposing(String peer, boolean composing) {}

    /** A log line of the library; {@code level} is one of LOG_*. */
    default void onLog(int level, String line) {}
}
