// SPDX-License-Identifier: MIT
package org.libcourier;

import org.jetbrains.annotations.NotNull;

/**
 * What the reliability rules did since {@link Courier#open} (courier_stats_t,
 * from {@link Courier#getStats}; in memory, not persisted). A snapshot.
 * The C counters are unsigned 64-bit; they never reach 2^63 here.
 */
public final class Stats {
    // Order of the numbers the glue fills (courier_jni.c, S_*).
    static final int N_SENT = 0, N_RESENT_RECONNECT = 1, N_RESENT_PEER = 2,
        N_RESENT_RETRY = 3, N_RECEIVED = 4, N_DUPLICATES = 5, N_LINKS_UP = 6,
        N_COUNT = 7;

    /** Messages written the first time. */
    public final long sent;
    /** Written again after a reconnect (earliest delivery). */
    public final long resentReconnect;
    /** Written again because the peer wrote (eventual delivery). */
    public final long resentPeer;
    /** Written again by {@link Courier#retry}. */
    public final long resentRetry;
    /** Incoming messages handed to the app. */
    public final long received;
    /** Incoming duplicates dropped. */
    public final long duplicates;
    /** Sessions that became ready. */
    public final long linksUp;

    Stats(long[] v) {
        sent = v[N_SENT];
        resentReconnect = v[N_RESENT_RECONNECT];
        resentPeer = v[N_RESENT_PEER];
        resentRetry = v[N_RESENT_RETRY];
        received = v[N_RECEIVED];
        duplicates = v[N_DUPLICATES];
        linksUp = v[N_LINKS_UP];
    }

    @Override
    @NotNull
    public String toString() {
        return "Stats{sent=" + sent + ", resentReconnect=" + resentReconnect
            + ", resentPeer=" + resentPeer + ", resentRetry=" + resentRetry
            + ", received=" + received + ", duplicates=" + duplicates
            + ", linksUp=" + linksUp + "}";
    }
}
