// SPDX-License-Identifier: MIT
package org.libcourier;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicLong;

import org.jetbrains.annotations.NotNull;
import org.jetbrains.annotations.Nullable;

/**
 * One XMPP account (a courier_t). Every method may be called from any
 * thread, listener callbacks included; each failure throws one
 * {@link CourierException} whose code is the C code. Close it when done:
 * until then the native side holds the Courier and its Listener.
 *
 * <p><b>Where callbacks run.</b> By default on the library's loop thread
 * ("courier-loop"; with {@link #runOnce}, the thread that calls it). Give
 * {@link #open(Config, Listener, Executor)} an {@link Executor} to have
 * every listener call handed to it instead (Android:
 * {@code context.getMainExecutor()}; a single-thread executor of your own).
 * The executor must run tasks in the order it receives them (a serial
 * executor) if you rely on the order of events.
 *
 * <p><b>Blocking and disk I/O</b> (for {@code StrictMode}; the detail is in
 * each method and in include/courier.h):
 * <ul>
 * <li>Never block, no disk: {@link #networkChanged()},
 *     {@link #setActive(boolean)}, {@link #checkStatus()},
 *     {@link #version()}, {@link #displayStatus(State)},
 *     {@link #isClosed()}.</li>
 * <li>No disk, but take the handle's lock (can wait for the loop thread's
 *     current store work): {@link #start()}, {@link #getStats()},
 *     {@link #getLink()}.</li>
 * <li>Read the SQLite store: {@link #getState}, {@link #getInfo},
 *     {@link #setComposing}, {@link #history}, {@link #pending},
 *     {@link #conversations}.</li>
 * <li>Write and commit the store before returning: {@link #sendText},
 *     {@link #sendMedia}, {@link #send}, {@link #markDisplayed},
 *     {@link #retry}, {@link #cancel}, {@link #retract}, {@link #delete},
 *     {@link #deleteEntry}, {@link #confirm}; {@link #erase} also rewrites
 *     the whole file.</li>
 * <li>Can take long: {@link #open} (opens and migrates the store; the
 *     check owed after a crash runs on a thread of the library's own:
 *     {@link #checkStatus()}), {@link #sync} (up to its timeout),
 *     {@link #pushEnable} and {@link #pushDisable} (commit to the store,
 *     then wait up to {@link Config#ackTimeoutMs} for the server's answer
 *     while online), {@link #stop()} and {@link #close()} (a goodbye of up
 *     to ~2 s,
 *     commits), {@link #runOnce} (a turn of the loop: network, store and
 *     your callbacks).</li>
 * </ul>
 * Keep every call that touches the disk off Android's main thread.
 *
 * <p>Calling a method concurrently with {@link #close()} (on another
 * thread) is a bug, as with the C handle; calls after close throw ECLOSED.
 */
public final class Courier implements AutoCloseable {
    static {
        System.loadLibrary("courier_jni");
    }

    /**
     * Stack a thread needs to call {@link #runOnce} whatever a server sends
     * (COURIER_RUN_ONCE_STACK_BYTES, 64 MiB): create that thread with
     * {@code new Thread(null, task, name, Courier.RUN_ONCE_STACK_BYTES)}.
     * {@link #start()}'s own thread has it already.
     */
    public static final long RUN_ONCE_STACK_BYTES = 64L * 1024 * 1024;

    private final AtomicLong handle = new AtomicLong();

    private Courier() {}

    /**
     * Open an account, callbacks on the library's thread: the same as
     * {@code open(cfg, listener, null)}.
     * @throws CourierException EINVAL (a bad field, named in the message),
     *         ENOMEM, ESTORE, ECORRUPT
     */
    @NotNull
    public static Courier open(@NotNull Config cfg,
                               @Nullable Listener listener) {
        return open(cfg, listener, null);
    }

