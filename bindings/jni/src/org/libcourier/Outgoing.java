// SPDX-License-Identifier: MIT
package org.libcourier;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/**
 * What {@link Courier#send} sends (courier_outgoing_t). Immutable; made
 * with {@link #builder}:
 * <pre>{@code
 * String id = courier.send(Outgoing.builder("bob@example.com", url)
 *     .kind(Kind.VOICE).id(myRowId).meta("{\"secs\":12}").build());
 * }</pre>
 */
public final class Outgoing {
    /** The peer's bare JID. */
    @NotNull public final String to;
    /** TEXT unless set. */
    @NotNull public final Kind kind;
    /** Text, or the media URL/description. */
    @NotNull public final String body;
    /** The app's own id (null: the library makes one); required for
     *  VOICE and IMAGE (the media id). */
    @Nullable public final String id;
    /** App data delivered with the message (UTF-8, at most 4 KiB: a voice
     *  message's length, an image's size, reply-to...); null: none. */
    @Nullable public final String meta;

    private Outgoing(Builder b) {
        this.to = b.to;
        this.kind = b.kind;
        this.body = b.body;
        this.id = b.id;
        this.meta = b.meta;
    }

    /** A builder for a TEXT message {@code body} to {@code to}. */
    @NotNull
    public static Builder builder(@NotNull String to, @NotNull String body) {
        return new Builder(to, body);
    }

    /** Builds an {@link Outgoing}; the library validates it at send. */
    public static final class Builder {
        private final String to, body;
        private Kind kind = Kind.TEXT;
        private String id, meta;

        /** A TEXT message {@code body} to {@code to}. */
        public Builder(@NotNull String to, @NotNull String body) {
            if (to == null)
                throw new NullPointerException("to");
            if (body == null)
                throw new NullPointerException("body");
            this.to = to;
            this.body = body;
        }

        /** TEXT (the default), VOICE or IMAGE. */
        @NotNull
        public Builder kind(@NotNull Kind kind) {
            if (kind == null)
                throw new NullPointerException("kind");
            this.kind = kind;
            return this;
        }

        /** The app's own id (null: one is made; VOICE/IMAGE need one). */
        @NotNull
        public Builder id(@Nullable String id) {
            this.id = id;
            return this;
        }

        /** App data delivered with the message (null: none). */
        @NotNull
        public Builder meta(@Nullable String meta) {
            this.meta = meta;
            return this;
        }

        @NotNull
        public Outgoing build() { return new Outgoing(this); }
    }

    @Override
    @NotNull
    public String toString() {
        return "Outgoing{to=" + to + ", " + kind + ", id=" + id + ", body="
            + body + ", meta=" + meta + "}";
    }
}
