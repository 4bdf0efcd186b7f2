// SPDX-License-Identifier: MIT
package org.libcourier;

import java.util.concurrent.Executor;

import org.jetbrains.annotations.NotNull;

/**
 * The listener the glue calls when the app chose a callback executor: each
 * event becomes one task for that executor, which calls the app's listener
 * unless the Courier was closed meanwhile (onCertificate excepted: it
 * answers on the library's thread). The glue calls this on the
 * library's thread; what {@code execute} throws (a rejected task) is logged
 * and cleared there like any listener exception.
 */
final class ExecutorListener implements Listener {
    private final Courier owner;
    private final Listener app;
    private final Executor executor;

    ExecutorListener(Courier owner, Listener app, Executor executor) {
        this.owner = owner;
        this.app = app;
        this.executor = executor;
    }

    private void post(Runnable r) {
        executor.execute(() -> {
            if (!owner.isClosed())
                r.run();
        });
    }

    @Override
    public void onState(@NotNull String id, @NotNull String peer,
                        @NotNull State state) {
        post(() -> app.onState(id, peer, state));
    }

    @Override
    public void onMessage(@NotNull String id, @NotNull String peer,
                          @NotNull Kind kind, @NotNull String body,
                          long timestampMs) {
        post(() -> app.onMessage(id, peer, kind, body, timestampMs));
    }

    @Override
    public void onMessage(@NotNull String id, @NotNull String peer,
                          @NotNull Kind kind, @NotNull String body,
                          long timestampMs, @NotNull String meta) {
        post(() -> app.onMessage(id, peer, kind, body, timestampMs, meta));
    }

    @Override
    public void onRetract(@NotNull String peer, @NotNull String id) {
        post(() -> app.onRetract(peer, id));
    }

    @Override
    public void onLink(@NotNull Link link) {
        post(() -> app.onLink(link));
    }

    @Override
    public void onComposing(@NotNull String peer, boolean composing) {
        post(() -> app.onComposing(peer, composing));
    }

    @Override
    public void onLog(int level, @NotNull String line) {
        post(() -> app.onLog(level, line));
    }

    /** Not posted: the library needs the answer now, on its own thread
     *  (the login waits for it). */
    @Override
    public boolean onCertificate(@NotNull String host,
                                 @NotNull String pemChain) {
        return app.onCertificate(host, pemChain);
    }
}
