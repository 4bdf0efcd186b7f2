// SPDX-License-Identifier: MIT
package org.libcourier;

import org.jetbrains.annotations.NotNull;

/**
 * One conversation (courier_conversation_t), from
 * {@link Courier#conversations}. Immutable: a snapshot.
 */
public final class Conversation {
    /** The peer's bare JID. */
    @NotNull public final String peer;
    /** The seq and time (Unix ms) of the newest entry with this peer. */
    public final long lastSeq, lastMs;
    /** Incoming messages not marked displayed: those after the newest one
     *  marked (marking one marks the earlier ones, as XEP-0333 does);
     *  retracted ones are not counted. */
    public final long unread;

    /** Made by the glue (courier_jni.c). */
    Conversation(String peer, long lastSeq, long lastMs, long unread) {
        this.peer = peer != null ? peer : "";
        this.lastSeq = lastSeq;
        this.lastMs = lastMs;
        this.unread = unread;
    }

    @Override
    @NotNull
    public String toString() {
        return "Conversation{" + peer + ", lastSeq=" + lastSeq + ", lastMs="
            + lastMs + ", unread=" + unread + "}";
    }
}
