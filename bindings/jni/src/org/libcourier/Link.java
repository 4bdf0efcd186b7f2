// SPDX-License-Identifier: MIT
package org.libcourier;

import org.jetbrains.annotations.NotNull;

/** State of the link to the server (courier_link_t; the codes are ABI). */
public enum Link {
    OFFLINE(0), CONNECTING(1), ONLINE(2);

    private final int code;

    Link(int code) { this.code = code; }

    /** The C value. */
    public int code() { return code; }

    /** The link state of a C value; IllegalArgumentException if unknown. */
    @NotNull
    public static Link fromCode(int code) {
        for (Link l : values())
            if (l.code == code)
                return l;
        throw new IllegalArgumentException("unknown link state " + code);
    }
}
