// SPDX-License-Identifier: MIT
package org.libcourier;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.ByteArrayInputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.lang.ref.WeakReference;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;

import org.junit.After;
import org.junit.Assume;
import org.junit.Before;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.Timeout;

/**
 * The Java binding on the desktop JVM (run with -Xcheck:jni). Offline tests
 * point at 127.0.0.1 port 1, which refuses at once, so no network or DNS is
 * touched; the live test needs the COURIER_TEST_* variables of
 * tests/integration/prosody.sh.
 */
public class CourierTest {
    private static final String BOB = "bob@example.com";
    private static final String HELLO = "\u4f60\u597d \ud83d\udc4b"; // 你好 👋

    /** A hang fails the test instead of stalling the run. */
    @Rule
    public Timeout timeout = Timeout.seconds(120);

    private File dir;
    private final List<Courier> opened = new ArrayList<>();

    @Before
    public void setUp() throws IOException {
        dir = Files.createTempDirectory("courier-jni-").toFile();
    }

    @After
    public void tearDown() {
        for (Courier c : opened)
            c.close();
        deleteTree(dir);
    }

    private static void deleteTree(File f) {
        File[] kids = f.listFiles();
        if (kids != null)
            for (File k : kids)
                deleteTree(k);
        f.delete();
    }

    private Config offlineConfig(String name) {
        Config cfg = new Config();
        cfg.jid = "alice@example.com/phone";
        cfg.password = "secret";
        cfg.host = "127.0.0.1";
        cfg.port = 1; // refused at once: never connects
        cfg.dbPath = new File(dir, name + ".db").getPath();
        cfg.reconnectMinMs = 1000;
        return cfg;
    }

    private Courier open(Config cfg, Listener l) {
        Courier c = Courier.open(cfg, l);
        opened.add(c);
        return c;
    }

    private static CourierException.Code codeOf(Runnable r) {
        try {
            r.run();
        } catch (CourierException e) {
            return e.getCode();
        }
        fail("no CourierException");
        return null;
    }

    /** Records states per id, with the thread each came on. */
    static class Recorder implements Listener {
        final Map<String, List<State>> states = new ConcurrentHashMap<>();
        final Set<String> threads = ConcurrentHashMap.newKeySet();
        final AtomicInteger failed = new AtomicInteger();
        /** The peer strings the glue made, weakly: a local reference leaked
         *  on the (never returning) loop thread would keep them alive. */
        final List<WeakReference<String>> peers =
            Collections.synchronizedList(new ArrayList<>());

        @Override
        public void onState(String id, String peer, State s) {
            threads.add(Thread.currentThread().getName());
            peers.add(new WeakReference<>(peer));
            states.computeIfAbsent(id, k -> new CopyOnWriteArrayList<>())
                .add(s);
            if (s == State.FAILED)
                failed.incrementAndGet();
        }

        boolean has(String id, State s) {
            List<State> l = states.get(id);
            return l != null && l.contains(s);
        }

        boolean waitFor(String id, State s, long ms)
                throws InterruptedException {
            long end = System.currentTimeMillis() + ms;
            while (System.currentTimeMillis() < end) {
                List<State> l = states.get(id);
                if (l != null && l.contains(s))
                    return true;
                Thread.sleep(10);
            }
            return false;
        }
    }

    // ---- config ---------------------------------------------------------

    @Test
    public void configDefaultsComeFromTheLibrary() {
        Config c = new Config();
        assertNull(c.jid);
        assertNull(c.password);
        assertNull(c.host);
        assertNull(c.dbPath);
        assertNull(c.caFile);
        assertEquals(0, c.port);
        assertFalse(c.allowPlaintext);
        assertEquals(30000, c.ackTimeoutMs);
        assertEquals(10000, c.resendGraceMs);
        assertEquals(30000, c.pingIntervalMs);
        assertEquals(33000, c.pingTimeoutMs);
        assertEquals(1000, c.reconnectMinMs);
        assertEquals(60000, c.reconnectMaxMs);
        assertEquals(100, c.maxInFlight);
        assertEquals(0L, c.maxAgeMs);
        assertTrue(c.implicitRead);
        assertFalse(c.synchronousFull);
        assertEquals(64 * 1024, c.maxBodyBytes);
        assertEquals("0.2.0", Courier.version());
    }

    // ---- lifecycle ---------------------------------------------------------

    @Test
    public void openCloseReleasesGlobalRefs() {
        long base = Courier.liveGlobalRefsForTest();
        Courier c = Courier.open(offlineConfig("a"), new Listener() {});
        assertEquals(base + 2, Courier.liveGlobalRefsForTest());
        assertFalse(c.isClosed());
        c.close();
        c.close(); // idempotent
        assertTrue(c.isClosed());
        assertEquals(base, Courier.liveGlobalRefsForTest());
        assertEquals(CourierException.Code.ECLOSED,
                     codeOf(() -> c.sendText(BOB, "hi")));
        // reopen on the same store, started this time
        for (int i = 0; i < 20; i++) {
            try (Courier d = Courier.open(offlineConfig("a"), null)) {
                d.start();
                d.stop();
            }
        }
        assertEquals(base, Courier.liveGlobalRefsForTest());
    }

    /** behaviour.md §10: networkChanged on an offline handle (not
     *  started, then started against a closed port) is accepted; on a
     *  closed one it is ECLOSED. */
    @Test
    public void networkChangedOfflineAndClosed() {
        Courier c = Courier.open(offlineConfig("net"), new Listener() {});
        c.networkChanged();
        assertEquals(Link.OFFLINE, c.getLink());
        c.start();
        c.networkChanged();
        c.networkChanged();
        c.stop();
        c.close();
        assertEquals(CourierException.Code.ECLOSED,
                     codeOf(() -> c.networkChanged()));
    }

    @Test
    public void openRejectsBadConfig() {
        Config cfg = offlineConfig("bad");
        cfg.jid = null;
        try {
            Courier.open(cfg, null);
            fail();
        } catch (CourierException e) {
            assertEquals(CourierException.Code.EINVAL, e.getCode());
            assertEquals(-1, e.getErrorCode());
            assertTrue(e.getMessage(),
                       e.getMessage().startsWith("invalid argument : "));
            assertTrue(e.getMessage(), e.getMessage().contains("jid"));
        }
        Config neg = offlineConfig("bad");
        neg.ackTimeoutMs = -5;
        try {
            Courier.open(neg, null);
            fail();
        } catch (CourierException e) {
            assertEquals(CourierException.Code.EINVAL, e.getCode());
            assertTrue(e.getMessage(), e.getMessage().contains("ackTimeoutMs"));
        }
    }

    // ---- sending offline -----------------------------------------------------

    @Test
    public void sendOfflineIsFailedOnTheLoopThread() throws Exception {
        Recorder r = new Recorder();
        Courier c = open(offlineConfig("a"), r);
        c.start();
        String id = c.sendText(BOB, "hello");
        assertNotNull(id);
        assertFalse(id.isEmpty());
        assertTrue("onState(FAILED)", r.waitFor(id, State.FAILED, 5000));
        assertEquals(State.FAILED, c.getState(id));
        assertEquals(Collections.singleton("courier-loop"), r.threads);
        assertNotEquals("courier-loop", Thread.currentThread().getName());
        // retry offline: accepted, goes out on reconnect
        c.retry(id);
        // media with its own id
        c.sendMedia(BOB, Kind.IMAGE, "img-7", "https://example.com/7.png");
        assertTrue(r.waitFor("img-7", State.FAILED, 5000));
        c.stop();
    }

