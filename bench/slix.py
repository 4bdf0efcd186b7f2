#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# The slixmpp pair of `make bench` (Debian's python3-slixmpp, run by
# /usr/bin/python3): the same protocol as the C clients of bench/clients.c.
#
#   slix.py recv LOCAL N [sm]     prints "ready" once online; XEP-0184
#                                 receipts sent by the plugin; at EOF on
#                                 stdin prints "recv" and "cpu_s"
#   slix.py send LOCAL PEER N [sm]
#                                 sends N chat messages asking for receipts,
#                                 waits for N receipts; prints the figures
#                                 (rate, CPU, send -> receipt percentiles)
#                                 between "mark start" and "mark end"
#   "sm": with XEP-0198 stream management too (the plugin's defaults), as
#   libcourier uses it
#
# Needs COURIER_TEST_DOMAIN, COURIER_TEST_PORT, COURIER_TEST_CA
# (tests/integration/prosody.sh).
import asyncio
import logging
import os
import resource
import sys
import time

logging.basicConfig(level=logging.ERROR)  # before the import: it logs

import slixmpp  # noqa: E402


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pct(v, p):
    """Nearest rank, as bench_pct() in bench/util.c."""
    if not v:
        return 0.0
    v = sorted(v)
    rank = min(len(v), max(1, int(p / 100.0 * len(v) + 0.999999)))
    return v[rank - 1]


def out(**kv):
    for k, v in kv.items():
        print(f"{k} {v}")
    sys.stdout.flush()


class Client(slixmpp.ClientXMPP):
    def __init__(self, local, sm=False):
        dom = os.environ["COURIER_TEST_DOMAIN"]
        super().__init__(f"{local}@{dom}", f"pw-{local}")
        self.ca_certs = os.environ.get("COURIER_TEST_CA")
        self.register_plugin("xep_0184", {"auto_ack": True,
                                          "auto_request": True})
        if sm:
            self.register_plugin("xep_0198")
        self.add_event_handler("session_start", self.started)
        self.cpu0 = 0.0

    def go(self):
        port = int(os.environ["COURIER_TEST_PORT"])
        self.connect(address=("127.0.0.1", port), force_starttls=True)
        self.process(forever=False)


class Recv(Client):
    def __init__(self, local, n, sm):
        super().__init__(local, sm)
        self.n = n
        self.got = 0
        self.add_event_handler("message", self.on_message)

    async def started(self, _):
        self.send_presence()
        self.cpu0 = cpu()
        self.loop.add_reader(0, self.on_stdin)
        print("ready")
        sys.stdout.flush()

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.got += 1

    def on_stdin(self):
        if not os.read(0, 256):
            self.loop.remove_reader(0)
            out(recv=self.got, cpu_s=f"{cpu() - self.cpu0:.4f}")
            self.disconnect()


class Send(Client):
    def __init__(self, local, peer, n, sm):
        super().__init__(local, sm)
        self.peer = f"{peer}@{os.environ['COURIER_TEST_DOMAIN']}"
        self.n = n
        self.acked = 0
        self.t0 = 0.0
        self.sent_at = {}
        self.lat = []
        self.add_event_handler("receipt_received", self.on_receipt)

    async def started(self, _):
        self.send_presence()
        print("mark start")
        sys.stdout.flush()
        self.t0 = time.monotonic()
        self.cpu0 = cpu()
        for i in range(self.n):
            m = self.make_message(mto=self.peer,
                                  mbody=f"benchmark message {i}",
                                  mtype="chat")
            self.sent_at[m["id"]] = time.monotonic()
            m.send()  # the plugin adds the <request/> on its way out
            if i % 200 == 199:
                await asyncio.sleep(0)  # let the writer and receipts run

    def on_receipt(self, msg):
        t_sent = self.sent_at.pop(msg["receipt"], None)
        if t_sent is None:
            return
        self.lat.append((time.monotonic() - t_sent) * 1e3)
        self.acked += 1
        if self.acked == self.n:
            t = time.monotonic() - self.t0
            c = cpu() - self.cpu0
            out(mark="end")
            out(n=self.n, delivered_s=f"{t:.4f}", rate=f"{self.n / t:.2f}",
                cpu_s=f"{c:.4f}", cpu_per_msg_us=f"{c / self.n * 1e6:.3f}",
                delivered_p50_ms=f"{pct(self.lat, 50):.4f}",
                delivered_p99_ms=f"{pct(self.lat, 99):.4f}")
            self.disconnect()


def main():
    a = sys.argv[1:]
    sm = len(a) > 0 and a[-1] == "sm"
    if sm:
        a = a[:-1]
    if len(a) == 3 and a[0] == "recv":
        Recv(a[1], int(a[2]), sm).go()
    elif len(a) == 4 and a[0] == "send":
        Send(a[1], a[2], int(a[3]), sm).go()
    else:
        sys.exit("usage: slix.py recv LOCAL N [sm] | send LOCAL PEER N [sm]")


if __name__ == "__main__":
    main()