    /**
     * Open an account: validate {@code cfg}, open (or create) and migrate
     * the store. No network until {@link #start()} or {@link #runOnce}.
     *
     * <p>Each listener call is handed to {@code callbackExecutor} as one
     * task ({@code null}: run on the library's thread, as
     * {@link Listener} describes). A task still queued when
     * {@link #close()} returns is dropped when it comes to run (it checks
     * that the Courier is open); one already running finishes. A task the
     * executor rejects is logged to stderr and lost: the message itself is
     * in the store ({@link #getState}). An exception thrown by the listener
     * inside a task is the executor's (its thread's uncaught-exception
     * handler), not logged and dropped as on the library's thread.
     *
     * <p>{@link Listener#onCertificate} is asked only when the listener
     * overrides it (otherwise the C callback stays unset and an
     * unverifiable certificate is refused in the TLS handshake); it is
     * never handed to the executor.
     *
     * <p>Blocks for disk I/O: opens the SQLite file, migrates an older
     * store, reads the unsettled outbox and unhanded inbox. After an
     * unclean close (the app was killed) the check of every page that is
     * then owed runs on a thread of the library's own after open returns:
     * see {@link #checkStatus()}. Not on the main thread.
     * @throws CourierException EINVAL (a bad field, named in the message),
     *         ENOMEM, ESTORE, ECORRUPT
     */
    @NotNull
    public static Courier open(@NotNull Config cfg,
                               @Nullable Listener listener,
                               @Nullable Executor callbackExecutor) {
        if (cfg == null)
            throw new NullPointerException("cfg");
        Courier c = new Courier();
        Listener l = listener != null ? listener : new Listener() {};
        if (callbackExecutor != null && listener != null)
            l = new ExecutorListener(c, l, callbackExecutor);
        c.handle.set(nativeOpen(c, l, cfg.jid, cfg.password, cfg.host,
                                cfg.dbPath, cfg.caFile, cfg.caPath,
                                decidesCertificates(listener),
                                cfg.toNative()));
        return c;
    }

    /** Whether the app's listener overrides onCertificate (the interface's
     *  default refuses: then the C callback stays NULL, as in C). */
    private static boolean decidesCertificates(@Nullable Listener l) {
        if (l == null)
            return false;
        try {
            return l.getClass().getMethod("onCertificate", String.class,
                                          String.class)
                .getDeclaringClass() != Listener.class;
        } catch (NoSuchMethodException e) {
            return false;
        }
    }

    /** Connect and run the loop on the library's own thread, reconnecting
     *  by itself until {@link #stop()}. Returns without waiting for the
     *  link; no disk or network I/O on the calling thread.
     *  @throws CourierException ESTATE (already started, or driven by
     *          runOnce), ENOMEM, ECLOSED */
    public void start() { nativeStart(handle.get()); }

    /** Disconnect and join the loop thread; stored messages are kept.
     *  Blocks: usually up to ~2 s (the goodbye), not bounded in every
     *  case (a name lookup under way); commits to the store. Not on the
     *  main thread.
     *  @throws CourierException ESTATE, ECLOSED */
    public void stop() { nativeStop(handle.get()); }

    /** Stop if needed and free the native handle; no callback runs after
     *  it returns (from a callback: after that callback; with an executor,
     *  queued tasks are dropped). Idempotent. Blocks as {@link #stop()},
     *  then closes the store (a WAL checkpoint: disk I/O). */
    @Override
    public void close() {
        long h = handle.getAndSet(0);
        if (h != 0)
            nativeClose(h);
    }

    /** True once {@link #close()} was called. Never blocks. */
    public boolean isClosed() { return handle.get() == 0; }

    /**
     * Store a text message for {@code to} (a bare JID) and queue it;
     * returns its id once it is durable. Offline it is reported FAILED and
     * goes out by itself on reconnect.
     * Disk I/O: an INSERT and a COMMIT, waited for (an fsync per commit
     * with {@link Config#synchronousFull}). No network on this thread.
     * @throws CourierException EINVAL (bad JID, empty, oversized body,
     *         U+0000 in a string), ESTORE, ECLOSED
     */
    @NotNull
    public String sendText(@NotNull String to, @NotNull String body) {
        return nativeSendText(handle.get(), to, body);
    }

