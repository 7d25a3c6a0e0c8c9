#!/usr/bin/env bash
# conns.sh - what chat-fcgi must not wait on for ever: connections that send
# nothing, stop half-way or trickle (TCP and unix).
. "$(dirname "$0")/../lib.sh"
FCGI=$BIN_DIR/chat-fcgi
mkdir -p "$TMP/run/logs"

run_checks python3 "$ROOT/tests/it/fcgi_raw.py" conns "$FCGI" "$TMP/run/chat.db" \
    "$TMP/run/logs/chat-fcgi.log" "$TMP/run"

check "integrity_check" ok "$(sqlite3 "$TMP/run/chat.db" 'pragma integrity_check')"
finish
