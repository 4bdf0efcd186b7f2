// SPDX-License-Identifier: MIT
package org.libcourier;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/**
 * A courier_* call returned a negative code. The message is
 * courier_strerror(code) + " : " + courier_last_error(), read on the
 * failing thread right after the call.
 */
public class CourierException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** The error codes of courier.h (values are ABI). */
    public enum Code {
        EINVAL(-1), ENOMEM(-2), ENOTFOUND(-3), ESTATE(-4), ENOTCONN(-5),
        ESTORE(-6), ECORRUPT(-7), ECLOSED(-8), EAUTH(-9), ENOTSUP(-10),
        /** {@link Courier#sync}, {@link Courier#pushEnable},
         *  {@link Courier#pushDisable}: its time ran out with something
         *  still in flight, or no answer from the server in time
         *  (COURIER_ETIMEDOUT). */
        ETIMEDOUT(-11),
        /** {@link Courier#pushEnable}, {@link Courier#pushDisable}: the
         *  server answered the request with an error; its condition is in
         *  the message (COURIER_EREFUSED). */
        EREFUSED(-12),
        /** A code this binding does not know (a newer library). */
        UNKNOWN(0);

        private final int value;

        Code(int value) { this.value = value; }

        /** The C value (0 for UNKNOWN). */
        public int value() { return value; }

        /** The Code of a C value; UNKNOWN for any other. */
        @NotNull
        public static Code fromValue(int value) {
            for (Code c : values())
                if (c.value == value && c != UNKNOWN)
                    return c;
            return UNKNOWN;
        }
    }

    private final int errorCode;

    /** Made by the native glue. */
    public CourierException(int errorCode, @Nullable String message) {
        super(message);
        this.errorCode = errorCode;
    }

    /** The numeric courier_error_t value (negative). */
    public int getErrorCode() { return errorCode; }

    /** The code as an enum. */
    @NotNull
    public Code getCode() { return Code.fromValue(errorCode); }
}
