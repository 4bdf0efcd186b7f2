// SPDX-License-Identifier: MIT
package org.libcourier;

import java.util.concurrent.atomic.AtomicLong;

/**
 * One XMPP account (a courier_t). Every method may be called from any
 * thread, listener callbacks included; each failure throws one
 * {@link CourierException} whose code is the C code. Callbacks run on the
 * library's loop thread (see {@link Listener}). Close it when done: until
 * then the native side holds the Courier and its Listener.
 *
 * <p>Calling a method concurrently with {@link #close()} (on another
 * thread) is a bug, as with the C handle; calls after close throw ECLOSED.
 */
public final class Courier implements AutoCloseable {
    static {
        System.loadLibrary("courier_jni");
    }

    private final AtomicLong handle = new AtomicLong();

    private Courier() {}

    /**
     * Open an account: validate {@code cfg}, open (or create) and migrate
     * the store. No network until {@link #start()}.
     * @throws CourierException EINVAL (a bad field, named in the message),
     *         ENOMEM, ESTORE, ECORRUPT
     */
    public static Courier open(Config cfg, Listener listener) {
        if (cfg == null)
            throw new NullPointerException("cfg");
        Courier c = new Courier();
        Listener l = listener != null ? listener : new Listener() {};
        c.handle.set(nativeOpen(c, l, cfg.jid, cfg.password, cfg.host,
                                cfg.dbPath, cfg.caFile, cfg.toNative()));
        return c;
    }

    /** Connect and run the loop on the library's own thread, reconnecting
     *  by itself until {@link #stop()}.
     *  @throws CourierException ESTATE (already started), ENOMEM, ECLOSED */
    public void start() { nativeStart(handle.get()); }

    /** Disconnect and join the loop thread; stored messages are kept.
     *  @throws CourierException ESTATE, ECLOSED */
    public void stop() { nativeStop(handle.get()); }

    /** Stop if needed and free the native handle; no callback runs after
     *  it returns (from a callback: after that callback). Idempotent. */
    @Override
    public void close() {
        long h = handle.getAndSet(0);
        if (h != 0)
            nativeClose(h);
    }

    /** True once {@link #close()} was called. */
    public boolean isClosed() { return handle.get() == 0; }

    /**
     * Store a text message for {@code to} (a bare JID) and queue it;
     * returns its id once it is durable. Offline it is reported FAILED and
     * goes out by itself on reconnect.
     * @throws CourierException EINVAL (bad JID, empty, oversized body,
     *         U+0000 in a string), ESTORE, ECLOSED
     */
    public String sendText(String to, String body) {
        return nativeSendText(handle.get(), to, body);
    }

    /** Store a voice or image message whose id is {@code mediaId};
     *  {@code body} is the media URL or description.
     *  @throws CourierException as sendText, plus EINVAL for TEXT or a bad
     *          id and ESTATE when that id exists already */
    public void sendMedia(String to, Kind kind, String mediaId, String body) {
        if (kind == null)
            throw new NullPointerException("kind");
        nativeSendMedia(handle.get(), to, kind.code(), mediaId, body);
    }

    /** Tell {@code peer} that their message {@code id} was shown.
     *  @throws CourierException EINVAL, ENOTFOUND, ESTORE, ECLOSED */
    public void markDisplayed(String peer, String id) {
        nativeMarkDisplayed(handle.get(), peer, id);
    }

    /** Send a composing (true) or active (false) notification.
     *  @throws CourierException EINVAL, ENOTCONN (offline), ECLOSED */
    public void setComposing(String peer, boolean on) {
        nativeSetComposing(handle.get(), peer, on);
    }

    /** Send a FAILED message again now (or on reconnect).
     *  @throws CourierException EINVAL, ENOTFOUND, ESTATE (not FAILED),
     *          ESTORE, ECLOSED */
    public void retry(String id) { nativeRetry(handle.get(), id); }

    /** Current state of outgoing message {@code id}, from the store.
     *  @throws CourierException EINVAL, ENOTFOUND, ESTORE, ECLOSED */
    public State getState(String id) {
        return State.fromCode(nativeGetState(handle.get(), id));
    }

    /** Current link state.
     *  @throws CourierException EAUTH (login refused), ECLOSED */
    public Link getLink() { return Link.fromCode(nativeGetLink(handle.get())); }

    /**
     * The device's connectivity changed (behaviour.md §10): a link that is
     * up is probed at once with a ping and cut if it goes unanswered for
     * pingTimeoutMs; a link that is down reconnects now instead of waiting
     * out its backoff. Call it from a
     * {@code ConnectivityManager.NetworkCallback} (onAvailable, onLost).
     * Any thread; never blocks (no I/O, no lock): it wakes the loop. Does
     * nothing on a Courier that is not started.
     * @throws CourierException ECLOSED
     */
    public void networkChanged() { nativeNetworkChanged(handle.get()); }

    /** The native library's version, e.g. "0.1.0". */
    public static String version() { return nativeVersion(); }

    // ---- native (registered by JNI_OnLoad in courier_jni.c) -------------
    static native long[] nativeDefaults();
    private static native long nativeOpen(Courier self, Listener l,
        String jid, String password, String host, String dbPath,
        String caFile, long[] numbers);
    private static native void nativeClose(long h);
    private static native void nativeStart(long h);
    private static native void nativeStop(long h);
    private static native String nativeSendText(long h, String to,
                                                String body);
    private static native void nativeSendMedia(long h, String to, int kind,
                                               String mediaId, String body);
    private static native void nativeMarkDisplayed(long h, String peer,
                                                   String id);
    private static native void nativeSetComposing(long h, String peer,
                                                  boolean on);
    private static native void nativeRetry(long h, String id);
    private static native int nativeGetState(long h, String id);
    private static native int nativeGetLink(long h);
    private static native String nativeVersion();
    private static native void nativeNetworkChanged(long h);

    // Test hooks: string conversion both ways, global refs held.
    static native String echoForTest(String s);
    static native byte[] utf8ForTest(String s);
    static native String fromUtf8ForTest(byte[] utf8);
    static native long liveGlobalRefsForTest();
}