    /** Store a voice or image message whose id is {@code mediaId};
     *  {@code body} is the media URL or description. Disk I/O as
     *  {@link #sendText}.
     *  @throws CourierException as sendText, plus EINVAL for TEXT or a bad
     *          id and ESTATE when that id exists already */
    public void sendMedia(@NotNull String to, @NotNull Kind kind,
                          @NotNull String mediaId, @NotNull String body) {
        if (kind == null)
            throw new NullPointerException("kind");
        nativeSendMedia(handle.get(), to, kind.code(), mediaId, body);
    }

    // ---- the app's data contract (courier.h, behaviour.md §9) ----------

    /**
     * The general send (courier_send): store {@code m} and queue it;
     * returns its id once it is durable. With {@link Outgoing#id} set, an
     * id that already names a message (in any state, deleted ones
     * included) is ESTATE and changes nothing: write your own row first,
     * send with the same id, and repeat the send after a crash without
     * doubling the message. {@link Outgoing#meta} reaches the peer's
     * {@link Listener#onMessage(String, String, Kind, String, long, String)}
     * and both sides' history.
     * Any thread. Disk I/O: an INSERT and a COMMIT, waited for (as
     * {@link #sendText}): not on the main thread (StrictMode).
     * @return the message id (the app's own, or the one made)
     * @throws CourierException EINVAL (bad JID, body or kind, an invalid
     *         id, VOICE/IMAGE without an id, meta over 4 KiB or with a
     *         control character, U+0000 in a string), ESTATE (the id
     *         exists), ESTORE, ECLOSED
     */
    @NotNull
    public String send(@NotNull Outgoing m) {
        if (m == null)
            throw new NullPointerException("m");
        return nativeSend(handle.get(), m.to, m.kind.code(), m.body, m.id,
                          m.meta);
    }

    /**
     * A page of the history (courier_history), newest first: the entries
     * with {@code peer} ({@code null}: every peer) whose seq is below
     * {@code beforeSeq} (0: from the newest), at most {@code limit}
     * (1..1000). Deleted entries are left out. Pass the smallest seq of a
     * page ({@code page.get(page.size() - 1).seq}) as the next page's
     * {@code beforeSeq}; an empty list is the end. A page costs the same
     * whatever the size of the store.
     * Any thread, listener callbacks included. Disk I/O: SQLite reads (not
     * on the main thread: StrictMode).
     * @return an unmodifiable list, newest first
     * @throws CourierException EINVAL (bad JID, limit 0 or over 1000),
     *         ESTORE, ECLOSED
     */
    @NotNull
    public List<Entry> history(@Nullable String peer, long beforeSeq,
                               int limit) {
        List<Entry> out = new ArrayList<>();
        nativeHistory(handle.get(), peer, beforeSeq, limit, out);
        return Collections.unmodifiableList(out);
    }

    /**
     * The outgoing messages no device has confirmed yet (QUEUED, SENT,
     * OFFLINE, FAILED) and the app did not cancel, oldest first
     * (courier_pending): what an app shows as "sending" or "failed, tap to
     * retry" at start-up.
     * Any thread. Disk I/O: SQLite reads (not on the main thread).
     * @return an unmodifiable list, oldest first
     * @throws CourierException ESTORE, ECLOSED
     */
    @NotNull
    public List<Entry> pending() {
        List<Entry> out = new ArrayList<>();
        nativePending(handle.get(), out);
        return Collections.unmodifiableList(out);
    }

    /**
     * The conversations, the most recent first, with unread counts
     * (courier_conversations): one per peer with at least one entry.
     * Any thread. Disk I/O: SQLite reads, a few index seeks per peer (not
     * on the main thread).
     * @return an unmodifiable list, the most recent first
     * @throws CourierException ESTORE, ECLOSED
     */
    @NotNull
    public List<Conversation> conversations() {
        List<Conversation> out = new ArrayList<>();
        nativeConversations(handle.get(), out);
        return Collections.unmodifiableList(out);
    }

