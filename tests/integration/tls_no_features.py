#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A hostile server of the tests' own (behaviour.md §10): it offers
STARTTLS and SASL PLAIN, completes the TLS handshake with the certificate
it is given, then sends a stream header and no stream features (no real
server leaves them out). It prints its port, then for each connection
"AUTH" if the client wrote an <auth/> after the handshake and "EOF" when
the client closed. Stopped by the test, by PID.

    tls_no_features.py CERT KEY
"""
import socket
import ssl
import sys

HDR = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
       "xmlns:stream='http://etherx.jabber.org/streams' id='nf%d' "
       "version='1.0'>")


def read_until(s, tok, buf=b""):
    while tok not in buf:
        d = s.recv(4096)
        if not d:
            raise EOFError
        buf += d
    return buf


def serve(ctx, c, n):
    b = read_until(c, b"<stream:stream")
    read_until(c, b">", b[b.index(b"<stream:stream"):])
    c.sendall((HDR % n + "<stream:features><starttls xmlns='urn:ietf:"
               "params:xml:ns:xmpp-tls'><required/></starttls><mechanisms "
               "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN"
               "</mechanism></mechanisms></stream:features>").encode())
    read_until(c, b"starttls")
    c.sendall(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    t = ctx.wrap_socket(c, server_side=True)
    read_until(t, b"<stream:stream")
    t.sendall((HDR % n).encode())  # and no <stream:features/>
    seen = b""
    while True:
        d = t.recv(4096)
        if not d:
            break
        seen += d
        if b"<auth" in seen:
            print("AUTH", flush=True)
            seen = b""


def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    print(ls.getsockname()[1], flush=True)
    n = 0
    while True:
        c, _ = ls.accept()
        n += 1
        try:
            serve(ctx, c, n)
        except (OSError, EOFError, ssl.SSLError):
            pass
        c.close()
        print("EOF", flush=True)


if __name__ == "__main__":
    main()
