#!/bin/bash
# SPDX-License-Identifier: MIT
# Start a private Prosody on 127.0.0.1 for one test run, then run the
# command given with COURIER_TEST_* set; stop Prosody by PID on exit.
#
#   tests/integration/prosody.sh [--port-taken-check] -- CMD [ARGS...]
#
# Sets: COURIER_TEST_DOMAIN, COURIER_TEST_PORT, COURIER_TEST_CA (CA that
# signed the server certificate), COURIER_TEST_BAD_CA (an unrelated CA),
# COURIER_TEST_DIR (scratch space), COURIER_TEST_CA_DIR (the CA as a
# hashed directory, for ca_path), COURIER_TEST_WRONG_DOMAIN (a second
# virtual host served with the first one's certificate: a name mismatch).
# Accounts: alice bob carol dave ärger, each with password "pw-<name>";
# alice also on the wrong-name host.
# COURIER_TEST_NO_SM=1 leaves mod_smacks out: a server without XEP-0198;
# COURIER_TEST_TLS11=1 makes c2s speak TLS 1.1 only (security level 0).
# Both reach the command too, so tests can tell.
# XEP-0357 push: mod_cloud_notify (Debian's prosody-modules) and an
# XEP-0114 component listener for the push tests' app server
# (push_appserver.py): COURIER_TEST_PUSH_PORT, COURIER_TEST_PUSH_JID,
# COURIER_TEST_PUSH_SECRET; COURIER_TEST_NO_PUSH=1 leaves both out (a
# server without XEP-0357, which refuses an <enable/>), and the
# COURIER_TEST_PUSH_* variables are then not set.
set -euo pipefail

DOMAIN=courier.test
DIR=$(mktemp -d /tmp/courier-prosody-XXXXXX)
PID=""

cleanup() {
    local rc=$?
    [ -n "${CMD:-}" ] && kill "$CMD" 2>/dev/null
    stop_server
    if [ $rc -ne 0 ] && [ -f "$DIR/prosody.log" ]; then
        echo "--- prosody.log (last 30 lines)" >&2
        tail -n 30 "$DIR/prosody.log" >&2 || true
    fi
    rm -rf "$DIR"
    exit $rc
}
trap cleanup EXIT INT TERM