    /**
     * Give up on outgoing message {@code id} that is QUEUED or FAILED
     * (courier_cancel): it is never written again, {@link #getInfo} says
     * FAILED, permanent, reason "cancelled", and it leaves
     * {@link #pending}. {@link Listener#onState} reports FAILED if it was
     * not already. A copy already on its way that the server or peer then
     * confirms still moves it on.
     * Any thread. Disk I/O: one transaction, committed before it returns.
     * @throws CourierException ENOTFOUND (no outgoing message {@code id}),
     *         ESTATE (SENT or beyond: use {@link #retract}; or already
     *         cancelled), EINVAL, ESTORE, ECLOSED
     */
    public void cancel(@NotNull String id) { nativeCancel(handle.get(), id); }

    /**
     * Retract outgoing message {@code id} (courier_retract, XEP-0424 with a
     * fallback body): stored and sent until the server has it; the history
     * entry is marked retracted and its body and meta dropped; a message
     * not yet confirmed is also cancelled. The peer's library marks its
     * entry and calls {@link Listener#onRetract}.
     * Any thread. Disk I/O: one transaction, committed before it returns;
     * the stanza leaves from the loop thread.
     * @throws CourierException ENOTFOUND (no outgoing message {@code id}:
     *         only its sender can retract a message), ESTATE (already
     *         retracted, or deleted), EINVAL, ESTORE, ECLOSED
     */
    public void retract(@NotNull String id) {
        nativeRetract(handle.get(), id);
    }

    /**
     * Remove message {@code id} exchanged with {@code peer} from this
     * device's history, either direction (courier_delete; an unconfirmed
     * outgoing one is cancelled first). Body and meta are dropped; the id
     * stays known (a duplicate is never handed again, an app id never
     * reused). Nothing is sent. The peer chooses the ids of its messages,
     * so one may equal the id of one of ours: then nothing is deleted and
     * the call throws ESTATE; {@link #deleteEntry} names the direction.
     * Any thread. Disk I/O: one transaction, committed before it returns.
     * @throws CourierException ENOTFOUND (no message {@code id} with
     *         {@code peer}), ESTATE ({@code id} names an entry in each
     *         direction), EINVAL, ESTORE, ECLOSED
     */
    public void delete(@NotNull String peer, @NotNull String id) {
        nativeDelete(handle.get(), peer, id);
    }

    /**
     * As {@link #delete}, for the entry of direction {@code dir} only (the
     * {@link Entry#dir} of a history entry): courier_delete_entry. Never
     * ESTATE.
     * Any thread. Disk I/O: one transaction, committed before it returns.
     * @throws CourierException ENOTFOUND (no message {@code id} with
     *         {@code peer} in that direction), EINVAL, ESTORE, ECLOSED
     */
    public void deleteEntry(@NotNull String peer, @NotNull String id,
                            @NotNull Direction dir) {
        if (dir == null)
            throw new NullPointerException("dir");
        nativeDeleteEntry(handle.get(), peer, id, dir.code());
    }

    /**
     * With {@link Config#appConfirms}: incoming message {@code id} from
     * {@code peer} is safely in the app's own database (courier_confirm);
     * until then it is handed again at every open. Calling it again is
     * harmless.
     * Any thread, listener callbacks included (with an executor: from the
     * task, once the app's write is done). Disk I/O: one UPDATE, committed
     * before it returns.
     * @throws CourierException ENOTFOUND (no such incoming message),
     *         ESTATE (appConfirms is off), EINVAL, ESTORE, ECLOSED
     */
    public void confirm(@NotNull String peer, @NotNull String id) {
        nativeConfirm(handle.get(), peer, id);
    }

    /**
     * Erase this account's store (courier_erase, logout): every message,
     * owed receipt and retraction and every mark; then the file is rebuilt
     * so no message text is left in it or its journal. The Courier stays
     * open with an empty store. It must be stopped ({@link #stop()}) and
     * not driven by {@link #runOnce}.
     * Any thread but the library's loop thread (not from a listener
     * without an executor). Disk I/O: deletes, VACUUM (rewrites the file:
     * time in proportion to the store) and a WAL checkpoint: not on the
     * main thread.
     * @throws CourierException ESTATE (started or being driven), ESTORE,
     *         ECLOSED
     */
    public void erase() { nativeErase(handle.get()); }