    @Test
    public void errorsMapToOneCodeEach() {
        Courier c = open(offlineConfig("a"), null);
        try {
            c.sendText("bad jid", "hi");
            fail();
        } catch (CourierException e) {
            assertEquals(CourierException.Code.EINVAL, e.getCode());
            assertTrue(e.getMessage(),
                       e.getMessage().startsWith("invalid argument : "));
            assertTrue(e.getMessage().length() > "invalid argument : ".length());
        }
        try {
            c.getState("no-such-id");
            fail();
        } catch (CourierException e) {
            assertEquals(CourierException.Code.ENOTFOUND, e.getCode());
            assertEquals(-3, e.getErrorCode());
            assertTrue(e.getMessage(),
                       e.getMessage().startsWith("no such message : "));
        }
        assertEquals(CourierException.Code.ENOTFOUND,
                     codeOf(() -> c.retry("no-such-id")));
        assertEquals(CourierException.Code.ENOTFOUND,
                     codeOf(() -> c.markDisplayed(BOB, "no-such-id")));
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> c.sendText(BOB, "")));
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> c.sendText(BOB, null)));
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> c.sendText(BOB, "nul\u0000inside")));
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> c.sendMedia(BOB, Kind.TEXT, "m1", "x")));
        assertEquals(CourierException.Code.ENOTCONN,
                     codeOf(() -> c.setComposing(BOB, true)));
        String id = c.sendText(BOB, "once");
        assertEquals(CourierException.Code.ESTATE,
                     codeOf(() -> c.sendMedia(BOB, Kind.VOICE, id, "dup")));
        c.start();
        assertEquals(CourierException.Code.ESTATE, codeOf(c::start));
        c.stop();
    }

    /** The detail is read on the failing thread: two threads failing at
     *  once each see their own. */
    @Test
    public void errorDetailBelongsToTheCallingThread() throws Exception {
        Courier c = open(offlineConfig("a"), null);
        AtomicReference<String> bad = new AtomicReference<>();
        Thread a = new Thread(() -> {
            for (int i = 0; i < 300 && bad.get() == null; i++) {
                try {
                    c.sendText("bad jid", "x");
                } catch (CourierException e) {
                    if (e.getCode() != CourierException.Code.EINVAL ||
                        !e.getMessage().startsWith("invalid argument : "))
                        bad.set(e.getMessage());
                }
            }
        });
        Thread b = new Thread(() -> {
            for (int i = 0; i < 300 && bad.get() == null; i++) {
                try {
                    c.getState("missing-" + i);
                } catch (CourierException e) {
                    if (e.getCode() != CourierException.Code.ENOTFOUND ||
                        !e.getMessage().startsWith("no such message : "))
                        bad.set(e.getMessage());
                }
            }
        });
        a.start();
        b.start();
        a.join();
        b.join();
        assertNull(bad.get());
    }

    // ---- strings ---------------------------------------------------------------

    @Test
    public void utf8ConversionKeepsEmojiAndCjk() {
        String[] samples = {
            "", "plain", HELLO, "h\u00e9llo", "\ud834\udd1e clef",
            "\ud83d\ude00\ud83d\ude03\ud83e\udd73", "\u65e5\u672c\u8a9e",
            "mixed \u00e9 \u4e2d \ud83d\udc4b end",
        };
        for (String s : samples) {
            assertEquals(s, Courier.echoForTest(s));
            byte[] std = s.getBytes(StandardCharsets.UTF_8);
            assertArrayEquals(s, std, Courier.utf8ForTest(s));
            assertEquals(s, Courier.fromUtf8ForTest(std));
        }
        assertNull(Courier.echoForTest(null));
        // 👋 is 4 bytes of standard UTF-8, not 6 of modified UTF-8
        assertEquals(4, Courier.utf8ForTest("\ud83d\udc4b").length);
        // lone surrogate -> U+FFFD; ill-formed bytes -> U+FFFD
        assertEquals("\ufffd", Courier.echoForTest("\ud83d"));
        assertEquals("a\ufffdb", Courier.fromUtf8ForTest(
            new byte[] { 'a', (byte) 0xC3, 'b' }));
        assertEquals("\ufffd\ufffd", Courier.fromUtf8ForTest(  // CESU-8
            new byte[] { (byte) 0xED, (byte) 0xA0 }).substring(0, 2));
        assertEquals("x\ufffd", Courier.fromUtf8ForTest(
            new byte[] { 'x', (byte) 0xF0, (byte) 0x9F, (byte) 0x91 }));
        // a long string (heap buffers, not the stack ones)
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 2000; i++)
            sb.append(HELLO);
        assertEquals(sb.toString(), Courier.echoForTest(sb.toString()));
    }

    /** The library refuses non-UTF-8 bodies, so this fails if the glue
     *  used modified UTF-8. */
    @Test
    public void emojiBodyIsAcceptedByTheLibrary() throws Exception {
        Recorder r = new Recorder();
        Courier c = open(offlineConfig("a"), r);
        String id = c.sendText(BOB, HELLO);
        assertEquals(State.FAILED, c.getState(id));
    }

    // ---- listeners ---------------------------------------------------------------

    @Test
    public void throwingListenerDoesNotCrash() throws Exception {
        AtomicInteger calls = new AtomicInteger();
        Listener l = new Listener() {
            @Override
            public void onState(String id, String peer, State s) {
                calls.incrementAndGet();
                throw new IllegalStateException("listener bug (expected)");
            }

            @Override
            public void onLog(int level, String line) {
                throw new RuntimeException("log listener bug (expected)");
            }
        };
        Courier c = open(offlineConfig("a"), l);
        c.start();
        String id1 = c.sendText(BOB, "one");
        long end = System.currentTimeMillis() + 5000;
        while (calls.get() < 1 && System.currentTimeMillis() < end)
            Thread.sleep(10);
        assertEquals(1, calls.get());
        String id2 = c.sendText(BOB, "two");
        while (calls.get() < 2 && System.currentTimeMillis() < end)
            Thread.sleep(10);
        assertEquals(2, calls.get());
        assertEquals(State.FAILED, c.getState(id1));
        assertEquals(State.FAILED, c.getState(id2));
        c.stop();
    }

    @Test
    public void closeFromACallback() throws Exception {
        long base = Courier.liveGlobalRefsForTest();
        AtomicReference<Courier> self = new AtomicReference<>();
        CountDownLatch closed = new CountDownLatch(1);
        Courier c = Courier.open(offlineConfig("a"), new Listener() {
            @Override
            public void onState(String id, String peer, State s) {
                self.get().close();
                closed.countDown();
            }
        });
        self.set(c);
        c.start();
        c.sendText(BOB, "bye");
        assertTrue(closed.await(5, TimeUnit.SECONDS));
        assertTrue(c.isClosed());
        long end = System.currentTimeMillis() + 5000;
        while (Courier.liveGlobalRefsForTest() != base &&
               System.currentTimeMillis() < end)
            Thread.sleep(10);
        assertEquals(base, Courier.liveGlobalRefsForTest());
        c.close(); // still fine
    }

    /** Many callbacks on one attached thread: global refs stay flat, and
     *  -Xcheck:jni (the make target fails on its warnings) sees no local
     *  reference pile-up. Sends from several threads at once. */
    @Test
    public void manyCallbacksFromSeveralThreads() throws Exception {
        long base = Courier.liveGlobalRefsForTest();
        Recorder r = new Recorder();
        Config cfg = offlineConfig("many");
        Courier c = open(cfg, r);
        c.start();
        final int threads = 4, each = 2500; // 10 000 callbacks
        Set<String> ids = ConcurrentHashMap.newKeySet();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            final int tn = t;
            Thread th = new Thread(() -> {
                for (int i = 0; i < each; i++)
                    ids.add(c.sendText(BOB, "m " + tn + " " + i + " \ud83d\udc4b"));
            });
            ts.add(th);
            th.start();
        }
        for (Thread th : ts)
            th.join();
        assertEquals(threads * each, ids.size());
        long end = System.currentTimeMillis() + 60000;
        while (r.failed.get() < threads * each &&
               System.currentTimeMillis() < end)
            Thread.sleep(20);
        assertEquals(threads * each, r.failed.get());
        assertEquals(new HashSet<>(ids), new HashSet<>(r.states.keySet()));
        assertEquals(base + 2, Courier.liveGlobalRefsForTest());
        // local refs: the strings of finished callbacks can be collected
        int cleared = 0;
        for (int round = 0; round < 20; round++) {
            System.gc();
            Thread.sleep(50);
            cleared = 0;
            synchronized (r.peers) {
                for (WeakReference<String> w : r.peers)
                    if (w.get() == null)
                        cleared++;
            }
            if (cleared > threads * each * 9 / 10)
                break;
        }
        assertTrue("callback strings still referenced: " + cleared + " of "
                   + r.peers.size() + " collected",
                   cleared > threads * each * 9 / 10);
        c.stop();
        c.close();
        assertEquals(base, Courier.liveGlobalRefsForTest());
    }

    // ---- callback executor -------------------------------------------------------

    /** Records the thread of every callback, whatever the event. */
    static class ThreadRecorder extends Recorder {
        final Set<String> allThreads = ConcurrentHashMap.newKeySet();
        final AtomicInteger calls = new AtomicInteger();

        @Override
        public void onState(String id, String peer, State s) {
            allThreads.add(Thread.currentThread().getName());
            calls.incrementAndGet();
            super.onState(id, peer, s);
        }

        @Override
        public void onLink(Link link) {
            allThreads.add(Thread.currentThread().getName());
            calls.incrementAndGet();
        }

        @Override
        public void onLog(int level, String line) {
            allThreads.add(Thread.currentThread().getName());
            calls.incrementAndGet();
        }
    }

    /** With an executor every listener call runs on the executor's thread
     *  (states, links and logs alike), none on the library's. */
    @Test
    public void executorReceivesCallbacksOnItsThread() throws Exception {
        ExecutorService ex = Executors.newSingleThreadExecutor(
            r -> new Thread(r, "app-executor"));
        try {
            ThreadRecorder r = new ThreadRecorder();
            Courier c = open(offlineConfig("exec"), r, ex);
            c.start();
            String id1 = c.sendText(BOB, "one");
            String id2 = c.sendText(BOB, "two");
            assertTrue(r.waitFor(id1, State.FAILED, 5000));
            assertTrue(r.waitFor(id2, State.FAILED, 5000));
            assertEquals(Collections.singleton("app-executor"), r.allThreads);
            assertEquals(Collections.singleton("app-executor"), r.threads);
            c.stop();
        } finally {
            ex.shutdown();
        }
    }

    private Courier open(Config cfg, Listener l, Executor ex) {
        Courier c = Courier.open(cfg, l, ex);
        opened.add(c);
        return c;
    }

    /** A task still queued when close() returns is dropped when it runs. */
    @Test
    public void executorTasksQueuedAtCloseAreDropped() throws Exception {
        BlockingQueue<Runnable> tasks = new LinkedBlockingQueue<>();
        ThreadRecorder r = new ThreadRecorder();
        Courier c = open(offlineConfig("drop"), r, tasks::add);
        c.start();
        String id = c.sendText(BOB, "queued");
        long end = System.currentTimeMillis() + 5000;
        while (tasks.isEmpty() && System.currentTimeMillis() < end)
            Thread.sleep(10);
        assertFalse("no task reached the executor", tasks.isEmpty());
        assertEquals("the library ran the listener itself", 0, r.calls.get());
        // one task runs while the Courier is open: delivered here
        tasks.take().run();
        assertEquals(1, r.calls.get());
        assertEquals(State.FAILED, c.getState(id));
        c.close();
        List<Runnable> left = new ArrayList<>();
        tasks.drainTo(left);
        for (Runnable t : left)
            t.run();
        assertEquals("a task ran after close", 1, r.calls.get());
    }

    /** An executor that rejects: logged by the glue, the Courier goes on. */
    @Test
    public void rejectingExecutorIsContained() throws Exception {
        AtomicInteger offered = new AtomicInteger();
        Courier c = open(offlineConfig("reject"), new Listener() {}, t -> {
            offered.incrementAndGet();
            throw new RejectedExecutionException("shut down (expected)");
        });
        c.start();
        String id = c.sendText(BOB, "x");
        long end = System.currentTimeMillis() + 5000;
        while (c.getState(id) != State.FAILED &&
               System.currentTimeMillis() < end)
            Thread.sleep(10);
        assertEquals(State.FAILED, c.getState(id));
        while (offered.get() == 0 && System.currentTimeMillis() < end)
            Thread.sleep(10);
        assertTrue(offered.get() > 0);
        assertNotNull(c.sendText(BOB, "y"));
        c.stop();
    }

    // ---- getInfo, getStats, runOnce, displayStatus --------------------------------

    @Test
    public void infoAndStatsOffline() throws Exception {
        Recorder r = new Recorder();
        Courier c = open(offlineConfig("info"), r);
        long before = System.currentTimeMillis();
        c.start();
        String id = c.sendText(BOB, "info");
        assertTrue(r.waitFor(id, State.FAILED, 5000));
        MessageInfo mi = c.getInfo(id);
        assertEquals(mi.toString(), State.FAILED, mi.state);
        assertTrue(mi.toString(), mi.createdMs >= before - 1000 &&
                   mi.createdMs <= System.currentTimeMillis() + 1000);
        assertTrue(mi.toString(), mi.lastChangeMs >= mi.createdMs);
        assertFalse(mi.toString(), mi.permanent);
        assertNotNull(mi.reason);
        assertEquals(CourierException.Code.ENOTFOUND,
                     codeOf(() -> c.getInfo("no-such-id")));
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> c.getInfo("")));
        Stats st = c.getStats();
        assertEquals(st.toString(), 0, st.received);
        assertEquals(st.toString(), 0, st.duplicates);
        assertEquals(st.toString(), 0, st.linksUp);
        assertEquals(st.toString(), 0, st.resentRetry);
        c.retry(id); // offline: counted when it is written, not now
        c.stop();
        c.close();
        assertEquals(CourierException.Code.ECLOSED, codeOf(c::getStats));
        assertEquals(CourierException.Code.ECLOSED,
                     codeOf(() -> c.getInfo(id)));
    }

    @Test
    public void displayStatusIsTheLibrarys() {
        assertEquals("sending", Courier.displayStatus(State.QUEUED));
        assertEquals("sending", Courier.displayStatus(State.SENT));
        assertEquals("delivered", Courier.displayStatus(State.OFFLINE));
        assertEquals("delivered", Courier.displayStatus(State.DELIVERED));
        assertEquals("read", Courier.displayStatus(State.DISPLAYED));
        assertEquals("failed", Courier.displayStatus(State.FAILED));
    }

    /** runOnce drives the loop from a thread of the app's (with the stack
     *  the library asks for): callbacks run on it, inside the call. */
    @Test
    public void runOnceRunsCallbacksOnTheCallingThread() throws Exception {
        ThreadRecorder r = new ThreadRecorder();
        Courier c = open(offlineConfig("once"), r);
        String id = c.sendText(BOB, "driven");
        AtomicReference<Throwable> failure = new AtomicReference<>();
        AtomicReference<CourierException.Code> startCode =
            new AtomicReference<>();
        Thread t = new Thread(null, () -> {
            try {
                long end = System.currentTimeMillis() + 10000;
                while (!r.has(id, State.FAILED) &&
                       System.currentTimeMillis() < end)
                    c.runOnce(50);
                startCode.set(codeOf(c::start)); // runOnce drives it
                c.stop();
            } catch (Throwable e) {
                failure.set(e);
            }
        }, "my-loop", Courier.RUN_ONCE_STACK_BYTES);
        t.start();
        t.join();
        assertNull(String.valueOf(failure.get()), failure.get());
        assertTrue("onState(FAILED)", r.has(id, State.FAILED));
        assertEquals(Collections.singleton("my-loop"), r.allThreads);
        assertEquals(CourierException.Code.ESTATE, startCode.get());
        assertEquals(CourierException.Code.EINVAL, codeOf(() -> c.runOnce(-1)));
        // started with start(): runOnce is refused
        Courier d = open(offlineConfig("once2"), null);
        d.start();
        assertEquals(CourierException.Code.ESTATE, codeOf(() -> d.runOnce(0)));
        d.stop();
    }

    /** A listener that closes the Courier from inside runOnce: that call
     *  ends with ECLOSED and the glue's references are released. */
    @Test
    public void runOnceClosedFromACallback() throws Exception {
        long base = Courier.liveGlobalRefsForTest();
        AtomicReference<Courier> self = new AtomicReference<>();
        Courier c = Courier.open(offlineConfig("onceclose"), new Listener() {
            @Override
            public void onState(String id, String peer, State s) {
                self.get().close();
            }
        });
        self.set(c);
        c.sendText(BOB, "bye");
        CourierException.Code code = null;
        long end = System.currentTimeMillis() + 10000;
        while (code == null && System.currentTimeMillis() < end) {
            try {
                c.runOnce(50);
            } catch (CourierException e) {
                code = e.getCode();
            }
        }
        assertEquals(CourierException.Code.ECLOSED, code);
        assertTrue(c.isClosed());
        assertEquals(base, Courier.liveGlobalRefsForTest());
    }

    /** The nullability annotations are for compilers only: this run has no
     *  annotations jar on its classpath, and every test here works. */
    @Test
    public void annotationsAreNotNeededAtRunTime() {
        try {
            Class.forName("org.jetbrains.annotations.NotNull");
            fail("org.jetbrains.annotations on the test classpath");
        } catch (ClassNotFoundException expected) {
            // as it should be
        }
        assertNotNull(Courier.version());
    }

    // ---- the app's data contract (behaviour.md §9) ------------------------------

    @Test
    public void configAppConfirmsDefaultsOff() {
        assertFalse(new Config().appConfirms);
    }

    /** The app's own id: returned as is; a second send with it is ESTATE
     *  and changes nothing. */
    @Test
    public void sendWithOwnIdTwiceIsEstate() {
        Courier c = open(offlineConfig("dc-id"), null);
        Outgoing m = Outgoing.builder(BOB, "first").id("app-row-1").build();
        assertEquals("app-row-1", c.send(m));
        CourierException e = null;
        try {
            c.send(Outgoing.builder(BOB, "second").id("app-row-1").build());
        } catch (CourierException x) {
            e = x;
        }
        assertNotNull("second send with the same id accepted", e);
        assertEquals(CourierException.Code.ESTATE, e.getCode());
        assertEquals(-4, e.getErrorCode());
        List<Entry> h = c.history(BOB, 0, 50);
        assertEquals(h.toString(), 1, h.size());
        assertEquals("first", h.get(0).body);
        // no id: one is made
        String made = c.send(Outgoing.builder(BOB, "made").build());
        assertFalse(made.isEmpty());
        // bad input: EINVAL from the library or the glue
        assertEquals(CourierException.Code.EINVAL, codeOf(() -> c.send(
            Outgoing.builder(BOB, "v").kind(Kind.VOICE).build())));
        StringBuilder big = new StringBuilder();
        for (int i = 0; i < 4097; i++)
            big.append('x');
        assertEquals(CourierException.Code.EINVAL, codeOf(() -> c.send(
            Outgoing.builder(BOB, "m").meta(big.toString()).build())));
        assertEquals(CourierException.Code.EINVAL, codeOf(() -> c.send(
            Outgoing.builder(BOB, "m").meta("a\u0000b").build())));
        assertEquals(CourierException.Code.EINVAL, codeOf(() -> c.send(
            Outgoing.builder("not a jid", "m").build())));
        try {
            c.send(null);
            fail("send(null)");
        } catch (NullPointerException expected) {
            // as documented by @NotNull
        }
    }

    /** meta and every field of an entry survive the store; paging by seq
     *  and its bounds. */
    @Test
    public void metaRoundTripThroughHistory() {
        Courier c = open(offlineConfig("dc-hist"), null);
        String meta = "{\"secs\":12,\"w\":\"" + HELLO + "\"}";
        long before = System.currentTimeMillis();
        String v = c.send(Outgoing.builder(BOB, "https://m.example/v.ogg")
                           .kind(Kind.VOICE).id("voice-1").meta(meta)
                           .build());
        assertEquals("voice-1", v);
        for (int i = 0; i < 5; i++)
            c.send(Outgoing.builder(BOB, "t" + i).build());
        c.sendText("carol@example.com", "other peer");
        List<Entry> all = c.history(BOB, 0, 1000);
        assertEquals(all.toString(), 6, all.size());
        for (int i = 1; i < all.size(); i++)
            assertTrue(all.toString(), all.get(i - 1).seq > all.get(i).seq);
        Entry e = all.get(all.size() - 1); // oldest: the voice message
        assertEquals(e.toString(), "voice-1", e.id);
        assertEquals(Direction.OUT, e.dir);
        assertEquals(BOB, e.peer);
        assertEquals(Kind.VOICE, e.kind);
        assertEquals("https://m.example/v.ogg", e.body);
        assertEquals(meta, e.meta);
        assertFalse(e.retracted);
        assertTrue(e.toString(), e.timestampMs >= before - 1000
                   && e.timestampMs <= System.currentTimeMillis() + 1000);
        assertEquals("", all.get(0).meta); // none given
        // pages of 2: 2 + 2 + 2, then empty
        List<Entry> paged = new ArrayList<>();
        long cursor = 0;
        for (int round = 0; round < 10; round++) {
            List<Entry> page = c.history(BOB, cursor, 2);
            if (page.isEmpty())
                break;
            assertTrue(page.size() <= 2);
            paged.addAll(page);
            cursor = page.get(page.size() - 1).seq;
        }
        assertEquals(6, paged.size());
        for (int i = 0; i < 6; i++)
            assertEquals(all.get(i).id, paged.get(i).id);
        assertEquals(7, c.history(null, 0, 100).size()); // every peer
        try {
            all.add(e);
            fail("history list is modifiable");
        } catch (UnsupportedOperationException expected) {
            // immutable
        }
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> c.history(BOB, 0, 0)));
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> c.history(BOB, 0, 1001)));
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> c.history(BOB, 0, -1)));
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> c.history("not a jid", 0, 10)));
        List<Conversation> convs = c.conversations();
        assertEquals(convs.toString(), 2, convs.size());
        assertEquals("carol@example.com", convs.get(0).peer); // most recent
        assertEquals(BOB, convs.get(1).peer);
        assertEquals(all.get(0).seq, convs.get(1).lastSeq);
        assertEquals(0, convs.get(1).unread);
        c.close();
        assertEquals(CourierException.Code.ECLOSED,
                     codeOf(() -> c.history(BOB, 0, 10)));
        assertEquals(CourierException.Code.ECLOSED, codeOf(c::pending));
        assertEquals(CourierException.Code.ECLOSED, codeOf(c::conversations));
    }

    /** A cancelled message leaves pending() and is FAILED, permanent,
     *  "cancelled"; cancelling again is ESTATE, an unknown id ENOTFOUND. */
    @Test
    public void cancelThenPendingIsEmpty() throws Exception {
        Recorder r = new Recorder();
        Courier c = open(offlineConfig("dc-cancel"), r);
        String id = c.send(Outgoing.builder(BOB, "never mind").build());
        List<Entry> p = c.pending();
        assertEquals(p.toString(), 1, p.size());
        assertEquals(id, p.get(0).id);
        c.cancel(id);
        assertTrue(c.pending().toString(), c.pending().isEmpty());
        MessageInfo mi = c.getInfo(id);
        assertEquals(mi.toString(), State.FAILED, mi.state);
        assertTrue(mi.toString(), mi.permanent);
        assertEquals("cancelled", mi.reason);
        assertEquals(CourierException.Code.ESTATE, codeOf(() -> c.cancel(id)));
        assertEquals(CourierException.Code.ENOTFOUND,
                     codeOf(() -> c.cancel("no-such-id")));
        assertEquals(CourierException.Code.EINVAL, codeOf(() -> c.cancel("")));
        // still in the history, as FAILED
        assertEquals(State.FAILED, c.history(BOB, 0, 10).get(0).state);
    }

    @Test
    public void deleteRemovesFromHistoryAndKeepsTheId() {
        Courier c = open(offlineConfig("dc-del"), null);
        String keep = c.send(Outgoing.builder(BOB, "keep").build());
        String gone = c.send(Outgoing.builder(BOB, "gone").id("del-1")
                              .meta("m").build());
        assertEquals(CourierException.Code.ENOTFOUND,
                     codeOf(() -> c.delete("carol@example.com", gone)));
        assertEquals(CourierException.Code.ENOTFOUND,
                     codeOf(() -> c.delete(BOB, "no-such-id")));
        c.delete(BOB, gone);
        List<Entry> h = c.history(BOB, 0, 10);
        assertEquals(h.toString(), 1, h.size());
        assertEquals(keep, h.get(0).id);
        assertFalse(c.pending().toString(),
                    c.pending().stream().anyMatch(e -> e.id.equals(gone)));
        // an app id is never reused
        assertEquals(CourierException.Code.ESTATE, codeOf(() -> c.send(
            Outgoing.builder(BOB, "again").id("del-1").build())));
    }

    /** Retraction offline: stored, the entry marked and emptied; again is
     *  ESTATE; an unknown (or incoming) id is ENOTFOUND. */
    @Test
    public void retractMarksTheEntry() {
        Courier c = open(offlineConfig("dc-retract"), null);
        String id = c.send(Outgoing.builder(BOB, "oops").meta("x").build());
        c.retract(id);
        Entry e = c.history(BOB, 0, 10).get(0);
        assertEquals(e.toString(), id, e.id);
        assertTrue(e.toString(), e.retracted);
        assertEquals("", e.body);
        assertEquals("", e.meta);
        assertEquals(CourierException.Code.ESTATE, codeOf(() -> c.retract(id)));
        assertEquals(CourierException.Code.ENOTFOUND,
                     codeOf(() -> c.retract("no-such-id")));
        assertTrue(c.pending().toString(), c.pending().isEmpty());
    }

    @Test
    public void confirmNeedsAppConfirms() {
        Courier c = open(offlineConfig("dc-confirm"), null);
        assertEquals(CourierException.Code.ESTATE,
                     codeOf(() -> c.confirm(BOB, "no-such-id")));
        c.close();
        Config cfg = offlineConfig("dc-confirm2");
        cfg.appConfirms = true;
        Courier d = open(cfg, null);
        assertEquals(CourierException.Code.ENOTFOUND,
                     codeOf(() -> d.confirm(BOB, "no-such-id")));
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> d.confirm("not a jid", "x")));
    }

    /** erase: every entry gone, the Courier usable; refused while started. */
    @Test
    public void eraseEmptiesTheStore() {
        Courier c = open(offlineConfig("dc-erase"), null);
        for (int i = 0; i < 20; i++)
            c.send(Outgoing.builder(BOB, "secret " + i).meta("m" + i).build());
        c.send(Outgoing.builder("carol@example.com", "x").id("erase-me")
               .build());
        c.start();
        assertEquals(CourierException.Code.ESTATE, codeOf(c::erase));
        c.stop();
        c.erase();
        assertTrue(c.history(null, 0, 1000).isEmpty());
        assertTrue(c.pending().isEmpty());
        assertTrue(c.conversations().isEmpty());
        // usable afterwards; the erased app id is free again or refused:
        // either way no crash, and a new message is stored
        String id = c.send(Outgoing.builder(BOB, "after").build());
        assertEquals(id, c.history(BOB, 0, 10).get(0).id);
        c.close();
        assertEquals(CourierException.Code.ECLOSED, codeOf(c::erase));
    }

    /** A listener written before meta existed still gets messages: the
     *  six-argument default calls the five-argument form. */
    @Test
    public void oldListenerStillGetsMessages() {
        List<String> got = new ArrayList<>();
        Listener old = new Listener() {
            @Override
            public void onMessage(String id, String peer, Kind kind,
                                  String body, long ts) {
                got.add(id + "/" + body);
            }
        };
        old.onMessage("i1", BOB, Kind.TEXT, "b", 1L, "meta");
        old.onRetract(BOB, "i1"); // default: nothing
        assertEquals(Collections.singletonList("i1/b"), got);
    }

    // ---- issue 15: the phone's life (behaviour.md §10) --------------------------

    @Test
    public void etimedoutIsMapped() {
        assertEquals(CourierException.Code.ETIMEDOUT,
                     CourierException.Code.fromValue(-11));
        assertEquals(-11, CourierException.Code.ETIMEDOUT.value());
        for (StoreCheck sc : StoreCheck.values())
            assertEquals(sc, StoreCheck.fromCode(sc.code()));
        assertEquals(0, StoreCheck.NONE.code());
        assertEquals(3, StoreCheck.DAMAGED.code());
        assertEquals(4, StoreCheck.FAILED.code());
    }

    /** caPath defaults to null and reaches the library (a U+0000 in it is
     *  the glue's EINVAL, naming it); that the library trusts it is the
     *  live test liveCaPathTrusted. */
    @Test
    public void caPathPassedThrough() {
        assertNull(new Config().caPath);
        Config cfg = offlineConfig("capath");
        cfg.caPath = dir.getPath();
        Courier c = open(cfg, null);
        assertEquals(StoreCheck.NONE, c.checkStatus());
        c.close();
        Config bad = offlineConfig("capath2");
        bad.caPath = "/tmp/a\u0000b";
        try {
            Courier.open(bad, null);
            fail("caPath with U+0000 accepted");
        } catch (CourierException e) {
            assertEquals(CourierException.Code.EINVAL, e.getCode());
            assertTrue(e.getMessage(), e.getMessage().contains("caPath"));
        }
    }

    /** setActive on a Courier not started (remembered), started against
     *  a closed port, and after close. */
    @Test
    public void setActiveOfflineAndClosed() {
        Courier c = open(offlineConfig("active"), new Listener() {});
        c.setActive(false);
        c.setActive(true);
        c.setActive(false);
        c.start();
        c.setActive(true);
        assertEquals(CourierException.Code.ENOTCONN,
                     codeOf(() -> c.setComposing(BOB, true)));
        c.stop();
        c.close();
        assertEquals(CourierException.Code.ECLOSED,
                     codeOf(() -> c.setActive(false)));
    }

    /** sync on a Courier not started, against a port that refuses: it
     *  starts it, and with nothing ever acknowledged gives ETIMEDOUT after
     *  its timeout (not before); the loop goes on (started). */
    @Test
    public void syncUnreachableTimesOut() throws Exception {
        Recorder r = new Recorder();
        Courier c = open(offlineConfig("sync"), r);
        String id = c.sendText(BOB, "owed");
        long t0 = System.nanoTime();
        CourierException e = null;
        try {
            c.sync(300);
        } catch (CourierException x) {
            e = x;
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertNotNull("sync returned without the server", e);
        assertEquals(e.getMessage(), CourierException.Code.ETIMEDOUT,
                     e.getCode());
        assertEquals(-11, e.getErrorCode());
        assertTrue(e.getMessage(),
                   e.getMessage().contains("courier_sync"));
        assertTrue("returned after " + ms + " ms", ms >= 290);
        assertEquals(CourierException.Code.ESTATE, codeOf(c::start));
        assertTrue(r.waitFor(id, State.FAILED, 5000));
        assertEquals(CourierException.Code.ETIMEDOUT,
                     codeOf(() -> c.sync(0)));
        assertEquals(CourierException.Code.EINVAL, codeOf(() -> c.sync(-1)));
        c.stop();
        c.close();
        assertEquals(CourierException.Code.ECLOSED, codeOf(() -> c.sync(10)));
    }

    /** sync from the loop thread (a listener without an executor) would
     *  wait for itself: ESTATE; on a Courier that runOnce drives: ESTATE. */
    @Test
    public void syncRefusedOnTheLoopThreadAndWithRunOnce() throws Exception {
        AtomicReference<Courier> self = new AtomicReference<>();
        BlockingQueue<CourierException.Code> codes =
            new LinkedBlockingQueue<>();
        Courier c = open(offlineConfig("sync-cb"), new Listener() {
            @Override
            public void onState(String id, String peer, State s) {
                codes.add(codeOf(() -> self.get().sync(10)));
            }
        });
        self.set(c);
        c.start();
        c.sendText(BOB, "x");
        assertEquals(CourierException.Code.ESTATE,
                     codes.poll(10, TimeUnit.SECONDS));
        c.stop();
        Courier d = open(offlineConfig("sync-once"), null);
        AtomicReference<CourierException.Code> code = new AtomicReference<>();
        Thread t = new Thread(null, () -> {
            d.runOnce(0);
            code.set(codeOf(() -> d.sync(10)));
            d.stop();
        }, "my-loop", Courier.RUN_ONCE_STACK_BYTES);
        t.start();
        t.join();
        assertEquals(CourierException.Code.ESTATE, code.get());
    }

    /** deleteEntry removes the entry of the direction named; the other
     *  direction is ENOTFOUND; again is harmless. */
    @Test
    public void deleteEntryNamesTheDirection() {
        Courier c = open(offlineConfig("del-entry"), null);
        c.send(Outgoing.builder(BOB, "keep").id("de-keep").build());
        c.send(Outgoing.builder(BOB, "gone").id("de-1").build());
        assertEquals(CourierException.Code.ENOTFOUND,
                     codeOf(() -> c.deleteEntry(BOB, "de-1", Direction.IN)));
        assertEquals(CourierException.Code.ENOTFOUND,
                     codeOf(() -> c.deleteEntry("carol@example.com", "de-1",
                                                Direction.OUT)));
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> c.deleteEntry("not a jid", "de-1",
                                                Direction.OUT)));
        c.deleteEntry(BOB, "de-1", Direction.OUT);
        List<Entry> h = c.history(BOB, 0, 10);
        assertEquals(h.toString(), 1, h.size());
        assertEquals("de-keep", h.get(0).id);
        c.deleteEntry(BOB, "de-1", Direction.OUT); // again: harmless
        try {
            c.deleteEntry(BOB, "de-keep", null);
            fail("deleteEntry(null dir)");
        } catch (NullPointerException expected) {
            // @NotNull
        }
        c.close();
        assertEquals(CourierException.Code.ECLOSED,
                     codeOf(() -> c.deleteEntry(BOB, "de-keep",
                                                Direction.OUT)));
    }

    /** A process killed with its Courier open (Runtime.halt in a child
     *  JVM) leaves the store unclean: the next open returns at once and the
     *  check runs on the library's thread (RUNNING, then OK, logged once);
     *  a clean close owes nothing (NONE). */
    @Test
    public void checkStatusAfterCleanAndUncleanClose() throws Exception {
        Config cfg = offlineConfig("check");
        Courier c = open(cfg, null);
        assertEquals(StoreCheck.NONE, c.checkStatus());
        c.close();
        assertEquals(CourierException.Code.ECLOSED, codeOf(c::checkStatus));

        String java = System.getProperty("java.home") + File.separator
            + "bin" + File.separator + "java";
        Process p = new ProcessBuilder(java,
            "-Djava.library.path=" + System.getProperty("java.library.path"),
            "-cp", System.getProperty("java.class.path"),
            CrashChild.class.getName(), cfg.dbPath)
            .redirectErrorStream(true).start();
        assertTrue("child hung", p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue());
        assertTrue("no -wal left", new File(cfg.dbPath + "-wal").exists());

        List<String> logs = new CopyOnWriteArrayList<>();
        Courier d = open(cfg, new Listener() {
            @Override
            public void onLog(int level, String line) {
                if (line.contains("check after an unclean close"))
                    logs.add(level + " " + line);
            }
        });
        StoreCheck first = d.checkStatus();
        assertTrue(first.toString(),
                   first == StoreCheck.RUNNING || first == StoreCheck.OK);
        long end = System.currentTimeMillis() + 30000;
        while (d.checkStatus() == StoreCheck.RUNNING &&
               System.currentTimeMillis() < end)
            Thread.sleep(10);
        assertEquals(StoreCheck.OK, d.checkStatus());
        // the crashed child's message is there
        assertEquals("crash-1", d.history(BOB, 0, 10).get(0).id);
        // logged once, at info, through the listener (on the next loop
        // turn: start it)
        d.start();
        while (logs.isEmpty() && System.currentTimeMillis() < end)
            Thread.sleep(10);
        assertEquals(logs.toString(), 1, logs.size());
        assertTrue(logs.get(0), logs.get(0).startsWith(Listener.LOG_INFO + " "));
        d.stop();
    }

    /** The child of checkStatusAfterCleanAndUncleanClose: opens, sends,
     *  and dies without closing (an app killed in the background). */
    public static final class CrashChild {
        public static void main(String[] args) {
            Config cfg = new Config();
            cfg.jid = "alice@example.com/phone";
            cfg.password = "secret";
            cfg.host = "127.0.0.1";
            cfg.port = 1;
            cfg.dbPath = args[0];
            Courier c = Courier.open(cfg, null);
            c.send(Outgoing.builder(BOB, "before the crash").id("crash-1")
                   .build());
            Runtime.getRuntime().halt(0);
        }
    }

    /** onCertificate's default refuses; with an executor the glue's
     *  listener answers on the calling thread, never through the
     *  executor (the login waits for the answer). */
    @Test
    public void onCertificateIsAnsweredOnTheLibrarysThread() {
        assertFalse(new Listener() {}.onCertificate("h", "pem"));
        Listener app = new Listener() {
            @Override
            public boolean onCertificate(String host, String pem) {
                return host.equals("example.com") && pem.equals("P")
                    && !Thread.currentThread().getName().equals("never");
            }
        };
        Courier c = open(offlineConfig("cert-exec"), null);
        ExecutorListener el = new ExecutorListener(c, app, t -> {
            throw new AssertionError("onCertificate went to the executor");
        });
        assertTrue(el.onCertificate("example.com", "P"));
        assertFalse(el.onCertificate("other.example", "P"));
    }

    // ---- push (XEP-0357, behaviour.md §10) --------------------------------

    @Test
    public void erefusedIsMapped() {
        assertEquals(CourierException.Code.EREFUSED,
                     CourierException.Code.fromValue(-12));
        assertEquals(-12, CourierException.Code.EREFUSED.value());
        assertEquals(CourierException.Code.EREFUSED,
                     new CourierException(-12, "x").getCode());
        assertEquals(CourierException.Code.UNKNOWN,
                     CourierException.Code.fromValue(-13));
    }

    private static CourierException thrown(Runnable r) {
        try {
            r.run();
        } catch (CourierException e) {
            return e;
        }
        fail("no CourierException");
        return null;
    }

    /** Offline (not started, then started against a port that refuses)
     *  pushEnable returns once stored, without waiting for a server;
     *  replacing, disabling and disabling again are harmless; the store
     *  is reopened with the registration in it (that the next login
     *  writes it is livePushStoredThenOnline). Bad arguments are EINVAL
     *  naming the argument; after close, ECLOSED. */
    @Test
    public void pushOfflineStoredAndArguments() {
        final String svc = "push.example.com";
        Config cfg = offlineConfig("push");
        cfg.ackTimeoutMs = 10000;
        Courier c = open(cfg, null);
        c.pushEnable(svc, "token-1", "s3cret");
        c.pushEnable(svc, "token-2", null); // replaces it
        c.pushEnable(svc, "\u4f60\u597d-token", HELLO); // UTF-8 both
        c.pushDisable();
        c.pushDisable(); // nothing registered: harmless
        c.pushEnable(svc, "token-3", "s3cret");

        CourierException e = thrown(() -> c.pushEnable(svc, "", null));
        assertEquals(CourierException.Code.EINVAL, e.getCode());
        assertTrue(e.getMessage(), e.getMessage().contains("node"));
        e = thrown(() -> c.pushEnable(svc, null, null)); // @NotNull
        assertEquals(CourierException.Code.EINVAL, e.getCode());
        assertTrue(e.getMessage(), e.getMessage().contains("node"));
        e = thrown(() -> c.pushEnable("not a jid", "token", null));
        assertEquals(CourierException.Code.EINVAL, e.getCode());
        assertTrue(e.getMessage(), e.getMessage().contains("service_jid"));
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> c.pushEnable(null, "token", null)));
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> c.pushEnable("", "token", null)));
        e = thrown(() -> c.pushEnable(svc, "token", ""));
        assertEquals(CourierException.Code.EINVAL, e.getCode());
        assertTrue(e.getMessage(), e.getMessage().contains("secret"));
        e = thrown(() -> c.pushEnable(svc, "nul\u0000inside", null));
        assertEquals(CourierException.Code.EINVAL, e.getCode());
        assertTrue(e.getMessage(), e.getMessage().contains("node"));
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> c.pushEnable(svc, "ctl\u0001", null)));
        StringBuilder big = new StringBuilder();
        while (big.length() < 1023)
            big.append('n');
        c.pushEnable(svc, big.toString(), null); // 1023 bytes: the most
        big.append('n');
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> c.pushEnable(svc, big.toString(), null)));
        assertEquals(CourierException.Code.EINVAL,
                     codeOf(() -> c.pushEnable(svc, "token",
                                               big.toString())));

        // started, the link never up: still stored at once, not waited for
        c.start();
        long t0 = System.nanoTime();
        c.pushEnable(svc, "token-4", "s3cret");
        c.pushDisable();
        c.pushEnable(svc, "token-5", null);
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue("waited " + ms + " ms offline", ms < 5000);
        c.stop();
        c.close();
        assertEquals(CourierException.Code.ECLOSED,
                     codeOf(() -> c.pushEnable(svc, "token", null)));
        assertEquals(CourierException.Code.ECLOSED, codeOf(c::pushDisable));

        // the store reopens with the registration (schema 7), and forgets
        // it offline
        Courier d = open(cfg, null);
        assertEquals(StoreCheck.NONE, d.checkStatus());
        d.pushDisable();
        d.pushEnable(svc, "token-6", null);
        d.close();
    }

    // ---- live, against the local Prosody of tests/integration/prosody.sh -------

    @Test
    public void liveAliceSendsEmojiToBob() throws Exception {
        String port = System.getenv("COURIER_TEST_PORT");
        String ca = System.getenv("COURIER_TEST_CA");
        String domain = System.getenv("COURIER_TEST_DOMAIN");
        String tdir = System.getenv("COURIER_TEST_DIR");
        boolean have = port != null && ca != null && domain != null;
        // make check-jni sets COURIER_JNI_LIVE=1: there a skip is a failure
        if ("1".equals(System.getenv("COURIER_JNI_LIVE")))
            assertTrue("COURIER_TEST_* missing", have);
        Assume.assumeTrue("no COURIER_TEST_* (run under prosody.sh)", have);
        String base = tdir != null ? tdir : dir.getPath();

        Recorder aliceEvents = new Recorder();
        BlockingQueue<String[]> bobGot = new LinkedBlockingQueue<>();
        Set<String> bobThreads = ConcurrentHashMap.newKeySet();
        Listener bobEvents = new Listener() {
            @Override
            public void onMessage(String id, String peer, Kind kind,
                                  String body, long ts) {
                bobThreads.add(Thread.currentThread().getName());
                bobGot.add(new String[] { id, peer, kind.name(), body });
            }
        };
        Courier alice = open(live("alice", domain, port, ca, base),
                             aliceEvents);
        Courier bob = open(live("bob", domain, port, ca, base), bobEvents);
        bob.start();
        alice.start();

        String id = alice.sendText("bob@" + domain, HELLO);
        String[] m = bobGot.poll(30, TimeUnit.SECONDS);
        assertNotNull("bob got nothing", m);
        assertEquals(id, m[0]);
        assertEquals("alice@" + domain, m[1]);
        assertEquals("TEXT", m[2]);
        assertEquals(HELLO, m[3]);
        assertEquals(Collections.singleton("courier-loop"), bobThreads);
        assertTrue("DELIVERED",
                   aliceEvents.waitFor(id, State.DELIVERED, 30000));

        bob.markDisplayed("alice@" + domain, id);
        assertTrue("DISPLAYED",
                   aliceEvents.waitFor(id, State.DISPLAYED, 30000));
        assertEquals(State.DISPLAYED, alice.getState(id));
        assertNull("exactly once", bobGot.poll(500, TimeUnit.MILLISECONDS));
        MessageInfo mi = alice.getInfo(id);
        assertEquals(mi.toString(), State.DISPLAYED, mi.state);
        assertTrue(mi.toString(), mi.attempts >= 1 && mi.lastSentMs > 0);
        Stats as = alice.getStats(), bs = bob.getStats();
        assertTrue(as.toString(), as.sent >= 1 && as.linksUp >= 1);
        assertTrue(bs.toString(), bs.received >= 1 && bs.linksUp >= 1);
        alice.stop();
        bob.stop();
    }

    /** carol sends dave a message with meta and retracts it: dave (app
     *  confirms, events on an executor) gets the meta in onMessage,
     *  confirms it, then onRetract fires and his history entry is
     *  retracted; carol's history says so too. */
    @Test
    public void liveMetaAndRetraction() throws Exception {
        String port = System.getenv("COURIER_TEST_PORT");
        String ca = System.getenv("COURIER_TEST_CA");
        String domain = System.getenv("COURIER_TEST_DOMAIN");
        String tdir = System.getenv("COURIER_TEST_DIR");
        boolean have = port != null && ca != null && domain != null;
        if ("1".equals(System.getenv("COURIER_JNI_LIVE")))
            assertTrue("COURIER_TEST_* missing", have);
        Assume.assumeTrue("no COURIER_TEST_* (run under prosody.sh)", have);
        String base = tdir != null ? tdir : dir.getPath();
        String carolJid = "carol@" + domain, daveJid = "dave@" + domain;

        ExecutorService ex = Executors.newSingleThreadExecutor(
            r -> new Thread(r, "dave-executor"));
        try {
            BlockingQueue<String[]> daveGot = new LinkedBlockingQueue<>();
            BlockingQueue<String[]> daveRetracted = new LinkedBlockingQueue<>();
            Set<String> threads = ConcurrentHashMap.newKeySet();
            AtomicReference<Courier> daveRef = new AtomicReference<>();
            List<String> confirmErrors = new CopyOnWriteArrayList<>();
            Listener daveEvents = new Listener() {
                @Override
                public void onMessage(String id, String peer, Kind kind,
                                      String body, long ts, String meta) {
                    threads.add(Thread.currentThread().getName());
                    daveGot.add(new String[] { id, peer, body, meta });
                    try {
                        daveRef.get().confirm(peer, id); // "written": confirm
                    } catch (CourierException e) {
                        confirmErrors.add(e.getMessage());
                    }
                }

                @Override
                public void onRetract(String peer, String id) {
                    threads.add(Thread.currentThread().getName());
                    daveRetracted.add(new String[] { peer, id });
                }
            };
            Config dc = live("dave", domain, port, ca, base);
            dc.appConfirms = true;
            Courier dave = open(dc, daveEvents, ex);
            daveRef.set(dave);
            Recorder carolEvents = new Recorder();
            Courier carol = open(live("carol", domain, port, ca, base),
                                 carolEvents);
            dave.start();
            carol.start();

            String meta = "{\"secs\":7,\"t\":\"" + HELLO + "\"}";
            String id = carol.send(Outgoing.builder(daveJid, HELLO)
                                   .id("live-retract-1").meta(meta).build());
            assertEquals("live-retract-1", id);
            String[] m = daveGot.poll(30, TimeUnit.SECONDS);
            assertNotNull("dave got nothing", m);
            assertEquals(id, m[0]);
            assertEquals(carolJid, m[1]);
            assertEquals(HELLO, m[2]);
            assertEquals(meta, m[3]);
            assertTrue("DELIVERED",
                       carolEvents.waitFor(id, State.DELIVERED, 30000));
            Entry before = dave.history(carolJid, 0, 10).get(0);
            assertEquals(before.toString(), Direction.IN, before.dir);
            assertEquals(meta, before.meta);
            assertFalse(before.retracted);
            List<Conversation> dconv = dave.conversations();
            assertEquals(dconv.toString(), 1, dconv.size());
            assertEquals(1, dconv.get(0).unread);

            carol.retract(id);
            String[] r = daveRetracted.poll(30, TimeUnit.SECONDS);
            assertNotNull("dave: no onRetract", r);
            assertEquals(carolJid, r[0]);
            assertEquals(id, r[1]);
            Entry after = dave.history(carolJid, 0, 10).get(0);
            assertEquals(after.toString(), id, after.id);
            assertTrue(after.toString(), after.retracted);
            assertEquals("", after.body);
            assertEquals("", after.meta);
            Entry mine = carol.history(daveJid, 0, 10).get(0);
            assertTrue(mine.toString(), mine.retracted);
            assertEquals(Collections.singleton("dave-executor"), threads);
            assertTrue(confirmErrors.toString(), confirmErrors.isEmpty());
            assertNull("exactly once", daveGot.poll(300, TimeUnit.MILLISECONDS));
            assertNull("one onRetract",
                       daveRetracted.poll(300, TimeUnit.MILLISECONDS));
            carol.stop();
            dave.stop();
        } finally {
            ex.shutdown();
        }
    }

    /** The live environment, or an Assume skip (a failure under
     *  make check-jni, which sets COURIER_JNI_LIVE=1). */
    private static String[] liveEnv() {
        String port = System.getenv("COURIER_TEST_PORT");
        String ca = System.getenv("COURIER_TEST_CA");
        String domain = System.getenv("COURIER_TEST_DOMAIN");
        String tdir = System.getenv("COURIER_TEST_DIR");
        boolean have = port != null && ca != null && domain != null
            && tdir != null;
        if ("1".equals(System.getenv("COURIER_JNI_LIVE")))
            assertTrue("COURIER_TEST_* missing", have);
        Assume.assumeTrue("no COURIER_TEST_* (run under prosody.sh)", have);
        return new String[] { port, ca, domain, tdir };
    }

    /** What the README's Android recipe does in onCertificate, on the
     *  desktop JVM: parse the PEM chain with CertificateFactory and hand it
     *  to the X509TrustManager of a TrustManagerFactory. On a phone the
     *  factory is initialised with a null KeyStore (the platform's CAs);
     *  here with a KeyStore holding the test CA, the one anchor a platform
     *  would have for this server. No name check: the library did it. */
    static boolean platformTrusts(String pemChain, String caFile)
            throws Exception {
        CertificateFactory cf = CertificateFactory.getInstance("X.509");
        Collection<? extends Certificate> certs = cf.generateCertificates(
            new ByteArrayInputStream(
                pemChain.getBytes(StandardCharsets.US_ASCII)));
        X509Certificate[] chain = new X509Certificate[certs.size()];
        int i = 0;
        for (Certificate c : certs)
            chain[i++] = (X509Certificate) c;
        if (chain.length == 0)
            return false;
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        try (InputStream in = new FileInputStream(caFile)) {
            ks.setCertificateEntry("courier-test-ca",
                                   cf.generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(
            TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        for (TrustManager tm : tmf.getTrustManagers()) {
            if (tm instanceof X509TrustManager) {
                try {
                    ((X509TrustManager) tm).checkServerTrusted(chain,
                                                               "ECDHE_RSA");
                    return true;
                } catch (java.security.cert.CertificateException e) {
                    return false;
                }
            }
        }
        return false;
    }

    private static boolean waitOnline(Courier c, long ms)
            throws InterruptedException {
        long end = System.currentTimeMillis() + ms;
        while (System.currentTimeMillis() < end) {
            if (c.getLink() == Link.ONLINE)
                return true;
            Thread.sleep(20);
        }
        return false;
    }

    /** behaviour.md §10 platform trust: no caFile, so OpenSSL cannot
     *  verify the test server; onCertificate gets the JID's domain and the
     *  PEM chain (leaf first) on the library's thread although an executor
     *  was given, verifies it with a TrustManager and accepts: online, and
     *  a message gets through. A listener that says no, and one that
     *  throws, never get online. */
    @Test
    public void liveOnCertificateWithTrustManager() throws Exception {
        String[] env = liveEnv();
        String port = env[0], ca = env[1], domain = env[2], base = env[3];
        List<String> asked = new CopyOnWriteArrayList<>();
        AtomicInteger verified = new AtomicInteger();
        AtomicReference<String> pem = new AtomicReference<>();
        Listener trusting = new Listener() {
            @Override
            public boolean onCertificate(String host, String pemChain) {
                asked.add(host + " on " + Thread.currentThread().getName());
                pem.set(pemChain);
                try {
                    boolean ok = platformTrusts(pemChain, ca);
                    if (ok)
                        verified.incrementAndGet();
                    return ok;
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            }
        };
        ExecutorService ex = Executors.newSingleThreadExecutor(
            r -> new Thread(r, "cert-executor"));
        try {
            Config cfg = live("alice", domain, port, ca, base, "cert");
            cfg.caFile = null;
            Courier alice = open(cfg, trusting, ex);
            alice.start();
            assertTrue("not online through onCertificate",
                       waitOnline(alice, 30000));
            assertFalse(asked.isEmpty());
            for (String a : asked)
                assertEquals(domain + " on courier-loop", a);
            assertEquals(asked.size(), verified.get());
            assertTrue(pem.get(),
                       pem.get().startsWith("-----BEGIN CERTIFICATE-----"));
            Recorder bobEvents = new Recorder();
            Courier bob = open(live("bob", domain, port, ca, base, "cert"),
                               bobEvents);
            bob.start();
            String id = alice.sendText("bob@" + domain, "over platform trust");
            long end = System.currentTimeMillis() + 30000;
            while (alice.getState(id).code() < State.SENT.code() &&
                   alice.getState(id) != State.FAILED &&
                   System.currentTimeMillis() < end)
                Thread.sleep(20);
            assertTrue(alice.getState(id).toString(),
                       alice.getState(id) != State.QUEUED);
            alice.stop();
            bob.stop();
        } finally {
            ex.shutdown();
        }

        AtomicInteger noCalls = new AtomicInteger();
        Config nc = live("alice", domain, port, ca, base, "cert-no");
        nc.caFile = null;
        Courier no = open(nc, new Listener() {
            @Override
            public boolean onCertificate(String host, String pemChain) {
                noCalls.incrementAndGet();
                return false;
            }
        });
        no.start();
        long end = System.currentTimeMillis() + 20000;
        while (noCalls.get() == 0 && System.currentTimeMillis() < end)
            Thread.sleep(20);
        assertTrue("onCertificate never asked", noCalls.get() > 0);
        assertFalse("online although refused", waitOnline(no, 2000));
        no.stop();

        AtomicInteger throwCalls = new AtomicInteger();
        Config tc = live("alice", domain, port, ca, base, "cert-throw");
        tc.caFile = null;
        Courier thrower = open(tc, new Listener() {
            @Override
            public boolean onCertificate(String host, String pemChain) {
                throwCalls.incrementAndGet();
                throw new IllegalStateException("cert listener bug (expected)");
            }
        });
        thrower.start();
        end = System.currentTimeMillis() + 20000;
        while (throwCalls.get() == 0 && System.currentTimeMillis() < end)
            Thread.sleep(20);
        assertTrue("onCertificate never asked", throwCalls.get() > 0);
        assertFalse("online although it threw", waitOnline(thrower, 2000));
        thrower.stop();
    }

    /** A listener that closes its Courier from inside onCertificate (the
     *  loop thread, inside the login): the close is deferred until the
     *  callback returns, the login goes no further, and the glue's
     *  references are released. */
    @Test
    public void liveCloseFromOnCertificate() throws Exception {
        String[] env = liveEnv();
        String port = env[0], ca = env[1], domain = env[2], base = env[3];
        long refs = Courier.liveGlobalRefsForTest();
        AtomicReference<Courier> self = new AtomicReference<>();
        CountDownLatch asked = new CountDownLatch(1);
        AtomicInteger calls = new AtomicInteger();
        Config cfg = live("alice", domain, port, ca, base, "cert-close");
        cfg.caFile = null;
        Courier c = Courier.open(cfg, new Listener() {
            @Override
            public boolean onCertificate(String host, String pemChain) {
                calls.incrementAndGet();
                self.get().close();
                asked.countDown();
                return true;
            }
        });
        self.set(c);
        c.start();
        assertTrue("onCertificate never asked", asked.await(20, TimeUnit.SECONDS));
        assertTrue(c.isClosed());
        long end = System.currentTimeMillis() + 10000;
        while (Courier.liveGlobalRefsForTest() != refs &&
               System.currentTimeMillis() < end)
            Thread.sleep(10);
        assertEquals(refs, Courier.liveGlobalRefsForTest());
        Thread.sleep(300);
        assertEquals(1, calls.get());
        assertEquals(CourierException.Code.ECLOSED, codeOf(c::checkStatus));
    }

    /** Without caFile and without an onCertificate override the test
     *  server's certificate is refused (the C callback stays unset); with
     *  caPath (a hashed directory holding the test CA) it is trusted. */
    @Test
    public void liveCaPathTrusted() throws Exception {
        String[] env = liveEnv();
        String port = env[0], ca = env[1], domain = env[2], base = env[3];
        Config none = live("alice", domain, port, ca, base, "nocert");
        none.caFile = null;
        Courier refused = open(none, new Listener() {});
        refused.start();
        assertFalse("online without any CA", waitOnline(refused, 3000));
        refused.stop();

        String caDir = System.getenv("COURIER_TEST_CA_DIR");
        assertNotNull("COURIER_TEST_CA_DIR", caDir);
        Config cfg = live("alice", domain, port, ca, base, "capath");
        cfg.caFile = null;
        cfg.caPath = caDir;
        Courier c = open(cfg, null);
        c.start();
        assertTrue("caPath not trusted", waitOnline(c, 30000));
        c.stop();
    }

    /** sync as a push-woken run does it, and the id both sides chose:
     *  bob sends alice "both-1" while she is away; alice, not started,
     *  queues her own "both-1" to bob and calls sync: it connects, sends,
     *  receives, and returns once her message is acknowledged and bob's is
     *  handed over. Her history then holds "both-1" in each direction:
     *  delete is ESTATE, deleteEntry(IN) removes bob's, and delete then
     *  takes hers. setActive and checkStatus on the live link too. */
    @Test
    public void liveSyncAndDeleteEntry() throws Exception {
        String[] env = liveEnv();
        String port = env[0], ca = env[1], domain = env[2], base = env[3];
        String aliceJid = "alice@" + domain, bobJid = "bob@" + domain;
        Recorder bobEvents = new Recorder();
        Courier bob = open(live("bob", domain, port, ca, base, "sync"),
                           bobEvents);
        bob.start();
        assertTrue("bob not online", waitOnline(bob, 30000));
        String bid = bob.send(Outgoing.builder(aliceJid, "from bob")
                              .id("both-1").build());
        assertTrue("the server never took bob's message",
                   bobEvents.waitFor(bid, State.SENT, 30000));

        BlockingQueue<String> got = new LinkedBlockingQueue<>();
        Courier alice = open(live("alice", domain, port, ca, base, "sync"),
            new Listener() {
                @Override
                public void onMessage(String id, String peer, Kind kind,
                                      String body, long ts) {
                    got.add(peer + "/" + id + "/" + body);
                }
            });
        assertEquals(StoreCheck.NONE, alice.checkStatus());
        alice.setActive(false); // before start: remembered
        String aid = alice.send(Outgoing.builder(bobJid, "from alice")
                                .id("both-1").build());
        assertEquals("both-1", aid);
        alice.sync(30000);
        // returned: hers acknowledged, bob's handed over
        State s = alice.getState(aid);
        assertTrue(s.toString(), s.code() >= State.SENT.code() &&
                   s != State.FAILED);
        assertEquals(bobJid + "/both-1/from bob",
                     got.poll(0, TimeUnit.MILLISECONDS));
        assertEquals(Link.ONLINE, alice.getLink()); // the link stays up
        alice.sync(30000); // nothing in flight: at once
        alice.setActive(true);
        alice.setActive(false);

        List<Entry> h = alice.history(bobJid, 0, 10);
        assertEquals(h.toString(), 2, h.size());
        assertEquals(CourierException.Code.ESTATE,
                     codeOf(() -> alice.delete(bobJid, "both-1")));
        assertEquals(2, alice.history(bobJid, 0, 10).size());
        alice.deleteEntry(bobJid, "both-1", Direction.IN);
        h = alice.history(bobJid, 0, 10);
        assertEquals(h.toString(), 1, h.size());
        assertEquals(Direction.OUT, h.get(0).dir);
        alice.delete(bobJid, "both-1"); // one live entry left: no ESTATE
        assertTrue(alice.history(bobJid, 0, 10).isEmpty());
        alice.stop();
        bob.stop();
    }

    private static boolean waitForLine(List<String> lines, String part,
                                       long ms) throws InterruptedException {
        long end = System.currentTimeMillis() + ms;
        while (System.currentTimeMillis() < end) {
            for (String l : lines)
                if (l.contains(part))
                    return true;
            Thread.sleep(20);
        }
        return false;
    }

    /** behaviour.md §10 push against the test Prosody (mod_cloud_notify
     *  and the push component's JID from prosody.sh; with
     *  COURIER_TEST_NO_PUSH the server refuses instead). Enabled offline,
     *  closed, reopened and started: the registration came from the store
     *  and the login writes it (the server's answer in onLog). Online the
     *  call returns the server's answer: accepted; EREFUSED with the
     *  condition for a service JID equal to the session's own full JID
     *  (mod_cloud_notify's bad-request). Disable online, then again
     *  (nothing left). */
    @Test
    public void livePushStoredThenOnline() throws Exception {
        String[] env = liveEnv();
        String port = env[0], ca = env[1], domain = env[2], base = env[3];
        String pushJid = System.getenv("COURIER_TEST_PUSH_JID");
        String svc = pushJid != null ? pushJid : "push." + domain;
        String node = "jni-push-" + System.nanoTime();
        Config cfg = live("dave", domain, port, ca, base, "push");
        cfg.jid = "dave@" + domain + "/jni-push";
        List<String> logs = new CopyOnWriteArrayList<>();
        Listener logger = new Listener() {
            @Override
            public void onLog(int level, String line) {
                if (line.contains("push (XEP-0357)"))
                    logs.add(level + " " + line);
            }
        };
        Courier d = open(cfg, logger);
        d.pushEnable(svc, node, "s3cret"); // not started: stored
        d.close();

        Courier e = open(cfg, logger);
        e.start();
        assertTrue("dave not online", waitOnline(e, 30000));
        String answer = pushJid != null ? "enable at " + svc + " accepted"
                                        : "enable at " + svc + " refused";
        assertTrue(logs.toString(), waitForLine(logs, answer, 30000));
        if (pushJid != null) {
            e.pushEnable(svc, node + "-2", null); // accepted: returns
            CourierException x = thrown(() -> e.pushEnable(cfg.jid, node,
                                                           null));
            assertEquals(x.getMessage(), CourierException.Code.EREFUSED,
                         x.getCode());
            assertEquals(-12, x.getErrorCode());
            assertTrue(x.getMessage(), x.getMessage().contains("bad-request"));
        } else {
            CourierException x = thrown(() -> e.pushEnable(svc, node, null));
            assertEquals(x.getMessage(), CourierException.Code.EREFUSED,
                         x.getCode());
            assertTrue(x.getMessage(),
                       x.getMessage().contains("service-unavailable"));
        }
        e.pushDisable(); // the server answers it (a refused one too)
        assertTrue(logs.toString(), waitForLine(logs, "disable at", 30000));
        e.pushDisable(); // nothing left: at once
        e.stop();
        e.close();
        assertEquals(CourierException.Code.ECLOSED, codeOf(e::pushDisable));
    }

    /** From a listener on the library's thread (no executor) pushEnable
     *  never waits for the answer that very thread brings: it returns once
     *  stored, and the answer goes to onLog. */
    @Test
    public void livePushFromTheLoopThreadDoesNotWait() throws Exception {
        String[] env = liveEnv();
        String port = env[0], ca = env[1], domain = env[2], base = env[3];
        String pushJid = System.getenv("COURIER_TEST_PUSH_JID");
        String svc = pushJid != null ? pushJid : "push." + domain;
        Config cfg = live("dave", domain, port, ca, base, "push-cb");
        cfg.ackTimeoutMs = 20000;
        List<String> logs = new CopyOnWriteArrayList<>();
        BlockingQueue<String> done = new LinkedBlockingQueue<>();
        AtomicReference<Courier> self = new AtomicReference<>();
        Courier d = open(cfg, new Listener() {
            @Override
            public void onLink(Link link) {
                if (link != Link.ONLINE || !done.isEmpty())
                    return;
                long t0 = System.nanoTime();
                String how;
                try {
                    self.get().pushEnable(svc, "jni-push-cb", null);
                    how = "OK";
                } catch (CourierException e) {
                    how = e.getCode().toString();
                }
                done.add(how + " " + (System.nanoTime() - t0) / 1_000_000
                         + " " + Thread.currentThread().getName());
            }

            @Override
            public void onLog(int level, String line) {
                if (line.contains("push (XEP-0357)"))
                    logs.add(level + " " + line);
            }
        });
        self.set(d);
        d.start();
        String got = done.poll(30, TimeUnit.SECONDS);
        assertNotNull("never online", got);
        String[] f = got.split(" ");
        assertEquals(got, "OK", f[0]);
        assertTrue(got, Long.parseLong(f[1]) < 5000);
        assertEquals(got, "courier-loop", f[2]);
        String answer = pushJid != null ? "enable at " + svc + " accepted"
                                        : "enable at " + svc + " refused";
        assertTrue(logs.toString(), waitForLine(logs, answer, 30000));
        d.pushDisable();
        d.stop();
    }

    private static Config live(String who, String domain, String port,
                               String ca, String base, String tag) {
        Config cfg = live(who, domain, port, ca, base);
        cfg.dbPath = new File(base, "jni-" + tag + "-" + who + ".db").getPath();
        return cfg;
    }

    private static Config live(String who, String domain, String port,
                               String ca, String base) {
        Config cfg = new Config();
        cfg.jid = who + "@" + domain;
        cfg.password = "pw-" + who;
        cfg.host = "127.0.0.1";
        cfg.port = Integer.parseInt(port);
        cfg.caFile = ca;
        cfg.dbPath = new File(base, "jni-" + who + ".db").getPath();
        cfg.reconnectMinMs = 100;
        cfg.reconnectMaxMs = 1000;
        return cfg;
    }
}
