// SPDX-License-Identifier: MIT
package org.libcourier;

import org.jetbrains.annotations.NotNull;

/** Outgoing message states (courier_state_t; the codes are ABI). */
public enum State {
    QUEUED(0), SENT(1), OFFLINE(2), DELIVERED(3), DISPLAYED(4), FAILED(5);

    private final int code;

    State(int code) { this.code = code; }

    /** The C value. */
    public int code() { return code; }

    /** The state of a C value; IllegalArgumentException if unknown. */
    @NotNull
    public static State fromCode(int code) {
        for (State s : values())
            if (s.code == code)
                return s;
        throw new IllegalArgumentException("unknown state " + code);
    }
}
