#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A modern XMPP client for the interop tests: slixmpp (Debian's
python3-slixmpp, so run it with /usr/bin/python3) speaking only XEP-0184
receipts, XEP-0333 chat markers and XEP-0085 chat states -- no XEP-0022.

Driven by tests/integration/test_interop.c through stdin, one command a
line; it reports on stdout, one event a line (flushed):

  commands                          events
  send ID FLAGS BODY...             ready            (online, presence sent)
      FLAGS: comma list of          msg ID r184=0|1 m333=0|1 x22=0|1 BODY
      receipt, markable, none       receipt ID       (XEP-0184 <received/>)
  receipt ID     (0184 <received>)  marker KIND ID   (XEP-0333)
  marker KIND ID (0333 marker)      state STATE      (XEP-0085)
  state STATE    (0085 standalone)  x22 ...          (an XEP-0022 event)
  expect receipt ID N SECS          ok ... | timeout ...
  expect marker KIND ID N SECS      violation WHY    (a protocol error)
  expect state STATE SECS           stale ...        (left by an old run)
  quit                              violations N     (then exit)

It checks what comes back on its own side: a receipt or marker must name an
id it sent (with the run's --prefix) that asked for that form, carry that
id, come from the peer's bare JID, and a receipt must not ask for a receipt
itself; no XEP-0022 event may come back for a message that did not ask for
one. --auto answers like a typical client: a 0184 receipt and a 0333
<received/> marker for each message that asks for them.
Exit status: 0 when no violation and no failed expectation, 1 otherwise,
2 when it could not get online.
"""
import argparse
import asyncio
import logging
import os
import sys
import xml.etree.ElementTree as ET

# Before slixmpp is imported: it warns at import time ("slower stringprep").
logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

from slixmpp import ClientXMPP, JID  # noqa: E402
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

NS_CLIENT = 'jabber:client'
NS_RECEIPTS = 'urn:xmpp:receipts'
NS_MARKERS = 'urn:xmpp:chat-markers:0'
NS_CHATSTATES = 'http://jabber.org/protocol/chatstates'
NS_EVENT = 'jabber:x:event'
CHAT_STATES = ('active', 'composing', 'paused', 'inactive', 'gone')
MARKERS = ('received', 'displayed', 'acknowledged')


def out(*words):
    sys.stdout.write(' '.join(str(w) for w in words) + '\n')
    sys.stdout.flush()


class Peer(ClientXMPP):
    def __init__(self, args):
        super().__init__(args.jid, args.password)
        self.args = args
        self.peer = JID(args.peer).bare.lower()
        self.prefix = args.prefix
        self.ca_certs = args.ca
        for plugin in ('xep_0030', 'xep_0085', 'xep_0184', 'xep_0199',
                       'xep_0333'):
            self.register_plugin(plugin)
        self.plugin['xep_0184'].auto_ack = False  # answered below
        self.sent = {}       # id -> set of forms asked for
        self.receipts = {}   # id -> count
        self.markers = {}    # (kind, id) -> count
        self.states = []     # chat states from the peer, in order
        self.violations = 0
        self.failed = 0
        self.online = False
        self.quitting = False
        self.finished = asyncio.get_event_loop().create_future()
        self.inbuf = b''
        self.add_event_handler('session_start', self.on_start)
        self.add_event_handler('disconnected', self.on_disconnected)
        self.add_event_handler('failed_auth', self.on_failed_auth)
        self.register_handler(Callback(
            'interop: every message', MatchXPath('{%s}message' % NS_CLIENT),
            self.on_any_message))

    # -- connection ----------------------------------------------------
    async def on_start(self, _event):
        self.send_presence()
        # A round trip after it: once the server answers, our presence has
        # been handled and messages to the bare JID reach this session.
        await self.get_roster()
        self.online = True
        out('ready')
        self.loop.add_reader(sys.stdin.fileno(), self.on_stdin)

    def on_failed_auth(self, _event):
        out('violation login refused')
        self.finish(2)

    def on_disconnected(self, _event):
        if not self.finished.done() and self.online and not self.quitting:
            out('violation disconnected by the server')
            self.violations += 1
        self.finish(2 if not self.online else None)

    def finish(self, code=None):
        if self.finished.done():
            return
        if code is None:
            code = 1 if self.violations or self.failed else 0
        self.finished.set_result(code)

    def violation(self, why):
        self.violations += 1
        out('violation', why)

    # -- what comes in -------------------------------------------------
    def ours(self, mid):
        """True for an id of this run, so that leftovers of an earlier run
        (stored offline by the server) are not judged."""
        return bool(mid) and mid.startswith(self.prefix)

    def on_any_message(self, msg):
        x = msg.xml
        frm = msg['from']
        if msg['type'] == 'error':
            out('error', msg['id'] or '-')
            return
        if frm.bare.lower() != self.peer:
            return  # the server's own messages, other accounts
        body = x.find('{%s}body' % NS_CLIENT)
        r = x.find('{%s}received' % NS_RECEIPTS)
        if r is not None:
            self.on_receipt(x, r)
        for kind in MARKERS:
            m = x.find('{%s}%s' % (NS_MARKERS, kind))
            if m is not None:
                self.on_marker(kind, m)
        for st in CHAT_STATES:
            if x.find('{%s}%s' % (NS_CHATSTATES, st)) is not None:
                self.states.append(st)
                out('state', st)
        ev = x.find('{%s}x' % NS_EVENT)
        if ev is not None:
            self.on_x22(ev, body is not None)
        if body is not None:
            flags = ('r184=%d' % (x.find('{%s}request' % NS_RECEIPTS)
                                  is not None),
                     'm333=%d' % (x.find('{%s}markable' % NS_MARKERS)
                                  is not None),
                     'x22=%d' % (ev is not None))
            text = (body.text or '').replace('\n', ' ')
            out('msg', msg['id'] or '-', *flags, text)
            if self.args.auto:
                self.auto_answer(msg, x)

    def on_receipt(self, x, r):
        mid = r.get('id') or ''
        if not self.ours(mid):
            out('stale receipt', mid or '-')
            return
        if mid not in self.sent:
            self.violation('receipt for an id never sent: %s' % mid)
        elif 'receipt' not in self.sent[mid]:
            self.violation('receipt not asked for: %s' % mid)
        if x.find('{%s}request' % NS_RECEIPTS) is not None:
            self.violation('a receipt that asks for a receipt: %s' % mid)
        self.receipts[mid] = self.receipts.get(mid, 0) + 1
        out('receipt', mid)

    def on_marker(self, kind, m):
        mid = m.get('id') or ''
        if not self.ours(mid):
            out('stale marker', kind, mid or '-')
            return
        if mid not in self.sent:
            self.violation('marker for an id never sent: %s' % mid)
        elif 'markable' not in self.sent[mid]:
            self.violation('marker for a message not markable: %s' % mid)
        self.markers[(kind, mid)] = self.markers.get((kind, mid), 0) + 1
        out('marker', kind, mid)

    def on_x22(self, ev, with_body):
        # A request on a message is fine; an event (with <id>) is an answer,
        # and we never asked for XEP-0022 events.
        idel = ev.find('{%s}id' % NS_EVENT)
        if idel is None:
            return
        names = [c.tag.split('}')[-1] for c in ev if c is not idel]
        mid = idel.text or ''
        out('x22', mid or '-', *names)
        if not with_body and self.ours(mid) and mid in self.sent:
            self.violation('XEP-0022 event not asked for: %s' % mid)

    def auto_answer(self, msg, x):
        mid = msg['id']
        if not mid:
            return
        if x.find('{%s}request' % NS_RECEIPTS) is not None:
            self.send_receipt(mid)
        if x.find('{%s}markable' % NS_MARKERS) is not None:
            self.send_marker('received', mid)

    # -- what goes out -------------------------------------------------
    def send_chat(self, mid, forms, body):
        msg = self.make_message(mto=self.peer, mbody=body, mtype='chat')
        msg['id'] = mid
        if 'receipt' in forms:
            msg.xml.append(ET.Element('{%s}request' % NS_RECEIPTS))
        if 'markable' in forms:
            msg.xml.append(ET.Element('{%s}markable' % NS_MARKERS))
        self.sent.setdefault(mid, set()).update(forms)
        msg.send()

    def send_receipt(self, mid):
        msg = self.make_message(mto=self.peer, mtype='chat')
        r = ET.Element('{%s}received' % NS_RECEIPTS)
        r.set('id', mid)
        msg.xml.append(r)
        msg.send()

    def send_marker(self, kind, mid):
        msg = self.make_message(mto=self.peer, mtype='chat')
        msg[kind]['id'] = mid  # the xep_0333 stanza plugins
        msg.send()

    def send_state(self, state):
        msg = self.make_message(mto=self.peer, mtype='chat')
        msg['chat_state'] = state
        msg.send()

    # -- commands ------------------------------------------------------
    def on_stdin(self):
        try:
            data = os.read(sys.stdin.fileno(), 65536)
        except OSError:
            data = b''
        if not data:
            self.loop.remove_reader(sys.stdin.fileno())
            self.quit()
            return
        self.inbuf += data
        while b'\n' in self.inbuf:
            line, self.inbuf = self.inbuf.split(b'\n', 1)
            words = line.decode('utf-8', 'replace').split()
            if words:
                try:
                    self.command(words, line.decode('utf-8', 'replace'))
                except (ValueError, IndexError, KeyError) as e:
                    out('violation bad command:', line, e)
                    self.failed += 1

    def command(self, w, line):
        cmd = w[0]
        if cmd == 'send':
            forms = set(w[2].split(',')) - {'none'}
            body = line.split(None, 3)[3] if len(w) > 3 else 'hello'
            self.send_chat(w[1], forms, body)
        elif cmd == 'receipt':
            self.send_receipt(w[1])
        elif cmd == 'marker':
            self.send_marker(w[1], w[2])
        elif cmd == 'state':
            self.send_state(w[1])
        elif cmd == 'expect':
            asyncio.ensure_future(self.expect(w[1:]))
        elif cmd == 'quit':
            self.quit()
        else:
            raise ValueError('unknown command')

    async def expect(self, w):
        what = w[0]
        if what == 'receipt':
            mid, n, secs = w[1], int(w[2]), float(w[3])
            cond = lambda: self.receipts.get(mid, 0) >= n
            label = ('receipt', mid, n)
        elif what == 'marker':
            kind, mid, n, secs = w[1], w[2], int(w[3]), float(w[4])
            cond = lambda: self.markers.get((kind, mid), 0) >= n
            label = ('marker', kind, mid, n)
        elif what == 'state':
            st, secs = w[1], float(w[2])
            cond = lambda: st in self.states
            label = ('state', st)
        else:
            raise ValueError('unknown expectation')
        end = self.loop.time() + secs
        while not cond() and self.loop.time() < end:
            await asyncio.sleep(0.02)
        if cond():
            out('ok', *label)
        else:
            self.failed += 1
            out('timeout', *label)

    def quit(self):
        if self.quitting:
            return
        self.quitting = True
        out('violations', self.violations + self.failed)
        self.disconnect(wait=2.0)
        # disconnected -> finish(); a stuck close still ends the run
        self.loop.call_later(5, self.finish)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--jid', required=True)
    ap.add_argument('--password', required=True)
    ap.add_argument('--peer', required=True, help='the libcourier account')
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--ca', required=True, help='CA file for the server')
    ap.add_argument('--prefix', required=True,
                    help='ids of this run start with it')
    ap.add_argument('--auto', action='store_true',
                    help='answer receipts/received markers by itself')
    ap.add_argument('--timeout', type=float, default=120,
                    help='give up after this many seconds in all')
    args = ap.parse_args()

    asyncio.set_event_loop(asyncio.new_event_loop())
    peer = Peer(args)
    peer.init_plugins()
    peer.connect(address=(args.host, args.port), force_starttls=True)
    loop = peer.loop
    loop.call_later(args.timeout, lambda: (out('violation run timed out'),
                                           peer.finish(1)))
    code = loop.run_until_complete(peer.finished)
    if code == 2 and not peer.online:
        out('violation never online')
    sys.exit(code)


if __name__ == '__main__':
    main()
