// SPDX-License-Identifier: MIT
package org.libcourier;

import org.jetbrains.annotations.NotNull;

/**
 * One message of the history as the store keeps it (courier_entry_t), from
 * {@link Courier#history} and {@link Courier#pending}. Immutable: a
 * snapshot taken when it was read.
 */
public final class Entry {
    /** This account's history order: a newer entry has a larger seq; the
     *  paging cursor of {@link Courier#history} ({@code beforeSeq}). */
    public final long seq;
    /** Sent ({@link Direction#OUT}) or received ({@link Direction#IN}). */
    @NotNull public final Direction dir;
    /** The message id (the app's own when it gave one to
     *  {@link Courier#send}). */
    @NotNull public final String id;
    /** The other side's bare JID. */
    @NotNull public final String peer;
    @NotNull public final Kind kind;
    /** Text, or the media URL/description; "" once retracted. */
    @NotNull public final String body;
    /** App data sent with the message; "" if none (and once retracted). */
    @NotNull public final String meta;
    /** OUT: its state; IN: DELIVERED, or DISPLAYED once marked (by the app,
     *  or by marking a later message of the peer). */
    @NotNull public final State state;
    /** OUT: when it was created; IN: the sender's time (Unix ms). */
    public final long timestampMs;
    /** Its sender retracted it (XEP-0424): body and meta are "". */
    public final boolean retracted;

    /** Made by the glue (courier_jni.c); codes are the C values. */
    Entry(long seq, int dir, String id, String peer, int kind, String body,
          String meta, int state, long timestampMs, boolean retracted) {
        this.seq = seq;
        this.dir = Direction.fromCode(dir);
        this.id = id != null ? id : "";
        this.peer = peer != null ? peer : "";
        this.kind = Kind.fromCode(kind);
        this.body = body != null ? body : "";
        this.meta = meta != null ? meta : "";
        this.state = State.fromCode(state);
        this.timestampMs = timestampMs;
        this.retracted = retracted;
    }

    @Override
    @NotNull
    public String toString() {
        return "Entry{seq=" + seq + ", " + dir + ", id=" + id + ", peer="
            + peer + ", " + kind + ", body=" + body + ", meta=" + meta
            + ", " + state + ", ts=" + timestampMs
            + (retracted ? ", retracted" : "") + "}";
    }
}
