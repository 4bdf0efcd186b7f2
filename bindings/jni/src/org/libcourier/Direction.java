// SPDX-License-Identifier: MIT
package org.libcourier;

import org.jetbrains.annotations.NotNull;

/** Direction of a history {@link Entry} (courier_dir_t; the codes are
 *  ABI). */
public enum Direction {
    /** Sent by this account. */
    OUT(0),
    /** Received from the peer. */
    IN(1);

    private final int code;

    Direction(int code) { this.code = code; }

    /** The C value. */
    public int code() { return code; }

    /** The direction of a C value; IllegalArgumentException if unknown. */
    @NotNull
    public static Direction fromCode(int code) {
        for (Direction d : values())
            if (d.code == code)
                return d;
        throw new IllegalArgumentException("unknown direction " + code);
    }
}
