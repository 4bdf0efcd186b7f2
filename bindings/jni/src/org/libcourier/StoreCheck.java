// SPDX-License-Identifier: MIT
package org.libcourier;

import org.jetbrains.annotations.NotNull;

/**
 * Where the check of the store owed after an unclean close stands
 * (courier_check_t, behaviour.md §10; the codes are ABI). A store whose
 * last close was not clean (the app was killed, the process crashed) is
 * checked page by page on a thread of the library's own after
 * {@link Courier#open} returns; {@link Courier#checkStatus()} reads the
 * verdict.
 */
public enum StoreCheck {
    /** Nothing owed: the last close was clean. */
    NONE(0),
    /** Owed, under way on the library's check thread. */
    RUNNING(1),
    /** Ran to the end: no damage found. */
    OK(2),
    /** Ran to the end: the store is damaged. {@link Courier#checkStatus()}
     *  reports it as a {@link CourierException} with code ECORRUPT, whose
     *  message carries SQLite's first finding (as the C call returns
     *  COURIER_ECORRUPT): it never returns this value. */
    DAMAGED(3),
    /** Could not run (I/O error, out of memory): owed again at the next
     *  open. */
    FAILED(4);

    private final int code;

    StoreCheck(int code) { this.code = code; }

    /** The C value. */
    public int code() { return code; }

    /** The check state of a C value; IllegalArgumentException if unknown. */
    @NotNull
    public static StoreCheck fromCode(int code) {
        for (StoreCheck s : values())
            if (s.code == code)
                return s;
        throw new IllegalArgumentException("unknown check state " + code);
    }
}
