// SPDX-License-Identifier: MIT
package org.libcourier;

import org.jetbrains.annotations.NotNull;

/** Message kinds (courier_kind_t; the codes are ABI). */
public enum Kind {
    TEXT(0), VOICE(1), IMAGE(2);

    private final int code;

    Kind(int code) { this.code = code; }

    /** The C value. */
    public int code() { return code; }

    /** The kind of a C value; IllegalArgumentException if unknown. */
    @NotNull
    public static Kind fromCode(int code) {
        for (Kind k : values())
            if (k.code == code)
                return k;
        throw new IllegalArgumentException("unknown kind " + code);
    }
}