    /** Tell {@code peer} that their message {@code id} was shown.
     *  Disk I/O: one transaction, committed before it returns.
     *  @throws CourierException EINVAL, ENOTFOUND, ESTORE, ECLOSED */
    public void markDisplayed(@NotNull String peer, @NotNull String id) {
        nativeMarkDisplayed(handle.get(), peer, id);
    }

    /** Send a composing (true) or active (false) notification.
     *  Disk I/O: reads the store (the peer's last message); writes nothing.
     *  @throws CourierException EINVAL, ENOTCONN (offline), ECLOSED */
    public void setComposing(@NotNull String peer, boolean on) {
        nativeSetComposing(handle.get(), peer, on);
    }

    /** Send a FAILED message again now (or on reconnect).
     *  Disk I/O: one transaction, committed before it returns.
     *  @throws CourierException EINVAL, ENOTFOUND, ESTATE (not FAILED),
     *          ESTORE, ECLOSED */
    public void retry(@NotNull String id) { nativeRetry(handle.get(), id); }

    /** Current state of outgoing message {@code id}.
     *  Disk I/O: one SQLite read.
     *  @throws CourierException EINVAL, ENOTFOUND, ESTORE, ECLOSED */
    @NotNull
    public State getState(@NotNull String id) {
        return State.fromCode(nativeGetState(handle.get(), id));
    }

    /** Why outgoing message {@code id} is where it is: state, attempts,
     *  times and reason (courier_get_info). Disk I/O: one SQLite read.
     *  @throws CourierException EINVAL, ENOTFOUND, ESTORE, ECLOSED */
    @NotNull
    public MessageInfo getInfo(@NotNull String id) {
        long[] v = new long[MessageInfo.N_COUNT];
        String reason = nativeGetInfo(handle.get(), id, v);
        return new MessageInfo(v, reason);
    }

    /** The counters since open (courier_get_stats). In memory: no disk
     *  I/O, but takes the handle's lock.
     *  @throws CourierException ECLOSED */
    @NotNull
    public Stats getStats() {
        long[] v = new long[Stats.N_COUNT];
        nativeGetStats(handle.get(), v);
        return new Stats(v);
    }

    /** Current link state. In memory: no disk I/O, but takes the
     *  handle's lock.
     *  @throws CourierException EAUTH (login refused), ECLOSED */
    @NotNull
    public Link getLink() { return Link.fromCode(nativeGetLink(handle.get())); }

    /**
     * Drive the library from your own thread instead of {@link #start()}
     * (courier_run_once): the first call starts connecting; each call runs
     * due timers, the socket, pending work and callbacks, waiting at most
     * {@code timeoutMs} for something to happen (0: do not wait). Without a
     * callback executor the listener runs on the calling thread, inside
     * this call. One thread at a time, with {@link #RUN_ONCE_STACK_BYTES}
     * of stack. {@link #stop()} (from that thread) closes the link.
     * Blocks: up to {@code timeoutMs}, plus the work it finds (SQLite
     * reads and a commit, the callbacks, and while connecting the name
     * lookup and TLS handshake). Not on the main thread.
     * @throws CourierException EINVAL (negative timeout), ESTATE (started
     *         with start(), or another thread is inside), ECLOSED (closed,
     *         also from one of its callbacks)
     */
    public void runOnce(int timeoutMs) {
        nativeRunOnce(handle.get(), timeoutMs);
    }

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

