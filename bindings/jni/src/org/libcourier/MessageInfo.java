// SPDX-License-Identifier: MIT
package org.libcourier;

import org.jetbrains.annotations.NotNull;

/**
 * Why an outgoing message is where it is (courier_info_t), from
 * {@link Courier#getInfo}. A snapshot: it does not change afterwards.
 */
public final class MessageInfo {
    // Order of the numbers the glue fills (courier_jni.c, I_*).
    static final int N_STATE = 0, N_ATTEMPTS = 1, N_CREATED = 2,
        N_LAST_SENT = 3, N_LAST_CHANGE = 4, N_PERMANENT = 5, N_COUNT = 6;

    /** The state now. */
    @NotNull public final State state;
    /** Times the message was written to a stream. */
    public final int attempts;
    /** When it was stored, last written, last changed state (Unix ms;
     *  lastSentMs is 0 before the first write). */
    public final long createdMs, lastSentMs, lastChangeMs;
    /** FAILED and never resent by itself (only {@link Courier#retry}). */
    public final boolean permanent;
    /** Why: "offline", "link-lost", "ack-timeout", "expired", an XMPP
     *  error condition, or "" when there is nothing to say. */
    @NotNull public final String reason;

    MessageInfo(long[] v, String reason) {
        this.state = State.fromCode((int) v[N_STATE]);
        this.attempts = (int) v[N_ATTEMPTS];
        this.createdMs = v[N_CREATED];
        this.lastSentMs = v[N_LAST_SENT];
        this.lastChangeMs = v[N_LAST_CHANGE];
        this.permanent = v[N_PERMANENT] != 0;
        this.reason = reason != null ? reason : "";
    }

    @Override
    @NotNull
    public String toString() {
        return "MessageInfo{" + state + ", attempts=" + attempts
            + ", created=" + createdMs + ", lastSent=" + lastSentMs
            + ", lastChange=" + lastChangeMs + ", permanent=" + permanent
            + ", reason=" + reason + "}";
    }
}
