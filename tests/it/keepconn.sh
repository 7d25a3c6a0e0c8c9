#!/usr/bin/env bash
# keepconn.sh - FastCGI connections kept between requests: nginx asks with
# FCGI_KEEP_CONN (fastcgi_keep_conn on, an upstream keepalive pool) and
# chat-fcgi keeps them without a thread each. tests/it/keepconn.py drives
# chat-fcgi directly on its socket, then the stack through nginx.
. "$(dirname "$0")/../lib.sh"
FCGI=$BIN_DIR/chat-fcgi
mkdir -p "$TMP/run/logs"

run_checks python3 "$ROOT/tests/it/keepconn.py" direct "$FCGI" "$TMP/run/chat.db" \
    "$TMP/run/logs/chat-fcgi.log" "$TMP/run"

stack_up main || { finish; exit 1; }
run_checks python3 "$ROOT/tests/it/keepconn.py" nginx "$BASE" "$STACK_DIR/chat-fcgi.pid"
check "integrity_check" ok "$(sqlite3 "$DB" 'pragma integrity_check')"
finish