    /**
     * The app went to the background ({@code false}) or came back
     * ({@code true}): courier_set_active, behaviour.md §10. Call it from
     * {@code ProcessLifecycleOwner}'s onStop / onStart. When the server
     * offers XEP-0352 Client State Indication the library sends
     * {@code <inactive/>} or {@code <active/>} (now if the link is up, and
     * {@code <inactive/>} again after every login while in background);
     * the server may then hold back presence and chat states, messages
     * still arrive. In background {@link #setComposing} sends nothing. The
     * state lives in memory for the Courier's life; a new one starts in
     * foreground. Works on a Courier not started (remembered).
     * Any thread (the main thread included); never blocks, no disk I/O:
     * it marks the state and wakes the loop.
     * @throws CourierException ECLOSED
     */
    public void setActive(boolean active) {
        nativeSetActive(handle.get(), active);
    }

    /**
     * For a run woken by a push (FCM) or a background job (WorkManager):
     * courier_sync, behaviour.md §10. Starts the Courier if it is not
     * started (a link that is down reconnects now instead of waiting out
     * its backoff), sends what is owed, receives what is waiting, and
     * returns once nothing is left in flight: every pending message
     * acknowledged by the server, every owed receipt and retraction taken
     * by it, and everything the server held for this account handed to
     * the listener. The link stays up afterwards ({@link #stop()} before
     * the job ends).
     * Any thread but the library's loop thread (not from a listener
     * without an executor; ESTATE). Blocks up to {@code timeoutMs}: never
     * on the main thread.
     * @throws CourierException ETIMEDOUT (something still in flight at
     *         {@code timeoutMs}: no network, a server that does not
     *         answer; the loop goes on), EAUTH (the login was refused),
     *         ESTATE (driven by {@link #runOnce}, or called from the loop
     *         thread), ECLOSED (closed, or stopped by another thread
     *         meanwhile), ENOMEM, EINVAL (negative timeout)
     */
    public void sync(int timeoutMs) {
        nativeSync(handle.get(), timeoutMs);
    }

    /**
     * Where the check of the store owed after an unclean close stands
     * (courier_check_status, behaviour.md §10). After the app was killed
     * the library checks every page on a thread of its own once
     * {@link #open} has returned (a fraction of a second per million
     * messages on a desktop, more on a phone); the Courier works
     * meanwhile. The verdict is also logged once through
     * {@link Listener#onLog} (LOG_INFO ok, LOG_ERROR damaged, LOG_WARN
     * could not run). Until a check has found no damage it stays owed (the
     * next open checks again).
     * Any thread; never blocks, no disk I/O.
     * @return NONE (the last close was clean), RUNNING, OK or FAILED
     * @throws CourierException ECORRUPT when the check found the store
     *         damaged ({@link StoreCheck#DAMAGED}; the message carries
     *         SQLite's first finding): tell the user, keep what
     *         {@link #history} can still read, then {@link #erase} or
     *         delete the files; ECLOSED
     */
    @NotNull
    public StoreCheck checkStatus() {
        return StoreCheck.fromCode(nativeCheckStatus(handle.get()));
    }

    /**
     * Push (XEP-0357): courier_push_enable, behaviour.md §10. Ask the
     * server to notify the app server {@code serviceJid} (a JID, e.g.
     * {@code "push.example.com"}) on pubsub node {@code node} (1..1023
     * bytes of UTF-8, e.g. the FCM token the app server handed out) while
     * this account has no session online, so that it can wake the app,
     * which then calls {@link #sync}. {@code secret} (1..1023 bytes, or
     * {@code null} for none) goes in the request's publish-options form
     * for the app server to check.
     * The registration is stored (it survives {@link #close()} and
     * {@link #open}) and written again after every login until
     * {@link #pushDisable()}. One per Courier: enabling another service or
     * node replaces it (the server is asked to disable the old one). A
     * server's refusal does not forget it: it is asked again at each
     * login, each answer logged through {@link Listener#onLog}.
     * Online, the call waits for the server's answer, up to
     * {@link Config#ackTimeoutMs}. Offline (not started, connecting,
     * between links) it returns once the registration is stored; it is
     * written at the next login and the answer goes to onLog. From a
     * listener on the library's thread, or on a Courier that
     * {@link #runOnce} drives, it never waits (stored; the answer to
     * onLog).
     * Any thread. Disk I/O: one transaction, committed before it waits or
     * returns; no network on this thread. Blocks up to ackTimeoutMs while
     * online: never on the main thread.
     * @throws CourierException EINVAL ({@code serviceJid} not a JID;
     *         {@code node} or {@code secret} empty, too long, with a
     *         control character or U+0000; a null serviceJid or node:
     *         named in the message), EREFUSED (the server answered with an
     *         error, e.g. feature-not-implemented from a server without
     *         XEP-0357; the condition is in the message; still stored),
     *         ETIMEDOUT (online, no answer in time; still stored), ESTORE,
     *         ECLOSED
     */
    public void pushEnable(@NotNull String serviceJid, @NotNull String node,
                           @Nullable String secret) {
        nativePushEnable(handle.get(), serviceJid, node, secret);
    }

