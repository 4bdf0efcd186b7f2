#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The app server of the push tests (XEP-0357 section 6): an XEP-0114
component on 127.0.0.1 that takes the pubsub publishes the user's server
sends when a message waits for a device that has push enabled, answers
each with a result, and records it.

  push_appserver.py --jid push.DOMAIN --secret S --port P --out FILE

It writes to FILE (appended, flushed), one event a line:
  ready                             (the component's stream is up)
  publish NODE SECRET FROM          (one publish; SECRET "-" when none)
  bad WHY                           (a pubsub iq it could not read)

Run it with /usr/bin/python3 (Debian's python3-slixmpp). Exit status 2
when it cannot connect.
"""
import argparse
import logging
import sys

# Before slixmpp is imported: it warns at import time ("slower stringprep").
logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

from slixmpp import ComponentXMPP  # noqa: E402
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_DATA = 'jabber:x:data'
NS_COMPONENT = 'jabber:component:accept'


class AppServer(ComponentXMPP):
    def __init__(self, args, out):
        super().__init__(args.jid, args.secret, '127.0.0.1', args.port)
        self.out = out
        self.register_handler(Callback(
            'push publish',
            MatchXPath('{%s}iq/{%s}pubsub' % (NS_COMPONENT, NS_PUBSUB)),
            self.on_pubsub))
        self.add_event_handler('session_start', self.on_start)
        self.add_event_handler('disconnected', self.on_disconnected)

    def emit(self, *words):
        self.out.write(' '.join(str(w) for w in words) + '\n')
        self.out.flush()

    def on_start(self, _):
        self.emit('ready')

    def on_disconnected(self, _):
        sys.exit(2)

    def on_pubsub(self, iq):
        xml = iq.xml
        pub = xml.find('{%s}pubsub/{%s}publish' % (NS_PUBSUB, NS_PUBSUB))
        if iq['type'] != 'set' or pub is None or not pub.get('node'):
            self.emit('bad', 'no publish node')
            iq.reply().error().send()
            return
        secret = '-'
        opts = xml.find('{%s}pubsub/{%s}publish-options/{%s}x'
                        % (NS_PUBSUB, NS_PUBSUB, NS_DATA))
        if opts is not None:
            for field in opts.findall('{%s}field' % NS_DATA):
                if field.get('var') == 'secret':
                    value = field.find('{%s}value' % NS_DATA)
                    if value is not None and value.text:
                        secret = value.text
        self.emit('publish', pub.get('node'), secret, iq['from'])
        iq.reply(clear=True).send()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--jid', required=True)
    ap.add_argument('--secret', required=True)
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--out', required=True)
    args = ap.parse_args()
    with open(args.out, 'a', encoding='utf-8') as out:
        xmpp = AppServer(args, out)
        xmpp.connect()
        xmpp.process(forever=True)


if __name__ == '__main__':
    main()
