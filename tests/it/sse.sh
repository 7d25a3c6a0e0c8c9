#!/usr/bin/env bash
# sse.sh - server-sent events at /events (SPEC section 8) through nginx, read
# by a socket-level client that parses the event stream as a browser does
# (tests/it/sse_client.py; the checks are tests/it/sse_clients.py).
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
CLIENTS=$ROOT/tests/it/sse_clients.py

# sse_run GROUP...: the checks of those groups against the last stack
sse_run() { run_checks "$PY" "$CLIENTS" "$BASE" "$DB" "$STACK_DIR" "$BIN_DIR" "$@"; }

WS_FLAGS="--max-queue 100" stack_up main || { finish; exit 1; }
sse_run basic writers handover lastchunk bad leave many slow
check "integrity_check" ok "$(sqlite3 "$DB" 'pragma integrity_check')"
req "$BASE/metrics/ws"
check "chat-ws metrics: 200" 200 "$STATUS"
check_true "metrics: open streams" grep -q '^chat_ws_open_streams [0-9]' "$TMP/body"
check_true "metrics: events sent" grep -q '^chat_ws_events_sent_total [1-9]' "$TMP/body"
check_true "metrics: streams opened" grep -q '^chat_ws_streams_total [1-9]' "$TMP/body"
check_true "metrics: a slow stream was counted" grep -q '^chat_ws_streams_closed_slow_total [1-9]' "$TMP/body"
check_true "metrics: WebSockets are counted apart" grep -q '^chat_ws_open_sockets 0$' "$TMP/body"
# curl -N, as the README shows it: the ready event, then the messages
out=$(timeout 3 curl -sN "$BASE/events?room=sse-basic&tail=2")
case $out in "retry: 2000"*"event: ready"*"data: {\"id\":"*) pass "curl -N reads a stream" ;;
    *) fail "curl -N reads a stream" "${out:0:200}" ;; esac
sse_run sigterm down

# The stream limit, and the connection limit shared with WebSockets
DB=""; WS_FLAGS="--max-streams 2" stack_up limit || { finish; exit 1; }
sse_run limit
DB=""; WS_FLAGS="--max-conns 2" stack_up full || { finish; exit 1; }
sse_run full

# Pings on idle streams; the HTTP timeouts of libwebsockets do not cut a stream
DB=""; WS_FLAGS="--sse-ping-secs 1 --handshake-secs 1 --ping-secs 1" stack_up ping || { finish; exit 1; }
sse_run ping

# Under retention, ready says pruned
DB=""; stack_up pruned --retain-per-room 3 --retain-every 1 || { finish; exit 1; }
sse_run pruned

# 5,000 streams on one chat-ws
DB=""; stack_up fivek || { finish; exit 1; }
sse_run fivek

# --help lists the flags
help=$("$BIN_DIR/chat-ws" --help)
for flag in --max-streams --sse-ping-secs /events; do
    case $help in *"$flag"*) pass "chat-ws --help lists $flag" ;; *) fail "chat-ws --help lists $flag" ;; esac
done
finish