    /**
     * Stop push: courier_push_disable, behaviour.md §10. Forget the
     * registration of {@link #pushEnable} and ask the server to disable
     * it; the disable is owed in the store until the server answers it
     * (offline: written at the next login). Nothing registered: returns,
     * nothing sent. At logout call it while online before {@link #erase}:
     * erase forgets the registration without telling the server.
     * Threads, blocking and disk I/O as {@link #pushEnable}: commits, then
     * waits up to {@link Config#ackTimeoutMs} while online; never on the
     * main thread.
     * @throws CourierException EREFUSED (the server answered with an error
     *         other than item-not-found; forgotten all the same),
     *         ETIMEDOUT (online, no answer in time: owed, asked again at
     *         the next login), ESTORE, ECLOSED
     */
    public void pushDisable() { nativePushDisable(handle.get()); }

    /** The native library's version, e.g. "0.2.0". Never blocks. */
    @NotNull
    public static String version() { return nativeVersion(); }

    /** What a chat UI shows for {@code state} (courier_display_status):
     *  "sending" (QUEUED, SENT), "delivered" (OFFLINE, DELIVERED), "read"
     *  (DISPLAYED), "failed" (FAILED). Never blocks. */
    @NotNull
    public static String displayStatus(@NotNull State state) {
        return nativeDisplayStatus(state.code());
    }

    // ---- native (registered by JNI_OnLoad in courier_jni.c) -------------
    static native long[] nativeDefaults();
    private static native long nativeOpen(Courier self, Listener l,
        String jid, String password, String host, String dbPath,
        String caFile, String caPath, boolean certificates, long[] numbers);
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
    private static native String nativeGetInfo(long h, String id,
                                               long[] out);
    private static native void nativeGetStats(long h, long[] out);
    private static native int nativeGetLink(long h);
    private static native void nativeRunOnce(long h, int timeoutMs);
    private static native String nativeVersion();
    private static native String nativeDisplayStatus(int state);
    private static native void nativeNetworkChanged(long h);
    private static native String nativeSend(long h, String to, int kind,
                                            String body, String id,
                                            String meta);
    private static native void nativeHistory(long h, String peer,
                                             long beforeSeq, int limit,
                                             List<Entry> out);
    private static native void nativePending(long h, List<Entry> out);
    private static native void nativeConversations(long h,
                                                   List<Conversation> out);
    private static native void nativeCancel(long h, String id);
    private static native void nativeRetract(long h, String id);
    private static native void nativeDelete(long h, String peer, String id);
    private static native void nativeDeleteEntry(long h, String peer,
                                                 String id, int dir);
    private static native void nativeSetActive(long h, boolean active);
    private static native void nativeSync(long h, int timeoutMs);
    private static native int nativeCheckStatus(long h);
    private static native void nativePushEnable(long h, String serviceJid,
                                                String node, String secret);
    private static native void nativePushDisable(long h);
    private static native void nativeConfirm(long h, String peer, String id);
    private static native void nativeErase(long h);

    // Test hooks: string conversion both ways, global refs held.
    static native String echoForTest(String s);
    static native byte[] utf8ForTest(String s);
    static native String fromUtf8ForTest(byte[] utf8);
    static native long liveGlobalRefsForTest();
}
