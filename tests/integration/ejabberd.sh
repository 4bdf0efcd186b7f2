#!/bin/bash
# SPDX-License-Identifier: MIT
# Start a private ejabberd on 127.0.0.1 for one test run, then run the
# command given with COURIER_TEST_* set; stop ejabberd by PID on exit.
# The same contract as prosody.sh, for the second server of the matrix.
#
#   tests/integration/ejabberd.sh [--] CMD [ARGS...]
#
# Sets: COURIER_TEST_SERVER=ejabberd, COURIER_TEST_DOMAIN, COURIER_TEST_PORT
# (c2s, STARTTLS required), COURIER_TEST_API_PORT (mod_http_api on
# 127.0.0.1, POST /api/send_message), COURIER_TEST_CA (CA that signed the
# server certificate), COURIER_TEST_BAD_CA (an unrelated CA),
# COURIER_TEST_DIR (scratch space), COURIER_TEST_CA_DIR (the CA as a hashed
# directory, for ca_path), COURIER_TEST_PUSH_PORT / COURIER_TEST_PUSH_JID /
# COURIER_TEST_PUSH_SECRET (an XEP-0114 component listener for the push
# tests' app server, push_appserver.py; ejabberd runs mod_push), COURIER_TEST_HARNESS_PID (SIGUSR1
# restarts the server on the same port and data), COURIER_TEST_EJABBERDCTL
# (an ejabberdctl command line bound to this node). Accounts: alice bob
# carol dave ärger, each with password "pw-<name>".
#
# ejabberd runs in the foreground as exactly what `ejabberdctl foreground`
# would exec, without epmd: the Erlang distribution listens on a port of its
# own on 127.0.0.1 (-erl_epmd_port, -start_epmd false), HOME (and so the
# Erlang cookie) is the temporary directory, so nothing outside it is
# read or written (README.md, Servers).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DOMAIN=courier.test
DIR=$(mktemp -d /tmp/courier-ejabberd-XXXXXX)
NODE="courier-$(basename "$DIR" | tr '[:upper:]' '[:lower:]' | tr -cd 'a-z0-9-')@localhost"
PID=""

cleanup() {
    local rc=$?
    [ -n "${CMD:-}" ] && kill "$CMD" 2>/dev/null
    stop_server
    if [ $rc -ne 0 ] && [ -f "$DIR/ejabberd.log" ]; then
        echo "--- ejabberd.log (last 30 lines)" >&2
        tail -n 30 "$DIR/ejabberd.log" >&2 || true
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
# ejabberd wants the chain and the key in one file.
cat "$DIR/server.crt" "$DIR/ca.pem" "$DIR/server.key" > "$DIR/server.pem"
chmod 600 "$DIR/server.pem"

PORT=$(free_port)
API_PORT=$(free_port)
DIST_PORT=$(free_port)
PUSH_PORT=$(free_port)
while [ "$API_PORT" = "$PORT" ]; do API_PORT=$(free_port); done
while [ "$DIST_PORT" = "$PORT" ] || [ "$DIST_PORT" = "$API_PORT" ]; do
    DIST_PORT=$(free_port)
done
while [ "$PUSH_PORT" = "$PORT" ] || [ "$PUSH_PORT" = "$API_PORT" ] ||
    [ "$PUSH_PORT" = "$DIST_PORT" ]; do
    PUSH_PORT=$(free_port)
done
mkdir -p "$DIR/db"
sed -e "s|@DOMAIN@|$DOMAIN|g" -e "s|@DIR@|$DIR|g" -e "s|@PORT@|$PORT|g" \
    -e "s|@API_PORT@|$API_PORT|g" -e "s|@PUSH_PORT@|$PUSH_PORT|g" \
    "$HERE/ejabberd.yml" > "$DIR/ejabberd.yml"

# ejabberdctl bound to our node: as root it would `su ejabberd` and look for
# epmd; this keeps it root and talks to our distribution port directly.
cat > "$DIR/ejabberdctl.cfg" <<CFG
EXEC_CMD=as_current_user
ERLANG_NODE=$NODE
ERL_DIST_PORT=$DIST_PORT
INET_DIST_INTERFACE=127.0.0.1
EJABBERD_BYPASS_WARNINGS=true
CFG
CTL="env HOME=$DIR ejabberdctl --ctl-config $DIR/ejabberdctl.cfg \
--config $DIR/ejabberd.yml --spool $DIR/db --logs $DIR"

start_server() {
    # What `ejabberdctl foreground` runs, minus epmd.
    HOME="$DIR" EJABBERD_CONFIG_PATH="$DIR/ejabberd.yml" \
    EJABBERD_LOG_PATH="$DIR/ejabberd.log" ERL_LIBS=/usr/lib/x86_64-linux-gnu \
    ERL_CRASH_DUMP="$DIR/erl_crash.dump" ERL_CRASH_DUMP_BYTES=0 \
        erl -sname "$NODE" -noinput -mnesia dir "\"$DIR/db\"" \
        -erl_epmd_port "$DIST_PORT" -start_epmd false \
        -kernel inet_dist_use_interface '{127,0,0,1}' \
        -s ejabberd >>"$DIR/stdout.log" 2>&1 &
    PID=$!
    # Up when our PID is alive and owns both listening ports.
    for _ in $(seq 300); do
        kill -0 "$PID" 2>/dev/null || {
            echo "ejabberd exited" >&2
            cat "$DIR/stdout.log" >&2
            tail -n 30 "$DIR/ejabberd.log" >&2 2>/dev/null || true
            return 1
        }
        local ls
        ls=$(ss -ltnp 2>/dev/null)
        if grep -q "127.0.0.1:$PORT .*pid=$PID," <<<"$ls" &&
            grep -q "127.0.0.1:$API_PORT .*pid=$PID," <<<"$ls" &&
            grep -q "127.0.0.1:$PUSH_PORT .*pid=$PID," <<<"$ls"; then
            return 0
        fi
        sleep 0.1
    done
    echo "ejabberd not listening on $PORT, $API_PORT and $PUSH_PORT" >&2
    return 1
}

stop_server() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
}

restart_server() {
    stop_server
    start_server || echo "ejabberd restart failed" >&2
    echo "ejabberd restarted (pid $PID)" >&2
}

start_server
# The accounts, through ejabberdctl (one short-lived Erlang node each, in
# parallel: ~1 s in all).
pids=()
for u in alice bob carol dave ärger; do
    $CTL register "$u" "$DOMAIN" "pw-$u" >"$DIR/register-$u.log" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do
    if ! wait "$p"; then
        echo "ejabberdctl register failed:" >&2
        cat "$DIR"/register-*.log >&2
        exit 1
    fi
done

export COURIER_TEST_SERVER=ejabberd COURIER_TEST_DOMAIN=$DOMAIN \
    COURIER_TEST_PORT=$PORT COURIER_TEST_API_PORT=$API_PORT \
    COURIER_TEST_CA=$DIR/ca.pem COURIER_TEST_BAD_CA=$DIR/bad-ca.pem \
    COURIER_TEST_DIR=$DIR COURIER_TEST_HARNESS_PID=$$ \
    COURIER_TEST_EJABBERDCTL="$CTL" COURIER_TEST_CA_DIR=$DIR/cadir \
    COURIER_TEST_PUSH_PORT=$PUSH_PORT COURIER_TEST_PUSH_JID=push.$DOMAIN \
    COURIER_TEST_PUSH_SECRET=pw-push
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