free_port() {
    /usr/bin/python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

# A private CA, a server certificate for the domain, and an unrelated CA.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=courier test CA" \
    -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$DOMAIN" \
    -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s\n' "$DOMAIN" > "$DIR/san.ext"
openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" \
    -CAcreateserial -days 2 -extfile "$DIR/san.ext" -out "$DIR/server.crt" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=other CA" \
    -keyout "$DIR/bad.key" -out "$DIR/bad-ca.pem" 2>/dev/null
# ca_path: the CA under its subject hash (OpenSSL's c_rehash layout).
mkdir -p "$DIR/cadir"
cp "$DIR/ca.pem" "$DIR/cadir/$(openssl x509 -hash -noout -in "$DIR/ca.pem").0"
WRONG=wrong.test

PORT=$(free_port)
PUSH_PORT=$(free_port)
while [ "$PUSH_PORT" = "$PORT" ]; do PUSH_PORT=$(free_port); done
mkdir -p "$DIR/data"
PUSH_MOD='"cloud_notify";'
PUSH_PORTS="component_ports = { $PUSH_PORT }
component_interfaces = { \"127.0.0.1\" }"
PUSH_COMPONENT="Component \"push.$DOMAIN\"
    component_secret = \"pw-push\""
if [ "${COURIER_TEST_NO_PUSH:-0}" = 1 ]; then
    PUSH_MOD=""
    PUSH_PORTS="component_ports = { }"
    PUSH_COMPONENT=""
fi
SMACKS='"smacks";'
[ "${COURIER_TEST_NO_SM:-0}" = 1 ] && SMACKS=""
SSL_EXTRA=""
[ "${COURIER_TEST_TLS11:-0}" = 1 ] &&
    SSL_EXTRA='protocol = "tlsv1_1"; ciphers = "DEFAULT:@SECLEVEL=0";'
cat > "$DIR/prosody.cfg.lua" <<CFG
run_as_root = true
daemonize = false
pidfile = "$DIR/prosody.pid"
data_path = "$DIR/data"
admin_socket = "$DIR/admin.sock"
log = { info = "$DIR/prosody.log" }
c2s_ports = { $PORT }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { }
http_ports = { }
https_ports = { }
$PUSH_PORTS
c2s_require_encryption = true
allow_registration = false
authentication = "internal_hashed"
limits = { }
modules_enabled = {
    "roster"; "saslauth"; "tls"; "disco"; "ping"; $SMACKS "offline";
    "posix"; "csi_simple"; "admin_shell"; $PUSH_MOD
}
modules_disabled = { "s2s" }
smacks_hibernation_time = 5
ssl = { key = "$DIR/server.key"; certificate = "$DIR/server.crt"; $SSL_EXTRA }
VirtualHost "$DOMAIN"
-- A host whose certificate names $DOMAIN, not $WRONG (trust tests).
VirtualHost "$WRONG"
    ssl = { key = "$DIR/server.key"; certificate = "$DIR/server.crt"; }
$PUSH_COMPONENT
CFG
chown -R prosody:prosody "$DIR" 2>/dev/null || true
chmod 755 "$DIR"

for u in alice bob carol dave ärger; do
    prosodyctl --config "$DIR/prosody.cfg.lua" register "$u" "$DOMAIN" "pw-$u" \
        >/dev/null 2>&1
done
prosodyctl --config "$DIR/prosody.cfg.lua" register alice "$WRONG" pw-alice \
    >/dev/null 2>&1

start_server() {
    prosody --config "$DIR/prosody.cfg.lua" >>"$DIR/stdout.log" 2>&1 &
    PID=$!
    # Up when our PID is alive and owns the listening port (a Prosody whose
    # port is taken keeps running without that listener).
    for _ in $(seq 100); do
        kill -0 "$PID" 2>/dev/null || { echo "prosody exited" >&2; cat "$DIR/stdout.log" >&2; return 1; }
        local ls
        ls=$(ss -ltnp 2>/dev/null)
        if grep -q "127.0.0.1:$PORT .*pid=$PID," <<<"$ls" &&
            { [ -z "$PUSH_COMPONENT" ] ||
                grep -q "127.0.0.1:$PUSH_PORT .*pid=$PID," <<<"$ls"; }; then
            return 0
        fi
        sleep 0.1
    done
    echo "prosody not listening on $PORT" >&2
    return 1
}

stop_server() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
}

# SIGUSR1 (from the test, to COURIER_TEST_HARNESS_PID) restarts the server
# on the same port and data: a server restart in the middle of a run.
restart_server() {
    stop_server
    start_server || echo "prosody restart failed" >&2
    echo "prosody restarted (pid $PID)" >&2
}

start_server
export COURIER_TEST_DOMAIN=$DOMAIN COURIER_TEST_PORT=$PORT \
    COURIER_TEST_CA=$DIR/ca.pem COURIER_TEST_BAD_CA=$DIR/bad-ca.pem \
    COURIER_TEST_DIR=$DIR COURIER_TEST_HARNESS_PID=$$ \
    COURIER_TEST_CA_DIR=$DIR/cadir COURIER_TEST_WRONG_DOMAIN=$WRONG
if [ -n "$PUSH_COMPONENT" ]; then
    export COURIER_TEST_PUSH_PORT=$PUSH_PORT \
        COURIER_TEST_PUSH_JID=push.$DOMAIN COURIER_TEST_PUSH_SECRET=pw-push
fi
[ "${1:-}" = "--" ] && shift
# In the background so that the USR1 trap runs while the command does; the
# command keeps the terminal's stdin when there is one.
trap restart_server USR1
"$@" <&0 &
CMD=$!
while :; do
    set +e
    wait "$CMD"
    rc=$?
    set -e
    # a trapped signal interrupts wait with a status above 128
    if kill -0 "$CMD" 2>/dev/null; then continue; fi
    CMD=""
    exit $rc
done
